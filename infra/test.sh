#!/usr/bin/env bash
# The whole test suite, exactly as CI runs it. It installs and starts everything the tests
# need on a machine with only Rust, Python 3 (with pip) and curl: a virtualenv in .venv with
# moto (the local AWS-API server), cfn-lint and aws-sam-cli (for the Lambda Runtime Interface
# Emulator), then formatting, clippy, cfn-lint and every test, the AWS ones included.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n== %s\n' "$*"; }

# A run from a fresh clone gains nothing from incremental artifacts, which would double the
# target directory's size on disk (a full disk once failed CI here at link time).
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"

step "formatting"
cargo fmt --all --check

step "clippy"
cargo clippy --workspace --all-targets --all-features --locked -- -D warnings

step "local AWS-API server (moto) and Lambda tools"
port="${SLUICE_MOTO_PORT:-$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}"
infra/moto.sh start "$port"
trap 'infra/moto.sh stop' EXIT
export SLUICE_AWS_ENDPOINT="http://127.0.0.1:$port"
export SLUICE_REQUIRE_AWS=1
export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1
export SAM_CLI_TELEMETRY=0
SLUICE_RIE="$(find "$PWD/.venv" -path '*samcli/local/rapid/aws-lambda-rie-x86_64' -print -quit)"
[ -x "$SLUICE_RIE" ] || { echo "the Lambda Runtime Interface Emulator is missing from .venv" >&2; exit 1; }
export SLUICE_RIE
export SLUICE_CFN_LINT="$PWD/.venv/bin/cfn-lint"

step "cfn-lint template.yaml"
"$SLUICE_CFN_LINT" template.yaml

step "Lambda binaries (run under the Runtime Interface Emulator) and sluice (run by the fault suite)"
cargo build --locked -p trigger -p step-runner -p response-waiter -p scheduler -p sluice-cli

step "tests"
rm -f "${CARGO_TARGET_DIR:-target}"/fault-figures-*.txt
cargo test --workspace --all-features --locked

step "fault-injection figures (tests/faults.rs)"
cat "${CARGO_TARGET_DIR:-target}"/fault-figures-*.txt 2>/dev/null || echo "(none written)"

step "all green"
