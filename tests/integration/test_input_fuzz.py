"""Generated hostile input to every implemented RPC, over SQLite and
PostgreSQL: the answer is a documented code, never INTERNAL or UNKNOWN, the
server stays up, and what it accepts it stores and returns unchanged."""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from custops.audience.v1 import audience_pb2
from custops.client import CustopsClient, CustopsError, RetryPolicy
from custops.plan.v1 import plan_pb2 as pb
from tests.integration.conftest import settings as platform_settings
from tests.integration.threaded import platform_in_thread
from tests.sdk_names import sdk_method

EXAMPLES = 100 if os.environ.get("CI") == "true" else 40
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=os.environ.get("CI") == "true",
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
ALLOWED = {
    grpc.StatusCode.OK,
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.ABORTED,
    grpc.StatusCode.UNIMPLEMENTED,
}

texts = st.one_of(
    st.text(max_size=30),
    st.text(alphabet=st.characters(codec="utf-8"), max_size=300),
    st.sampled_from(["", " ", "\x00", "a\x00b", "America", "../../etc", "Asia/Shanghai", "%_"]),
)
numbers = st.one_of(st.integers(-(2**31), 2**31 - 1), st.sampled_from([0, 1, -1, 99, 2**31 - 1]))
floats = st.floats(allow_nan=True, allow_infinity=True)
enums = st.integers(-3, 12)

rules = st.recursive(
    st.one_of(
        st.builds(
            lambda xs: audience_pb2.AudienceRule(levels=audience_pb2.LevelCondition(levels=xs)),
            st.lists(texts, max_size=3),
        ),
        st.builds(
            lambda s, d: audience_pb2.AudienceRule(
                birthday=audience_pb2.BirthdayCondition(scope=s, days_ahead=d)
            ),
            enums,
            numbers,
        ),
        st.builds(
            lambda d: audience_pb2.AudienceRule(
                browsed_not_bought=audience_pb2.BrowsedNotBoughtCondition(within_days=d)
            ),
            numbers,
        ),
        st.just(audience_pb2.AudienceRule()),
    ),
    lambda inner: st.one_of(
        st.builds(lambda r: audience_pb2.AudienceRule(negate=r), inner),
        st.builds(
            lambda rs: audience_pb2.AudienceRule(all_of=audience_pb2.RuleList(rules=rs)),
            st.lists(inner, max_size=3),
        ),
    ),
    max_leaves=6,
)


@st.composite
def plans(draw: st.DrawFn) -> pb.Plan:
    plan = pb.Plan(
        display_name=draw(texts),
        description=draw(texts),
        business_product=draw(enums),
        front_office=draw(enums),
        time_zone=draw(texts),
        time=pb.PlanTime(effective=draw(texts), missed_fire_policy=draw(enums)),
        limits=pb.PlanLimits(
            total_budget=draw(numbers),
            rate_override=draw(floats),
            frequency=pb.FrequencyLimit(max_times=draw(numbers), window=draw(enums)),
        ),
    )
    if draw(st.booleans()):
        plan.audience.CopyFrom(draw(rules))
    for _ in range(draw(st.integers(0, 2))):
        action = plan.actions.add()
        if draw(st.booleans()):
            grant = action.grant_benefit.benefits.add()
            grant.template_id, grant.kind, grant.quantity = draw(texts), draw(enums), draw(numbers)
        else:
            action.send_message.channel = draw(enums)
            action.send_message.template_id = draw(texts)
            action.send_message.params[draw(texts)] = draw(texts)
    return plan


page_tokens = st.one_of(
    texts,
    st.builds(
        lambda p: base64.urlsafe_b64encode(json.dumps(p).encode()).decode(),
        st.recursive(
            st.none() | st.integers() | st.text(max_size=10),
            lambda inner: (
                st.lists(inner, max_size=3)
                | st.dictionaries(st.sampled_from(["p", "s", "t", "id"]), inner, max_size=3)
            ),
        ),
    ),
)
ids = st.one_of(texts, st.just("p1"))


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def client(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[CustopsClient]:
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{Path(tmp_path_factory.mktemp('fuzz'))}/fuzz.db"
    else:
        url = request.getfixturevalue("postgres_url")
    with (
        platform_in_thread(platform_settings(url)) as platform,
        CustopsClient(f"127.0.0.1:{platform.port}", retry=RetryPolicy(max_attempts=1)) as c,
    ):
        yield c


def call(method: Any, request: Any) -> tuple[grpc.StatusCode, Any]:
    try:
        return grpc.StatusCode.OK, method(request, timeout=10)
    except CustopsError as exc:
        assert exc.code in ALLOWED, f"{exc.code.name} for {request!r}: {exc}"
        if exc.code is grpc.StatusCode.INVALID_ARGUMENT:
            assert exc.field_violations, str(exc)
        return exc.code, exc


@FUZZ
@given(shop=ids, plan=plans(), request_id=st.one_of(st.just(""), texts))
def test_create_and_get(client: CustopsClient, shop: str, plan: pb.Plan, request_id: str) -> None:
    code, reply = call(
        sdk_method(client.plans, "CreatePlan"),
        pb.CreatePlanRequest(shop_id=shop, plan=plan, request_id=request_id),
    )
    if code is grpc.StatusCode.OK:
        got = client.plans.get_plan(pb.GetPlanRequest(shop_id=shop, plan_id=reply.plan.plan_id))
        assert got.plan == reply.plan
        assert got.plan.display_name == plan.display_name
        assert got.plan.audience == plan.audience


@FUZZ
@given(
    shop=ids,
    size=numbers,
    token=page_tokens,
    state=enums,
    product=enums,
    office=enums,
    contains=texts,
)
def test_list(
    client: CustopsClient,
    shop: str,
    size: int,
    token: str,
    state: int,
    product: int,
    office: int,
    contains: str,
) -> None:
    call(
        sdk_method(client.plans, "ListPlans"),
        pb.ListPlansRequest(
            shop_id=shop,
            page_size=size,
            page_token=token,
            state=state,
            business_product=product,
            front_office=office,
            display_name_contains=contains,
        ),
    )


@FUZZ
@given(
    plan=plans(),
    paths=st.lists(
        st.one_of(
            texts, st.sampled_from(["display_name", "limits.total_budget", "time", "audience"])
        ),
        max_size=3,
    ),
    etag=texts,
)
def test_update_and_delete(
    client: CustopsClient, plan: pb.Plan, paths: list[str], etag: str
) -> None:
    created = client.plans.create_plan(
        pb.CreatePlanRequest(shop_id="fuzz", plan=pb.Plan(display_name="target"))
    ).plan
    plan.plan_id = created.plan_id
    plan.etag = etag if etag != "" else created.etag
    request = pb.UpdatePlanRequest(shop_id="fuzz", plan=plan)
    request.update_mask.paths.extend(paths)
    call(sdk_method(client.plans, "UpdatePlan"), request)
    call(
        sdk_method(client.plans, "DeletePlan"),
        pb.DeletePlanRequest(shop_id="fuzz", plan_id=created.plan_id, etag=etag),
    )
    call(sdk_method(client.plans, "GetPlan"), pb.GetPlanRequest(shop_id="fuzz", plan_id=etag))


@FUZZ
@given(plan=plans(), parts=st.lists(enums, max_size=3), count=numbers, plan_id=ids)
def test_preview(
    client: CustopsClient, plan: pb.Plan, parts: list[int], count: int, plan_id: str
) -> None:
    inline = pb.PreviewPlanRequest(shop_id="fuzz", plan=plan, fire_time_count=count)
    inline.parts.extend(parts)
    call(sdk_method(client.plans, "PreviewPlan"), inline)
    call(
        sdk_method(client.plans, "PreviewPlan"),
        pb.PreviewPlanRequest(shop_id="fuzz", plan_id=plan_id),
    )


def test_raw_bytes_that_are_not_protobuf(client: CustopsClient) -> None:
    for method in ("CreatePlan", "ListPlans", "GetPlan"):
        raw = client.channel.unary_unary(
            f"/custops.plan.v1.OperationPlanService/{method}",
            request_serializer=lambda b: b,
            response_deserializer=lambda b: b,
        )
        for garbage in (b"\xff\xff\xff\xff", b"\x0a\xff\x01", b"\x12" + b"\x80" * 12):
            with pytest.raises(grpc.RpcError) as err:
                raw(garbage, timeout=5)
            assert err.value.code() is grpc.StatusCode.INVALID_ARGUMENT
            assert "Traceback" not in (err.value.details() or "")
    # Still serving.
    client.plans.list_plans(pb.ListPlansRequest(shop_id="fuzz")).first_page()
