#!/usr/bin/env python3
"""Counts test cases in meson's JUnit logs and prints the closing line "N passed, N failed".

Meson expands gtest binaries (protocol: 'gtest') into one JUnit test case per gtest case, so the
count is per test case, not per binary. Skipped cases count as failed: in CI every test must run.
A test binary that crashed before reporting its cases shows up as a failed case of its own.
Exits 1 if anything failed or no test ran at all.
"""
import sys
import xml.etree.ElementTree as ET

passed = failed = 0
failures = []
for path in sys.argv[1:]:
    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError) as e:
        print(f"cannot read {path}: {e}")
        failed += 1
        continue
    for suite in root.iter("testsuite"):
        for case in suite.iter("testcase"):
            bad = [c.tag for c in case if c.tag in ("failure", "error", "skipped")]
            name = f"{suite.get('name')}/{case.get('classname', '')}.{case.get('name')}"
            if bad:
                failed += 1
                failures.append(f"{bad[0]}: {name} ({path.split('/')[0]})")
            else:
                passed += 1
for f in failures:
    print(f)
print(f"{passed} passed, {failed} failed")
sys.exit(1 if failed or passed == 0 else 0)
