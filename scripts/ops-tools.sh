#!/usr/bin/env bash
# scripts/ops-tools.sh -- the linters the packaging tests need, installed the
# way scripts/stack.sh installs the stack (idempotent, from the package
# registries, nothing by hand):
#   cfn-lint  (PyPI) in the shared moto virtualenv (target/moto-venv): moto's
#             CloudFormation support depends on it, so `stack.sh install`
#             normally brings it; pip-installed there when missing;
#   promtool  from Debian's `prometheus` package, installed without starting
#             the Prometheus server it ships (policy-rc.d), whose unit is then
#             disabled.
#
# Usage: scripts/ops-tools.sh install   prints CFN_LINT=PATH and PROMTOOL=PATH
set -euo pipefail

SCRIPT_DIR=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd -P)
REPO=$(cd -- "$SCRIPT_DIR/.." && pwd -P)
VENV=${NODEREAPER_MOTO_VENV:-$REPO/target/moto-venv}
readonly CFN_LINT_SPEC='cfn-lint>=1,<2'

log() { printf 'ops-tools.sh: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

as_root() {
    if ((EUID == 0)); then "$@"; elif command -v sudo >/dev/null 2>&1; then sudo "$@"; else die "need root (or sudo) for: $*"; fi
}

install_cfn_lint() {
    "$SCRIPT_DIR/stack.sh" install
    if [[ ! -x $VENV/bin/cfn-lint ]]; then
        exec 8>"$VENV.lock"
        flock -w 900 8 || die "timed out waiting for $VENV.lock"
        if [[ ! -x $VENV/bin/cfn-lint ]]; then
            log "pip install $CFN_LINT_SPEC into $VENV"
            "$VENV/bin/python" -m pip install -q --disable-pip-version-check --no-input "$CFN_LINT_SPEC" >&2 8>&-
        fi
        exec 8>&-
    fi
    [[ -x $VENV/bin/cfn-lint ]] || die "cfn-lint missing from $VENV"
}

install_promtool() {
    command -v promtool >/dev/null 2>&1 && return 0
    command -v apt-get >/dev/null 2>&1 || die "apt-get not available; install promtool (Debian package prometheus) by hand"
    exec 7>"$REPO/target/ops-tools.lock"
    flock -w 900 7 || die "timed out waiting for target/ops-tools.lock"
    if ! command -v promtool >/dev/null 2>&1; then
        # Keep the package's Prometheus server from starting (it would listen
        # on every interface): a temporary policy-rc.d refuses service starts.
        local policy=/usr/sbin/policy-rc.d added=0
        if [[ ! -e $policy ]]; then
            as_root sh -c "printf '#!/bin/sh\nexit 101\n' > $policy && chmod 0755 $policy"
            added=1
        fi
        log "apt-get install prometheus (for promtool)"
        as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q >&2 7>&- || true
        local rc=0
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends prometheus >&2 7>&- || rc=$?
        if ((added)); then as_root rm -f -- "$policy"; fi
        ((rc == 0)) || die "apt-get install prometheus failed"
        if [[ -d /run/systemd/system ]] && command -v systemctl >/dev/null 2>&1; then
            as_root systemctl disable --now prometheus.service >&2 2>&1 || true
        elif command -v update-rc.d >/dev/null 2>&1; then
            as_root update-rc.d prometheus disable >&2 2>&1 || true
        fi
    fi
    exec 7>&-
    command -v promtool >/dev/null 2>&1 || die "promtool is not on PATH after installing prometheus"
}

case ${1:-} in
install)
    mkdir -p -- "$REPO/target"
    install_cfn_lint
    install_promtool
    printf 'CFN_LINT=%s\nPROMTOOL=%s\n' "$VENV/bin/cfn-lint" "$(command -v promtool)"
    ;;
*)
    sed -n '2,/^$/{s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}" >&2
    exit 2
    ;;
esac
