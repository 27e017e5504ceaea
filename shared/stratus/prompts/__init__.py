"""The prompt registry: versioned prompt files (prompts/<name>/<version>.yaml), published immutably into
the database, with labels (production, staging, ...) that point at versions globally or per tenant.

    models.py    PromptVersion (parsed, validated, content-hashed) and its errors
    render.py    Jinja2 templates in a sandbox: compile, check variables, render
    files.py     the prompt folder: find it, load every file, canonical YAML
    registry.py  sync, resolve, promote, rollback, diff, list (the API the generate function uses)

`stratus prompts ...` is stratus_tools/cli/prompts.py. Nothing heavy is imported here, and Jinja2 (~100 ms to
import) is loaded only when a template is first compiled. The registry API is importable from here
(`from stratus.prompts import resolve_prompt`), loaded on first use.

May import: config, db, errors, llm. Never stratus_tools; no cycles (pyproject.toml, [tool.importlinter]).
"""

from __future__ import annotations

from typing import Any

_REGISTRY_API = ("sync_prompts", "resolve_prompt", "promote", "rollback", "diff", "list_prompts",
                 "ensure_prompts_synced", "SyncReport", "LabelChange", "PromptSummary")
_MODELS = ("PromptVersion", "PromptFileError", "VersionConflict")
__all__ = [*_REGISTRY_API, *_MODELS]


def __getattr__(name: str) -> Any:
    if name in _REGISTRY_API:
        from stratus.prompts import registry

        return getattr(registry, name)
    if name in _MODELS:
        from stratus.prompts import models

        return getattr(models, name)
    raise AttributeError(f"module 'stratus.prompts' has no attribute {name!r}")
