"""What the terminal shows after a sweep: totals, phase counts and a text phase map."""

from __future__ import annotations

import pandas as pd

from grokjax.grid import column_name
from grokjax.phases import PHASES, majority_phase
from grokjax.plots import grid_axes
from grokjax.results import Results

SYMBOLS = {
    "coexistence": "C",
    "partial_inversion": "P",
    "full_inversion": "I",
    "memorization": "M",
    "forgetting": "F",
    "confusion": ".",
}
SEED_AXES = ("seed", "data_seed")


def phase_map(runs: pd.DataFrame, swept: list[str]) -> str:
    """One block per value of the swept axes other than the map's and seeds; one character per cell.

    Rows are corruption fractions (highest on top), columns data fractions (or
    the axes `plots.grid_axes` picks when those are fixed); a cell with several
    seeds shows its majority phase.
    """
    x_axis, y_axis = grid_axes(runs)
    blocks = [c for c in swept if c not in (x_axis, y_axis, *SEED_AXES)]
    legend = "  ".join(f"{s} {p.replace('_', ' ')}" for p, s in SYMBOLS.items())
    lines = [f"Phase map: x = {x_axis}, y = {y_axis}. {legend}, ? none"]
    grouped = runs.groupby(blocks, sort=True) if blocks else [((), runs)]
    for key, block in grouped:
        key = key if isinstance(key, tuple) else (key,)
        if blocks:
            lines.append("  ".join(f"{b} = {v:g}" if isinstance(v, float) else f"{b} = {v}" for b, v in zip(blocks, key)))
        cells = block.groupby([x_axis, y_axis])["phase"].agg(majority_phase)
        xs = sorted(block[x_axis].unique())
        ys = sorted(block[y_axis].unique(), reverse=True)
        for y in ys:
            row = "".join(SYMBOLS.get(cells.get((x, y)), "?") for x in xs)
            lines.append(f"  {y:7.3g} | {row}")
        lines.append(f"            {xs[0]:g} .. {xs[-1]:g}" if len(xs) > 1 else f"            {xs[0]:g}")
    return "\n".join(lines)


def summary(results: Results) -> str:
    runs, meta = results.runs, results.meta
    device = meta.get("device", {})
    wall = meta.get("wall_time_s", float("nan"))
    lines = [
        f"{len(runs)} runs in {wall:.1f} s ({len(runs) / wall:.2f} runs/s, "
        f"{meta.get('run_steps_per_s', float('nan')):,.0f} run-steps/s) on {device.get('platform')} "
        f"({device.get('device_kind')}, {meta.get('compiled_programs')} compiled program(s))",
        "Phases: " + ", ".join(f"{p} {int((runs.phase == p).sum())}" for p in PHASES if (runs.phase == p).any()),
    ]
    undefined = int(runs.phase.isna().sum())
    if undefined:
        lines[-1] += f", no test set {undefined}"
    swept = [column_name(key) for key in meta["config"]["sweep"]]
    lines.append(phase_map(runs, swept))
    return "\n".join(lines)
