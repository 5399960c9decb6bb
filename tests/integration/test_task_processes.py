"""The engine across processes: a crash at the worst moment, and two
workers sharing a job on PostgreSQL."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from server.persistence import migrate
from server.persistence.database import create_engine
from server.persistence.task_store import TaskStore
from tests.integration.task_worker import Effects, prepare

ROOT = Path(__file__).resolve().parents[2]


async def _worker(url: str, effects: Path, offset: float = 0.0, fault: str = "") -> tuple[int, str]:
    env = {k: v for k, v in os.environ.items() if k != "CUSTOPS_FAULT_POINT"}
    env["PYTHONPATH"] = str(ROOT)
    if fault:
        env["CUSTOPS_FAULT_POINT"] = fault
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.integration.task_worker",
        url,
        str(effects),
        str(offset),
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stdin=asyncio.subprocess.DEVNULL,
    )
    out, _ = await asyncio.wait_for(process.communicate(), 300)
    return process.returncode if process.returncode is not None else -1, out.decode()


async def _job(
    url: str, key: str, n: int, shards: int, delay: float = 0.0
) -> tuple[TaskStore, str]:
    await migrate.upgrade(url)
    store = TaskStore(create_engine(url))
    payload = {"n": n, "shards": shards, "delay": delay}
    now = datetime.now(UTC)
    job = await store.create_job("effects", key, payload, Effects("").split(payload), now, now)
    return store, job


def _effects(path: Path) -> list[tuple[str, int]]:
    with sqlite3.connect(path) as db:
        return list(db.execute("select key, attempts from effects order by key"))


async def test_a_crash_between_the_call_and_its_record(tmp_path: Path, database_url: str) -> None:
    effects = tmp_path / "effects.db"
    prepare(str(effects))
    store, job = await _job(database_url, "crash", 1000, 1)
    code, _ = await _worker(database_url, effects, fault="after_execute")
    assert code == -9  # killed right after its first batch's downstream call
    assert len(_effects(effects)) == 100
    assert (await store.job(job))["done"] == 0  # ...which was never recorded
    # A new worker takes the shard once the dead one's lease has run out.
    code, out = await _worker(database_url, effects, offset=60)
    assert code == 0 and "shards=1" in out
    seen = dict(_effects(effects))
    assert len(seen) == 1000  # every item's effect exists once (keyed by item)
    assert sorted({seen[f"n{i}"] for i in range(100)}) == [2]  # the first batch ran twice...
    assert set(seen[f"n{i}"] for i in range(100, 1000)) == {1}  # ...nothing else did
    state = await store.job(job)
    assert (state["state"], state["done"]) == ("succeeded", 1000)


@pytest.mark.postgres
async def test_two_processes_share_a_job(tmp_path: Path, postgres_url: str) -> None:
    effects = tmp_path / "effects.db"
    prepare(str(effects))
    store, job = await _job(postgres_url, "shared", 8_000, 8, delay=0.02)
    first = asyncio.create_task(_worker(postgres_url, effects))
    for _ in range(600):  # until the first worker holds a lease (bounded)
        if len(_effects(effects)) > 0:
            break
        await asyncio.sleep(0.05)
    second = asyncio.create_task(_worker(postgres_url, effects))
    (code_a, out_a), (code_b, out_b) = await asyncio.gather(first, second)
    assert code_a == code_b == 0
    shards = [int(out.split("shards=")[1]) for out in (out_a, out_b)]
    assert sum(shards) == 8 and min(shards) >= 1  # both took part
    seen = _effects(effects)
    assert len(seen) == 8_000 and {attempts for _, attempts in seen} == {1}
    assert (await store.job(job))["state"] == "succeeded"
