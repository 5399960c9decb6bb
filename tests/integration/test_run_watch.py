"""`custops runs watch` and `custops runs list` as processes, against a real
platform with its embedded stand-ins running a published plan."""

from __future__ import annotations

import asyncio
import os
import re
import socket
import sys
from datetime import date
from pathlib import Path

from custops.client import AsyncCustopsClient
from custops.plan.v1 import plan_pb2 as pb
from server.app import Platform
from tests.e2e.process import CHECKOUT
from tests.integration.test_run_rules import Ops, at, daily_plan, manual
from tests.integration.test_runs import POPULATION, _publish, immediate_plan, running

__all__ = ["manual", "running"]  # the fixtures, imported for pytest


async def custops(cwd: Path, *args: str) -> tuple[int, str, str]:
    """`custops ARGS` as a process (stdout a pipe, so one line per poll): code, out, err."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("CUSTOPS_")}
    environment["PYTHONPATH"] = CHECKOUT
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "server.cli",
        *args,
        cwd=cwd,
        env=environment,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(), 90)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


async def test_watch_follows_a_run_to_its_summary(
    running: tuple[Platform, AsyncCustopsClient], tmp_path: Path
) -> None:
    platform, client = running
    target = f"127.0.0.1:{platform.port}"
    draft = await _publish(client, immediate_plan())
    # Started right after the publish: without --run it takes the newest run,
    # waiting for the first one if the scheduler has not made it yet.
    plan = ("--shop", "s1", "--plan", draft.plan_id)
    code, out, err = await custops(
        tmp_path,
        "runs",
        "watch",
        "--target",
        target,
        *plan,
        "--interval",
        "0.05",
        "--timeout",
        "60",
    )
    assert code == 0, err
    assert "\r" not in out  # not a terminal: one line per poll
    *live, last = out.splitlines()
    assert platform.stubs is not None
    granted = sum(
        1
        for i in platform.stubs.benefits.instances.values()
        if i.source == f"plans/{draft.plan_id}"
    )
    assert 0 < granted < POPULATION
    runs = (
        await client.plans.list_plan_runs(
            pb.ListPlanRunsRequest(shop_id="s1", plan_id=draft.plan_id)
        ).first_page()
    ).runs
    assert len(runs) == 1
    run_id = runs[0].run_id
    n = f"{granted:,}"
    assert last == (
        f"run {run_id} succeeded in 0:00:00: processed {n}/{n}, targeted {n}, granted {n},"
        " sent 0, failed 0, dead 0, skipped 0"
    )
    # Every line before it is a live line; the last one shows the run complete.
    assert live and live[-1].startswith("[" + "#" * 10)
    assert f"] {n}/{n}  100%" in live[-1] and f"succeeded  granted {n} failed 0" in live[-1]
    progress = re.compile(r"^(\[[#.]+\] )?[\d,]+(/[\d,]+  \d+%| processed)  [\d.,]+/s  ")
    assert all(progress.match(line) for line in live), live

    # Watching the same run again, named: the summary at once. And the list.
    code, again, _ = await custops(
        tmp_path, "runs", "watch", "--target", target, *plan, "--run", run_id
    )
    assert code == 0 and again.splitlines()[-1] == last
    code, table, _ = await custops(tmp_path, "runs", "list", "--target", target, *plan)
    assert code == 0
    header, row = table.splitlines()
    assert header.split()[:3] == ["RUN", "STATE", "TRIGGER"]
    assert row.split()[:4] == [run_id, "succeeded", "schedule", "delivery"]


async def test_watch_says_what_went_wrong_in_one_line(
    running: tuple[Platform, AsyncCustopsClient], tmp_path: Path
) -> None:
    platform, client = running
    target = f"127.0.0.1:{platform.port}"
    draft = (
        await client.plans.create_plan(pb.CreatePlanRequest(shop_id="s1", plan=immediate_plan()))
    ).plan
    watch = ("runs", "watch", "--shop", "s1", "--interval", "0.05")
    unknown_run, unknown_plan, no_server, no_run_yet, bad_interval = await asyncio.gather(
        custops(
            tmp_path, *watch, "--target", target, "--plan", draft.plan_id, "--run", "r" + "0" * 20
        ),
        custops(tmp_path, *watch, "--target", target, "--plan", "p-nope"),
        custops(tmp_path, *watch, "--target", f"127.0.0.1:{_closed_port()}", "--plan", "p1"),
        # A draft has no run: it waits for one, as long as --timeout allows.
        custops(tmp_path, *watch, "--target", target, "--plan", draft.plan_id, "--timeout", "0.5"),
        custops(tmp_path, *watch, "--target", target, "--plan", "p1", "--interval", "0"),
    )
    for code, out, err in (unknown_run, unknown_plan, no_server):
        assert code == 1 and out == ""
        assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert unknown_run[2].startswith("custops: NOT_FOUND: ") and "[RUN_NOT_FOUND]" in unknown_run[2]
    assert unknown_plan[2].startswith("custops: NOT_FOUND: ")
    assert no_server[2].startswith("custops: UNAVAILABLE: cannot reach 127.0.0.1:")
    assert "hint: is the server up" in no_server[2]
    assert "UNAVAILABLE" in no_server[2]
    # A malformed run id: INVALID_ARGUMENT, with what to fix, still one line.
    code, out, err = await custops(
        tmp_path, *watch, "--target", target, "--plan", "p1", "--run", "x"
    )
    assert code == 1 and out == ""
    assert err == "custops: INVALID_ARGUMENT: run_id: required: a run id as ListPlanRuns gives\n"
    code, out, err = no_run_yet
    assert code == 6 and out == ""
    # (Whether it got to say it waits before the 0.5 s ran out is up to the machine.)
    *waiting, gave_up = err.splitlines()
    assert waiting in ([], [f"plan {draft.plan_id} has no run yet; waiting"])
    assert gave_up == "custops: --timeout 0.5s passed; no run to watch yet"
    assert bad_interval[0] == 2 and "--interval must be > 0" in bad_interval[2]


async def test_watch_without_a_run_skips_skipped_fires(manual: Ops, tmp_path: Path) -> None:
    """Weekends only, daily at nine: Saturday's run, then Monday's fire on
    record as skipped (the newest entry). The watch follows Saturday's run."""
    plan = daily_plan()
    plan.time.effective = "* * * * * 6,7 * 32"
    plan = await manual.publish(plan)
    assert manual.platform.runs is not None
    for day in (28, 30):  # Saturday 28, Monday 30 November 2026
        manual.set_clock(at(date(2026, 11, day), 9, 0, 10))
        await manual.platform.runs.tick()
    await manual.worker().drain()
    newest = (await manual.listed(plan))[0]
    assert newest.state == pb.RUN_STATE_SKIPPED
    (saturday,) = await manual.runs(plan)
    assert saturday.state == pb.RUN_STATE_SUCCEEDED
    args = ("--target", f"127.0.0.1:{manual.platform.port}", "--shop", manual.shop)
    code, out, _ = await custops(tmp_path, "runs", "watch", *args, "--plan", plan.plan_id)
    assert code == 0, out  # Saturday's run: succeeded
    assert "succeeded" in out.splitlines()[-1]
    code, _, _ = await custops(
        tmp_path, "runs", "watch", *args, "--plan", plan.plan_id, "--run", newest.run_id
    )
    assert code == 7
