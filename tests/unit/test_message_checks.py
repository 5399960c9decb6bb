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
