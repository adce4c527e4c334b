"""Every chart of a results folder, drawn into it: what `grokjax sweep`, `refine` and `plot` write.

Beside `grokjax.plots` (the figures) and `grokjax.explore` (the page of linked views), which
it draws from, so that neither needs the other.
"""

from __future__ import annotations

import concurrent.futures
from pathlib import Path

import pandas as pd

from grokjax import explore, plots

CHARTS = {
    "phase_diagram": lambda runs, curves: plots.phase_diagram(runs),
    "accuracy": lambda runs, curves: plots.accuracy_heatmaps(runs),
    "curves": lambda runs, curves: plots.training_curves(curves, runs, log_steps=False),
}


def write_all(folder: str | Path, runs: pd.DataFrame, curves: pd.DataFrame, neurons: pd.DataFrame | None = None) -> list[Path]:
    """phase_diagram, accuracy, curves (and ipr, frequencies, where there are neurons), each as .html and .png,
    and explore.html (`grokjax.explore`).

    The files are rendered concurrently: vl-convert works outside Python's lock, so the
    eleven files take about the time of the slowest few.
    """
    folder = Path(folder)
    charts = dict(CHARTS)
    if neurons is not None and len(neurons):
        charts["ipr"] = lambda runs, curves: plots.ipr_histograms(neurons, runs)
        charts["frequencies"] = lambda runs, curves: plots.frequency_counts(neurons, runs)
    jobs = [(make(runs, curves), folder / f"{name}.{kind}") for name, make in charts.items() for kind in ("html", "png")]
    jobs.append((explore.chart(runs, curves, neurons), folder / "explore.html"))
    with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(lambda job: plots.save(*job), jobs))
    return [path for _, path in jobs]
