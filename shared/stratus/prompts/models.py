"""A prompt version: what a prompt file says, validated, with the content hash that identifies it.

The hash is sha256 over a canonical JSON of the *parsed* content (keys sorted, compact separators,
variables sorted, each template stripped of leading/trailing whitespace, unset parameters left out).
So reformatting the YAML (indentation, quoting, key order, comments, block or flow style, a trailing
newline) does not change it; changing what a model would be sent, or the description, does.
Name and version are the identity, not content: a new version with unchanged content has the same hash.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    StringConstraints,
    Tag,
    ValidationError,
)

from stratus.errors import InvalidInput, StratusError
from stratus.prompts.render import compile_template, template_variables

NAME_PATTERN = r"^[a-z0-9][a-z0-9-]{0,63}$"
LABEL_PATTERN = r"^[a-z0-9][a-z0-9-]{0,62}$"  # mirrors the CHECK in infra/db/migrations/0004_prompts.sql
NAME = re.compile(NAME_PATTERN)
LABEL = re.compile(LABEL_PATTERN)
HISTORY = "history"
MAX_TEMPLATE_CHARS = 100_000
MAX_MESSAGES = 50


class PromptFileError(InvalidInput):
    """A prompt file (or a published version) is invalid; the message names the file and the field."""


class VersionConflict(StratusError):
    """A published version's content differs from its file: versions are immutable."""

    code = "prompt_version_conflict"


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class Parameters(_Frozen):
    """Generation parameters a prompt may fix; the names are those of stratus.llm.types.ChatRequest."""

    temperature: float | None = Field(default=None, ge=0, le=2)
    max_tokens: int | None = Field(default=None, ge=1, le=1_000_000)
    top_p: float | None = Field(default=None, ge=0, le=1)
    stop: Annotated[list[Annotated[str, StringConstraints(min_length=1)]], Field(max_length=4)] | None = None
    seed: int | None = None

    def as_request_fields(self) -> dict[str, Any]:
        """The set parameters, ready for `ChatRequest(messages=..., **params)`."""
        return self.model_dump(exclude_none=True)


class MessageTemplate(_Frozen):
    role: Literal["system", "developer", "user", "assistant"]
    content: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=MAX_TEMPLATE_CHARS)]


class Placeholder(_Frozen):
    """`{placeholder: history}`: the caller's conversation messages go here."""

    placeholder: Literal["history"]


def _kind(item: Any) -> str:
    return "placeholder" if isinstance(item, Mapping) and "placeholder" in item else "message"


MessageEntry = Annotated[
    Annotated[MessageTemplate, Tag("message")] | Annotated[Placeholder, Tag("placeholder")],
    Discriminator(_kind),
]
Identifier = Annotated[str, StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")]


class PromptSpec(_Frozen):
    """The body of a prompt file (identity comes from its path: <name>/<version>.yaml)."""

    description: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=2000)]
    model: Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9._-]{0,63}$")]  # an alias of the catalog
    parameters: Parameters = Parameters()
    variables: Annotated[list[Identifier], Field(max_length=50)] = []
    messages: Annotated[list[MessageEntry], Field(min_length=1, max_length=MAX_MESSAGES)]

    def canonical(self) -> dict[str, Any]:
        """The content as published (jsonb) and hashed."""
        return {
            "description": self.description,
            "model": self.model,
            "parameters": self.parameters.as_request_fields(),
            "variables": sorted(self.variables),
            "messages": [m.model_dump() for m in self.messages],
        }


def content_hash(canonical: Mapping[str, Any]) -> str:
    text = json.dumps(canonical, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


class PromptVersion(BaseModel):
    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    name: str
    version: int
    description: str
    model: str
    parameters: dict[str, Any]  # the parameters the file sets (validated by Parameters), ready for ChatRequest
    variables: tuple[str, ...]
    messages: tuple[MessageTemplate | Placeholder, ...]
    content_hash: str

    @property
    def ref(self) -> str:
        return f"{self.name} v{self.version}"

    def canonical(self) -> dict[str, Any]:
        return {
            "description": self.description,
            "model": self.model,
            "parameters": dict(self.parameters),
            "variables": list(self.variables),
            "messages": [m.model_dump() for m in self.messages],
        }

    @property
    def has_history(self) -> bool:
        return any(isinstance(m, Placeholder) for m in self.messages)

    def render(self, variables: Mapping[str, Any] | None = None,
               history: Sequence[Any] | None = None) -> list[Any]:
        """The messages for a model: templates rendered with `variables` (exactly the declared ones),
        the caller's `history` (stratus.llm.types.Message) in place of the placeholder."""
        return _render_messages(self, dict(variables or {}), list(history or []))


def _field(loc: Sequence[int | str]) -> str:
    """('messages', 0, 'message', 'content') -> 'messages[0].content' (union tags left out)."""
    out, previous = "", None
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif not (isinstance(previous, int) and part in ("message", "placeholder")):
            out += f".{part}" if out else str(part)
        previous = part
    return out or "prompt"


def build_prompt(name: str, version: int, data: object, *, source: str) -> PromptVersion:
    """Validate a prompt's content (a parsed file, or a published version's jsonb) into a PromptVersion.

    Every problem is reported as PromptFileError naming `source` and the field: unknown keys or
    parameters, bad values, template syntax errors, undeclared or unused variables."""
    if not NAME.match(name):
        raise PromptFileError(f"{source}: prompt name {name!r} must match {NAME_PATTERN}", field="name")
    if version < 1:
        raise PromptFileError(f"{source}: version must be a positive integer", field="version")
    if not isinstance(data, Mapping):
        raise PromptFileError(f"{source}: a mapping with description, model, variables and messages is expected",
                              field="prompt")
    try:
        spec = PromptSpec.model_validate(dict(data))
    except ValidationError as err:
        problems = [f"{_field(e['loc'])}: {e['msg']}" for e in err.errors()]
        raise PromptFileError(f"{source}: " + "; ".join(problems), field=_field(err.errors()[0]["loc"])) from None
    if sum(isinstance(m, Placeholder) for m in spec.messages) > 1:
        raise PromptFileError(f"{source}: messages: at most one {{placeholder: {HISTORY}}} entry", field="messages")
    if len(set(spec.variables)) != len(spec.variables):
        raise PromptFileError(f"{source}: variables: declared more than once", field="variables")

    _check_templates(spec, source=source)
    canonical = spec.canonical()
    return PromptVersion(
        name=name, version=version, description=spec.description, model=spec.model, parameters=canonical["parameters"],
        variables=tuple(canonical["variables"]), messages=tuple(spec.messages), content_hash=content_hash(canonical),
    )


def _check_templates(spec: PromptSpec, *, source: str) -> None:
    """Every template compiles, reads only declared variables, and every declared variable is read."""
    from jinja2 import TemplateSyntaxError

    declared = set(spec.variables)
    used: set[str] = set()
    for i, entry in enumerate(spec.messages):
        if not isinstance(entry, MessageTemplate):
            continue
        field = f"messages[{i}].content"
        try:
            names = template_variables(entry.content)
            compile_template(entry.content)
        except TemplateSyntaxError as err:
            raise PromptFileError(f"{source}: {field}: template syntax error on line {err.lineno}: {err.message}",
                                  field=field) from None
        undeclared = sorted(names - declared)
        if undeclared:
            raise PromptFileError(
                f"{source}: {field}: uses undeclared variable(s) {', '.join(undeclared)}; declare them under"
                " `variables`", field=field)
        used |= names
    unused = sorted(declared - used)
    if unused:
        raise PromptFileError(f"{source}: variables: declared but never used: {', '.join(unused)}",
                              field="variables")


def _render_messages(prompt: PromptVersion, variables: dict[str, Any], history: list[Any]) -> list[Any]:
    from jinja2 import TemplateError

    from stratus.llm.types import Message

    missing = sorted(set(prompt.variables) - variables.keys())
    if missing:
        raise InvalidInput(f"prompt {prompt.ref}: missing variable(s): {', '.join(missing)}",
                           field=f"variables.{missing[0]}")
    extra = sorted(variables.keys() - set(prompt.variables))
    if extra:
        raise InvalidInput(f"prompt {prompt.ref}: unexpected variable(s): {', '.join(extra)} (declared:"
                           f" {', '.join(prompt.variables) or 'none'})", field=f"variables.{extra[0]}")
    if history and not prompt.has_history:
        raise InvalidInput(f"prompt {prompt.ref} has no {{placeholder: history}}: it does not take conversation"
                           " messages", field="messages")
    bad = [i for i, m in enumerate(history) if not isinstance(m, Message)]
    if bad:
        raise InvalidInput(f"history[{bad[0]}]: a Message is expected", field=f"history[{bad[0]}]")

    out: list[Message] = []
    for i, entry in enumerate(prompt.messages):
        if isinstance(entry, Placeholder):
            out.extend(history)
            continue
        try:
            text = compile_template(entry.content).render(variables).strip()
        except TemplateError as err:  # StrictUndefined (e.g. a passage without `text`), sandbox refusals
            raise InvalidInput(f"prompt {prompt.ref}: messages[{i}].content: {err}",
                               field=f"messages[{i}].content") from None
        out.append(Message(role=entry.role, content=text))
    return out
