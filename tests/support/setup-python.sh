#!/usr/bin/env bash
# Makes target/pyenv: a venv with the AWS CLI (v1), boto3 and moto's server from PyPI, the
# real clients and the independent STS the interop tests drive. Idempotent and quick when
# the venv is already there.
set -euo pipefail
cd "$(dirname "$0")/../.."
venv=target/pyenv
if [ -x "$venv/bin/aws" ] && [ -x "$venv/bin/moto_server" ] \
  && "$venv/bin/python" -c 'import boto3, botocore, moto' 2>/dev/null; then
  exit 0
fi
mkdir -p target
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/pip" install --quiet --disable-pip-version-check awscli boto3 'moto[server]'
"$venv/bin/aws" --version
