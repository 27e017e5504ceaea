"""Provider egress: with ProviderEgress=none the router never tries a deployment that needs the internet;
an alias keeps its other deployments in order, and a model with none left fails at once, naming the
missing egress, as a 503 the SDKs do not retry. Unset (local mode) or nat: nothing changes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import SecretStr

from stratus.aws.workflows import WorkflowFailed
from stratus.config import ConfigError, load_settings
from stratus.gateway.chat import workflow_error
from stratus.gateway.errors import from_exception
from stratus.gateway.routes.models import model_ids
from stratus.llm import errors
from stratus.llm.catalog import load_catalog, parse_catalog
from stratus.llm.router import RetryPolicy, Router
from stratus.llm.types import ChatRequest, Completion, Message, Usage

PRICE = {"input": 1.0, "output": 2.0}
CATALOG = {
    "default_alias": "fast",
    "deployments": {
        "gpt": {"provider": "openai", "model": "gpt-a", "price": PRICE},
        "claude": {"provider": "anthropic", "model": "claude-b", "price": PRICE},
        "nova": {"provider": "bedrock", "model": "nova", "price": PRICE},
        "haiku": {"provider": "bedrock", "model": "haiku", "price": PRICE},
        "in-vpc": {"provider": "openai", "model": "llama", "price": PRICE, "base_url": "http://10.42.0.9/v1",
                   "internet": False},
        "public-bedrock": {"provider": "bedrock", "model": "nova", "price": PRICE, "internet": True},
        "offline": {"provider": "offline", "model": "stratus-offline-extractive", "price": {"input": 0, "output": 0}},
    },
    "aliases": {"fast": ["gpt", "nova", "claude", "haiku"], "hosted": ["gpt", "claude"], "vpc": ["in-vpc"],
                "odd": ["public-bedrock"], "offline": ["offline"]},
}
KEYS = {"openai": SecretStr("k1"), "anthropic": SecretStr("k2")}
REQUEST = ChatRequest(messages=[Message(role="user", content="hello")])


def catalog(egress: str | None):
    return parse_catalog(CATALOG, credentials=KEYS, egress=egress)  # type: ignore[arg-type]


def names(deployments: list) -> list[str]:
    return [d.name for d in deployments]


# --- the catalog's decision --------------------------------------------------------------------------------
def test_without_egress_an_alias_keeps_its_bedrock_deployments_in_order() -> None:
    assert names(catalog("none").deployments_for("fast")) == ["nova", "haiku"]


@pytest.mark.parametrize("egress", [None, "nat"])
def test_with_a_nat_or_unset_nothing_is_left_out(egress: str | None) -> None:
    assert names(catalog(egress).deployments_for("fast")) == ["gpt", "nova", "claude", "haiku"]
    assert names(catalog(egress).deployments_for("hosted")) == ["gpt", "claude"]


def test_an_alias_with_only_internet_deployments_fails_naming_the_missing_egress() -> None:
    with pytest.raises(errors.ProviderEgressRequired) as caught:
        catalog("none").deployments_for("hosted")
    err = caught.value
    assert err.code == "provider_egress_required" and err.field == "model"
    assert not err.retryable and not err.fallback
    assert "'hosted'" in err.message and "ProviderEgress=none" in err.message
    assert "ProviderEgress=nat" in err.message and "Bedrock" in err.message
    assert "gpt (openai)" in err.message and "claude (anthropic)" in err.message


def test_a_deployment_addressed_directly_follows_the_same_rule() -> None:
    assert names(catalog("none").deployments_for("nova")) == ["nova"]
    with pytest.raises(errors.ProviderEgressRequired):
        catalog("none").deployments_for("gpt")


def test_a_tenant_override_is_filtered_and_fails_the_same_way() -> None:
    c = catalog("none")
    assert names(c.deployments_for("hosted", ["claude", "haiku"])) == ["haiku"]
    with pytest.raises(errors.ProviderEgressRequired) as caught:
        c.deployments_for("fast", ["gpt", "claude"])
    assert "override" in caught.value.message and "'fast'" in caught.value.message


def test_a_deployment_may_say_whether_it_needs_the_internet() -> None:
    c = catalog("none")
    assert names(c.deployments_for("vpc")) == ["in-vpc"]  # an OpenAI-compatible server inside the VPC
    with pytest.raises(errors.ProviderEgressRequired):
        c.deployments_for("odd")  # a Bedrock endpoint reached over the internet


def test_an_unknown_model_is_still_not_found_before_any_egress_question() -> None:
    from stratus.errors import NotFound

    with pytest.raises(NotFound):
        catalog("none").deployments_for("nope")


def test_servable_says_which_models_can_be_answered() -> None:
    c = catalog("none")
    assert {m for m in [*c.aliases, *c.deployments] if c.servable(m)} == {
        "fast", "vpc", "offline", "nova", "haiku", "in-vpc"}
    assert all(catalog("nat").servable(m) for m in [*c.aliases, *c.deployments])


# --- the router ------------------------------------------------------------------------------------------
class Recorder:
    def __init__(self) -> None:
        self.calls: list[str] = []

    def complete(self, request: ChatRequest, deployment, *, timeout: float) -> Completion:
        self.calls.append(deployment.name)
        return Completion(text="ok", usage=Usage(input_tokens=1, output_tokens=1), provider=deployment.provider,
                          model=deployment.model)


def router(egress: str | None) -> tuple[Router, Recorder]:
    provider = Recorder()
    return Router(catalog(egress), policy=RetryPolicy(deadline_s=5), providers=lambda name: provider), provider


def test_the_router_goes_to_bedrock_first_without_trying_openai() -> None:
    r, provider = router("none")
    routed = r.complete("fast", REQUEST)
    assert provider.calls == ["nova"] and routed.deployment.name == "nova"
    assert [(a.deployment, a.outcome) for a in routed.attempts] == [("nova", "ok")]


def test_the_router_fails_fast_without_calling_any_provider() -> None:
    r, provider = router("none")
    with pytest.raises(errors.ProviderEgressRequired):
        r.complete("hosted", REQUEST)
    with pytest.raises(errors.ProviderEgressRequired):
        r.stream("hosted", REQUEST)
    assert provider.calls == []


def test_with_a_nat_the_alias_order_is_unchanged() -> None:
    r, provider = router("nat")
    assert r.complete("fast", REQUEST).deployment.name == "gpt" and provider.calls == ["gpt"]


# --- settings and loading ----------------------------------------------------------------------------------
def test_the_setting_is_read_from_its_variable_and_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("STRATUS_PROVIDER_EGRESS", raising=False)
    assert load_settings().provider_egress is None  # local mode: not restricted
    monkeypatch.setenv("STRATUS_PROVIDER_EGRESS", "none")
    assert load_settings().provider_egress == "none"
    monkeypatch.setenv("STRATUS_PROVIDER_EGRESS", "vpn")
    with pytest.raises(ConfigError, match="STRATUS_PROVIDER_EGRESS"):
        load_settings()


def _models_file(tmp_path: Path) -> str:
    path = tmp_path / "models.yaml"
    path.write_text(json.dumps(CATALOG))  # JSON is YAML
    return str(path)


def test_load_catalog_applies_the_settings_egress(tmp_path: Path) -> None:
    s = load_settings(models_file=_models_file(tmp_path), provider_mode="hosted", openai_api_key="k",
                      provider_egress="none")
    c = load_catalog(s)
    assert c.egress == "none" and names(c.deployments_for("fast")) == ["nova", "haiku"]
    assert load_catalog(load_settings(models_file=s.models_file, provider_mode="hosted", openai_api_key="k")).egress \
        is None


def test_the_offline_provider_answers_everything_whatever_the_egress(tmp_path: Path) -> None:
    s = load_settings(models_file=_models_file(tmp_path), provider_mode="offline", provider_egress="none")
    c = load_catalog(s)
    assert all(names(c.deployments_for(a)) == ["offline"] for a in c.aliases)


# --- the API ---------------------------------------------------------------------------------------------
def test_the_gateway_maps_it_to_a_503_the_sdks_do_not_retry() -> None:
    err = errors.ProviderEgressRequired("model 'hosted' has no deployment ... (ProviderEgress=none)", field="model")
    # in-process (plain chat, streams) and from the Generate task of the query workflow (its Lambda error type)
    for mapped in (from_exception(err), workflow_error(WorkflowFailed("ProviderEgressRequired", json.dumps(
            {"errorMessage": err.message, "errorType": "ProviderEgressRequired"})))):
        assert mapped.status == 503
        assert mapped.body()["error"] == {"message": mapped.message, "type": "api_error", "param": "model",
                                          "code": "provider_egress_required"}
        assert "ProviderEgress=none" in mapped.message
        assert mapped.headers == {"x-should-retry": "false"} and "retry-after" not in mapped.headers


def test_models_lists_only_what_can_be_served(tmp_path: Path) -> None:
    s = load_settings(models_file=_models_file(tmp_path), provider_mode="hosted", openai_api_key="k",
                      provider_egress="none")
    ids = model_ids(s)
    assert {"fast", "rag/fast", "vpc", "nova", "in-vpc"} <= set(ids)
    assert not {"hosted", "rag/hosted", "odd", "gpt", "claude", "public-bedrock"} & set(ids)
    everything = model_ids(load_settings(models_file=s.models_file, provider_mode="hosted", openai_api_key="k"))
    assert {"hosted", "rag/hosted", "gpt", "claude"} <= set(everything)


def test_an_override_no_deployment_of_which_is_reachable_is_refused_when_set(monkeypatch: pytest.MonkeyPatch) -> None:
    from stratus.errors import InvalidInput
    from stratus.gateway import overrides
    from stratus.llm import catalog as catalog_module

    monkeypatch.setattr(catalog_module, "load_catalog", lambda settings=None: catalog("none"))
    with pytest.raises(InvalidInput) as caught:
        overrides.set_override(None, "t-1", "fast", ["gpt", "claude"])  # refused before the database is used
    assert caught.value.field == "deployments" and "ProviderEgress=none" in caught.value.message
    assert from_exception(caught.value).status == 400
