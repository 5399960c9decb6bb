#!/usr/bin/env bash
# Create .venv (if missing) and install the SDK and the service into it.
# Usage: scripts/bootstrap.sh [--dev]   (--dev adds the test and lint tools)
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv 2>/dev/null || python3 -m venv --without-pip .venv
if [ ! -x .venv/bin/pip ]; then
  .venv/bin/python -m ensurepip --upgrade >/dev/null
fi
extras=""
[ "${1:-}" = "--dev" ] && extras="[dev,plots]"
# pip's notes about the machine's unused local indexes are noise here.
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e ./clients -e ".${extras}" \
  2> >(grep -v "is ignored: it is neither a file nor a directory" >&2)
