"""The report's page: one self-contained index.html (inline CSS, no scripts, no network) beside its PNGs.
Every section has a chart or a sentence saying why there is none, and a small table of the figures
behind the chart, so the numbers can be copied and read without the images."""

from __future__ import annotations

import html
from collections import Counter
from datetime import datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from stratus_tools.evals.report import EvalPoint, ReportData

_CSS = """
body { font-family: system-ui, sans-serif; margin: 0 auto; max-width: 1140px; padding: 16px 20px; color: #222; }
h1 { font-size: 1.5em; margin-bottom: 0; } h2 { margin-top: 1.6em; border-bottom: 1px solid #ddd; }
.meta { color: #666; } .empty { color: #8a6d3b; background: #fcf8e3; padding: 10px; border-radius: 4px; }
img { max-width: 100%; display: block; } table { border-collapse: collapse; font-size: 0.9em; margin: 8px 0; }
td, th { border: 1px solid #ddd; padding: 3px 8px; text-align: right; } th { background: #f5f5f5; }
td:first-child, th:first-child { text-align: left; } .drifted { color: #c0392b; font-weight: bold; }
"""

_SECTIONS = (
    ("latency", "Latency percentiles per step",
     "No traces in this window: no latency to show."),
    ("cost", "Cost per tenant and model",
     "No spend recorded in this window (no model calls, or only free models such as the offline provider)."),
    ("cache", "Cache hit rate over time",
     "No cache lookups in this window (no generation requests, or every one bypassed the cache)."),
    ("guard", "Guard verdicts per rail",
     "No guard verdicts in this window (no chat requests went through the rails)."),
    ("evals", "Eval scores over time per prompt version",
     "No online eval scores in this window (the eval sampler has not finished a run that scored samples)."),
    ("drift", "Input drift",
     "No drift measurements in this window (the sampler's runs carry none, or had too few queries)."),
)


def render_page(data: ReportData, images: dict[str, str | None]) -> str:
    tables = {"latency": _latency_table, "cost": _cost_table, "cache": _cache_table, "guard": _guard_table,
              "evals": _evals_table, "drift": _drift_table}
    parts = [f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>Stratus report</title>"
             f"<style>{_CSS}</style></head><body>",
             "<h1>Stratus report</h1>",
             f"<p class='meta'>{_ts(data.since)} to {_ts(data.until)} (UTC) &middot; {len(data.tenants)} tenant(s)"
             f" &middot; {sum(t['requests'] for t in data.tenants.values())} request(s)</p>",
             _tenant_table(data)]
    for key, title, empty in _SECTIONS:
        parts.append(f"<section id='{key}'><h2>{_e(title)}</h2>")
        image = images.get(key)
        if image:
            parts.append(f"<img src='{_e(image)}' alt='{_e(title)}'>")
            parts.append(tables[key](data))
        else:
            parts.append(f"<p class='empty'>{_e(empty)}</p>")
        parts.append("</section>")
    parts.append("</body></html>")
    return "\n".join(parts)


def _tenant_table(data: ReportData) -> str:
    rows = [[t, v["requests"], v["errors"], f"{v['cost_usd']:.6f}"] for t, v in sorted(data.tenants.items())]
    return _table(["tenant", "requests", "errors", "spend (USD)"], rows) if rows else ""


def _latency_table(data: ReportData) -> str:
    return _table(["step", "requests", "p50 ms", "p95 ms", "p99 ms"],
                  [[s.step, s.n, f"{s.p50:.1f}", f"{s.p95:.1f}", f"{s.p99:.1f}"] for s in data.latency])


def _cost_table(data: ReportData) -> str:
    return _table(["tenant", "model", "requests", "input tokens", "output tokens", "spend (USD)"],
                  [[r["tenant"], r["model"], r["requests"], r["input_tokens"], r["output_tokens"],
                    f"{r['cost_usd']:.6f}"] for r in data.cost])


def _cache_table(data: ReportData) -> str:
    """The window's totals (the chart has the time series)."""
    counts: Counter[str] = Counter()
    for per_step in data.cache.values():
        counts.update(per_step)
    lookups = sum(counts.values())
    hits = counts["hit_exact"] + counts["hit_semantic"]
    busiest = max(data.cache.items(), key=lambda item: sum(item[1].values()))
    return _table(["lookups", "exact hits", "semantic hits", "misses", "hit rate", "busiest period"],
                  [[lookups, counts["hit_exact"], counts["hit_semantic"], counts["miss"],
                    f"{hits / lookups:.0%}" if lookups else "n/a",
                    f"{_ts(busiest[0])} ({sum(busiest[1].values())} lookups)"]])


def _guard_table(data: ReportData) -> str:
    actions = sorted({a for counts in data.guard.values() for a in counts})
    return _table(["rail", *actions], [[rail, *(counts[a] for a in actions)] for rail, counts in data.guard.items()])


def _evals_table(data: ReportData) -> str:
    """Per metric and prompt version: the first and the latest run in the window (the chart has the rest)."""
    series: dict[tuple[str, str], list[EvalPoint]] = {}
    for p in data.evals:
        series.setdefault((p.metric, p.prompt), []).append(p)
    rows = []
    for (metric, prompt), points in sorted(series.items()):
        first, last = points[0], points[-1]
        rows.append([metric, prompt, len(points), _num(first.mean), _num(last.mean), _ts(last.window_to),
                     sum(p.n for p in points), sum(p.failures for p in points)])
    return _table(["metric", "prompt", "runs", "first mean", "latest mean", "latest run window end", "samples",
                   "scorer failures"], rows)


def _drift_table(data: ReportData) -> str:
    """The latest measurement per scope and every run that flagged drift (the 20 most recent)."""
    latest = {p.scope: p for p in data.drift}
    shown = sorted({id(p): p for p in [*[p for p in data.drift if p.drifted][-20:], *latest.values()]}.values(),
                   key=lambda p: (p.window_to, p.scope))
    rows = []
    for p in shown:
        flag = "<span class='drifted'>drifted</span>" if p.drifted else "no"
        examples = "<br>".join(_e(x[:160]) for x in p.examples) or "&ndash;"
        rows.append([_ts(p.window_to), p.scope, _num(p.centroid_shift), _num(p.far_share), (flag,), (examples,)])
    return _table(["run window end", "scope", "centroid shift", "far share", "drift", "examples (PII-redacted)"], rows)


def _table(header: list[str], rows: list[list[Any]]) -> str:
    """Cells are escaped, except 1-tuples, which carry HTML built (and escaped) by the caller."""
    def cell(value: Any) -> str:
        return value[0] if isinstance(value, tuple) else _e(value)

    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{cell(v)}</td>" for v in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _num(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _ts(when: datetime) -> str:
    return when.strftime("%Y-%m-%d %H:%M")


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)
