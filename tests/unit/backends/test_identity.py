"""The tenant → Unix user mapping and a replica's clean environment."""

from __future__ import annotations

import pytest

from baige.backends.identity import Identity, TenantUsers, clean_env, parse_tenant_users


@pytest.mark.parametrize(
    ("mapping", "tenant", "user"),
    [
        ({}, "team-a", "baige-team-a"),
        ({}, "", "baige-admin"),
        ({"team-a": "alice"}, "team-a", "alice"),
        ({"team-a": "alice", "*": "nobody"}, "team-b", "nobody"),
        ({"*": "nobody"}, "admin", "nobody"),
    ],
)
def test_user_for(tmp_path, mapping, tenant, user):
    assert TenantUsers(tmp_path, mapping).user_for(tenant) == user


def test_parse_tenant_users():
    assert parse_tenant_users(["a=alice", "*=nobody"]) == {"a": "alice", "*": "nobody"}
    with pytest.raises(ValueError, match="TENANT=USER"):
        parse_tenant_users(["alice"])


def test_a_mapped_user_that_does_not_exist_is_an_error(tmp_path):
    with pytest.raises(OSError, match="does not exist"):
        TenantUsers(tmp_path, {"a": "no-such-user-here"}).identity("a")


def test_clean_env_holds_only_the_basics_and_the_jobs(monkeypatch):
    monkeypatch.setenv("BAIGE_TOKEN", "admin-secret")
    env = clean_env(Identity("baige-a", "/h"), {"RANK": "0"})
    assert set(env) == {"PATH", "LANG", "HOME", "USER", "LOGNAME", "RANK"}
    assert env["HOME"] == "/h" and env["USER"] == "baige-a"
