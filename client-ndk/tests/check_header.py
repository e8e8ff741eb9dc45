#!/usr/bin/env python3
"""Checks include/dmaload.h against what libdmaload really exports, so they never drift.

  check_header.py HEADER LIBRARY.so FFI_SOURCE.rs

1. The set of ADmaLoad* functions declared in the header equals the set of ADmaLoad*
   symbols the shared library exports (nm -D --defined-only).
2. Every function has the same number of parameters in the header and in the Rust
   `extern "C"` definition.
Exits non-zero with a list of differences.
"""
import re
import subprocess
import sys


def strip_c_comments(text):
    text = re.sub(r"/\*.*?\*/", " ", text, flags=re.S)
    return re.sub(r"//[^\n]*", " ", text)


def count_params(params):
    params = params.strip()
    if params in ("", "void"):
        return 0
    depth, count = 0, 1
    for ch in params:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif ch == "," and depth == 0:
            count += 1
    return count


def balanced_params(text, start):
    """Text between the '(' at `start` and its matching ')'."""
    depth = 0
    for i in range(start, len(text)):
        if text[i] == "(":
            depth += 1
        elif text[i] == ")":
            depth -= 1
            if depth == 0:
                return text[start + 1 : i]
    raise ValueError("unbalanced parentheses")


def header_functions(path):
    text = strip_c_comments(open(path).read())
    # Only top-level declarations: skip the callbacks struct's function-pointer members.
    text = re.sub(r"typedef struct ADmaLoadCallbacks \{.*?\} ADmaLoadCallbacks;", " ", text, flags=re.S)
    funcs = {}
    for m in re.finditer(r"\b(ADmaLoad\w*)\s*\(", text):
        name = m.group(1)
        funcs[name] = count_params(balanced_params(text, m.end() - 1))
    return funcs


def rust_functions(path):
    text = open(path).read()
    funcs = {}
    for m in re.finditer(r'#\[no_mangle\]\s*pub\s+(?:unsafe\s+)?extern\s+"C"\s+fn\s+(\w+)\s*\(', text):
        funcs[m.group(1)] = count_params(re.sub(r"//[^\n]*", "", balanced_params(text, m.end() - 1)).rstrip().rstrip(","))
    return funcs


def exported_symbols(lib):
    out = subprocess.run(["nm", "-D", "--defined-only", lib], check=True, capture_output=True, text=True).stdout
    return {line.split()[-1] for line in out.splitlines() if line.split() and line.split()[-1].startswith("ADmaLoad")}


def main():
    header, lib, ffi = sys.argv[1:4]
    declared = header_functions(header)
    exported = exported_symbols(lib)
    defined = rust_functions(ffi)
    problems = []
    for name in sorted(set(declared) - exported):
        problems.append(f"declared in the header but not exported: {name}")
    for name in sorted(exported - set(declared)):
        problems.append(f"exported but not declared in the header: {name}")
    for name in sorted(set(declared) & set(defined)):
        if declared[name] != defined[name]:
            problems.append(f"{name}: {declared[name]} parameters in the header, {defined[name]} in Rust")
    for name in sorted(set(defined) - set(declared)):
        problems.append(f"defined in Rust but not declared in the header: {name}")
    for p in problems:
        print("header check:", p)
    print(f"header check: {len(declared)} functions declared, {len(exported)} exported, {len(problems)} problems")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
