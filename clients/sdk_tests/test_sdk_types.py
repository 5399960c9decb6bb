"""mypy sees the SDK's types: a program using it type-checks with the
response types revealed, and the same program with a misspelled method or
the wrong request type does not."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

import custops

api = pytest.importorskip("mypy.api", reason="the type tests need mypy")

PROGRAM = """
from custops.client import AsyncCustopsClient, CustopsClient
from custops.plan.v1 import plan_pb2 as pb
from custops.scenario.v1 import scenario_pb2


def blocking(client: CustopsClient) -> None:
    reply = client.plans.{method}(pb.{request}(shop_id="s"))
    reveal_type(reply)
    for plan in client.plans.list_plans(pb.ListPlansRequest(shop_id="s")):
        reveal_type(plan)


async def asynchronous(client: AsyncCustopsClient) -> None:
    view = await client.scenario.get_member_view(scenario_pb2.GetMemberViewRequest())
    reveal_type(view)
    async for page in client.plans.list_plans(pb.ListPlansRequest()).pages:
        reveal_type(page)
"""


def _mypy(tmp_path: Path, method: str = "get_plan", request: str = "GetPlanRequest") -> str:
    program = tmp_path / "front_office.py"
    program.write_text(textwrap.dedent(PROGRAM.format(method=method, request=request)))
    # Installed, the SDK is found as a typed package (py.typed); in a source
    # checkout (editable install) its directory is the path.
    home = Path(custops.__file__).resolve().parent.parent
    path = "" if "site-packages" in home.parts else f"mypy_path = {home}\n"
    config = tmp_path / "mypy.ini"
    config.write_text(
        f"[mypy]\nstrict = True\nfollow_imports = silent\n{path}"
        "[mypy-grpc.*,grpc_status.*,google.rpc.*]\nignore_missing_imports = True\n"
    )
    out, err, status = api.run(
        [str(program), "--config-file", str(config), "--cache-dir", str(tmp_path / "cache")]
    )
    return f"exit {status}\n{out}{err}"


def test_a_program_using_the_sdk_type_checks_with_its_types_revealed(tmp_path: Path) -> None:
    said = _mypy(tmp_path)
    assert said.startswith("exit 0"), said
    revealed = [
        line.split("Revealed type is ")[1] for line in said.splitlines() if "Revealed" in line
    ]
    assert revealed == [
        '"custops.plan.v1.plan_pb2.GetPlanResponse"',
        '"custops.plan.v1.plan_pb2.Plan"',
        '"custops.scenario.v1.scenario_pb2.GetMemberViewResponse"',
        '"custops.plan.v1.plan_pb2.ListPlansResponse"',
    ], said


def test_a_misspelled_method_fails_mypy(tmp_path: Path) -> None:
    said = _mypy(tmp_path, method="get_plans")
    assert said.startswith("exit 1"), said
    assert '"OperationPlanService" has no attribute "get_plans"' in said, said


def test_the_wrong_request_type_fails_mypy(tmp_path: Path) -> None:
    said = _mypy(tmp_path, request="ListPlansRequest")
    assert said.startswith("exit 1"), said
    assert 'Argument 1 to "get_plan" of "OperationPlanService" has incompatible type' in said, said
    assert '"ListPlansRequest"; expected "GetPlanRequest"' in said, said
