"""A member's user operation records: the timeline of what plans did for
the member and what the member did with it, one record per thing that
happened, named by its idempotency key so it is written once."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


class RecordKind(enum.StrEnum):
    """As stored (and compared with stored text: a StrEnum equals its value)."""

    BENEFIT_GRANTED = "benefit_granted"  # by a run
    MESSAGE_SENT = "message_sent"  # by a run
    BENEFIT_USED = "benefit_used"  # an order used it (ReportBenefitUse)
    BENEFIT_REPLENISHED = "benefit_replenished"  # given back (ReplenishBenefit)
    BENEFIT_RECOVERED = "benefit_recovered"  # taken back (a recovery run, EndPlan)


@dataclass(frozen=True)
class MemberRecord:
    record_id: str
    member_id: str
    kind: RecordKind
    plan_id: str
    run_id: str
    instance_id: str
    template_id: str
    occur_time: datetime
    detail: dict[str, Any] = field(default_factory=dict)
    shop_id: str = ""
