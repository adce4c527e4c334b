"""`python -m benchmarks.scale [RUNS ...]`: every stage of a sweep at 5,000, 50,000 and 200,000 tiny runs.

Each size is sweeps/bench/scale50k.toml (p = 7, width 16, 20 steps; 10 weight decays x 10 data
fractions x 10 corruption fractions) with RUNS / 1,000 seeds. Each stage runs as a process of its
own, timed from outside with GNU time (wall seconds, peak resident memory): the sweep (training,
tables, the terminal report; --no-plots --no-params), `grokjax plot`, `grokjax explore`,
`grokjax info`, `grokjax check`, a refinement round's proposals (`boundaries.propose`, what
`grokjax refine` computes before it trains), and reading the tables in pandas. Prints a table and
writes results/bench/scale.json.
"""

from __future__ import annotations

import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SWEEP = ROOT / "sweeps" / "bench" / "scale50k.toml"
PYTHON = [sys.executable, "-m", "grokjax"]


def stages(folder: Path, runs: int) -> dict[str, list[str]]:
    seeds = runs // 1000
    code = "import sys, grokjax; from grokjax.engine import boundaries; "
    return {
        "sweep": [*PYTHON, "sweep", str(SWEEP), "--set", f"sweep.seed={{start = 0, stop = {seeds - 1}, num = {seeds}}}",
                  "--set", f'name="scale{runs}"', "--out", str(folder), "--no-plots", "--no-params", "--no-progress"],
        "plot": [*PYTHON, "plot", str(folder)],
        "explore": [*PYTHON, "explore", str(folder)],
        "info": [*PYTHON, "info", str(folder)],
        "check": [*PYTHON, "check", str(folder)],
        "refine proposals": [sys.executable, "-c", code + "print(len(boundaries.propose(grokjax.load_results(sys.argv[1]).runs, 1000)))", str(folder)],
        "read tables": [sys.executable, "-c", "import sys, pandas as pd; [pd.read_parquet(f'{sys.argv[1]}/{t}.parquet') for t in ('runs', 'curves', 'neurons')]", str(folder)],
    }


def timed(command: list[str]) -> dict[str, float]:
    """Wall seconds and peak resident memory (MB) of one process, by GNU time."""
    proc = subprocess.run(["/usr/bin/time", "-f", "%e %M", *command], capture_output=True, text=True, cwd=ROOT)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{proc.stderr[-2000:]}")
    wall, kb = proc.stderr.strip().splitlines()[-1].split()
    return {"wall_s": float(wall), "peak_mb": round(int(kb) / 1024, 1)}


def main(argv: list[str]) -> int:
    if not all(a.isdigit() and int(a) >= 1000 and int(a) % 1000 == 0 for a in argv):
        print(f"benchmarks.scale: RUNS = {' '.join(argv)}; allowed: multiples of 1000 (1,000 runs a seed)", file=sys.stderr)
        return 2
    sizes = [int(a) for a in argv] or [5_000, 50_000, 200_000]
    report = {"machine": {"cpu": platform.processor() or platform.machine(), "date": time.strftime("%Y-%m-%d")}, "sizes": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for runs in sizes:
            folder = Path(tmp) / f"scale{runs}"
            report["sizes"][runs] = figures = {name: timed(command) for name, command in stages(folder, runs).items()}
            figures["explore.html MB"] = round((folder / "explore.html").stat().st_size / 1e6, 1)
            print(runs, json.dumps(figures), flush=True)
    names = list(next(iter(report["sizes"].values())))
    print("\n| stage | " + " | ".join(f"{r:,} runs" for r in sizes) + " |\n| --- |" + " --- |" * len(sizes))
    for name in names:
        cells = [report["sizes"][r][name] for r in sizes]
        print(f"| {name} | " + " | ".join(f"{c:g}" if not isinstance(c, dict) else f"{c['wall_s']:.1f} s, {c['peak_mb']:,.0f} MB" for c in cells) + " |")
    out = ROOT / "results" / "bench" / "scale.json"
    out.write_text(json.dumps(report, indent=1) + "\n")
    print(f"Written: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
