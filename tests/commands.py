"""Run a command of this checkout (`python -m server.cli ...`,
scripts/reflect.py) in a process of its own, as a user would: no CUSTOPS_*
variable of the test run leaks in, and the checkout is on the path."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


async def run_python(*argv: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    """`python ARGV`: exit status, stdout, stderr (within 120 s)."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("CUSTOPS_")}
    environment["PYTHONPATH"] = os.pathsep.join((str(ROOT), str(ROOT / "clients")))
    environment.update(env or {})
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        *argv,
        env=environment,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 120)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()
