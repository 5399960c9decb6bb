"""`custops runs watch|list|export` and `custops plans effect`: gRPC clients
of the platform.

The platform's `custops` command adds these commands with `add_commands`
and hands `custops runs|plans ...` to `run`; what watch and list print is
run_view, what export and effect do is outcomes_cli.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
from typing import TextIO

from custops.client import outcomes_cli, run_view
from custops.client._errors import CustopsError
from custops.client.cli_connection import add_connection, check_connection, connect, one_line
from custops.plan.v1 import plan_pb2 as pb

WATCH_HELP = """\
Polls GetPlanRun every --interval seconds and shows the run's progress:
processed/total, percentage, rate, ETA, state and counters. On a terminal the
line is redrawn in place; when stdout is a pipe or a file, one line per poll.
Without --run it watches the plan's newest run that is not a skipped fire
(waiting for a first run if the plan has none yet). When the run ends it
prints a summary line (state, counters, skipped by reason) and exits with:

  0  succeeded
  3  completed with failures (failed or dead-lettered items)
  4  cancelled
  5  failed
  1  the run could not be watched (NOT_FOUND, UNAVAILABLE, other gRPC errors;
     one line on stderr)
  2  bad arguments
  6  --timeout passed before the run ended
  7  the run named with --run is a skipped fire (it never ran)
"""

# Seconds one call may take, whatever is left of --timeout.
CALL_TIMEOUT = 10.0
# Runs looked at for the newest that ran (skipped fires are listed among them).
NEWEST_LOOKED_AT = 50


def add_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    runs = commands.add_parser(
        "runs", help="watch, list or export the runs of a plan (a gRPC client)"
    )
    verbs = runs.add_subparsers(dest="verb", required=True)
    watch = verbs.add_parser(
        "watch",
        help="show a run's live progress until it ends",
        description=WATCH_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    listing = verbs.add_parser("list", help="list a plan's runs, newest first")
    for verb in (watch, listing):
        add_connection(verb)
        verb.add_argument("--shop", required=True, help="shop id")
        verb.add_argument("--plan", required=True, help="plan id")
    watch.add_argument("--run", default="", help="run id (default: the plan's newest run)")
    watch.add_argument(
        "--interval", type=float, default=1.0, help="seconds between polls (default: 1)"
    )
    watch.add_argument(
        "--timeout",
        type=float,
        default=0.0,
        help="give up (exit 6) after this many seconds in all (default: 0 = no limit)",
    )
    listing.add_argument(
        "--limit", type=int, default=20, help="at most this many runs (default: 20)"
    )
    outcomes_cli.add_export(verbs, add_connection)
    outcomes_cli.add_plans(commands, add_connection)


def run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    check_connection(args, parser)
    if args.verb == "watch" and (args.interval <= 0 or args.timeout < 0):
        parser.error("--interval must be > 0 and --timeout >= 0")
    if args.verb == "list" and not 1 <= args.limit <= 1000:
        parser.error("--limit must be 1-1000")
    try:
        if args.command == "plans":
            return outcomes_cli.effect(args)
        if args.verb == "export":
            return outcomes_cli.export(args)
        if args.verb == "watch":
            return asyncio.run(_watch(args, sys.stdout, sys.stderr))
        return asyncio.run(_list(args, sys.stdout, sys.stderr))
    except KeyboardInterrupt:
        if sys.stdout.isatty():
            sys.stdout.write("\n")
        print("custops: interrupted", file=sys.stderr)
        return 130


async def _watch(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """The polling loop; what it shows is run_view."""

    tty = out.isatty()
    display = run_view.Display(out, tty=tty)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + args.timeout if args.timeout else None
    last: pb.PlanRun | None = None

    def width() -> int:
        # One column short of the terminal, so that the line never wraps.
        return shutil.get_terminal_size((101, 24)).columns - 1 if tty else 120

    def call_timeout() -> float:
        left = CALL_TIMEOUT if deadline is None else deadline - loop.time()
        return max(min(left, CALL_TIMEOUT), 0.001)

    async with connect(args, CALL_TIMEOUT) as client:
        try:
            async with asyncio.timeout_at(deadline):
                run_id = args.run
                waiting = False
                while not run_id:
                    runs = await client.plans.list_plan_runs(
                        pb.ListPlanRunsRequest(
                            shop_id=args.shop, plan_id=args.plan, page_size=NEWEST_LOOKED_AT
                        ),
                        timeout=call_timeout(),
                    ).first_page()
                    # The newest run that does something: a skipped fire has no progress.
                    ran = [r for r in runs.runs if r.state != pb.RUN_STATE_SKIPPED]
                    if ran:
                        run_id = ran[0].run_id
                    else:
                        if not waiting:
                            print(f"plan {args.plan} has no run yet; waiting", file=err)
                            waiting = True
                        await asyncio.sleep(args.interval)
                request = pb.GetPlanRunRequest(shop_id=args.shop, plan_id=args.plan, run_id=run_id)
                while True:
                    last = (await client.plans.get_plan_run(request, timeout=call_timeout())).run
                    if run_view.is_terminal(last.state):
                        display.finish(last, width())
                        return run_view.exit_code(last.state)
                    display.show(run_view.render(last, width()))
                    await asyncio.sleep(args.interval)
        except (TimeoutError, CustopsError) as exc:
            display.end_line()
            timed_out = deadline is not None and loop.time() >= deadline - 0.05
            if isinstance(exc, TimeoutError) or timed_out:
                where = (
                    f"run {last.run_id} is still {run_view.state_name(last.state)}"
                    if last is not None
                    else "no run to watch yet"
                )
                print(f"custops: --timeout {args.timeout:g}s passed; {where}", file=err)
                return 6
            print(f"custops: {one_line(exc, args.target)}", file=err)
            return 1


async def _list(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:

    async with connect(args, CALL_TIMEOUT) as client:
        try:
            runs = await client.plans.list_plan_runs(
                pb.ListPlanRunsRequest(shop_id=args.shop, plan_id=args.plan, page_size=args.limit)
            ).first_page()
        except CustopsError as exc:
            print(f"custops: {one_line(exc, args.target)}", file=err)
            return 1
    if not runs.runs:
        print(f"plan {args.plan} has no runs", file=out)
    else:
        print(run_view.table(runs.runs), file=out)
    return 0
