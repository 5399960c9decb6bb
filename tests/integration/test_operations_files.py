"""The operations files in deploy/ (issue 23): the alert rules pass promtool's
check and their unit tests; a real Prometheus (Debian's, an instance of the
test's own on loopback) scrapes a running server and loads the rules; every
metric the Grafana dashboard's queries use is in a real scrape, and every
query evaluates."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import subprocess
import tempfile
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from custops.client import AsyncCustopsClient
from custops.plan.v1 import plan_pb2 as pb
from server.app import Platform
from tests.conftest import unavailable
from tests.integration.conftest import settings
from tests.integration.private_redis import free_port
from tests.integration.test_metrics import promtool, samples, scrape
from tests.integration.test_runs import publish_to_everyone

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy" / "prometheus" / "custops-alerts.yml"
RULE_TESTS = ROOT / "deploy" / "prometheus" / "custops-alerts.test.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "custops.json"


def _promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [promtool(), *args], capture_output=True, text=True, timeout=120, cwd=RULES.parent
    )


def test_the_alert_rules_pass_promtools_check_and_their_unit_tests() -> None:
    checked = _promtool("check", "rules", str(RULES))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tested = _promtool("test", "rules", str(RULE_TESTS))
    assert tested.returncode == 0, tested.stdout + tested.stderr
    # Every alert has a test that fires it.
    alerts = set(re.findall(r"^\s+- alert: (\w+)", RULES.read_text(), re.M))
    fired = set(re.findall(r"alertname: (\w+)", RULE_TESTS.read_text()))
    assert alerts and alerts <= fired


def _queries() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]


def _concrete(expr: str) -> str:
    """A dashboard query as Grafana would send it for job "custops"."""
    return expr.replace("$__rate_interval", "1m").replace('=~"$job"', '="custops"')


class Prometheus:
    """A Prometheus of the test's own, scraping one target every second."""

    def __init__(self, target: str) -> None:
        binary = shutil.which("prometheus")
        if binary is None:
            unavailable("prometheus", FileNotFoundError("prometheus"))
        assert binary is not None
        self.home = Path(tempfile.mkdtemp(prefix="custops-prom-"))
        self.port = free_port()
        config = self.home / "prometheus.yml"
        config.write_text(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
            f"rule_files:\n  - {RULES}\n"
            "scrape_configs:\n  - job_name: custops\n"
            f"    static_configs:\n      - targets: ['{target}']\n"
        )
        self.process = subprocess.Popen(
            [
                binary,
                f"--config.file={config}",
                f"--storage.tsdb.path={self.home / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def api(self, path: str, **query: str) -> Any:
        url = f"http://127.0.0.1:{self.port}/api/v1/{path}?{urllib.parse.urlencode(query)}"
        with urllib.request.urlopen(url, timeout=10) as answer:
            body = json.loads(answer.read())
        assert body["status"] == "success", body
        return body["data"]

    def query(self, expr: str) -> list[Any]:
        result: list[Any] = self.api("query", query=expr)["result"]
        return result

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(10)
        shutil.rmtree(self.home, ignore_errors=True)


@pytest.fixture
def prometheus_for() -> Iterator[list[Prometheus]]:
    started: list[Prometheus] = []
    yield started
    for server in started:
        server.stop()


async def _until(check: Any, within: float) -> None:
    started = time.monotonic()
    while time.monotonic() - started < within:
        try:
            if await asyncio.to_thread(check):
                return
        except OSError:
            pass  # not listening yet
        await asyncio.sleep(0.2)
    raise AssertionError(f"not within {within} s")


@pytest.mark.postgres
@pytest.mark.slow
async def test_a_real_prometheus_scrapes_the_server_and_the_dashboard_finds_its_metrics(
    database: str, prometheus_for: list[Prometheus]
) -> None:
    platform = Platform(
        settings(database, stubs_population=500, engine_poll=0.05, health_interval=0.2)
    )
    await platform.start()
    try:
        async with AsyncCustopsClient(f"127.0.0.1:{platform.port}", timeout=30) as client:
            # Fired by the scheduler: its lateness is measured too.
            draft = await publish_to_everyone(client, "s1")
            for _ in range(400):  # bounded: the run ends
                runs = await client.plans.list_plan_runs(
                    pb.ListPlanRunsRequest(shop_id="s1", plan_id=draft.plan_id)
                ).first_page()
                if runs.runs and runs.runs[0].state == pb.RUN_STATE_SUCCEEDED:
                    break
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.5)  # sampled after the run
            prometheus = Prometheus(f"127.0.0.1:{platform.metrics_port}")
            prometheus_for.append(prometheus)
            # Scraped a few times: rates have samples to go by.
            await _until(
                lambda: prometheus.query('count_over_time(up{job="custops"}[1m]) >= 4'), 60
            )
            text = await asyncio.to_thread(scrape, platform.metrics_port)
            up = prometheus.query('up{job="custops"}')
            rules = prometheus.api("rules")["groups"]
            results = {q: prometheus.query(_concrete(q)) for q in _queries()}
    finally:
        await platform.stop(grace=1)

    assert [float(u["value"][1]) for u in up] == [1.0]
    assert len(rules[0]["rules"]) == 6 and all(r["health"] == "ok" for r in rules[0]["rules"])
    scraped = {name for name, _ in samples(text)}
    for query, result in results.items():
        used = set(re.findall(r"([a-zA-Z_:][a-zA-Z0-9_:]*)\{", query))
        assert used and used <= scraped, (query, used - scraped)
        assert isinstance(result, list)  # evaluated (a bad query is an HTTP 400)
    # The panels show what just happened (its outcomes, at the rate of now).
    members = results[
        'sum by (outcome) (rate(custops_run_members_total{job=~"$job"}[$__rate_interval]))'
    ]
    assert {m["metric"]["outcome"] for m in members} == {"granted"}
