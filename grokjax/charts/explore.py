"""`grokjax explore RESULTS_DIR`: one offline page of linked views, to look at any cell of a sweep.

The static charts show one run per phase; here a click on a cell of the phase diagram
shows its training curves and its neurons. The data are aggregated in pandas so that the
page grows with the grid's cells, not with its runs: one row per cell (its runs' phases,
seed agreement, mean accuracies, its neurons' IPR histogram and its periodic neurons'
dominant frequencies, and its summary curves, as arrays) and one row per run shown.

A cell's summary curves are its run's curves, or for a cell of several runs their mean
and quartiles (a line in a band). The curves share CURVE_BUDGET numbers (steps and
metrics; each row counted as ROW_COST more): every cell's summary first, at as many of the
logged steps as fit (at most MAX_POINTS, at least MIN_POINTS, even past the budget); then,
from what is left, each cell of several runs shows the curves of its first k runs (the
lowest run_ids, so its first seeds), k as many as fit (none where none fits; the selected
cell then says "curves of k runs"). The page carries its tables packed with gzip
(`figures.html_page`), and the browser flattens the arrays of the selected cells only.
"""

from __future__ import annotations

import html
import json
from dataclasses import dataclass
from pathlib import Path

import altair as alt
import numpy as np
import pandas as pd

from grokjax.charts import figures
from grokjax.config.fields import STAGES
from grokjax.core.analysis import PERIODIC_IPR
from grokjax.store.results import final_neurons, load
from grokjax.summary import stages
from grokjax.summary.cells import TITLES, Axes, chosen_axes, facet_axes, facet_column, grid_axes, label, phase_cells
from grokjax.summary.phases import PHASES

MAX_POINTS = 50  # logged steps kept per curve
MIN_POINTS = 10  # ... and the fewest, where the budget asks for fewer
CURVE_BUDGET = 3_000_000  # numbers in the curves (steps and metrics), each row of them counted as ROW_COST more
ROW_COST = 10  # a row's labels, which gzip packs into about as many bytes as ten numbers
IPR_BINS = 20
KEYS = ["x", "y", "facet"]  # a cell: its labels on the grid's axes and its facet
ACCURACIES = {
    "train_acc": "train", "test_acc": "test", "train_acc_clean": "train, clean", "train_acc_corrupted": "train, corrupted",
}  # fmt: skip
LOSSES = {"train_loss": "train", "test_loss": "test"}
PROGRESS = {"restricted_loss": "restricted", "test_loss": "test", "excluded_loss": "excluded"}  # Nanda et al.'s
SINGLES = {"weight_norm": "weight norm", "ipr_mean": "mean IPR", "fourier_gini": "Fourier Gini"}
SYMBOLS = {"data_fraction": "α", "corruption_fraction": "ξ"}
# The views name their data, and the page holds each table once, at its top (`chart`): Altair copies a chart's
# data each time it composes views, which for the runs' curves would take longer than drawing them.
CELLS, RUNS = alt.NamedData(name="cells"), alt.NamedData(name="runs")
STAGE_COLORS = ["#E69F00", "#009E73", "#CC79A7", "#D55E00"]
DECADES = "abs(log(datum.value) / LN10 - round(log(datum.value) / LN10)) < 1e-6 ? datum.label : ''"  # log axis labels


def cell_keys(runs: pd.DataFrame, axes: Axes = None) -> pd.DataFrame:
    """run_id and the keys (x, y, facet) of the run's cell, as phase_cells writes them."""
    x, y = grid_axes(runs, axes)
    keyed = facet_column(runs, facet_axes(runs, axes))
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


def layout(cells: pd.DataFrame, metrics: int, steps: int) -> tuple[int, int, int]:
    """How the curves share CURVE_BUDGET (see the module docstring): the logged steps each cell's summary keeps,
    how many runs' curves each cell of several runs shows, and the logged steps those keep."""
    most, several = min(MAX_POINTS, steps), int((cells.runs > 1).sum())
    per_step = len(cells) * (1 + metrics) + several * 2 * metrics  # a step and the means; quartiles where several
    summary = int(np.clip((CURVE_BUDGET - ROW_COST * len(cells)) // per_step, min(MIN_POINTS, most), most))
    left = CURVE_BUDGET - ROW_COST * len(cells) - summary * per_step
    if not several or left < several * (min(MIN_POINTS, most) * (1 + metrics) + ROW_COST):
        return summary, 0, most
    per_cell = left // (several * (most * (1 + metrics) + ROW_COST))
    if per_cell:
        return summary, int(per_cell), most
    return summary, 1, int((left // several - ROW_COST) // (1 + metrics))


def _thinned(steps: np.ndarray, points: int) -> np.ndarray:
    """`points` of the logged steps, evenly spaced among them, the first and last included."""
    return steps[np.unique(np.linspace(0, len(steps) - 1, min(points, len(steps))).astype(int))]


def _arrays(frame: pd.DataFrame, by: list[str], columns: list[str]) -> pd.DataFrame:
    """One row per group of `by` (the frame sorted by it), each column as the list of its values in the frame's
    order, as Python numbers (they go to the page's JSON as they are). Split by hand: pandas' groupby would call
    Python once per group and column, slow for pages of thousands of cells."""
    if frame.empty:
        return pd.DataFrame(columns=[*by, *columns])
    starts = np.flatnonzero(frame[by].ne(frame[by].shift()).any(axis=1).to_numpy()).tolist()
    table = frame[by].iloc[starts].reset_index(drop=True)
    for column in columns:
        values = frame[column].tolist()
        table[column] = [values[a:b] for a, b in zip(starts, [*starts[1:], len(values)])]
    return table


def summary_table(keys: pd.DataFrame, cells: pd.DataFrame, curves: pd.DataFrame, metrics: list[str],
                  points: int) -> pd.DataFrame:
    """Each cell's curves at `points` logged steps: for a cell of one run, that run's; for a cell of several, the
    runs' mean and quartiles: columns `{metric}_mean`, `_lo` and `_hi` (the quartiles empty for a cell of one run)."""
    steps = _thinned(np.sort(curves.step.unique()), points)
    data = curves[curves.step.isin(steps)].merge(keys, on="run_id")
    if data.empty or not metrics:
        return pd.DataFrame(columns=[*KEYS, "step"])
    grouped = data.groupby([*KEYS, "step"], sort=True, dropna=False)[metrics]
    stats = {"_mean": grouped.mean(), "_lo": grouped.quantile(0.25), "_hi": grouped.quantile(0.75)}
    table = pd.concat({f"{m}{s}": pd.Series(_rounded(f[m]), index=f.index) for s, f in stats.items() for m in metrics},
                      axis=1).reset_index()
    table = _arrays(table, KEYS, ["step", *table.columns[len(KEYS) + 1:]])
    single = table[KEYS].merge(cells[[*KEYS, "runs"]], on=KEYS, how="left").runs.to_numpy() == 1
    for column in (c for c in table if c.endswith(("_lo", "_hi"))):
        table[column] = [[] if one else v for one, v in zip(single, table[column])]  # a run's curves have no spread
    return table


def run_table(keys: pd.DataFrame, cells: pd.DataFrame, curves: pd.DataFrame, metrics: list[str], per_cell: int,
              points: int) -> pd.DataFrame:
    """One row per run shown: its cell, and its logged steps and metrics as arrays at `points` steps; the first
    `per_cell` runs (lowest run_ids) of each cell of several runs."""
    several = cells.loc[cells.runs > 1, KEYS]
    keys = keys.merge(several, on=KEYS).sort_values("run_id")
    shown = keys[keys.groupby(KEYS, sort=False, dropna=False).cumcount() < per_cell]
    steps = _thinned(np.sort(curves.step.unique()), points)
    data = curves[curves.step.isin(steps) & curves.run_id.isin(shown.run_id)].sort_values(["run_id", "step"])
    data = data.assign(**{c: _rounded(data[c]) for c in metrics})
    return shown.merge(_arrays(data, ["run_id"], ["step", *metrics]), on="run_id")


def cell_table(runs: pd.DataFrame, keys: pd.DataFrame, neurons: pd.DataFrame | None, axes: Axes = None) -> pd.DataFrame:
    """phase_cells, with the phases of each cell's runs in words, and its neurons (last snapshot) as arrays:
    neurons per IPR bin, periodic ones per frequency. `keys`: the runs' `cell_keys`."""
    cells = phase_cells(runs, axes).merge(phase_shares(runs, keys), on=KEYS, how="left")
    if neurons is None or neurons.empty:
        return cells
    data = final_neurons(neurons).merge(keys, on="run_id")
    data = data.assign(ipr_bin=np.clip((data.ipr * IPR_BINS).fillna(-1).astype(int), -1, IPR_BINS - 1))
    ipr = data[data.ipr_bin >= 0].groupby([*KEYS, "ipr_bin"]).size().rename("n").reset_index()
    periodic = data[data.ipr >= PERIODIC_IPR].groupby([*KEYS, "dominant_frequency"]).size().rename("n").reset_index()
    ipr = _arrays(ipr.rename(columns={"n": "ipr_neurons"}), KEYS, ["ipr_bin", "ipr_neurons"])
    periodic = periodic.rename(columns={"dominant_frequency": "frequency", "n": "frequency_neurons"})
    periodic = _arrays(periodic, KEYS, ["frequency", "frequency_neurons"])
    return _listed(cells.merge(ipr, on=KEYS, how="left").merge(periodic, on=KEYS, how="left"),
                   ["ipr_bin", "ipr_neurons", "frequency", "frequency_neurons"])


def _listed(cells: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """The cells with an empty array where a column of arrays has none (a cell without periodic neurons, or
    without logged steps): the page flattens these columns, and a missing one would stop it."""
    return cells.assign(**{c: [v if isinstance(v, list) else [] for v in cells[c]] for c in columns})


def phase_shares(runs: pd.DataFrame, keys: pd.DataFrame) -> pd.DataFrame:
    """Per cell, how many of its runs are in each phase, in words ("3 coexistence, 2 memorization"), most first."""
    keyed = runs[["run_id", "phase"]].merge(keys, on="run_id")
    counts = keyed.groupby([*KEYS, "phase"], dropna=False).size().rename("n").reset_index()
    counts = counts.assign(order=counts.phase.map(lambda p: PHASES.index(p) if isinstance(p, str) and p in PHASES else len(PHASES)))
    counts = counts.sort_values([*KEYS, "n", "order"], ascending=[True] * len(KEYS) + [False, True])
    words = counts.n.astype(str) + " " + counts.phase.fillna("no phase").str.replace("_", " ")
    return counts.assign(phases=words).groupby(KEYS, sort=False, dropna=False).phases.agg(", ".join).reset_index()


def _phase_scale(cells: pd.DataFrame) -> alt.Scale:
    present = [p for p in PHASES if p in set(cells.phase.dropna())]
    return alt.Scale(domain=present, range=[figures.PHASE_COLORS[p] for p in present])


def phase_view(runs: pd.DataFrame, cells: pd.DataFrame, cell: alt.Parameter, axes: Axes = None) -> alt.Chart:
    """The phase diagram, one panel per facet; a cell's opacity is its seeds' agreement when cells hold several runs."""
    grid = grid_axes(runs, axes)
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
    return figures.faceted(chart, cells, facet_axes(runs, axes)).properties(
        title=alt.Title("Phase diagram", subtitle="click a cell for its runs below; shift-click adds cells"))


def selected_view(runs: pd.DataFrame, cells: pd.DataFrame, cell: alt.Parameter, lines: int = 11,
                  axes: Axes = None) -> alt.Chart:
    """The selected cells in words, one line each: where they are (as the axes label them), their runs' phases,
    mean test accuracy, and how many runs' curves the page holds where not all."""
    grid = grid_axes(runs, axes)
    x, y = (SYMBOLS.get(a, TITLES.get(a, a)) for a in grid)
    where = [f"format(datum['{a}'], '{figures.tick_format(cells[a])}')" if pd.api.types.is_numeric_dtype(cells[a])
             else f"datum['{a}']" for a in grid]
    text = (f"'{x} = ' + {where[0]} + ', {y} = ' + {where[1]} + (datum.facet ? ', ' + datum.facet : '') + ': '"
            " + (datum.runs > 1 ? datum.runs + ' runs, ' + datum.phases : replace(datum.phase || 'no phase', /_/g, ' '))"
            " + ' (test accuracy ' + format(datum.test_acc, '.2f')"
            " + (datum.runs > 1 && datum.shown < datum.runs ? '; curves of ' + datum.shown + ' runs' : '') + ')'")
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


def _curve_view(cells: pd.DataFrame, table: pd.DataFrame, cell: alt.Parameter, names: dict[str, str], title: str,
                log: bool = False) -> alt.Chart:
    """One panel of the selected cells' curves for the columns `names`: each cell's summary (a line; its quartiles
    as a band where the cell holds several runs) and the curves of its runs shown (thin lines)."""
    first = next(iter(names))
    # a loss of exactly 0 (cross-entropy underflow) has no place on a log scale
    drawn, spread = ("datum.value > 0", "datum.lo > 0") if log else ("isValid(datum.value)", "isValid(datum.lo)")
    scale = (alt.Scale(type="log") if log else
             alt.Scale(domain=[0, 1]) if names.keys() <= ACCURACIES.keys() | {"ipr_mean"} else alt.Scale())
    y = alt.Y("value:Q", title=title, scale=scale,
              axis=alt.Axis(format="~g", grid=not log, labelExpr=DECADES if log else "datum.label"))
    many = len(names) > 1
    colors = alt.Scale(domain=list(names.values()), range=["#0072B2", "#D55E00", "#56B4E9", "#E69F00"][: len(names)])
    style = ({"color": alt.Color("metric:N", title=None, scale=colors, legend=alt.Legend(orient="bottom", columns=2)),
              "strokeDash": alt.StrokeDash("metric:N", title=None, scale=alt.Scale(
                  domain=list(names.values()), range=[[1, 0], [1, 0], [4, 2], [4, 2]][: len(names)]))} if many else {})
    plain = {} if many else {"color": "#009E73"}
    x, tip = alt.X("step:Q", title="step"), [alt.Tooltip("metric:N"), "step:Q", alt.Tooltip("value:Q", format=".4g")]
    summary = (
        alt.Chart(CELLS).transform_filter(cell)
        .transform_flatten(["step", *(f"{c}_{s}" for c in names for s in ("mean", "lo", "hi"))])
        .transform_fold([f"{c}_mean" for c in names], as_=["column", "value"])
        .transform_calculate(column="replace(datum.column, /_mean$/, '')")
        .transform_calculate(metric=f"{json.dumps(names)}[datum.column]", lo="datum[datum.column + '_lo']",
                             hi="datum[datum.column + '_hi']", run_id="datum.runs > 1 ? null : datum.first_run",
                             cell_of="datum.x + ', ' + datum.y + ', ' + datum.facet")
    )
    layers = [summary.mark_line(strokeWidth=1.2, **plain).encode(
        x=x, y=y, detail="cell_of:N", **style,
        tooltip=[alt.Tooltip("runs:Q", title="runs (mean of)"), alt.Tooltip("run_id:N", title="run"), *tip],
    ).transform_filter(drawn).properties(name=f"curves_{first}")]
    if (cells.runs > 1).any():
        band = summary.transform_filter(spread)  # lo and hi are both there or both missing
        layers.append(band.mark_area(opacity=0.2, **plain).encode(
            x=x, y=alt.Y("lo:Q", scale=scale, title=title), y2="hi:Q", detail="cell_of:N",
            **({"fill": alt.Fill("metric:N", scale=colors, legend=None)} if many else {}),  # the lines' legend alone
        ).properties(name=f"band_{first}"))
    if len(table):
        runs = (alt.Chart(RUNS).transform_filter(cell).transform_flatten(["step", *names])
                .transform_fold(list(names), as_=["column", "value"])
                .transform_calculate(metric=f"{json.dumps(names)}[datum.column]")
                .transform_filter(drawn))
        layers.append(runs.mark_line(strokeWidth=0.7, opacity=0.5, **plain).encode(
            x=x, y=y, detail="run_id:N", **style, tooltip=[alt.Tooltip("run_id:N", title="run"), *tip],
        ).properties(name=f"runs_{first}"))
    return alt.layer(*layers, width=250, height=170, title=title)


def curve_views(cells: pd.DataFrame, table: pd.DataFrame, curves: pd.DataFrame, cell: alt.Parameter) -> list[alt.Chart]:
    """Accuracies, losses, weight norm and mean IPR of the selected cells (`summary_table`) and of their runs
    shown (`run_table`): the panels that have data."""
    panels = [(_columns(curves, ACCURACIES), "accuracy", False), (_columns(curves, LOSSES), "loss", True),
              *([(_columns(curves, PROGRESS), "progress measures", True)] if "restricted_loss" in curves else []),
              *(({c: label}, label, False) for c, label in _columns(curves, SINGLES).items())]
    return [_curve_view(cells, table, cell, names, title, log) for names, title, log in panels if names]


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


def survival_table(runs: pd.DataFrame, keys: pd.DataFrame) -> pd.DataFrame:
    """Per cell, each stage's Kaplan-Meier curve over its runs (`stages.survival`) as arrays: km_{stage}_step and
    km_{stage} (the share of its runs not yet at the stage)."""
    curves = stages.survival(runs.merge(keys, on="run_id"), KEYS)
    curves = curves.assign(surviving=_rounded(curves.surviving))
    table = curves[KEYS].drop_duplicates().reset_index(drop=True)
    for stage in STAGES:
        arrays = _arrays(curves[curves.stage == stage], KEYS, ["step", "surviving"])
        table = table.merge(arrays.rename(columns={"step": f"km_{stage}_step", "surviving": f"km_{stage}"}), on=KEYS,
                            how="left")
    return table


def survival_view(cells: pd.DataFrame, cell: alt.Parameter) -> list[alt.Chart]:
    """The selected cells' time to each stage: the share of their runs not yet there against step (Kaplan-Meier),
    one line per stage and cell."""
    if f"km_{STAGES[0]}" not in cells:
        return []
    names = [s.replace("_", " ") for s in STAGES]
    layers = [
        alt.Chart(CELLS).transform_filter(cell)
        .transform_flatten([f"km_{stage}_step", f"km_{stage}"], as_=["step", "surviving"])
        .transform_calculate(stage=f"'{name}'", cell_of="datum.x + ', ' + datum.y + ', ' + datum.facet")
        .mark_line(interpolate="step-after")
        .encode(x=alt.X("step:Q", title="step"),
                y=alt.Y("surviving:Q", title="share of runs not yet there", scale=alt.Scale(domain=[0, 1])),
                color=alt.Color("stage:N", title=None, scale=alt.Scale(domain=names, range=STAGE_COLORS),
                                legend=alt.Legend(orient="bottom", columns=2)),
                detail="cell_of:N", tooltip=["stage:N", "step:Q", alt.Tooltip("surviving:Q", format=".2f"), "runs:Q"])
        .properties(name=f"survival_{stage}")
        for stage, name in zip(STAGES, names)
    ]
    return [alt.layer(*layers, width=300, height=170, title="Time to each stage (Kaplan-Meier)")]


def chart(runs: pd.DataFrame, curves: pd.DataFrame, neurons: pd.DataFrame | None = None, axes: Axes = None) -> alt.Chart:
    """The page's views from the tables, as `plots` takes them, over the heatmap `axes` (default: α and ξ); the first
    example run's cell is selected at first."""
    metrics, keys = [*_columns(curves, ACCURACIES | LOSSES | PROGRESS | SINGLES)], cell_keys(runs, axes)
    cells = cell_table(runs, keys, neurons, axes)
    if "stage_generalization" in runs:
        cells = cells.merge(survival_table(runs, keys), on=KEYS, how="left")
        cells = _listed(cells, [f"km_{s}{part}" for s in STAGES for part in ("_step", "")])
    points, per_cell, run_points = layout(cells, len(metrics), curves.step.nunique())
    table = run_table(keys, cells, curves, metrics, per_cell, run_points)
    shown = table.groupby(KEYS, dropna=False).size().rename("shown").reset_index()
    summary = summary_table(keys, cells, curves, metrics, points)
    cells = _listed(cells.merge(summary, on=KEYS, how="left"), [c for c in summary if c not in KEYS])
    cells = cells.merge(shown, on=KEYS, how="left").fillna({"shown": 0}).astype({"shown": int})
    chosen = figures.example_runs(runs)
    first = keys.set_index("run_id").loc[chosen[0]] if chosen else cells.iloc[0]
    cell = alt.selection_point(name="cell", fields=KEYS, value=[{k: first[k] for k in KEYS}], empty=False)
    rows = [[phase_view(runs, cells, cell, axes)], curve_views(cells, table, curves, cell),
            [*neuron_views(runs, cells, cell), *survival_view(cells, cell), selected_view(runs, cells, cell, axes=axes)]]
    independent = {"color": "independent", "opacity": "independent", "strokeDash": "independent"}
    views = alt.vconcat(*[alt.hconcat(*row).resolve_scale(**independent) for row in rows if row]).resolve_scale(**independent)
    views = views.copy(deep=False)  # datasets set, not .properties(datasets=...), which checks each number of them
    views.datasets = {"cells": figures.values(cells)["values"], "runs": figures.values(table)["values"]}
    return views


@dataclass(frozen=True)
class Page:
    """The explore page of a results folder in a notebook: drawn as `grokjax explore` writes it (in a frame, its
    tables packed), not through Altair's renderer, which would check every number and write them unpacked into
    the notebook. `chart` is the Altair chart, to compose or to save."""

    chart: alt.Chart
    height: int = 1400  # pixels of the frame; the page scrolls within it

    def _repr_html_(self) -> str:
        page = html.escape(figures.html_page(self.chart))
        return f'<iframe srcdoc="{page}" style="width: 100%; height: {self.height}px; border: none"></iframe>'


def page(folder: str | Path, axes: Axes = None) -> Page:
    """The explore view of a results folder, to draw in a notebook, over `axes` (default: its [plot], else α and ξ)."""
    res = load(folder)
    return Page(chart(res.runs, res.curves, res.neurons, axes or chosen_axes(res.meta)))


def write(folder: str | Path, out: str | Path | None = None, axes: Axes = None) -> Path:
    """Write the explore page of a results folder (default: RESULTS_DIR/explore.html) over `axes` (default: its
    [plot], else α and ξ) and return its path."""
    res = load(folder)
    missing = [c for c in ("run_id", "phase", "train_acc", "test_acc", "train_acc_corrupted") if c not in res.runs]
    if missing or res.runs.empty:
        raise ValueError(f"{folder}: runs.parquet " + (f"lacks the columns {', '.join(missing)}" if missing else "holds no runs"))
    path = Path(out) if out is not None else Path(folder) / "explore.html"
    figures.save(chart(res.runs, res.curves, res.neurons, axes or chosen_axes(res.meta)), path)
    return path
