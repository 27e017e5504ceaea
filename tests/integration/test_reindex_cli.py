"""`stratus reindex` in-process against the test database: move, status, rollback, refusals and exit codes."""

from __future__ import annotations

import json

import pytest

from stratus.config import load_settings
from stratus_tools.cli import main
from tests.integration.test_reindex import BASE, TOPICS, _ingest
from tests.support import second_model


def test_reindex_command(tenant_id: str, capsys: pytest.CaptureFixture[str]) -> None:
    settings = load_settings()
    for i, text in enumerate(TOPICS[:3]):
        _ingest(tenant_id, i, text, settings)
    with second_model.registered() as model_b:
        assert main(["reindex", "--tenant", tenant_id, "--model", model_b, "--batch", "2", "--json"]) == 0
        out, err = capsys.readouterr()
        state = json.loads(out)
        assert (state["query_model"], state["previous_model"], state["embedded"]) == (model_b, BASE, 3)
        assert "2/3 chunks embedded" in err  # progress per batch

        assert main(["reindex", "--tenant", tenant_id, "--status"]) == 0
        assert f"queries use {model_b}; previous model kept: {BASE}" in capsys.readouterr().out
        assert main(["reindex", "--tenant", tenant_id, "--rollback", "--json"]) == 0
        assert json.loads(capsys.readouterr().out)["query_model"] == BASE
        # Refusals: exit 1 with the reason; bad usage: exit 2
        assert main(["reindex", "--tenant", tenant_id, "--drop-previous"]) == 1
        assert "wait" in capsys.readouterr().err
        assert main(["reindex", "--tenant", tenant_id, "--model", "no-such-model"]) == 1
        assert "not an embedding model" in capsys.readouterr().err
        with pytest.raises(SystemExit) as usage:
            main(["reindex", "--tenant", "Not A Tenant", "--status"])
        assert usage.value.code == 2
