"""ExplainTermExpression and PreviewPlan's fire times through the server."""

from __future__ import annotations

from datetime import UTC, datetime

from google.protobuf.timestamp_pb2 import Timestamp

from custops.client import AsyncCustopsClient
from custops.plan.v1 import plan_pb2 as pb


def ts(year: int, month: int, day: int, hour: int, minute: int) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(datetime(year, month, day, hour, minute, tzinfo=UTC))
    return stamp


async def test_explain_the_daily_window(client: AsyncCustopsClient) -> None:
    reply = await client.plans.explain_term_expression(
        pb.ExplainTermExpressionRequest(
            shop_id="s1",
            expression="* 20-30 8-20 * * ? 31",
            time_zone="Asia/Shanghai",
            from_time=ts(2026, 11, 24, 0, 0),  # 08:00 in Shanghai
            count=2,
        )
    )
    assert reply.valid and not reply.violations
    assert reply.normalized == "* 20-30 8-20 * * * * 31"
    assert (reply.type_code, reply.type_name) == (31, "daily")
    assert reply.description == "every day from 08:20 to 20:30"
    assert reply.description_zh == "每天 08:20 至 20:30"
    assert [(w.start.ToDatetime(), w.end.ToDatetime()) for w in reply.next_windows] == [
        (datetime(2026, 11, 24, 0, 20), datetime(2026, 11, 24, 12, 30)),
        (datetime(2026, 11, 25, 0, 20), datetime(2026, 11, 25, 12, 30)),
    ]
    assert [t.ToDatetime() for t in reply.next_fire_times] == [
        datetime(2026, 11, 24, 0, 20),
        datetime(2026, 11, 25, 0, 20),
    ]


async def test_explain_an_invalid_expression_answers_with_its_violations(
    client: AsyncCustopsClient,
) -> None:
    reply = await client.plans.explain_term_expression(
        pb.ExplainTermExpressionRequest(shop_id="s1", expression="* * 8-25 * 13 ? 31")
    )
    assert not reply.valid
    assert {(v.field, v.description.split(" (")[0]) for v in reply.violations} == {
        ("hour", "hour range 8-25: 25 is out of 0-23"),
        ("month", "month value 13: 13 is out of 1-12"),
    }
    assert not reply.normalized and not reply.next_fire_times


async def test_explain_a_delay_counts_from_the_anchor(client: AsyncCustopsClient) -> None:
    reply = await client.plans.explain_term_expression(
        pb.ExplainTermExpressionRequest(
            shop_id="s1",
            expression="0 30 2 * * * * 3",
            from_time=ts(2026, 11, 24, 0, 0),
            anchor_time=ts(2026, 11, 24, 1, 0),
        )
    )
    assert [t.ToDatetime() for t in reply.next_fire_times] == [datetime(2026, 11, 24, 3, 30)]
    (window,) = reply.next_windows
    assert not window.HasField("end")  # a delay opens and never closes
    assert reply.description_zh == "延迟2小时30分钟后"


async def test_preview_fire_times_stay_inside_the_term(client: AsyncCustopsClient) -> None:
    plan = pb.Plan(
        display_name="Member day",
        time_zone="Asia/Shanghai",
        time=pb.PlanTime(
            execution="0 0 10 * * 1 * 32",  # Mondays at 10:00
            term="0-0 0-0 0-0 1-31 1-12 * 2030-2030 2",  # during 2030 only
        ),
    )
    reply = await client.plans.preview_plan(
        pb.PreviewPlanRequest(
            shop_id="s1", plan=plan, parts=[pb.PREVIEW_PART_FIRE_TIMES], fire_time_count=2
        )
    )
    assert [t.ToDatetime() for t in reply.next_fire_times] == [
        datetime(2030, 1, 7, 2, 0),  # the first Monday of 2030, 10:00 in Shanghai
        datetime(2030, 1, 14, 2, 0),
    ]
