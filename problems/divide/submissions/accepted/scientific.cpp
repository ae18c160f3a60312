// Prints in scientific notation: accepted, since any float format is fine with a tolerance.
#include <cstdio>

int main() {
    long long a, b;
    std::scanf("%lld %lld", &a, &b);
    std::printf("%.9e\n", static_cast<double>(a) / static_cast<double>(b));
}
