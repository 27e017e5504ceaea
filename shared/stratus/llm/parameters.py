"""Every parameter of OpenAI's chat-completions API, and what each provider does with it: the one table.

Per provider (OpenAI-compatible, Anthropic Messages, Bedrock Converse) a parameter is
- `forward`: sent as is, under its OpenAI name;
- `translate`: sent as the provider's counterpart (`to` says which), by the provider's adapter;
- `refuse`: that provider cannot honour it, so a request that sets it is not sent there (400 naming it
  when no deployment of the model can honour it);
- `gateway`: Stratus itself implements it (the model id, the messages, streaming).

A value every provider honours anyway is `inert` (n=1, logprobs=false, penalties of 0, parallel tool
calls allowed, ...): it is never a reason to refuse. A `translate` rule may hold only for some models
(`models`, a regular expression over the deployment's model id: Bedrock's extended thinking is Claude's);
for other models it is a refusal.

Routing (the decision for an alias whose deployments differ): the deployments that cannot honour every
parameter the caller set are left out of the alias's list, in order, before admission; the request is
refused (400 `unsupported_parameter`, naming the first parameter no deployment honours) only when none
is left. So `seed` on an alias of [anthropic, openai] goes to OpenAI, and on an Anthropic-only alias is a
400 rather than an answer that ignored it. What the table decides is the caller's parameters only: a
prompt version's own parameters (set by the operator) are applied where the provider has them.

Names that are no OpenAI parameter at all (a client's `extra_body`) are `UNKNOWN`: forwarded to
OpenAI-compatible upstreams, as OpenAI's SDK sends them (settings.forward_unknown_parameters; off: 400
`unknown_parameter`), refused by the others. The offline provider is not a language model and is not in
the table: it answers from the passages and ignores sampling parameters (llm/providers/offline.py).

docs/gateway.md's matrix is rendered from this table (scripts/parameter_matrix.py) and the gateway's
parameter tests are generated from it (tests/integration/test_gateway_parameters.py).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

Handling = Literal["forward", "translate", "refuse", "gateway"]
PROVIDERS = ("openai", "anthropic", "bedrock")


@dataclass(frozen=True)
class Rule:
    handling: Handling
    to: str = ""  # translate: the provider's counterpart; refuse: why (both shown in the docs)
    models: str | None = None  # translate only for deployments whose model id matches; refused otherwise

    def honours(self, model: str) -> bool:
        if self.handling == "refuse":
            return False
        return self.models is None or re.search(self.models, model) is not None


@dataclass(frozen=True)
class Parameter:
    name: str
    openai: Rule
    anthropic: Rule
    bedrock: Rule
    inert: Callable[[Any], bool] = lambda value: value is None

    def rule(self, provider: str) -> Rule:
        rule: Rule = getattr(self, provider)
        return rule


FORWARD = Rule("forward")
GATEWAY = Rule("gateway", "Stratus implements it")


def _refuse(why: str = "") -> Rule:
    return Rule("refuse", why)


def _none_or(*values: Any) -> Callable[[Any], bool]:
    return lambda value: value is None or value in values


NO_COUNTERPART = "no counterpart"
ONE_ANSWER = "one answer per request"
CLAUDE = r"anthropic\.claude|claude"
# OpenAI's reasoning_effort -> an extended-thinking budget (tokens). Anthropic wants at least 1,024 and
# less than max_tokens: the budget is cut to max_tokens - 1, and refused when that is under 1,024.
THINKING_BUDGETS = {"minimal": 1024, "low": 2048, "medium": 8192, "high": 16384, "xhigh": 32768, "max": 65536}
THINKING_MIN = 1024
# OpenAI's service tiers -> Anthropic's (the others, flex/scale/priority/fast, have none there).
ANTHROPIC_SERVICE_TIERS = {"auto": "auto", "default": "standard_only"}

PARAMETERS: tuple[Parameter, ...] = (
    Parameter("model", GATEWAY, GATEWAY, GATEWAY),
    Parameter("messages", GATEWAY, Rule("translate", "system + messages (content blocks)"),
              Rule("translate", "system + messages (content blocks)")),
    Parameter("stream", GATEWAY, GATEWAY, GATEWAY),
    Parameter("stream_options", GATEWAY, GATEWAY, GATEWAY),
    Parameter("max_completion_tokens", FORWARD, Rule("translate", "max_tokens"),
              Rule("translate", "inferenceConfig.maxTokens")),
    Parameter("max_tokens", Rule("translate", "max_completion_tokens"), Rule("translate", "max_tokens"),
              Rule("translate", "inferenceConfig.maxTokens")),
    Parameter("temperature", FORWARD, _refuse("the Messages API no longer takes sampling parameters"),
              Rule("translate", "inferenceConfig.temperature")),
    Parameter("top_p", FORWARD, _refuse("the Messages API no longer takes sampling parameters"),
              Rule("translate", "inferenceConfig.topP")),
    Parameter("stop", FORWARD, Rule("translate", "stop_sequences"), Rule("translate", "inferenceConfig.stopSequences")),
    Parameter("seed", FORWARD, _refuse(NO_COUNTERPART), _refuse(NO_COUNTERPART)),
    Parameter("tools", FORWARD, Rule("translate", "tools (name, description, input_schema)"),
              Rule("translate", "toolConfig.tools[].toolSpec")),
    Parameter("tool_choice", FORWARD, Rule("translate", "tool_choice (auto / none / any / tool)"),
              Rule("translate", "toolConfig.toolChoice (auto / any / tool; none drops the tools)")),
    Parameter("parallel_tool_calls", FORWARD, Rule("translate", "tool_choice.disable_parallel_tool_use"),
              _refuse(NO_COUNTERPART), inert=_none_or(True)),
    Parameter("response_format", FORWARD,
              Rule("translate", "json_schema: output_config.format; json_object: refused"),
              _refuse("Converse has no structured output"), inert=lambda v: v is None or v.get("type") == "text"),
    Parameter("user", FORWARD, Rule("translate", "metadata.user_id"), _refuse(NO_COUNTERPART)),
    Parameter("safety_identifier", FORWARD, Rule("translate", "metadata.user_id"), _refuse(NO_COUNTERPART)),
    Parameter("reasoning_effort", FORWARD,
              Rule("translate", "thinking {type: enabled, budget_tokens} (none: disabled)"),
              Rule("translate", "additionalModelRequestFields.thinking (Claude models only)", models=CLAUDE)),
    Parameter("service_tier", FORWARD, Rule("translate", "service_tier (auto; default: standard_only)"),
              _refuse(NO_COUNTERPART), inert=_none_or("auto")),
    Parameter("n", FORWARD, _refuse(ONE_ANSWER), _refuse(ONE_ANSWER), inert=_none_or(1)),
    Parameter("logprobs", FORWARD, _refuse(NO_COUNTERPART), _refuse(NO_COUNTERPART), inert=_none_or(False)),
    Parameter("top_logprobs", FORWARD, _refuse(NO_COUNTERPART), _refuse(NO_COUNTERPART), inert=_none_or(0)),
    Parameter("presence_penalty", FORWARD, _refuse(NO_COUNTERPART), _refuse(NO_COUNTERPART), inert=_none_or(0)),
    Parameter("frequency_penalty", FORWARD, _refuse(NO_COUNTERPART), _refuse(NO_COUNTERPART), inert=_none_or(0)),
    Parameter("logit_bias", FORWARD, _refuse(NO_COUNTERPART), _refuse(NO_COUNTERPART), inert=lambda v: not v),
    Parameter("store", FORWARD, _refuse("OpenAI's stored completions"), _refuse("OpenAI's stored completions"),
              inert=_none_or(False)),
    Parameter("metadata", FORWARD, _refuse("OpenAI's stored completions"), _refuse("OpenAI's stored completions"),
              inert=lambda v: not v),
    Parameter("prediction", FORWARD, _refuse(NO_COUNTERPART), _refuse(NO_COUNTERPART)),
    Parameter("modalities", FORWARD, _refuse("text output only"), _refuse("text output only"),
              inert=lambda v: v is None or list(v) == ["text"]),
    Parameter("audio", FORWARD, _refuse("text output only"), _refuse("text output only")),
    Parameter("verbosity", FORWARD, _refuse(NO_COUNTERPART), _refuse(NO_COUNTERPART)),
    Parameter("prompt_cache_key", FORWARD, _refuse("caching is per content block (cache_control)"),
              _refuse("caching is per content block (cachePoint)")),
    Parameter("prompt_cache_retention", FORWARD, _refuse(NO_COUNTERPART), _refuse(NO_COUNTERPART)),
    Parameter("prompt_cache_options", FORWARD, _refuse(NO_COUNTERPART), _refuse(NO_COUNTERPART)),
    Parameter("moderation", FORWARD, _refuse(NO_COUNTERPART), _refuse(NO_COUNTERPART)),
    Parameter("web_search_options", FORWARD, _refuse("a server tool, not a parameter"),
              _refuse(NO_COUNTERPART)),
    Parameter("functions", FORWARD, _refuse("deprecated; send tools"), _refuse("deprecated; send tools")),
    Parameter("function_call", FORWARD, _refuse("deprecated; send tool_choice"),
              _refuse("deprecated; send tool_choice")),
)
TABLE: dict[str, Parameter] = {p.name: p for p in PARAMETERS}
# A name that is no OpenAI parameter (a client's extra_body): forwarded to OpenAI-compatible upstreams only.
UNKNOWN = Parameter("(any other name)", FORWARD, _refuse("not an OpenAI parameter"),
                    _refuse("not an OpenAI parameter"))
# The parameters the provider-neutral request (llm.types.ChatRequest) has no field of its own for: they
# travel by name in ChatRequest.passthrough, for the table to decide on and the OpenAI adapter to send as
# is (what the table refuses for a deployment never reaches it). In the table's order, so that a refusal
# names the same parameter every time.
_TYPED = frozenset({"model", "messages", "stream", "stream_options", "max_tokens", "max_completion_tokens",
                    "temperature", "top_p", "stop", "seed", "tools", "tool_choice", "parallel_tool_calls",
                    "response_format", "user", "safety_identifier", "reasoning_effort", "service_tier"})
PASSTHROUGH = tuple(p.name for p in PARAMETERS if p.name not in _TYPED)
PASSTHROUGH_SET = frozenset(PASSTHROUGH)


@dataclass(frozen=True)
class Refusal:
    parameter: str
    provider: str
    reason: str

    def message(self) -> str:
        why = f" ({self.reason})" if self.reason else ""
        return f"{self.parameter}: not supported by this model's {self.provider} deployments{why}"


# Per provider, the names it honours for every model and value: the request path's fast path (a set lookup).
HONOURED: dict[str, frozenset[str]] = {
    provider: frozenset(p.name for p in PARAMETERS if p.rule(provider).handling != "refuse"
                        and p.rule(provider).models is None) for provider in PROVIDERS}


def refusal(provider: str, model: str, values: Mapping[str, Any]) -> Refusal | None:
    """The first of the caller's parameters (name -> value, as set) that a deployment of `provider` serving
    `model` cannot honour; None when it honours them all (the offline provider: always)."""
    honoured = HONOURED.get(provider)
    if honoured is None:
        return None
    for name, value in values.items():
        if name in honoured:
            continue
        parameter = TABLE.get(name, UNKNOWN)
        rule = parameter.rule(provider)
        if not rule.honours(model) and not parameter.inert(value):
            return Refusal(name, provider, rule.to if rule.handling == "refuse" else f"only for models {rule.models}")
    return None


def honouring(deployments: Iterable[Any], values: Mapping[str, Any]) -> tuple[list[Any], Refusal | None]:
    """The deployments (in order) that honour every parameter in `values`, and, when none does, the first
    deployment's refusal (what the 400 names)."""
    kept, first = [], None
    for d in deployments:
        found = refusal(d.provider, d.model, values) if values else None
        if found is None:
            kept.append(d)
        elif first is None:
            first = found
    return kept, (first if not kept else None)
