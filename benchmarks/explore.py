"""The explore page's size, build time and load time in headless Chromium: `python -m benchmarks.explore [RESULTS_DIR]`.

Measured for each results folder given and for two synthetic sweeps: the shape of
sweeps/doshi_fig3_wd.toml (4 weight decays x 19 corruption x 17 data fractions = 1,292
runs, 100 logged steps, 128 neurons each at p = 97), and that grid three times as fine on
both fractions with five seeds (58,140 runs). The synthetic tables hold random
numbers in the right columns: they size the page and are no results.
Load time: from navigation start to the views drawn (performance.now() once vega-embed's
view has run), median of three; click: from a synthesized click on a cell to its curves drawn.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from benchmarks import browser
from grokjax.charts import explore, figures
from grokjax.store.results import load
from grokjax.summary.phases import PHASES

CLICK = """async (view) => {
  const cells = items(view, /^phase.*_marks$/), start = performance.now();
  await click(view, cells[Math.floor(cells.length / 2)]);
  return {click_ms: performance.now() - start, points: items(view, /^curves_train_acc.*_marks$/).length};
}"""


def synthetic(seed: int = 0, seeds: int = 1, logs: int = 100, width: int = 128,
              resolution: int = 1) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Random runs, curves and neurons tables with the columns of the Figure 3 sweep: its grid of 17 data x 19
    corruption fractions x 4 weight decays, each fraction axis `resolution` times as fine, `seeds` runs per
    point, `logs` logged steps and `width` neurons per run."""
    rng = np.random.default_rng(seed)
    alphas, xis = np.linspace(0.1, 0.9, 17 * resolution).round(12), np.linspace(0, 0.9, 19 * resolution).round(12)
    wds = [0.0, 5.0, 15.0, 20.0]
    grid = pd.MultiIndex.from_product([wds, xis, alphas, range(seeds)],
                                      names=["weight_decay", "corruption_fraction", "data_fraction", "seed"])
    runs = grid.to_frame(index=False)
    if seeds == 1:
        runs = runs.drop(columns="seed")
    runs.insert(0, "run_id", np.arange(len(runs)))
    runs["phase"] = rng.choice(PHASES, len(runs))
    runs["train_acc"], runs["test_acc"], runs["train_acc_corrupted"] = rng.random((3, len(runs)))
    steps = np.linspace(0, 20_000, logs + 1)[1:].astype(int)
    curves = pd.DataFrame({"run_id": np.repeat(runs.run_id, len(steps)), "step": np.tile(steps, len(runs))})
    for column in ("train_acc", "test_acc", "train_acc_clean", "train_acc_corrupted", "train_loss", "test_loss",
                   "weight_norm", "ipr_mean"):
        curves[column] = rng.random(len(curves), dtype=np.float32)
    neurons = pd.DataFrame({"run_id": np.repeat(runs.run_id, width), "step": steps[-1], "neuron": np.tile(np.arange(width), len(runs)),
                            "ipr": rng.random(len(runs) * width), "dominant_frequency": rng.integers(1, 49, len(runs) * width)})
    return runs, curves, neurons


def measure(name: str, runs: pd.DataFrame, curves: pd.DataFrame, neurons: pd.DataFrame, folder: Path) -> str:
    start = time.perf_counter()
    chart = explore.chart(runs, curves, neurons)
    path = folder / f"{name}.html"
    figures.save(chart, path)
    built = time.perf_counter() - start
    answers = [browser.probe(path, CLICK) for _ in range(3)]
    load_ms = statistics.median(a["loaded_ms"] for a in answers)
    click_ms = statistics.median(a["value"]["click_ms"] for a in answers)
    return (f"{name}: {len(runs)} runs, {curves.step.nunique()} logged steps: {path.stat().st_size / 1e6:.1f} MB, "
            f"built in {built:.1f} s, drawn {load_ms / 1000:.2f} s after navigation start, a click redrawn in "
            f"{click_ms:.0f} ms")


def main(argv: list[str]) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        for folder in argv:
            res = load(folder)
            print(measure(Path(folder).name, res.runs, res.curves, res.neurons, Path(tmp)), flush=True)
        print(measure("synthetic_1292", *synthetic(), Path(tmp)), flush=True)
        # Figure 3(a) at three times its resolution with five seeds: what a GPU sweep of it writes.
        print(measure("synthetic_58140", *synthetic(seeds=5, resolution=3), Path(tmp)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
