"""The chat-completions parameter matrix in docs/gateway.md, rendered from the one table
(stratus.llm.parameters).

    .venv/bin/python scripts/parameter_matrix.py            # rewrite the matrix in docs/gateway.md
    .venv/bin/python scripts/parameter_matrix.py --check    # exit 1 when docs/gateway.md is stale
    .venv/bin/python scripts/parameter_matrix.py --print    # print the matrix, change nothing
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

from stratus.llm.parameters import PARAMETERS, PROVIDERS, UNKNOWN, Parameter, Rule
from stratus_tools.generated_docs import update

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "gateway.md"
BEGIN, END = "<!-- parameters:begin -->", "<!-- parameters:end -->"
HEADINGS = {"openai": "OpenAI-compatible", "anthropic": "Anthropic Messages", "bedrock": "Bedrock Converse"}


def cell(rule: Rule) -> str:
    if rule.handling == "forward":
        return "forwarded"
    if rule.handling == "gateway":
        return "Stratus"
    if rule.handling == "translate":
        only = " (other models: refused)" if rule.models else ""
        return f"→ {rule.to}{only}"
    return f"**400** ({rule.to})" if rule.to else "**400**"


def row(parameter: Parameter, name: str) -> str:
    return "| " + " | ".join([name, *(cell(parameter.rule(p)) for p in PROVIDERS)]) + " |"


def render() -> str:
    counts = Counter(parameter.rule(p).handling for parameter in PARAMETERS for p in PROVIDERS)
    lines = [BEGIN,
             "<!-- rendered by scripts/parameter_matrix.py from stratus/llm/parameters.py: edit the table there -->",
             f"{len(PARAMETERS)} parameters x {len(PROVIDERS)} providers: {counts['forward']} forwarded, "
             f"{counts['translate']} translated, {counts['refuse']} refused, {counts['gateway']} implemented by "
             "Stratus, none dropped silently.", "",
             "| parameter | " + " | ".join(HEADINGS[p] for p in PROVIDERS) + " |",
             "|---|" + "---|" * len(PROVIDERS)]
    lines += [row(parameter, f"`{parameter.name}`") for parameter in PARAMETERS]
    lines += [row(UNKNOWN, "any other name (`extra_body`)"), END]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    mode = ap.add_mutually_exclusive_group()
    mode.add_argument("--check", action="store_true", help="fail when docs/gateway.md is stale")
    mode.add_argument("--print", action="store_true", help="print the matrix only")
    args = ap.parse_args(argv)
    block = render()
    if args.print:
        sys.stdout.write(block)
        return 0
    return update(DOC, block, BEGIN, END, check=args.check, command=".venv/bin/python scripts/parameter_matrix.py")


if __name__ == "__main__":
    raise SystemExit(main())
