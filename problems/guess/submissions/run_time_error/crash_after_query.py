print("? 500000", flush=True)
input()
raise SystemExit(3)
