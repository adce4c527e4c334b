"""Altair charts from the results DataFrames: phase diagrams, accuracy heatmaps, training curves.

Every function takes DataFrames as read from the Parquet files and returns an
`alt.Chart`, so notebooks can compose them. Data are aggregated in pandas first, to
what each chart draws: one row per heatmap cell, per phase, per histogram bar, or a
bounded number of points for a bounded number of runs, whatever the sweep's size.
They reach Altair as values (`values`), not as DataFrames.
"""

from __future__ import annotations

import base64
import gzip
import io
import json
from pathlib import Path

import altair as alt
import numpy as np
import pandas as pd
from altair.utils.data import to_values

from grokjax.store.cache import cache_dir
from grokjax.store.files import atomic_write
from grokjax.store.results import final_neurons
from grokjax.summary.cells import (
    TITLES,
    Axes,
    cell_extents,
    facet_axes,
    facet_column,
    facet_order,
    grid_axes,
    label,
    log_axis,
    phase_cells,
)
from grokjax.summary.phases import PHASES

# Okabe-Ito colours, distinguishable with the common forms of colour blindness.
PHASE_COLORS = {
    "coexistence": "#0072B2",
    "partial_inversion": "#56B4E9",
    "full_inversion": "#009E73",
    "memorization": "#E69F00",
    "forgetting": "#D55E00",
    "confusion": "#999999",
}
MAX_CURVE_POINTS = 200  # per run and metric
MAX_TICKS = 40  # a heatmap axis with at most this many values has a tick at each (labels that overlap are hidden)
MAX_X_LABELS = 7  # of those, at most this many on the x axis, where labels sit side by side


def values(frame: pd.DataFrame) -> dict:
    """A chart's data as inline values (`altair.utils.data.to_values`, what Altair's default data transformer
    gives but for its row limit). Each chart's data are already aggregated to what it draws, so that bound is
    ours; Altair's limit, a guard against handing it a raw table, is process-wide state that a concurrent save
    may lift for a moment, and a phase diagram past 5,000 cells would reach it."""
    return to_values(frame)


def grid_encodings(cells: pd.DataFrame, axes: tuple[str, str]) -> dict[str, alt.X | alt.Y | alt.X2 | alt.Y2]:
    """The grid axes as quantitative x..x2 and y..y2 (the cells of `cell_extents`), ticks with short labels."""
    x_scale, y_scale = (
        alt.Scale(domain=[float(cells[lo].min()), float(cells[hi].max())], zero=False, nice=False,
                  type="log" if log_axis(cells[axis]) else "linear")
        for axis, lo, hi in ((axes[0], "x0", "x1"), (axes[1], "y0", "y1"))
    )
    x_axis, y_axis = (
        alt.Axis(format=tick_format(cells[axis]), values=thinned(np.unique(cells[axis]), most), labelOverlap="greedy")
        if cells[axis].nunique() <= MAX_TICKS else alt.Axis(format=tick_format(cells[axis]))
        for axis, most in zip(axes, (MAX_X_LABELS, MAX_TICKS))
    )  # ticks at the cells' own values (a lone value's cell spans a unit, whose round ticks would mislabel it)
    return {
        "x": alt.X("x0:Q", title=TITLES.get(axes[0], axes[0]), scale=x_scale, axis=x_axis),
        "x2": alt.X2("x1:Q"),
        "y": alt.Y("y0:Q", title=TITLES.get(axes[1], axes[1]), scale=y_scale, axis=y_axis),
        "y2": alt.Y2("y1:Q"),
    }


def tick_format(values: pd.Series) -> str:
    """A numeric axis's label format: on a linear axis, the fewest decimals (up to 6) at which every value is
    within a tenth of the grid's smallest step of its label (a third of 1.3 is labelled 0.43, not 0.4333; 0.25
    keeps its 0.25); on a log axis, four significant digits."""
    if log_axis(values):
        return ".4~g"
    return f",.{label_decimals(np.unique(values.dropna().to_numpy(float)))}~f"


def label_decimals(v: np.ndarray) -> int:
    """The decimals of `tick_format` for these sorted distinct values."""
    gap = np.diff(v).min() if len(v) > 1 else abs(v[0]) if len(v) else 1.0
    return next((d for d in range(7) if np.abs(np.round(v, d) - v).max(initial=0) <= 0.1 * gap), 6)


def thinned(values: np.ndarray, most: int) -> list[float]:
    """Every k-th value, the first included, k the smallest that leaves at most `most`: side by side, a
    label per cell of a 13-cell axis overlaps, and a browser does not always hide the overlap."""
    step = -(-len(values) // most)
    return [float(v) for v in values[::step]]


def log_ticks(low: float, high: float, most: int = MAX_X_LABELS) -> list[float]:
    """1, 2 and 5 times the powers of ten between low and high, or the powers alone where that is too
    many: Vega-Lite labels a log axis at 1 to 9 times each power, and 1,000 and 2,000 ran together."""
    decades = range(int(np.floor(np.log10(low))), int(np.ceil(np.log10(high))) + 1)
    for mantissas in ((1, 2, 5), (1,)):
        ticks = [float(m * 10**d) for d in decades for m in mantissas if low <= m * 10**d <= high]
        if len(ticks) <= most:
            break
    return ticks or [low, high]


def cell_tooltips(grid: tuple[str, str]) -> list[alt.Tooltip]:
    """What hovering a phase-diagram cell shows: its phase, seed agreement, point, config and accuracies."""
    return [
        alt.Tooltip("phase:N"),
        alt.Tooltip("agreement:Q", title="seeds in the majority phase", format=".0%"),
        alt.Tooltip("runs:Q", title="runs in cell"),
        *_grid_tooltips(grid),
        alt.Tooltip("facet:N", title="config"),
        alt.Tooltip("train_acc:Q", title="train accuracy", format=".3f"),
        alt.Tooltip("test_acc:Q", title="test accuracy", format=".3f"),
        alt.Tooltip("train_acc_corrupted:Q", title="corrupted train accuracy", format=".3f"),
    ]


def _grid_tooltips(axes: tuple[str, str]) -> list[alt.Tooltip]:
    return [alt.Tooltip(f"{a}:Q", title=TITLES.get(a, a), format=".3g") for a in axes]


def faceted(chart: alt.Chart, frame: pd.DataFrame, axes: list[str], columns: int = 4) -> alt.Chart:
    if not axes:
        return chart
    return chart.facet(
        facet=alt.Facet("facet:N", title=None, sort=facet_order(frame, axes), header=alt.Header(labelFontSize=13)),
        columns=columns,
    )


def phase_diagram(runs: pd.DataFrame, cell_size: int = 16, axes: Axes = None) -> alt.Chart:
    """Heatmap of phases over data fraction (x) and corruption fraction (y), or the `axes` chosen, one facet per
    other swept axis; each cell reaches half-way to its neighbours (`cell_extents`), so refined cells are smaller."""
    cells, grid = phase_cells(runs, axes), grid_axes(runs, axes)
    present = [p for p in PHASES if p in set(cells.phase.dropna())]
    chart = (
        alt.Chart(values(cells), width=cell_size * cells.x.nunique(), height=cell_size * cells.y.nunique())
        .mark_rect(stroke="white", strokeWidth=0.5)
        .encode(
            **grid_encodings(cells, grid),
            color=alt.Color(
                "phase:N",
                title="phase",
                scale=alt.Scale(domain=present, range=[PHASE_COLORS[p] for p in present]),
                sort=present,
                legend=alt.Legend(labelExpr="replace(datum.label, '_', ' ')", orient="right"),
            ),
            tooltip=cell_tooltips(grid),
        )
    )
    return faceted(chart, cells, facet_axes(runs, axes)).properties(title="Phase diagram (Doshi et al., Table 2)")


def accuracy_heatmaps(runs: pd.DataFrame, cell_size: int = 14, axes: Axes = None) -> alt.Chart:
    """Mean train and test accuracy over α and ξ (the paper's Appendix L), or the `axes` chosen, colour 0 to 1."""
    axes, grid = facet_axes(runs, axes), grid_axes(runs, axes)
    cells = runs.groupby([*axes, *grid], sort=True).agg(
        train=("train_acc", "mean"), test=("test_acc", "mean"), first_run=("run_id", "min")
    ).reset_index()
    cells = cell_extents(cells, grid, axes)
    bounds = ["x0", "x1", "y0", "y1"]
    long = cells.melt(id_vars=[*axes, *grid, *bounds], value_vars=["train", "test"], var_name="set",
                      value_name="accuracy")
    long = facet_column(long, axes)
    chart = (
        alt.Chart(values(long), width=cell_size * long[grid[0]].nunique(), height=cell_size * long[grid[1]].nunique())
        .mark_rect()
        .encode(
            **grid_encodings(long, grid),
            color=alt.Color("accuracy:Q", title="accuracy", scale=alt.Scale(domain=[0, 1], scheme="viridis")),
            tooltip=[
                alt.Tooltip("set:N"),
                alt.Tooltip("accuracy:Q", format=".3f"),
                *_grid_tooltips(grid),
                alt.Tooltip("facet:N", title="config"),
            ],
        )
    )
    return chart.facet(
        row=alt.Row("set:N", title=None, sort=["train", "test"], header=alt.Header(labelFontSize=13, labelExpr="datum.value + ' accuracy'")),
        column=alt.Column("facet:N", title=None, sort=facet_order(long, axes), header=alt.Header(labelFontSize=13)),
    ).properties(title="Train and test accuracy (Doshi et al., Appendix L)")


def example_runs(runs: pd.DataFrame) -> list[int]:
    """One run per phase present, in the paper's order: the run nearest the phase's median test accuracy."""
    chosen = []
    for phase in PHASES:
        members = runs[runs.phase == phase]
        if len(members):
            target = members.test_acc.median()
            chosen.append(int(members.loc[(members.test_acc - target).abs().idxmin(), "run_id"]))
    return chosen


def _run_title(row: pd.Series) -> str:
    phase = str(row.phase).replace("_", " ") if pd.notna(row.phase) else "no phase"
    return f"{phase}: α = {label(row.data_fraction)}, ξ = {label(row.corruption_fraction)}, wd = {label(row.weight_decay)} (run {row.run_id})"


def _chosen_curves(curves: pd.DataFrame, runs: pd.DataFrame,
                   run_ids: list[int] | None) -> tuple[list[int], dict[int, str], pd.DataFrame]:
    """(the runs chosen, default one per phase; their panel titles; their curves at MAX_CURVE_POINTS steps at most,
    titled in column `run`)."""
    run_ids = example_runs(runs) if run_ids is None else list(run_ids)
    chosen = runs[runs.run_id.isin(run_ids)].set_index("run_id").loc[run_ids].reset_index()
    titles = {int(r.run_id): _run_title(r) for r in chosen.itertuples()}
    data = curves[curves.run_id.isin(run_ids)]
    steps = np.sort(data.step.unique())
    if len(steps) > MAX_CURVE_POINTS:
        data = data[data.step.isin(steps[np.linspace(0, len(steps) - 1, MAX_CURVE_POINTS).astype(int)])]
    return run_ids, titles, data.assign(run=data.run_id.map(titles))


def training_curves(curves: pd.DataFrame, runs: pd.DataFrame, run_ids: list[int] | None = None, log_steps: bool = False) -> alt.Chart:
    """Accuracies and losses against step for chosen runs (default: one per phase, as in Figure 1)."""
    run_ids, titles, data = _chosen_curves(curves, runs, run_ids)
    accuracy_names = {
        "train_acc": "train", "test_acc": "test",
        "train_acc_clean": "train, clean", "train_acc_corrupted": "train, corrupted",
    }  # fmt: skip
    acc = data.melt(id_vars=["run", "step"], value_vars=list(accuracy_names), var_name="metric", value_name="value")
    acc["metric"] = acc.metric.map(accuracy_names)
    loss = data.melt(id_vars=["run", "step"], value_vars=["train_loss", "test_loss"], var_name="metric", value_name="value")
    loss["metric"] = loss.metric.str.replace("_loss", "")
    loss = loss[loss.value > 0]  # a loss of exactly 0 (cross-entropy underflow) has no place on a log scale
    x = alt.X("step:Q", title="step")
    if log_steps:
        steps = data.step.to_numpy()
        first, last = float(steps[steps > 0].min()), float(steps.max())
        x = alt.X("step:Q", title="step", scale=alt.Scale(type="log", domain=[first, last], nice=False),
                  axis=alt.Axis(values=log_ticks(first, last)))
    colors = alt.Scale(
        domain=["train", "test", "train, clean", "train, corrupted"],
        range=["#0072B2", "#D55E00", "#56B4E9", "#E69F00"],
    )
    dashes = alt.StrokeDash("metric:N", scale=alt.Scale(domain=["train", "test", "train, clean", "train, corrupted"],
                                                        range=[[1, 0], [1, 0], [4, 2], [4, 2]]), legend=None)
    order = [titles[r] for r in run_ids]
    top = (
        alt.Chart(values(acc), width=260, height=180)
        .mark_line()
        .encode(x=x, y=alt.Y("value:Q", title="accuracy", scale=alt.Scale(domain=[0, 1])),
                color=alt.Color("metric:N", title="accuracy", scale=colors), strokeDash=dashes,
                tooltip=["run:N", "step:Q", "metric:N", alt.Tooltip("value:Q", format=".3f")])
        .facet(column=alt.Column("run:N", title=None, sort=order, header=alt.Header(labelFontSize=11, labelLimit=300)))
    )
    bottom = (
        alt.Chart(values(loss), width=260, height=140)
        .mark_line()
        .encode(x=x, y=alt.Y("value:Q", title="loss", scale=alt.Scale(type="log")),
                color=alt.Color("metric:N", title="loss", scale=alt.Scale(domain=["train", "test"], range=["#0072B2", "#D55E00"])),
                tooltip=["run:N", "step:Q", "metric:N", alt.Tooltip("value:Q", format=".3g")])
        .facet(column=alt.Column("run:N", title=None, sort=order, header=alt.Header(labelFontSize=11, labelLimit=300)))
    )
    panels = [top, bottom]
    ipr = data[["run", "step", "ipr_mean"]].dropna() if "ipr_mean" in data else pd.DataFrame()
    if len(ipr):  # the paper's Figure 2(a): mean IPR rises as the network groks
        panels.append(
            alt.Chart(values(ipr), width=260, height=110)
            .mark_line(color="#009E73")
            .encode(x=x, y=alt.Y("ipr_mean:Q", title="mean IPR", scale=alt.Scale(domain=[0, 1])),
                    tooltip=["run:N", "step:Q", alt.Tooltip("ipr_mean:Q", format=".3f")])
            .facet(column=alt.Column("run:N", title=None, sort=order, header=alt.Header(labelFontSize=11, labelLimit=300)))
        )
    return alt.vconcat(*panels).resolve_scale(color="independent").properties(title="Training curves (Doshi et al., Figures 1, 2a)")


def ipr_histograms(neurons: pd.DataFrame, runs: pd.DataFrame, bins: int = 20) -> alt.Chart:
    """Share of neurons per IPR bin, one panel per phase (the paper's Figures 4 and 7): bimodal in coexistence.

    The transformer's units are its embedding directions (`analysis.neuron_weights`)."""
    data = final_neurons(neurons).merge(runs[["run_id", "phase"]], on="run_id").dropna(subset=["phase", "ipr"])
    unit = "embedding direction" if "model" in runs and (runs.model == "transformer").all() else "neuron"
    edges = np.linspace(0.0, 1.0, bins + 1)
    data = data.assign(bin=np.clip(np.digitize(data.ipr, edges) - 1, 0, bins - 1))
    counts = data.groupby(["phase", "bin"]).size().rename("neurons").reset_index()
    counts["share"] = counts.neurons / counts.groupby("phase").neurons.transform("sum")
    counts["ipr_from"], counts["ipr_to"] = edges[counts.bin], edges[counts.bin + 1]
    runs_per_phase = data.groupby("phase").run_id.nunique()
    counts["phase_label"] = counts.phase.map(
        lambda ph: f"{ph.replace('_', ' ')} ({runs_per_phase[ph]} run{'s' if runs_per_phase[ph] != 1 else ''})"
    )
    present = [p for p in PHASES if p in set(counts.phase)]
    labels = [counts.loc[counts.phase == p, "phase_label"].iloc[0] for p in present]
    return (
        alt.Chart(values(counts), width=200, height=140)
        .mark_rect()
        .encode(
            x=alt.X("ipr_from:Q", bin="binned", title=f"{unit} IPR", scale=alt.Scale(domain=[0, 1])),
            x2="ipr_to:Q",
            y=alt.Y("share:Q", title=f"share of {unit}s", axis=alt.Axis(format="%")),
            color=alt.Color("phase:N", scale=alt.Scale(domain=present, range=[PHASE_COLORS[p] for p in present]), legend=None),
            tooltip=["phase:N", alt.Tooltip("ipr_from:Q", title="IPR from", format=".2f"),
                     alt.Tooltip("ipr_to:Q", title="to", format=".2f"), "neurons:Q", alt.Tooltip("share:Q", format=".1%")],
        )
        .facet(column=alt.Column("phase_label:N", title=None, sort=labels, header=alt.Header(labelFontSize=12)))
        .properties(title=f"Per-{unit.replace(' ', '-')} IPR by phase (Doshi et al., Figures 4 and 7)")
    )


def phase_counts(runs: pd.DataFrame, axes: Axes = None) -> alt.Chart:
    """Number of runs in each phase, per facet (the swept axes but the heatmap's, `axes` as chosen)."""
    axes = facet_axes(runs, axes)
    counts = facet_column(runs, axes).groupby([*axes, "facet", "phase"]).size().rename("runs").reset_index()
    present = [p for p in PHASES if p in set(counts.phase)]
    chart = (
        alt.Chart(values(counts), width=220, height=20 * len(present))
        .mark_bar()
        .encode(
            y=alt.Y("phase:N", sort=present, title=None, axis=alt.Axis(labelExpr="replace(datum.label, '_', ' ')")),
            x=alt.X("runs:Q", title="runs"),
            color=alt.Color("phase:N", scale=alt.Scale(domain=present, range=[PHASE_COLORS[p] for p in present]), legend=None),
            tooltip=["facet:N", "phase:N", "runs:Q"],
        )
    )
    return faceted(chart, counts, axes)


def frequency_counts(neurons: pd.DataFrame, runs: pd.DataFrame, run_ids: list[int] | None = None) -> alt.Chart:
    """Periodic neurons (IPR >= PERIODIC_IPR) per dominant frequency, one panel per run (as the PAIR explorable)."""
    from grokjax.core.analysis import PERIODIC_IPR

    run_ids = example_runs(runs) if run_ids is None else list(run_ids)
    chosen = runs[runs.run_id.isin(run_ids)].set_index("run_id").loc[run_ids].reset_index()
    titles = {int(r.run_id): _run_title(r) for r in chosen.itertuples()}
    neurons = final_neurons(neurons)
    periodic = neurons[neurons.run_id.isin(run_ids) & (neurons.ipr >= PERIODIC_IPR)]
    counts = periodic.groupby(["run_id", "dominant_frequency"]).size().rename("neurons").reset_index()
    counts["run"] = counts.run_id.map(titles)
    return (
        alt.Chart(values(counts), width=260, height=140)
        .mark_bar(color=PHASE_COLORS["full_inversion"])
        .encode(
            x=alt.X("dominant_frequency:O", title="dominant frequency", axis=alt.Axis(labelAngle=0, labelOverlap="greedy")),
            y=alt.Y("neurons:Q", title=f"neurons with IPR >= {PERIODIC_IPR:g}"),
            tooltip=["run:N", "dominant_frequency:O", "neurons:Q"],
        )
        .facet(column=alt.Column("run:N", title=None, sort=[titles[r] for r in run_ids if r in titles],
                                 header=alt.Header(labelFontSize=11, labelLimit=300)))
        .properties(title="Periodic neurons per frequency (PAIR explorable)")
    )


def pruning_curves(curves: pd.DataFrame, max_runs: int = 6) -> alt.Chart:
    """Accuracies against the fraction of neurons pruned, lowest or highest IPR first (the paper's Figure 6)."""
    run_ids = sorted(curves.run_id.unique())[:max_runs]
    data = curves[curves.run_id.isin(run_ids)]
    names = {"test_acc": "test", "train_acc_clean": "train, clean", "train_acc_corrupted": "train, corrupted"}
    long = data.melt(id_vars=["run_id", "order", "fraction_pruned"], value_vars=list(names), var_name="metric", value_name="accuracy")
    long["metric"] = long.metric.map(names)
    long["panel"] = long.order.map({"low": "lowest IPR first", "high": "highest IPR first"}) + ", run " + long.run_id.astype(str)
    panels = [f"{o}, run {r}" for r in run_ids for o in ("lowest IPR first", "highest IPR first") if f"{o}, run {r}" in set(long.panel)]
    return (
        alt.Chart(values(long.dropna(subset=["accuracy"])), width=220, height=160)
        .mark_line()
        .encode(
            x=alt.X("fraction_pruned:Q", title="fraction of neurons pruned", axis=alt.Axis(format="%")),
            y=alt.Y("accuracy:Q", title="accuracy", scale=alt.Scale(domain=[0, 1])),
            color=alt.Color("metric:N", title="accuracy", scale=alt.Scale(domain=list(names.values()), range=["#D55E00", "#56B4E9", "#E69F00"])),
            tooltip=["panel:N", alt.Tooltip("fraction_pruned:Q", format=".0%"), "metric:N", alt.Tooltip("accuracy:Q", format=".3f")],
        )
        .facet(facet=alt.Facet("panel:N", title=None, sort=panels, header=alt.Header(labelFontSize=12)), columns=2)
        .properties(title="Pruning neurons in IPR order (Doshi et al., Figure 6)")
    )


MAX_STAGE_GROUPS = 12  # stage_times draws at most this many groups of runs


def stage_groups(runs: pd.DataFrame, axes: Axes = None) -> list[str]:
    """The columns stage_times groups runs by: the first of the phase diagram's cells (x, y), its facets and y, its
    facets, y alone, whose swept columns make at most MAX_STAGE_GROUPS groups (else all runs, one group)."""
    x, y = grid_axes(runs, axes)
    facets = facet_axes(runs, axes)
    for candidate in ([x, y], [*facets, y], facets, [y]):
        swept = [c for c in candidate if runs[c].nunique() > 1]
        if swept and runs.groupby(swept).ngroups <= MAX_STAGE_GROUPS:
            return swept
    return []


def stage_times(runs: pd.DataFrame, by: list[str] | None = None, axes: Axes = None) -> alt.Chart:
    """When each stage of grokking begins across seeds: per group of runs (default `stage_groups`), the share not yet
    at the stage against step, Kaplan-Meier, runs that never reach it censored at their last step (docs/measures.md)."""
    from grokjax.config.fields import STAGES
    from grokjax.summary.stages import survival

    by = stage_groups(runs, axes) if by is None else list(by)
    curves = survival(runs, by)
    names = {s: s.replace("_", " ") for s in STAGES}
    curves["stage"] = curves.stage.map(names)
    curves["group"] = curves[by].apply(lambda r: ", ".join(f"{TITLES.get(c, c)} = {label(v)}" for c, v in r.items()),
                                       axis=1) if by else "all runs"
    order = list(dict.fromkeys(curves.group))
    return (
        alt.Chart(values(curves), width=230, height=170)
        .mark_line(interpolate="step-after")
        .encode(
            x=alt.X("step:Q", title="step"),
            y=alt.Y("surviving:Q", title="share of runs not yet there", scale=alt.Scale(domain=[0, 1])),
            color=alt.Color("group:N", title=None, sort=order, legend=alt.Legend(orient="bottom", columns=3, labelLimit=300)),
            tooltip=["group:N", "stage:N", "step:Q", alt.Tooltip("surviving:Q", format=".2f"), "at_risk:Q",
                     alt.Tooltip("reached:Q", title="runs reaching it"), alt.Tooltip("runs:Q", title="runs")],
        )
        .facet(column=alt.Column("stage:N", title=None, sort=list(names.values()), header=alt.Header(labelFontSize=12)))
        .properties(title="When each stage begins, across seeds (Kaplan-Meier; runs that never reach a stage are censored)")
    )


def progress_curves(curves: pd.DataFrame, runs: pd.DataFrame, run_ids: list[int] | None = None) -> alt.Chart:
    """Nanda et al.'s progress measures against step for chosen runs (default: one per phase): train, test, restricted
    and excluded loss (log scale), and the embedding's Fourier Gini coefficient."""
    run_ids, titles, data = _chosen_curves(curves, runs, run_ids)
    names = {"train_loss": "train", "test_loss": "test", "restricted_loss": "restricted", "excluded_loss": "excluded"}
    loss = data.melt(id_vars=["run", "step"], value_vars=list(names), var_name="metric", value_name="value")
    loss["metric"] = loss.metric.map(names)
    loss = loss[loss.value > 0]
    order, header = [titles[r] for r in run_ids], alt.Header(labelFontSize=11, labelLimit=300)
    top = (
        alt.Chart(values(loss), width=260, height=180)
        .mark_line()
        .encode(x=alt.X("step:Q", title="step"), y=alt.Y("value:Q", title="loss", scale=alt.Scale(type="log")),
                color=alt.Color("metric:N", title="loss", scale=alt.Scale(domain=list(names.values()),
                                range=["#0072B2", "#D55E00", "#009E73", "#CC79A7"])),
                tooltip=["run:N", "step:Q", "metric:N", alt.Tooltip("value:Q", format=".3g")])
        .facet(column=alt.Column("run:N", title=None, sort=order, header=header))
    )
    gini = (
        alt.Chart(values(data[["run", "step", "fourier_gini"]].dropna()), width=260, height=110)
        .mark_line(color="#E69F00")
        .encode(x=alt.X("step:Q", title="step"), y=alt.Y("fourier_gini:Q", title="Fourier Gini of the embedding"),
                tooltip=["run:N", "step:Q", alt.Tooltip("fourier_gini:Q", format=".3f")])
        .facet(column=alt.Column("run:N", title=None, sort=order, header=header))
    )
    return alt.vconcat(top, gini).resolve_scale(color="independent").properties(
        title="Progress measures (Nanda et al. 2023): restricted loss falls before test loss")


MAX_METHOD_FACETS = 8  # method_curves: panels side by side for the other swept fields, at most
MAX_METHOD_LINES = 12  # method_curves: settings drawn, at most


def method_groups(runs: pd.DataFrame) -> tuple[list[str], list[str]]:
    """(the method fields the runs vary, the other fields they vary but seeds): method_curves' lines and panels."""
    from grokjax.config.fields import METHOD_COLUMNS, config_columns

    unswept = {"run_id", "seed", "data_seed", "n_train", "n_corrupt", "n_test", *METHOD_COLUMNS}
    methods = [c for c in METHOD_COLUMNS if c in runs and runs[c].nunique() > 1]
    others = [c for c in config_columns() if c not in unswept and c in runs and runs[c].nunique() > 1]
    if others and runs.groupby(others).ngroups > MAX_METHOD_FACETS:
        others = []
    return methods, others


def method_curves(curves: pd.DataFrame, runs: pd.DataFrame) -> alt.Chart:
    """Training methods side by side (docs/methods.md): per setting of the method fields the runs vary (a line each)
    and of their other swept fields (a panel each), the median over seeds of test accuracy, softmax collapse (Prieto
    et al. 2025; cross-entropy and StableMax runs) and train loss against step."""
    methods, others = method_groups(runs)
    method = runs[methods].apply(lambda r: ", ".join(f"{TITLES.get(c, c)} = {label(v)}" for c, v in r.items()), axis=1)
    panel = (runs[others].apply(lambda r: ", ".join(f"{TITLES.get(c, c)} = {label(v)}" for c, v in r.items()), axis=1)
             if others else pd.Series("all runs", index=runs.index))
    named = runs[["run_id"]].assign(method=method.to_numpy(), panel=panel.to_numpy())
    order = runs.sort_values(methods + others).index
    lines, panels = list(dict.fromkeys(named.method[order])), list(dict.fromkeys(named.panel[order]))
    if len(lines) > MAX_METHOD_LINES:  # evenly chosen settings, so the chart's size is bounded whatever the sweep's
        lines = [lines[i] for i in np.linspace(0, len(lines) - 1, MAX_METHOD_LINES).astype(int)]
        named = named[named.method.isin(lines)]
    measures = [m for m in ("test_acc", "softmax_collapse", "train_loss") if m in curves and curves[m].notna().any()]
    steps = np.sort(curves.step.unique())
    if len(steps) > MAX_CURVE_POINTS:
        curves = curves[curves.step.isin(steps[np.linspace(0, len(steps) - 1, MAX_CURVE_POINTS).astype(int)])]
    data = curves[["run_id", "step", *measures]].merge(named, on="run_id")
    median = data.groupby(["method", "panel", "step"], sort=False)[measures].median().reset_index()
    axes = {"test_acc": alt.Y("test_acc:Q", title="test accuracy", scale=alt.Scale(domain=[0, 1])),
            "softmax_collapse": alt.Y("softmax_collapse:Q", title="softmax collapse", scale=alt.Scale(domain=[0, 1])),
            "train_loss": alt.Y("train_loss:Q", title="train loss", scale=alt.Scale(type="log"))}
    rows = []
    for m in measures:
        frame = median[["method", "panel", "step", m]].dropna()
        frame = frame[frame[m] > 0] if m == "train_loss" else frame  # a loss of exactly 0 has no place on a log scale
        rows.append(
            alt.Chart(values(frame), width=260, height=150)
            .mark_line()
            .encode(x=alt.X("step:Q", title="step"), y=axes[m],
                    color=alt.Color("method:N", title=None, sort=lines,
                                    legend=alt.Legend(orient="bottom", columns=2, labelLimit=400)),
                    tooltip=["panel:N", "method:N", "step:Q", alt.Tooltip(f"{m}:Q", format=".3g")])
            .facet(column=alt.Column("panel:N", title=None, sort=panels, header=alt.Header(labelFontSize=11)))
        )
    return alt.vconcat(*rows).properties(title="Training methods compared: the median over seeds at every logged step")


def save(chart: alt.Chart, path: Path) -> None:
    """Write a chart as self-contained HTML (JavaScript inlined, `html_page`) or PNG, atomically."""
    if path.suffix == ".html":
        atomic_write(path, lambda tmp: tmp.write_text(html_page(chart), encoding="utf-8"))
    else:
        atomic_write(path, lambda tmp: chart.save(str(tmp), format=path.suffix.lstrip("."), scale_factor=2))


def spec(chart: alt.TopLevelMixin) -> dict:
    """The chart's Vega-Lite spec. Data the chart holds at its top (`datasets`, as the explore page does) are
    handed to Altair by reference, as it hands its own datasets: walked value by value, a page's curves would
    take longer to convert than to draw."""
    datasets = chart.datasets
    if datasets is alt.Undefined:
        return chart.to_dict()
    bare = chart.copy(deep=False)
    bare.datasets = alt.Undefined
    return bare.to_dict(context={"datasets": dict(datasets)})


def html_page(chart: alt.Chart) -> str:
    """The page Altair writes with `chart.save(..., inline=True)`, which opens offline: the chart and the
    JavaScript of Vega, Vega-Lite and vega-embed (`javascript_bundle`). Data the chart holds at its top (the
    explore page's) travel packed (`packed`) and the browser unpacks them before drawing, which Altair's page
    cannot do: they are mostly numbers of a few digits, which gzip packs far smaller than their JSON."""
    from altair.utils.html import INLINE_HTML_TEMPLATE

    drawn = spec(chart)
    datasets = None if chart.datasets is alt.Undefined else drawn.pop("datasets")
    page = INLINE_HTML_TEMPLATE.render(
        spec=json.dumps(drawn), embed_options=json.dumps({"mode": "vega-lite"}), mode="vega-lite",
        vega_version=alt.VEGA_VERSION, vegalite_version=alt.VEGALITE_VERSION, vegaembed_version=alt.VEGAEMBED_VERSION,
        output_div="vis", fullhtml=True, requirejs=False, vegaembed_script=javascript_bundle(),
    )
    if not datasets:
        return page
    embed = "vegaEmbed('#vis', spec, embedOpt)"
    assert page.count(embed) == 1, "Altair's page template changed: the packed datasets need a new place"
    return page.replace(embed, UNPACK.format(packed=packed(datasets)) + "vegaEmbed('#vis', {...spec, datasets}, embedOpt))")


def packed(datasets: dict) -> str:
    """The datasets' JSON, gzipped (with no time stamp, so that the same data make the same page) and in base64."""
    raw = json.dumps(datasets, separators=(",", ":")).encode()
    return base64.b64encode(gzip.compress(raw, compresslevel=6, mtime=0)).decode("ascii")


# The browser's own gzip (DecompressionStream) unpacks `packed`; then the chart is drawn as Altair's page draws it.
UNPACK = """new Response(new Blob([Uint8Array.from(atob("{packed}"), (c) => c.charCodeAt(0))]).stream()
    .pipeThrough(new DecompressionStream("gzip"))).json().then((datasets) => """


def javascript_bundle() -> str:
    """vl-convert's bundle of Vega, Vega-Lite and vega-embed (0.9 MB), read from the cache folder.

    Building it takes vl-convert about 1.6 s, once per process; it depends on nothing but the
    versions, so it is built once per machine and kept (`grokjax.store.cache`).
    """
    import vl_convert as vlc
    from altair.utils._importers import vl_version_for_vl_convert

    version = vl_version_for_vl_convert()
    folder = cache_dir()
    path = None if folder is None else folder / "charts" / f"vl-convert-{vlc.__version__}-{version}.js"
    if path is not None and path.exists():
        return path.read_text(encoding="utf-8")
    bundle = vlc.javascript_bundle(vl_version=version)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, lambda tmp: tmp.write_text(bundle, encoding="utf-8"))
    return bundle


def warm_up() -> None:
    """Start vl-convert's JavaScript engine and read (or build) the bundle that HTML files inline, while a
    sweep's runs train rather than after. A failure here is left for `write_all` to report."""
    try:
        javascript_bundle()
        alt.Chart(pd.DataFrame({"x": [0]})).mark_point().encode(x="x:Q").save(io.BytesIO(), format="png")
    except Exception:  # noqa: BLE001 (only a head start: write_all meets the same error and says it)
        pass
