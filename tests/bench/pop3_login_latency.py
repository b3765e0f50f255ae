#!/usr/bin/env python3
"""POP3 login latency of coffer-pop3d with pop3.shared_store off and on, and of a baseline
binary (another build, e.g. before the option existed) when given, measured in the same run on
the same Maildir: the time from sending PASS to the "+OK" (password check, maildrop open and
scan; with the option on also the lease and its settle time). The servers take turns, one
login each, so that load on the machine falls on all of them alike.

    tests/bench/pop3_login_latency.py --coffer build/pop3d/coffer-pop3d \\
        [--baseline OTHER/coffer-pop3d] [--logins 200] [--shared-logins 10] [--messages 50]

Prints median, 90th percentile and mean per server, and the ratio of the medians to the
option-off server. Everything on 127.0.0.1; the servers are stopped by PID."""

import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "pop3d"))
import pop3d_harness as h  # noqa: E402

USER = "alice@example.org"


def one_login(port):
    c = h.Raw(port, timeout=60)
    try:
        assert c.line().startswith(b"+OK")
        assert c.cmd("USER " + USER).startswith(b"+OK")
        started = time.perf_counter()
        reply = c.cmd("PASS " + h.PASSWORDS[USER])
        took = time.perf_counter() - started
        if not reply.startswith(b"+OK"):
            raise RuntimeError("login failed: %r" % reply)
        c.cmd("QUIT")
        return took
    finally:
        c.close()


def start(site, binary, config):
    h.BINARY = binary
    return h.Server(site, config=config, tls=False)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--coffer", required=True, help="the coffer-pop3d binary to measure")
    ap.add_argument("--baseline", help="another coffer-pop3d binary to compare with")
    ap.add_argument("--logins", type=int, default=200, help="logins per server, option off")
    ap.add_argument("--shared-logins", type=int, default=10,
                    help="logins with pop3.shared_store on (each takes the settle time)")
    ap.add_argument("--messages", type=int, default=50, help="messages in the maildrop")
    args = ap.parse_args()

    site = h.Site()
    servers = {}
    try:
        for i in range(args.messages):
            site.deliver(USER, b"Subject: %d\n\n" % i + b"line of the body\n" * 200)
        servers["off"] = start(site, args.coffer, "")
        if args.baseline:
            servers["baseline"] = start(site, args.baseline, "")
        if args.shared_logins > 0:
            servers["on"] = start(site, args.coffer, "[pop3]\nshared_store = true\n")
        samples = {name: [] for name in servers}
        for name, s in servers.items():  # warm the size cache and the page cache
            one_login(s.port)
        for i in range(args.logins):
            for name in ("off", "baseline"):
                if name in servers:
                    samples[name].append(one_login(servers[name].port))
            if i < args.shared_logins:
                samples["on"].append(one_login(servers["on"].port))
        off_median = statistics.median(samples["off"])
        print("%-34s %6s %10s %10s %10s %8s" % ("server", "logins", "median ms", "p90 ms",
                                                 "mean ms", "ratio"))
        labels = {"baseline": "baseline (--baseline)", "off": "pop3.shared_store = false",
                  "on": "pop3.shared_store = true (3 s)"}
        for name in ("baseline", "off", "on"):
            if not samples.get(name):
                continue
            xs = sorted(samples[name])
            p90 = xs[min(len(xs) - 1, int(len(xs) * 0.9))]
            print("%-34s %6d %10.3f %10.3f %10.3f %7.2fx" % (
                labels[name], len(xs), statistics.median(xs) * 1000, p90 * 1000,
                statistics.mean(xs) * 1000, statistics.median(xs) / off_median))
    finally:
        for s in servers.values():
            s.stop()
        site.cleanup()


if __name__ == "__main__":
    main()
