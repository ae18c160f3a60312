#!/usr/bin/env python3
# Input validator: exit 42 when the input is valid, anything else otherwise.
import re
import sys

data = sys.stdin.read()
if not re.fullmatch(r"-?\d+ -?\d+\n", data):
    sys.exit(1)
a, b = map(int, data.split())
if not all(-10**9 <= x <= 10**9 for x in (a, b)):
    sys.exit(1)
sys.exit(42)
