"""Term expressions against croniter, on equivalent plain cron schedules.

Times parsing, and computing the next 100 fire times, for our expressions
and croniter's equivalents, in the same run on the same machine, and prints
each figure with the ratio ours / croniter (below 1 = faster than croniter).
Both must give the same fire times; the benchmark stops if they do not.

    .venv/bin/python scripts/bench/term_expressions.py [--rounds 7]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from croniter import croniter

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from domain import term

START = datetime(2026, 11, 24, 7, 13, tzinfo=UTC)
FIRES = 100
CASES = [
    ("daily 09:00", "0 0 9 * * * * 31", "0 9 * * *"),
    ("Mon+Wed 09:00", "0 0 9 * * 1,3 * 32", "0 9 * * 1,3"),
    ("every 15 min 9-18h", "0 */15 9-18 * * ? * 30", "*/15 9-18 * * *"),
    ("1st, 15th, last day", "0 0 10 1,15,L * * * 33", "0 10 1,15,L * *"),
]


def timed(action: Callable[[], object], repeat: int) -> float:
    """Microseconds per call."""
    started = time.perf_counter()
    for _ in range(repeat):
        action()
    return (time.perf_counter() - started) / repeat * 1e6


def best_of(rounds: int, action: Callable[[], object], repeat: int) -> float:
    return statistics.median(timed(action, repeat) for _ in range(rounds))


def cron_fires(text: str) -> list[datetime]:
    it = croniter(text, START)
    return [it.get_next(datetime) for _ in range(FIRES)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    print(f"{'case':22} {'op':14} {'custops µs':>11} {'croniter µs':>12} {'ratio':>7}")
    ratios = []
    for name, ours, theirs in CASES:
        expression = term.parse(ours)
        mine = term.next_fire_times(expression, START, "UTC", FIRES)
        if mine != cron_fires(theirs):
            print(f"{name}: fire times differ from croniter's", file=sys.stderr)
            return 1
        rows = [
            ("parse", lambda o=ours: term.parse(o), lambda t=theirs: croniter(t, START), 2000),
            (
                f"next {FIRES} fires",
                lambda e=expression: term.next_fire_times(e, START, "UTC", FIRES),
                lambda t=theirs: cron_fires(t),
                20,
            ),
        ]
        for op, custops, cron, repeat in rows:
            a = best_of(args.rounds, custops, repeat)
            b = best_of(args.rounds, cron, repeat)
            ratios.append(a / b)
            print(f"{name:22} {op:14} {a:11.1f} {b:12.1f} {a / b:7.2f}")
    print(f"geometric mean ratio: {statistics.geometric_mean(ratios):.2f} (custops / croniter)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
