#!/usr/bin/env bash
# scripts/demo.sh -- see nodereaper work, end to end, on this machine.
#
# Usage: scripts/demo.sh
#
# 1. Starts the local stack with scripts/stack.sh (a goiardi Chef Infra Server
#    and a moto AWS mock on 127.0.0.1; installs the Debian package goiardi and
#    moto in a virtualenv when missing, which needs root or sudo once). The
#    demo uses its own stack directory, target/stack-demo, so it never
#    disturbs the test suite's stack.
# 2. Builds nodereaper and the demo (cargo build, dev profile).
# 3. Runs examples/demo.rs: an Auto Scaling group of 4 instances, each
#    registered in Chef, scales in to 1; `nodereaper setup` wires the SNS
#    topic and SQS queue, `nodereaper run` deregisters the 3 terminated
#    instances, and the demo checks that nothing else was touched; with
#    [vault] and [webhook] configured, it also checks that the terminated
#    clients left the demo's chef-vault item and that its own local
#    receiver got one signed, templated POST per terminated instance (exit
#    status 1 when any check fails).
#
# The demo can be run again at any time; each run starts from a clean slate.
# Its configuration and journal stay in target/stack-demo/demo for you to
# explore. Stop the stack with:
#   NODEREAPER_STACK_DIR=target/stack-demo scripts/stack.sh down
#
# Environment:
#   NODEREAPER_STACK_DIR   stack directory (default: <repo>/target/stack-demo)
#   CARGO_TARGET_DIR       honoured, like cargo does
#
# Needs: Rust >= 1.94.1 (https://rustup.rs), a C compiler (build-essential),
# python3, curl; on Debian the rest is installed by scripts/stack.sh.

set -euo pipefail

SCRIPT_DIR=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd -P)
REPO=$(cd -- "$SCRIPT_DIR/.." && pwd -P)
cd -- "$REPO"

export NODEREAPER_STACK_DIR=${NODEREAPER_STACK_DIR:-$REPO/target/stack-demo}
TARGET_DIR=${CARGO_TARGET_DIR:-$REPO/target}

step() { printf '\n==> %s\n' "$*"; }
die() { printf 'demo.sh: error: %s\n' "$*" >&2; exit 1; }

if (($# > 0)); then
    case $1 in
    -h | --help) sed -n '2,/^$/{s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"; exit 0 ;;
    *) die "unknown argument '$1' (see: $0 --help)" ;;
    esac
fi

command -v cargo >/dev/null 2>&1 ||
    die "cargo not found: install Rust >= 1.94.1 first (https://rustup.rs: curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh), then open a new shell"
command -v cc >/dev/null 2>&1 ||
    die "no C compiler (cc) to build nodereaper's crypto: sudo apt-get install build-essential"

started=$SECONDS

step "Starting the local stack (goiardi + moto) in ${NODEREAPER_STACK_DIR#"$REPO"/}"
env_file=$(scripts/stack.sh up | tail -n 1)
[[ -f $env_file ]] || die "scripts/stack.sh up printed no env file"
echo "stack env file: $env_file"

# The dev profile: a cold build takes half the time of --release (see
# docs/BENCHMARKS.md, "Build"), and the demo is bound by the servers, not by
# nodereaper's own speed.
step "Building nodereaper and the demo (cargo build; the first build takes a few minutes)"
cargo build --quiet --bin nodereaper --example demo

demo_started=$SECONDS
step "Running the demo"
rc=0
"$TARGET_DIR/debug/examples/demo" \
    --env-file "$env_file" \
    --bin "$TARGET_DIR/debug/nodereaper" \
    --work-dir "$NODEREAPER_STACK_DIR/demo" || rc=$?

printf '\ndemo.sh: %ss in all (the demo itself: %ss). The stack keeps running; stop it with:\n' \
    "$((SECONDS - started))" "$((SECONDS - demo_started))"
printf '  NODEREAPER_STACK_DIR=%s scripts/stack.sh down\n' "${NODEREAPER_STACK_DIR#"$REPO"/}"
exit "$rc"
