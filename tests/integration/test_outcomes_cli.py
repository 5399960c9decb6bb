"""`custops runs export` and `custops plans effect` as processes, against a
real platform: the file holds every outcome the listing holds, and the
effect is printed (and drawn, with the plots extra)."""

from __future__ import annotations

import csv
import json
from datetime import timedelta
from pathlib import Path

from custops.plan.v1 import plan_pb2 as pb
from tests.integration.test_measurement import FIRE, measured_plan, paid, record
from tests.integration.test_outcomes import listed
from tests.integration.test_plan_time import _tick
from tests.integration.test_run_rules import Ops, manual
from tests.integration.test_run_watch import custops

__all__ = ["manual"]  # the fixture, imported for pytest


async def test_export_writes_every_outcome_and_effect_is_printed_and_drawn(
    manual: Ops, tmp_path: Path
) -> None:
    manual.set_clock(FIRE)
    plan = await manual.publish(measured_plan(30.0, "V3", "V4", "V5"))
    await _tick(manual, FIRE)
    (run,) = await manual.runs(plan)
    shown = await listed(manual, page_size=500, run_id=run.run_id)
    target = f"127.0.0.1:{manual.platform.port}"
    common = ("--target", target, "--shop", manual.shop)

    code, out, err = await custops(
        tmp_path, "runs", "export", run.run_id, *common, "--output", "all.csv"
    )
    assert code == 0, err
    rows = list(csv.DictReader((tmp_path / "all.csv").read_text().splitlines()))
    assert [(r["member_id"], r["outcome"]) for r in rows] == [
        (o.member_id, pb.MemberOutcomeKind.Name(o.outcome).removeprefix("MEMBER_OUTCOME_KIND_"))
        for o in shown
    ]
    assert f"exported {len(shown):,} of {len(shown):,} outcomes" in err

    code, out, err = await custops(
        tmp_path,
        "runs",
        "export",
        run.run_id,
        *common,
        "--format",
        "jsonl",
        "--outcome",
        "HELD_OUT",
    )
    assert code == 0, err
    held = [json.loads(line) for line in out.splitlines()]
    assert {h["member_id"] for h in held} == {
        o.member_id for o in shown if o.outcome == pb.MEMBER_OUTCOME_KIND_HELD_OUT
    }
    assert held and {h["outcome"] for h in held} == {"HELD_OUT"}

    code, out, err = await custops(tmp_path, "runs", "export", "r" + "0" * 20, *common)
    assert code == 1 and "NOT_FOUND" in err

    manual.set_clock(FIRE + timedelta(days=3))
    member = next(o.member_id for o in shown if o.outcome == pb.MEMBER_OUTCOME_KIND_GRANTED)
    await record(manual, paid(member, "o-1", 12_345, FIRE + timedelta(days=1)))
    code, out, err = await custops(
        tmp_path, "plans", "effect", plan.plan_id, *common, "--plot", "effect.png"
    )
    assert code == 0, err
    assert "holdout 30%" in out and "conversion uplift" in out and "CNY 123.45" in out
    assert (tmp_path / "effect.png").read_bytes().startswith(b"\x89PNG")
