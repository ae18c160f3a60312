// Swaps neighbours (and deranges the last three when n is odd): a different valid answer.
#include <cstdio>
#include <numeric>
#include <utility>
#include <vector>

int main() {
    int n;
    std::scanf("%d", &n);
    std::vector<int> p(n + 1);
    std::iota(p.begin(), p.end(), 0);
    for (int i = 1; i + 1 <= n; i += 2) std::swap(p[i], p[i + 1]);
    if (n % 2 == 1) {  // p[n] == n: use n-1, n, n-2 at positions n-2, n-1, n
        p[n - 2] = n - 1, p[n - 1] = n, p[n] = n - 2;
    }
    for (int i = 1; i <= n; i++) std::printf("%d%c", p[i], i == n ? '\n' : ' ');
}
