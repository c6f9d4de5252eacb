#!/usr/bin/env bash
# The local AWS-API server (moto) the AWS adapters are tested against.
#
#   infra/moto.sh start [PORT]   install the test tools into .venv if needed, start moto_server
#                                on 127.0.0.1:PORT (default 5000) in the background, wait until
#                                it answers, and print `export SLUICE_AWS_ENDPOINT=...` on stdout
#                                (so `eval "$(infra/moto.sh start)"` works; messages go to stderr)
#   infra/moto.sh stop           stop the server this script started
#   infra/moto.sh status         say whether it runs
#
# Needs only python3 (with pip or venv) and curl. The virtualenv is .venv at the repo root; pip
# runs only when infra/requirements-test.txt changed (its hash is kept in .venv). The server's
# log is target/moto.log, its pid target/moto.pid.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
REQUIREMENTS="$ROOT/infra/requirements-test.txt"
STAMP="$VENV/.sluice-requirements.sha256"
RUN_DIR="$ROOT/target"
LOG="$RUN_DIR/moto.log"
PID_FILE="$RUN_DIR/moto.pid"
READY_TIMEOUT=30

say() { echo "moto.sh: $*" >&2; }
die() { say "error: $*"; exit 1; }

command -v python3 >/dev/null || die "python3 is required"
command -v curl >/dev/null || die "curl is required"

file_hash() {
    python3 -c 'import hashlib, sys; print(hashlib.sha256(open(sys.argv[1], "rb").read()).hexdigest())' "$1"
}

# Creates .venv (with pip) if it is missing. An existing one is never deleted: it may be
# someone's working environment; a broken one is reported instead.
ensure_venv() {
    if [ -x "$VENV/bin/python" ] && "$VENV/bin/python" -m pip --version >/dev/null 2>&1; then
        return
    fi
    [ -e "$VENV" ] && die "$VENV exists but has no working python/pip; remove it and run again"
    say "creating $VENV"
    if ! python3 -m venv "$VENV" >/dev/null 2>&1; then
        # Debian/Ubuntu without python3-venv have no ensurepip: make a bare venv and let the
        # system pip install pip into it.
        rm -rf "$VENV"
        python3 -m venv --without-pip "$VENV" || die "python3 cannot create a virtualenv"
        python3 -m pip --python "$VENV/bin/python" install --quiet pip \
            || die "cannot install pip into $VENV (install python3-venv or python3-pip)"
    fi
}

# Installs infra/requirements-test.txt unless the stamp says it already is.
ensure_requirements() {
    ensure_venv
    local want
    want="$(file_hash "$REQUIREMENTS")"
    if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ] && [ -x "$VENV/bin/moto_server" ]; then
        return
    fi
    say "installing $(basename "$REQUIREMENTS") into $VENV (about a minute the first time)"
    PIP_DISABLE_PIP_VERSION_CHECK=1 "$VENV/bin/python" -m pip install --quiet -r "$REQUIREMENTS" >&2 \
        || die "pip install -r $REQUIREMENTS failed"
    echo "$want" >"$STAMP"
}

# True if something accepts TCP connections on 127.0.0.1:$1.
port_in_use() {
    python3 - "$1" <<'PY'
import socket, sys
s = socket.socket()
s.settimeout(1)
sys.exit(0 if s.connect_ex(("127.0.0.1", int(sys.argv[1]))) == 0 else 1)
PY
}

# True if a moto server answers on 127.0.0.1:$1.
moto_answers() {
    [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://127.0.0.1:$1/moto-api/" || true)" = "200" ]
}

# The pid in target/moto.pid if that process is alive and is a moto server.
running_pid() {
    [ -f "$PID_FILE" ] || return 1
    local pid
    pid="$(cat "$PID_FILE")"
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 1
    ps -p "$pid" -o command= 2>/dev/null | grep -q moto_server || return 1
    echo "$pid"
}

start() {
    local port="${1:-5000}" pid
    [[ "$port" =~ ^[0-9]+$ ]] && [ "$port" -ge 1 ] && [ "$port" -le 65535 ] || die "bad port: $port"
    local endpoint="http://127.0.0.1:$port"
    if port_in_use "$port"; then
        if moto_answers "$port"; then
            say "a moto server already answers on $endpoint; using it"
            echo "export SLUICE_AWS_ENDPOINT=$endpoint"
            return
        fi
        die "port $port is taken by something that is not moto; stop it or pass another port: infra/moto.sh start PORT"
    fi
    ensure_requirements
    mkdir -p "$RUN_DIR"
    if pid="$(running_pid)"; then
        die "moto (pid $pid) from an earlier start is running on another port; run infra/moto.sh stop first"
    fi
    say "starting moto_server on $endpoint (log: $LOG)"
    # infra/moto_server.py is moto_server with atomic, partition-local DynamoDB requests.
    nohup "$VENV/bin/python" "$ROOT/infra/moto_server.py" -H 127.0.0.1 -p "$port" >"$LOG" 2>&1 </dev/null &
    pid=$!
    echo "$pid" >"$PID_FILE"
    local deadline=$((SECONDS + READY_TIMEOUT))
    until moto_answers "$port"; do
        if ! kill -0 "$pid" 2>/dev/null; then
            say "moto_server exited during start-up; its log:"
            cat "$LOG" >&2
            rm -f "$PID_FILE"
            exit 1
        fi
        if [ "$SECONDS" -ge "$deadline" ]; then
            say "moto_server did not answer GET $endpoint/moto-api/ within ${READY_TIMEOUT}s; its log:"
            cat "$LOG" >&2
            kill "$pid" 2>/dev/null || true
            rm -f "$PID_FILE"
            exit 1
        fi
        sleep 0.2
    done
    say "moto is ready on $endpoint (pid $pid)"
    echo "export SLUICE_AWS_ENDPOINT=$endpoint"
}

stop() {
    local pid
    if ! pid="$(running_pid)"; then
        rm -f "$PID_FILE"
        say "moto is not running (nothing started by this script)"
        return
    fi
    kill "$pid"
    for _ in $(seq 1 50); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        say "moto (pid $pid) ignored SIGTERM; sending SIGKILL"
        kill -9 "$pid" 2>/dev/null || true
    fi
    rm -f "$PID_FILE"
    say "stopped moto (pid $pid)"
}

status() {
    local pid
    if pid="$(running_pid)"; then
        say "moto is running (pid $pid, log $LOG)"
    else
        say "moto is not running"
        return 1
    fi
}

case "${1:-}" in
    start) shift; start "$@" ;;
    stop) stop ;;
    status) status ;;
    *) echo "usage: infra/moto.sh start [PORT] | stop | status" >&2; exit 2 ;;
esac
