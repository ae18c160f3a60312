// Answers right, but only after spinning far past the time limit.
#include <cstdio>

int main() {
    long long a, b;
    std::scanf("%lld %lld", &a, &b);
    volatile unsigned long long x = 0;
    for (;;) x = x + 1;
    std::printf("%lld\n", a + b);
}
