#!/usr/bin/env bash
# The contracts may only change compatibly: the protos of the work tree are
# checked (buf breaking, FILE rules) against every committed version of them.
set -euo pipefail
cd "$(dirname "$0")/.."
buf=.venv/bin/buf
if [ "$(git rev-parse --is-shallow-repository 2>/dev/null)" = "true" ]; then
  echo "buf breaking: shallow clone, comparing with HEAD only" >&2
fi
versions=$(git log --format=%H -- protos/ 2>/dev/null || true)
if [ -z "$versions" ]; then
  echo "buf breaking: no committed contracts yet"
  exit 0
fi
count=0
for commit in $versions; do
  "$buf" breaking protos --against ".git#ref=$commit,subdir=protos"
  count=$((count + 1))
done
echo "buf breaking: compatible with all $count committed versions of protos/"
