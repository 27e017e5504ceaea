"""`stratus keys ...` and `stratus tenants ...` through the CLI's entry point, against the test database."""

from __future__ import annotations

import json
import uuid

import pytest

from stratus.db.connection import connect
from stratus.gateway import keys
from stratus_tools.cli import main


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_keys_from_the_command_line(pg_url: str, capsys) -> None:
    tenant = f"cli-{uuid.uuid4().hex[:8]}"

    # create, with the tenant: the key is printed once on stdout, its details on stderr
    code, out, err = run(capsys, "keys", "create", "--tenant", tenant, "--name", "laptop", "--create-tenant")
    text = out.strip()
    assert code == 0 and keys.parse_key(text) is not None and "shown only now" in err
    prefix = keys.parse_key(text)[0]  # type: ignore[index]
    code, out, _ = run(capsys, "keys", "create", "--tenant", tenant, "--scope", "admin", "--rpm", "5", "--json")
    admin = json.loads(out)
    assert code == 0 and admin["scopes"] == ["admin"] and admin["requests_per_minute"] == 5

    # the key works, with the default scopes
    conn = connect(pg_url)
    try:
        principal = keys.authenticate(conn, f"Bearer {text}")
        assert principal is not None and principal.tenant_id == tenant
        assert principal.scopes == frozenset({"inference", "documents"})
    finally:
        conn.close()

    # list shows both, never a secret
    code, out, _ = run(capsys, "keys", "list", "--tenant", tenant)
    assert code == 0 and prefix in out and admin["prefix"] in out and text.split("_", 1)[1] not in out
    assert "active" in out and "laptop" in out

    # revoke by prefix; the key stops working; an unknown key is refused with exit code 1
    code, out, _ = run(capsys, "keys", "revoke", prefix, "--tenant", tenant)
    assert code == 0 and f"revoked key {prefix}" in out
    listed = [json.loads(line) for line in run(capsys, "keys", "list", "--tenant", tenant, "--json")[1].splitlines()]
    assert {k["prefix"]: k["revoked_at"] is not None for k in listed} == {prefix: True, admin["prefix"]: False}
    conn = connect(pg_url)
    try:
        assert keys.authenticate(conn, f"Bearer {text}") is None
    finally:
        conn.close()
    code, _, err = run(capsys, "keys", "revoke", "zzzzzzzzzzzz", "--tenant", tenant)
    assert code == 1 and "has no key 'zzzzzzzzzzzz'" in err

    # bad usage names the argument
    code, _, err = run(capsys, "keys", "list", "--tenant", "Not A Tenant")
    assert code == 2 and "--tenant" in err
    code, _, err = run(capsys, "keys", "create", "--tenant", f"missing-{uuid.uuid4().hex[:8]}")
    assert code == 1 and "no tenant" in err


def test_tenants_and_limits_from_the_command_line(pg_url: str, capsys) -> None:
    tenant = f"cli-{uuid.uuid4().hex[:8]}"
    assert run(capsys, "tenants", "create", tenant, "--name", "CLI test")[1].strip() == f"created tenant {tenant}"
    assert run(capsys, "tenants", "create", tenant)[1].strip() == f"exists: tenant {tenant}"
    listed = [json.loads(line) for line in run(capsys, "tenants", "list", "--json")[1].splitlines()]
    assert {"id": tenant, "name": "CLI test"}.items() <= next(t for t in listed if t["id"] == tenant).items()

    code, out, _ = run(capsys, "tenants", "limits", tenant, "--rpm", "30", "--budget", "2.5", "--period", "day")
    assert code == 0 and "requests_per_minute      30\n" in out and "budget_usd               $2.50" in out
    assert "this minute: 0/30 requests" in out and "this day: spent $0.0000" in out and "remaining $2.5000" in out
    code, out, _ = run(capsys, "tenants", "limits", tenant, "--rpm", "default", "--budget", "none", "--json")
    shown = json.loads(out)
    assert code == 0 and shown["limits"]["budget_usd"] is None and shown["limits"]["custom"] == []
    assert shown["usage"]["remaining_usd"] is None

    code, _, err = run(capsys, "tenants", "limits", f"missing-{uuid.uuid4().hex[:8]}")
    assert code == 1 and "no tenant" in err
    with pytest.raises(SystemExit) as exited:  # argparse refuses a bad value, naming the flag
        main(["tenants", "limits", tenant, "--rpm", "0"])
    assert exited.value.code == 2 and "--rpm" in capsys.readouterr().err
    for flag in ("--rpm", "--tpm", "--key-rpm", "--key-tpm"):  # above the int4 the database stores: usage, not a crash
        with pytest.raises(SystemExit) as exited:
            main(["tenants", "limits", tenant, flag, str(2**31)])
        assert exited.value.code == 2 and f"{flag}: '2147483648'" in capsys.readouterr().err


def test_a_tenants_reranker_from_the_command_line(pg_url: str, capsys) -> None:
    tenant = f"cli-{uuid.uuid4().hex[:8]}"
    assert run(capsys, "tenants", "create", tenant)[0] == 0
    code, out, _ = run(capsys, "tenants", "retrieval", tenant)
    assert code == 0 and out == "reranker      none (default)\nrerank_model  - (default)\n"
    code, out, _ = run(capsys, "tenants", "retrieval", tenant, "--reranker", "bedrock", "--rerank-model",
                       "cohere.rerank-v3-5:0", "--json")
    assert code == 0 and json.loads(out)["effective"] == {"reranker": "bedrock", "rerank_model": "cohere.rerank-v3-5:0"}
    code, out, _ = run(capsys, "tenants", "retrieval", tenant, "--rerank-model", "default", "--json")
    shown = json.loads(out)  # the reranker stays; the model follows the deployment again
    assert (shown["reranker"], shown["rerank_model"], shown["effective"]["rerank_model"]) == (
        "bedrock", None, "amazon.rerank-v1:0")
    code, _, err = run(capsys, "tenants", "retrieval", f"missing-{uuid.uuid4().hex[:8]}")
    assert code == 1 and "no tenant" in err
