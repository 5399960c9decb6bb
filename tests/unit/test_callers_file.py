"""server.auth.callers: the callers file, read and checked."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from domain.access import Role
from server.auth.callers import CallersError, load_callers, new_token, parse_callers, token_hash


def test_a_caller_is_found_by_its_token_and_by_its_certificate(tmp_path: Path) -> None:
    token = new_token()
    assert len(token) >= 43 and token != new_token()
    path = tmp_path / "callers.toml"
    path.write_text(
        f"""
[[callers]]
name = "mall"
roles = ["front_office"]
shops = ["shop-1", "shop-2"]
token_sha256 = "{token_hash(token)}"

[[callers]]
name = "ops"
roles = ["operator", "merchant_admin"]
shops = ["*"]
certificate = "ops.example"
"""
    )
    callers = load_callers(path)
    mall = callers.with_token(token)
    assert mall is not None and mall.name == "mall"
    assert mall.roles == {Role.FRONT_OFFICE} and mall.may_act_for("shop-2")
    assert callers.with_token(token + "x") is None
    assert callers.with_token(token_hash(token)) is None  # the hash is not the token
    ops = callers.with_certificate("ops.example")
    assert ops is not None and ops.every_shop and Role.OPERATOR in ops.roles
    assert token not in path.read_text()  # only the hash is stored


@pytest.mark.parametrize(
    ("entry", "problem"),
    [
        ({"roles": ["front_office"], "shops": ["s"], "certificate": "c"}, "callers[0].name"),
        ({"name": "a", "roles": ["king"], "shops": ["s"], "certificate": "c"}, ".roles"),
        ({"name": "a", "roles": ["operator"], "shops": [], "certificate": "c"}, ".shops"),
        ({"name": "a", "roles": ["operator"], "shops": ["s"]}, "needs token_sha256"),
        (
            {"name": "a", "roles": ["operator"], "shops": ["s"], "token_sha256": "secret"},
            ".token_sha256: 64",
        ),
        (
            {"name": "a", "roles": ["operator"], "shops": ["s"], "certificate": "c", "x": 1},
            "unknown keys ['x']",
        ),
        (
            {
                "name": "a",
                "roles": ["operator"],
                "shops": ["s"],
                "certificate": "c",
                "rate_per_second": 0,
            },
            ".rate_per_second: calls per second, > 0",
        ),
        (
            {"name": "a", "roles": ["operator"], "shops": ["s"], "certificate": "c", "burst": "9"},
            ".burst: calls at once",
        ),
    ],
)
def test_every_bad_entry_is_named(entry: dict[str, object], problem: str) -> None:
    with pytest.raises(CallersError) as err:
        parse_callers({"callers": [entry]})
    assert problem in str(err.value)


def test_two_callers_cannot_share_a_name_a_token_or_a_certificate() -> None:
    digest = token_hash("t")
    one = {"roles": ["operator"], "shops": ["*"], "token_sha256": digest, "certificate": "c"}
    with pytest.raises(CallersError) as err:
        parse_callers({"callers": [{"name": "a", **one}, {"name": "a", **one}]})
    message = str(err.value)
    assert "listed twice" in message and "the same token as 'a'" in message
    assert "'c' is 'a''s" in message


def test_an_unreadable_or_empty_file_says_so(tmp_path: Path) -> None:
    with pytest.raises(CallersError, match="cannot be read"):
        load_callers(tmp_path / "missing.toml")
    (tmp_path / "bad.toml").write_text("[[callers]\n")
    with pytest.raises(CallersError, match="not valid TOML"):
        load_callers(tmp_path / "bad.toml")
    (tmp_path / "empty.toml").write_text("")
    with pytest.raises(CallersError, match=r"one or more \[\[callers\]\]"):
        load_callers(tmp_path / "empty.toml")


def test_custops_token_prints_a_token_and_the_entry_that_admits_it(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from server.cli import main

    assert main(["token", "mall"]) == 0
    lines = capsys.readouterr().out.splitlines()
    token = lines[1].strip()
    entry = "\n".join(line.strip() for line in lines[3:])
    callers = parse_callers(tomllib.loads(entry))
    found = callers.with_token(token)
    assert found is not None and found.name == "mall"
    assert token not in entry


def test_a_callers_rate_is_its_own_or_the_default() -> None:
    callers = parse_callers(
        {
            "callers": [
                {"name": "a", "roles": ["operator"], "shops": ["*"], "certificate": "a"},
                {
                    "name": "b",
                    "roles": ["front_office"],
                    "shops": ["s"],
                    "certificate": "b",
                    "rate_per_second": 5000,
                },
                {
                    "name": "c",
                    "roles": ["front_office"],
                    "shops": ["s"],
                    "certificate": "c",
                    "rate_per_second": 0.5,
                    "burst": 3,
                },
            ]
        }
    )
    rates = {
        name: (caller.rate_per_second, caller.burst)
        for name in "abc"
        if (caller := callers.with_certificate(name)) is not None
    }
    assert rates == {"a": (1000.0, 2000), "b": (5000.0, 10000), "c": (0.5, 3)}
