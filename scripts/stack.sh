#!/usr/bin/env bash
# scripts/stack.sh -- the local "real" stack used by nodereaper's tests, demo
# and benchmarks: a goiardi Chef server (auth on, in memory) and a moto EC2 /
# Auto Scaling mock, both bound to 127.0.0.1 on free ports.
#
# Usage: scripts/stack.sh COMMAND
#
#   install          Install what is missing (idempotent): the Debian package
#                    goiardi, and moto[server] in a private virtualenv.
#   up               install, then start goiardi and moto unless they already
#                    run and answer; write stack.env; print its path (last
#                    line of stdout).
#   down             Stop exactly the processes this script started; remove
#                    pid/port files and stack.env. Idempotent.
#   down --all       `down` for every stack dir under <repo>/target
#                    (target/stack, target/stack-NAME: the tests', benches'
#                    and demo's); a NODEREAPER_STACK_DIR elsewhere is not seen.
#   env              Print the stack.env path if both services run and answer,
#                    exit 1 otherwise.
#   status           Human-readable state; exit 0 if the stack is fully up.
#   stop-goiardi | start-goiardi | restart-goiardi
#   stop-moto    | start-moto    | restart-moto
#                    Fault-injection helpers: stop / start one service. A
#                    restart reuses the same port (and goiardi the same
#                    --conf-root). start-* and restart-* print the stack.env
#                    path when it exists.
#
# Environment:
#   NODEREAPER_STACK_DIR      state directory (default: <repo>/target/stack)
#   NODEREAPER_GOIARDI_PORT   fixed goiardi port instead of a free one
#   NODEREAPER_MOTO_PORT      fixed moto port instead of a free one
#   NODEREAPER_STACK_TIMEOUT  seconds to wait for a service to answer (60)
#   NODEREAPER_STACK_LOCK_TIMEOUT  seconds to wait for the lock (900)
#   NODEREAPER_MOTO_IAM       N: start moto with IAM enforced after its first N
#                             requests (moto's INITIAL_NO_AUTH_ACTION_COUNT);
#                             use a separate NODEREAPER_STACK_DIR. Remembered in
#                             the stack dir (moto.iam) for restarts; unset: no
#                             IAM enforcement (the default stack).
#
# stack.env holds KEY=VALUE lines (no quotes, no "export"):
#   NODEREAPER_CHEF_URL, NODEREAPER_CHEF_ADMIN_KEY, NODEREAPER_CHEF_ADMIN_NAME,
#   NODEREAPER_GOIARDI_PID, NODEREAPER_GOIARDI_PORT, NODEREAPER_GOIARDI_LOG,
#   NODEREAPER_MOTO_URL, NODEREAPER_MOTO_PORT, NODEREAPER_MOTO_PID,
#   NODEREAPER_MOTO_LOG, NODEREAPER_STACK_DIR, AWS_ENDPOINT_URL,
#   AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION, and
#   NODEREAPER_MOTO_IAM (empty unless IAM is enforced).
# A *_PID value is empty while that service is stopped by stop-*.
#
# Files in the stack dir: lock (flock), moto_server (symlink into the shared
# venv, default <repo>/target/moto-venv, NODEREAPER_MOTO_VENV), goiardi/ (goiardi
# --conf-root: admin.pem, chef-validator.pem, chef-webui.pem), {goiardi,moto}
# .pid / .port / .log (+ .log.1 = previous run), stack.env.
# A service is "ours" only if /proc/PID/cmdline names it AND carries this
# stack dir's paths (--conf-root=<dir>/goiardi, <dir>/moto_server);
# nothing else is ever killed. A lost pid file is recovered by scanning /proc
# for such a process. `up` reuses the previous port of a service when it is
# still free (else picks a new one); start-*/restart-* insist on it.
# `install` needs root or sudo only when apt-get has something to install.
#
# goiardi restart behaviour (observed with Debian goiardi 0.11.10): in memory
# mode goiardi generates NEW admin.pem / chef-validator.pem / chef-webui.pem
# in --conf-root every time it starts, overwriting the old files in place.
# The path in NODEREAPER_CHEF_ADMIN_KEY therefore stays valid, but its
# content changes: clients must re-read the key after a (re)start. All Chef
# objects (nodes, clients, ...) are lost on every restart as well, since
# nothing is persisted. Both are acceptable for fault tests: they must
# re-read the key and re-create the data they need.
#
# Human-readable messages go to stderr; stdout carries only machine output
# (the env file path, or the status report).

set -euo pipefail

SCRIPT_DIR=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd -P)
REPO=$(cd -- "$SCRIPT_DIR/.." && pwd -P)

readonly HOST=127.0.0.1
readonly MOTO_SPEC='moto[server]>=5.2,<5.3'
readonly TIMEOUT=${NODEREAPER_STACK_TIMEOUT:-60}
readonly LOCK_TIMEOUT=${NODEREAPER_STACK_LOCK_TIMEOUT:-900}
# Seconds a running-but-silent service gets before it is declared stale.
readonly STALE_GRACE=10

STACK_DIR=${NODEREAPER_STACK_DIR:-$REPO/target/stack}
# Filled in by init_paths once STACK_DIR exists and is made absolute.
VENV='' MOTO_BIN='' GOIARDI_ROOT='' ENV_FILE='' LOCK_FILE=''

# Mutable state of this invocation.
LOCKED=0        # 1 once we hold the stack lock (fd 9)
APT_UPDATED=0   # 1 once apt-get update ran in this invocation
SPAWNED_PID=''  # set by spawn
REUSED_PORT_PINNED=1  # see pick_port
PORT='' PORT_PINNED=0 # set by pick_port
GOIARDI_BIN=''

log() { printf 'stack.sh: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

usage() {
    sed -n '2,/^$/{s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}" >&2
}

init_paths() {
    mkdir -p -- "$STACK_DIR"
    STACK_DIR=$(cd -- "$STACK_DIR" && pwd -P)
    # One moto virtualenv serves every stack dir (tests may run private
    # stacks); each stack starts moto through its own symlink so that its
    # process can be told apart from another stack's.
    VENV=${NODEREAPER_MOTO_VENV:-$REPO/target/moto-venv}
    MOTO_BIN=$STACK_DIR/moto_server
    GOIARDI_ROOT=$STACK_DIR/goiardi
    ENV_FILE=$STACK_DIR/stack.env
    LOCK_FILE=$STACK_DIR/lock
}

# NODEREAPER_MOTO_IAM of this stack: the environment's (remembered in
# moto.iam), else the remembered one; empty when IAM is not enforced.
moto_iam() {
    local f=$STACK_DIR/moto.iam
    if [[ -n ${NODEREAPER_MOTO_IAM:-} ]]; then
        [[ $NODEREAPER_MOTO_IAM =~ ^[0-9]+$ ]] ||
            die "NODEREAPER_MOTO_IAM must be a number of requests, got '$NODEREAPER_MOTO_IAM'"
        [[ -f $f && $(<"$f") == "$NODEREAPER_MOTO_IAM" ]] || write_atomic "$f" "$NODEREAPER_MOTO_IAM"
        printf '%s' "$NODEREAPER_MOTO_IAM"
    elif [[ -f $f ]]; then
        printf '%s' "$(<"$f")"
    fi
}

# Serialise every mutating command (parallel test binaries all call `up`).
# The lock lives on fd 9; children that outlive us must not inherit it (see
# spawn), otherwise the lock would stay held for as long as they run.
lock() {
    ((LOCKED)) && return 0
    exec 9>>"$LOCK_FILE"
    if ! flock -n 9; then
        log "waiting for another stack.sh holding $LOCK_FILE"
        flock -w "$LOCK_TIMEOUT" 9 || die "timed out after ${LOCK_TIMEOUT}s waiting for $LOCK_FILE"
    fi
    LOCKED=1
}

# ---------------------------------------------------------------------------
# install
# ---------------------------------------------------------------------------

# Run a command as root: directly when we are root, else through sudo.
as_root() {
    if ((EUID == 0)); then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        die "need root (or sudo) to run: $*"
    fi
}

# Install Debian packages; `apt-get update` runs at most once per invocation
# and only when something actually has to be installed. fd 9 (the lock) is
# closed so no daemon started by a maintainer script can inherit it.
apt_install() {
    command -v apt-get >/dev/null 2>&1 || die "apt-get not available; install manually: $*"
    if ((!APT_UPDATED)); then
        log "apt-get update"
        as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q >&2 9>&-
        APT_UPDATED=1
    fi
    log "apt-get install $*"
    as_root env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -q --no-install-recommends "$@" >&2 9>&-
}

deb_installed() {
    local status
    # shellcheck disable=SC2016  # ${Status} is a dpkg-query format field
    status=$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null) || return 1
    [[ $status == *" ok installed" ]]
}

# The Debian package enables and starts a system-wide goiardi (port 4545,
# /etc/goiardi/goiardi.conf, user goiardi). We never use it: stop and disable
# it. Harmless when it did not start (e.g. policy-rc.d in containers).
disable_system_goiardi() {
    if [[ -d /run/systemd/system ]] && command -v systemctl >/dev/null 2>&1; then
        log "disabling the system goiardi.service started by the package"
        as_root systemctl disable --now goiardi.service >&2 2>&1 || true
    elif [[ -x /etc/init.d/goiardi ]]; then
        # Without systemd, invoke-rc.d may have used the init script. Its
        # "stop" only matches processes of user goiardi, never ours.
        if [[ -s /run/goiardi.pid ]]; then
            log "stopping the system goiardi started by the package"
            as_root /etc/init.d/goiardi stop >&2 2>&1 || true
        fi
        if command -v update-rc.d >/dev/null 2>&1; then
            as_root update-rc.d goiardi disable >&2 2>&1 || true
        fi
    fi
}

install_goiardi() {
    if ! deb_installed goiardi && ! command -v goiardi >/dev/null 2>&1; then
        apt_install goiardi
        disable_system_goiardi
    fi
    command -v goiardi >/dev/null 2>&1 || die "goiardi is not on PATH after installation"
}

# The venv counts as installed when it runs and carries our marker with the
# exact requirement it was built for (the marker is written last, so an
# interrupted pip install is redone from scratch).
moto_installed() {
    [[ -x $VENV/bin/moto_server && -f $VENV/.nodereaper-moto-spec ]] || return 1
    [[ $(<"$VENV/.nodereaper-moto-spec") == "$MOTO_SPEC" ]] || return 1
    "$VENV/bin/python" -c '' >/dev/null 2>&1
}

install_moto() {
    moto_installed && return 0
    command -v python3 >/dev/null 2>&1 || apt_install python3 python3-venv
    # Debian splits ensurepip (needed by `python3 -m venv`) into python3-venv.
    if ! python3 -c 'import ensurepip, venv' >/dev/null 2>&1; then
        apt_install python3-venv
    fi
    # Stacks share the venv: build it under its own lock, once.
    mkdir -p -- "$(dirname -- "$VENV")"
    exec 8>"$VENV.lock"
    flock -w "$LOCK_TIMEOUT" 8 || die "timed out waiting for $VENV.lock"
    if moto_installed; then
        exec 8>&-
        return 0
    fi
    # Do not pull the venv from under a running moto of ours.
    stop_service moto
    log "creating virtualenv $VENV with $MOTO_SPEC"
    rm -rf -- "$VENV"
    python3 -m venv "$VENV" >&2
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check --no-input \
        "$MOTO_SPEC" >&2 8>&- 9>&-
    [[ -x $VENV/bin/moto_server ]] || die "moto_server missing from $VENV after pip install"
    printf '%s\n' "$MOTO_SPEC" >"$VENV/.nodereaper-moto-spec"
    exec 8>&-
}

do_install() {
    lock
    # curl probes the services; flock/setsid come from util-linux (essential).
    command -v curl >/dev/null 2>&1 || apt_install curl
    install_goiardi
    install_moto
}

# ---------------------------------------------------------------------------
# processes
# ---------------------------------------------------------------------------

pid_file() { printf '%s/%s.pid' "$STACK_DIR" "$1"; }
port_file() { printf '%s/%s.port' "$STACK_DIR" "$1"; }
log_file() { printf '%s/%s.log' "$STACK_DIR" "$1"; }

# Print the content of a small state file if it is a plain number.
read_number() {
    local v
    [[ -f $1 ]] || return 1
    v=$(<"$1")
    [[ $v =~ ^[0-9]+$ ]] || return 1
    printf '%s' "$v"
}

write_atomic() { # FILE CONTENT
    local tmp
    tmp=$(mktemp "$1.XXXXXX")
    printf '%s' "$2" >"$tmp"
    chmod 0644 "$tmp"
    mv -f -- "$tmp" "$1"
}

# Alive and not a zombie (a zombie is dead for our purposes; our own killed
# children stay zombies until this script exits).
pid_alive() {
    local stat
    stat=$(cat 2>/dev/null "/proc/$1/stat") || return 1
    stat=${stat##*) }
    [[ ${stat%% *} != Z ]]
}

# True when PID is a process this stack started: its command line must name
# the service AND carry this stack's own paths as an argument, so a recycled
# pid, or someone else's goiardi / moto_server, is never touched. Builtins
# only (no fork): it also runs over all of /proc in find_ours.
is_ours() { # SERVICE PID
    local -a args
    local a named=0 mine=0
    mapfile -d '' args 2>/dev/null <"/proc/$2/cmdline" || return 1
    for a in "${args[@]}"; do
        case $1 in
        goiardi)
            [[ ${a##*/} == goiardi ]] && named=1
            [[ $a == "--conf-root=$GOIARDI_ROOT" ]] && mine=1
            ;;
        moto)
            [[ ${a##*/} == moto_server ]] && named=1
            [[ $a == "$MOTO_BIN" ]] && mine=1
            ;;
        *) return 1 ;;
        esac
    done
    ((named && mine))
}

# Look for a process of ours whose pid file was lost or overwritten.
find_ours() { # SERVICE
    local d
    for d in /proc/[0-9]*; do
        if is_ours "$1" "${d#/proc/}"; then
            printf '%s' "${d#/proc/}"
            return 0
        fi
    done
    return 1
}

# Print the pid of the running service, fail if it does not run. A process
# of ours found without a valid pid file is adopted (pid file rewritten).
running_pid() { # SERVICE
    local pid pidf
    pidf=$(pid_file "$1")
    if pid=$(read_number "$pidf") && is_ours "$1" "$pid"; then
        printf '%s' "$pid"
        return 0
    fi
    pid=$(find_ours "$1") || return 1
    log "$1: adopting running pid $pid (pid file was missing or stale)"
    write_atomic "$pidf" "$pid"
    printf '%s' "$pid"
}

http_code() { # URL
    curl -s --noproxy '*' --connect-timeout 1 --max-time 2 \
        -o /dev/null -w '%{http_code}' "$1" 2>/dev/null || true
}

# admin.pem is (re)written by goiardi at every start; wait for a complete key.
admin_key_ready() {
    [[ -s $GOIARDI_ROOT/admin.pem ]] && grep -q -- '-----END' "$GOIARDI_ROOT/admin.pem"
}

# Does the service on PORT answer like ours should?
answering() { # SERVICE PORT
    local code
    case $1 in
    goiardi)
        # 401 proves it is up AND authentication is on.
        code=$(http_code "http://$HOST:$2/nodes")
        [[ $code == 401 ]] && admin_key_ready
        ;;
    moto)
        # /moto-api/ answers 200; any HTTP response means it is serving.
        code=$(http_code "http://$HOST:$2/moto-api/")
        [[ -n $code && $code != 000 ]]
        ;;
    esac
}

healthy() { # SERVICE
    local port
    running_pid "$1" >/dev/null || return 1
    port=$(read_number "$(port_file "$1")") || return 1
    answering "$1" "$port"
}

free_port() {
    python3 -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])'
}

# Is PORT free to listen on? SO_REUSEADDR like the servers themselves use, so
# TIME_WAIT leftovers of a previous run do not count as "in use". Checked
# before every start: otherwise someone else's server on that port could
# answer our readiness probe while our process is about to fail to bind.
port_free() { # PORT
    python3 -c 'import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
try:
    s.bind(("127.0.0.1", int(sys.argv[1])))
except OSError:
    sys.exit(1)' "$1"
}

# Start "$@" fully detached: own session (setsid, immune to the caller's
# terminal / process-group signals), SIGHUP ignored (nohup), cwd in the stack
# dir, stdin from /dev/null, stdout+stderr to LOG and every other inherited
# descriptor closed (our lock on fd 9, pipes leaked by the caller) so that
# `cargo test` never waits on a pipe the daemon keeps open.
# setsid does not fork here (a background job of a non-interactive shell is
# not a process-group leader), so $! is the daemon's pid after exec.
spawn() { # LOG CMD...
    local log=$1
    shift
    (
        cd -- "$STACK_DIR"
        # Nothing from the caller's GOIARDI_* environment may reconfigure it.
        while read -r var; do unset "$var"; done < <(compgen -e | grep '^GOIARDI_' || true)
        for fd in /proc/"$BASHPID"/fd/*; do
            fd=${fd##*/}
            if ((fd > 2)); then { exec {fd}>&-; } 2>/dev/null || true; fi
        done
        exec setsid nohup "$@" </dev/null >"$log" 2>&1
    ) &
    SPAWNED_PID=$!
}

# Wait until the freshly spawned SERVICE answers on PORT.
# Returns 0 when ready, 1 if the process exited, 2 on timeout.
wait_ready() { # SERVICE PID PORT
    local deadline=$((SECONDS + TIMEOUT))
    while :; do
        pid_alive "$2" || return 1
        if answering "$1" "$3"; then
            # By now the exec chain is done: the pid must be the real daemon.
            is_ours "$1" "$2" || return 1
            return 0
        fi
        ((SECONDS < deadline)) || return 2
        sleep 0.2
    done
}

# SIGTERM, wait, SIGKILL. Only called on pids that passed is_ours.
kill_wait() { # PID
    local i
    kill -TERM "$1" 2>/dev/null || return 0
    # A stopped (SIGSTOP) process only acts on SIGTERM once continued.
    kill -CONT "$1" 2>/dev/null || true
    for ((i = 0; i < 100; i++)); do
        pid_alive "$1" || return 0
        sleep 0.1
    done
    log "pid $1 ignored SIGTERM for 10s, sending SIGKILL"
    kill -KILL "$1" 2>/dev/null || return 0
    for ((i = 0; i < 50; i++)); do
        pid_alive "$1" || return 0
        sleep 0.1
    done
    die "pid $1 survived SIGKILL"
}

# Stop the service if it is ours; the port file is kept so that a later
# start reuses the same port. Idempotent.
stop_service() { # SERVICE
    local pidf pid
    pidf=$(pid_file "$1")
    if pid=$(running_pid "$1"); then
        log "stopping $1 (pid $pid)"
        kill_wait "$pid"
    elif pid=$(read_number "$pidf"); then
        log "$1: pid $pid from $pidf is gone or not ours; not killing it"
    fi
    rm -f -- "$pidf"
}

# Port to (re)start SERVICE on: explicit override, else the port it used
# before (restarts keep their URL), else a fresh free port. Sets PORT and
# PORT_PINNED: 1 for an override, and for a previous port unless
# REUSED_PORT_PINNED=0 (`up` may move to a new port if the old one is taken;
# start-*/restart-* must keep the URL the tests already use).
pick_port() { # SERVICE
    local override
    case $1 in
    goiardi) override=${NODEREAPER_GOIARDI_PORT:-} ;;
    moto) override=${NODEREAPER_MOTO_PORT:-} ;;
    esac
    PORT_PINNED=1
    if [[ -n $override ]]; then
        [[ $override =~ ^[0-9]+$ ]] || die "invalid port override for $1: $override"
        PORT=$override
    elif PORT=$(read_number "$(port_file "$1")"); then
        PORT_PINNED=$REUSED_PORT_PINNED
    else
        PORT=$(free_port)
        PORT_PINNED=0
    fi
}

start_service() { # SERVICE
    local svc=$1 log pid rc attempt argv
    log=$(log_file "$svc")
    for attempt in 1 2 3; do
        pick_port "$svc"
        if ! port_free "$PORT"; then
            if ((!PORT_PINNED && attempt < 3)); then
                log "$svc: port $PORT is in use; picking another one"
                rm -f -- "$(port_file "$svc")"
                continue
            fi
            die "$svc: port $HOST:$PORT is already in use by another process"
        fi
        case $svc in
        goiardi)
            [[ -n $GOIARDI_BIN ]] || GOIARDI_BIN=$(command -v goiardi) ||
                die "goiardi not installed; run: $0 install"
            mkdir -p -- "$GOIARDI_ROOT"
            # goiardi writes fresh keys at every start; remove the old ones
            # so that waiting for admin.pem waits for the new key.
            rm -f -- "$GOIARDI_ROOT"/{admin,chef-validator,chef-webui}.pem
            # -A: auth on; no -D/-i: in memory, nothing persisted.
            argv=("$GOIARDI_BIN" -I "$HOST" -P "$PORT" -A -H "$HOST" "--conf-root=$GOIARDI_ROOT")
            ;;
        moto)
            [[ -x $VENV/bin/moto_server ]] || die "moto not installed; run: $0 install"
            ln -sfn -- "$VENV/bin/moto_server" "$MOTO_BIN"
            argv=("$MOTO_BIN" -H "$HOST" -p "$PORT")
            if [[ -n $(moto_iam) ]]; then
                argv=(env "INITIAL_NO_AUTH_ACTION_COUNT=$(moto_iam)" "${argv[@]}")
            fi
            ;;
        esac
        # Keep the previous run's log for post-mortems.
        [[ -f $log ]] && mv -f -- "$log" "$log.1"
        log "starting $svc on $HOST:$PORT (log: $log)"
        spawn "$log" "${argv[@]}"
        pid=$SPAWNED_PID
        write_atomic "$(pid_file "$svc")" "$pid"
        write_atomic "$(port_file "$svc")" "$PORT"
        rc=0
        wait_ready "$svc" "$pid" "$PORT" || rc=$?
        if ((rc == 0)); then
            log "$svc ready: pid $pid, http://$HOST:$PORT"
            return 0
        fi
        # Failed: never leave a half-started process behind.
        if pid_alive "$pid" && is_ours "$svc" "$pid"; then kill_wait "$pid"; fi
        rm -f -- "$(pid_file "$svc")"
        # The port may have been grabbed in between (free port picked, or an
        # old port reused by `up`): retry on a new one. Pinned ports
        # (override, start-*/restart-*) fail at once.
        if ((rc == 1 && !PORT_PINNED && attempt < 3)); then
            rm -f -- "$(port_file "$svc")"
            log "$svc exited during startup; retrying on another port"
            continue
        fi
        break
    done
    if ((rc == 1)); then
        log "$svc exited during startup on port $PORT; last lines of $log:"
    else
        log "$svc did not answer on $HOST:$PORT within ${TIMEOUT}s; last lines of $log:"
    fi
    tail -n 30 -- "$log" >&2 2>/dev/null || true
    exit 1
}

# Make sure SERVICE runs and answers; restart it if stale.
ensure_service() { # SERVICE
    local svc=$1 pid port deadline=$((SECONDS + STALE_GRACE))
    if pid=$(running_pid "$svc"); then
        port=$(read_number "$(port_file "$svc")") || port=''
        while [[ -n $port ]]; do
            if answering "$svc" "$port"; then
                log "$svc already running: pid $pid, http://$HOST:$port"
                return 0
            fi
            ((SECONDS < deadline)) || break
            sleep 0.2
        done
        log "$svc (pid $pid) runs but does not answer: restarting it"
        stop_service "$svc"
    else
        # Stale or missing pid file: nothing of ours is running.
        rm -f -- "$(pid_file "$svc")"
    fi
    start_service "$svc"
}

# ---------------------------------------------------------------------------
# env file
# ---------------------------------------------------------------------------

# (Re)write stack.env from the current pid/port files, atomically, and only
# when the content changes. A stopped service gets an empty *_PID.
write_env() {
    local gport mport gpid mpid content
    gport=$(read_number "$(port_file goiardi)") || die "goiardi has no port; run: $0 up"
    mport=$(read_number "$(port_file moto)") || die "moto has no port; run: $0 up"
    gpid=$(running_pid goiardi) || gpid=
    mpid=$(running_pid moto) || mpid=
    content="NODEREAPER_CHEF_URL=http://$HOST:$gport
NODEREAPER_CHEF_ADMIN_KEY=$GOIARDI_ROOT/admin.pem
NODEREAPER_CHEF_ADMIN_NAME=admin
NODEREAPER_GOIARDI_PID=$gpid
NODEREAPER_GOIARDI_PORT=$gport
NODEREAPER_GOIARDI_LOG=$(log_file goiardi)
NODEREAPER_MOTO_URL=http://$HOST:$mport
NODEREAPER_MOTO_PORT=$mport
NODEREAPER_MOTO_PID=$mpid
NODEREAPER_MOTO_LOG=$(log_file moto)
NODEREAPER_STACK_DIR=$STACK_DIR
AWS_ENDPOINT_URL=http://$HOST:$mport
AWS_ACCESS_KEY_ID=testing
AWS_SECRET_ACCESS_KEY=testing
AWS_REGION=us-east-1
NODEREAPER_MOTO_IAM=$(moto_iam)
"
    if [[ -f $ENV_FILE && $(<"$ENV_FILE")$'\n' == "$content" ]]; then
        return 0
    fi
    write_atomic "$ENV_FILE" "$content"
}

# After stop-*/start-*: keep an existing stack.env in sync (or create it when
# both services answer), then print its path if it exists.
refresh_env() {
    if [[ -f $ENV_FILE ]] || { healthy goiardi && healthy moto; }; then
        write_env
    fi
    if [[ -f $ENV_FILE ]]; then
        printf '%s\n' "$ENV_FILE"
    fi
}

# ---------------------------------------------------------------------------
# commands
# ---------------------------------------------------------------------------

cmd_up() {
    REUSED_PORT_PINNED=0
    do_install
    ensure_service goiardi
    ensure_service moto
    write_env
    printf '%s\n' "$ENV_FILE"
}

cmd_down() {
    lock
    stop_service moto
    stop_service goiardi
    rm -f -- "$(port_file goiardi)" "$(port_file moto)" "$ENV_FILE"
    log "stack is down"
}

cmd_env() {
    lock
    if [[ -f $ENV_FILE ]] && healthy goiardi && healthy moto; then
        printf '%s\n' "$ENV_FILE"
    else
        log "stack is not up (run: $0 up)"
        exit 1
    fi
}

cmd_status() {
    local svc pid port ok=0 state
    printf 'stack dir: %s\n' "$STACK_DIR"
    for svc in goiardi moto; do
        port=$(read_number "$(port_file "$svc")") || port=
        if pid=$(running_pid "$svc"); then
            if [[ -n $port ]] && answering "$svc" "$port"; then
                state="running, answering"
            else
                state="running, NOT answering"
                ok=1
            fi
            printf '%-8s %s (pid %s, http://%s:%s, log %s)\n' \
                "$svc:" "$state" "$pid" "$HOST" "${port:-?}" "$(log_file "$svc")"
        else
            ok=1
            printf '%-8s stopped%s\n' "$svc:" "${port:+ (port $port kept for restart)}"
        fi
    done
    if [[ -f $ENV_FILE ]]; then
        printf 'env file: %s\n' "$ENV_FILE"
    else
        printf 'env file: none\n'
        ok=1
    fi
    return "$ok"
}

cmd_stop() { # SERVICE
    lock
    stop_service "$1"
    if [[ -f $ENV_FILE ]]; then write_env; fi
}

cmd_start() { # SERVICE
    lock
    if healthy "$1"; then
        log "$1 already running"
    else
        stop_service "$1"
        start_service "$1"
    fi
    refresh_env
}

cmd_restart() { # SERVICE
    lock
    stop_service "$1"
    start_service "$1"
    refresh_env
}

# down --all: each stack dir (it has a lock file) stopped by its own `down`.
cmd_down_all() {
    local dir rc=0
    for dir in "$REPO"/target/stack "$REPO"/target/stack-*; do
        [[ -d $dir && -e $dir/lock ]] || continue
        NODEREAPER_STACK_DIR=$dir "${BASH_SOURCE[0]}" down || rc=1
    done
    return "$rc"
}

main() {
    local cmd=${1:-}
    if [[ $cmd == down && ${2:-} == --all ]]; then
        (($# == 2)) || die "down --all takes no other arguments"
        cmd_down_all
        return
    fi
    case $cmd in
    -h | --help | help)
        usage
        return 0
        ;;
    install | up | down | env | status | \
        stop-goiardi | start-goiardi | restart-goiardi | \
        stop-moto | start-moto | restart-moto) ;;
    *)
        log "unknown command: '$cmd' (see: $0 --help)"
        return 2
        ;;
    esac
    (($# == 1)) || die "$cmd takes no arguments"
    init_paths
    case $cmd in
    install) do_install ;;
    up) cmd_up ;;
    down) cmd_down ;;
    env) cmd_env ;;
    status) cmd_status ;;
    stop-*) cmd_stop "${cmd#stop-}" ;;
    start-*) cmd_start "${cmd#start-}" ;;
    restart-*) cmd_restart "${cmd#restart-}" ;;
    esac
}

main "$@"
