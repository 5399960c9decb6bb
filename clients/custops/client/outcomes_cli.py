"""`custops runs export` and `custops plans effect`: members' outcomes to a
file, and what a plan achieved (docs/outcomes.md). gRPC clients of the
platform, like the other `custops runs` commands.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TextIO

from custops.client._errors import CustopsError
from custops.client.cli_connection import connect, one_line
from custops.notify.v1 import notify_pb2
from custops.plan.v1 import plan_pb2 as pb

COLUMNS = (
    "run_id",
    "plan_id",
    "member_id",
    "outcome",
    "reason",
    "withheld_channels",
    "defer_until",
    "test",
    "fire_time",
)
OUTCOMES = {
    name.removeprefix("MEMBER_OUTCOME_KIND_"): number
    for name, number in pb.MemberOutcomeKind.items()
    if number
}
_OUTCOME_NAMES = {number: name for name, number in OUTCOMES.items()}
_CHANNEL_NAMES = {
    number: name.removeprefix("MESSAGE_CHANNEL_")
    for name, number in notify_pb2.MessageChannel.items()
}
CALL_TIMEOUT = 30.0


def add_export(verbs: Any, target: Any) -> None:
    export = verbs.add_parser(
        "export",
        help="write a run's members' outcomes to a file (CSV or JSON lines)",
        description="Streams the run's outcomes (ExportMemberOutcomes) to --output or stdout, "
        "with a progress bar on stderr; memory stays flat whatever the run's size.",
    )
    export.add_argument("run", help="run id (as `custops runs list` shows)")
    target(export)
    export.add_argument("--shop", required=True, help="shop id")
    export.add_argument("--format", choices=("csv", "jsonl"), default="csv")
    export.add_argument("--output", default="-", help="file to write (default: stdout)")
    export.add_argument(
        "--outcome", action="append", choices=sorted(OUTCOMES), help="only these (repeatable)"
    )
    export.add_argument("--reason", default="", help="only this reason, e.g. FREQUENCY_LIMIT")


def add_plans(commands: Any, target: Any) -> None:
    plans = commands.add_parser("plans", help="what a plan achieved (a gRPC client)")
    verbs = plans.add_subparsers(dest="verb", required=True)
    effect = verbs.add_parser(
        "effect",
        help="a plan's treatment against its control group, with the uplift's 95% interval",
    )
    effect.add_argument("plan", help="plan id")
    target(effect)
    effect.add_argument("--shop", required=True, help="shop id")
    effect.add_argument(
        "--plot",
        default="",
        metavar="FILE.png",
        help="also draw daily conversion, treatment against holdout with the interval "
        "(needs the plots extra: pip install 'custops[plots]')",
    )


def export(args: argparse.Namespace) -> int:
    try:
        with _opened(args.output) as out:
            return asyncio.run(_export(args, out, sys.stderr))
    except OSError as exc:
        print(f"custops: cannot write {args.output}: {exc.strerror}", file=sys.stderr)
        return 1


def effect(args: argparse.Namespace) -> int:
    draw: Callable[[pb.PlanEffect, str], None] | None = None
    if args.plot:
        try:
            from custops.client.effect_plot import draw
        except ImportError:
            print("custops: --plot needs matplotlib: pip install 'custops[plots]'", file=sys.stderr)
            return 2
    try:
        found = asyncio.run(_effect(args))
    except CustopsError as exc:
        print(f"custops: {one_line(exc, args.target)}", file=sys.stderr)
        return 1
    print(effect_table(found), file=sys.stdout)
    if draw is not None:
        draw(found, args.plot)
        print(f"wrote {args.plot}", file=sys.stderr)
    return 0


async def _effect(args: argparse.Namespace) -> pb.PlanEffect:
    async with connect(args, CALL_TIMEOUT) as client:
        reply = await client.plans.get_plan_effect(
            pb.GetPlanEffectRequest(shop_id=args.shop, plan_id=args.plan)
        )
    found: pb.PlanEffect = reply.effect
    return found


async def _export(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    request = pb.ExportMemberOutcomesRequest(
        shop_id=args.shop,
        run_id=args.run,
        outcomes=[OUTCOMES[o] for o in args.outcome or ()],
        reason=args.reason,
    )
    writer = csv.writer(out) if args.format == "csv" else None
    if writer is not None:
        writer.writerow(COLUMNS)
    progress = Progress(err)
    async with connect(args, CALL_TIMEOUT) as client:
        try:
            async for chunk in client.plans.export_member_outcomes(request):
                for outcome in chunk.outcomes:
                    row = outcome_row(outcome)
                    if writer is not None:
                        writer.writerow(row.values())
                    else:
                        out.write(json.dumps(row, separators=(",", ":")) + "\n")
                progress.show(len(chunk.outcomes), chunk.total_count)
        except CustopsError as exc:
            progress.end()
            print(f"custops: {one_line(exc, args.target)}", file=err)
            return 1
    progress.end()
    return 0


def outcome_row(o: pb.MemberOutcome) -> dict[str, Any]:
    return {
        "run_id": o.run_id,
        "plan_id": o.plan_id,
        "member_id": o.member_id,
        "outcome": _OUTCOME_NAMES.get(o.outcome, str(o.outcome)),
        "reason": o.reason,
        "withheld_channels": " ".join(_CHANNEL_NAMES.get(c, str(c)) for c in o.withheld_channels),
        "defer_until": o.defer_until.ToJsonString() if o.HasField("defer_until") else "",
        "test": o.test,
        "fire_time": o.fire_time.ToJsonString(),
    }


class Progress:
    """Rows written against the total: redrawn in place on a terminal, a
    line each tenth of the way otherwise."""

    def __init__(self, err: TextIO) -> None:
        self._err = err
        self._tty = err.isatty()
        self._done = 0
        self._total = 0
        self._tenths = -1

    def show(self, rows: int, total: int) -> None:
        self._done += rows
        self._total = total
        share = self._done / total if total else 1.0
        line = f"exported {self._done:,} of {total:,} outcomes ({share:.0%})"
        if self._tty:
            width = 30
            bar = "#" * int(share * width)
            self._err.write(f"\r[{bar:<{width}}] {line}")
            self._err.flush()
        elif int(share * 10) > self._tenths:
            self._tenths = int(share * 10)
            print(line, file=self._err)

    def end(self) -> None:
        if self._tty:
            self._err.write("\n")
        elif self._tenths < 10:
            print(f"exported {self._done:,} of {self._total:,} outcomes", file=self._err)


def effect_table(e: pb.PlanEffect) -> str:
    window = e.attribution_window.ToTimedelta()
    lines = [
        f"plan {e.plan_id}: holdout {e.holdout_percent:g}%, orders counted up to {window} "
        "after a run",
        f"{'group':<10} {'members':>10} {'converted':>10} {'rate':>8} {'orders':>8}  net sales",
    ]
    for name, g in (("treatment", e.treatment), ("holdout", e.holdout)):
        sales = ", ".join(
            f"{s.currency_code} {s.net_amount_minor / 100:,.2f} "
            f"({s.amount_per_member_minor / 100:,.2f}/member)"
            for s in g.sales
        )
        lines.append(
            f"{name:<10} {g.members:>10,} {g.converted_members:>10,} "
            f"{g.conversion_rate:>8.2%} {g.orders:>8,}  {sales or '-'}"
        )
    if e.HasField("conversion"):
        c = e.conversion
        lines.append(
            f"conversion uplift: {c.absolute:+.2%} (95% CI {c.absolute_low:+.2%} to "
            f"{c.absolute_high:+.2%}), relative {c.relative:+.1%} "
            f"({c.relative_low:+.1%} to {c.relative_high:+.1%})"
        )
    else:
        lines.append("conversion uplift: - (no control group, or no members in one)")
    for s in e.sales:
        u = s.per_member_minor
        lines.append(
            f"sales per member uplift, {s.currency_code}: {u.absolute / 100:+,.2f} "
            f"(95% CI {u.absolute_low / 100:+,.2f} to {u.absolute_high / 100:+,.2f})"
        )
    return "\n".join(lines)


@contextmanager
def _opened(path: str) -> Iterator[TextIO]:
    if path == "-":
        yield sys.stdout
        return
    with open(path, "w", newline="", encoding="utf-8") as out:
        yield out
