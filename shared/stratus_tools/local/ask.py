"""What `stratus ask` does: run the query workflow once and print the answer with its accounting."""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, TextIO

from stratus.config import Settings, get_settings


@contextmanager
def workflow_target(settings: Settings) -> Iterator[str]:
    """Where the workflow runs: a deployed stack, a local stack already running, or one started now."""
    from stratus_tools.local.stack import LocalStack, attached, running_stack

    if settings.env != "local":
        yield f"deployed stack ({settings.env})"
        return
    state = running_stack(settings)
    if state is not None:
        with attached(state):
            yield f"local stack of process {state['pid']}"
        return
    with LocalStack(settings, start_pollers=False):
        yield "local stack (started for this command)"


def ask(question: str, tenant_id: str, *, mode: str = "rag", model: str | None = None, prompt: str | None = None,
        k: int | None = None) -> dict[str, Any]:
    """Run one question through the workflow; returns the Generate output plus the caller-side timings."""
    from stratus.aws.workflows import run_workflow
    from stratus.workflow_state import new_query

    query = new_query(question, tenant_id, mode=mode, model=model, prompt=prompt, k=k)  # type: ignore[arg-type]
    result = run_workflow(query.model_dump(mode="json"))
    output = result.output
    if "text" not in output:  # the input rails stopped the run: keep the verdicts, not the request's state
        guard = output.get("guard") or {}
        output = {"request_id": output.get("request_id"), "tenant_id": tenant_id, "text": "",
                  "guard": {"verdicts": guard.get("verdicts", []), "blocked": guard.get("blocked")}}
    steps = output.get("timings_ms", {})
    tasks = steps.get("retrieve", 0.0) + steps.get("total", 0.0)
    output["workflow_ms"] = {"wall": result.duration_ms, "tasks": round(tasks, 3),
                             "overhead": round(max(0.0, result.duration_ms - tasks), 3)}
    return output


def format_answer(question: str, out: dict[str, Any], width: int = 100) -> list[str]:
    lines = [f"Q: {question}"]
    guard = out.get("guard") or {}
    blocked = guard.get("blocked")
    if blocked:
        return [*lines, f"A: (blocked by the {blocked['rail']} guard rail on the {blocked['stage']}: "
                        f"score {blocked['score']:.2f}, threshold {blocked['threshold']})"]
    label = " (offline extractive provider: sentences quoted from your documents, not a language model)" \
        if out.get("offline") else ""
    lines += textwrap.wrap(f"A: {out.get('text', '')}", width, subsequent_indent="   ")
    if label:
        lines.append(f"  {label.strip()}")
    for c in out.get("citations", []):
        lines.append(f"  [{c['number']}] {c['source_key']} (v{c['document_version']}, chunk {c['chunk_id']})")
    hits = [f"{v['rail']} ({v['action']})" for v in guard.get("verdicts", []) if v["action"] != "pass"]
    if hits:
        lines.append(f"  guard: {', '.join(hits)}")
    usage = out.get("usage", {})
    cache = out.get("cache", {})
    cache_note = cache.get("status", "-")
    if cache.get("similarity") is not None and str(cache_note).startswith("hit"):
        cache_note += f" (similarity {cache['similarity']:.3f})"
    prompt = out.get("prompt", {})
    lines.append(f"  model {out.get('model_alias')} -> {out.get('deployment') or 'cache'}"
                 f" | prompt {prompt.get('name')} v{prompt.get('version')} | cache {cache_note}")
    lines.append(f"  tokens in {usage.get('input_tokens', 0)} / out {usage.get('output_tokens', 0)}"
                 f" | cost ${out.get('cost_usd', 0):.6f}")
    t, w = out.get("timings_ms", {}), out.get("workflow_ms", {})
    steps = " | ".join(f"{name} {t[name]:.0f}" for name in ("retrieve", "prompt", "embed", "cache", "generate",
                                                             "record") if name in t)
    lines.append(f"  time ms: {steps} | generate task {t.get('total', 0):.0f} | workflow overhead"
                 f" {w.get('overhead', 0):.0f} | total {w.get('wall', 0):.0f}")
    return lines


def run_ask(question: str, tenant_id: str, *, mode: str, model: str | None, prompt: str | None, k: int | None,
            as_json: bool, verbose: bool) -> int:
    import json

    from stratus_tools.local.commands import function_output

    settings = get_settings()
    with function_output(settings, verbose) as out, workflow_target(settings):
        answer = ask(question, tenant_id, mode=mode, model=model, prompt=prompt, k=k)
        _print(out, json.dumps(answer) if as_json else "\n".join(format_answer(question, answer)))
    return 0


def _print(out: TextIO, text: str) -> None:
    print(text, file=out, flush=True)
