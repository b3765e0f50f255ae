#!/usr/bin/env python3
"""Builds coffer's Debian packages, installs them on this machine and smoke-tests the installed
programs the way the packages set them up; writes one JUnit test case per step (for
scripts/count_tests.py) and exits non-zero if any failed.

  python3 scripts/package_test.py JUNIT_XML [--debs DIR]   (as root; --debs: skip the build)

Steps: build (scripts/package.sh, lintian clean), install (dpkg -i), what the packages made
(system users, /etc/coffer, /var/lib/coffer, units enabled and not started; systemd-analyze
verify of the units), then the smoke test: three storage nodes, a cofferfs mount on them and
coffer-pop3d serving a delivered message on loopback, each started with the command line of its
installed unit (ExecStartPre, User=, LoadCredential= and %i/%f done by hand when systemd is not
the init, as in CI), cofferctl status and metrics, a SIGHUP reload (ExecReload), and a clean
stop. Finally the packages are purged. Everything listens on 127.0.0.1 only, and every process
is stopped by its PID.
"""
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback
import xml.etree.ElementTree as ET

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGES = ["coffer-node", "cofferfs", "coffer-pop3d", "coffer-tools"]
UNITDIR = "/lib/systemd/system"
results = []  # (name, seconds, error or None)


def step(name):
    def wrap(fn):
        def run(*args):
            start = time.time()
            try:
                fn(*args)
                results.append((name, time.time() - start, None))
                print("ok   %s (%.1f s)" % (name, time.time() - start), flush=True)
                return True
            except Exception as e:  # a failed step is reported, the next ones still run
                results.append((name, time.time() - start, "%s\n%s" % (e, traceback.format_exc())))
                print("FAIL %s: %s" % (name, e), flush=True)
                return False
        return run
    return wrap


def sh(*cmd, check=True, **kw):
    r = subprocess.run(list(cmd), capture_output=True, text=True, timeout=kw.pop("timeout", 600),
                       **kw)
    if check and r.returncode != 0:
        raise RuntimeError("%s exited %d:\n%s%s" % (" ".join(cmd), r.returncode, r.stdout[-3000:],
                                                    r.stderr[-3000:]))
    return r


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, timeout=30):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("nothing listens on 127.0.0.1:%d" % port)


def unit_lines(unit, key):
    """The values of KEY= in an installed unit (in order)."""
    out = []
    with open(os.path.join(UNITDIR, unit)) as f:
        for line in f:
            if line.startswith(key + "="):
                out.append(line[len(key) + 1:].strip())
    return out


def expand(command, instance=None, path=None, env=None):
    """systemd specifiers and ${VAR}/$VAR the way systemd expands an Exec line, for the few
    the units use."""
    if instance is not None:
        command = command.replace("%i", instance).replace("%f", path)
    for k, v in (env or {}).items():
        command = command.replace("${%s}" % k, v).replace("$" + k, v)
    return command.split()


class Proc:
    """A daemon started from a unit's ExecStart, with its log in a file, stopped by PID."""

    def __init__(self, name, argv, logdir, user=None, env=None):
        self.name = name
        self.log_path = os.path.join(logdir, name + ".log")
        self.log = open(self.log_path, "ab")
        if user:  # User=/Group= of the unit
            argv = ["setpriv", "--reuid=" + user, "--regid=" + user, "--init-groups"] + argv
        self.proc = subprocess.Popen(argv, stdout=self.log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, env=dict(os.environ, **(env or {})))

    def text(self):
        with open(self.log_path, errors="replace") as f:
            return f.read()

    def signal(self, sig):
        os.kill(self.proc.pid, sig)

    def stop(self, timeout=30):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        return self.proc.returncode


class Smoke:
    def __init__(self, debs):
        self.debs = debs
        self.tmp = tempfile.mkdtemp(prefix="cofferpkg")
        os.chmod(self.tmp, 0o755)
        self.procs = []
        self.mnt = os.path.join(self.tmp, "mnt")
        self.instance = None

    # ---- build and install ----
    @step("package build (dpkg-buildpackage -us -uc -b) and lintian")
    def build(self):
        r = sh("bash", os.path.join(ROOT, "scripts", "package.sh"), self.debs, timeout=1800)
        print(r.stdout[-2000:])
        for p in PACKAGES:
            if not any(n.startswith(p + "_") for n in os.listdir(self.debs)):
                raise RuntimeError("no %s package built" % p)

    @step("install the packages (dpkg -i)")
    def install(self):
        debs = sorted(os.path.join(self.debs, n) for n in os.listdir(self.debs)
                      if n.endswith(".deb") and "-dbgsym" not in n)
        sh("dpkg", "-i", *debs, env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"))
        for p in PACKAGES:
            r = sh("dpkg-query", "-W", "-f=${Status}", p)
            assert r.stdout == "install ok installed", (p, r.stdout)

    @step("packages made users, directories, config files; units enabled, not started")
    def installed_state(self):
        for user in ("coffer-node", "coffer-pop3d"):
            sh("getent", "passwd", user)
        for path in ("/etc/coffer/coffer-node.toml", "/etc/coffer/cofferfs.toml",
                     "/etc/coffer/replicator.toml", "/etc/coffer/coffer-pop3d.toml",
                     "/etc/coffer/keytool.toml", "/etc/coffer/allowed_boxes",
                     "/etc/coffer/coffer-pop3d.passwd"):
            assert os.path.isfile(path), path + " missing"
        st = os.stat("/var/lib/coffer-node")
        assert st.st_uid == int(sh("id", "-u", "coffer-node").stdout), "owner of /var/lib/coffer-node"
        assert os.path.isdir("/var/lib/coffer")
        st = os.stat("/etc/coffer/coffer-pop3d.passwd")
        assert oct(st.st_mode & 0o777) == "0o640", oct(st.st_mode)
        with open("/etc/coffer/coffer-pop3d.toml") as f:
            assert 'user = "coffer-pop3d"' in f.read()
        for unit in ("coffer-node.service", "coffer-pop3d.service"):
            link = "/etc/systemd/system/multi-user.target.wants/" + unit
            assert os.path.islink(link), unit + " is not enabled"
            binary = "/usr/sbin/" + unit.split(".")[0]
            for pid in os.listdir("/proc"):
                try:
                    exe = os.readlink("/proc/%s/exe" % pid) if pid.isdigit() else ""
                except OSError:
                    continue
                assert exe != binary, unit + " was started by the package (pid %s)" % pid
        assert os.path.isfile(os.path.join(UNITDIR, "cofferfs@.service"))
        for prog in ("/usr/sbin/coffer-node", "/usr/sbin/cofferfs", "/usr/sbin/coffer-pop3d",
                     "/usr/sbin/cofferctl", "/usr/bin/coffer-keytool"):
            r = sh(prog, "--version")
            assert re.match(r"^\S+ \d+\.\d+\.\d+", r.stdout), (prog, r.stdout)
        for page in ("coffer-node", "cofferfs", "coffer-pop3d", "cofferctl", "coffer-keytool",
                     "coffer"):
            sh("man", "-w", page)

    @step("systemd-analyze verify of the installed units")
    def analyze(self):
        if not shutil.which("systemd-analyze"):
            raise RuntimeError("systemd-analyze missing (scripts/setup.sh installs systemd)")
        units = [os.path.join(UNITDIR, u) for u in
                 ("coffer-node.service", "coffer-pop3d.service", "cofferfs@srv-mail.service")]
        # cofferfs@srv-mail.service is the template's instance (verify needs an instance).
        inst = os.path.join(self.tmp, "cofferfs@srv-mail.service")
        shutil.copy(os.path.join(UNITDIR, "cofferfs@.service"), inst)
        units[2] = inst
        r = sh("systemd-analyze", "verify", "--man=no", *units, check=False)
        bad = [l for l in (r.stdout + r.stderr).splitlines()
               if "coffer" in l and "Failed to" not in l and "not found" not in l.lower()
               and "Unit is bound to inactive unit" not in l]
        # Errors about our units (unknown keys, bad values) fail; missing dependencies of a
        # machine without those services (postfix, dovecot) do not.
        if bad:
            raise RuntimeError("\n".join(bad))

    # ---- the smoke test ----
    @step("smoke: keys and configs for three nodes, a mount and coffer-pop3d")
    def configure(self):
        kt = "/usr/bin/coffer-keytool"
        keys = os.path.join(self.tmp, "keys")
        os.makedirs(keys, mode=0o700)
        sh(kt, "init", "--keyfile", "/etc/coffer/coffer.key", "--no-passphrase")
        sh(kt, "curve-keygen", "--out", "/etc/coffer/node")  # root 0600: the unit's credential
        assert oct(os.stat("/etc/coffer/node.key_secret").st_mode & 0o777) == "0o600"
        for who in ("n2", "n3", "box", "admin"):
            sh(kt, "curve-keygen", "--out", os.path.join(keys, who))
        with open(os.path.join(keys, "box.key")) as f:
            box_pub = f.read().strip()
        with open("/etc/coffer/allowed_boxes", "a") as f:
            f.write(box_pub + "\n")
        self.node_ports = [free_port() for _ in range(3)]
        self.metrics_ports = {"node": free_port(), "fs": free_port(), "pop3d": free_port()}
        # Node 1: the packaged config file, edited as an admin would.
        with open("/etc/coffer/coffer-node.toml") as f:
            text = f.read()
        text = text.replace('listen = ["tcp://0.0.0.0:7401"]',
                            'listen = ["tcp://127.0.0.1:%d"]' % self.node_ports[0])
        text = re.sub(r'(?m)^node_id = .*$', 'node_id = "n1"', text)
        text = re.sub(r'(?m)^metrics_listen = .*$',
                      'metrics_listen = "127.0.0.1:%d"' % self.metrics_ports["node"], text)
        assert "127.0.0.1:%d" % self.node_ports[0] in text, "listen line not found in the example"
        with open("/etc/coffer/coffer-node.toml", "w") as f:
            f.write(text)
        # Nodes 2 and 3: more instances of the same program (a real site has one per machine).
        for i in (2, 3):
            d = os.path.join(self.tmp, "n%d" % i)
            os.makedirs(d)
            shutil.chown(d, "coffer-node", "coffer-node")
            with open(os.path.join(self.tmp, "n%d.toml" % i), "w") as f:
                f.write('node_id = "n%d"\ndata_dir = "%s"\nlisten = ["tcp://127.0.0.1:%d"]\n'
                        'secret_key_file = "%s"\nallowed_keys_file = "/etc/coffer/allowed_boxes"\n'
                        % (i, d, self.node_ports[i - 1], os.path.join(keys, "n%d.key_secret" % i)))
            os.chmod(os.path.join(keys, "n%d.key_secret" % i), 0o644)  # test keys only
        os.chmod(keys, 0o755)
        with open("/etc/coffer/replicator.toml", "w") as f:
            f.write('box_id = 1\nsecret_key_file = "%s"\nreplicas = 3\nwrite_quorum = 0\n'
                    % os.path.join(keys, "box.key_secret"))
            pubs = ["/etc/coffer/node.key", os.path.join(keys, "n2.key"),
                    os.path.join(keys, "n3.key")]
            for i in range(3):
                f.write('\n[[node]]\nid = "n%d"\nendpoint = "tcp://127.0.0.1:%d"\n'
                        'public_key_file = "%s"\n' % (i + 1, self.node_ports[i], pubs[i]))
        text = open("/etc/coffer/cofferfs.toml").read()
        text = re.sub(r'(?m)^replicator = .*$', 'replicator = "/etc/coffer/replicator.toml"', text)
        text = re.sub(r'(?m)^allow_other = .*$', 'allow_other = true', text)
        text = re.sub(r'(?m)^metrics_listen = .*$',
                      'metrics_listen = "127.0.0.1:%d"' % self.metrics_ports["fs"], text)
        with open("/etc/coffer/cofferfs.toml", "w") as f:
            f.write(text)
        os.makedirs(self.mnt)
        self.instance = sh("systemd-escape", "--path", self.mnt).stdout.strip()
        self.pop3_port = free_port()
        hashed = sh("openssl", "passwd", "-6", "demo-pw").stdout.strip()
        with open("/etc/coffer/coffer-pop3d.passwd", "w") as f:
            f.write("demo:{SHA512-CRYPT}%s::::::\n" % hashed)
        text = open("/etc/coffer/coffer-pop3d.toml").read()
        text = text.replace('plain = ["127.0.0.1:110"]', 'plain = ["127.0.0.1:%d"]' % self.pop3_port)
        text = re.sub(r'(?m)^mail_location = .*$',
                      'mail_location = "%s/%%n/Maildir"' % self.mnt, text)
        text = re.sub(r'(?m)^listen = ""', 'listen = "127.0.0.1:%d"' % self.metrics_ports["pop3d"],
                      text)
        assert "127.0.0.1:%d" % self.metrics_ports["pop3d"] in text
        with open("/etc/coffer/coffer-pop3d.toml", "w") as f:
            f.write(text)

    @step("smoke: coffer-node.service command line (User=coffer-node, LoadCredential=)")
    def start_nodes(self):
        creds = os.path.join(self.tmp, "credentials")
        os.makedirs(creds, mode=0o700)
        for cred in unit_lines("coffer-node.service", "LoadCredential"):
            name, src = cred.split(":", 1)
            shutil.copy(src, os.path.join(creds, name))
        shutil.chown(creds, "coffer-node", "coffer-node")
        for n in os.listdir(creds):
            shutil.chown(os.path.join(creds, n), "coffer-node", "coffer-node")
            os.chmod(os.path.join(creds, n), 0o400)
        user = unit_lines("coffer-node.service", "User")[0]
        argv = expand(unit_lines("coffer-node.service", "ExecStart")[0])
        env = {"CREDENTIALS_DIRECTORY": creds}
        self.node1 = Proc("n1", argv, self.tmp, user=user, env=env)
        self.procs.append(self.node1)
        for i in (2, 3):
            p = Proc("n%d" % i, [argv[0], "--config", os.path.join(self.tmp, "n%d.toml" % i)],
                     self.tmp, user=user)
            self.procs.append(p)
        for port, p in zip(self.node_ports, self.procs[-3:]):
            try:
                wait_port(port)
            except RuntimeError as e:
                raise RuntimeError("%s: %s" % (e, p.text()[-3000:]))
        # The node runs as coffer-node and read a root-only key through the credential.
        st = os.stat("/proc/%d" % self.node1.proc.pid)
        assert st.st_uid == int(sh("id", "-u", "coffer-node").stdout), "node 1 not coffer-node"
        deadline = time.time() + 10
        while "ready" not in self.node1.text() and time.time() < deadline:
            time.sleep(0.1)
        assert "node n1 ready" in self.node1.text(), self.node1.text()

    @step("smoke: cofferfs@.service command line mounts on the three nodes")
    def mount(self):
        for pre in unit_lines("cofferfs@.service", "ExecStartPre"):
            sh(*expand(pre, self.instance, self.mnt))
        argv = expand(unit_lines("cofferfs@.service", "ExecStart")[0], self.instance, self.mnt)
        self.fs = Proc("cofferfs", argv, self.tmp)
        self.procs.append(self.fs)
        deadline = time.time() + 60
        while not os.path.ismount(self.mnt):
            if self.fs.proc.poll() is not None or time.time() > deadline:
                raise RuntimeError("no mount: " + self.fs.text()[-3000:])
            time.sleep(0.1)
        md = os.path.join(self.mnt, "demo", "Maildir")
        for sub in ("tmp", "new", "cur"):
            os.makedirs(os.path.join(md, sub))
        sh("chown", "-R", "coffer-pop3d:coffer-pop3d", os.path.join(self.mnt, "demo"))
        self.message = b"From: smoke@example.org\nSubject: package smoke test\n\nhello from the package\n"
        tmp = os.path.join(md, "tmp", "1.smoke")
        with open(tmp, "wb") as f:
            f.write(self.message)
            f.flush()
            os.fsync(f.fileno())
        os.rename(tmp, os.path.join(md, "new", "1.smoke"))
        shutil.chown(os.path.join(md, "new", "1.smoke"), "coffer-pop3d", "coffer-pop3d")

    @step("smoke: coffer-pop3d.service command lines serve the message over POP3")
    def pop3(self):
        for pre in unit_lines("coffer-pop3d.service", "ExecStartPre"):
            sh(*expand(pre))
        argv = expand(unit_lines("coffer-pop3d.service", "ExecStart")[0])
        self.pop3d = Proc("pop3d", argv, self.tmp)
        self.procs.append(self.pop3d)
        try:
            wait_port(self.pop3_port)
        except RuntimeError as e:
            raise RuntimeError("%s: %s" % (e, self.pop3d.text()[-3000:]))
        r = sh("curl", "-sS", "--max-time", "30", "-u", "demo:demo-pw",
               "pop3://127.0.0.1:%d/1" % self.pop3_port)
        assert r.stdout.replace("\r\n", "\n").encode() == self.message, r.stdout
        assert "running as user coffer-pop3d" in self.pop3d.text(), self.pop3d.text()

    @step("smoke: cofferctl status (exit 0, healthy) and metrics of each daemon")
    def status_and_metrics(self):
        r = sh("/usr/sbin/cofferctl", "status", self.mnt, check=False)
        assert r.returncode == 0, r.stdout + r.stderr
        assert "status      healthy" in r.stdout, r.stdout
        r = sh("/usr/sbin/cofferctl", "status", "--json", os.path.join(self.mnt, "demo"))
        assert '"status":"healthy"' in r.stdout, r.stdout
        for who, name in (("node", "coffer_node_objects"), ("fs", "coffer_fs_nodes_up"),
                          ("pop3d", "coffer_pop3d_logins_total")):
            r = sh("/usr/sbin/cofferctl", "metrics", "127.0.0.1:%d" % self.metrics_ports[who])
            assert ("# TYPE %s " % name) in r.stdout, (who, r.stdout[:2000])

    @step("smoke: ExecReload (SIGHUP) reloads coffer-node and coffer-pop3d")
    def reload(self):
        for proc, unit in ((self.node1, "coffer-node.service"), (self.pop3d, "coffer-pop3d.service")):
            reload = unit_lines(unit, "ExecReload")[0]
            sh(*expand(reload, env={"MAINPID": str(proc.proc.pid)}))
        deadline = time.time() + 10
        while time.time() < deadline and not ("reload:" in self.node1.text() and
                                              "reload:" in self.pop3d.text()):
            time.sleep(0.1)
        assert "reload: nothing changed" in self.node1.text(), self.node1.text()[-2000:]
        assert "reload: passwd-file" in self.pop3d.text(), self.pop3d.text()[-2000:]
        assert self.node1.proc.poll() is None and self.pop3d.proc.poll() is None

    @step("smoke: clean stop (ExecStop unmounts, SIGTERM stops the daemons)")
    def stop(self):
        assert self.pop3d.stop() == 0, self.pop3d.text()[-2000:]
        for stop in unit_lines("cofferfs@.service", "ExecStop"):
            sh(*expand(stop, self.instance, self.mnt))
        assert self.fs.proc.wait(timeout=60) == 0, self.fs.text()[-2000:]
        assert "clean shutdown" in self.fs.text()
        for p in self.procs:
            if p.name.startswith("n"):
                assert p.stop() == 0, p.text()[-2000:]

    def cleanup(self):
        for p in self.procs:
            p.stop(timeout=10)
        if os.path.ismount(self.mnt):
            subprocess.run(["umount", "-l", self.mnt], capture_output=True)
        if self.instance:
            shutil.rmtree("/var/lib/coffer/" + self.instance, ignore_errors=True)
        shutil.rmtree(self.tmp, ignore_errors=True)

    @step("purge the packages")
    def purge(self):
        sh("dpkg", "--purge", *PACKAGES)
        for path in ("/usr/sbin/coffer-node", "/etc/coffer/coffer-node.toml",
                     "/etc/systemd/system/multi-user.target.wants/coffer-node.service"):
            assert not os.path.lexists(path), path + " left after purge"
        for path in ("/etc/coffer/coffer.key", "/etc/coffer/node.key_secret",
                     "/etc/coffer/node.key"):
            if os.path.exists(path):
                os.unlink(path)  # made by this test, not by the packages
        if os.path.isdir("/etc/coffer") and not os.listdir("/etc/coffer"):
            os.rmdir("/etc/coffer")


def write_junit(path):
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    suites = ET.Element("testsuites")
    suite = ET.SubElement(suites, "testsuite", name="package", tests=str(len(results)),
                          failures=str(sum(1 for r in results if r[2])))
    for name, secs, err in results:
        case = ET.SubElement(suite, "testcase", classname="package", name=name,
                             time="%.1f" % secs)
        if err:
            ET.SubElement(case, "failure", message=err.splitlines()[0][:200]).text = err
    ET.ElementTree(suites).write(path, encoding="utf-8", xml_declaration=True)


def main():
    if len(sys.argv) < 2:
        print(__doc__)
        return 64
    junit = sys.argv[1]
    debs = None
    if "--debs" in sys.argv:
        debs = sys.argv[sys.argv.index("--debs") + 1]
    if os.geteuid() != 0:
        print("needs root")
        return 1
    os.environ["PATH"] = "/usr/sbin:/usr/bin:/sbin:/bin"
    # The node's store survives a purge (it may be the only copy of objects); the one this test
    # makes goes with it, and a store left by someone else stops the test before it starts.
    if os.path.exists("/var/lib/coffer-node/data.mdb"):
        print("/var/lib/coffer-node holds a node store: not testing the packages over it")
        results.append(("packages: no coffer-node store on this machine", 0,
                        "/var/lib/coffer-node/data.mdb exists"))
        write_junit(junit)
        return 1
    s = Smoke(debs or os.path.join(ROOT, "build-packages"))
    try:
        ok = (debs is not None) or s.build()
        ok = ok and s.install()
        if ok:
            s.installed_state()
            s.analyze()
            if s.configure() and s.start_nodes() and s.mount() and s.pop3():
                s.status_and_metrics()
                s.reload()
                s.stop()
    finally:
        s.cleanup()
        if any(n.startswith("install") and not e for n, _, e in results):
            s.purge()
        shutil.rmtree("/var/lib/coffer-node", ignore_errors=True)
        write_junit(junit)
    failed = [r for r in results if r[2]]
    print("package test: %d steps, %d failed" % (len(results), len(failed)))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
