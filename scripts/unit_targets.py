#!/usr/bin/env python3
"""Prints the ninja targets that the tests of one suite need, for a build directory.

Used by scripts/test.sh so that the sanitizer build compiles only what the unit suite runs,
instead of every program and integration test. Usage:
  unit_targets.py [--names] BUILD_DIR SUITE [SKIP...]
where SKIP names tests to leave out; with --names, prints the test names instead of targets.
"""
import json
import os
import subprocess
import sys

args = sys.argv[1:]
names_only = args[:1] == ["--names"]
if names_only:
    args = args[1:]
build, suite, skip = args[0], args[1], set(args[2:])
tests = json.loads(subprocess.check_output(["meson", "introspect", build, "--tests"]))
targets = {t["id"]: t for t in json.loads(
    subprocess.check_output(["meson", "introspect", build, "--targets"]))}
wanted = set()
for t in tests:
    if t["name"] in skip or not any(s.split(":")[-1] == suite for s in t["suite"]):
        continue
    if names_only:
        wanted.add(t["name"])
        continue
    for dep in t["depends"]:
        for f in targets.get(dep, {}).get("filename", []):
            wanted.add(os.path.relpath(f, os.path.abspath(build)))
print("\n".join(sorted(wanted)))
