"""`python -m benchmarks.scale [SIZE ...]`: every stage of a sweep at 5,000, 50,000 and 200,000 tiny runs,
and at 50,000 runs in 25,000 cells.

Each size is sweeps/bench/scale50k.toml (p = 7, width 16, 20 steps): a SIZE of RUNS is its grid of
10 data fractions x 10 corruption fractions x 10 weight decays with RUNS / 1,000 seeds; a SIZE of
AxBxCxS is a grid of A data fractions x B corruption fractions x C weight decays with S seeds
(50x50x10x2: many cells, as a fine phase diagram has). Each stage runs as a process of its own,
timed from outside with GNU time (wall seconds, peak resident memory): the sweep (training,
tables, the terminal report; --no-plots --no-params), `grokjax plot`, `grokjax explore`,
`grokjax info`, `grokjax check`, a refinement round's proposals (`boundaries.propose`, what
`grokjax refine` computes before it trains), reading the tables in pandas, and the three
notebooks run top to bottom on the folder. Prints a table and writes results/bench/scale.json
(where the sizes measured before stay, each with the date and time it was measured).
"""

from __future__ import annotations

import json
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SWEEP = ROOT / "sweeps" / "bench" / "scale50k.toml"
PYTHON = [sys.executable, "-m", "grokjax"]


NOTEBOOKS = """import sys, nbformat, pathlib; from nbclient import NotebookClient
for path in sorted(pathlib.Path("notebooks").glob("*.ipynb")):
    nb = nbformat.read(path, as_version=4)
    nb.cells[0].source = f"RESULTS = {sys.argv[1]!r}"
    NotebookClient(nb, timeout=1800, kernel_name="python3", resources={"metadata": {"path": "notebooks"}}).execute()
"""
SIZE = re.compile(r"(\d+)x(\d+)x(\d+)x(\d+)")


def grid(size: str) -> list[str]:
    """The --set options that make scale50k.toml a sweep of this SIZE (see the module docstring)."""
    alphas, xis, wds, seeds = map(int, SIZE.fullmatch(size).groups()) if "x" in size else (10, 10, 10, int(size) // 1000)
    axes = {"data_fraction": (0.3, 0.9, alphas), "corruption_fraction": (0.0, 0.45, xis), "weight_decay": (0.0, 9.0, wds),
            "seed": (0, seeds - 1, seeds)}
    return [option for axis, (start, stop, num) in axes.items()
            for option in ("--set", f"sweep.{axis}={{start = {start}, stop = {stop}, num = {num}}}")]


def stages(folder: Path, size: str) -> dict[str, list[str]]:
    code = "import sys, grokjax; from grokjax.engine import boundaries; "
    return {
        "sweep": [*PYTHON, "sweep", str(SWEEP), *grid(size), "--set", f'name="scale{size}"', "--out", str(folder),
                  "--no-plots", "--no-params", "--no-progress"],
        "plot": [*PYTHON, "plot", str(folder)],
        "explore": [*PYTHON, "explore", str(folder)],
        "info": [*PYTHON, "info", str(folder)],
        "check": [*PYTHON, "check", str(folder)],
        "refine proposals": [sys.executable, "-c", code + "print(len(boundaries.propose(grokjax.load_results(sys.argv[1]).runs, 1000)))", str(folder)],
        "read tables": [sys.executable, "-c", "import sys, pandas as pd; [pd.read_parquet(f'{sys.argv[1]}/{t}.parquet') for t in ('runs', 'curves', 'neurons')]", str(folder)],
        "notebooks": [sys.executable, "-c", NOTEBOOKS, str(folder)],
    }


def timed(command: list[str]) -> dict[str, float]:
    """Wall seconds and peak resident memory (MB) of one process, by GNU time."""
    proc = subprocess.run(["/usr/bin/time", "-f", "%e %M", *command], capture_output=True, text=True, cwd=ROOT)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{proc.stderr[-2000:]}")
    wall, kb = proc.stderr.strip().splitlines()[-1].split()
    return {"wall_s": float(wall), "peak_mb": round(int(kb) / 1024, 1)}


def main(argv: list[str]) -> int:
    if not all(a.isdigit() and int(a) >= 1000 and int(a) % 1000 == 0 or SIZE.fullmatch(a) for a in argv):
        print(f"benchmarks.scale: SIZE = {' '.join(argv)}; allowed: multiples of 1000 (1,000 runs a seed), or AxBxCxS",
              file=sys.stderr)
        return 2
    sizes = argv or ["5000", "50000", "200000", "50x50x10x2"]
    out = ROOT / "results" / "bench" / "scale.json"  # sizes measured before stay, each with its date
    report = json.loads(out.read_text()) if out.exists() else {"machine": {}, "sizes": {}}
    report["machine"] = {"cpu": platform.processor() or platform.machine()}
    with tempfile.TemporaryDirectory() as tmp:
        for runs in sizes:
            folder = Path(tmp) / f"scale{runs}"
            figures = {"date": time.strftime("%Y-%m-%d %H:%M")}
            figures |= {name: timed(command) for name, command in stages(folder, runs).items()}
            report["sizes"][runs] = figures
            figures["explore.html MB"] = round((folder / "explore.html").stat().st_size / 1e6, 1)
            print(runs, json.dumps(figures), flush=True)
    names = [n for n in report["sizes"][sizes[0]] if n != "date"]
    print("\n| stage | " + " | ".join(f"{int(r):,} runs" if r.isdigit() else r for r in sizes) + " |\n| --- |" + " --- |" * len(sizes))
    for name in names:
        cells = [report["sizes"][r][name] for r in sizes]
        print(f"| {name} | " + " | ".join(f"{c:g}" if not isinstance(c, dict) else f"{c['wall_s']:.1f} s, {c['peak_mb']:,.0f} MB" for c in cells) + " |")
    out.write_text(json.dumps(report, indent=1) + "\n")
    print(f"Written: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
