#!/usr/bin/env bash
# Checks the native sandbox on a real host, typically a cgroup-v2 Ubuntu 24.04 machine
# that has no compiler and no network: it takes a prebuilt `judge` binary (and,
# optionally, a folder of prebuilt static helpers), runs `judge doctor`, a set of
# `judge sandbox run --json` cases with expected outcomes, checks that nothing is left
# behind after each, runs `judge bench sandbox`, and prints a summary.
#
#   scripts/device-check.sh [JUDGE_BINARY] [PREBUILT_DIR]
#
#   JUDGE_BINARY  default: target/release/judge, else `judge` on PATH
#   PREBUILT_DIR  folder with static `true` and `spin` (see `judge bench sandbox
#                 --prebuilt`); default: build them with gcc -static when gcc exists,
#                 else the benchmark is skipped with a note.
#
# Prepare on a build machine:
#   cargo build --release
#   mkdir -p target/device && gcc -O2 -static -o target/device/true -x c - <<<'int main(void){return 0;}'
#   (spin: see SPIN in src/cli/bench_sandbox.rs, gcc -O2 -static -o target/device/spin)
# Exit code: 0 when every check passed, 1 otherwise. Must run as root.
set -uo pipefail

JUDGE=${1:-}
if [[ -z "$JUDGE" ]]; then
  if [[ -x target/release/judge ]]; then JUDGE=target/release/judge; else JUDGE=$(command -v judge || true); fi
fi
PREBUILT=${2:-}
[[ -x "$JUDGE" ]] || { echo "device-check: no judge binary (pass its path as the first argument)" >&2; exit 2; }
[[ $(id -u) -eq 0 ]] || { echo "device-check: run as root" >&2; exit 2; }

pass=0; fail=0; summary=()
record() { # name ok detail
  if [[ "$2" == 1 ]]; then pass=$((pass+1)); summary+=("PASS  $1  $3"); else fail=$((fail+1)); summary+=("FAIL  $1  $3"); fi
}

section() { printf '\n=== %s\n' "$*"; }

section "host"
uname -a
grep -E ' - cgroup2? ' /proc/self/mountinfo | awk '{print $5, $(NF-2), $NF}'
echo "cgroup of this shell: $(cat /proc/self/cgroup | tr '\n' ' ')"
[[ -f /sys/fs/cgroup/cgroup.controllers ]] && echo "v2 root controllers: $(cat /sys/fs/cgroup/cgroup.controllers)"
[[ -f /sys/fs/cgroup/cgroup.subtree_control ]] && echo "v2 root subtree_control: $(cat /sys/fs/cgroup/cgroup.subtree_control)"
nproc; free -m | head -2

# cgroup v2 inside a container (cgroup namespace): the namespace root holds processes,
# so controllers cannot be delegated to children ("no internal processes" rule). Move
# the root's processes into a leaf, as container runtimes and go-judge do.
if [[ -f /sys/fs/cgroup/cgroup.controllers && ! -d /sys/fs/cgroup/memory ]]; then
  if ! grep -qw memory /sys/fs/cgroup/cgroup.subtree_control 2>/dev/null; then
    if ! echo "+memory +pids" > /sys/fs/cgroup/cgroup.subtree_control 2>/dev/null; then
      echo "device-check: moving the processes of / into /sys/fs/cgroup/init so that memory and pids can be delegated"
      mkdir -p /sys/fs/cgroup/init
      for p in $(cat /sys/fs/cgroup/cgroup.procs); do echo "$p" > /sys/fs/cgroup/init/cgroup.procs 2>/dev/null || true; done
      echo "+memory +pids" > /sys/fs/cgroup/cgroup.subtree_control || echo "device-check: delegation still fails"
    fi
  fi
fi

section "judge doctor"
"$JUDGE" doctor; rc=$?
record "doctor" "$([[ $rc -eq 0 ]] && echo 1 || echo 0)" "exit $rc"

CANARY=/tmp/judge-canary-$RANDOM$RANDOM
echo "canary-$RANDOM-secret" > "$CANARY"; CANARY_SUM=$(sha256sum "$CANARY")

cgroup_leftovers() { # run cgroups whose judge process is gone (a leak)
  # names are <tag>-<pid>.<nonce>-<n> (older versions: <tag>-<pid>-<n>)
  local n=0 d pid
  while read -r d; do
    pid=$(basename "$d" | cut -d- -f2 | cut -d. -f1)
    [[ -d /proc/$pid ]] || n=$((n+1))
  done < <(find /sys/fs/cgroup -maxdepth 3 -type d \( -name 'run-*' -o -name 'proc-*' \) 2>/dev/null)
  echo $n
}

# run NAME EXPECTED_STATUS [sandbox run flags] -- CMD...
run_case() {
  local name=$1 want=$2; shift 2
  local out json status
  out=$("$JUDGE" sandbox run --json "$@" 2>&1 >/dev/null | tail -1)
  json=$out
  status=$(printf '%s' "$json" | sed -n 's/.*"status":"\([a-z_]*\)".*/\1/p')
  local left; left=$(cgroup_leftovers)
  local ok=0
  [[ ",$want," == *",$status,"* && "$left" == 0 ]] && ok=1
  [[ "$(sha256sum "$CANARY")" == "$CANARY_SUM" ]] || { ok=0; json="$json CANARY CHANGED"; }
  echo "$name: $json (leftover cgroups: $left)"
  record "$name" "$ok" "want $want, got ${status:-?}: $json"
}

section "sandbox runs"
PY=/usr/bin/python3
run_case ok ok -- /bin/sh -c 'id -u; ls /; echo hi'
run_case exit-code nonzero_exit -- /bin/sh -c 'exit 3'
run_case tle time_limit --time 1s --wall 5s -- /bin/sh -c 'while :; do :; done'
run_case wall wall_limit --wall 500ms -- /bin/sleep 10
run_case output-limit output_limit --output 1M -- /usr/bin/yes
run_case fork-bomb time_limit,wall_limit,memory_limit --time 1s --wall 2s --pids 32 -- /bin/sh -c 'f() { f | f & }; f; sleep 10'
if [[ -x $PY ]]; then
  run_case mle memory_limit --memory 64M --time 5s -- $PY -c 'x = b"x" * (256 << 20)'
  run_case sparse-512m ok --memory 256M -- $PY -c 'import mmap; m = mmap.mmap(-1, 512 << 20); m[4096] = 1'
  run_case no-network ok -- $PY -c '
import socket
for h, p in [("127.0.0.1", 80), ("169.254.169.254", 80), ("8.8.8.8", 53)]:
    s = socket.socket(); s.settimeout(0.5)
    try: s.connect((h, p)); raise SystemExit("connected to %s" % h)
    except OSError: pass'
  run_case canary-not-visible ok -- $PY -c "
import os
assert not os.path.exists('$CANARY'), 'canary visible'"
else
  echo "python3 not found: skipping the Python cases"
fi
run_case seccomp-unshare ok -- /bin/sh -c 'if unshare -U true 2>/dev/null; then exit 1; fi'
run_case env-allowlist ok -- /bin/sh -c 'test "$(env | sort | tr "\n" " ")" = "HOME=/box LANG=C.UTF-8 PATH=/usr/local/bin:/usr/bin:/bin PWD=/box "'

# TLE accuracy: CPU time reported for a 1 s limit.
json=$("$JUDGE" sandbox run --json --time 1s --wall 5s -- /bin/sh -c 'while :; do :; done' 2>&1 >/dev/null | tail -1)
t=$(printf '%s' "$json" | sed -n 's/.*"time_ms":\([0-9]*\).*/\1/p')
record "tle-precision" "$([[ -n "$t" && $t -ge 1000 && $t -le 1030 ]] && echo 1 || echo 0)" "time_ms=$t for a 1000 ms limit (want 1000..1030)"

section "processes left"
n=$(ps -eo user:12,pid,cmd | awk '$1 ~ /^6[01][0-9][0-9][0-9]$/' | wc -l)
record "no-box-processes" "$([[ $n -eq 0 ]] && echo 1 || echo 0)" "$n processes of box uids 60000-61999"

section "judge bench sandbox"
bench_args=(--runs 500)
if [[ -n "$PREBUILT" ]]; then bench_args+=(--prebuilt "$PREBUILT");
elif ! command -v gcc >/dev/null; then bench_args=(); fi
if ((${#bench_args[@]})); then
  "$JUDGE" bench sandbox "${bench_args[@]}"; rc=$?
  record "bench" "$([[ $rc -eq 0 ]] && echo 1 || echo 0)" "exit $rc (figures above)"
else
  echo "no gcc and no PREBUILT_DIR: benchmark skipped"
  record "bench" 0 "skipped: pass a folder with static true and spin"
fi

rm -f "$CANARY"
section "summary"
printf '%s\n' "${summary[@]}"
echo "passed $pass, failed $fail"
[[ $fail -eq 0 ]]
