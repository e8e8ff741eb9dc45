#!/usr/bin/env python3
"""Runs the VTS binary the way Tradefed's RustBinaryTest does and parses its output with the
patterns of Tradefed's RustTestResultParser (AOSP tools/tradefederation, test_framework/
com/android/tradefed/testtype/rust/, as of 2025-03; the patterns have been the same since
2023-04, i.e. in every Tradefed that runs Android 15's VTS):

  - `<bin> -Zunstable-options --report-time [FILTER] --exact [--skip S]... --list`: tests are
    the lines ending in ": test"; older Tradefed reads "N tests, M benchmarks" on the last line;
  - the same without --list: "running N tests", one result line per test, "test result: ...".

Usage: tradefed_rust.py BINARY      (on a host: device groups must come out "ignored")
Exit status 1 if the binary's answers would not parse or disagree with each other.
"""
import re
import subprocess
import sys

# RustTestResultParser
ONE_LINE_RESULT = re.compile(r"test (\S*) (?:- should panic )? *\.\.\. (\S*)(?: <(\d+\.\d+)s>)?")
IGNORE_RESULT = re.compile(r"test (\S*) +(?:- should panic )?\.\.\. (ignored).*")
RUNNING = re.compile(r"running (.*) test[s]?")
COMPLETE = re.compile(r"test result: (.*) (\d+) passed; (\d+) failed; (\d+) ignored;.*")
# RustTestBase (before 2023): the test count from the last line of --list
LIST_COUNT = re.compile(r"(\d+) tests?, (\d+) benchmarks?")
FLAGS = ["-Zunstable-options", "--report-time"]


def run(binary, args):
    r = subprocess.run([binary] + FLAGS + args, capture_output=True, text=True,
                       env={"RUST_BACKTRACE": "full", "PATH": "/usr/bin:/bin",
                            "DMALOAD_VTS_PROP_CASES": "20"})
    # adb shell merges stdout and stderr
    return r.returncode, (r.stdout + r.stderr).splitlines()


def listing(binary, filter_args):
    rc, lines = run(binary, filter_args + ["--list"])
    tests = [l[: -len(": test")] for l in lines if l.endswith(": test")]
    last = [l for l in lines if l.strip()][-1:] or [""]
    m = LIST_COUNT.fullmatch(last[0])
    return rc, tests, (int(m.group(1)) if m else None)


def results(binary, filter_args):
    rc, lines = run(binary, filter_args)
    started, got, complete = None, {}, None
    for line in lines:
        if m := IGNORE_RESULT.fullmatch(line):
            got[m.group(1)] = "ignored"
        elif m := ONE_LINE_RESULT.fullmatch(line):
            got[m.group(1)] = m.group(2)
        elif m := RUNNING.fullmatch(line):
            started = int(m.group(1))
        elif m := COMPLETE.fullmatch(line):
            complete = tuple(int(m.group(i)) for i in (2, 3, 4))
    return rc, started, got, complete


def main():
    binary = sys.argv[1]
    failures = []

    def check(cond, what):
        print(f"  {'ok' if cond else 'FAILED'}: {what}")
        if not cond:
            failures.append(what)

    rc, tests, count = listing(binary, ["--exact"])
    check(rc == 0 and len(tests) >= 2 and count == len(tests),
          f"--list: {len(tests)} tests ({', '.join(tests)}), count line {count}")
    if not tests:
        return 1
    one = "parcel-decoding" if "parcel-decoding" in tests else tests[0]
    rc, listed, count = listing(binary, [one, "--exact"])
    check(listed == [one] and count == 1, f"--list with filter {one} --exact lists only it ({listed})")

    rc, started, got, complete = results(binary, [one, "--exact"])
    check(rc == 0 and started == 1 and got == {one: "ok"} and complete == (1, 0, 0),
          f"{one} --exact: running {started}, results {got}, summary {complete}")

    skips = [a for t in tests if t != one for a in ("--skip", t)]
    rc, started, got, complete = results(binary, ["--exact"] + skips)
    check(rc == 0 and got == {one: "ok"}, f"--skip every other test: results {got}")

    rc, started, got, complete = results(binary, ["--exact"])
    ok = [t for t, s in got.items() if s == "ok"]
    ignored = [t for t, s in got.items() if s == "ignored"]
    check(started == len(tests) and set(got) == set(tests) and complete == (len(ok), 0, len(ignored)),
          f"all tests: running {started}, {len(ok)} ok, {len(ignored)} ignored ({', '.join(ignored)}), "
          f"summary {complete}")
    check(rc == 0 and not [s for s in got.values() if s not in ("ok", "ignored")],
          "every result is ok or ignored (device tests are ignored off the device)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
