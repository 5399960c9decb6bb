"""The layers (docs/decisions.md): no import climbs up, and only the
downstream adapters and the stand-ins build gRPC stubs."""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# Bottom to top; a package not named here is in no layer.
LAYERS = [
    ("domain",),
    ("server.downstream", "server.persistence", "server.throttle"),
    ("server.runs", "server.tasks"),
    ("server.usecases",),
    ("server.mapping",),
    ("server.servicers",),
    ("server.bootstrap", "server.app"),
]
STUB_BUILDERS = ("server/downstream/", "server/stand_ins/")


def layer(module: str) -> int | None:
    for height, packages in enumerate(LAYERS):
        if any(module == p or module.startswith(f"{p}.") for p in packages):
            return height
    return None


def sources() -> Iterator[tuple[str, Path]]:
    for top in ("domain", "server"):
        for path in sorted((ROOT / top).rglob("*.py")):
            relative = path.relative_to(ROOT)
            if "migrations" not in relative.parts:
                yield ".".join(relative.with_suffix("").parts), path


def imports(path: Path) -> Iterator[tuple[int, str]]:
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            yield node.lineno, node.module
        elif isinstance(node, ast.Import):
            yield from ((node.lineno, alias.name) for alias in node.names)


def test_no_import_climbs_up_a_layer() -> None:
    climbs = [
        f"{module}:{line} imports {target}"
        for module, path in sources()
        if (height := layer(module)) is not None
        for line, target in imports(path)
        if (layer(target) or 0) > height
    ]
    assert climbs == []


def test_the_domain_knows_no_framework() -> None:
    frameworks = ("grpc", "google", "sqlalchemy", "redis", "custops", "server")
    used = [
        f"{module}:{line} imports {target}"
        for module, path in sources()
        if module.startswith("domain")
        for line, target in imports(path)
        if target.split(".")[0] in frameworks
    ]
    assert used == []


def test_only_adapters_and_stand_ins_build_grpc_stubs() -> None:
    built = [
        str(path.relative_to(ROOT))
        for _, path in sources()
        if not str(path.relative_to(ROOT)).startswith(STUB_BUILDERS)
        and re.search(r"\w+Stub\(", path.read_text())
    ]
    assert built == []
