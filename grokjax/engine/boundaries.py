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
from grokjax.summary.cells import SEED_AXES, Axes, facet_axes, grid_axes, log_axis, phase_cells

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


def disagreeing_pairs(runs: pd.DataFrame, min_agreement: float = MIN_AGREEMENT, axes: Axes = None) -> pd.DataFrame:
    """One row per pair of neighbouring cells that disagree: its facet values, the axis it lies along,
    the endpoints' coordinates (a_x, a_y, b_x, b_y) and phases, whether a side is uncertain,
    and the gap as a fraction of the axis's range."""
    x, y = grid_axes(runs, axes)
    facets = facet_axes(runs, axes)
    cells = phase_cells(runs, axes)
    columns = [*facets, "axis", "a_x", "a_y", "b_x", "b_y", "a_phase", "b_phase", "uncertain", "gap"]
    found = [pd.DataFrame(columns=columns)]
    for axis, other in ((x, y), (y, x)):
        scaled = np.log10 if log_axis(runs[axis]) else (lambda v: v)  # gaps as the chart shows them
        span = float(scaled(runs[axis].max()) - scaled(runs[axis].min())) or 1.0
        lines = cells.sort_values([*facets, other, axis], kind="stable").reset_index(drop=True)
        line = lines.groupby([*facets, other], sort=False, dropna=False).ngroup().to_numpy()
        a, b = lines.iloc[:-1].reset_index(drop=True), lines.iloc[1:].reset_index(drop=True)
        uncertain = (a.agreement < min_agreement) | (b.agreement < min_agreement)
        keep = (line[:-1] == line[1:]) & ((a.phase.to_numpy() != b.phase.to_numpy()) | uncertain.to_numpy())
        a, b = a[keep], b[keep]
        found.append(pd.DataFrame({
            **{f: a[f] for f in facets}, "axis": axis, "a_x": a[x], "a_y": a[y], "b_x": b[x].to_numpy(),
            "b_y": b[y].to_numpy(), "a_phase": a.phase, "b_phase": b.phase.to_numpy(), "uncertain": uncertain[keep],
            "gap": (scaled(b[axis].to_numpy(float)) - scaled(a[axis].to_numpy(float))) / span,
        }, columns=columns))
    return pd.concat(found, ignore_index=True).astype({"uncertain": bool, "gap": float})


def propose(runs: pd.DataFrame, budget: int, min_agreement: float = MIN_AGREEMENT, axes: Axes = None) -> pd.DataFrame:
    """New runs (config columns, run_ids after the largest in `runs`) at the midpoints of disagreeing
    neighbours, at most `budget` of them.

    Coarse gaps go first (a fraction of their axis's range; the boundary is refined evenly
    before any part of it twice), then pairs whose phases differ before pairs that are only
    uncertain, then facet, y and x order; a midpoint whose runs do not fit what is left of the
    budget is passed over for smaller ones.
    """
    x, y = grid_axes(runs, axes)
    facets = facet_axes(runs, axes)
    pairs = disagreeing_pairs(runs, min_agreement, axes)
    pairs["same_phase"] = pairs.a_phase == pairs.b_phase
    pairs = pairs.sort_values(["gap", "same_phase", *facets, "a_y", "a_x", "axis"],
                              ascending=[False, True, *[True] * (len(facets) + 3)], kind="stable")
    columns, cell = list(config_columns()), [*facets, x, y]
    at = runs.groupby(cell, sort=False).indices  # each cell's rows in `runs`
    firsts = runs.drop_duplicates(cell)  # each cell's first run, as a dict: read once per pair
    first = dict(zip(firsts[cell].itertuples(index=False, name=None), firsts[columns].to_dict("records")))
    logs = {axis: log_axis(runs[axis]) for axis in (x, y)}
    found = []  # (its cell's key, its point, the endpoints' keys (the one with more runs first), uncertain)
    for pair in pairs.itertuples(index=False):
        keys = tuple(getattr(pair, f) for f in facets)
        a, b = (*keys, pair.a_x, pair.a_y), (*keys, pair.b_x, pair.b_y)
        point = {x: pair.a_x, y: pair.a_y}
        point[pair.axis] = midpoint(point[pair.axis], pair.b_x if pair.axis == x else pair.b_y, logs[pair.axis])
        if point[pair.axis] is not None:  # the template is the end with more runs, the first of equals: a
            ends = (b, a) if len(at[b]) > len(at[a]) else (a, b)
            found.append(((*keys, point[x], point[y]), point, ends, pair.uncertain))
    if not found:
        return pd.DataFrame(columns=columns)
    # Whether each midpoint trains as an endpoint does, for all at once: split counts for one run per midpoint.
    heads = split_sizes(pd.DataFrame([{**first[ends[0]], **point} for _, point, ends, _ in found]))
    same = np.zeros(len(found), dtype=bool)
    for side in (0, 1):
        end = pd.DataFrame([first[ends[side]] for _, _, ends, _ in found])
        same |= (heads[TRAINED].to_numpy() == end[TRAINED].to_numpy()).all(axis=1)
    taken, seen, left = [], set(), budget
    for (key, point, ends, uncertain), twin in zip(found, same):
        count = len(at[ends[0]]) * (2 if uncertain else 1)
        if twin or key in seen or count > left:
            continue
        seen.add(key)
        taken.append((point, runs.iloc[at[ends[0]]], uncertain))
        left -= count
    if not taken:
        return pd.DataFrame(columns=columns)
    seed_shift = int(runs.seed.max()) + 1
    new = [template[columns].assign(**point) for point, template, _ in taken]
    new += [template[columns].assign(**point, seed=template.seed + seed_shift) for point, template, twice in taken if twice]
    proposed = split_sizes(pd.concat(new, ignore_index=True)).sort_values([*facets, y, x, "seed"], kind="stable")
    proposed["run_id"] = np.arange(len(proposed), dtype=np.int64) + int(runs.run_id.max()) + 1
    return proposed.set_index(proposed.run_id.to_numpy())[columns]

