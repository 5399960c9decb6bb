"""server.message_checks: the limits every request meets, named by field path."""

from __future__ import annotations

from custops.plan.v1 import plan_pb2 as pb
from server.message_checks import MAX_ITEMS, MAX_STRING_CHARS, request_violations


def test_long_strings_long_lists_and_nul_are_named_by_their_path() -> None:
    plan = pb.Plan(display_name="x" * (MAX_STRING_CHARS + 1))
    plan.actions.add().send_message.params["k"] = "a\x00b"
    request = pb.UpdatePlanRequest(shop_id="s", plan=plan)
    request.update_mask.paths.extend(["display_name"] * (MAX_ITEMS + 1))
    found = {(v.field, v.description) for v in request_violations(request)}
    assert found == {
        ("plan.display_name", f"at most {MAX_STRING_CHARS:,} characters"),
        ("plan.actions[0].send_message.params['k']", "must not contain the NUL character"),
        ("update_mask.paths", f"at most {MAX_ITEMS:,} items, got {MAX_ITEMS + 1:,}"),
    }


def test_requests_within_the_limits_pass() -> None:
    plan = pb.Plan(display_name="x" * MAX_STRING_CHARS)
    request = pb.UpdatePlanRequest(shop_id="s", plan=plan)
    request.update_mask.paths.extend(["display_name"] * MAX_ITEMS)
    assert request_violations(request) == []


def test_enum_numbers_the_contract_does_not_define_are_named() -> None:
    """Proto3 keeps unknown enum numbers; a request carrying one is a
    caller's mistake, answered before any use case reads it."""
    request = pb.ListMemberOutcomesRequest(shop_id="s")
    request.outcomes.extend([pb.MEMBER_OUTCOME_KIND_GRANTED, 99])  # type: ignore[list-item]
    unknown = pb.Downstream.ValueType(7)
    setting = pb.UpdateThrottleSettingRequest(setting=pb.ThrottleSetting(downstream=unknown))
    found = {v.field: v.description for v in request_violations(request)}
    assert list(found) == ["outcomes[1]"] and "MEMBER_OUTCOME_KIND_GRANTED" in found["outcomes[1]"]
    assert [v.field for v in request_violations(setting)] == ["setting.downstream"]
    fine = pb.ListMemberOutcomesRequest(outcomes=[pb.MEMBER_OUTCOME_KIND_GRANTED])
    assert request_violations(fine) == []
