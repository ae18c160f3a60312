#!/usr/bin/env bash
# Installs what `judge` needs on a fresh Debian/Ubuntu machine, then builds and
# installs the binary to /usr/local/bin/judge. Idempotent: run it again at will.
#
#   ./install.sh              toolchains + build + install
#   ./install.sh --deps-only  toolchains only (CI uses this before `cargo test`)
set -euo pipefail
cd "$(dirname "$0")"

deps_only=0
[[ "${1:-}" == "--deps-only" ]] && deps_only=1

SUDO=""
if [[ $(id -u) -ne 0 ]]; then SUDO="sudo"; fi

# command -> Debian package that provides it
declare -A want=(
  [gcc]=gcc
  [g++]=g++
  [make]=make
  [python3]=python3
  [javac]=openjdk-17-jdk-headless
  [go]=golang-go
  [ruby]=ruby
  [php]=php-cli
  [node]=nodejs
  [tmux]=tmux
  [pkg-config]=pkg-config
)
missing=()
for cmd in "${!want[@]}"; do
  if ! command -v "$cmd" >/dev/null 2>&1; then missing+=("${want[$cmd]}"); fi
done
# Debian's own python3 is what the sandbox mounts (/usr/bin/python3), whatever PATH says.
[[ -x /usr/bin/python3 ]] || missing+=(python3)
[[ -x /usr/bin/go || -x /usr/lib/go/bin/go ]] || missing+=(golang-go)

if ((${#missing[@]})); then
  echo "install.sh: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

if ((deps_only)); then exit 0; fi

if ! command -v cargo >/dev/null 2>&1; then
  echo "install.sh: cargo not found; install Rust 1.87 or newer with rustup (https://rustup.rs; Debian 12 and Ubuntu 24.04 ship older versions) and re-run" >&2
  exit 1
fi
rust_version=$(rustc --version | awk '{print $2}')
IFS=. read -r rust_major rust_minor _ <<<"$rust_version"
if ((rust_major < 1 || (rust_major == 1 && rust_minor < 87))); then
  echo "install.sh: Rust $rust_version is too old; judge needs 1.87 or newer (rustup update, or https://rustup.rs)" >&2
  exit 1
fi
cargo build --release --locked
$SUDO install -m 0755 target/release/judge /usr/local/bin/judge
echo "install.sh: installed $(/usr/local/bin/judge --version) to /usr/local/bin/judge"
