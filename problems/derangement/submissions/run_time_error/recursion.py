def f(n):
    return f(n + 1) + 1

f(int(input()))
