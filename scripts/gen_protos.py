"""Regenerate the Python code of every contract under protos/ into clients/.

Messages (`*_pb2.py`), gRPC stubs (`*_pb2_grpc.py`), typed stubs (`.pyi`,
by mypy-protobuf) and the typed SDK services and error reasons
(`custops/client/_services.py`, `reasons.py`, by scripts/gen_sdk.py) are
committed; CI runs this script and fails when the result differs from what
is committed (`--check`). The vendored google/ protos are for other
languages: their Python comes from googleapis-common-protos.

Usage: python scripts/gen_protos.py [--check]
"""

from __future__ import annotations

import argparse
import filecmp
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTOS = ROOT / "protos"
OUT = ROOT / "clients"
GENERATED_ROOT = OUT / "custops"
# Generated packages live beside the hand-written SDK (custops/client),
# which holds two generated modules of its own.
HAND_WRITTEN = {"client", "__init__.py", "py.typed"}
SDK_MODULES = {Path("client/_services.py"), Path("client/reasons.py")}


def _plugin(name: str) -> str:
    scripts = Path(sysconfig.get_path("scripts"))
    path = scripts / name
    if not path.exists():
        found = shutil.which(name)
        if found is None:
            sys.exit(f"{name} not found: install the dev extras (pip install -e '.[dev]')")
        return found
    return str(path)


def generate(into: Path) -> None:
    import gen_sdk
    import grpc_tools
    from google.protobuf import descriptor_pb2
    from grpc_tools import protoc

    well_known = Path(grpc_tools.__file__).parent / "_proto"
    files = sorted(
        str(p.relative_to(PROTOS)) for p in PROTOS.rglob("*.proto") if "google" not in p.parts
    )
    descriptors = into / "descriptors.binpb"
    args = [
        "protoc",
        f"-I{PROTOS}",
        f"-I{well_known}",
        f"--descriptor_set_out={descriptors}",
        "--include_source_info",
        f"--plugin=protoc-gen-mypy={_plugin('protoc-gen-mypy')}",
        f"--plugin=protoc-gen-mypy_grpc={_plugin('protoc-gen-mypy_grpc')}",
        f"--python_out={into}",
        f"--grpc_python_out={into}",
        f"--mypy_out={into}",
        f"--mypy_grpc_out={into}",
        *files,
    ]
    if protoc.main(args) != 0:
        sys.exit("protoc failed")
    for package in (into / "custops").rglob("*"):
        if package.is_dir():
            (package / "__init__.py").touch()
    contracts = descriptor_pb2.FileDescriptorSet.FromString(descriptors.read_bytes())
    descriptors.unlink()
    for name, text in gen_sdk.render(list(contracts.file)).items():
        target = into / "custops" / name
        target.parent.mkdir(parents=True, exist_ok=True)
        # Formatted as if in place: ruff reads the project's settings from the path.
        target.write_text(_formatted(text, GENERATED_ROOT / name))


def _formatted(source: str, path: Path) -> str:
    """Imports sorted and formatted as ruff does (the project's style, so
    that the lint agrees with the generator)."""
    for command in (["check", "--select", "I", "--fix", "--quiet"], ["format"]):
        done = subprocess.run(
            [_plugin("ruff"), *command, "--stdin-filename", str(path), "-"],
            input=source,
            capture_output=True,
            text=True,
            cwd=ROOT,
        )
        if done.returncode != 0:
            sys.exit(f"ruff could not format the generated {path.name}:\n{done.stderr}")
        source = done.stdout
    return source


def _generated_files(root: Path) -> set[Path]:
    return {
        p.relative_to(root)
        for p in root.rglob("*")
        if p.is_file()
        and (p.relative_to(root).parts[0] not in HAND_WRITTEN or p.relative_to(root) in SDK_MODULES)
        and "__pycache__" not in p.parts
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if the committed code is stale")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        fresh = Path(tmp)
        generate(fresh)
        fresh_root = fresh / "custops"
        new = _generated_files(fresh_root)
        old = _generated_files(GENERATED_ROOT) if GENERATED_ROOT.exists() else set()
        if args.check:
            stale = sorted(
                str(p)
                for p in new | old
                if p not in new
                or p not in old
                or not filecmp.cmp(fresh_root / p, GENERATED_ROOT / p, shallow=False)
            )
            if stale:
                print("generated code is stale; run: python scripts/gen_protos.py", file=sys.stderr)
                for path in stale:
                    print(f"  {path}", file=sys.stderr)
                return 1
            print(f"generated code is up to date ({len(new)} files)")
            return 0
        for path in old - new:
            (GENERATED_ROOT / path).unlink()
        for path in new:
            target = GENERATED_ROOT / path
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(fresh_root / path, target)
        print(f"wrote {len(new)} files under {GENERATED_ROOT.relative_to(ROOT)}")
        return 0


if __name__ == "__main__":
    sys.exit(main())
