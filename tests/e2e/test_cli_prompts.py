"""`stratus prompts ...` through the CLI's entry point, against the test database."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from stratus_tools.cli import main

BODY = ("description: CLI test.\nmodel: fast\nvariables: [q]\n"
        "messages:\n  - {{role: user, content: '{text} {{{{ q }}}}'}}\n")


@pytest.fixture
def folder(tmp_path: Path) -> tuple[Path, str]:
    name = f"cli-{uuid.uuid4().hex[:10]}"
    (tmp_path / name).mkdir()
    for v in (1, 2):
        (tmp_path / name / f"{v}.yaml").write_text(BODY.format(text=f"version {v}"))
    return tmp_path, name


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["prompts", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_the_prompt_workflow(pg_url: str, tenant_id: str, folder: tuple[Path, str], capsys) -> None:
    root, name = folder

    # sync publishes both versions and labels production at the highest
    code, out, _ = run(capsys, "sync", "--dir", str(root))
    assert code == 0
    assert f"published {name} v1" in out and f"labelled  {name} production -> v2" in out
    assert "0 version(s) published, 2 unchanged" in run(capsys, "sync", "--dir", str(root))[1]

    # promote a global staging label and a tenant's own production pin
    assert run(capsys, "promote", name, "1", "--label", "staging")[1].strip() == f"{name} staging: unset -> v1"
    code, out, _ = run(capsys, "promote", name, "1", "--tenant", tenant_id)
    assert (code, out.strip()) == (0, f"{name} production for tenant {tenant_id}: unset -> v1")

    # list shows versions, global labels and (asked for) the tenant's own
    code, out, _ = run(capsys, "list", "--tenant", tenant_id)
    line = next(row for row in out.splitlines() if row.startswith(name))
    assert code == 0 and out.startswith("NAME")
    assert "1,2" in line and "production=v2 staging=v1" in line and f"tenant {tenant_id}: production=v1" in line
    line = next(row for row in run(capsys, "list")[1].splitlines() if row.startswith(name))
    assert "tenant" not in line

    # rollback removes the tenant's only pin; the global label cannot go back further than v2
    code, out, _ = run(capsys, "rollback", name, "--tenant", tenant_id)
    assert code == 0
    assert out.strip() == f"{name} production for tenant {tenant_id}: v1 -> unset (the global label applies)"
    code, _, err = run(capsys, "rollback", name)
    assert code == 1 and "no earlier version" in err

    # diff, from the files and from the registry, agree
    code, from_files, _ = run(capsys, "diff", name, "1", "2", "--dir", str(root))
    assert code == 0 and "-  content: version 1 {{ q }}\n+  content: version 2 {{ q }}\n" in from_files
    assert run(capsys, "diff", name, "1", "2", "--published")[1] == from_files
    assert "have the same content" in run(capsys, "diff", name, "2", "2", "--published")[1]


def test_an_edited_published_version_fails_the_sync(pg_url: str, folder: tuple[Path, str], capsys) -> None:
    root, name = folder
    assert run(capsys, "sync", "--dir", str(root))[0] == 0
    (root / name / "1.yaml").write_text(BODY.format(text="edited"))

    code, _, err = run(capsys, "sync", "--dir", str(root))

    assert code == 1
    assert "stratus prompts sync: refused to sync" in err and str(root / name / "1.yaml") in err


@pytest.mark.parametrize(
    ("argv", "named"),
    [
        (["promote", "chat", "one"], "VERSION"),
        (["promote", "chat", "1", "--label", "Prod!"], "--label"),
        (["promote", "chat", "1", "--tenant", "Bad Tenant"], "--tenant"),
        (["rollback", "No_Such"], "NAME"),
        (["diff", "chat", "1", "0"], "V2"),
        (["sync", "--dir", "/no/such/folder"], "--dir"),
    ],
)
def test_bad_usage_exits_2_naming_the_argument(argv: list[str], named: str, capsys) -> None:
    code, _, err = run(capsys, *argv)

    assert code == 2
    assert f"stratus prompts: {named}:" in err


def test_unknown_versions_fail_with_exit_1(pg_url: str, capsys) -> None:
    code, _, err = run(capsys, "promote", "no-such-prompt", "3")

    assert code == 1 and "no-such-prompt v3 is not published" in err
