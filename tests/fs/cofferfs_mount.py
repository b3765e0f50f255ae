"""Helpers for tests that mount the real cofferfs binary (suite 'mount').

A Mount runs `cofferfs STATE MNT -f -o keyfile=...` as a child process, waits for the mount to
appear, and always unmounts in stop() (fusermount3 -u, then umount -l and SIGKILL as a last
resort), so a failing test never leaves a mount behind.
"""
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time

COFFERFS = os.environ.get("COFFERFS", "cofferfs")
KEYTOOL = os.environ.get("COFFER_KEYTOOL", "coffer-keytool")


def free_port():
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_port(port, timeout=20):
    """Waits until something accepts connections on 127.0.0.1:port."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("nothing listens on port %d" % port)


def kill_pidfile(path):
    """Stops the process whose PID is the first word of `path` (SIGTERM, SIGKILL after 5 s)."""
    try:
        with open(path) as f:
            pid = int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return
    try:
        os.kill(pid, signal.SIGTERM)
        for _ in range(50):
            os.kill(pid, 0)
            time.sleep(0.1)
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def make_key(path):
    subprocess.run([KEYTOOL, "init", "-k", path, "--no-passphrase"], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


class Mount:
    def __init__(self, state, mnt, key, options=""):
        self.state, self.mnt, self.key, self.options = state, mnt, key, options
        self.proc = None
        self.log_path = state.rstrip("/") + ".log"

    def start(self, timeout=15):
        os.makedirs(self.mnt, exist_ok=True)
        opts = "keyfile=" + self.key + ",allow_other"
        if self.options:
            opts += "," + self.options
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([COFFERFS, self.state, self.mnt, "-f", "-o", opts],
                                     stdout=self.log, stderr=self.log)
        deadline = time.time() + timeout
        while time.time() < deadline:
            if os.path.ismount(self.mnt):
                return self
            if self.proc.poll() is not None:
                raise RuntimeError("cofferfs exited with %d: %s" % (self.proc.returncode,
                                                                      self.read_log()))
            time.sleep(0.02)
        self.stop()
        raise RuntimeError("cofferfs did not mount within %ds" % timeout)

    def read_log(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode(errors="replace")[-4000:]
        except OSError:
            return ""

    def stop(self, timeout=30):
        if self.proc is None:
            return 0
        if os.path.ismount(self.mnt):
            subprocess.run(["fusermount3", "-u", self.mnt], stderr=subprocess.DEVNULL)
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            subprocess.run(["umount", "-l", self.mnt], stderr=subprocess.DEVNULL)
            self.proc.kill()
            rc = self.proc.wait()
        if os.path.ismount(self.mnt):
            subprocess.run(["umount", "-l", self.mnt], stderr=subprocess.DEVNULL)
        self.proc = None
        self.log.close()
        return rc

    def kill9(self):
        """Simulates a crash: SIGKILL the daemon, then detach the dead mount."""
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()
        subprocess.run(["umount", "-l", self.mnt], stderr=subprocess.DEVNULL)
        subprocess.run(["fusermount3", "-uz", self.mnt], stderr=subprocess.DEVNULL)
        self.proc = None
        self.log.close()

    @property
    def pid(self):
        return self.proc.pid


class TempArea:
    """A temp dir with a key file; removed at close (after unmounting)."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="cofferfs-test-")
        os.chmod(self.dir, 0o755)
        self.key = os.path.join(self.dir, "key")
        make_key(self.key)

    def path(self, *names):
        return os.path.join(self.dir, *names)

    def close(self):
        shutil.rmtree(self.dir, ignore_errors=True)
