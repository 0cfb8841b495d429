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
chmod 0755 "$tmp/bootstrap" # zipfile does not restore the mode

# Highest GLIBC_x.y the binary references.
newest=$(objdump -T "$tmp/bootstrap" | grep -o 'GLIBC_[0-9.]*' | sed 's/GLIBC_//' | sort -V | tail -n 1)
[[ -n $newest ]] || die "no GLIBC symbol versions found in bootstrap (not a glibc binary?)"
if [[ $(printf '%s\n%s\n' "$newest" "$MAX_GLIBC" | sort -V | tail -n 1) != "$MAX_GLIBC" ]]; then
    die "bootstrap needs GLIBC_$newest; Amazon Linux 2023 has $MAX_GLIBC"
fi

# Init duration of this build on this machine (x86_64 only): from exec until
# the bootstrap's first GET /runtime/invocation/next on a local stand-in for
# the Runtime API (nothing else is contacted before the first event).
init_ms=-
if [[ $arch == x86_64 && $(uname -m) == x86_64 ]]; then
    init_ms=$(python3 - "$tmp/bootstrap" <<'PY'
import os, socket, subprocess, sys, time
s = socket.socket()
s.bind(("127.0.0.1", 0))
s.listen(1)
env = {"PATH": "/usr/bin:/bin", "AWS_LAMBDA_RUNTIME_API": "127.0.0.1:%d" % s.getsockname()[1],
       "AWS_LAMBDA_FUNCTION_NAME": "nodereaper", "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "128",
       "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST", "AWS_REGION": "us-east-1",
       "NODEREAPER_QUEUE_URL": "https://sqs.us-east-1.amazonaws.com/123456789012/nodereaper",
       "NODEREAPER_JOURNAL_S3_BUCKET": "journal"}
s.settimeout(10)
t0 = time.monotonic()
p = subprocess.Popen([sys.argv[1]], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
try:
    conn, _ = s.accept()
    conn.recv(1024)
    print(round((time.monotonic() - t0) * 1000, 1))
finally:
    p.kill()
    p.wait()
PY
) || init_ms=-
fi
printf 'zip=%s\narch=%s\nzip_bytes=%s\nbootstrap_bytes=%s\nnewest_glibc=%s\ninit_ms=%s\n' \
    "$zip" "$arch" "$(stat -c %s "$zip")" "$(stat -c %s "$tmp/bootstrap")" "$newest" "$init_ms"
