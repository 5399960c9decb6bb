#!/usr/bin/env bash
# The SDK must install on its own: a fresh virtualenv gets ./clients only, and
# must import the SDK and every contract without SQLAlchemy or Redis.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=$(mktemp -d)
trap 'rm -rf "$venv"' EXIT
python3 -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check ./clients \
  2> >(grep -v "is ignored: it is neither a file nor a directory" >&2)
"$venv/bin/python" - <<'PY'
import importlib.util

from custops.audience.v1 import audience_pb2_grpc  # noqa: F401
from custops.audit.v1 import audit_pb2_grpc  # noqa: F401
from custops.benefit.v1 import benefit_pb2_grpc  # noqa: F401
from custops.client import AsyncCustopsClient, CustopsClient  # noqa: F401
from custops.notify.v1 import notify_pb2_grpc  # noqa: F401
from custops.plan.v1 import plan_pb2_grpc  # noqa: F401
from custops.scenario.v1 import scenario_pb2_grpc  # noqa: F401

extra = [m for m in ("sqlalchemy", "redis", "opentelemetry", "alembic") if importlib.util.find_spec(m)]
assert not extra, f"custops-client pulled in {extra}"
print("custops-client installs alone: grpcio, grpcio-status, protobuf")
PY
