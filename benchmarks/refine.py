"""`python -m benchmarks.refine`: what refinement buys, on the quickstart's weight-decay-10 slice.

Three sweeps of sweeps/quickstart.toml at weight decay 10 (one seed), and one refinement:
- reference: a dense 25 x 19 grid (data fraction 0.3..0.9, corruption fraction 0..0.45, both in
  steps of 0.025): 475 runs, taken as the truth;
- uniform: the quickstart's own 13 x 10 grid: 130 runs, about four times the coarse grid;
- refined: a coarse 7 x 5 grid (35 runs) plus `grokjax refine` with the budget that brings it to
  the uniform grid's runs (95), over --rounds rounds.

Each approach predicts the phase at every reference point as the phase of its nearest trained
run (distances in steps of the reference grid: both axes step 0.025). Two boundaries are scored:
coexistence-memorization (neighbouring reference points, one coexistence, one memorization) and
inversion (one partial or full inversion, the other neither). Per boundary:
- band error: among the reference points on that boundary (an end of one of its pairs), the
  share whose predicted phase is wrong;
- distance: the boundary's pairs as points half-way between their ends, on the reference grid and
  on the predicted one; the mean distance from each to the nearest of the other, both ways, averaged
  (in reference steps, 0.025; 0 when the predicted boundary lies exactly where the reference's does).
The folders stay in --work (the reference and uniform sweeps resume, so a repeat trains only the
coarse grid and its refinement again); the figures go to --json, the refined phase diagram beside it.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from grokjax.config.sweep_file import load
from grokjax.engine import refine, sweep
from grokjax.store import results
from grokjax.store.provenance import device_info

QUICKSTART = Path(__file__).resolve().parents[1] / "sweeps" / "quickstart.toml"
STEP = 0.025  # the reference grid's step on both axes
ALPHA0 = 0.3  # its first data fraction
GRIDS = {  # name: (data fractions, corruption fractions)
    "reference": ((0.3, 0.9, 25), (0.0, 0.45, 19)),
    "uniform": ((0.3, 0.9, 13), (0.0, 0.45, 10)),
    "coarse": ((0.3, 0.9, 7), (0.0, 0.45, 5)),
}
INVERSION = ("partial_inversion", "full_inversion")
BOUNDARIES = {
    "coexistence-memorization": lambda a, b: {a, b} == {"coexistence", "memorization"},
    "inversion": lambda a, b: (a in INVERSION) != (b in INVERSION),
}


def overrides(grid: tuple[tuple[float, float, int], tuple[float, float, int]]) -> list[str]:
    (a0, a1, an), (c0, c1, cn) = grid
    return ["sweep.weight_decay=[10.0]", f"sweep.data_fraction={{start={a0},stop={a1},num={an}}}",
            f"sweep.corruption_fraction={{start={c0},stop={c1},num={cn}}}"]


def lattice(runs: pd.DataFrame) -> np.ndarray:
    """Run positions in reference steps: (data fraction - 0.3, corruption fraction) / 0.025."""
    return np.stack([(runs.data_fraction.to_numpy() - ALPHA0) / STEP, runs.corruption_fraction.to_numpy() / STEP], 1)


def predicted(trained: pd.DataFrame, reference: pd.DataFrame) -> np.ndarray:
    """The phase of the nearest trained run at each reference point (the first of equally near ones)."""
    d = ((lattice(reference)[:, None, :] - lattice(trained)[None, :, :]) ** 2).sum(-1)
    return trained.phase.to_numpy(dtype=object)[d.argmin(1)]


def boundary_pairs(points: np.ndarray, phases: np.ndarray, on: Any) -> tuple[np.ndarray, np.ndarray]:
    """Neighbouring reference points (one step apart) whose phases `on` marks: their midpoints and ends."""
    index = {tuple(np.round(p).astype(int)): i for i, p in enumerate(points)}
    mids, ends = [], set()
    for (u, v), i in index.items():
        for du, dv in ((1, 0), (0, 1)):
            j = index.get((u + du, v + dv))
            if j is not None and on(phases[i], phases[j]):
                mids.append((u + du / 2, v + dv / 2))
                ends.update((i, j))
    return np.asarray(mids, float).reshape(-1, 2), np.asarray(sorted(ends), int)


def chamfer(a: np.ndarray, b: np.ndarray) -> float | None:
    """Mean distance from each point of a to the nearest of b and back, averaged; None if either is empty."""
    if not len(a) or not len(b):
        return None
    d = np.sqrt(((a[:, None, :] - b[None, :, :]) ** 2).sum(-1))
    return round(float((d.min(1).mean() + d.min(0).mean()) / 2), 3)


def score(trained: pd.DataFrame, reference: pd.DataFrame) -> dict[str, Any]:
    points, truth = lattice(reference), reference.phase.to_numpy(dtype=object)
    guess = predicted(trained, reference)
    out: dict[str, Any] = {"runs": len(trained), "wrong_everywhere": round(float((guess != truth).mean()), 4)}
    for name, on in BOUNDARIES.items():
        ref_mids, ends = boundary_pairs(points, truth, on)
        guess_mids, _ = boundary_pairs(points, guess, on)
        out[name] = {"band_points": len(ends), "band_error": round(float((guess[ends] != truth[ends]).mean()), 4),
                     "distance_steps": chamfer(ref_mids, guess_mids)}
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.refine", description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", default="results/refine_bench", help="folder for the sweeps' results")
    parser.add_argument("--json", default="results/bench/refine.json", help="where the figures go")
    parser.add_argument("--rounds", type=int, default=3, help="refinement rounds (default 3)")
    args = parser.parse_args(argv)
    work, started = Path(args.work), dt.datetime.now(dt.UTC)
    walls, folders = {}, {}
    for name, grid in GRIDS.items():
        t0 = time.perf_counter()
        # The quickstart's claims are about weight decays this slice leaves out.
        config = dataclasses.replace(load(QUICKSTART, overrides(grid)), expect=())
        folders[name] = sweep.run(config, out=work / name, progress=False, plots=False, keep_params=False,
                                  restart=name == "coarse").folder  # the coarse grid starts over
        walls[name] = round(time.perf_counter() - t0, 1)
    runs = {name: results.load(folder).runs for name, folder in folders.items()}
    budget = len(runs["uniform"]) - len(runs["coarse"])
    t0 = time.perf_counter()
    refine.run(folders["coarse"], budget, args.rounds, progress=False, plots=True)
    walls["refine"] = round(time.perf_counter() - t0, 1)
    refined = results.load(folders["coarse"])
    figures = {
        "command": "python -m benchmarks.refine" + (f" --rounds {args.rounds}" if args.rounds != 3 else ""),
        "started": started.isoformat(timespec="seconds"),
        "device": device_info(),
        "slice": "sweeps/quickstart.toml at weight decay 10, seed 0 (p 31, width 128, 1500 steps)",
        "grids": {name: {"data_fraction": list(g[0]), "corruption_fraction": list(g[1])} for name, g in GRIDS.items()},
        "refine": {"budget": budget, "rounds": refined.meta["rounds"]},
        "wall_s": walls,
        "reference_phases": runs["reference"].phase.value_counts().to_dict(),
        "uniform": score(runs["uniform"], runs["reference"]),
        "coarse": score(runs["coarse"], runs["reference"]),
        "coarse_refined": score(refined.runs, runs["reference"]),
    }
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(figures, indent=2) + "\n")
    shutil.copy(folders["coarse"] / "phase_diagram.png", out.with_name(out.stem + "_phase_diagram.png"))
    for name in ("uniform", "coarse", "coarse_refined"):
        s = figures[name]
        print(f"{name:>15}: {s['runs']:4d} runs; " + "; ".join(
            f"{b}: band error {s[b]['band_error']:.1%}, distance {s[b]['distance_steps']} steps" for b in BOUNDARIES))
    print(f"Figures: {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
