"""The prompt folder: <dir>/<name>/<version>.yaml files, loaded and validated together.

Where it is: settings.prompts_dir when set; else the copy packaged into the Lambda layer
(stratus/prompts/bundled, written by layers/common/build.sh); else the repository's prompts/.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from stratus.config import PROJECT_ROOT, Settings, get_settings
from stratus.errors import NotFound
from stratus.prompts.models import NAME, PromptFileError, PromptVersion, build_prompt

BUNDLED = Path(__file__).with_name("bundled")
_VERSION_FILE = re.compile(r"^([1-9][0-9]{0,8})\.yaml$")


def prompts_dir(settings: Settings | None = None) -> Path:
    settings = settings or get_settings()
    if settings.prompts_dir is not None:
        return settings.prompts_dir
    return BUNDLED if BUNDLED.is_dir() else PROJECT_ROOT / "prompts"


def _read_yaml(path: Path) -> Any:
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        return yaml.load(path.read_text(encoding="utf-8"), Loader=loader)  # noqa: S506 - a safe loader
    except (OSError, UnicodeDecodeError) as err:
        raise PromptFileError(f"{path}: cannot read: {err}", field="prompt") from None
    except yaml.YAMLError as err:
        raise PromptFileError(f"{path}: not valid YAML: {err}", field="prompt") from None


def load_file(path: Path) -> PromptVersion:
    """One prompt file; its name and version come from the path (<name>/<version>.yaml)."""
    name = path.parent.name
    match = _VERSION_FILE.match(path.name)
    if not match:
        raise PromptFileError(f"{path}: a prompt file is named <version>.yaml with a positive integer version"
                              " (1.yaml, 2.yaml, ...)", field="version")
    return build_prompt(name, int(match.group(1)), _read_yaml(path), source=str(path))


def load_directory(directory: Path | None = None, *, names: set[str] | None = None) -> list[PromptVersion]:
    """Every prompt version in `directory` (or only those of `names`), ordered by name and version.

    All files are checked before anything is returned: one error lists every bad file."""
    directory = directory or prompts_dir()
    if not directory.is_dir():
        raise NotFound(f"prompt folder {directory} does not exist", field="prompts_dir")
    found: list[PromptVersion] = []
    problems: list[str] = []
    for folder in sorted(p for p in directory.iterdir() if p.is_dir() and not p.name.startswith(".")):
        if names is not None and folder.name not in names:
            continue
        if not NAME.match(folder.name):
            problems.append(f"{folder}: a prompt folder is named like {NAME.pattern}")
            continue
        for path in sorted(p for p in folder.iterdir() if not p.name.startswith(".")):
            try:
                found.append(load_file(path))
            except PromptFileError as err:
                problems.append(err.message)
    if problems:
        raise PromptFileError("invalid prompt files:\n  " + "\n  ".join(problems), field="prompt")
    return sorted(found, key=lambda p: (p.name, p.version))


def load_version(directory: Path, name: str, version: int) -> PromptVersion:
    path = directory / name / f"{version}.yaml"
    if not path.is_file():
        raise NotFound(f"prompt {name} v{version}: no file {path}", field="version")
    return load_file(path)


class _CanonicalDumper(yaml.SafeDumper):  # type: ignore[misc]  # PyYAML ships no type stubs: its classes are Any
    """Multi-line templates as literal blocks, so a diff reads like the file."""


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_CanonicalDumper.add_representer(str, _str)


def canonical_yaml(prompt: PromptVersion) -> str:
    """The prompt's hashed content as YAML in a fixed layout: what `stratus prompts diff` compares."""
    text: str = yaml.dump(prompt.canonical(), Dumper=_CanonicalDumper, sort_keys=False, allow_unicode=True,
                          width=100, default_flow_style=False)  # no stream given: a str (PyYAML is untyped)
    return text
