"""Renderings of a plan (`forget plan --output PLAN.json`): a self-contained page, and a PNG chart.

Pure functions of the plan's dict (format `forget/plan/v1`): the page is autoescaped, undefined
names fail, and every number that becomes an SVG coordinate is checked to be finite and in range
first. The PNG needs matplotlib (the `bench` extra); without it `PlanRenderError` says so.

The chart is the trade-off: for each candidate, the expected share of a full training that one
erasure request retrains (x, logarithmic: lower is cheaper) against its validation accuracy with a
95% Wilson interval (y), the majority-class baseline as a dashed line, the recommendation marked.
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from reports.errors import CertificateFormatError

FORMAT = "forget/plan/v1"
"""Must equal forget.evaluation.plan.PLAN_FORMAT (reports imports nothing of the application layer)."""

_environment = Environment(
    loader=PackageLoader("reports", "templates"),
    autoescape=select_autoescape(default=True, default_for_string=True),
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)

# Chart geometry (SVG user units).
_W, _H = 620, 340
_LEFT, _RIGHT, _TOP, _BOTTOM = 60, 20, 20, 44


class PlanRenderError(CertificateFormatError):
    """A plan that cannot be rendered: not a plan, a malformed number, or no matplotlib for --png."""


def _number(row: Mapping[str, Any], key: str, where: str, low: float, high: float) -> float:
    value = row.get(key) if isinstance(row, Mapping) else None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise PlanRenderError(f"the plan's {where}.{key} is not a finite number")
    if not low <= value <= high:
        raise PlanRenderError(f"the plan's {where}.{key} = {value} is outside [{low}, {high}]")
    return float(value)


def _points(plan: Mapping[str, Any]) -> list[dict[str, Any]]:
    if not isinstance(plan, Mapping) or plan.get("format") != FORMAT:
        found = plan.get("format") if isinstance(plan, Mapping) else None
        raise PlanRenderError(f"not a plan of format {FORMAT} (format: {found!r})")
    results = plan.get("results")
    if not isinstance(results, list) or not results:
        raise PlanRenderError("the plan has no results")
    recommended = plan.get("recommended")
    points = []
    for i, row in enumerate(results):
        where = f"results[{i}]"
        points.append(
            {
                "index": i,
                "label": f"{int(_number(row, 'shards', where, 1, 1e9))} x {int(_number(row, 'slices', where, 1, 1e9))}",
                "model": str(row.get("model", "")),
                "epochs": _number(row, "epochs", where, 0, 1e9),
                "accuracy": _number(row, "accuracy", where, 0, 1),
                "low": _number(row, "accuracy_low", where, 0, 1),
                "high": _number(row, "accuracy_high", where, 0, 1),
                "balanced": _number(row, "balanced_accuracy", where, 0, 1),
                "share": _number(row, "retrain_share", where, 1e-12, 1),
                "erase_s": _number(row, "erase_s", where, 0, 1e12),
                "train_s": _number(row, "train_s", where, 0, 1e12),
                "records": _number(row, "records_per_shard", where, 0, 1e15),
                "steps": _number(row, "steps_per_shard", where, 0, 1e15),
                "single": int(_number(row, "single_class_shards", where, 0, 1e9)),
                "recommended": i == recommended,
            }
        )
    return points


def _scale(points: list[dict[str, Any]], baseline: float) -> dict[str, Any]:
    """Pixel positions: x is log10 of the retrain share, y the accuracy (both padded)."""
    xs = [math.log10(p["share"]) for p in points]
    x_min, x_max = min(xs) - 0.15, max(xs) + 0.15
    ys = [float(p["low"]) for p in points] + [float(p["high"]) for p in points] + [baseline]
    y_min, y_max = max(0.0, min(ys) - 0.03), min(1.0, max(ys) + 0.03)
    if y_max - y_min < 0.05:
        y_min, y_max = max(0.0, y_min - 0.05), min(1.0, y_max + 0.05)
    width, height = _W - _LEFT - _RIGHT, _H - _TOP - _BOTTOM

    def px(value: float) -> float:
        return round(_LEFT + (math.log10(value) - x_min) / (x_max - x_min) * width, 1)

    def py(value: float) -> float:
        return round(_TOP + (y_max - value) / (y_max - y_min) * height, 1)

    x_ticks = []
    for exponent in range(math.floor(x_min), math.ceil(x_max) + 1):
        for mantissa in (1, 2, 5):
            value = mantissa * 10.0**exponent
            if x_min <= math.log10(value) <= x_max:
                x_ticks.append({"x": px(value), "label": f"{value:.0%}" if value >= 0.01 else f"{value:.1%}"})
    step = 0.05 if y_max - y_min > 0.2 else 0.02
    y_ticks = []
    tick = math.ceil(y_min / step) * step
    while tick <= y_max + 1e-9:
        y_ticks.append({"y": py(tick), "label": f"{tick:.0%}"})
        tick += step
    for p in points:
        p.update(cx=px(p["share"]), cy=py(p["accuracy"]), y_low=py(p["low"]), y_high=py(p["high"]))
        p["text_x"] = p["cx"] + 6
    return {
        "width": _W,
        "height": _H,
        "left": _LEFT,
        "right": _W - _RIGHT,
        "top": _TOP,
        "bottom": _H - _BOTTOM,
        "baseline_y": py(baseline),
        "x_ticks": x_ticks,
        "y_ticks": y_ticks,
        "x_label_y": _H - 8,
    }


def _view(plan: Mapping[str, Any]) -> dict[str, Any]:
    points = _points(plan)
    counts = plan.get("counts")
    if not isinstance(counts, Mapping):
        raise PlanRenderError("the plan has no counts")
    baseline = _number(plan, "baseline", "plan", 0, 1)
    warnings = plan.get("warnings", [])
    if not isinstance(warnings, list):
        raise PlanRenderError("the plan's warnings are not a list")
    return {
        "file": str(plan.get("file", "")),
        "file_sha256": str(plan.get("file_sha256", "")),
        "counts": {key: counts.get(key) for key in counts},
        "aggregation": str(plan.get("aggregation", "")),
        "validation": _number(plan, "validation", "plan", 0, 1),
        "max_loss": _number(plan, "max_loss", "plan", 0, 1),
        "reason": str(plan.get("reason", "")),
        "warnings": [str(w) for w in warnings],
        "stable": bool(plan.get("stable_to_one_subject", False)),
        "baseline": baseline,
        "points": points,
        "chart": _scale(points, baseline),
        "recommended": next(p for p in points if p["recommended"]) if any(p["recommended"] for p in points) else None,
        "one_setting": len({(p["model"], p["epochs"]) for p in points}) == 1,
    }


def render_plan_html(plan: Mapping[str, Any]) -> str:
    """A self-contained page (no script, no external resource): the table and an inline SVG chart."""
    return _environment.get_template("plan.html.j2").render(view=_view(plan))


def render_plan_png(plan: Mapping[str, Any]) -> bytes:
    """The trade-off chart as a PNG (matplotlib, Agg backend); the same data as the page's chart."""
    view = _view(plan)
    try:
        import matplotlib

        matplotlib.use("Agg")
        from matplotlib import pyplot
    except ImportError as error:
        raise PlanRenderError(
            "--png needs matplotlib (pip install matplotlib, or the bench extra); --html draws the same chart"
            " without it"
        ) from error
    figure, axis = pyplot.subplots(figsize=(7, 4.2), dpi=110)
    for p in view["points"]:
        colour = "#c62828" if p["recommended"] else "#1565c0"
        axis.errorbar(
            p["share"],
            p["accuracy"],
            yerr=[[p["accuracy"] - p["low"]], [p["high"] - p["accuracy"]]],
            fmt="o",
            color=colour,
            capsize=3,
            markersize=7 if p["recommended"] else 5,
        )
        text = p["label"] if view["one_setting"] else f"{p['label']} {p['model']} {p['epochs']:g}ep"
        axis.annotate(text, (p["share"], p["accuracy"]), textcoords="offset points", xytext=(5, 4), fontsize=7)
    axis.axhline(view["baseline"], color="#777", linestyle="--", linewidth=1, label="majority class")
    axis.set_xscale("log")
    axis.set_xlabel("expected share of a full training retrained per erasure request (log)")
    axis.set_ylabel(f"validation accuracy ({view['aggregation']})")
    axis.set_title(f"forget plan: {view['file']}", fontsize=10)
    axis.legend(loc="lower right", fontsize=8)
    axis.grid(True, which="both", alpha=0.3)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", metadata={"Software": None})
    pyplot.close(figure)
    return buffer.getvalue()
