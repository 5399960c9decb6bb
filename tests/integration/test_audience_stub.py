"""The audience stand-in through gRPC, on a known population of 3000."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from datetime import UTC, date, datetime, timedelta

import grpc
import pytest
from google.protobuf.duration_pb2 import Duration
from google.protobuf.field_mask_pb2 import FieldMask
from google.protobuf.timestamp_pb2 import Timestamp

from custops.audience.v1 import audience_pb2 as pb
from custops.audience.v1 import audience_pb2_grpc
from custops.stubadmin.v1 import stubadmin_pb2 as admin
from domain.birthday import occurrence
from server.stand_ins.app import StubOptions, Stubs
from tests.integration.stubs_fixture import EPOCH, POPULATION, StubClients

AS_OF = EPOCH + timedelta(hours=6)  # 14:00 in Shanghai on 2026-11-24


def evaluation(at: datetime = AS_OF, zone: str = "Asia/Shanghai") -> pb.Evaluation:
    stamp = Timestamp()
    stamp.FromDatetime(at)
    return pb.Evaluation(as_of=stamp, time_zone=zone)


async def everyone(s: StubClients) -> list[pb.MemberProfile]:
    ids = [f"m{i:08d}" for i in range(POPULATION)]
    profiles: list[pb.MemberProfile] = []
    for start in range(0, POPULATION, 1000):
        reply = await s.audience.BatchGetMemberProfiles(
            pb.BatchGetMemberProfilesRequest(shop_id="s1", member_ids=ids[start : start + 1000])
        )
        profiles += reply.profiles
    return profiles


async def page_all(
    s: StubClients | audience_pb2_grpc.AudienceServiceStub,
    rule: pb.AudienceRule,
    size: int = 250,
    shop: str = "s1",
    **extra: int,
) -> list[str]:
    audience = s.audience if isinstance(s, StubClients) else s
    ids: list[str] = []
    token = ""
    for _ in range(1000):
        reply = await audience.ListAudienceMembers(
            pb.ListAudienceMembersRequest(
                shop_id=shop,
                rule=rule,
                evaluation=evaluation(),
                page_size=size,
                page_token=token,
                **extra,
            )
        )
        ids += reply.member_ids
        token = reply.next_page_token
        if not token:
            return ids
    raise AssertionError("paging did not end")


def _seen(profile: pb.MemberProfile, field: str) -> datetime | None:
    present = profile.HasField(field)  # type: ignore[arg-type]
    return getattr(profile, field).ToDatetime(UTC) if present else None


RULES: dict[str, tuple[pb.AudienceRule, Callable[[pb.MemberProfile], bool]]] = {
    "gold": (
        pb.AudienceRule(levels=pb.LevelCondition(levels=["V4", "V5"])),
        lambda p: p.level in ("V4", "V5"),
    ),
    "birthday month, 7 days ahead": (
        pb.AudienceRule(birthday=pb.BirthdayCondition(scope=pb.BIRTHDAY_SCOPE_MONTH, days_ahead=7)),
        lambda p: p.birthday.month == 12,  # 2026-11-24 + 7 days is in December
    ),
    "birthday today": (
        pb.AudienceRule(birthday=pb.BirthdayCondition(scope=pb.BIRTHDAY_SCOPE_DAY)),
        lambda p: occurrence(p.birthday.month, p.birthday.day, 2026) == date(2026, 11, 24),
    ),
    "followers browsing without buying": (
        pb.AudienceRule(
            all_of=pb.RuleList(
                rules=[
                    pb.AudienceRule(follower=pb.FollowerCondition()),
                    pb.AudienceRule(
                        browsed_not_bought=pb.BrowsedNotBoughtCondition(within_days=30)
                    ),
                ]
            )
        ),
        lambda p: (
            p.follower
            and _seen(p, "last_browse_time") is not None
            and AS_OF - timedelta(days=30) <= _seen(p, "last_browse_time") <= AS_OF  # type: ignore[operator]
            and not (
                _seen(p, "last_order_time") is not None
                and _seen(p, "last_order_time") >= _seen(p, "last_browse_time")  # type: ignore[operator]
            )
        ),
    ),
    "not tagged baby or sports": (
        pb.AudienceRule(negate=pb.AudienceRule(tags=pb.TagCondition(tags=["baby", "sports"]))),
        lambda p: not ({"baby", "sports"} & set(p.tags)),
    ),
    "tagged food and books, or V5": (
        pb.AudienceRule(
            any_of=pb.RuleList(
                rules=[
                    pb.AudienceRule(
                        tags=pb.TagCondition(tags=["food", "books"], match=pb.TAG_MATCH_ALL)
                    ),
                    pb.AudienceRule(levels=pb.LevelCondition(levels=["V5"])),
                ]
            )
        ),
        lambda p: {"food", "books"} <= set(p.tags) or p.level == "V5",
    ),
}


@pytest.mark.parametrize("name", list(RULES))
async def test_rules_select_exactly_the_matching_members(stubs: StubClients, name: str) -> None:
    rule, predicate = RULES[name]
    expected = [p.member_id for p in await everyone(stubs) if predicate(p)]
    assert expected, "the known population should hold members for every rule"
    assert await page_all(stubs, rule) == expected
    estimate = await stubs.audience.EstimateAudience(
        pb.EstimateAudienceRequest(shop_id="s1", rule=rule, evaluation=evaluation())
    )
    assert (estimate.count, estimate.exact) == (len(expected), True)
    sample = [f"m{i:08d}" for i in range(0, POPULATION, 7)] + ["m99999999", "nobody"]
    match = await stubs.audience.MatchMembers(
        pb.MatchMembersRequest(shop_id="s1", rule=rule, evaluation=evaluation(), member_ids=sample)
    )
    assert list(match.matched_member_ids) == [i for i in sample if i in set(expected)]
    assert list(match.unknown_member_ids) == ["m99999999", "nobody"]


async def test_population_has_29_february_birthdays_and_is_per_shop(stubs: StubClients) -> None:
    profiles = await everyone(stubs)
    assert any(p.birthday.month == 2 and p.birthday.day == 29 for p in profiles)
    other = await stubs.audience.BatchGetMemberProfiles(
        pb.BatchGetMemberProfilesRequest(shop_id="s2", member_ids=["m00000000"])
    )
    again = await stubs.audience.BatchGetMemberProfiles(
        pb.BatchGetMemberProfilesRequest(shop_id="s1", member_ids=["m00000000"])
    )
    assert again.profiles[0] == profiles[0]
    assert other.profiles[0] != profiles[0]


async def test_cursor_is_stable_resumable_and_sharded(stubs: StubClients) -> None:
    rule = pb.AudienceRule(negate=pb.AudienceRule(levels=pb.LevelCondition(levels=["V0"])))
    whole = await page_all(stubs, rule, size=100)
    assert whole == await page_all(stubs, rule, size=100)  # same rule, same instant, same order
    assert whole == await page_all(stubs, rule, size=777)
    # A caller that crashed after the second page resumes from its cursor.
    first = await stubs.audience.ListAudienceMembers(
        pb.ListAudienceMembersRequest(
            shop_id="s1", rule=rule, evaluation=evaluation(), page_size=100
        )
    )
    second = await stubs.audience.ListAudienceMembers(
        pb.ListAudienceMembersRequest(
            shop_id="s1",
            rule=rule,
            evaluation=evaluation(),
            page_size=100,
            page_token=first.next_page_token,
        )
    )
    rest: list[str] = []
    token = second.next_page_token
    while token:
        page = await stubs.audience.ListAudienceMembers(
            pb.ListAudienceMembersRequest(
                shop_id="s1",
                rule=rule,
                evaluation=pb.Evaluation(time_zone="Asia/Shanghai"),
                page_size=100,
                page_token=token,
            )
        )
        rest += page.member_ids
        token = page.next_page_token
    assert [*first.member_ids, *second.member_ids, *rest] == whole
    # Shards are disjoint and together make the whole audience.
    shards = [await page_all(stubs, rule, size=300, shard_count=3, shard_index=i) for i in range(3)]
    assert [member for shard in shards for member in shard] == whole
    # A cursor does not fit another rule.
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stubs.audience.ListAudienceMembers(
            pb.ListAudienceMembersRequest(
                shop_id="s1",
                rule=pb.AudienceRule(follower=pb.FollowerCondition()),
                evaluation=evaluation(),
                page_token=first.next_page_token,
            )
        )
    assert err.value.code() is grpc.StatusCode.INVALID_ARGUMENT


async def test_large_populations_are_estimated_and_labelled(stubs: StubClients) -> None:
    from server.stand_ins.app import StubOptions, Stubs

    big = Stubs(StubOptions(seed=7, population=10_000_000, epoch=EPOCH))
    port = await big.start("127.0.0.1:0")
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            from custops.audience.v1 import audience_pb2_grpc

            audience = audience_pb2_grpc.AudienceServiceStub(channel)
            rule = pb.AudienceRule(levels=pb.LevelCondition(levels=["V5"]))
            estimate = await audience.EstimateAudience(
                pb.EstimateAudienceRequest(shop_id="s1", rule=rule, evaluation=evaluation())
            )
            assert not estimate.exact
            assert 200_000 < estimate.count < 400_000  # about 3% of ten million
            last = await audience.BatchGetMemberProfiles(
                pb.BatchGetMemberProfilesRequest(shop_id="s1", member_ids=["m09999999"])
            )
            assert last.profiles[0].member_id == "m09999999"
    finally:
        await big.stop(None)


async def _set(stubs: StubClients, paths: list[str], **values: object) -> None:
    settings = admin.StubSettings(system=admin.STUB_SYSTEM_AUDIENCE, **values)  # type: ignore[arg-type]
    await stubs.admin.UpdateStubSettings(
        admin.UpdateStubSettingsRequest(settings=settings, update_mask=FieldMask(paths=paths))
    )


async def test_capacity_refuses_what_exceeds_the_bucket(stubs: StubClients) -> None:
    await _set(stubs, ["capacity.items_per_second"], capacity=admin.Capacity(items_per_second=1))
    rule = pb.AudienceRule(follower=pb.FollowerCondition())
    request = pb.ListAudienceMembersRequest(
        shop_id="s1", rule=rule, evaluation=evaluation(), page_size=5000
    )
    await stubs.audience.ListAudienceMembers(request)  # the burst covers one largest batch
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stubs.audience.ListAudienceMembers(request)
    assert err.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    counters = await stubs.admin.GetStubCounters(
        admin.GetStubCountersRequest(system=admin.STUB_SYSTEM_AUDIENCE)
    )
    assert counters.counters.rejected_for_capacity == 1


async def test_faults_on_demand(stubs: StubClients) -> None:
    request = pb.EstimateAudienceRequest(
        shop_id="s1", rule=pb.AudienceRule(follower=pb.FollowerCondition()), evaluation=evaluation()
    )
    await _set(stubs, ["faults.error_rate"], faults=admin.Faults(error_rate=1.0))
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stubs.audience.EstimateAudience(request)
    assert err.value.code() is grpc.StatusCode.UNAVAILABLE

    await _set(
        stubs, ["faults.error_rate", "faults.timeout_rate"], faults=admin.Faults(timeout_rate=1.0)
    )
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stubs.audience.EstimateAudience(request, timeout=0.3)
    assert err.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED

    await _set(
        stubs,
        ["faults.timeout_rate", "faults.latency_min", "faults.latency_max"],
        faults=admin.Faults(
            latency_min=Duration(nanos=200_000_000), latency_max=Duration(nanos=300_000_000)
        ),
    )
    started = asyncio.get_running_loop().time()
    await stubs.audience.EstimateAudience(request)
    assert asyncio.get_running_loop().time() - started >= 0.2  # never shorter than the latency

    counters = (
        await stubs.admin.GetStubCounters(
            admin.GetStubCountersRequest(system=admin.STUB_SYSTEM_AUDIENCE)
        )
    ).counters
    assert (counters.injected_errors, counters.timeouts, counters.succeeded) == (1, 1, 1)

    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stubs.admin.UpdateStubSettings(
            admin.UpdateStubSettingsRequest(
                settings=admin.StubSettings(
                    system=admin.STUB_SYSTEM_AUDIENCE, faults=admin.Faults(error_rate=2)
                ),
                update_mask=FieldMask(paths=["faults.error_rate"]),
            )
        )
    assert err.value.code() is grpc.StatusCode.INVALID_ARGUMENT


# Shops with their own population size, beside the default of POPULATION.
SHOP_SIZES = {"small": 1000, "big": 5000, "empty": 0}
EVERYONE = pb.AudienceRule(
    any_of=pb.RuleList(
        rules=[
            pb.AudienceRule(follower=pb.FollowerCondition()),
            pb.AudienceRule(negate=pb.AudienceRule(follower=pb.FollowerCondition())),
        ]
    )
)
FOLLOWERS = pb.AudienceRule(follower=pb.FollowerCondition())


@pytest.fixture
async def sized() -> AsyncIterator[audience_pb2_grpc.AudienceServiceStub]:
    options = StubOptions(
        seed=7, population=POPULATION, epoch=EPOCH, shop_populations=dict(SHOP_SIZES)
    )
    running = Stubs(options)
    port = await running.start("127.0.0.1:0")
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        yield audience_pb2_grpc.AudienceServiceStub(channel)
    await running.stop(None)


async def _estimate(
    audience: audience_pb2_grpc.AudienceServiceStub, shop: str, rule: pb.AudienceRule
) -> tuple[int, bool]:
    reply = await audience.EstimateAudience(
        pb.EstimateAudienceRequest(shop_id=shop, rule=rule, evaluation=evaluation())
    )
    return reply.count, reply.exact


async def test_a_shop_can_have_its_own_population_size(
    stubs: StubClients, sized: audience_pb2_grpc.AudienceServiceStub
) -> None:
    ids = ["m00000999", "m00001000", "m00002999", "m00003000", "m00004999", "m00005000"]
    known = {"s1": ids[:3], "small": ids[:1], "big": ids[:5], "empty": []}
    for shop, members in known.items():
        profiles = await sized.BatchGetMemberProfiles(
            pb.BatchGetMemberProfilesRequest(shop_id=shop, member_ids=ids)
        )
        assert [p.member_id for p in profiles.profiles] == members, shop
        assert list(profiles.unknown_member_ids) == [i for i in ids if i not in members], shop
        match = await sized.MatchMembers(
            pb.MatchMembersRequest(
                shop_id=shop, rule=EVERYONE, evaluation=evaluation(), member_ids=ids
            )
        )
        assert list(match.matched_member_ids) == members, shop
        assert list(match.unknown_member_ids) == [i for i in ids if i not in members], shop
        # A precise audience keeps only the shop's own members.
        listed = pb.AudienceRule(members=pb.MemberList(member_ids=ids))
        assert await page_all(sized, listed, shop=shop) == members, shop
        assert await _estimate(sized, shop, listed) == (len(members), True), shop
    for shop, size in {"s1": POPULATION, **SHOP_SIZES}.items():
        assert await _estimate(sized, shop, EVERYONE) == (size, True), shop
        everyone_ids = [f"m{i:08d}" for i in range(size)]
        assert await page_all(sized, EVERYONE, size=700, shop=shop) == everyone_ids, shop
        shards = [
            await page_all(sized, EVERYONE, size=300, shop=shop, shard_count=3, shard_index=i)
            for i in range(3)
        ]
        assert [m for shard in shards for m in shard] == everyone_ids, shop
    # The small shop's followers: exactly those among its first 1000 members.
    followers = await page_all(sized, FOLLOWERS, shop="small")
    assert followers and all(int(i[1:]) < 1000 for i in followers)
    assert await _estimate(sized, "small", FOLLOWERS) == (len(followers), True)
    # A shop without its own size answers as without any override.
    assert await page_all(sized, FOLLOWERS) == await page_all(stubs, FOLLOWERS)
    assert await _estimate(sized, "s1", FOLLOWERS) == await _estimate(
        stubs.audience, "s1", FOLLOWERS
    )


def _check(key: str, rule: pb.AudienceRule, zone: str = "Asia/Shanghai") -> pb.RuleCheck:
    return pb.RuleCheck(key=key, rule=rule, evaluation=evaluation(zone=zone))


async def test_match_member_rules_agrees_with_match_members(stubs: StubClients) -> None:
    # 2026-11-24 06:00 UTC is still 23 November in Los Angeles: seven days
    # ahead is 30 November there, 1 December in Shanghai.
    november = pb.AudienceRule(
        birthday=pb.BirthdayCondition(scope=pb.BIRTHDAY_SCOPE_MONTH, days_ahead=7)
    )
    checks = [
        _check("birthday", november, "America/Los_Angeles"),
        _check("levels", pb.AudienceRule(levels=pb.LevelCondition(levels=["V2", "V3"]))),
        _check("browsing", RULES["followers browsing without buying"][0]),
    ]
    sample = [f"m{i:08d}" for i in range(0, POPULATION, POPULATION // 200)]
    assert len(sample) == 200
    expected: dict[str, set[str]] = {}
    for check in checks:
        reply = await stubs.audience.MatchMembers(
            pb.MatchMembersRequest(
                shop_id="s1", rule=check.rule, evaluation=check.evaluation, member_ids=sample
            )
        )
        expected[check.key] = set(reply.matched_member_ids)
        assert 0 < len(expected[check.key]) < len(sample), check.key
    profiles = {p.member_id: p for p in await everyone(stubs)}
    assert expected["birthday"] == {m for m in sample if profiles[m].birthday.month == 11}
    for member in sample:
        reply = await stubs.audience.MatchMemberRules(
            pb.MatchMemberRulesRequest(shop_id="s1", member_id=member, checks=checks)
        )
        assert not reply.unknown_member
        assert list(reply.matched_keys) == [c.key for c in checks if member in expected[c.key]]


async def test_match_member_rules_keeps_request_order_and_knows_unknown_members(
    stubs: StubClients, sized: audience_pb2_grpc.AudienceServiceStub
) -> None:
    level = (await everyone(stubs))[42].level
    counters = admin.GetStubCountersRequest(system=admin.STUB_SYSTEM_AUDIENCE)
    before = (await stubs.admin.GetStubCounters(counters)).counters
    others = [code for code in ("V0", "V1", "V2", "V3", "V4", "V5") if code != level]
    checks = [
        _check("z", EVERYONE),
        _check("not-mine", pb.AudienceRule(levels=pb.LevelCondition(levels=others))),
        _check("a", pb.AudienceRule(levels=pb.LevelCondition(levels=[level]))),
        _check("listed", pb.AudienceRule(members=pb.MemberList(member_ids=["m00000042"]))),
        _check("m", EVERYONE, "Europe/Berlin"),
    ]
    request = pb.MatchMemberRulesRequest(shop_id="s1", member_id="m00000042", checks=checks)
    reply = await stubs.audience.MatchMemberRules(request)
    assert (list(reply.matched_keys), reply.unknown_member) == (["z", "a", "listed", "m"], False)
    reply = await stubs.audience.MatchMemberRules(
        pb.MatchMemberRulesRequest(shop_id="s1", member_id="m00000042", checks=checks[::-1])
    )
    assert list(reply.matched_keys) == ["m", "listed", "a", "z"]
    empty = await stubs.audience.MatchMemberRules(
        pb.MatchMemberRulesRequest(shop_id="s1", member_id="m00000042")
    )
    assert (list(empty.matched_keys), empty.unknown_member) == ([], False)
    for member in ("m00003000", "nobody", "m0000004"):
        reply = await stubs.audience.MatchMemberRules(
            pb.MatchMemberRulesRequest(shop_id="s1", member_id=member, checks=checks)
        )
        assert (list(reply.matched_keys), reply.unknown_member) == ([], True), member
    # One item of capacity per call, whatever the number of checks.
    after = (await stubs.admin.GetStubCounters(counters)).counters
    assert (after.calls - before.calls, after.items - before.items) == (6, 6)
    # A member of the default size is unknown to a smaller shop, known to a bigger.
    for shop, unknown in (("s1", False), ("small", True), ("big", False), ("empty", True)):
        reply = await sized.MatchMemberRules(
            pb.MatchMemberRulesRequest(shop_id=shop, member_id="m00001500", checks=checks[:1])
        )
        assert (list(reply.matched_keys), reply.unknown_member) == (
            ([], True) if unknown else (["z"], False)
        ), shop
    reply = await sized.MatchMemberRules(
        pb.MatchMemberRulesRequest(shop_id="big", member_id="m00004999", checks=checks[:1])
    )
    assert (list(reply.matched_keys), reply.unknown_member) == (["z"], False)


def _far_future() -> pb.Evaluation:
    return pb.Evaluation(as_of=Timestamp(seconds=8_000_000_000), time_zone="Asia/Shanghai")


GOOD = _check("ok", FOLLOWERS)
INVALID_MATCH_MEMBER_RULES = {
    "member_id": pb.MatchMemberRulesRequest(shop_id="s1", checks=[GOOD]),
    "checks": pb.MatchMemberRulesRequest(
        shop_id="s1",
        member_id="m00000001",
        checks=[_check(f"k{i}", FOLLOWERS) for i in range(1001)],
    ),
    "checks[1].rule": pb.MatchMemberRulesRequest(
        shop_id="s1", member_id="m00000001", checks=[GOOD, pb.RuleCheck(key="no rule")]
    ),
    "checks[2].rule.levels.levels": pb.MatchMemberRulesRequest(
        shop_id="s1",
        member_id="m00000001",
        checks=[
            _check("a", FOLLOWERS),
            GOOD,
            _check("bad", pb.AudienceRule(levels=pb.LevelCondition())),
        ],
    ),
    "checks[0].evaluation.time_zone": pb.MatchMemberRulesRequest(
        shop_id="s1", member_id="m00000001", checks=[_check("a", FOLLOWERS, "Mars/Olympus")]
    ),
    "checks[1].evaluation.as_of": pb.MatchMemberRulesRequest(
        shop_id="s1",
        member_id="m00000001",
        checks=[GOOD, pb.RuleCheck(key="late", rule=FOLLOWERS, evaluation=_far_future())],
    ),
    "checks[2].key": pb.MatchMemberRulesRequest(
        shop_id="s1",
        member_id="m00000001",
        checks=[GOOD, _check("other", FOLLOWERS), _check("ok", EVERYONE)],
    ),
    "checks[0].key": pb.MatchMemberRulesRequest(
        shop_id="s1", member_id="m00000001", checks=[_check("", FOLLOWERS)]
    ),
}


@pytest.mark.parametrize("field", list(INVALID_MATCH_MEMBER_RULES))
async def test_match_member_rules_names_the_invalid_field(stubs: StubClients, field: str) -> None:
    counters = admin.GetStubCountersRequest(system=admin.STUB_SYSTEM_AUDIENCE)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stubs.audience.MatchMemberRules(INVALID_MATCH_MEMBER_RULES[field])
    assert err.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert (err.value.details() or "").startswith(f"{field}: "), err.value.details()
    assert (await stubs.admin.GetStubCounters(counters)).counters.calls == 0  # nothing admitted


async def test_batch_match_member_rules_answers_each_member_as_match_member_rules(
    stubs: StubClients,
) -> None:
    level = (await everyone(stubs))[42].level
    birthday_week = pb.AudienceRule(
        birthday=pb.BirthdayCondition(scope=pb.BIRTHDAY_SCOPE_WEEK, days_ahead=3)
    )
    checks = [
        _check("followers", FOLLOWERS),
        _check("level", pb.AudienceRule(levels=pb.LevelCondition(levels=[level]))),
        _check("birthday", birthday_week),
    ]
    members = [f"m{i:08d}" for i in range(0, POPULATION, 97)] + ["nobody", "m00000042"]
    one_by_one = [
        await stubs.audience.MatchMemberRules(
            pb.MatchMemberRulesRequest(shop_id="s1", member_id=m, checks=checks)
        )
        for m in members
    ]
    counters = admin.GetStubCountersRequest(system=admin.STUB_SYSTEM_AUDIENCE)
    before = (await stubs.admin.GetStubCounters(counters)).counters
    reply = await stubs.audience.BatchMatchMemberRules(
        pb.BatchMatchMemberRulesRequest(shop_id="s1", member_ids=members, checks=checks)
    )
    assert [m.member_id for m in reply.members] == members  # in order, repeats answered
    assert [(list(m.matched_keys), m.unknown_member) for m in reply.members] == [
        (list(r.matched_keys), r.unknown_member) for r in one_by_one
    ]
    assert reply.members[members.index("nobody")].unknown_member
    # One item of capacity per member.
    after = (await stubs.admin.GetStubCounters(counters)).counters
    assert (after.calls - before.calls, after.items - before.items) == (1, len(members))

    # Checks without an instant of their own are evaluated at the request's:
    # half a year on, other members have their birthday week.
    later = AS_OF + timedelta(days=180)
    at_later = [
        await stubs.audience.MatchMemberRules(
            pb.MatchMemberRulesRequest(
                shop_id="s1",
                member_id=m,
                checks=[pb.RuleCheck(key="b", rule=birthday_week, evaluation=evaluation(later))],
            )
        )
        for m in members
    ]
    stamp = Timestamp()
    stamp.FromDatetime(later)
    bare = pb.RuleCheck(
        key="b", rule=birthday_week, evaluation=pb.Evaluation(time_zone="Asia/Shanghai")
    )
    at_request = await stubs.audience.BatchMatchMemberRules(
        pb.BatchMatchMemberRulesRequest(
            shop_id="s1", member_ids=members, checks=[bare], as_of=stamp
        )
    )
    assert [list(m.matched_keys) for m in at_request.members] == [
        list(r.matched_keys) for r in at_later
    ]
    assert [list(r.matched_keys) for r in at_later] != [
        ["b"] if "birthday" in r.matched_keys else [] for r in one_by_one
    ]


INVALID_BATCH_MATCH = {
    "member_ids": pb.BatchMatchMemberRulesRequest(
        shop_id="s1", member_ids=[f"m{i:08d}" for i in range(1001)], checks=[GOOD]
    ),
    "member_ids[1]": pb.BatchMatchMemberRulesRequest(
        shop_id="s1", member_ids=["m00000001", ""], checks=[GOOD]
    ),
    "as_of": pb.BatchMatchMemberRulesRequest(
        shop_id="s1",
        member_ids=["m00000001"],
        checks=[GOOD],
        as_of=Timestamp(seconds=8_000_000_000),
    ),
    "checks[1].key": pb.BatchMatchMemberRulesRequest(
        shop_id="s1", member_ids=["m00000001"], checks=[GOOD, GOOD]
    ),
}


@pytest.mark.parametrize("field", list(INVALID_BATCH_MATCH))
async def test_batch_match_member_rules_names_the_invalid_field(
    stubs: StubClients, field: str
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stubs.audience.BatchMatchMemberRules(INVALID_BATCH_MATCH[field])
    assert err.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert (err.value.details() or "").startswith(f"{field}: "), err.value.details()
