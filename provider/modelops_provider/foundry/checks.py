"""The judgements of the verification chain, as plain functions: metric thresholds (with the
comparison against production) and inference answers. No I/O here; the operators fetch, these judge."""

from __future__ import annotations

import contextlib
import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from modelops_provider.core.validation import require_text

COMPARISONS: dict[str, Callable[[float, float], bool]] = {
    ">=": lambda a, b: a >= b,
    ">": lambda a, b: a > b,
    "<=": lambda a, b: a <= b,
    "<": lambda a, b: a < b,
    "==": lambda a, b: a == b,
}
AGGREGATIONS = ("MIN", "MAX", "LAST")
# What to do when production's version has no experiment (or lacks the metric): see ModelMetricsCheckOperator.
UNMEASURED_RULES = ("fail", "pass")
# Float noise allowance when comparing a difference with a tolerance.
EPSILON = 1e-9


def _finite(name: str, value: Any) -> float:
    if isinstance(value, str):
        with contextlib.suppress(ValueError):
            value = float(value)  # a rendered template gives text
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    return float(value)


def non_negative(name: str, value: Any) -> float:
    """A finite number >= 0 (tolerances)."""
    number = _finite(name, value)
    if number < 0:
        raise ValueError(f"{name} must be >= 0, got {value!r}")
    return number


@dataclass(frozen=True)
class Threshold:
    """One bar: ``metric`` (a series name) aggregated by MIN | MAX | LAST, compared with ``value``;
    with ``tolerance``, also no worse than production's value by more than that."""

    metric: str
    aggregation: str
    comparison: str
    value: float
    tolerance: float | None = None

    @property
    def key(self) -> str:
        """Name in the returned metrics: the metric for LAST, ``<metric>_min``/``_max`` otherwise."""
        return self.metric if self.aggregation == "LAST" else f"{self.metric}_{self.aggregation.lower()}"

    @property
    def higher_is_better(self) -> bool:
        return self.comparison in (">=", ">")

    @property
    def bar(self) -> str:
        return f"{self.comparison} {self.value:g}"

    @classmethod
    def parse(cls, raw: Any, index: int) -> Threshold:
        name = f"thresholds[{index}]"
        if not isinstance(raw, Mapping):
            raise ValueError(f"{name} must be a dict like {{'metric': 'accuracy', '>=': ...}}, got {raw!r}")
        unknown = set(raw) - {"metric", "aggregation", "comparison", "value", "tolerance"}
        if unknown:
            raise ValueError(f"{name} has unknown keys {sorted(unknown)}: {raw!r}")
        metric = require_text(f"{name}.metric", raw.get("metric"))
        aggregation = str(raw.get("aggregation") or "LAST").upper()
        if aggregation not in AGGREGATIONS:
            raise ValueError(f"{name}.aggregation must be MIN, MAX or LAST, got {raw.get('aggregation')!r}")
        comparison = raw.get("comparison")
        if comparison not in COMPARISONS:
            raise ValueError(f"{name}.comparison must be one of {', '.join(COMPARISONS)}, got {comparison!r}")
        tolerance = raw.get("tolerance")
        if tolerance is not None:
            tolerance = non_negative(f"{name}.tolerance", tolerance)
            if comparison == "==":
                raise ValueError(f"{name}: a tolerance against production needs a direction (>=, >, <=, <), not '=='")
        return cls(metric, aggregation, comparison, _finite(f"{name}.value", raw.get("value")), tolerance)


def parse_thresholds(raw: Any) -> list[Threshold]:
    if isinstance(raw, Mapping) or not isinstance(raw, Sequence) or isinstance(raw, str) or not raw:
        raise ValueError(f"thresholds must be a non-empty list of dicts, got {raw!r}")
    parsed = [Threshold.parse(item, i) for i, item in enumerate(raw)]
    keys = [t.key for t in parsed]
    duplicates = sorted({k for k in keys if keys.count(k) > 1})
    if duplicates:
        raise ValueError(f"thresholds name the same metric and aggregation twice: {duplicates}")
    return parsed


@dataclass
class Verdict:
    threshold: Threshold
    value: float | None
    production: float | None
    passed: bool
    reasons: list[str]

    def to_json(self) -> dict[str, Any]:
        t = self.threshold
        return {
            "metric": t.key,
            "aggregation": t.aggregation,
            "value": self.value,
            "bar": t.bar,
            "tolerance": t.tolerance,
            "production": self.production,
            "verdict": "PASS" if self.passed else "FAIL",
            "reasons": self.reasons,
        }


def judge(
    threshold: Threshold,
    value: float | None,
    *,
    production: float | None = None,
    production_measured: bool = True,
    compare_production: bool = False,
    unmeasured: str = "fail",
    production_label: str = "production",
) -> Verdict:
    """Judge one metric. A missing value fails; a missing production value follows ``unmeasured``."""
    t = threshold
    reasons: list[str] = []
    if value is None:
        reasons.append(f"{t.key}: missing (the experiment has no {t.aggregation} of series {t.metric!r})")
    elif not COMPARISONS[t.comparison](value, t.value):
        reasons.append(f"{t.key} = {value:.4f} is not {t.bar} (off by {abs(value - t.value):.4f})")
    if compare_production and t.tolerance is not None:
        if production is None:
            why = "has no experiment" if not production_measured else f"has no {t.aggregation} of {t.metric!r}"
            if unmeasured == "fail":
                reasons.append(
                    f"{t.key}: {production_label} {why}, so it cannot be compared (if_production_unmeasured='fail')"
                )
        elif value is not None:
            worse_by = (production - value) if t.higher_is_better else (value - production)
            if worse_by > t.tolerance + EPSILON:
                reasons.append(
                    f"{t.key} = {value:.4f} is {worse_by:.4f} worse than {production_label}'s {production:.4f} "
                    f"(tolerance {t.tolerance:g})"
                )
    return Verdict(t, value, production, not reasons, reasons)


def table(verdicts: Sequence[Verdict], *, with_production: bool) -> str:
    """A fixed-width table: metric, value, bar, production's value, verdict."""

    def number(v: float | None) -> str:
        return "missing" if v is None else f"{v:.4f}"

    header = ["metric", "value", "bar"] + (["production", "tolerance"] if with_production else []) + ["verdict"]
    rows = [header]
    for v in verdicts:
        t = v.threshold
        row = [t.key, number(v.value), t.bar]
        if with_production:
            compared = t.tolerance is not None
            row += [number(v.production) if compared else "-", f"{t.tolerance:g}" if compared else "-"]
        rows.append([*row, "PASS" if v.passed else "FAIL"])
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip() for r in rows)


# --- inference answers -------------------------------------------------------------------------------
def subset_mismatches(expected: Any, actual: Any, tolerance: float, path: str = "output") -> list[str]:
    """Where ``actual`` does not contain ``expected``: dicts by key (extra keys allowed), lists element by
    element (same length), numbers within ``tolerance``, anything else equal."""
    if isinstance(expected, Mapping):
        if not isinstance(actual, Mapping):
            return [f"{path}: expected an object, got {_short(actual)}"]
        out: list[str] = []
        for key, want in expected.items():
            if key not in actual:
                out.append(f"{path}.{key}: missing")
            else:
                out += subset_mismatches(want, actual[key], tolerance, f"{path}.{key}")
        return out
    if isinstance(expected, list):
        if not isinstance(actual, list) or len(actual) != len(expected):
            return [f"{path}: expected a list of {len(expected)}, got {_short(actual)}"]
        out = []
        for i, (want, got) in enumerate(zip(expected, actual, strict=True)):
            out += subset_mismatches(want, got, tolerance, f"{path}[{i}]")
        return out
    if isinstance(expected, (int, float)) and not isinstance(expected, bool):
        if isinstance(actual, bool) or not isinstance(actual, (int, float)):
            return [f"{path}: expected {expected!r}, got {_short(actual)}"]
        if abs(actual - expected) > tolerance + EPSILON:
            return [
                f"{path}: expected {expected!r} ± {tolerance:g}, got {actual!r} (off by {abs(actual - expected):.6g})"
            ]
        return []
    return [] if expected == actual else [f"{path}: expected {expected!r}, got {_short(actual)}"]


def check_answer(expected: Any, output: Any, tolerance: float) -> list[str]:
    """Why ``output`` is not the expected answer (empty: it is). ``expected`` is a JSON subset or a
    callable taking the output and returning True/False (or raising AssertionError with the reason)."""
    if callable(expected):
        try:
            verdict = expected(output)
        except AssertionError as exc:
            return [f"{_name(expected)}: {exc or 'assertion failed'}"]
        return [] if verdict is True or verdict is None else [f"{_name(expected)} returned {verdict!r}"]
    return subset_mismatches(expected, output, tolerance)


def _name(fn: Any) -> str:
    return getattr(fn, "__name__", None) or repr(fn)


def _short(value: Any, limit: int = 300) -> str:
    try:
        text = json.dumps(value, default=str)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def describe_expected(expected: Any) -> str:
    return f"{_name(expected)}(output) is True" if callable(expected) else _short(expected)


short = _short
