// Crashes with a segmentation fault after reading the input.
#include <cstdio>

int main() {
    long long a, b;
    std::scanf("%lld %lld", &a, &b);
    volatile int* p = nullptr;
    *p = static_cast<int>(a + b);
    std::printf("%lld\n", a + b);
}
