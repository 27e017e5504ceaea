"""`stratus eval run` and the gate of `stratus prompts promote`: gold suites (stratus_tools/evals/gold.py) run on
the local stack, with what they print and the exit status they give."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TextIO

from stratus_tools.evals.gold import (
    THRESHOLDS,
    CaseResult,
    GoldSetError,
    case_line,
    compare_versions,
    run_suite,
    suite_path,
)


@contextmanager
def local_stack(verbose: bool) -> Iterator[TextIO]:
    """The local stack (a running one, or one started now); yields the terminal while handlers log to a file.
    Offline evaluation never runs against a deployed stack: it ingests a corpus and asks dozens of questions."""
    from stratus.config import get_settings
    from stratus_tools.local.ask import workflow_target
    from stratus_tools.local.commands import function_output

    settings = get_settings()
    if settings.env != "local":
        raise GoldSetError(f"offline evaluation runs on the local stack; STRATUS_ENV is {settings.env!r}",
                           field="STRATUS_ENV")
    with function_output(settings, verbose) as out, workflow_target(settings):
        yield out


def run_command(suites: Sequence[str], *, as_json: bool, out_file: Path | None, thresholds: Path,
                verbose: bool) -> int:
    """`stratus eval run`: 0 when every floor holds, 1 naming each missed one (on stderr)."""
    from stratus.config import get_settings

    missed: list[str] = []
    with local_stack(verbose) as terminal:
        for suite in suites:
            def show(case: CaseResult) -> None:
                print(case_line(case), file=terminal, flush=True)

            result = run_suite(suite, thresholds=thresholds, progress=None if as_json else show)
            target = out_file or get_settings().data_dir / "evals" / f"{suite}.json"
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(json.dumps(result.to_json(), indent=1) + "\n", encoding="utf-8")
            if as_json:
                print(json.dumps(result.to_json()), file=terminal, flush=True)
            else:
                print("\n".join([*result.summary_lines(), f"result: {target}"]), file=terminal, flush=True)
            missed += result.problems
    for line in missed:
        print(line, file=sys.stderr)
    return 1 if missed else 0


def promotion_gate(name: str, version: int, *, force: bool, verbose: bool = False,
                   thresholds: Path | None = None, served: Callable[[], int | None] | None = None) -> bool:
    """Whether `stratus prompts promote NAME VERSION` may go on: the prompt's suite, when there is one, run
    on that version must meet its floors and, when the label serves another version now (`served()`, asked
    only when the suite runs), must not pass fewer cases than that version does on the same run. `force`
    promotes anyway and says that the gate was skipped."""
    if not suite_path(name).exists():
        return True  # no gold set for this prompt: nothing to gate on
    if force:
        print(f"--force: skipped the {name} gold suite gate")
        return True
    current = served() if served is not None else None
    compare = current is not None and current != version
    with local_stack(verbose) as terminal:
        print(f"evaluating {name} v{version} on its gold suite before promoting ...", file=terminal, flush=True)
        result = run_suite(name, thresholds=thresholds or THRESHOLDS, prompt_version=version)
        print("\n".join(result.summary_lines()), file=terminal, flush=True)
        problems = list(result.problems)
        if compare:
            print(f"... and v{current}, the version the label serves now, to compare", file=terminal, flush=True)
            served = run_suite(name, thresholds=None, prompt_version=current)
            print("\n".join(served.summary_lines()), file=terminal, flush=True)
            problems += compare_versions(name, served, result)
    if problems:
        for line in problems:
            print(line, file=sys.stderr)
        reason = f"missed a threshold or did worse than v{current}" if compare else "missed a threshold"
        print(f"refusing to promote {name} v{version}: its gold suite {reason} (--force to promote anyway)",
              file=sys.stderr)
        return False
    return True
