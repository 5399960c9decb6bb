#!/usr/bin/env bash
# The SDK must install on its own, at the floors it declares: a fresh
# virtualenv gets ./clients with exactly its lowest allowed dependencies
# (read from clients/pyproject.toml), must not pull in the platform's
# SQLAlchemy or Redis, and must pass its own tests (clients/sdk_tests,
# copied out of the source tree so that they import the installed SDK).
set -euo pipefail
cd "$(dirname "$0")/.."
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
python3 -m venv "$work/venv"
python=$work/venv/bin/python
"$python" - clients/pyproject.toml > "$work/floors.txt" <<'PY'
import re, sys, tomllib
for requirement in tomllib.load(open(sys.argv[1], "rb"))["project"]["dependencies"]:
    name, floor = re.match(r"([A-Za-z0-9_.-]+)>=([^,;]+)", requirement).groups()
    print(f"{name}=={floor}")
PY
quiet=(--quiet --disable-pip-version-check)
"$python" -m pip install "${quiet[@]}" -c "$work/floors.txt" "./clients[test]" \
  2> >(grep -v "is ignored: it is neither a file nor a directory" >&2)
"$python" - "$work/floors.txt" <<'PY'
import importlib.metadata, importlib.util, sys

for line in open(sys.argv[1]):
    name, floor = line.strip().split("==")
    found = importlib.metadata.version(name)
    assert found == floor, f"{name} {found} installed, the floor is {floor}"
extra = [m for m in ("sqlalchemy", "redis", "opentelemetry", "alembic") if importlib.util.find_spec(m)]
assert not extra, f"custops-client pulled in {extra}"
PY
cp -r clients/sdk_tests "$work/sdk_tests"
printf '[pytest]\nasyncio_mode = auto\nasyncio_default_fixture_loop_scope = function\n' > "$work/pytest.ini"
(cd "$work" && "$python" -m pytest -q -p no:cacheprovider -c pytest.ini sdk_tests)
echo "custops-client installs alone at its floors ($(paste -sd' ' "$work/floors.txt")) and its tests pass"
