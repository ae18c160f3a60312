#include <iostream>
#include <string>

int main() {
    int lo = 1, hi = 1000000;
    while (lo <= hi) {
        int mid = lo + (hi - lo) / 2;
        std::cout << "? " << mid << std::endl;  // std::endl flushes
        std::string r;
        if (!(std::cin >> r)) return 0;
        if (r == "=") return 0;
        if (r == "<") hi = mid - 1; else lo = mid + 1;
    }
}
