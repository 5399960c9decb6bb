"""Field-mask paths as callers write them.

A FieldMask in JSON is one string of lowerCamelCase paths
(`"updateMask": "displayName,limits.totalBudget"`, the protobuf JSON
mapping), while binary callers send snake_case paths. Hints about masks name
the JSON spelling, the one a caller typing a request by hand (grpcurl,
scripts/reflect.py) must get right; the SDKs build masks from snake_case
and need no hint.
"""

from __future__ import annotations

from collections.abc import Iterable

JSON_NOTE = "JSON names; snake_case in a binary FieldMask"


def json_path(path: str) -> str:
    """limits.rate_override -> limits.rateOverride"""
    return ".".join(_camel(part) for part in path.split("."))


def json_paths(paths: Iterable[str]) -> str:
    return ", ".join(json_path(p) for p in paths)


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(word[:1].upper() + word[1:] for word in rest)
