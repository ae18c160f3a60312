# Counts upwards: runs out of queries.
for y in range(1, 10**6 + 1):
    print("?", y, flush=True)
    if input().strip() == "=":
        break
