// C++20: judged as cpp20 (see submissions.yaml).
#include <iostream>
#include <numeric>
#include <ranges>
#include <vector>

int main() {
    std::vector<long long> v(2);
    for (auto& x : v) std::cin >> x;
    auto sum = std::accumulate(v.begin(), v.end(), 0LL);
    static_assert(std::ranges::range<std::vector<long long>>);
    std::cout << sum << '\n';
}
