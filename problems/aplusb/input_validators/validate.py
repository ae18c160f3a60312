#!/usr/bin/env python3
# Input validator: exits 42 when stdin is one line "a b" with |a|, |b| <= 10^18.
import re
import sys

data = sys.stdin.read()
if not re.fullmatch(r"(0|-?[1-9]\d*) (0|-?[1-9]\d*)\n", data):
    sys.exit(1)
if any(abs(int(x)) > 10**18 for x in data.split()):
    sys.exit(1)
sys.exit(42)
