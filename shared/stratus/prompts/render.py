"""Jinja2 templates for prompts: compiled once, rendered in a sandbox, with variables checked both ways.

The environment is part of the file format (prompts/README.md): ImmutableSandboxedEnvironment (templates
cannot reach Python internals or mutate the caller's data), StrictUndefined (a missing value is an
error, never an empty string), no autoescaping (prompts are not HTML), and trim_blocks/lstrip_blocks so
`{% for %}` lines leave no blank lines behind. Jinja2 is imported on first use (it costs ~100 ms).
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

from stratus.errors import InvalidInput
from stratus.prompts.models import MessageTemplate, Placeholder, PromptFileError

if TYPE_CHECKING:
    from jinja2 import Template

    from stratus.prompts.models import PromptSpec, PromptVersion


@functools.cache
def _environment() -> Any:
    from jinja2 import StrictUndefined
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    return ImmutableSandboxedEnvironment(
        undefined=StrictUndefined, autoescape=False, trim_blocks=True, lstrip_blocks=True,
        keep_trailing_newline=False,
    )


@functools.lru_cache(maxsize=256)
def _compile(source: str) -> Template:
    return _environment().from_string(source)


def _referenced(source: str) -> set[str]:
    """Top-level names a template reads (loop variables and `set` targets excluded; globals too)."""
    from jinja2 import meta

    env = _environment()
    return set(meta.find_undeclared_variables(env.parse(source))) - set(env.globals)


def check_templates(spec: PromptSpec, *, source: str) -> None:
    """Every template compiles, reads only declared variables, and every declared variable is read."""
    from jinja2 import TemplateSyntaxError

    declared = set(spec.variables)
    used: set[str] = set()
    for i, entry in enumerate(spec.messages):
        if not isinstance(entry, MessageTemplate):
            continue
        field = f"messages[{i}].content"
        try:
            names = _referenced(entry.content)
            _compile(entry.content)
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


def render_messages(prompt: PromptVersion, variables: dict[str, Any], history: list[Any]) -> list[Any]:
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
            text = _compile(entry.content).render(variables).strip()
        except TemplateError as err:  # StrictUndefined (e.g. a passage without `text`), sandbox refusals
            raise InvalidInput(f"prompt {prompt.ref}: messages[{i}].content: {err}",
                               field=f"messages[{i}].content") from None
        out.append(Message(role=entry.role, content=text))
    return out
