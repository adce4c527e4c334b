"""The paper's claims, checked on a sweep's runs: the `[[expect]]` entries of a sweep file.

Each entry (`config.Expectation`) selects runs with an expression on their columns
(`grokjax.config.expressions`: data, never code) and reduces them to one number (a share of phases,
or a metric's mean, median, min or max); the claim holds if that number lies within its bounds, or
above the number of the runs `than` selects. A selection by results ("dynamics == 'grokking'") is
known only after training: one that selects no run gives NaN, and its claim fails with 0 runs.
`grokjax sweep` evaluates them at the end, prints them and stores them in the provenance;
`grokjax check RESULTS_DIR` evaluates them again on the results.
"""

from __future__ import annotations

import ast
from typing import Any

import numpy as np
import pandas as pd

from grokjax.config import expressions
from grokjax.config.expressions import ExpressionError, shown
from grokjax.config.fields import COLLAPSE_MEASURES, PROGRESS_RUN_COLUMNS, config_columns
from grokjax.config.sweep_file import ConfigError, Expectation
from grokjax.store.results import RUN_COLUMNS, config_of

LABELS = ("phase", "dynamics", "status")  # runs.parquet's results in words
EVENT_STEPS = ("step_", "stage_")  # columns of the step an event happened at; null where it never did
METRICS = tuple(c for c in (*RUN_COLUMNS, *COLLAPSE_MEASURES, *PROGRESS_RUN_COLUMNS)
                if c not in (*config_columns(), *LABELS, "key_frequencies"))


def select(runs: pd.DataFrame, query: str) -> pd.DataFrame:
    """The runs where `query` (`grokjax.config.expressions`) holds; "" all runs."""
    return expressions.select(runs, query)


def validate(source: str, expectations: tuple[Expectation, ...], runs: pd.DataFrame, progress: bool = False) -> None:
    """One line naming the entry and what is allowed, for a query that is not one on the runs' columns
    or selects no run, or a metric that is neither a runs.parquet metric nor an expression giving a number per run;
    the columns of the progress measures only where `progress` ([analysis] progress) gives them.

    Nothing of a query is executed (`grokjax.config.expressions`), so this is safe on any file, before any training;
    a query that names results (known after training) is checked for its names only.
    """
    config = config_of(runs)
    metrics = [m for m in METRICS if progress or m not in PROGRESS_RUN_COLUMNS]
    results = config.assign(**{m: np.nan for m in metrics}, **dict.fromkeys(LABELS, ""))
    for i, e in enumerate(expectations):
        for key in ("metric", "where", "than"):
            named = _names(getattr(e, key)) & set(PROGRESS_RUN_COLUMNS) - set(results)
            if named:
                raise ConfigError(f"{source}: expect[{i}].{key} names {sorted(named)[0]}, a column of the progress "
                                  "measures; allowed: with [analysis] progress = true (docs/measures.md)")
        reason = _not_a_metric(e.metric, results) if e.metric else None
        if reason is not None:
            raise ConfigError(f"{source}: expect[{i}].metric = \"{shown(e.metric)}\"; allowed: one of "
                              + ", ".join(METRICS) + ", or an expression of them and the config columns giving a "
                              f"number per run, e.g. \"min_prune / width\" ({reason})")
        for key in ("where", "than"):
            query = getattr(e, key)
            if key == "than" and not query:
                continue
            try:
                chosen = select(results, query)
            except ExpressionError as err:
                raise ConfigError(f"{source}: expect[{i}].{key} = \"{shown(query)}\" is not a query on the runs' "
                                  f"columns: {err}") from None
            if chosen.empty and _on_config(query, config):
                raise ConfigError(f"{source}: expect[{i}].{key} = \"{shown(query)}\" selects no run of the sweep")


def _names(text: str) -> set[str]:
    """The names an expression holds (none where it does not parse: validate says why)."""
    try:
        return {n.id for n in ast.walk(expressions.parse(text)) if isinstance(n, ast.Name)} if text.strip() else set()
    except ExpressionError:
        return set()


def _on_config(query: str, config: pd.DataFrame) -> bool:
    """Whether a query names config columns only (so that the runs it selects are known before training)."""
    return _names(query) <= set(config.columns)


def _not_a_metric(metric: str, runs: pd.DataFrame) -> str | None:
    """None for a runs.parquet metric or an expression giving one number per run; else why not."""
    if metric in METRICS:
        return None
    try:
        expressions.column(runs, metric)
    except ExpressionError as err:
        return f"{err.reason}; an expression may hold: {expressions.GRAMMAR}"
    return None


def selecting(expectations: tuple[Expectation, ...], runs: pd.DataFrame) -> tuple[Expectation, ...]:
    """The claims that have runs to judge: their `where` (and `than`) select some run of `runs`.

    A grid narrowed by `--set` may leave a claim none; a query that is not valid stays, for
    `validate` to refuse.
    """
    config = config_of(runs)

    def empty(query: str) -> bool:
        try:
            return bool(query) and _on_config(query, config) and select(config, query).empty
        except ExpressionError:  # validate names the error
            return False

    return tuple(e for e in expectations if not (empty(e.where or "") or empty(e.than)))


def value(e: Expectation, runs: pd.DataFrame) -> float:
    """The share of the runs in the claim's phases, or its metric over them (NaN if any run's is NaN, or the runs
    lack a column it names: the progress measures of a task they do not apply to). A step a run never reached
    (`step_*`, `stage_*` columns, null) counts as after every step, infinity: the median time over seeds is then
    the median with the runs that never got there last, as a survival curve's is."""
    if e.phase:
        return float(runs.phase.isin(e.phase).mean())
    if not _names(e.metric) <= set(runs.columns):
        return float("nan")
    column = (runs[e.metric] if e.metric in runs else expressions.column(runs, e.metric)).astype(float)
    if e.metric.startswith(EVENT_STEPS) and e.metric in runs:
        column = column.fillna(np.inf)
    return float(getattr(column, e.of)(skipna=False))


def evaluate(expectations: tuple[Expectation, ...], runs: pd.DataFrame) -> list[dict[str, Any]]:
    """Each claim with its value, its bounds or comparison, and whether it held (as the provenance stores them)."""
    out = []
    def chosen_by(query: str) -> pd.DataFrame:  # no run where the runs lack a column the query names
        return select(runs, query) if _names(query) <= set(runs.columns) else runs.iloc[:0]

    for e in expectations:
        chosen = chosen_by(e.where)
        v = value(e, chosen)
        what = f"share of runs in {' or '.join(e.phase)}" if e.phase else f"{e.of} {e.metric}"
        record: dict[str, Any] = {"claim": e.claim, "measured": what, "where": e.where or "all runs",
                                  "runs": len(chosen), "value": v}
        if e.than:
            other = value(e, chosen_by(e.than))
            record.update(than=e.than, than_value=other, passed=bool(v > other))
        else:
            unbounded_share = e.phase and e.at_least is None and e.at_most is None
            low = 0.5 if unbounded_share else e.at_least  # a phase share without bounds: a majority
            record.update(at_least=low, at_most=e.at_most,
                          passed=bool(not np.isnan(v) and (low is None or v >= low)
                                      and (e.at_most is None or v <= e.at_most)))
        out.append(record)
    return out


def lines(records: list[dict[str, Any]]) -> list[str]:
    """A line per claim: held or failed, the claim, and the numbers behind it."""
    out = []
    for r in records:
        if "than" in r:
            rule = f"{_num(r['value'])} where {r['where']} > {_num(r['than_value'])} where {r['than']}"
        else:
            bounds = [f">= {_num(r['at_least'])}" if r["at_least"] is not None else "",
                      f"<= {_num(r['at_most'])}" if r["at_most"] is not None else ""]
            rule = f"{_num(r['value'])} {' and '.join(b for b in bounds if b)} where {r['where']} ({r['runs']} runs)"
        out.append(f"  {'held  ' if r['passed'] else 'FAILED'} {r['claim']}: {r['measured']} {rule}")
    return out


def _num(x: float) -> str:
    return "NaN" if x is None or np.isnan(x) else f"{x:.4g}"
