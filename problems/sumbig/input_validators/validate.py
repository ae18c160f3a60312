#!/usr/bin/env python3
import sys

lines = sys.stdin.read().split("\n")
try:
    n = int(lines[0])
    xs = list(map(int, lines[1].split()))
except (ValueError, IndexError):
    sys.exit(1)
if not (1 <= n <= 10**5 and len(xs) == n and all(abs(x) <= 10**12 for x in xs) and lines[2:] == [""]):
    sys.exit(1)
sys.exit(42)
