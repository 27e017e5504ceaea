"""checkov finds nothing in template.yaml: every check passes or is skipped on its resource, in the template,
with the reason (`Metadata: checkov: skip: [{id, comment}]`). checkov runs from its own virtualenv
(.venv-tools, `make tools`, pinned in requirements-tools.txt), offline, in a few seconds."""

from __future__ import annotations

import json
import os
import subprocess
from typing import Any

import pytest

from stratus_tools.local.template import resources_of_type

from .conftest import ROOT, TEMPLATE

CHECKOV = ROOT / ".venv-tools" / "bin" / "checkov"


@pytest.fixture(scope="module")
def checkov() -> dict[str, Any]:
    assert CHECKOV.exists(), f"{CHECKOV.relative_to(ROOT)} is missing: run `make tools`"
    env = os.environ | {
        "BC_SKIP_MAPPING": "TRUE",  # no call to the Prisma Cloud guidelines API
        "CKV_SKIP_PACKAGE_UPDATE_CHECK": "true",  # no call to PyPI
    }
    # The cloudformation framework reads SAM too: it applies Globals and checks AWS::Serverless::Function.
    result = subprocess.run(
        [str(CHECKOV), "--file", str(TEMPLATE), "--framework", "cloudformation", "--skip-download",
         "--output", "json"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False,
    )
    assert result.returncode in (0, 1), result.stderr[-4000:]  # 1: checks failed (reported below)
    report: dict[str, Any] = json.loads(result.stdout)
    assert report["check_type"] == "cloudformation", report
    return report


def test_checkov_finds_nothing(checkov: dict[str, Any]) -> None:
    failed = [
        f"{c['check_id']} {c['resource']} ({c['check_name']}) lines {c['file_line_range']}"
        for c in checkov["results"]["failed_checks"]
    ]
    assert failed == [], "fix these, or skip them on the resource with the reason:\n" + "\n".join(failed)
    assert checkov["summary"]["parsing_errors"] == 0


def test_every_skip_says_why(checkov: dict[str, Any]) -> None:
    skipped = checkov["results"]["skipped_checks"]
    assert skipped
    for check in skipped:
        comment = check.get("check_result", {}).get("suppress_comment", "")
        assert len(comment) >= 40 and comment != "No comment provided", (check["check_id"], check["resource"])


def test_checkov_sees_the_serverless_functions(checkov: dict[str, Any], template: dict[str, Any]) -> None:
    # A framework that skipped the SAM resources would pass vacuously.
    functions = {f"AWS::Serverless::Function.{name}" for name, _ in resources_of_type(template,
                                                                                         "AWS::Serverless::Function")}
    results = checkov["results"]["passed_checks"] + checkov["results"]["skipped_checks"]
    dlq_checked = {c["resource"] for c in results if c["check_id"] == "CKV_AWS_116"}
    assert functions and dlq_checked == functions
