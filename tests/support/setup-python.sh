#!/usr/bin/env bash
# Makes target/pyenv: a venv with the AWS CLI (v1) and boto3 from PyPI, the real clients the
# interop tests drive. Idempotent and quick when the venv is already there.
set -euo pipefail
cd "$(dirname "$0")/../.."
venv=target/pyenv
if [ -x "$venv/bin/aws" ] && "$venv/bin/python" -c 'import boto3, botocore' 2>/dev/null; then
  exit 0
fi
mkdir -p target
python3 -m venv "$venv"
"$venv/bin/pip" install --quiet --disable-pip-version-check awscli boto3
"$venv/bin/aws" --version
