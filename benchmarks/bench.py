"""`python -m benchmarks.bench [SWEEP]`: how fast grokjax trains a sweep's runs, against the paper's own way.

Steady state, on the same runs (the first chunks, up to --runs runs, that `grokjax
sweep` would train from the sweep file's first group), each timed warm after a first
call that compiles:
- grokjax vmapped: chunks of runs in one compiled program, as `grokjax sweep` trains them;
- grokjax serial: the same runs one at a time, with grokjax's own jitted single-run code;
- PyTorch serial (when torch is installed; the paper's MLP only): one run at a time,
  written as the paper's code is: full batch, one-hot inputs through nn.Linear layers,
  torch.optim.AdamW, test metrics at each logged step;
- a dense float32 matmul on the same device, and the vmapped runs' model FLOP/s as a
  fraction of it.
With --formulations: every way of computing the step that `grokjax.engine.tuning` chooses from.
With --profile: where the largest chunk's time goes on the device, kernel by kind, from a trace
of JAX's profiler (`benchmarks.kernels`).

With --whole: the time a user waits, as whole processes, compile included, for the whole
sweep: `grokjax sweep` with a cold cache (a fresh GROKJAX_CACHE_DIR: every program
compiled), the same again with that cache warm, and the PyTorch loop
training the same runs in a process of its own. --charts lets the sweep draw its charts.
Figures are printed and written as JSON (--out).

Model FLOPs of one run (2-layer MLP; the first layer is a lookup and costs no multiplies):
  6 n_train N p per training step (the readout, forward and backward),
  2 p^2 N p per logged step (the forward pass over all pairs for the metrics).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import dataclasses
import datetime as dt
import json
import multiprocessing
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from benchmarks import kernels, paper_loop
from grokjax.config.sweep_file import ConfigError, load
from grokjax.core.training import PRECISIONS
from grokjax.core.types import Static
from grokjax.engine import machine, runner, runs_table, sweep, tuning
from grokjax.engine import plan as planning
from grokjax.store import cache
from grokjax.store.provenance import device_info


def timed(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    jax.block_until_ready(fn())
    return time.perf_counter() - start


def model_flops(static: Static, runs: pd.DataFrame) -> float:
    """Useful FLOPs of training these runs (2-layer MLP; see the module docstring), or NaN for other models."""
    if static.model != "mlp" or static.depth != 2 or static.batch_size:
        return float("nan")
    n, p = static.width, static.p
    logs = len(static.logged_steps)
    return float(sum(6 * int(t) * n * p * static.steps + 2 * p * p * n * p * logs for t in runs.n_train))


def matmul_sizes(value: str) -> tuple[int, ...]:
    """--matmul-sizes: square sizes, comma-separated (empty: matmul_flops's defaults for the device)."""
    items = [n.strip() for n in value.split(",") if n.strip()]
    if not all(n.isdigit() and int(n) > 0 for n in items):
        raise ValueError(f"--matmul-sizes {value!r}: whole numbers above 0, comma-separated")
    return tuple(int(n) for n in items)


def matmul_flops(seconds: float = 3.0, precision: str = "float32", sizes: tuple[int, ...] = ()) -> dict[str, float]:
    """Best FLOP/s of a square matmul on the default device at a train.precision setting, over a few sizes
    (by default 1024 to 4096 on a CPU, 4096 to 16384 on an accelerator)."""
    matmul, dtype = PRECISIONS[precision]
    if not sizes:
        sizes = (1024, 2048, 4096) if jax.default_backend() == "cpu" else (4096, 8192, 16384)
    best: dict[str, float] = {"flops_per_s": 0.0, "size": 0}
    for size in sizes:
        a = jax.random.normal(jax.random.key(0), (size, size), dtype)
        with jax.default_matmul_precision(matmul):
            dot = jax.jit(lambda x: jnp.dot(x, x))
            jax.block_until_ready(dot(a))
            calls, start = 0, time.perf_counter()
            while time.perf_counter() - start < seconds / len(sizes) or calls < 2:
                jax.block_until_ready(dot(a))
                calls += 1
        rate = 2 * size**3 * calls / (time.perf_counter() - start)
        if rate > best["flops_per_s"]:
            best = {"flops_per_s": rate, "size": size}
    return best


def torch_serial(static: Static, runs: pd.DataFrame) -> tuple[float, float] | str:
    """(seconds for all runs, seconds of the first) for the paper-style PyTorch loop, or why it was skipped.

    The first run is trained once more before the timed pass, as a warm-up.
    """
    one = paper_loop.loop(setting(static))
    if isinstance(one, str):
        return one
    rows = run_fields(runs)
    first = timed(lambda: one(rows[0]))
    return timed(lambda: [one(row) for row in rows]), first


def setting(static: Static) -> dict[str, Any]:
    """The static fields, as `paper_loop` reads them."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(static).items()}


def run_fields(runs: pd.DataFrame) -> list[dict[str, Any]]:
    """Each run's fields that `paper_loop` reads, as plain numbers."""
    return runs[["data_seed", "seed", "n_train", "n_corrupt", "learning_rate", "weight_decay"]].to_dict("records")


def isolated(fn: Callable, *args: Any) -> Any:
    """fn(*args) in a fresh process: PyTorch's and XLA's thread pools spin for a while after work,
    so in one process whichever runs second is slowed by the other's idle threads."""
    with concurrent.futures.ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(fn, *args).result()


def formulation_figures(chunk: Any) -> dict[str, Any]:
    """Seconds per segment of each candidate way of computing this chunk's step (`tuning.measure`)."""
    return tuning.measure(chunk.static, runs_table.hparams(chunk.runs, pad_to=chunk.size), chunk.size)


def whole_processes(args: argparse.Namespace, config: Any, runs: pd.DataFrame) -> dict[str, Any]:
    """Wall seconds of whole processes: the sweep with a cold cache, with a warm one, and the PyTorch loop."""
    sets = [f"--set={item}" for item in args.overrides]
    out: dict[str, Any] = {"runs": len(runs), "charts": args.charts}
    with tempfile.TemporaryDirectory(prefix="grokjax-bench-") as tmp:
        env = {**os.environ, cache.CACHE_ENV: str(Path(tmp) / "cache")}
        sweep = [sys.executable, "-m", "grokjax", "sweep", args.file, *sets, "--out", str(Path(tmp) / "out"),
                 "--no-progress", "--no-params", *([] if args.charts else ["--no-plots"])]
        out["grokjax_cold_cache_s"] = wall(sweep, env)
        out["grokjax_warm_cache_s"] = wall([*sweep, "--restart"], env)
        if not args.no_torch:
            spec = Path(tmp) / "paper_loop.json"
            spec.write_text(json.dumps([{"setting": setting(static), "runs": run_fields(group)}
                                        for static, group in planning.groups(runs)]))
            out["pytorch_s"] = wall([sys.executable, paper_loop.__file__, str(spec)], dict(os.environ))
    return out


def wall(command: list[str], env: dict[str, str]) -> float | str:
    """Wall seconds of a command run to its end (or what it printed last, if it failed)."""
    start = time.perf_counter()
    proc = subprocess.run(command, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        return f"failed: {(proc.stderr.strip().splitlines() or ['?'])[-1]}"
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("file", nargs="?", help="sweep file (default: the quickstart)")
    parser.add_argument("--runs", type=int, default=32, help="how many of its runs to time (default 32)")
    parser.add_argument("--chunk-size", type=int, help="runs per vmapped call (default: as grokjax sweep)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--no-torch", action="store_true", help="skip the PyTorch loop")
    parser.add_argument("--formulations", action="store_true", help="also time every way of computing the step")
    parser.add_argument("--profile", action="store_true",
                        help="also trace the largest chunk with JAX's profiler and sum its kernels by kind")
    parser.add_argument("--whole", action="store_true",
                        help="also time whole processes: the sweep, cold and warm cache, and the PyTorch loop")
    parser.add_argument("--charts", action="store_true", help="with --whole: the sweep draws its charts")
    parser.add_argument("--matmul-seconds", type=float, default=3.0, help="time for the dense matmul (default 3)")
    parser.add_argument("--matmul-sizes", default="", help="its square sizes, comma-separated (default: by the device)")
    parser.add_argument("--out", metavar="FILE", help="JSON file for the figures (default: results/bench/<name>.json)")
    args = parser.parse_args(argv)
    try:
        args.file = args.file or "sweeps/quickstart.toml"
        config = load(args.file, args.overrides)
        runs = runs_table.expand(config)
        sizes = matmul_sizes(args.matmul_sizes)
    except (ConfigError, ValueError) as err:
        print(f"benchmarks.bench: error: {err}", file=sys.stderr)
        return 2
    # Whole processes first, while this process has done no work whose threads could still spin.
    whole = whole_processes(args, config, runs) if args.whole else None
    tuning.split_cpu()
    tuning.enable_compile_cache()
    static, group = next(planning.groups(runs))
    plan = []  # the first chunks that grokjax sweep would train, up to --runs runs
    for c in sweep.planned(group, config.source, machine.local(), args.chunk_size, tuning.default_step()):
        if plan and sum(len(p.runs) for p in plan) + len(c.runs) > max(1, args.runs):
            break
        plan.append(c)
    chunk = pd.concat([c.runs for c in plan])
    batches = [(c.static, runs_table.hparams(c.runs, pad_to=c.size)) for c in plan]
    singles = [(c.static, jax.tree_util.tree_map(lambda x, i=i: x[i], runs_table.hparams(c.runs)))
               for c in plan for i in range(len(c.runs))]
    firsts = list({s: (s, h) for s, h in reversed(singles)}.values())  # one run per compiled program
    n, run_steps = len(chunk), len(chunk) * static.steps

    cold_vmapped = timed(lambda: [runner.train(s, h) for s, h in batches])
    vmapped = timed(lambda: [runner.train(s, h) for s, h in batches])
    cold_serial = timed(lambda: [runner.train(s, h, vectorized=False) for s, h in firsts])
    serial = timed(lambda: [runner.train(s, h, vectorized=False) for s, h in singles])
    peak = matmul_flops(args.matmul_seconds, sizes=sizes)
    flops = model_flops(static, chunk)
    formulations = formulation_figures(max(plan, key=lambda c: len(c.runs))) if args.formulations else None
    torch_result = "skipped (--no-torch)" if args.no_torch else isolated(torch_serial, static, chunk)
    profile = profiled(max(plan, key=lambda c: len(c.runs))) if args.profile else None

    report: dict[str, Any] = {
        "command": "python -m benchmarks.bench " + " ".join(argv if argv is not None else sys.argv[1:]),
        "date": dt.date.today().isoformat(),
        "machine": {**device_info(), "jax": jax.__version__},
        "sweep": config.name,
        "runs": n,
        "p": static.p,
        "width": static.width,
        "steps": static.steps,
        "chunk_size": plan[0].size,
        "train_slots": [c.static.train_slots for c in plan],
        "useful_work": planning.useful_work(plan),
        "grokjax_vmapped": {"run_steps_per_s": run_steps / vmapped, "seconds": vmapped, "first_call_s": cold_vmapped},
        "grokjax_serial": {"run_steps_per_s": run_steps / serial, "seconds": serial, "first_call_s": cold_serial},
        "matmul": peak,
        "model_flops": flops,
        "model_flops_per_s": flops / vmapped,
        "fraction_of_matmul": flops / vmapped / peak["flops_per_s"],
    }
    if isinstance(torch_result, str):
        report["pytorch_serial"] = {"skipped": torch_result}
    else:
        import torch

        report["pytorch_serial"] = {"run_steps_per_s": run_steps / torch_result[0], "seconds": torch_result[0],
                                    "first_call_s": torch_result[1], "torch": torch.__version__,
                                    "threads": torch.get_num_threads()}
    report["step"] = planning.formulations(plan, machine.local())
    if formulations is not None:
        report["formulations"] = formulations
    if whole is not None:
        report["whole_process"] = whole
    if profile is not None:
        report["profile"] = profile

    print(summary(report))
    out = Path(args.out) if args.out else Path("results") / "bench" / f"{config.name}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"Written: {out}")
    return 0


def profiled(chunk: Any) -> dict[str, Any]:
    """The chunk's kernel time by kind (`benchmarks.kernels`), its trace kept in a fresh temporary folder."""
    folder = Path(tempfile.mkdtemp(prefix="grokjax-trace-"))
    path, wall = kernels.trace(chunk.static, runs_table.hparams(chunk.runs, pad_to=chunk.size), folder)
    way = tuning.step_name(chunk.static.formulation, chunk.static.run_block, chunk.static.devices)
    return {"chunk": f"{len(chunk.runs)} runs, {chunk.static.train_slots or 'all'} slots, {way}", "trace": str(path),
            "cores": tuning.cores() if jax.default_backend() == "cpu" else jax.local_device_count(),
            **kernels.kernel_time(path, wall)}


def summary(r: dict[str, Any]) -> str:
    m = r["machine"]
    lines = [
        f"{r['sweep']}: {r['runs']} runs of p = {r['p']}, width = {r['width']}, {r['steps']} steps, "
        f"on {m['platform']} ({m['device_kind']}; {m['cpu']}, {m['cpu_count']} cores), {r['date']}",
    ]
    vm, se, pt = r["grokjax_vmapped"], r["grokjax_serial"], r["pytorch_serial"]
    lines.append(f"  grokjax vmapped ({r['chunk_size']} runs a call): {vm['run_steps_per_s']:10,.0f} run-steps/s "
                 f"({vm['seconds']:.1f} s; first pass {vm['first_call_s']:.1f} s with compile; "
                 f"{r['useful_work']:.0%} of the step's examples are training examples)")
    lines.append(f"  grokjax serial (one run a call):  {se['run_steps_per_s']:10,.0f} run-steps/s "
                 f"({se['seconds']:.1f} s; first runs {se['first_call_s']:.1f} s with compile)")
    if "skipped" in pt:
        lines.append(f"  PyTorch serial: skipped: {pt['skipped']}")
    else:
        lines.append(f"  PyTorch serial (torch {pt['torch']}, {pt['threads']} threads): {pt['run_steps_per_s']:10,.0f} "
                     f"run-steps/s ({pt['seconds']:.1f} s)")
    ratios = f"  vmapped / grokjax serial: {vm['run_steps_per_s'] / se['run_steps_per_s']:.2f}x"
    if "skipped" not in pt:
        ratios += f"; vmapped / PyTorch serial: {vm['run_steps_per_s'] / pt['run_steps_per_s']:.2f}x"
    lines.append(ratios)
    if np.isfinite(r["model_flops"]):
        lines.append(f"  model FLOP/s (vmapped): {r['model_flops_per_s'] / 1e9:,.1f} GFLOP/s = "
                     f"{r['fraction_of_matmul']:.0%} of a dense {r['matmul']['size']}^2 float32 matmul "
                     f"({r['matmul']['flops_per_s'] / 1e9:,.1f} GFLOP/s on the same device)")
    lines.append("  step: " + "; ".join(f"{s['formulation']}, run block {s['run_block'] or 'all'}, "
                                        f"{s.get('devices', 1)} device(s)" for s in r["step"]))
    if "formulations" in r:
        f = r["formulations"]
        timings = ", ".join(f"{name} {seconds * 1000:.1f} ms" for name, seconds in f["seconds"].items())
        lines.append(f"  candidates (formulation:run block[@devices], a few steps): {timings}; fastest: "
                     + tuning.step_name(f["formulation"], f["run_block"], f["devices"]))
    if "whole_process" in r:
        w = r["whole_process"]
        line = (f"  whole processes, all {w['runs']} runs{' with charts' if w['charts'] else ''}: grokjax "
                f"{_seconds(w['grokjax_cold_cache_s'])} cold cache, {_seconds(w['grokjax_warm_cache_s'])} warm")
        if "pytorch_s" in w:
            line += f"; PyTorch loop {_seconds(w['pytorch_s'])}"
            if all(isinstance(w[k], float) for k in ("pytorch_s", "grokjax_cold_cache_s", "grokjax_warm_cache_s")):
                line += (f"; PyTorch / grokjax: {w['pytorch_s'] / w['grokjax_cold_cache_s']:.2f}x cold, "
                         f"{w['pytorch_s'] / w['grokjax_warm_cache_s']:.2f}x warm")
        lines.append(line)
    if "profile" in r:
        lines.append(kernels.summary(r["profile"]))
    return "\n".join(lines)


def _seconds(value: float | str) -> str:
    return f"{value:.1f} s" if isinstance(value, float) else value


if __name__ == "__main__":
    sys.exit(main())
