#!/usr/bin/env python3
import re
import sys

data = sys.stdin.read()
m = re.fullmatch(r"(-?\d+) (-?\d+)\n", data)
if not m or int(m.group(2)) == 0 or any(abs(int(g)) > 10**9 for g in m.groups()):
    sys.exit(1)
sys.exit(42)
