#!/usr/bin/env python3
import re
import sys

data = sys.stdin.read()
if not re.fullmatch(r"[1-9]\d*\n", data) or not 2 <= int(data) <= 10**5:
    sys.exit(1)
sys.exit(42)
