#!/usr/bin/env python3
"""Interactor for Guess the Number (Kattis interactive output validator).

Invoked as: validator.py input_file answer_file feedback_dir < team_output > team_input
Exit 42: found within 25 queries; exit 43: anything else (message in judgemessage.txt).
"""
import os
import sys

MAX_QUERIES = 25


def verdict(ok, msg):
    with open(os.path.join(sys.argv[3], "judgemessage.txt"), "w") as f:
        f.write(msg + "\n")
    # os._exit: no flush of stdout at exit, which could fail on a closed pipe and turn
    # the exit code into 120 (a judge error).
    os._exit(42 if ok else 43)


def main():
    with open(sys.argv[1]) as f:
        secret = int(f.read())
    for q in range(1, MAX_QUERIES + 1):
        line = sys.stdin.readline()
        if not line:
            verdict(False, f"program ended after {q - 1} queries without finding the number")
        parts = line.split()
        if len(parts) != 2 or parts[0] != "?" or not parts[1].lstrip("-").isdigit():
            verdict(False, f"query {q}: malformed line {line[:40]!r}")
        y = int(parts[1])
        if not 1 <= y <= 10**6:
            verdict(False, f"query {q}: {y} out of range")
        reply = "<" if secret < y else ">" if secret > y else "="
        try:
            sys.stdout.write(reply + "\n")
            sys.stdout.flush()
        except BrokenPipeError:
            verdict(False, f"query {q}: program stopped reading")
        if reply == "=":
            if sys.stdin.read(1):
                verdict(False, "output after the number was found")
            verdict(True, f"found {secret} in {q} queries")
    verdict(False, f"more than {MAX_QUERIES} queries")


main()
