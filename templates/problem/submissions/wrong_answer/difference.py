a, b = map(int, input().split())
print(a - b)  # wrong: the difference, not the sum (right only when b = 0)
