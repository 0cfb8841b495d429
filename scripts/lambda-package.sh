#!/usr/bin/env bash
# scripts/lambda-package.sh -- builds the Lambda package: the nodereaper
# binary as `bootstrap` for the provided.al2023 runtime, zipped.
#
# Usage: scripts/lambda-package.sh [x86_64|arm64]    (default: x86_64)
#
# Installs cargo-lambda from PyPI into target/cargo-lambda-venv (it brings
# zig, which links against an old glibc), runs
#   cargo lambda build --release --<arch> --output-format zip
# checks with objdump that the binary needs no glibc symbol version above
# 2.34 (Amazon Linux 2023 ships glibc 2.34), and prints the zip's path and
# size. arm64 needs the Rust target aarch64-unknown-linux-gnu installed.
set -euo pipefail

SCRIPT_DIR=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd -P)
REPO=$(cd -- "$SCRIPT_DIR/.." && pwd -P)
VENV=$REPO/target/cargo-lambda-venv
readonly SPEC='cargo-lambda>=1.8,<2'
readonly MAX_GLIBC=2.34

log() { printf 'lambda-package.sh: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

arch=${1:-x86_64}
case $arch in
x86_64) flag=--x86-64 target=x86_64-unknown-linux-gnu ;;
arm64) flag=--arm64 target=aarch64-unknown-linux-gnu ;;
*) die "architecture must be x86_64 or arm64, got '$arch'" ;;
esac
if ! rustup target list --installed 2>/dev/null | grep -qx "$target"; then
    die "the Rust target $target is not installed (rustup target add $target)"
fi

if [[ ! -x $VENV/bin/cargo-lambda ]]; then
    log "installing $SPEC into $VENV"
    python3 -m venv "$VENV" >&2
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check --no-input "$SPEC" >&2
fi
command -v objdump >/dev/null 2>&1 || die "objdump missing (Debian package binutils)"

export PATH=$VENV/bin:$PATH
cd -- "$REPO"
log "cargo lambda build --release $flag --output-format zip"
cargo lambda build --release "$flag" --output-format zip --bin nodereaper >&2

zip=target/lambda/nodereaper/bootstrap.zip
[[ -f $zip ]] || die "$zip was not produced"
tmp=$(mktemp -d)
trap 'rm -rf -- "$tmp"' EXIT
python3 -c 'import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extract("bootstrap", sys.argv[2])' "$zip" "$tmp"

# Highest GLIBC_x.y the binary references.
newest=$(objdump -T "$tmp/bootstrap" | grep -o 'GLIBC_[0-9.]*' | sed 's/GLIBC_//' | sort -V | tail -n 1)
[[ -n $newest ]] || die "no GLIBC symbol versions found in bootstrap (not a glibc binary?)"
if [[ $(printf '%s\n%s\n' "$newest" "$MAX_GLIBC" | sort -V | tail -n 1) != "$MAX_GLIBC" ]]; then
    die "bootstrap needs GLIBC_$newest; Amazon Linux 2023 has $MAX_GLIBC"
fi
printf 'zip=%s\narch=%s\nzip_bytes=%s\nbootstrap_bytes=%s\nnewest_glibc=%s\n' \
    "$zip" "$arch" "$(stat -c %s "$zip")" "$(stat -c %s "$tmp/bootstrap")" "$newest"
