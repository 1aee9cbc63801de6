#!/usr/bin/env bash
# Makes target/pyenv: a venv with the AWS CLI (v1), boto3 and moto's server from PyPI, the
# real clients and the independent STS the interop tests drive. The tests run it themselves
# when they need the venv; it is idempotent, quick when the venv is complete, and safe when
# several test binaries run it at once (one builds under a lock, the others wait for it).
set -euo pipefail
cd "$(dirname "$0")/../.."
venv=target/pyenv
complete() {
  [ -x "$venv/bin/aws" ] && [ -x "$venv/bin/moto_server" ] \
    && "$venv/bin/python" -c 'import boto3, botocore, moto' 2>/dev/null
}
complete && exit 0
mkdir -p target
exec 9>target/pyenv.lock
flock 9
complete && exit 0
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/pip" install --quiet --disable-pip-version-check awscli boto3 'moto[server]'
"$venv/bin/aws" --version >&2
