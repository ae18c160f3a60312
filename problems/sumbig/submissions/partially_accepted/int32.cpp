// 32-bit arithmetic: right on group 1 only (30 points).
#include <cstdio>

int main() {
    int n;
    std::scanf("%d", &n);
    int s = 0;
    long long x;
    for (int i = 0; i < n; i++) {
        std::scanf("%lld", &x);
        s += static_cast<int>(x);
    }
    std::printf("%d\n", s);
}
