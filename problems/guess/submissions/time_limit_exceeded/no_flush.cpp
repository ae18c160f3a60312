// Writes a query without flushing, then waits for the reply forever: the judge must end
// this by its wall-clock (idleness) limit, not hang.
#include <cstdio>

int main() {
    std::printf("? 500000\n");  // stays in the stdio buffer
    char r[8];
    if (std::scanf("%7s", r) != 1) return 0;
    return 0;
}
