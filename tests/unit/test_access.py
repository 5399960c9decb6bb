"""domain.access: a caller's roles and shops decide what it may do."""

from __future__ import annotations

import pytest

from domain.access import ALL_SHOPS, Caller, Role
from domain.errors import PermissionDenied

MALL = Caller("mall", frozenset({Role.FRONT_OFFICE}), frozenset({"shop-1", "shop-2"}))
ADMIN = Caller("admin", frozenset({Role.MERCHANT_ADMIN}), frozenset({"shop-1"}))
OPERATOR = Caller("ops", frozenset({Role.OPERATOR, Role.MERCHANT_ADMIN}), frozenset({ALL_SHOPS}))


def test_a_caller_acts_for_its_own_shops_only() -> None:
    MALL.require({Role.FRONT_OFFICE}, "shop-2")
    with pytest.raises(PermissionDenied) as err:
        MALL.require({Role.FRONT_OFFICE}, "shop-3")
    assert err.value.reason == "SHOP_NOT_ALLOWED"
    assert "shop-3" in err.value.message and "mall" in err.value.message


def test_a_caller_without_the_role_is_refused_even_for_its_own_shop() -> None:
    with pytest.raises(PermissionDenied) as err:
        MALL.require({Role.MERCHANT_ADMIN}, "shop-1")
    assert err.value.reason == "ROLE_MISSING"
    with pytest.raises(PermissionDenied):
        ADMIN.require({Role.FRONT_OFFICE}, "shop-1")


def test_an_operator_acts_for_every_shop_and_for_calls_about_no_shop() -> None:
    assert OPERATOR.every_shop and not MALL.every_shop
    OPERATOR.require({Role.MERCHANT_ADMIN}, "any-shop-at-all")
    OPERATOR.require({Role.OPERATOR}, None)
    with pytest.raises(PermissionDenied):
        ADMIN.require({Role.OPERATOR}, None)


def test_any_one_of_the_roles_will_do() -> None:
    ADMIN.require({Role.OPERATOR, Role.MERCHANT_ADMIN}, "shop-1")
    with pytest.raises(PermissionDenied) as err:
        MALL.require({Role.OPERATOR, Role.MERCHANT_ADMIN}, "shop-1")
    assert "merchant_admin or operator" in err.value.message


def test_the_whole_platform_is_for_callers_of_every_shop() -> None:
    OPERATOR.require({Role.OPERATOR}, "")
    ops_of_one_shop = Caller("ops-1", frozenset({Role.OPERATOR}), frozenset({"shop-1"}))
    ops_of_one_shop.require({Role.OPERATOR}, "shop-1")
    with pytest.raises(PermissionDenied) as err:
        ops_of_one_shop.require({Role.OPERATOR}, "")
    assert err.value.reason == "SHOP_NOT_ALLOWED"
    assert "whole platform" in err.value.message
