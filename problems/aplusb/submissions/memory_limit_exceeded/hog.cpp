// Touches 1 GiB in 1 MiB chunks under a 256 MiB limit.
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

int main() {
    long long a, b;
    std::scanf("%lld %lld", &a, &b);
    std::vector<char*> keep;
    for (int i = 0; i < 1024; i++) {
        char* p = static_cast<char*>(std::malloc(1 << 20));
        if (!p) return 3;
        std::memset(p, i, 1 << 20);
        keep.push_back(p);
    }
    std::printf("%lld\n", a + b + keep.size() - 1024);
}
