"""Jinja2 templates for prompts: compiled once, rendered in a sandbox. The prompt versions that use it
(variables checked both ways, messages rendered) are stratus.prompts.models; this module imports nothing
of the package.

The environment is part of the file format (prompts/README.md): ImmutableSandboxedEnvironment (templates
cannot reach Python internals or mutate the caller's data), StrictUndefined (a missing value is an
error, never an empty string), no autoescaping (prompts are not HTML), and trim_blocks/lstrip_blocks so
`{% for %}` lines leave no blank lines behind. Jinja2 is imported on first use (it costs ~100 ms).
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from jinja2 import Template
    from jinja2.sandbox import ImmutableSandboxedEnvironment


@functools.cache
def _environment() -> ImmutableSandboxedEnvironment:
    from jinja2 import StrictUndefined
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    return ImmutableSandboxedEnvironment(
        undefined=StrictUndefined, autoescape=False, trim_blocks=True, lstrip_blocks=True,
        keep_trailing_newline=False,
    )


@functools.lru_cache(maxsize=256)
def compile_template(source: str) -> Template:
    return _environment().from_string(source)


def template_variables(source: str) -> set[str]:
    """Top-level names a template reads (loop variables and `set` targets excluded; globals too)."""
    from jinja2 import meta

    env = _environment()
    return set(meta.find_undeclared_variables(env.parse(source))) - set(env.globals)
