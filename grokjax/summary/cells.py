"""The cells of a phase diagram: which columns are its axes and facets, and each cell's runs and rectangle.

Pure pandas and numpy, so that what reads cells without drawing them (the terminal report,
`grokjax refine`'s boundaries) never loads Altair; `grokjax.charts.figures` draws them.
"""

from __future__ import annotations

import bisect

import numpy as np
import pandas as pd

from grokjax.config.fields import OPEN_COLUMNS, config_columns, open_keys
from grokjax.summary.phases import PHASES

# The heatmap's x and y: the paper's α and ξ; where a sweep does not vary them (the PAIR
# sparse-parity sweep), the first of the other candidates that it does vary.
X_CANDIDATES = ("data_fraction", "train_size")
Y_CANDIDATES = ("corruption_fraction", "weight_decay", "dropout")
SEED_AXES = ("seed", "data_seed")
FACET_CANDIDATES = (
    "data_fraction", "corruption_fraction",  # facets where [plot] chose other axes
    "weight_decay", "dropout", "batch_size", "norm", "learning_rate", "width", "depth", "p", "activation",
    "task", "model", "loss", "optimizer", "regularization", "momentum", "embed_size", "heads", "init_scale",
    "train_size", "steps", "schedule", "warmup_steps",
    "orthograd", "loss_precision", "grokfast_filter", "grokfast_window", "grokfast_lambda", "grokfast_alpha",
)  # fmt: skip
TITLES = {
    "data_fraction": "data fraction α",
    "corruption_fraction": "corruption fraction ξ",
    "weight_decay": "weight decay",
    "learning_rate": "learning rate",
    "train_size": "train size",
    "batch_size": "batch size",
    "grokfast_lambda": "Grokfast λ",
    "grokfast_alpha": "Grokfast α",
    "loss_precision": "loss precision",
}


def swept(runs: pd.DataFrame, column: str) -> bool:
    return column in runs and runs[column].nunique() > 1


Axes = tuple[str, str] | None  # the heatmap's (x, y) as chosen ([plot], `grokjax plot --x --y`); "" or None: default


def grid_axes(runs: pd.DataFrame, axes: Axes = None) -> tuple[str, str]:
    """(x, y) columns of the heatmaps: those chosen, else α and ξ unless the sweep holds them fixed."""
    x, y = axes or ("", "")
    x = x or next((c for c in X_CANDIDATES if swept(runs, c) and c != y), X_CANDIDATES[0])
    y = y or next((c for c in Y_CANDIDATES if swept(runs, c) and c != x), Y_CANDIDATES[0])
    return x, y


def chosen_axes(meta: dict) -> Axes:
    """The axes a results folder's config chose ([plot] x and y), or None."""
    plot = meta.get("config", {}).get("plot", {})
    return (plot.get("x", ""), plot.get("y", "")) if plot.get("x") or plot.get("y") else None


def axes_problem(runs: pd.DataFrame, axes: Axes) -> str | None:
    """Why `axes` cannot be a phase diagram's of these runs ("plot.x = ...; allowed: ..."), or None if they can: each
    chosen axis is a numeric config column (one the grid as narrowed holds fixed draws a single row or column)."""
    own = open_keys(*(runs[c].unique() for c in OPEN_COLUMNS if c in runs))
    settings = [c for c in [*config_columns(), *own] if c not in (*SEED_AXES, "run_id", "n_train", "n_corrupt", "n_test")]
    numeric = [c for c in settings if c in runs and pd.api.types.is_numeric_dtype(runs[c])
               and not pd.api.types.is_bool_dtype(runs[c])]
    for key, column in zip(("x", "y"), axes or ("", "")):
        if column and column not in numeric:
            varied = [c for c in numeric if swept(runs, c)]
            return (f"plot.{key} = \"{column}\"; allowed: a numeric config column, such as those the sweep varies: "
                    + (", ".join(varied) or "none (the sweep varies no number but seeds)"))
    if axes and axes[0] and axes[0] == axes[1]:
        return f"plot.x and plot.y are both \"{axes[0]}\"; allowed: two different columns"
    return None


def facet_axes(runs: pd.DataFrame, axes: Axes = None) -> list[str]:
    """Swept axes other than the heatmap's and seeds: the columns that take more than one value, the keys of open
    tasks, models and optimizers (`expression`) among them."""
    own = open_keys(*(runs[c].unique() for c in OPEN_COLUMNS if c in runs))
    grid = grid_axes(runs, axes)
    return [c for c in [*FACET_CANDIDATES, *own] if c not in grid and swept(runs, c)]


def label(value: object) -> str:
    return f"{value:g}" if isinstance(value, (float, np.floating)) else str(value)


def facet_column(frame: pd.DataFrame, axes: list[str]) -> pd.DataFrame:
    """Add a `facet` column such as "weight decay = 5" (one facet per combination)."""
    frame = frame.copy()
    if axes:
        frame["facet"] = [
            ", ".join(f"{TITLES.get(a, a)} = {label(v)}" for a, v in zip(axes, row))
            for row in frame[axes].itertuples(index=False)
        ]
    else:
        frame["facet"] = ""
    return frame


def facet_order(frame: pd.DataFrame, axes: list[str]) -> list[str]:
    return frame.sort_values(axes).facet.drop_duplicates().tolist() if axes else [""]


def _half_way(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Bounds half-way to the neighbours of each of the sorted distinct `values`; an end mirrors its inner
    side, and a lone value gets half a unit each way."""
    if len(values) == 1:
        return values - 0.5, values + 0.5
    mids = (values[:-1] + values[1:]) / 2
    lo = np.concatenate([[2 * values[0] - mids[0]], mids])
    hi = np.concatenate([mids, [2 * values[-1] - mids[-1]]])
    return lo, hi


def log_axis(values: pd.Series) -> bool:
    """Whether a heatmap axis is drawn on a log scale: positive values spanning a factor of 30 or more
    (the PAIR sweep's weight decays, 0.01 to 1), which a linear axis would crowd at one end."""
    v = values.astype(float)
    return bool((v > 0).all() and v.max() >= 30 * v.min())


def cell_extents(cells: pd.DataFrame, grid: tuple[str, str], axes: list[str]) -> pd.DataFrame:
    """Each cell's rectangle, x0..x1 by y0..y1: around its point, overlapping no other, smaller where refined.

    A sweep's grid cells reach half-way to their neighbours in their row (x) and column (y). A cell
    that `grokjax refine` added (a later first run_id, at the midpoint of two earlier cells of its row
    or column) takes the part of its two parents' rectangles half-way to each: along that line from
    half-way to one parent to half-way to the other (the parents shrink to meet it), across it the
    span the parents share (where they span differently, a gap is left rather than an overlap).
    Cells come back larger first, so smaller ones are drawn on top.
    """
    cells = cells.reset_index(drop=True)
    logs = [log_axis(cells[a]) for a in grid]  # a log-spaced axis is tiled, and drawn, in log10
    spaced = cells.assign(**{a: np.log10(cells[a].astype(float)) for a, log in zip(grid, logs) if log})
    bounds = np.full((len(cells), 4), np.nan)  # x0, x1, y0, y1
    for _, facet in spaced.groupby(axes, sort=False, dropna=False) if axes else [((), spaced)]:
        _tile(facet, grid, bounds)
    for k, log in enumerate(logs):
        if log:
            bounds[:, 2 * k: 2 * k + 2] = 10 ** bounds[:, 2 * k: 2 * k + 2]
    cells[["x0", "x1", "y0", "y1"]] = bounds.round(12)
    area = (cells.x1 - cells.x0) * (cells.y1 - cells.y0)
    return cells.iloc[np.argsort(-area.to_numpy(), kind="stable")].reset_index(drop=True)


def _tile(facet: pd.DataFrame, grid: tuple[str, str], bounds: np.ndarray) -> None:
    """`cell_extents` for one facet's cells (in `bounds`, by their row in the cells)."""
    facet = facet.sort_values("first_run", kind="stable")
    pos = dict(zip(facet.index, zip(facet[grid[0]].astype(float).tolist(), facet[grid[1]].astype(float).tolist())))
    integer = [pd.api.types.is_integer_dtype(facet[a]) for a in grid]

    # per axis k, the earlier cells on each line along it: their sorted positions, and the cell at each position
    lines: tuple[dict[float, list[float]], ...] = ({}, {})
    at: tuple[dict[tuple[float, float], int], ...] = ({}, {})

    def parents(i: int, k: int) -> tuple[int, int] | None:
        """The nearest earlier cells on either side of cell i along axis k, on its line, if i is their midpoint."""
        across, here = pos[i][1 - k], pos[i][k]
        line = lines[k].get(across, [])
        n = bisect.bisect_left(line, here)
        if n == 0 or n == len(line):  # (no earlier cell is at i's own place: a facet's cells are distinct)
            return None
        a, b = at[k][across, line[n - 1]], at[k][across, line[n]]
        off = abs(2 * here - pos[a][k] - pos[b][k])
        return (a, b) if off <= (1 if integer[k] else 1e-9 * (1 + abs(pos[a][k]) + abs(pos[b][k]))) else None

    order, split = list(facet.index), {}
    for i in order:
        found = parents(i, 0) or parents(i, 1)
        if found:
            split[i] = found
        for k in (0, 1):
            bisect.insort(lines[k].setdefault(pos[i][1 - k], []), pos[i][k])
            at[k][pos[i][1 - k], pos[i][k]] = i
    first = [i for i in order if i not in split]
    for k in (0, 1):  # the grid's cells: half-way to their neighbours on their line, or on the axis
        ladder = np.array(sorted({pos[i][k] for i in first}))
        ladder_lo, ladder_hi = _half_way(ladder)
        lines: dict[float, list[int]] = {}
        for i in first:
            lines.setdefault(pos[i][1 - k], []).append(i)
        for line in lines.values():
            line.sort(key=lambda j: pos[j][k])
            values = np.array([pos[j][k] for j in line])
            lo, hi = _half_way(values) if len(line) > 1 else (ladder_lo[ladder == values], ladder_hi[ladder == values])
            bounds[line, 2 * k], bounds[line, 2 * k + 1] = lo, hi
    for i in order:  # the added cells, in the order they were trained
        if i not in split:
            continue
        a, b = split[i]
        k = 0 if pos[a][1] == pos[i][1] else 1
        bounds[i, 2 * k] = bounds[a, 2 * k + 1] = (pos[a][k] + pos[i][k]) / 2
        bounds[i, 2 * k + 1] = bounds[b, 2 * k] = (pos[i][k] + pos[b][k]) / 2
        bounds[i, 2 * (1 - k)] = max(bounds[a, 2 * (1 - k)], bounds[b, 2 * (1 - k)])
        bounds[i, 2 * (1 - k) + 1] = min(bounds[a, 2 * (1 - k) + 1], bounds[b, 2 * (1 - k) + 1])


def phase_cells(runs: pd.DataFrame, chosen: Axes = None) -> pd.DataFrame:
    """One row per (facet, x, y): majority phase over seeds, its agreement, mean accuracies, its rectangle."""
    axes, grid = facet_axes(runs, chosen), grid_axes(runs, chosen)
    keys = [*axes, *grid]
    grouped = runs.groupby(keys, sort=True, dropna=False)
    cells = grouped.agg(
        runs=("run_id", "size"),
        first_run=("run_id", "min"),
        train_acc=("train_acc", "mean"),
        test_acc=("test_acc", "mean"),
        train_acc_corrupted=("train_acc_corrupted", "mean"),
    ).reset_index()
    # the majority phase as majority_phase finds it (ties to the earlier phase), for all cells at once
    counts = runs.dropna(subset=["phase"]).groupby([*keys, "phase"], dropna=False).size().rename("seeds").reset_index()
    counts = counts.assign(order=counts.phase.map(PHASES.index)).sort_values(["seeds", "order"], ascending=[False, True])
    cells = cells.merge(counts.drop_duplicates(keys)[[*keys, "phase", "seeds"]], on=keys, how="left")
    cells["agreement"] = cells.pop("seeds").fillna(0) / cells.runs
    cells["x"], cells["y"] = cells[grid[0]].map(label), cells[grid[1]].map(label)
    return facet_column(cell_extents(cells, grid, axes), axes)
