// Wrong: 32-bit ints overflow on the large cases.
#include <cstdio>

int main() {
    int a, b;
    std::scanf("%d %d", &a, &b);
    std::printf("%d\n", a + b);
}
