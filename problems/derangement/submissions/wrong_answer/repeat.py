# Passes 2 and 3 by luck of the rotation, then repeats a number for n >= 4.
n = int(input())
if n <= 3:
    print(*range(2, n + 1), 1)
else:
    print(2, 1, *([1] * (n - 2)))
