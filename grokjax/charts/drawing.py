"""Every chart of a results folder, drawn into it: what `grokjax sweep`, `refine` and `plot` write.

Beside `grokjax.charts.figures` (the figures) and `grokjax.charts.explore` (the page of linked views), which
it draws from, so that neither needs the other.
"""

from __future__ import annotations

import concurrent.futures
from pathlib import Path

import pandas as pd

from grokjax.charts import explore, figures
from grokjax.summary.cells import Axes

CHARTS = {
    "phase_diagram": lambda runs, curves, axes: figures.phase_diagram(runs, axes=axes),
    "accuracy": lambda runs, curves, axes: figures.accuracy_heatmaps(runs, axes=axes),
    "curves": lambda runs, curves, axes: figures.training_curves(curves, runs, log_steps=False),
}


def chart_names(runs: pd.DataFrame, neurons: pd.DataFrame | None) -> list[str]:
    """The charts a results folder gets: those of `CHARTS`; stages and progress where the runs have progress measures;
    methods where they vary a training method's field; ipr and frequencies where there are neurons."""
    progress = ["stages", "progress"] if "stage_generalization" in runs else []
    methods = ["methods"] if figures.method_groups(runs)[0] else []
    return [*CHARTS, *progress, *methods, *(["ipr", "frequencies"] if neurons is not None and len(neurons) else [])]


def write_all(folder: str | Path, runs: pd.DataFrame, curves: pd.DataFrame, neurons: pd.DataFrame | None = None,
              axes: Axes = None) -> list[Path]:
    """The charts of `chart_names`, each as .html and .png, and explore.html (`grokjax.charts.explore`); the heatmaps
    over `axes` (default: α and ξ).

    The files are rendered concurrently: vl-convert works outside Python's lock, so the
    files take about the time of the slowest few.
    """
    folder = Path(folder)
    charts = {name: made for name, made in {
        **CHARTS,
        "stages": lambda runs, curves, axes: figures.stage_times(runs, axes=axes),
        "progress": lambda runs, curves, axes: figures.progress_curves(curves, runs),
        "methods": lambda runs, curves, axes: figures.method_curves(curves, runs),
        "ipr": lambda runs, curves, axes: figures.ipr_histograms(neurons, runs),
        "frequencies": lambda runs, curves, axes: figures.frequency_counts(neurons, runs),
    }.items() if name in chart_names(runs, neurons)}
    jobs = [(make(runs, curves, axes), folder / f"{name}.{kind}") for name, make in charts.items()
            for kind in ("html", "png")]
    jobs.append((explore.chart(runs, curves, neurons, axes), folder / "explore.html"))
    with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(lambda job: figures.save(*job), jobs))
    return [path for _, path in jobs]
