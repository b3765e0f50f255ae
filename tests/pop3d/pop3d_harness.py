"""Test harness for coffer-pop3d integration tests: a temporary site (certificate, passwd-file,
Maildirs) and a real coffer-pop3d process on free 127.0.0.1 ports, stopped by PID.

Used by pop3d_clients_test.py and pop3d_robustness_test.py (suite 'net'). The binary comes from
$COFFER_POP3D (set by meson)."""

import hashlib
import os
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time

BINARY = os.environ.get("COFFER_POP3D", "")
PASSWORDS = {
    "alice@example.org": "alice secret",
    "bob@example.org": "bob-pw",
    "carol@example.org": "carol-pw",
    "dave@example.org": "dave-pw",
}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def sha512_crypt(password):
    out = subprocess.run(["openssl", "passwd", "-6", "-stdin"], input=password.encode(),
                         capture_output=True, check=True)
    return out.stdout.decode().strip()


def sample_messages():
    """Messages with the edge cases: bare LF, CRLF, leading dots, no final newline, 8-bit,
    a large one."""
    big = b"".join(b"line %06d of a big message .... padding padding padding\n" % i
                   for i in range(60000))  # ~3.6 MB
    return [
        b"From: a@example.org\nSubject: bare LF\n\nHello\n.leading dot\n..two dots\n.\nend\n",
        b"From: b@example.org\r\nSubject: CRLF\r\n\r\nbody\r\n.\r\n",
        b"Subject: no final newline\n\nlast line",
        b"Subject: 8bit\n\n\xc3\xa4\xc3\xb6\xc3\xbc \xff\xfe\n",
        b"Subject: big\n\n" + big,
        b"Subject: empty body\n\n",
    ]


def wire_form(data):
    """What a client should receive (after un-stuffing): CRLF lines, final CRLF."""
    out = data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    if out and not out.endswith(b"\r\n"):
        out += b"\r\n"
    return out


class Site:
    """A temporary directory with a certificate, a passwd-file and Maildirs."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="pop3d_net_")
        os.chmod(self.dir, 0o755)
        self.cert = os.path.join(self.dir, "cert.pem")
        self.key = os.path.join(self.dir, "key.pem")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                        "-subj", "/CN=localhost", "-addext",
                        "subjectAltName=DNS:localhost,IP:127.0.0.1",
                        "-keyout", self.key, "-out", self.cert],
                       check=True, capture_output=True)
        os.chmod(self.key, 0o644)
        self.passwd = os.path.join(self.dir, "passwd")
        with open(self.passwd, "w") as f:
            for user, pw in PASSWORDS.items():
                f.write("%s:{SHA512-CRYPT}%s::::::\n" % (user, sha512_crypt(pw)))
        self.mail = os.path.join(self.dir, "mail")
        self.counter = 0

    def maildir(self, user):
        local, domain = user.split("@")
        return os.path.join(self.mail, domain, local, "Maildir")

    def deliver(self, user, data, name=None):
        md = self.maildir(user)
        for sub in ("new", "cur", "tmp"):
            os.makedirs(os.path.join(md, sub), exist_ok=True)
        self.counter += 1
        name = name or "%d.M%dP%d.testhost" % (1700000000 + self.counter, self.counter,
                                               os.getpid())
        tmp = os.path.join(md, "tmp", name)
        with open(tmp, "wb") as f:
            f.write(data)
        os.rename(tmp, os.path.join(md, "new", name))
        return name

    def messages(self, user):
        """unique name -> sha256 of content, for every message in new/ and cur/."""
        md = self.maildir(user)
        out = {}
        for sub in ("new", "cur"):
            d = os.path.join(md, sub)
            if not os.path.isdir(d):
                continue
            for n in os.listdir(d):
                with open(os.path.join(d, n), "rb") as f:
                    out[n.split(":")[0]] = hashlib.sha256(f.read()).hexdigest()
        return out

    def cleanup(self):
        shutil.rmtree(self.dir, ignore_errors=True)

    def client_context(self):
        ctx = ssl.create_default_context(cafile=self.cert)
        return ctx


class Server:
    """A running coffer-pop3d. `config` is extra TOML appended to the generated file."""

    def __init__(self, site, config="", tls=True, args=()):
        self.site = site
        self.port = free_port()
        self.tls_port = free_port() if tls else None
        self.control = os.path.join(site.dir, "ctl.%d" % self.port)
        self.log = os.path.join(site.dir, "pop3d.%d.log" % self.port)
        self.config = os.path.join(site.dir, "pop3d.%d.toml" % self.port)
        sections = {}
        current = None
        for line in config.splitlines():
            line = line.strip()
            if line.startswith("["):
                current = line
                sections.setdefault(current, [])
            elif line:
                sections.setdefault(current, []).append(line)
        def section(name, lines):
            return name + "\n" + "\n".join(lines + sections.pop(name, [])) + "\n"
        text = section("[listen]", ['plain = ["127.0.0.1:%d"]' % self.port] +
                       (['tls = ["127.0.0.1:%d"]' % self.tls_port] if tls else []))
        text += section("[tls]", ['certificate = "%s"' % site.cert, 'key = "%s"' % site.key])
        text += section("[server]", ['threads = 2', 'control_socket = "%s"' % self.control])
        text += section("[auth]", ['passwd_file = "%s"' % site.passwd,
                                   'mail_location = "%s/%%d/%%n/Maildir"' % site.mail,
                                   'failure_delay_ms = 50', 'failure_delay_max_ms = 200'])
        text += section("[log]", ['level = "debug"'])
        for name in list(sections):
            text += section(name, [])
        with open(self.config, "w") as f:
            f.write(text)
        self.logf = open(self.log, "wb")
        self.proc = subprocess.Popen([BINARY, "-c", self.config] + list(args),
                                     stdout=self.logf, stderr=subprocess.STDOUT)
        try:
            self.wait_ready()
        except Exception:
            self.stop()  # never leave a half-started server behind
            raise

    def wait_ready(self, timeout=10):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("coffer-pop3d exited with %s:\n%s" %
                                   (self.proc.returncode, self.log_text()))
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                    s.recv(100)
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("coffer-pop3d did not start:\n" + self.log_text())

    def log_text(self):
        with open(self.log, "rb") as f:
            return f.read().decode(errors="replace")

    def ctl(self, command):
        out = subprocess.run([BINARY, "--control-socket", self.control, "--send", command],
                             capture_output=True, timeout=10)
        return out.stdout.decode().strip()

    def alive(self):
        return self.proc.poll() is None

    def stop(self):
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.logf.close()
        return self.proc.returncode


class Raw:
    """A raw line-oriented POP3 connection for bad-input tests."""

    def __init__(self, port, timeout=10):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.buf = b""

    def send(self, data):
        self.sock.sendall(data)

    def line(self):
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError("connection closed; buffered %r" % self.buf[:200])
            self.buf += chunk
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def cmd(self, text):
        self.send(text.encode() + b"\r\n" if isinstance(text, str) else text)
        return self.line()

    def multiline(self):
        lines = []
        while True:
            line = self.line()
            if line == b".":
                return lines
            lines.append(line[1:] if line.startswith(b".") else line)

    def closed(self, timeout=5):
        """True if the server closes the connection within `timeout` (after any data)."""
        self.sock.settimeout(timeout)
        try:
            while True:
                chunk = self.sock.recv(65536)
                if not chunk:
                    return True
                self.buf += chunk
        except (socket.timeout, TimeoutError):
            return False
        except ConnectionResetError:
            return True

    def close(self):
        self.sock.close()

    def login(self, user, password):
        greeting = self.line()
        assert greeting.startswith(b"+OK"), greeting
        assert self.cmd("USER " + user).startswith(b"+OK")
        reply = self.cmd("PASS " + password)
        assert reply.startswith(b"+OK"), reply
