"""Who may call each RPC of the public port: the roles it needs and where its
shop comes from (docs/security.md).

Every method of the public services has a rule; a method without one is
refused (fail closed), and tests/integration/test_authorization.py fails
for any RPC of the service descriptors that is missing here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from domain.access import Caller, Role
from server.mapping.plan import DOWNSTREAM_NAMES

FRONT, ADMIN, OPERATOR = Role.FRONT_OFFICE, Role.MERCHANT_ADMIN, Role.OPERATOR
APPROVER = Role.APPROVER
PLANS = "/custops.plan.v1.OperationPlanService/"
SCENARIO = "/custops.scenario.v1.ScenarioAggregationService/"
AUDIT = "/custops.audit.v1.AuditService/"


@dataclass(frozen=True)
class Rule:
    roles: frozenset[Role]  # any one of them will do
    # Dotted path of the request field naming the shop.
    shop_field: str = "shop_id"
    # An empty shop means the whole platform (throttle settings), which only
    # a caller of every shop may see or change. Elsewhere an empty shop is
    # bad input, which the call itself answers with INVALID_ARGUMENT.
    empty_is_platform: bool = False
    # The call changes state: the audit log records it, failed or not.
    changes: bool = False

    def shop_of(self, request: Any) -> str:
        return _field(request, self.shop_field)

    def check(self, caller: Caller, request: Any) -> None:
        """PermissionDenied unless `caller` may make this call; decided from
        the request alone, before anything is read (AIP-193)."""
        shop = self.shop_of(request)
        caller.require(self.roles, shop if shop or self.empty_is_platform else None)


def named_resource(request: Any) -> str:
    """The resource a request names, as the audit log names it:
    plans/P[/runs/R], members/M[/benefits/B], throttles/DOWNSTREAM."""
    plan = getattr(request, "plan_id", "") or (
        request.plan.plan_id if _has(request, "plan") else ""
    )
    if plan:
        run = getattr(request, "run_id", "")
        return f"plans/{plan}" + (f"/runs/{run}" if run else "")
    member = getattr(request, "member_id", "")
    if member:
        benefit = getattr(request, "benefit_instance_id", "")
        return f"members/{member}" + (f"/benefits/{benefit}" if benefit else "")
    if _has(request, "setting"):
        return f"throttles/{DOWNSTREAM_NAMES.get(request.setting.downstream, '')}"
    if _has(request, "policy"):
        return SHOP_POLICY
    return ""


def _has(message: Any, name: str) -> bool:
    try:
        return bool(message.HasField(name))
    except (AttributeError, ValueError):
        return False


def _field(message: Any, path: str) -> str:
    for name in path.split("."):
        message = getattr(message, name)
    return str(message)


# The audit log's name of a shop's policy.
SHOP_POLICY = "shop_policy"

# The state-changing calls.
CHANGES = {
    "CreatePlan",
    "UpdatePlan",
    "DeletePlan",
    "PublishPlan",
    "PausePlan",
    "ResumePlan",
    "EndPlan",
    "CreatePlanFromTemplate",
    "TriggerPlanRun",
    "CancelPlanRun",
    "RetryFailedItems",
    "RecoverPlanRun",
    "ApprovePlan",
    "RejectPlan",
    "ReportBenefitUsed",
    "ReplenishBenefit",
    "RecordMemberEvents",
    "EraseMember",
}


def _rules(prefix: str, roles: tuple[Role, ...], *methods: str) -> dict[str, Rule]:
    return {
        prefix + method: Rule(frozenset(roles), changes=method in CHANGES) for method in methods
    }


RULES: dict[str, Rule] = {
    **_rules(
        SCENARIO,
        (FRONT,),
        "GetMemberView",
        "ListMemberBenefits",
        "ListMemberRecords",
        "ReportBenefitUsed",
        "ReplenishBenefit",
        "GetCheckoutBenefits",
        "RecordMemberEvents",
    ),
    # Erasing a member is the shop's decision, on the member's request.
    **_rules(SCENARIO, (ADMIN,), "EraseMember"),
    # A merchant's admin tool makes and runs the shop's plans.
    **_rules(
        PLANS,
        (ADMIN,),
        "CreatePlan",
        "UpdatePlan",
        "DeletePlan",
        "PublishPlan",
        "PausePlan",
        "ResumePlan",
        "EndPlan",
        "PreviewPlan",
        "ListPlanTemplates",
        "CreatePlanFromTemplate",
        "ExplainTermExpression",
        "TriggerPlanRun",
        "CancelPlanRun",
        "RecoverPlanRun",
    ),
    # Operators read plans, runs and statistics of the shops they look after.
    **_rules(
        PLANS,
        (ADMIN, OPERATOR),
        "GetPlan",
        "ListPlans",
        "ListPlanRuns",
        "GetPlanRun",
        "GetPlanStatistics",
        "ListMemberOutcomes",
        "ExportMemberOutcomes",
        "GetPlanEffect",
    ),
    # Retrying spends the downstream systems' shared capacity: an operator's call.
    **_rules(PLANS, (OPERATOR,), "RetryFailedItems"),
    PLANS + "GetThrottleSettings": Rule(frozenset((OPERATOR,)), empty_is_platform=True),
    PLANS + "UpdateThrottleSetting": Rule(
        frozenset((OPERATOR,)), shop_field="setting.shop_id", empty_is_platform=True, changes=True
    ),
    # A shop's policy bounds all of its plans: its admins set it.
    PLANS + "GetShopPolicy": Rule(frozenset((ADMIN, OPERATOR))),
    PLANS + "UpdateShopPolicy": Rule(
        frozenset((ADMIN,)), shop_field="policy.shop_id", changes=True
    ),
    # A plan above the shop's approval threshold needs a second pair of eyes.
    **_rules(PLANS, (APPROVER,), "ApprovePlan", "RejectPlan"),
    # A shop's audit log is for its admins and operators; the platform's
    # own entries (throttles of every shop) for operators of every shop.
    AUDIT + "ListAuditEntries": Rule(frozenset((ADMIN, OPERATOR)), empty_is_platform=True),
}
