"""Renderings of an evaluation report (`forget evaluate --json`) for people: a page, or a certificate supplement.

Pure functions of the report's dict: no clock, no environment, autoescaped, undefined names fail.
The dict may come from a file a person hands over, so it is checked field by field first: every
number that reaches the page (and the coordinates of its inline SVG charts) is a finite number in
its range, every string is escaped by the template. A report that does not fit raises
`EvaluationFormatError` (a `CertificateFormatError`: exit code 2 in the CLI).

The report is the operator's own measurement, not a signed claim: attached to a certificate
(`render_html(statement, supplement=render_evaluation_section(report))`) it is shown under
"Supplementary evidence (not part of the signed statement)", and `forget certificate verify`
ignores it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from markupsafe import Markup

from reports.errors import CertificateFormatError

FORMAT = "forget/evaluation/v1"
"""Must equal forget.evaluation.evaluate.FORMAT (reports imports nothing of the application layer)."""
Z95 = 1.959963984540054
"""Must equal forget.evaluation.stats.Z95 (a test checks both)."""

ATTACK_NAMES = {
    "loss": "Loss (Yeom et al. 2018)",
    "lira_offline": "LiRA offline, per class (Carlini et al. 2022)",
}
ATTACK_SHORT = {"loss": "loss", "lira_offline": "LiRA"}
COMPARISON_NAMES = {
    "members_vs_held_out": "training members vs held-out",
    "erased_vs_held_out": "erased vs held-out",
}

_environment = Environment(
    loader=PackageLoader("reports", "templates"),
    autoescape=select_autoescape(default=True, default_for_string=True),
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)

# Chart geometry (SVG user units).
_LABEL_W = 150
_BAR_W = 330
_ROW_H = 18
_CHART_W = _LABEL_W + _BAR_W + 70


class EvaluationFormatError(CertificateFormatError):
    """A file or dict that is not an evaluation report this version can show."""


def read_evaluation(data: bytes) -> dict[str, Any]:
    """Parse `forget evaluate --json` output and check that it renders; returns the dict."""
    try:
        report = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise EvaluationFormatError(f"the evaluation report is not JSON: {error}") from error
    if not isinstance(report, dict):
        raise EvaluationFormatError("the evaluation report is not a JSON object")
    _view(report)
    return report


def render_evaluation_html(report: Mapping[str, Any]) -> str:
    """A self-contained page (no script, no external resource): tables and inline SVG bar charts."""
    return _environment.get_template("evaluation.html.j2").render(view=_view(report), standalone=True)


def render_evaluation_section(report: Mapping[str, Any], statement: Mapping[str, Any] | None = None) -> Markup:
    """The same content as an HTML fragment, for `reports.render.render_html(..., supplement=...)`.

    A `Markup` value: the certificate template inserts it as HTML. Every string from the report
    inside it has already been escaped here; never wrap untrusted text in `Markup` yourself.
    Given the certificate's `statement`, the fragment also says whether the evaluated checkpoints
    are the ones the erasure left (each rewound shard's `checkpoint_after`).
    """
    view = _view(report)
    view["certificate"] = _against_certificate(view, statement) if statement is not None else None
    return Markup(_environment.get_template("evaluation.html.j2").render(view=view, standalone=False))


def _against_certificate(view: Mapping[str, Any], statement: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Per shard the certificate rewound: its checkpoint after the erasure, and the evaluated one."""
    try:
        erasure = statement["predicate"]["erasure"]
        shards = [] if erasure is None else list(erasure["shards"])
        rows = [(int(s["shard"]), str(s["checkpoint_after"])) for s in shards]
    except (KeyError, TypeError, ValueError) as error:
        raise CertificateFormatError(f"the certificate's erasure section is malformed: {error}") from error
    # By shard number, not position: a quarantined shard did not answer and has no evaluated checkpoint.
    evaluated = dict(zip(view["model"]["answering"], view["model"]["checkpoints"], strict=True))
    out = []
    for shard, after in rows:
        seen = evaluated.get(shard)
        out.append({"shard": shard, "after": after, "evaluated": seen, "same": seen == after})
    return out


# ---------------------------------------------------------------------------------------------
# Checking the report and building what the template shows
# ---------------------------------------------------------------------------------------------


def _field(data: Mapping[str, Any], key: str, where: str) -> Any:
    if not isinstance(data, Mapping):
        raise EvaluationFormatError(f"the evaluation report's {where} is not an object")
    if key not in data:
        raise EvaluationFormatError(f"the evaluation report has no {where}.{key}")
    return data[key]


def _number(data: Mapping[str, Any], key: str, where: str, low: float = -math.inf, high: float = math.inf) -> float:
    value = _field(data, key, where)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise EvaluationFormatError(f"the evaluation report's {where}.{key} is not a finite number")
    if not low <= value <= high:
        raise EvaluationFormatError(f"the evaluation report's {where}.{key} = {value} is outside [{low}, {high}]")
    return float(value)


def _optional_number(
    data: Mapping[str, Any], key: str, where: str, low: float = -math.inf, high: float = math.inf
) -> float | None:
    return None if _field(data, key, where) is None else _number(data, key, where, low, high)


def _count(data: Mapping[str, Any], key: str, where: str) -> int:
    value = _field(data, key, where)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise EvaluationFormatError(f"the evaluation report's {where}.{key} is not a count")
    return value


def _text(data: Mapping[str, Any], key: str, where: str) -> str:
    value = _field(data, key, where)
    if not isinstance(value, str):
        raise EvaluationFormatError(f"the evaluation report's {where}.{key} is not a string")
    return value


def _pair(data: Mapping[str, Any], key: str, where: str) -> tuple[float, float]:
    value = _field(data, key, where)
    if not isinstance(value, list) or len(value) != 2:
        raise EvaluationFormatError(f"the evaluation report's {where}.{key} is not a [low, high] pair")
    low = _number({"low": value[0]}, "low", f"{where}.{key}", 0, 1)
    high = _number({"high": value[1]}, "high", f"{where}.{key}", 0, 1)
    if low > high:
        raise EvaluationFormatError(f"the evaluation report's {where}.{key} has low above high")
    return low, high


def _proportion(data: Any, where: str) -> dict[str, Any]:
    low, high = _pair(data, "ci95", where)
    return {
        "value": _number(data, "value", where, 0, 1),
        "correct": _count(data, "correct", where),
        "rows": _count(data, "rows", where),
        "low": low,
        "high": high,
    }


def _optional(data: Mapping[str, Any], key: str) -> Any:
    """A field that reports written before it existed do not have (None then)."""
    if not isinstance(data, Mapping):
        return None
    return data.get(key)


def _interval_estimate(data: Any, where: str) -> dict[str, Any] | None:
    if data is None:
        return None
    interval = _field(data, "ci95", where)
    low, high = (None, None) if interval is None else _pair(data, "ci95", where)
    return {"value": _number(data, "value", where, 0, 1), "low": low, "high": high}


def _list(data: Mapping[str, Any], key: str, where: str) -> list[Any]:
    value = _field(data, key, where)
    if not isinstance(value, list):
        raise EvaluationFormatError(f"the evaluation report's {where}.{key} is not a list")
    return value


def _bar(label: str, value: float, low: float, high: float, row: int, emphasis: bool = False) -> dict[str, Any]:
    """One horizontal bar on a 0..1 axis: pixel geometry only, so the template holds no arithmetic."""
    y = row * _ROW_H + 4
    return {
        "label": label,
        "value": value,
        "y": y,
        "text_y": y + 11,
        "mid_y": y + 6.5,
        "width": round(value * _BAR_W, 1),
        "x_low": round(_LABEL_W + low * _BAR_W, 1),
        "x_high": round(_LABEL_W + high * _BAR_W, 1),
        "x_text": _LABEL_W + _BAR_W + 6,
        "emphasis": emphasis,
    }


def _chart(bars: list[dict[str, Any]], marker: float | None) -> dict[str, Any]:
    height = len(bars) * _ROW_H + 22
    ticks = [{"x": round(_LABEL_W + t * _BAR_W, 1), "label": f"{t:g}"} for t in (0, 0.25, 0.5, 0.75, 1)]
    return {
        "bars": bars,
        "width": _CHART_W,
        "height": height,
        "label_w": _LABEL_W,
        "bar_w": _BAR_W,
        "axis_y": height - 16,
        "tick_y": height - 4,
        "ticks": ticks,
        "marker_x": None if marker is None else round(_LABEL_W + marker * _BAR_W, 1),
    }


def _attack(data: Any, index: int) -> dict[str, Any]:
    where = f"membership.attacks[{index}]"
    attack = _text(data, "attack", where)
    comparison = _text(data, "comparison", where)
    auc = _number(data, "auc", where, 0, 1)
    se = _number(data, "auc_se", where, 0, 1)
    low, high = _pair(data, "auc_ci95", where)
    return {
        "attack": attack,
        "attack_name": ATTACK_NAMES.get(attack, attack),
        "comparison": comparison,
        "comparison_name": COMPARISON_NAMES.get(comparison, comparison),
        "positives": _count(data, "positives", where),
        "negatives": _count(data, "negatives", where),
        "auc": auc,
        "auc_se": se,
        "low": low,
        "high": high,
        "advantage": _number(data, "advantage", where, 0, 1),
        "advantage_se": _optional_number(data, "advantage_se", where, 0, 1),
        "advantage_null95": _number(data, "advantage_null95", where, 0, math.inf),
        "tpr_low_fpr": _number(data, "tpr_at_1pct_fpr", where, 0, 1),
        "near_chance": _near_chance(auc, se),
        **_conclusion(data, where, auc, se),
    }


CONCLUSIONS = ("indistinguishable", "distinguishable", "inconclusive")


def _near_chance(auc: float, se: float) -> bool:
    """0.5 lies in the AUC's 95% interval (forget.evaluation.stats.auc_interval)."""
    return abs(auc - 0.5) <= Z95 * se


def _conclusion(data: Mapping[str, Any], where: str, auc: float, se: float) -> dict[str, Any]:
    """The report's conclusion; a report written before conclusions existed gets the old reading."""
    if _optional(data, "conclusion") is None:
        near = _near_chance(auc, se)
        return {
            "conclusion": "indistinguishable" if near else "distinguishable",
            "reason": "AUC within 1.96 standard errors of 0.5" if near else "AUC beyond 1.96 standard errors of 0.5",
            "needed": None,
        }
    conclusion = _text(data, "conclusion", where)
    if conclusion not in CONCLUSIONS:
        raise EvaluationFormatError(
            f"the evaluation report's {where}.conclusion is not one of {', '.join(CONCLUSIONS)}"
        )
    needed = _optional(data, "needed_positives")
    return {
        "conclusion": conclusion,
        "reason": _text(data, "reason", where),
        "needed": None if needed is None else _count(data, "needed_positives", where),
    }


def _membership(data: Any) -> dict[str, Any] | None:
    if data is None:
        return None
    where = "membership"
    attacks = [_attack(a, i) for i, a in enumerate(_list(data, "attacks", where))]
    erased = _field(data, "erased", where)
    if erased is not None:
        erased = _count(data, "erased", where)
    bars = [
        _bar(
            f"{a['comparison'].split('_')[0]} · {ATTACK_SHORT.get(a['attack'], a['attack'])}",
            a["auc"],
            a["low"],
            a["high"],
            i,
        )
        for i, a in enumerate(attacks)
    ]
    erased_rows = [a for a in attacks if a["comparison"] == "erased_vs_held_out"]
    if not erased_rows:
        erased_state = None
    elif any(a["conclusion"] == "distinguishable" for a in erased_rows):
        erased_state = "distinguishable"
    elif all(a["conclusion"] == "indistinguishable" for a in erased_rows):
        erased_state = "indistinguishable"
    else:
        erased_state = "inconclusive"
    return {
        "threat_model": _text(data, "threat_model", where),
        "members": _count(data, "members", where),
        "held_out": _count(data, "held_out", where),
        "erased": erased,
        "seed": _count(data, "seed", where),
        "bootstrap": _count(data, "bootstrap", where),
        "attacks": attacks,
        "chart": _chart(bars, marker=0.5),
        "erased_near_chance": all(a["near_chance"] for a in erased_rows) if erased_rows else None,
        "erased_state": erased_state,
        "erased_reasons": [
            {"attack": a["attack_name"], "reason": a["reason"], "needed": a["needed"]}
            for a in erased_rows
            if a["conclusion"] != "indistinguishable"
        ],
        "mia_gap": [{"attack": a["attack_name"], "gap": a["auc"] - 0.5} for a in erased_rows],
    }


def _reference(data: Any) -> dict[str, Any] | None:
    if data is None:
        return None
    where = "reference"
    identical = _field(data, "identical_checkpoints", where)
    if not isinstance(identical, bool):
        raise EvaluationFormatError("the evaluation report's reference.identical_checkpoints is not true or false")
    erased_auc = _field(data, "erased_auc", where)
    erased_rows = []
    if erased_auc is not None:
        if not isinstance(erased_auc, Mapping):
            raise EvaluationFormatError("the evaluation report's reference.erased_auc is not an object")
        for name in sorted(erased_auc):
            erased_rows.append(
                {
                    "attack": ATTACK_NAMES.get(str(name), str(name)),
                    "auc": _number(erased_auc, name, f"{where}.erased_auc", 0, 1),
                }
            )
    return {
        "accuracy": _proportion(_field(data, "accuracy", where), f"{where}.accuracy"),
        "accuracy_gap": _number(data, "accuracy_gap", where, -1, 1),
        "agreement": _number(data, "prediction_agreement", where, 0, 1),
        "max_probability_difference": _number(data, "max_probability_difference", where, 0, 1),
        "identical": identical,
        "erased_auc": erased_rows,
        "tug_of_war": _tug_of_war(_optional(data, "tug_of_war")),
    }


def _tug_of_war(data: Any) -> dict[str, Any] | None:
    if data is None:
        return None
    where = "reference.tug_of_war"
    sets = _list(data, "sets", where)
    if not all(isinstance(name, str) for name in sets):
        raise EvaluationFormatError(f"the evaluation report's {where}.sets is not a list of names")
    exact = _field(data, "exact", where)
    if not isinstance(exact, bool):
        raise EvaluationFormatError(f"the evaluation report's {where}.exact is not true or false")
    return {
        "score": _number(data, "score", where, 0, 1),
        "sets": sets,
        "forget_gap": _optional_number(data, "forget_accuracy_gap", where, -1, 1),
        "retain_gap": _optional_number(data, "retain_accuracy_gap", where, -1, 1),
        "test_gap": _number(data, "test_accuracy_gap", where, -1, 1),
        "exact": exact,
        "note": _text(data, "note", where),
    }


def _class_row(data: Any, index: int) -> dict[str, Any]:
    where = f"utility.per_class[{index}]"
    recall = _field(data, "recall", where)
    return {
        "label": _text(data, "label", where),
        "support": _count(data, "support", where),
        "predicted": _count(data, "predicted", where),
        "recall": None if recall is None else _proportion(recall, f"{where}.recall"),
        "f1": _number(data, "f1", where, 0, 1),
    }


def _diagnosis(data: Any) -> dict[str, Any] | None:
    if data is None:
        return None
    where = "diagnosis"
    useful = _field(data, "useful", where)
    if not isinstance(useful, bool):
        raise EvaluationFormatError("the evaluation report's diagnosis.useful is not true or false")
    warnings = [
        {"code": _text(w, "code", f"{where}.warnings[{i}]"), "message": _text(w, "message", f"{where}.warnings[{i}]")}
        for i, w in enumerate(_list(data, "warnings", where))
    ]
    return {"useful": useful, "verdict": _text(data, "verdict", where), "warnings": warnings}


def _view(report: Mapping[str, Any]) -> dict[str, Any]:
    """Check the report and return what the template shows; raises EvaluationFormatError."""
    if not isinstance(report, Mapping):
        raise EvaluationFormatError("the evaluation report is not an object")
    found = report.get("format")
    if found != FORMAT:
        raise EvaluationFormatError(f"not an evaluation report of format {FORMAT} (format: {found!r})")
    model = _field(report, "model", "report")
    utility = _field(report, "utility", "report")
    ensemble = _proportion(_field(utility, "ensemble_accuracy", "utility"), "utility.ensemble_accuracy")
    mean = _proportion(_field(utility, "ensemble_accuracy_mean", "utility"), "utility.ensemble_accuracy_mean")
    shards = [
        _proportion(p, f"utility.shard_accuracy[{i}]")
        for i, p in enumerate(_list(utility, "shard_accuracy", "utility"))
    ]
    # Which shard each entry is: those that answered (reports before the field: 0, 1, ...).
    ids = utility.get("shards", list(range(len(shards))))
    if not (isinstance(ids, list) and len(ids) == len(shards) and all(type(i) is int and i >= 0 for i in ids)):
        raise EvaluationFormatError("the evaluation report's utility.shards is not one shard number per shard accuracy")
    for shard, number in zip(shards, ids, strict=True):
        shard["shard"] = number
    checkpoints = _list(model, "checkpoints", "model")
    if len(checkpoints) != len(shards) or not all(isinstance(c, str) for c in checkpoints):
        raise EvaluationFormatError("the evaluation report's model.checkpoints is not one digest per shard")
    for shard, digest in zip(shards, checkpoints, strict=True):
        shard["checkpoint"] = digest
    aggregation = _text(utility, "aggregation", "utility")
    bars = [
        _bar(f"ensemble ({aggregation})", ensemble["value"], ensemble["low"], ensemble["high"], 0, emphasis=True),
        _bar("ensemble (mean)", mean["value"], mean["low"], mean["high"], 1, emphasis=True),
        *(_bar(f"shard {p['shard']}", p["value"], p["low"], p["high"], i + 2) for i, p in enumerate(shards)),
    ]
    return {
        "file": _text(report, "file", "report"),
        "evaluated_at": _text(report, "evaluated_at", "report"),
        "model": {
            "shards": _count(model, "shards", "model"),
            "slices": _count(model, "slices", "model"),
            "name": _text(model, "model", "model"),
            "epochs": _number(model, "epochs", "model", 0),
            "checkpoints": checkpoints,
            "answering": ids,
            "checkpoints_sha256": _text(model, "checkpoints_sha256", "model"),
        },
        "utility": {
            "rows": _count(utility, "rows", "utility"),
            "aggregation": aggregation,
            "ensemble": ensemble,
            "mean": mean,
            "shards": shards,
            "chart": _chart(bars, marker=None),
            **_utility_extras(utility),
        },
        "membership": _membership(_field(report, "membership", "report")),
        "reference": _reference(_field(report, "reference", "report")),
        "diagnosis": _diagnosis(_optional(report, "diagnosis")),
        "certificate": None,
    }


def _utility_extras(utility: Mapping[str, Any]) -> dict[str, Any]:
    """The usefulness measures; absent (None, empty) in reports written before they existed."""
    majority = _optional(utility, "majority_baseline")
    where = "utility"
    return {
        "majority": None if majority is None else _proportion(majority, f"{where}.majority_baseline"),
        "p_vs_majority": None
        if _optional(utility, "p_vs_majority") is None
        else _number(utility, "p_vs_majority", where, 0, 1),
        "balanced": _interval_estimate(_optional(utility, "balanced_accuracy"), f"{where}.balanced_accuracy"),
        "macro_f1": _interval_estimate(_optional(utility, "macro_f1"), f"{where}.macro_f1"),
        "per_class": [_class_row(c, i) for i, c in enumerate(_optional(utility, "per_class") or [])],
        "single_class_shards": [
            _count({"shard": v}, "shard", f"{where}.single_class_shards")
            for v in (_optional(utility, "single_class_shards") or [])
        ],
    }
