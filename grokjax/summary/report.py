"""What the terminal shows: after a sweep, totals, phase counts and a text phase map; `grokjax info`."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from grokjax.config.fields import column_of
from grokjax.config.sweep_file import load
from grokjax.store import lock
from grokjax.store.checkpoints import STATE_DIR, read_plan, read_rounds
from grokjax.store.results import Results, read_meta
from grokjax.summary import expect
from grokjax.summary.cells import SEED_AXES, Axes, chosen_axes, grid_axes
from grokjax.summary.phases import PHASES, majority_phase

SYMBOLS = {
    "coexistence": "C",
    "partial_inversion": "P",
    "full_inversion": "I",
    "memorization": "M",
    "forgetting": "F",
    "confusion": ".",
}


def phase_map(runs: pd.DataFrame, swept: list[str], axes: Axes = None) -> str:
    """One block per value of the swept axes other than the map's and seeds; one character per cell.

    Rows are corruption fractions (highest on top), columns data fractions (or the axes
    chosen, or those `cells.grid_axes` picks when those are fixed); a cell with several
    seeds shows its majority phase.
    """
    x_axis, y_axis = grid_axes(runs, axes)
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
    chunks, resumed = meta.get("chunks", 0), meta.get("chunks_resumed", 0)
    if chunks and resumed == chunks:
        first = f"{len(runs)} runs, all {chunks} chunks from earlier records (nothing left to train; --restart trains again)"
    else:
        first = (f"{len(runs)} runs in {wall:.1f} s ({meta.get('run_steps_per_s', float('nan')):,.0f} run-steps/s) on "
                 f"{device.get('platform')} ({device.get('device_kind')}, {meta.get('compiled_programs')} compiled "
                 f"program(s))" + (f"; {resumed} of {chunks} chunks resumed from an interrupted sweep" if resumed else ""))
    lines = [
        first,
        "Phases: " + ", ".join(f"{p} {int((runs.phase == p).sum())}" for p in PHASES if (runs.phase == p).any()),
    ]
    diverged = int((runs.status == "diverged").sum()) if "status" in runs else 0
    undefined = int((runs.phase.isna() & (runs.status != "diverged")).sum()) if "status" in runs else int(runs.phase.isna().sum())
    if undefined:
        lines[-1] += f", no test set {undefined}"
    if diverged:
        lines.append(f"Diverged: {diverged} run(s) with a NaN or infinite loss (status = 'diverged'; "
                     "their metrics are those of their last finite logged step)")
    if meta.get("expect"):
        held = sum(r["passed"] for r in meta["expect"])
        lines.append(f"The paper's claims ([[expect]]): {held} of {len(meta['expect'])} held")
        lines.extend(expect.lines(meta["expect"]))
    swept = [column_of(key) for key in meta["config"]["sweep"]]
    lines.append(phase_map(runs, swept, chosen_axes(meta)))
    return "\n".join(lines)


STEP_CHOICES = {"auto": "picked by the cost model", "tuned": "the fastest timed on this machine",
                None: "chosen by timing, an older grokjax"}


def provenance(folder: Path) -> str:
    """`grokjax info`: what made a results folder (config, versions, device, times, chunks, run status)."""
    runs_path, config_path = folder / "runs.parquet", folder / "sweep.toml"
    if not runs_path.exists() and not config_path.is_file():
        raise FileNotFoundError(f"{folder}: no runs.parquet or sweep.toml here; is it a grokjax results folder?")
    saved, rounds = read_plan(folder), read_rounds(folder)
    planned = len(saved["chunks"]) + sum(len(r.plan) for r in rounds) if saved else None
    recorded = len(list((folder / STATE_DIR).glob("chunk_*/done")))
    if not runs_path.exists():
        config = load(config_path)
        left = f"{planned - recorded} left" if planned is not None else "none planned yet"
        return (f"{folder}: sweep {config.name!r}, config hash {config.hash()}: unfinished\n"
                f"  chunks: {recorded} done, {left}\n"
                f"  resume it with: grokjax sweep {config_path} --out {folder}")
    meta = read_meta(runs_path)
    runs = pd.read_parquet(runs_path)
    parts = meta.get("parts", [meta])
    device = meta.get("device", {})
    status = runs.status.value_counts() if "status" in runs else {}
    chunks = sum(len(p.get("chunk_sizes") or []) for p in parts)
    done, left = (recorded, planned - recorded) if planned is not None else (chunks, 0)
    lines = [
        f"{folder}: sweep {meta['config']['name']!r}, config hash {meta.get('config_hash', 'not recorded')}",
        f"  sweep file: {meta.get('source')}; overrides: {' '.join(meta.get('overrides') or []) or 'none'}"
        f"; run it again with: grokjax sweep {config_path}",
        "  versions: " + ", ".join(f"{k} {v}" for k, v in meta.get("versions", {}).items()),
        f"  device: {device.get('platform')} ({device.get('device_kind')}) x {device.get('device_count')} "
        f"on {device.get('host')}" + (f" ({device['cpu']})" if device.get("cpu") else "")
        + (f", {len(parts)} processes" if len(parts) > 1 else ""),
        f"  started {min(p['started'] for p in parts)}, finished {max(p['finished'] for p in parts)}, "
        f"wall time {max(p['wall_time_s'] for p in parts):,.1f} s (the last invocation)",
        f"  chunks: {done} done, {left} left" + (" (a sweep into this folder is under way or was stopped; "
                                                 "the tables are the last finished one's)" if left else ""),
        *([f"  in use by {holder}"] if (holder := lock.in_use(folder)) else []),
        f"  step ({STEP_CHOICES.get(meta.get('step_choice'), 'fixed: --step ' + str(meta.get('step_choice')))}): "
        + ("; ".join(f"{s['model']} p={s['p']} width={s['width']}: {s['formulation']}, runs "
                                + (f"in blocks of {s['run_block']}" if s["run_block"] else "all vmapped together")
                                + (f", on {s['devices']} device" + "s" * (s["devices"] > 1) if "devices" in s else "")
                                for s in meta["step"]) + f" (compile cache: {meta.get('compile_cache')})"
                      if meta.get("step") else "not recorded (an older grokjax)"),
        *(f"  refinement round {r.index}: {r.info['proposed']} runs at {r.info['points']} points (budget "
          f"{r.info['budget']}), run_ids {r.info['run_ids'][0]}..{r.info['run_ids'][1]}, "
          + (f"finished {r.info['finished']}" if r.finished else "unfinished: grokjax refine resumes it")
          for r in rounds),
        f"  runs: {len(runs)}; " + (f"ok {int(status.get('ok', 0))}, diverged {int(status.get('diverged', 0))}"
                                    if len(status) else "status not recorded (an older grokjax)"),
    ]
    return "\n".join(lines)
