"""Files a command writes outside the workspace: whole or not at all, and pages rendered from its data.

A plan, a certificate or a page lands under the name the person gave only once it is complete
(temp file, fsync, rename), so a crash or a full disk never leaves half of one. Renderings are
pure functions of the command's JSON (`reports`); they import jinja2 (and matplotlib for the
chart) only when called.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sisa.store import write_atomically


def write_file(path: Path, data: bytes) -> None:
    """Write `data` to `path` atomically: temp file, fsync, rename."""
    write_atomically(path, data)


def plan_png(plan: Mapping[str, Any]) -> bytes:
    """`forget plan --png`: the chart; raises `PlanRenderError` without matplotlib."""
    from reports.plan import render_plan_png

    return render_plan_png(plan)


def plan_html(plan: Mapping[str, Any]) -> str:
    """`forget plan --html`: a self-contained page with the chart."""
    from reports.plan import render_plan_html

    return render_plan_html(plan)


def evaluation_html(report: Mapping[str, Any]) -> str:
    """`forget evaluate --html`: a self-contained report."""
    from reports.evaluation import render_evaluation_html

    return render_evaluation_html(report)
