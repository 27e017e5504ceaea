"""The report's charts, one PNG per section, drawn with matplotlib's object API (Figure + Agg: no pyplot
global state, no display). A local/CLI dependency only: nothing in a Lambda imports this module.

Each `plot_*` returns the image's file name, or None when its section has nothing to draw (the page then
says so in words).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from stratus_tools.evals.report import ReportData

DPI = 100
WIDTH = 11.0  # inches: 1100 px, the page's content width
# A fixed colour per guard action, so a chart reads the same in every report.
ACTION_COLOURS = {"pass": "#59a14f", "flag": "#edc948", "redact": "#4e79a7", "fence": "#b07aa1",
                  "drop": "#f28e2b", "block": "#e15759"}
PERCENTILE_COLOURS = {"p50": "#4e79a7", "p95": "#f28e2b", "p99": "#e15759"}


def render_all(data: ReportData, out: Path) -> dict[str, str | None]:
    plots: dict[str, Callable[[ReportData, Path], str | None]] = {
        "latency": plot_latency, "cost": plot_cost, "cache": plot_cache, "guard": plot_guard,
        "evals": plot_evals, "drift": plot_drift}
    return {name: plot(data, out) for name, plot in plots.items()}


def plot_latency(data: ReportData, out: Path) -> str | None:
    steps = data.latency
    if not steps:
        return None
    fig, ax = _figure(max(2.5, 0.55 * len(steps) + 1.2))
    height = 0.26
    for i, (label, colour) in enumerate(PERCENTILE_COLOURS.items()):
        ys = [row + (i - 1) * height for row in range(len(steps))]
        ax.barh(ys, [getattr(s, label) for s in steps], height=height, color=colour, label=label)
    ax.set_yticks(range(len(steps)), [f"{s.step} (n={s.n})" for s in steps])
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.set_xlabel("milliseconds (log scale)")
    ax.set_title("Latency percentiles per step")
    fig.legend(loc="outside right upper")
    ax.grid(axis="x", alpha=0.3)
    return _save(fig, out, "latency.png")


def plot_cost(data: ReportData, out: Path) -> str | None:
    if not data.cost or not any(row["cost_usd"] for row in data.cost):
        return None
    tenants = sorted({row["tenant"] for row in data.cost})
    models = sorted({row["model"] for row in data.cost})
    spend = {(row["tenant"], row["model"]): row["cost_usd"] for row in data.cost}
    fig, ax = _figure(max(2.5, 0.5 * len(tenants) + 1.5))
    totals = _stacked_barh(ax, tenants, [(m, [spend.get((t, m), 0.0) for t in tenants], None) for m in models])
    for y, total in enumerate(totals):
        ax.annotate(f"${total:,.4f}", (total, y), xytext=(4, 0), textcoords="offset points", va="center")
    ax.margins(x=0.12)  # room for the totals' labels
    return _finish_barh(fig, ax, out, "cost.png", xlabel="spend (USD)", title="Cost per tenant and model alias",
                        legend="model")


def plot_cache(data: ReportData, out: Path) -> str | None:
    points = [(t, c) for t, c in data.cache.items() if sum(c.values())]
    if not points:
        return None
    times = [t for t, _ in points]
    lookups = [sum(c.values()) for _, c in points]
    exact = [c["hit_exact"] / n for (_, c), n in zip(points, lookups, strict=True)]
    semantic = [c["hit_semantic"] / n for (_, c), n in zip(points, lookups, strict=True)]
    fig, ax = _figure(4.0)
    counts = ax.twinx()
    counts.bar(times, lookups, width=data.step * 0.8, color="#bab0ac", alpha=0.35, label="lookups")
    counts.set_ylabel("cache lookups (hit or miss)")
    ax.set_zorder(counts.get_zorder() + 1)
    ax.patch.set_visible(False)
    ax.stackplot(times, exact, semantic, labels=["exact hits", "semantic hits"], colors=["#4e79a7", "#76b7b2"],
                 alpha=0.85)
    ax.plot(times, [a + b for a, b in zip(exact, semantic, strict=True)], color="#1f3b5a", marker="o",
            markersize=3, label="hit rate")
    ax.set_ylim(0, 1)
    ax.set_ylabel("share of lookups")
    ax.set_title(f"Response cache hit rate per {_step_name(data)}")
    ax.legend(loc="upper left")
    _date_axis(ax)
    return _save(fig, out, "cache.png")


def plot_guard(data: ReportData, out: Path) -> str | None:
    if not data.guard:
        return None
    rails = list(data.guard)
    fig, ax = _figure(max(2.5, 0.45 * len(rails) + 1.5))
    actions = [a for a in ACTION_COLOURS if any(data.guard[r][a] for r in rails)]
    actions += sorted({a for r in rails for a in data.guard[r]} - set(actions))  # actions added later
    _stacked_barh(ax, rails, [(a, [data.guard[r][a] for r in rails], ACTION_COLOURS.get(a)) for a in actions])
    return _finish_barh(fig, ax, out, "guard.png", xlabel="verdicts (one per rail and stage of a request)",
                        title="Guard verdicts per rail", legend="action")


def plot_evals(data: ReportData, out: Path) -> str | None:
    series: dict[str, dict[str, list[Any]]] = defaultdict(lambda: defaultdict(list))
    for p in data.evals:
        if p.mean is not None:
            series[p.metric][p.prompt].append((p.window_to, p.mean))
    if not series:
        return None
    metrics = sorted(series)
    cols = 2 if len(metrics) > 1 else 1
    rows = -(-len(metrics) // cols)
    fig, axes = _figure(3.0 * rows + 0.6, rows=rows, cols=cols)
    flat = list(axes.flat) if hasattr(axes, "flat") else [axes]
    for ax, metric in zip(flat, metrics, strict=False):
        for prompt, values in sorted(series[metric].items()):
            ax.plot([t for t, _ in values], [m for _, m in values], marker="o", markersize=4, label=prompt)
        ax.set_title(metric, fontsize=10)
        ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="lower left")
        _date_axis(ax)
    for ax in flat[len(metrics):]:
        ax.set_visible(False)
    fig.suptitle("Online eval scores per sampler run (mean over tenants, weighted by samples)")
    return _save(fig, out, "evals.png")


def plot_drift(data: ReportData, out: Path) -> str | None:
    if not data.drift:
        return None
    fig, (shift_ax, far_ax) = _figure(5.0, rows=2)
    scopes = sorted({p.scope for p in data.drift})
    for scope in scopes:
        points = [p for p in data.drift if p.scope == scope]
        for ax, attr in ((shift_ax, "centroid_shift"), (far_ax, "far_share")):
            xy = [(p.window_to, getattr(p, attr)) for p in points if getattr(p, attr) is not None]
            ax.plot([t for t, _ in xy], [v for _, v in xy], marker="o", markersize=4, label=scope)
            hot = [(p.window_to, getattr(p, attr)) for p in points if p.drifted and getattr(p, attr) is not None]
            ax.scatter([t for t, _ in hot], [v for _, v in hot], marker="X", s=70, color="#e15759", zorder=3)
    shift_ax.set_ylabel("centroid shift\n(1 - cosine)")
    far_ax.set_ylabel("share of queries far\nfrom the baseline")
    far_ax.set_ylim(0, 1)
    for ax in (shift_ax, far_ax):
        ax.grid(alpha=0.3)
        _date_axis(ax)
    shift_ax.legend(fontsize=8, loc="upper left")
    fig.suptitle("Input drift per sampler run (red X: the run flagged drift)")
    return _save(fig, out, "drift.png")


def _stacked_barh(ax: Any, rows: list[str], segments: list[tuple[str, list[float], str | None]]) -> list[float]:
    """One horizontal bar per row, stacked from (label, widths, colour) segments (colour None: the default
    cycle); returns each row's total."""
    left = [0.0] * len(rows)
    for label, widths, colour in segments:
        ax.barh(rows, widths, left=left, label=label, color=colour)
        left = [a + b for a, b in zip(left, widths, strict=True)]
    return left


def _finish_barh(fig: Any, ax: Any, out: Path, name: str, *, xlabel: str, title: str, legend: str) -> str:
    """Labels and saves a _stacked_barh chart: rows top to bottom in the given order, the legend outside."""
    ax.invert_yaxis()
    ax.set_xlabel(xlabel)
    ax.set_title(title)
    fig.legend(title=legend, loc="outside right upper")
    ax.grid(axis="x", alpha=0.3)
    return _save(fig, out, name)


def _figure(height: float, rows: int = 1, cols: int = 1) -> tuple[Any, Any]:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(WIDTH, height), dpi=DPI, layout="constrained")
    return fig, fig.subplots(rows, cols, squeeze=True)


def _date_axis(ax: Any) -> None:
    from matplotlib.dates import AutoDateLocator, ConciseDateFormatter

    locator = AutoDateLocator()
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(ConciseDateFormatter(locator))


def _step_name(data: ReportData) -> str:
    hours = data.step.total_seconds() / 3600
    return {1: "hour", 24: "day", 168: "week"}.get(int(hours), f"{hours:g} h")


def _save(fig: Any, out: Path, name: str) -> str:
    fig.savefig(out / name, dpi=DPI, facecolor="white")  # Figure.savefig renders with Agg for PNG
    return name
