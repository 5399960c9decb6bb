"""What `custops runs watch` and `custops runs list` print (custops.client.run_view)."""

from __future__ import annotations

import io
from datetime import UTC, datetime

import pytest
from google.protobuf.duration_pb2 import Duration
from google.protobuf.timestamp_pb2 import Timestamp

from custops.client import run_view
from custops.client.run_view import Display, bar, duration, render, summary, table
from custops.plan.v1 import plan_pb2 as pb


def _run(
    state: pb.RunState.ValueType = pb.RUN_STATE_RUNNING,
    *,
    total: int = 100_000,
    done: int = 45_000,
    eta: int | None = 4,
    skipped: dict[str, int] | None = None,
    **counters: int,
) -> pb.PlanRun:
    progress = pb.RunProgress(total=total, done=done, rate_per_second=12_300.4, skipped=skipped)
    for name, value in counters.items():
        setattr(progress, name, value)
    if eta is not None:
        progress.eta.CopyFrom(Duration(seconds=eta))
    return pb.PlanRun(run_id="r1", plan_id="p1", shop_id="s1", state=state, progress=progress)


def _bar_of(line: str) -> str:
    assert line.startswith("[")
    return line[1 : line.index("]")]


def test_the_live_line_has_every_part() -> None:
    line = render(_run(granted=44_800, failed=3), 120)
    assert line.startswith("[")
    assert "] 45,000/100,000  45%  12,300/s  ETA 0:00:04  running  granted 44,800 failed 3" in line


@pytest.mark.parametrize(
    ("done", "total", "filled"),
    [
        (0, 100, 0),
        (1, 100, 0),
        (25, 100, 5),
        (45, 100, 9),
        (50, 100, 10),
        (99, 100, 19),
        (100, 100, 20),
        (150, 100, 20),
        (1, 3, 6),
        (2, 3, 13),
    ],
)
def test_the_bar_is_proportional_and_full_only_when_done(
    done: int, total: int, filled: int
) -> None:
    cells = bar(done, total, 20)[1:-1]
    assert len(cells) == 20
    assert cells == "#" * filled + "." * (20 - filled)


def test_the_bar_fits_the_width_then_the_counters_go_then_the_bar() -> None:
    run = _run(granted=44_800, failed=3)
    for width in (200, 120, 100, 90, 80, 79, 64):
        line = render(run, width)
        assert len(line) <= width
        cells = _bar_of(line)
        assert run_view.BAR_MIN <= len(cells) <= run_view.BAR_CELLS
        assert cells.count("#") == len(cells) * 45 // 100
    # Where the line fits, the bar keeps its width from one poll to the next.
    assert {len(_bar_of(render(run, w))) for w in (200, 120, 100)} == {run_view.BAR_CELLS}
    assert len(_bar_of(render(run, 90))) < run_view.BAR_CELLS
    assert render(run, 90).endswith("running  granted 44,800 failed 3")
    assert render(run, 80).endswith("running  granted 44,800")  # whole counters only
    assert render(run, 64).endswith("ETA 0:00:04  running")
    narrow = render(run, 63)
    assert narrow == "45,000/100,000  45%  12,300/s  ETA 0:00:04  running"
    assert render(run, 30) == "45,000/100,000  45%  12,300/s "


def test_percent_rounds_down_so_that_100_means_all_done() -> None:
    assert "99%" in render(_run(total=1000, done=999), 120)
    assert "100%" in render(_run(total=1000, done=1000), 120)


def test_unknown_total_shows_processed_and_rate_only() -> None:
    line = render(_run(total=0, done=1_234, eta=None, granted=1_200), 120)
    assert line == "1,234 processed  12,300/s  running  granted 1,200 failed 0"
    assert "%" not in line and "ETA" not in line and "[" not in line


def test_a_pending_run() -> None:
    run = pb.PlanRun(run_id="r1", state=pb.RUN_STATE_PENDING)
    assert render(run, 120) == "0 processed  0/s  pending  granted 0 failed 0"


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0:00:00"),
        (4, "0:00:04"),
        (4.9, "0:00:04"),
        (61, "0:01:01"),
        (3600, "1:00:00"),
        (93_784, "26:03:04"),
        (-5, "0:00:00"),
    ],
)
def test_durations(seconds: float, text: str) -> None:
    assert duration(seconds) == text


def test_eta_from_the_server_else_from_the_rate_else_unknown() -> None:
    assert "ETA 0:01:40" in render(_run(eta=100), 120)
    # No ETA from the server: 55,000 left at 12,300.4/s is 4.47 s, rounded up.
    assert "ETA 0:00:05" in render(_run(eta=None), 120)
    stalled = _run(eta=None)
    stalled.progress.rate_per_second = 0
    assert "ETA --:--" in render(stalled, 120)
    assert "0/s" in render(stalled, 120)


def test_eta_never_says_zero_while_items_are_left() -> None:
    assert "ETA 0:00:01" in render(_run(total=1000, done=999, eta=0), 120)
    assert "ETA 0:00:00" in render(_run(total=1000, done=1000, eta=0), 120)
    almost = _run(total=1000, done=999, eta=None)
    assert "ETA 0:00:01" in render(almost, 120)


@pytest.mark.parametrize(
    ("per_second", "text"), [(0, "0/s"), (0.25, "0.2/s"), (3.46, "3.5/s"), (12_300.4, "12,300/s")]
)
def test_rates(per_second: float, text: str) -> None:
    assert run_view.rate(per_second) == text


def test_the_counters_shown_live() -> None:
    line = render(_run(granted=10, sent=9, failed=1, dead=2, skipped={"QUIET_HOURS": 5}), 200)
    assert line.endswith("running  granted 10 sent 9 skipped 5 failed 1 dead 2")
    recovery = _run(recovered=7)
    recovery.kind = pb.RUN_KIND_RECOVERY
    assert render(recovery, 200).endswith("running  recovered 7 failed 0")


def _ended(state: pb.RunState.ValueType, **counters: int) -> pb.PlanRun:
    run = _run(state, total=2_712, done=2_712, eta=0)
    for name, value in counters.items():
        setattr(run.progress, name, value)
    run.start_time.CopyFrom(Timestamp(seconds=1_000))
    run.end_time.CopyFrom(Timestamp(seconds=1_012))
    return run


def test_the_summary_has_state_counters_and_skipped_by_reason() -> None:
    run = _ended(pb.RUN_STATE_SUCCEEDED, targeted=2_712, granted=2_700)
    run.progress.skipped["FREQUENCY_LIMIT"] = 3
    run.progress.skipped["QUIET_HOURS"] = 9
    run.progress.skipped["BUDGET_EXHAUSTED"] = 3
    assert summary(run) == (
        "run r1 succeeded in 0:00:12 (226/s): processed 2,712/2,712, targeted 2,712,"
        " granted 2,700, sent 0, failed 0, dead 0,"
        " skipped 15 (QUIET_HOURS 9, BUDGET_EXHAUSTED 3, FREQUENCY_LIMIT 3)"
    )


def test_the_summary_of_other_endings() -> None:
    failures = _ended(pb.RUN_STATE_COMPLETED_WITH_FAILURES, granted=2_709, failed=2, dead=1)
    assert summary(failures).startswith("run r1 completed with failures in 0:00:12")
    assert "granted 2,709, sent 0, failed 2, dead 1, skipped 0" in summary(failures)
    cancelled = pb.PlanRun(run_id="r2", state=pb.RUN_STATE_CANCELLED)
    cancelled.progress.done = 10
    assert summary(cancelled) == (
        "run r2 cancelled: processed 10, targeted 0, granted 0, sent 0, failed 0, dead 0, skipped 0"
    )
    recovery = _ended(pb.RUN_STATE_SUCCEEDED, recovered=2_000)
    recovery.kind = pb.RUN_KIND_RECOVERY
    recovery.recovers_run_id = "r0"
    assert summary(recovery).startswith("run r1 (recovery of run r0) succeeded in 0:00:12")
    assert "processed 2,712/2,712, recovered 2,000, failed 0" in summary(recovery)


def test_an_ended_run_shows_no_eta() -> None:
    line = render(_ended(pb.RUN_STATE_SUCCEEDED, granted=2_712), 120)
    assert "ETA" not in line and "2,712/2,712  100%" in line and "succeeded" in line
    assert _bar_of(line) == "#" * len(_bar_of(line))


def test_terminal_states_and_exit_codes() -> None:
    codes = {s: run_view.exit_code(s) for s in pb.RunState.values() if run_view.is_terminal(s)}
    assert codes == {
        pb.RUN_STATE_SUCCEEDED: 0,
        pb.RUN_STATE_COMPLETED_WITH_FAILURES: 3,
        pb.RUN_STATE_CANCELLED: 4,
        pb.RUN_STATE_FAILED: 5,
        pb.RUN_STATE_SKIPPED: 7,
    }
    assert run_view.state_name(pb.RUN_STATE_SKIPPED) == "skipped"


def test_on_a_terminal_the_line_is_redrawn_in_place() -> None:
    out = io.StringIO()
    display = Display(out, tty=True)
    display.show("a long first line")
    display.show("short")
    display.finish(_ended(pb.RUN_STATE_SUCCEEDED, granted=2_712), 100)
    text = out.getvalue()
    first, second, last = text.split("\r")[1:]
    assert first == "a long first line"
    assert second == "short" + " " * 12  # wipes what the longer line left
    drawn, final, end = last.split("\n")
    assert "succeeded" in drawn and final.startswith("run r1 succeeded") and end == ""


def test_elsewhere_one_line_per_poll() -> None:
    out = io.StringIO()
    display = Display(out, tty=False)
    display.show("one")
    display.show("two")
    display.end_line()
    display.finish(_ended(pb.RUN_STATE_SUCCEEDED), 100)
    lines = out.getvalue().split("\n")
    assert "\r" not in out.getvalue()
    assert lines[:2] == ["one", "two"] and lines[3].startswith("run r1 succeeded")
    assert len(lines) == 5 and lines[-1] == ""


def test_the_runs_table() -> None:
    done = _ended(pb.RUN_STATE_SUCCEEDED, granted=2_712)
    done.trigger = pb.RUN_TRIGGER_SCHEDULE
    done.kind = pb.RUN_KIND_DELIVERY
    done.fire_time.FromDatetime(datetime(2026, 11, 24, 2, 0, tzinfo=UTC))
    going = _run(granted=44_800, failed=3, dead=1)
    going.run_id = "r-longer-id"
    going.trigger = pb.RUN_TRIGGER_MANUAL
    assert table([going, done]).split("\n") == [
        "RUN          STATE      TRIGGER   KIND      FIRE TIME (UTC)           PROCESSED  GRANTED"
        "  SENT  FAILED",
        "r-longer-id  running    manual    -         -                    45,000/100,000   44,800"
        "     0       4",
        "r1           succeeded  schedule  delivery  2026-11-24 02:00:00     2,712/2,712    2,712"
        "     0       0",
    ]
    assert table([]) == table([]).split("\n")[0]  # the header alone
