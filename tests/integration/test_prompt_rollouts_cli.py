"""`stratus prompts rollout|status|advance|complete|abort` in-process against the test database: an operator
starts, advances, completes and aborts rollouts; refusals exit 1 with the reason, bad usage exits 2; every
step is an audit row naming the operator."""

from __future__ import annotations

import json

import psycopg
import pytest

from stratus import audit
from stratus_tools.cli import main
from tests.integration.test_prompt_rollouts import publish_two_versions


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["prompts", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_an_operator_rolls_a_version_out_and_back(pg_url: str, tenant_id: str,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    name = publish_two_versions(pg_url)
    t = ("--tenant", tenant_id)
    code, out, err = run(capsys, "rollout", name, "2", *t, "--share", "10", "--sticky-by", "user")
    assert code == 0, err
    assert f"{name} production for tenant {tenant_id}: v2 on 10% (baseline v1, sticky by user) - active" in out
    code, _, err = run(capsys, "rollout", name, "2", *t, "--share", "20")
    assert code == 1 and "already has an active rollout" in err

    code, out, _ = run(capsys, "advance", name, *t, "--share", "40", "--json")
    assert code == 0 and json.loads(out)["share"] == 40.0
    code, out, _ = run(capsys, "status", name, *t)
    assert code == 0 and "v2 on 40%" in out and "candidate None (n=0)" in out and "insufficient" in out

    code, _, err = run(capsys, "complete", name, *t)
    assert code == 1 and "cannot complete yet" in err and "--force" not in err  # the API's word: force
    code, out, _ = run(capsys, "complete", name, *t, "--force", "--json")
    assert code == 0 and json.loads(out)["state"] == "completed"

    # The tenant's label now serves v2: rolling v1 out is allowed, and aborted
    assert run(capsys, "rollout", name, "1", *t, "--share", "5")[0] == 0
    code, out, _ = run(capsys, "abort", name, *t, "--reason", "not needed", "--json")
    shown = json.loads(out)
    assert code == 0 and (shown["state"], shown["share"]) == ("rolled_back", 0.0) and "not needed" in shown["reason"]
    code, _, err = run(capsys, "abort", name, *t)
    assert code == 1 and "no active rollout" in err
    code, out, _ = run(capsys, "status", name, *t, "--json")
    assert [r["state"] for r in json.loads(out)] == ["rolled_back", "completed"]

    with psycopg.connect(pg_url) as owner:
        rows = [r for r in audit.stored_rows(owner, tenant_id) if r["action"].startswith("rollout.")]
    assert [r["action"] for r in rows][-5:] == ["rollout.start", "rollout.advance", "rollout.complete",
                                                "rollout.start", "rollout.abort"]
    assert all(r["actor_key_id"] is None and r["actor_tenant"].startswith("operator:") for r in rows[-5:])


@pytest.mark.parametrize("argv", [
    ("rollout", "x", "2", "--tenant", "acme", "--share", "101"),
    ("rollout", "x", "2", "--tenant", "acme", "--share", "ten"),
    ("rollout", "x", "two", "--tenant", "acme", "--share", "10"),
    ("rollout", "x", "2", "--tenant", "acme", "--share", "10", "--margin", "2"),
    ("rollout", "x", "2", "--tenant", "Not A Tenant", "--share", "10"),
    ("advance", "Bad_Name", "--tenant", "acme", "--share", "10"),
])
def test_bad_usage_exits_2(argv: tuple[str, ...]) -> None:
    try:  # argparse's own checks exit; the command's return the code
        code = main(["prompts", *argv])
    except SystemExit as usage:
        code = usage.code
    assert code == 2
