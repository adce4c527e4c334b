"""Where neighbouring cells of a phase diagram disagree, and the runs that place the boundary better there.

A cell is a run-group: the runs (seeds) at one point (x, y) of the heatmap (`cells.grid_axes`:
data and corruption fraction, normally) and one value of each other swept axis (a facet).
After refinement the cells are a grid's points plus midpoints, not a full grid, so neighbours
are defined on lines: two cells are neighbours when they share the facet and y (x) and no cell
of that row (column) lies between them. A pair disagrees when their majority phases differ, or
when the seeds of either agree less than `MIN_AGREEMENT` (its phase is uncertain).

Each disagreeing pair proposes its midpoint, with the seeds of the endpoint that has more runs,
and twice as many (the same seeds shifted past every seed in use) where a side is uncertain.
A midpoint that would train exactly what an endpoint trains (the split counts no longer change
at this resolution) is not proposed. Pure pandas: the proposal follows from the runs alone, so
an interrupted round proposes the same runs again.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from grokjax.config.fields import config_columns
from grokjax.core.types import Hparams
from grokjax.engine.runs_table import split_sizes
from grokjax.summary.cells import SEED_AXES, facet_axes, grid_axes, log_axis, phase_cells

MIN_AGREEMENT = 0.75  # a cell whose seeds agree less (2 of 3 do not) is uncertain
TRAINED = [f for f in Hparams._fields if f not in SEED_AXES]  # what a run's training depends on besides its seeds


def midpoint(a: float, b: float, log: bool = False) -> float | None:
    """Half-way between two axis values (on a log axis, `cells.log_axis`, their geometric mean); integers
    (train_size) stay integers, None when none lies between."""
    if isinstance(a, (int, np.integer)) and isinstance(b, (int, np.integer)):
        m = (int(a) + int(b)) // 2
        return m if m not in (a, b) else None
    m = np.sqrt(float(a) * float(b)) if log else (float(a) + float(b)) / 2
    return round(float(m), 12)  # 12 decimals: 0.3, not 0.30000000000000004


def disagreeing_pairs(runs: pd.DataFrame, min_agreement: float = MIN_AGREEMENT) -> pd.DataFrame:
    """One row per pair of neighbouring cells that disagree: its facet values, the axis it lies along,
    the endpoints' coordinates (a_x, a_y, b_x, b_y) and phases, whether a side is uncertain,
    and the gap as a fraction of the axis's range."""
    x, y = grid_axes(runs)
    facets = facet_axes(runs)
    cells = phase_cells(runs)
    rows = []
    for axis, other in ((x, y), (y, x)):
        scaled = np.log10 if log_axis(runs[axis]) else (lambda v: v)  # gaps as the chart shows them
        span = float(scaled(runs[axis].max()) - scaled(runs[axis].min())) or 1.0
        for _, line in cells.groupby([*facets, other], sort=True, dropna=False):
            line = line.sort_values(axis)
            for (_, a), (_, b) in zip(line.iloc[:-1].iterrows(), line.iloc[1:].iterrows()):
                uncertain = bool(a.agreement < min_agreement or b.agreement < min_agreement)
                if a.phase == b.phase and not uncertain:
                    continue
                rows.append({**{f: a[f] for f in facets}, "axis": axis, "a_x": a[x], "a_y": a[y], "b_x": b[x],
                             "b_y": b[y], "a_phase": a.phase, "b_phase": b.phase, "uncertain": uncertain,
                             "gap": float(scaled(b[axis]) - scaled(a[axis])) / span})
    columns = [*facets, "axis", "a_x", "a_y", "b_x", "b_y", "a_phase", "b_phase", "uncertain", "gap"]
    return pd.DataFrame(rows, columns=columns)


def propose(runs: pd.DataFrame, budget: int, min_agreement: float = MIN_AGREEMENT) -> pd.DataFrame:
    """New runs (config columns, run_ids after the largest in `runs`) at the midpoints of disagreeing
    neighbours, at most `budget` of them.

    Coarse gaps go first (a fraction of their axis's range; the boundary is refined evenly
    before any part of it twice), then pairs whose phases differ before pairs that are only
    uncertain, then facet, y and x order; a midpoint whose runs do not fit what is left of the
    budget is passed over for smaller ones.
    """
    x, y = grid_axes(runs)
    facets = facet_axes(runs)
    pairs = disagreeing_pairs(runs, min_agreement)
    pairs["same_phase"] = pairs.a_phase == pairs.b_phase
    pairs = pairs.sort_values(["gap", "same_phase", *facets, "a_y", "a_x", "axis"],
                              ascending=[False, True, *[True] * (len(facets) + 3)], kind="stable")
    columns = list(config_columns())
    seed_shift = int(runs.seed.max()) + 1
    cell_runs = {key: group for key, group in runs.groupby([*facets, x, y], sort=False)}
    taken: list[pd.DataFrame] = []
    seen: set[tuple] = set()
    left = budget
    for pair in pairs.itertuples(index=False):
        keys = tuple(getattr(pair, f) for f in facets)
        ends = [cell_runs[(*keys, pair.a_x, pair.a_y)], cell_runs[(*keys, pair.b_x, pair.b_y)]]
        template = max(ends, key=len)[columns].reset_index(drop=True)  # the first of equals: a
        point = {x: pair.a_x, y: pair.a_y}
        point[pair.axis] = midpoint(point[pair.axis], pair.b_x if pair.axis == x else pair.b_y,
                                    log_axis(runs[pair.axis]))
        if point[pair.axis] is None or (*keys, point[x], point[y]) in seen:
            continue
        new = template.assign(**point)
        if pair.uncertain:
            new = pd.concat([new, new.assign(seed=new.seed + seed_shift)], ignore_index=True)
        new = split_sizes(new)
        if len(new) > left or any(_same_training(new, end) for end in ends):
            continue
        seen.add((*keys, point[x], point[y]))
        taken.append(new)
        left -= len(new)
    if not taken:
        return pd.DataFrame(columns=columns)
    proposed = pd.concat(taken, ignore_index=True).sort_values([*facets, y, x, "seed"], kind="stable")
    proposed["run_id"] = np.arange(len(proposed), dtype=np.int64) + int(runs.run_id.max()) + 1
    return proposed.set_index(proposed.run_id.to_numpy())[columns]


def _same_training(new: pd.DataFrame, end: pd.DataFrame) -> bool:
    """Whether the new point's runs train as the endpoint's do (same split counts and hyperparameters)."""
    return bool((new[TRAINED].iloc[0].to_numpy() == end[TRAINED].iloc[0].to_numpy()).all())
