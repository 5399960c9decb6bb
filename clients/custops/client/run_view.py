"""How `custops runs watch` and `custops runs list` show a plan run.

Pure functions of a PlanRun (no I/O, no clock) so that every line the
command prints can be checked in a unit test; `Display` only decides whether
a line is redrawn in place (a terminal) or appended (a pipe or a file).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import UTC
from typing import TextIO

from custops.plan.v1 import plan_pb2 as pb

STATE_NAMES = {
    pb.RUN_STATE_UNSPECIFIED: "unknown",
    pb.RUN_STATE_PENDING: "pending",
    pb.RUN_STATE_RUNNING: "running",
    pb.RUN_STATE_PAUSED: "paused",
    pb.RUN_STATE_SUCCEEDED: "succeeded",
    pb.RUN_STATE_COMPLETED_WITH_FAILURES: "completed with failures",
    pb.RUN_STATE_CANCELLED: "cancelled",
    pb.RUN_STATE_FAILED: "failed",
    pb.RUN_STATE_SKIPPED: "skipped",
}
TRIGGER_NAMES = {
    pb.RUN_TRIGGER_UNSPECIFIED: "-",
    pb.RUN_TRIGGER_SCHEDULE: "schedule",
    pb.RUN_TRIGGER_MANUAL: "manual",
    pb.RUN_TRIGGER_CATCH_UP: "catch-up",
}
KIND_NAMES = {
    pb.RUN_KIND_UNSPECIFIED: "-",
    pb.RUN_KIND_DELIVERY: "delivery",
    pb.RUN_KIND_RECOVERY: "recovery",
}

# The exit code of `custops runs watch` for each terminal state. 1 (the run
# could not be watched), 2 (bad arguments) and 6 (--timeout) are the others.
EXIT_CODES = {
    pb.RUN_STATE_SUCCEEDED: 0,
    pb.RUN_STATE_COMPLETED_WITH_FAILURES: 3,
    pb.RUN_STATE_CANCELLED: 4,
    pb.RUN_STATE_FAILED: 5,
    pb.RUN_STATE_SKIPPED: 7,  # a fire that did not run (named with --run)
}
TERMINAL = frozenset(EXIT_CODES)

# Cells of the bar: BAR_CELLS, fewer (down to BAR_MIN) when the line would not fit.
BAR_MIN, BAR_CELLS = 10, 20


def state_name(state: pb.RunState.ValueType) -> str:
    return STATE_NAMES.get(state, f"state {state}")


def is_terminal(state: pb.RunState.ValueType) -> bool:
    return state in TERMINAL


def exit_code(state: pb.RunState.ValueType) -> int:
    """0 succeeded, 3 completed with failures, 4 cancelled, 5 failed."""
    return EXIT_CODES[state]


def count(n: int) -> str:
    """45000 -> '45,000'."""
    return f"{n:,}"


def rate(per_second: float) -> str:
    """Items per second: whole numbers from 100 up, one decimal below."""
    if per_second >= 100:
        return f"{round(per_second):,}/s"
    if per_second > 0:
        return f"{per_second:.1f}/s"
    return "0/s"


def duration(seconds: float) -> str:
    """H:MM:SS, hours unbounded: 4 -> '0:00:04', 93784 -> '26:03:04'."""
    whole = max(int(seconds), 0)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}"


def bar(done: int, total: int, cells: int) -> str:
    """'[####......]': `cells` cells, full only when done >= total."""
    filled = cells if done >= total else min(done * cells // total, cells - 1)
    return "[" + "#" * max(filled, 0) + "." * (cells - max(filled, 0)) + "]"


def percent(done: int, total: int) -> int:
    """Rounded down, so that 100% means all done."""
    return min(done * 100 // total, 100)


def eta(progress: pb.RunProgress) -> str:
    """The server's ETA; else one from the rate; '--:--' when neither is known.
    Rounded up: while items are left it never says 0:00:00."""
    left = max(progress.total - progress.done, 0)
    if progress.HasField("eta"):
        seconds = math.ceil(progress.eta.seconds + progress.eta.nanos / 1e9)
    elif progress.total > 0 and progress.rate_per_second > 0:
        seconds = math.ceil(left / progress.rate_per_second)
    else:
        return "--:--"
    return duration(max(seconds, 1) if left else seconds)


def _skipped_total(progress: pb.RunProgress) -> int:
    return sum(progress.skipped.values())


def _counters(run: pb.PlanRun) -> list[str]:
    p = run.progress
    if run.kind == pb.RUN_KIND_RECOVERY:
        parts = [f"recovered {count(p.recovered)}"]
    else:
        parts = [f"granted {count(p.granted)}"]
        if p.sent:
            parts.append(f"sent {count(p.sent)}")
    skipped = _skipped_total(p)
    if skipped:
        parts.append(f"skipped {count(skipped)}")
    parts.append(f"failed {count(p.failed)}")
    if p.dead:
        parts.append(f"dead {count(p.dead)}")
    return parts


def render(run: pb.PlanRun, width: int = 100) -> str:
    """The live line, at most `width` characters, e.g. (on one line)

        [#########.........] 45,000/100,000  45%  12,300/s  ETA 0:00:04  running
        granted 44,800 failed 3

    With the total unknown (0): processed and rate only, no bar, percentage or ETA.
    The bar has 20 cells; when the width is short it shrinks first (down to 10
    cells), then the counters at the end go, then the bar; the rest is cut at
    `width`.
    """
    p = run.progress
    if p.total > 0:
        fields = [f"{count(p.done)}/{count(p.total)}", f"{percent(p.done, p.total)}%"]
        fields.append(rate(p.rate_per_second))
        if not is_terminal(run.state):
            fields.append(f"ETA {eta(p)}")
    else:
        fields = [f"{count(p.done)} processed", rate(p.rate_per_second)]
    fields.append(state_name(run.state))
    core = "  ".join(fields)
    counters = _counters(run)
    text = core
    if p.total > 0:
        cells = min(width - len(core) - 2 - len(" ".join(counters)) - 3, BAR_CELLS)
        if cells < BAR_MIN and width - len(core) - 3 >= BAR_MIN:
            cells = BAR_MIN
        if cells >= BAR_MIN:
            text = f"{bar(p.done, p.total, cells)} {core}"
    for i, counter in enumerate(counters):
        more = ("  " if i == 0 else " ") + counter
        if len(text) + len(more) > width:
            break
        text += more
    return text[: max(width, 0)]


def _skipped_by_reason(progress: pb.RunProgress) -> str:
    total = _skipped_total(progress)
    if not total:
        return "skipped 0"
    reasons = sorted(progress.skipped.items(), key=lambda kv: (-kv[1], kv[0]))
    return f"skipped {count(total)} (" + ", ".join(f"{k} {count(v)}" for k, v in reasons) + ")"


def summary(run: pb.PlanRun) -> str:
    """The final line, once the run has ended:

        run 3f2c... succeeded in 0:00:08 (12,500/s): processed 100,000/100,000,
        targeted 100,000, granted 99,990, sent 0, failed 0, dead 0, skipped 10 (QUIET_HOURS 10)

    (on one line).
    """
    p = run.progress
    head = f"run {run.run_id}"
    if run.kind == pb.RUN_KIND_RECOVERY:
        of = f" of run {run.recovers_run_id}" if run.recovers_run_id else ""
        head += f" (recovery{of})"
    head += f" {state_name(run.state)}"
    if run.HasField("start_time") and run.HasField("end_time"):
        took = (run.end_time.ToDatetime(UTC) - run.start_time.ToDatetime(UTC)).total_seconds()
        head += f" in {duration(took)}"
        if took >= 1 and p.done:
            head += f" ({rate(p.done / took)})"
    processed = f"processed {count(p.done)}" + (f"/{count(p.total)}" if p.total else "")
    if run.kind == pb.RUN_KIND_RECOVERY:
        parts = [processed, f"recovered {count(p.recovered)}"]
    else:
        parts = [
            processed,
            f"targeted {count(p.targeted)}",
            f"granted {count(p.granted)}",
            f"sent {count(p.sent)}",
        ]
    parts += [
        f"failed {count(p.failed)}",
        f"dead {count(p.dead)}",
        _skipped_by_reason(p),
    ]
    return f"{head}: " + ", ".join(parts)


def table(runs: Sequence[pb.PlanRun]) -> str:
    """`custops runs list`: one row per run, newest first, as the server sends them."""
    header: tuple[str, ...] = ("RUN", "STATE", "TRIGGER", "KIND", "FIRE TIME (UTC)")
    header += ("PROCESSED", "GRANTED", "SENT", "FAILED")
    rows = [header]
    for r in runs:
        p = r.progress
        fire = r.fire_time.ToDatetime(UTC).strftime("%Y-%m-%d %H:%M:%S")
        processed = count(p.done) + (f"/{count(p.total)}" if p.total else "")
        rows.append(
            (
                r.run_id,
                state_name(r.state),
                TRIGGER_NAMES.get(r.trigger, "-"),
                KIND_NAMES.get(r.kind, "-"),
                fire if r.HasField("fire_time") else "-",
                processed,
                count(p.granted),
                count(p.sent),
                count(p.failed + p.dead),
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    numeric = {5, 6, 7, 8}
    lines = [
        "  ".join(
            cell.rjust(widths[i]) if i in numeric else cell.ljust(widths[i])
            for i, cell in enumerate(row)
        ).rstrip()
        for row in rows
    ]
    return "\n".join(lines)


class Display:
    """Writes the live line: redrawn in place with '\\r' on a terminal, one
    line per poll otherwise; then the final summary on a line of its own."""

    def __init__(self, out: TextIO, *, tty: bool) -> None:
        self._out = out
        self._tty = tty
        self._drawn = 0  # characters of the line now on the terminal

    def show(self, line: str) -> None:
        if self._tty:
            pad = " " * max(self._drawn - len(line), 0)
            self._out.write(f"\r{line}{pad}")
            self._drawn = len(line)
        else:
            self._out.write(line + "\n")
        self._out.flush()

    def end_line(self) -> None:
        """Leaves the live line as it is and moves below it (before a message or the summary)."""
        if self._tty and self._drawn:
            self._out.write("\n")
            self._out.flush()
        self._drawn = 0

    def finish(self, run: pb.PlanRun, width: int) -> None:
        self.show(render(run, width))
        self.end_line()
        self._out.write(summary(run) + "\n")
        self._out.flush()
