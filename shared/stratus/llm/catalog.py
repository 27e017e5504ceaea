"""The model catalog: deployments (a model at a provider, with its price and limits) and aliases
(ordered lists of deployments to try). Loaded from a YAML file (settings.models_file); a tenant may
override an alias with its own ordered list of the catalog's deployments.

Provider egress (settings.provider_egress, the template's ProviderEgress): with `none` the functions have
no route to the internet, so deployments that need it (the OpenAI and Anthropic public APIs) are left out
of every alias and override: the rest (Bedrock through its VPC endpoint, offline) keep their order, and a
model left with nothing fails at once with ProviderEgressRequired instead of waiting on connects that
cannot succeed. Unset (local mode) or `nat`: nothing is left out.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    StringConstraints,
    ValidationError,
    model_validator,
)

from stratus.errors import InvalidInput, NotFound
from stratus.llm.errors import ProviderEgressRequired
from stratus.validation import describe_errors

if TYPE_CHECKING:
    from stratus.config import Settings

ProviderName = Literal["openai", "anthropic", "bedrock", "offline"]
Egress = Literal["none", "nat"]
# Providers called at a public internet endpoint: from a VPC without a NAT they cannot be reached.
INTERNET_PROVIDERS = frozenset({"openai", "anthropic"})
Name = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9._-]{0,63}$")]
DEFAULT_CATALOG = Path(__file__).with_name("models.yaml")
OFFLINE = "offline"


class Price(BaseModel):
    """US dollars per million tokens."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    input: float = Field(ge=0)
    output: float = Field(ge=0)
    cached_input: float | None = Field(default=None, ge=0)  # None: same as input


class Deployment(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Name
    provider: ProviderName
    model: str  # the provider's model id
    price: Price
    base_url: str | None = None  # OpenAI/Anthropic-compatible endpoint, or a Bedrock endpoint override
    region: str | None = None  # Bedrock
    api_key: SecretStr | None = None  # filled from settings at load; never in the YAML
    timeout_s: float = Field(default=30.0, gt=0, le=900)  # one attempt
    context_window: int = Field(default=128_000, ge=256)
    max_output_tokens: int = Field(default=4096, ge=1)
    # Whether calling it needs the public internet. Unset: the OpenAI and Anthropic APIs do; Bedrock (its VPC
    # endpoint) and the offline provider do not. Set false for an OpenAI-compatible server inside the VPC.
    internet: bool | None = None

    @property
    def needs_internet(self) -> bool:
        return self.provider in INTERNET_PROVIDERS if self.internet is None else self.internet


# Embedding model id (without its dimension) -> USD per million input tokens.
EmbeddingPrices = dict[str, Annotated[float, Field(ge=0)]]


class Catalog(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    deployments: dict[Name, Deployment]
    aliases: dict[Name, Annotated[list[Name], Field(min_length=1)]]
    default_alias: Name
    # Embedding models' prices, USD per million input tokens (stratus.llm.pricing.embedding_cost_usd).
    embedding_prices: EmbeddingPrices = Field(default_factory=dict)
    _egress: Egress | None = PrivateAttr(default=None)  # set by parse_catalog from settings.provider_egress

    @property
    def egress(self) -> Egress | None:
        return self._egress

    def reachable(self, deployment: Deployment) -> bool:
        """False for a deployment that needs the internet when the functions have none (ProviderEgress=none)."""
        return self._egress != "none" or not deployment.needs_internet

    def servable(self, model: str) -> bool:
        """Whether an alias (or a deployment addressed directly) has a deployment it can reach."""
        names = self.aliases.get(model) or ([model] if model in self.deployments else [])
        return any(self.reachable(self.deployments[n]) for n in names)

    @model_validator(mode="after")
    def _check(self) -> Catalog:
        for alias, names in self.aliases.items():
            for name in names:
                if name not in self.deployments:
                    raise ValueError(f"aliases.{alias}: unknown deployment {name!r}")
        if self.default_alias not in self.aliases:
            raise ValueError(f"default_alias: {self.default_alias!r} is not an alias")
        return self

    def deployments_for(self, alias: str, override: list[str] | None = None) -> list[Deployment]:
        """The ordered deployments to try for `alias` (a tenant's override wins), less those the functions
        cannot reach; ProviderEgressRequired when that leaves none."""
        listed = self._listed(alias, override)
        usable = [d for d in listed if self.reachable(d)]
        if not usable:
            raise self.egress_error(alias, listed, override=override is not None)
        return usable

    def _listed(self, alias: str, override: list[str] | None) -> list[Deployment]:
        if override is not None:
            unknown = [n for n in override if n not in self.deployments]
            if unknown:
                raise InvalidInput(f"model override for {alias!r} names unknown deployments: {unknown}",
                                   field="model")
            return [self.deployments[n] for n in override]
        if alias in self.aliases:
            return [self.deployments[n] for n in self.aliases[alias]]
        if alias in self.deployments:  # a deployment may be addressed directly
            return [self.deployments[alias]]
        raise NotFound(f"unknown model {alias!r}; known aliases: {', '.join(sorted(self.aliases))}", field="model")

    def egress_error(self, alias: str, listed: list[Deployment], *, override: bool = False) -> ProviderEgressRequired:
        """The error for a model whose every deployment needs the internet the functions do not have."""
        whose = "this tenant's override of " if override else ""
        needs = ", ".join(f"{d.name} ({d.provider})" for d in listed)
        return ProviderEgressRequired(
            f"{whose}model {alias!r} has no deployment reachable without internet egress "
            f"(ProviderEgress={self._egress}): every deployment it lists needs the public internet ({needs}); "
            f"deploy with ProviderEgress=nat or route the model to a Bedrock deployment", field="model")


def parse_catalog(data: object, *, source: str = "<catalog>", credentials: dict[str, SecretStr | None] | None = None,
                  offline_only: bool = False, egress: Egress | None = None) -> Catalog:
    """Validate a catalog document. `credentials` (provider -> key) fill in api keys; with
    `offline_only`, every alias is answered by the offline deployment (local mode without keys); with
    `egress` "none", deployments that need the internet are left out of every alias."""
    if not isinstance(data, dict):
        raise InvalidInput(f"{source}: a mapping with deployments and aliases is expected", field="catalog")
    raw = dict(data)
    deployments = {name: {**(spec or {}), "name": name} for name, spec in (raw.get("deployments") or {}).items()}
    for spec in deployments.values():
        key = (credentials or {}).get(str(spec.get("provider")))
        if key is not None and "api_key" not in spec:
            spec["api_key"] = key
    raw["deployments"] = deployments
    if offline_only:
        deployments.setdefault(OFFLINE, {"name": OFFLINE, "provider": "offline", "model": "stratus-offline-extractive",
                                         "price": {"input": 0, "output": 0}})
        raw["aliases"] = {alias: [OFFLINE] for alias in (raw.get("aliases") or {})} | {OFFLINE: [OFFLINE]}
    try:
        catalog = Catalog.model_validate(raw)
    except ValidationError as err:
        problems, first = describe_errors(err, empty="")
        raise InvalidInput(f"{source}: invalid model catalog: {problems}", field=first) from None
    catalog._egress = egress
    return catalog


@functools.cache
def _load(path: Path, credentials: tuple[tuple[str, str | None], ...], offline_only: bool,
          egress: Egress | None) -> Catalog:
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as err:
        raise InvalidInput(f"{path}: cannot read the model catalog: {err}", field="models_file") from None
    creds = {p: SecretStr(k) if k else None for p, k in credentials}
    return parse_catalog(data, source=str(path), credentials=creds, offline_only=offline_only, egress=egress)


def load_catalog(settings: Settings | None = None) -> Catalog:
    """The catalog for these settings (cached). Local mode with no provider credentials configured
    routes every alias to the offline provider, so `make demo` and CI never need a key."""
    from stratus.config import get_settings

    s = settings or get_settings()
    creds = {
        "openai": s.openai_api_key.get_secret_value() if s.openai_api_key else None,
        "anthropic": s.anthropic_api_key.get_secret_value() if s.anthropic_api_key else None,
    }
    if s.provider_secret_arn:
        from stratus.aws.secrets import json_secret

        stored = json_secret(s.provider_secret_arn)
        creds = {p: creds[p] or stored.get(p) for p in creds}
    mode = s.provider_mode
    offline_only = mode == "offline" or (
        mode == "auto" and s.env == "local" and not any(creds.values()) and not s.bedrock_enabled
    )
    return _load(Path(s.models_file), tuple(sorted(creds.items())), offline_only,
                 s.provider_egress)
