"""`grokjax explore RESULTS_DIR`: one offline page of linked views, to look at any cell of a sweep.

The static charts show one run per phase; here a click on a cell of the phase diagram
shows the training curves of its runs and its neurons. The data are aggregated in
pandas so that the page stays small whatever the sweep's size: one row per cell (phase,
seed agreement, mean accuracies, its neurons' IPR histogram and its periodic neurons'
dominant frequencies, as arrays) and one row per run shown (its curves as arrays of at
most MAX_POINTS steps). The runs' curves hold at most CURVE_BUDGET numbers (about 10 MB): past it, each
cell shows the curves of its first runs only (the lowest run_ids, so its first seeds), at
least one, and a cell's curves are thinned further where even one run per cell is more
(down to MIN_POINTS steps). The browser flattens the arrays of the selected cells only.
"""

from __future__ import annotations

import json
from pathlib import Path

import altair as alt
import numpy as np
import pandas as pd

from grokjax.charts import figures
from grokjax.core.analysis import PERIODIC_IPR
from grokjax.store.results import final_neurons, load
from grokjax.summary.cells import TITLES, facet_axes, facet_column, grid_axes, label, phase_cells
from grokjax.summary.phases import PHASES

MAX_POINTS = 50  # logged steps kept per run
MIN_POINTS = 10  # ... and the fewest, where the budget asks for fewer
CURVE_BUDGET = 1_500_000  # numbers in the runs' curves (steps and metrics), a run's labels counted as ROW_COST more
ROW_COST = 30  # about 200 bytes of a run's labels and field names, at about 7 bytes a number: ~10 MB in all
IPR_BINS = 20
KEYS = ["x", "y", "facet"]  # a cell: its labels on the grid's axes and its facet
ACCURACIES = {
    "train_acc": "train", "test_acc": "test", "train_acc_clean": "train, clean", "train_acc_corrupted": "train, corrupted",
}  # fmt: skip
LOSSES = {"train_loss": "train", "test_loss": "test"}
SINGLES = {"weight_norm": "weight norm", "ipr_mean": "mean IPR"}
SYMBOLS = {"data_fraction": "α", "corruption_fraction": "ξ"}
# The views name their data, and the page holds each table once, at its top (`chart`): Altair copies a chart's
# data each time it composes views, which for the runs' curves would take longer than drawing them.
CELLS, RUNS = alt.NamedData(name="cells"), alt.NamedData(name="runs")
DECADES = "abs(log(datum.value) / LN10 - round(log(datum.value) / LN10)) < 1e-6 ? datum.label : ''"  # log axis labels


def cell_keys(runs: pd.DataFrame) -> pd.DataFrame:
    """run_id and the keys (x, y, facet) of the run's cell, as phase_cells writes them."""
    x, y = grid_axes(runs)
    keyed = facet_column(runs, facet_axes(runs))
    return keyed.assign(x=keyed[x].map(label), y=keyed[y].map(label))[["run_id", *KEYS]]


def _rounded(values: pd.Series, digits: int = 4) -> np.ndarray:
    """Four significant digits, NaN as None: the page's size is mostly these numbers."""
    v = values.to_numpy(float)
    with np.errstate(divide="ignore", invalid="ignore"):
        decimals = np.nan_to_num(digits - 1 - np.floor(np.log10(np.abs(v))), posinf=0).astype(int)
    rounded = np.array(v)
    for d in np.unique(decimals):  # np.round takes one number of decimals at a time
        rounded[decimals == d] = np.round(v[decimals == d], d)
    return np.where(np.isnan(v), None, rounded)


def _columns(frame: pd.DataFrame, names: dict[str, str]) -> dict[str, str]:
    """The columns of `names` that the frame has and that hold a number somewhere."""
    return {c: label for c, label in names.items() if c in frame and frame[c].notna().any()}


def run_table(runs: pd.DataFrame, curves: pd.DataFrame) -> pd.DataFrame:
    """One row per run shown: its cell, and its logged steps and metrics as arrays, thinned to MAX_POINTS steps
    (fewer where CURVE_BUDGET asks); past the budget, each cell's first runs only (see the module docstring)."""
    metrics = [*_columns(curves, ACCURACIES | LOSSES | SINGLES)]
    keys = cell_keys(runs).sort_values("run_id")
    steps = np.sort(curves.step.unique())
    per_step, most = len(metrics) + 1, min(MAX_POINTS, len(steps))
    shown = keys
    if len(keys) * (most * per_step + ROW_COST) > CURVE_BUDGET:
        cells = keys.groupby(KEYS, sort=False, dropna=False)
        per_cell = max(1, CURVE_BUDGET // (cells.ngroups * (most * per_step + ROW_COST)))
        shown = keys[cells.cumcount() < per_cell]
    points = int(np.clip((CURVE_BUDGET // max(1, len(shown)) - ROW_COST) // per_step, MIN_POINTS, MAX_POINTS))
    kept = steps[np.unique(np.linspace(0, len(steps) - 1, min(points, len(steps))).astype(int))]
    data = curves[curves.step.isin(kept) & curves.run_id.isin(shown.run_id)].sort_values(["run_id", "step"])
    data = data.assign(**{c: _rounded(data[c]) for c in metrics})
    table = data.groupby("run_id")[["step", *metrics]].agg(lambda s: s.tolist())  # Python numbers: JSON as they are
    return shown.set_index("run_id").join(table, how="inner").reset_index()


def cell_table(runs: pd.DataFrame, neurons: pd.DataFrame) -> pd.DataFrame:
    """phase_cells, with each cell's neurons (last snapshot) as arrays: neurons per IPR bin, periodic ones per frequency."""
    cells = phase_cells(runs)
    if neurons is None or neurons.empty:
        return cells
    data = final_neurons(neurons).merge(cell_keys(runs), on="run_id")
    data = data.assign(ipr_bin=np.clip((data.ipr * IPR_BINS).fillna(-1).astype(int), -1, IPR_BINS - 1))
    ipr = data[data.ipr_bin >= 0].groupby([*KEYS, "ipr_bin"]).size().rename("n").reset_index()
    periodic = data[data.ipr >= PERIODIC_IPR].groupby([*KEYS, "dominant_frequency"]).size().rename("n").reset_index()
    arrays = pd.concat([
        ipr.groupby(KEYS).agg(ipr_bin=("ipr_bin", _listed), ipr_neurons=("n", _listed)),
        periodic.groupby(KEYS).agg(frequency=("dominant_frequency", _listed), frequency_neurons=("n", _listed)),
    ], axis=1)  # fmt: skip
    cells = cells.merge(arrays.reset_index(), on=KEYS, how="left")
    for column in arrays:  # a cell without (periodic) neurons: an empty array, not a missing field
        cells[column] = [v if isinstance(v, list) else [] for v in cells[column]]
    return cells


def _listed(values: pd.Series) -> list:
    """A group's values as a list of Python numbers (they go to the page's JSON as they are)."""
    return values.tolist()


def _phase_scale(cells: pd.DataFrame) -> alt.Scale:
    present = [p for p in PHASES if p in set(cells.phase.dropna())]
    return alt.Scale(domain=present, range=[figures.PHASE_COLORS[p] for p in present])


def phase_view(runs: pd.DataFrame, cells: pd.DataFrame, cell: alt.Parameter) -> alt.Chart:
    """The phase diagram, one panel per facet; a cell's opacity is its seeds' agreement when cells hold several runs."""
    grid = grid_axes(runs)
    cell_size = int(np.clip(240 / max(cells.x.nunique(), cells.y.nunique()), 16, 70))  # small grids drawn larger
    encoding = dict(
        **figures.grid_encodings(cells, grid),
        color=alt.Color("phase:N", scale=_phase_scale(cells), legend=alt.Legend(
            orient="right", labelExpr="replace(datum.label, '_', ' ')")),
        stroke=alt.condition(cell, alt.value("black"), alt.value("white")),
        strokeWidth=alt.condition(cell, alt.value(2.5), alt.value(0.5)),
        tooltip=figures.cell_tooltips(grid),
    )
    if cells.runs.max() > 1:
        encoding["opacity"] = alt.Opacity("agreement:Q", title="seeds in the majority phase",
                                          scale=alt.Scale(domain=[0, 1], range=[0.15, 1]), legend=alt.Legend(format="%"))
    chart = (
        alt.Chart(CELLS, width=cell_size * cells.x.nunique(), height=cell_size * cells.y.nunique())
        .mark_rect()
        .encode(**encoding)
        .add_params(cell)
        .properties(name="phase")
    )
    return figures.faceted(chart, cells, facet_axes(runs)).properties(
        title=alt.Title("Phase diagram", subtitle="click a cell for its runs below; shift-click adds cells"))


def selected_view(runs: pd.DataFrame, cells: pd.DataFrame, cell: alt.Parameter, lines: int = 11) -> alt.Chart:
    """The selected cells in words, one line each: where they are, their phase, runs and mean test accuracy."""
    x, y = (SYMBOLS.get(a, TITLES.get(a, a)) for a in grid_axes(runs))
    text = (f"'{x} = ' + datum.x + ', {y} = ' + datum.y + (datum.facet ? ', ' + datum.facet : '') + ': '"
            " + replace(datum.phase || 'no phase', /_/g, ' ') + ' (' + datum.runs + (datum.runs > 1 ? ' runs' : ' run')"
            " + ', test accuracy ' + format(datum.test_acc, '.2f')"
            " + (datum.shown < datum.runs ? '; curves of ' + datum.shown : '') + ')'")
    return (
        alt.Chart(CELLS, width=360, height=15 * lines, title=alt.Title("Selected cells", anchor="start"))
        .transform_filter(cell)
        .transform_window(line="row_number()")
        .transform_filter(f"datum.line <= {lines}")
        .transform_calculate(text=text, top="(datum.line - 1) * 15")
        .mark_text(align="left", baseline="top", fontSize=12)
        .encode(x=alt.value(0), y=alt.Y("top:Q", scale=None, axis=None), text="text:N")
        .properties(name="selected", view=alt.ViewBackground(stroke=None))
    )


def _curve_view(table: pd.DataFrame, cell: alt.Parameter, names: dict[str, str], title: str, log: bool = False) -> alt.Chart:
    """One panel of the selected runs' curves: the columns `names`, one line per run and column."""
    chart = (
        alt.Chart(RUNS, width=250, height=170, title=title)
        .transform_filter(cell)
        .transform_flatten(["step", *names])
        .transform_fold(list(names), as_=["column", "value"])
        .transform_calculate(metric=f"{json.dumps(names)}[datum.column]")
    )
    if log:  # a loss of exactly 0 (cross-entropy underflow) has no place on a log scale
        chart = chart.transform_filter("datum.value > 0")
    y = alt.Y("value:Q", title=title, axis=alt.Axis(format="~g", grid=not log, labelExpr=DECADES if log else "datum.label"),
              scale=alt.Scale(type="log") if log else
              alt.Scale(domain=[0, 1]) if names.keys() <= ACCURACIES.keys() | {"ipr_mean"} else alt.Scale())
    many = len(names) > 1
    colors = alt.Scale(domain=list(names.values()), range=["#0072B2", "#D55E00", "#56B4E9", "#E69F00"][: len(names)])
    return chart.mark_line(strokeWidth=1.2, **({} if many else {"color": "#009E73"})).encode(
        x=alt.X("step:Q", title="step"),
        y=y,
        detail="run_id:N",
        **({"color": alt.Color("metric:N", title=None, scale=colors, legend=alt.Legend(orient="bottom", columns=2)),
            "strokeDash": alt.StrokeDash("metric:N", title=None, scale=alt.Scale(
                domain=list(names.values()), range=[[1, 0], [1, 0], [4, 2], [4, 2]][: len(names)]))} if many else {}),
        tooltip=[alt.Tooltip("run_id:N", title="run"), "metric:N", "step:Q", alt.Tooltip("value:Q", format=".4g")],
    ).properties(name=f"curves_{next(iter(names))}")


def curve_views(table: pd.DataFrame, curves: pd.DataFrame, cell: alt.Parameter) -> list[alt.Chart]:
    """Accuracies, losses, weight norm and mean IPR of the selected cells' runs shown (`run_table`): the panels
    that have data."""
    panels = [(_columns(curves, ACCURACIES), "accuracy", False), (_columns(curves, LOSSES), "loss", True),
              *(({c: label}, label, False) for c, label in _columns(curves, SINGLES).items())]
    return [_curve_view(table, cell, names, title, log) for names, title, log in panels if names]


def neuron_views(runs: pd.DataFrame, cells: pd.DataFrame, cell: alt.Parameter) -> list[alt.Chart]:
    """The selected cells' neurons: how many per IPR bin, and the periodic ones per dominant frequency, by phase."""
    if "ipr_bin" not in cells:
        return []
    unit = "embedding direction" if "model" in runs and (runs.model == "transformer").all() else "neuron"
    color = alt.Color("phase:N", scale=_phase_scale(cells), legend=None)
    base = alt.Chart(CELLS, width=300, height=170).transform_filter(cell)
    ipr = (
        base.transform_flatten(["ipr_bin", "ipr_neurons"])
        .transform_aggregate(neurons="sum(ipr_neurons)", groupby=["ipr_bin", "phase"])
        .transform_calculate(ipr_from=f"datum.ipr_bin / {IPR_BINS}", ipr_to=f"(datum.ipr_bin + 1) / {IPR_BINS}")
        .mark_bar()
        .encode(
            x=alt.X("ipr_from:Q", bin="binned", title=f"{unit} IPR (last snapshot)", scale=alt.Scale(domain=[0, 1])),
            x2="ipr_to:Q",
            y=alt.Y("neurons:Q", title=f"{unit}s"),
            color=color,
            tooltip=["phase:N", alt.Tooltip("ipr_from:Q", title="IPR from", format=".2f"), "neurons:Q"],
        )
        .properties(title=f"IPR of the selected runs' {unit}s", name="neurons_ipr")
    )
    frequencies = (
        base.transform_flatten(["frequency", "frequency_neurons"])
        .transform_filter("isValid(datum.frequency)")
        .transform_aggregate(neurons="sum(frequency_neurons)", groupby=["frequency", "phase"])
        .transform_calculate(from_="datum.frequency - 0.5", to="datum.frequency + 0.5")
        .mark_bar()
        .encode(
            x=alt.X("from_:Q", bin="binned", title="dominant frequency", axis=alt.Axis(tickMinStep=1)),
            x2="to:Q",
            y=alt.Y("neurons:Q", title=f"{unit}s with IPR >= {PERIODIC_IPR:g}"),
            color=color,
            tooltip=["phase:N", "frequency:Q", "neurons:Q"],
        )
        .properties(title=f"Periodic {unit}s per frequency", name="neurons_frequency")
    )
    return [ipr, frequencies]


def chart(runs: pd.DataFrame, curves: pd.DataFrame, neurons: pd.DataFrame | None = None) -> alt.Chart:
    """The page's views from the tables, as `plots` takes them; the first example run's cell is selected at first."""
    table = run_table(runs, curves)
    cells = cell_table(runs, neurons)
    shown = table.groupby(KEYS, dropna=False).size().rename("shown").reset_index()
    cells = cells.merge(shown, on=KEYS, how="left").fillna({"shown": 0})
    chosen = figures.example_runs(runs)
    first = cell_keys(runs).set_index("run_id").loc[chosen[0]] if chosen else cells.iloc[0]
    cell = alt.selection_point(name="cell", fields=KEYS, value=[{k: first[k] for k in KEYS}], empty=False)
    rows = [[phase_view(runs, cells, cell)], curve_views(table, curves, cell),
            [*neuron_views(runs, cells, cell), selected_view(runs, cells, cell)]]
    independent = {"color": "independent", "opacity": "independent", "strokeDash": "independent"}
    views = alt.vconcat(*[alt.hconcat(*row).resolve_scale(**independent) for row in rows if row]).resolve_scale(**independent)
    views = views.copy(deep=False)  # datasets set, not .properties(datasets=...), which checks each number of them
    views.datasets = {"cells": figures.values(cells)["values"], "runs": figures.values(table)["values"]}
    return views


def page(folder: str | Path) -> alt.Chart:
    """The explore view of a results folder, e.g. to draw in a notebook."""
    res = load(folder)
    return chart(res.runs, res.curves, res.neurons)


def write(folder: str | Path, out: str | Path | None = None) -> Path:
    """Write the explore page of a results folder (default: RESULTS_DIR/explore.html) and return its path."""
    res = load(folder)
    missing = [c for c in ("run_id", "phase", "train_acc", "test_acc", "train_acc_corrupted") if c not in res.runs]
    if missing or res.runs.empty:
        raise ValueError(f"{folder}: runs.parquet " + (f"lacks the columns {', '.join(missing)}" if missing else "holds no runs"))
    path = Path(out) if out is not None else Path(folder) / "explore.html"
    figures.save(chart(res.runs, res.curves, res.neurons), path)
    return path
