"""`stratus audit list|verify` and the operator commands' audit rows, through the CLI's entry point: keys,
limits and prompt label moves made from the command line are recorded (actor: the operator), a protected
label refuses the one-key path, and verify fails (exit 1) once the owner edits a row."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import psycopg
import pytest

from stratus.db.connection import connect, tenant_transaction
from stratus_tools.cli import main

BODY = ("description: audit test.\nmodel: fast\nvariables: [q]\n"
        "messages:\n  - {{role: user, content: '{text} {{{{ q }}}}'}}\n")


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_operator_changes_are_listed_and_verified(pg_url: str, tmp_path: Path, capsys) -> None:
    tenant = f"cli-aud-{uuid.uuid4().hex[:8]}"
    assert run(capsys, "keys", "create", "--tenant", tenant, "--create-tenant", "--scope", "admin")[0] == 0
    assert run(capsys, "tenants", "limits", tenant, "--rpm", "33")[0] == 0
    name = f"aud-{uuid.uuid4().hex[:8]}"
    (tmp_path / name).mkdir()
    for v in (1, 2):
        (tmp_path / name / f"{v}.yaml").write_text(BODY.format(text=f"version {v}"))
    assert run(capsys, "prompts", "sync", "--dir", str(tmp_path))[0] == 0
    assert run(capsys, "prompts", "promote", name, "1", "--tenant", tenant)[0] == 0
    assert run(capsys, "prompts", "rollback", name, "--tenant", tenant)[0] == 0

    code, out, _ = run(capsys, "audit", "list", "--tenant", tenant, "--json")
    rows = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and [r["action"] for r in rows] == ["tenant.create", "key.create", "limits.set",
                                                         "prompt.promote", "prompt.rollback"]
    assert all(r["actor"]["key_id"] is None and r["actor"]["tenant_id"].startswith("operator:") for r in rows)
    assert rows[2]["after"]["requests_per_minute"] == 33 and "key_hash" not in rows[1]["after"]
    assert rows[3]["before"] == {"version": None} and rows[3]["after"]["version"] == 1
    code, out, _ = run(capsys, "audit", "list", "--tenant", "*", "--action", "prompt.sync", "--json")
    assert any(name in json.dumps(json.loads(line)["after"]) for line in out.splitlines())
    code, out, _ = run(capsys, "audit", "list", "--tenant", tenant, "--action", "limits.set")
    assert code == 0 and "limits.set" in out and "key.create" not in out

    code, out, _ = run(capsys, "audit", "verify", "--tenant", tenant)
    assert code == 0 and out.startswith(f"ok {tenant}: 5 rows, head ")
    head = out.split("head ")[1].strip()

    # A protected tenant label refuses the one-key path
    conn = connect(pg_url)
    try:
        with tenant_transaction(tenant, conn):
            conn.execute("INSERT INTO approval_settings (tenant_id, protected_labels) VALUES (%s, '{production}')",
                         [tenant])
    finally:
        conn.close()
    code, _, err = run(capsys, "prompts", "promote", name, "2", "--tenant", tenant)
    assert code == 1 and "protected" in err

    # The owner removes the newest row: the chain alone still links, the kept head does not
    with psycopg.connect(pg_url, autocommit=True) as owner:
        owner.execute("DELETE FROM audit_log WHERE chain = %s AND seq = 5", [tenant])
    code, out, _ = run(capsys, "audit", "verify", "--tenant", tenant, "--expect-head", head)
    assert code == 1 and "rows removed from the end" in out
    # ... and edits a row: verify fails naming it
    with psycopg.connect(pg_url, autocommit=True) as owner:
        owner.execute("UPDATE audit_log SET actor_tenant = 'someone-else' WHERE chain = %s AND seq = 2", [tenant])
    code, out, _ = run(capsys, "audit", "verify")
    assert code == 1 and f"FAIL {tenant} row id" in out and "(seq 2): its content does not match its hash" in out
