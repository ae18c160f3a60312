// Output validator for Derangement (Kattis format):
//   validator input_file answer_file feedback_dir < team_output
// Exit 42 if the team output is a permutation of 1..n without fixed points, 43 otherwise,
// with the reason in feedback_dir/judgemessage.txt.
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

static std::string feedback;

[[noreturn]] static void verdict(bool ok, const std::string& msg) {
    if (FILE* f = std::fopen((feedback + "judgemessage.txt").c_str(), "w")) {
        std::fprintf(f, "%s\n", msg.c_str());
        std::fclose(f);
    }
    std::exit(ok ? 42 : 43);
}

int main(int argc, char** argv) {
    if (argc < 4) return 1;
    feedback = argv[3];
    FILE* in = std::fopen(argv[1], "r");
    long n;
    if (!in || std::fscanf(in, "%ld", &n) != 1) return 1;  // not 42/43: a judge error
    std::vector<char> seen(n + 1, 0);
    for (long i = 1; i <= n; i++) {
        long p;
        if (std::scanf("%ld", &p) != 1) verdict(false, "too few numbers: " + std::to_string(i - 1));
        if (p < 1 || p > n) verdict(false, "position " + std::to_string(i) + ": " + std::to_string(p) + " out of range");
        if (p == i) verdict(false, "position " + std::to_string(i) + " is a fixed point");
        if (seen[p]) verdict(false, std::to_string(p) + " appears twice");
        seen[p] = 1;
    }
    char extra[2];
    if (std::scanf("%1s", extra) == 1) verdict(false, "extra output after n numbers");
    verdict(true, "ok");
}
