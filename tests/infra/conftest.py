"""template.yaml read, transformed by the SAM translator and linted by cfn-lint once per session."""

from __future__ import annotations

import copy
import json
import os
import tomllib
from pathlib import Path
from typing import Any

import pytest

from stratus_tools.local.template import load_template

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "template.yaml"
SAMCONFIG = ROOT / "samconfig.toml"

# Local paths the deploy packager uploads; `sam validate` swaps them for S3 URIs before transforming.
_ARTIFACT_PROPERTIES = ("CodeUri", "ContentUri", "DefinitionUri")


class _NoManagedPolicyLookups:
    """The translator looks managed policies up by name only for bare names in `Policies`.

    The template uses SAM policy templates and ARNs, which need no lookup; a bare name would need AWS
    credentials at deploy time, so it fails here with the name in the message.
    """

    def load(self) -> dict[str, str]:
        raise AssertionError(
            "a function lists a managed policy by bare name: use its ARN or a SAM policy template"
        )


def with_s3_artifacts(template: dict[str, Any]) -> dict[str, Any]:
    template = copy.deepcopy(template)
    for logical_id, resource in template["Resources"].items():
        props = resource.get("Properties", {})
        for key in _ARTIFACT_PROPERTIES:
            if isinstance(props.get(key), str):
                props[key] = f"s3://stratus-artifacts/{logical_id}/{key}.zip"
    return template


def sam_transform(template: dict[str, Any]) -> dict[str, Any]:
    from samtranslator.translator.transform import transform

    previous = os.environ.get("AWS_DEFAULT_REGION")
    os.environ["AWS_DEFAULT_REGION"] = deploy_regions()[0]
    try:
        return transform(with_s3_artifacts(template), {}, _NoManagedPolicyLookups())
    finally:
        if previous is None:
            os.environ.pop("AWS_DEFAULT_REGION", None)
        else:
            os.environ["AWS_DEFAULT_REGION"] = previous


def deploy_regions() -> list[str]:
    config = tomllib.loads(SAMCONFIG.read_text())
    regions = {
        env["global"]["parameters"]["region"]
        for name, env in config.items()
        if name != "version" and "region" in env.get("global", {}).get("parameters", {})
    }
    return sorted(regions)


def lint(text: str) -> list[Any]:
    """cfn-lint matches (errors, warnings and informational) for the regions we deploy to."""
    from cfnlint.api import ManualArgs
    from cfnlint.api import lint as cfn_lint

    return cfn_lint(text, config=ManualArgs(regions=deploy_regions(), include_checks=["I"]))


@pytest.fixture(scope="session")
def template() -> dict[str, Any]:
    return load_template(TEMPLATE)


@pytest.fixture(scope="session")
def samconfig() -> dict[str, Any]:
    return tomllib.loads(SAMCONFIG.read_text())


@pytest.fixture(scope="session")
def transformed(template: dict[str, Any]) -> dict[str, Any]:
    return sam_transform(template)


@pytest.fixture(scope="session")
def template_lint() -> list[Any]:
    return lint(TEMPLATE.read_text())


@pytest.fixture(scope="session")
def transformed_lint(transformed: dict[str, Any]) -> list[Any]:
    return lint(json.dumps(transformed))
