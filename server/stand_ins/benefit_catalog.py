"""The benefit platform's industry presets: one template of every kind, and
bundles for micro-mall and retail. Presets belong to no shop; every shop
can grant them."""

from __future__ import annotations

from custops.benefit.v1 import benefit_pb2 as pb

PRESET_INVENTORY = 1_000_000


def _t(
    template_id: str,
    kind: int,
    name: str,
    value: pb.BenefitValue,
    *,
    validity: int = 30,
    industry: int = pb.INDUSTRY_UNSPECIFIED,
    components: tuple[tuple[str, int], ...] = (),
    periodic: tuple[int, int] = (1, 0),
    unlimited: bool = False,
) -> pb.BenefitTemplate:
    return pb.BenefitTemplate(
        template_id=template_id,
        kind=kind,  # type: ignore[arg-type]
        display_name=name,
        version=1,
        value=value,
        validity_days=validity,
        periodicity=pb.Periodicity(count=periodic[0], interval_days=periodic[1]),
        components=[pb.PackageComponent(template_id=t, quantity=q) for t, q in components],
        industry=industry,  # type: ignore[arg-type]
        inventory=0 if unlimited else PRESET_INVENTORY,
        unlimited=unlimited,
    )


PRESETS: tuple[pb.BenefitTemplate, ...] = (
    _t(
        "points-100",
        pb.BENEFIT_KIND_POINTS,
        "100 points",
        pb.BenefitValue(amount=100),
        unlimited=True,
    ),
    _t(
        "coupon-10-off-100",
        pb.BENEFIT_KIND_COUPON,
        "¥10 off orders from ¥100",
        pb.BenefitValue(amount=1000, threshold_amount=10000),
    ),
    _t("free-shipping", pb.BENEFIT_KIND_FREE_SHIPPING, "Free shipping", pb.BenefitValue()),
    _t("discount-85", pb.BENEFIT_KIND_DISCOUNT, "15% off", pb.BenefitValue(basis_points=8500)),
    _t(
        "points-x2",
        pb.BENEFIT_KIND_POINTS_MULTIPLIER,
        "Double points",
        pb.BenefitValue(basis_points=20000),
        validity=1,
    ),
    _t("gift-mug", pb.BENEFIT_KIND_GIFT, "A gift mug", pb.BenefitValue(description="mug")),
    _t(
        "course-video",
        pb.BENEFIT_KIND_PAID_CONTENT,
        "A paid course",
        pb.BenefitValue(description="video course"),
    ),
    _t(
        "gold-trial-7d",
        pb.BENEFIT_KIND_EXPERIENCE_CARD,
        "7-day gold membership",
        pb.BenefitValue(description="gold level for 7 days"),
        validity=7,
    ),
    _t(
        "growth-50",
        pb.BENEFIT_KIND_GROWTH_VALUE,
        "50 growth",
        pb.BenefitValue(amount=50),
        unlimited=True,
    ),
    _t(
        "coupon-monthly-x3",
        pb.BENEFIT_KIND_COUPON,
        "¥5 coupon every month for 3 months",
        pb.BenefitValue(amount=500),
        periodic=(3, 30),
    ),
    _t(
        "micro-mall-birthday-pack",
        pb.BENEFIT_KIND_PACKAGE,
        "Birthday pack (micro-mall)",
        pb.BenefitValue(),
        industry=pb.INDUSTRY_MICRO_MALL,
        components=(("coupon-10-off-100", 1), ("points-100", 2), ("free-shipping", 1)),
    ),
    _t(
        "retail-member-day-pack",
        pb.BENEFIT_KIND_PACKAGE,
        "Member-day pack (retail)",
        pb.BenefitValue(),
        industry=pb.INDUSTRY_RETAIL,
        components=(("discount-85", 1), ("points-x2", 1)),
    ),
)
