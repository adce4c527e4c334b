"""The training step compiled at each of XLA's CPU backend optimization levels: compile time, run time, and how far
its metrics move against XLA's default level. Why the step keeps
XLA's default level while a run's init compiles at level 1 (`runner.INIT_OPTIONS`).

For each chunk named (a sweep file and the chunk's index in its plan), its segment program is lowered once and
compiled with XLA's defaults and at levels 1 and 0, with JAX's compilation caches off and cleared, three times in
turn (the fastest counts: compile times move by a third between two compiles of one program); each compiled program
trains the same initial state for one segment (warm-up), then five segments, timed.

    python -m benchmarks.compile_levels sweeps/bench/grid64.toml:0 sweeps/bench/grid64.toml:2 sweeps/quickstart.toml:0
"""

from __future__ import annotations

import argparse
import sys
import time

import jax
import numpy as np

from grokjax.config.sweep_file import ConfigError, load
from grokjax.engine import machine, plan, runner, runs_table, tuning
from grokjax.engine.plan import Chunk
from grokjax.engine.runs_table import hparams


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.compile_levels", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("chunks", nargs="+", metavar="FILE:INDEX", help="a sweep file and a chunk of its plan")
    args = parser.parse_args(argv)
    tuning.split_cpu()
    try:
        chunks = [planned_chunk(item) for item in args.chunks]
    except (ConfigError, ValueError) as err:
        print(f"benchmarks.compile_levels: error: {err}", file=sys.stderr)
        return 2
    jax.config.update("jax_enable_compilation_cache", False)
    for file, index, chunk in chunks:
        hp = hparams(chunk.runs, pad_to=chunk.size)
        shapes, placed = runner._state_shape(chunk.static, hp)
        start = runner.init_runs(runner._compile_init(chunk.static), runner.local_mesh(chunk.static.devices), hp)
        lowered = runner.compiled(chunk.static)[1].lower(shapes, placed, 0)
        print(f"{file} chunk {index}: {len(chunk.runs)} runs, {chunk.static.formulation}, "
              f"{chunk.static.train_slots} slots, run block {chunk.static.run_block}")
        options = {None: {}, 1: {"xla_backend_optimization_level": 1}, 0: {"xla_backend_optimization_level": 0}}
        compile_s: dict[int | None, list[float]] = {level: [] for level in options}
        for _ in range(3):
            for level, option in options.items():
                jax.clear_caches()
                began = time.perf_counter()
                lowered.compile(compiler_options=option)
                compile_s[level].append(time.perf_counter() - began)
        metrics = {}
        for level, option in options.items():
            program = lowered.compile(compiler_options=option)
            state, _ = program(jax.tree.map(lambda x: x.copy(), start), placed, 0)
            jax.block_until_ready(state)
            began = time.perf_counter()
            for i in range(1, 6):
                state, out = program(state, placed, i * chunk.static.log_every)
            jax.block_until_ready(state)
            metrics[level] = jax.device_get(out)
            moved = max(float(np.max(np.abs(metrics[level][k] - metrics[None][k]))) for k in metrics[None])
            print(f"  level {'default' if level is None else level}: compiled in {min(compile_s[level]):.2f} s "
                  f"(of {', '.join(f'{t:.2f}' for t in compile_s[level])}), "
                  f"{(time.perf_counter() - began) / 5 * 1000:.1f} ms a segment, metrics moved {moved:.2g}")
    return 0


def planned_chunk(item: str) -> tuple[str, int, Chunk]:
    """(file, index, the chunk) that FILE:INDEX names, as `grokjax sweep` plans the file on this machine."""
    file, _, index = item.rpartition(":")
    if not file or not index.isdigit():
        raise ValueError(f"{item!r}: give FILE:INDEX, a sweep file and a chunk's index in its plan (0, 1, ...)")
    chunks = plan.plan(runs_table.split_sizes(runs_table.expand(load(file))), file, machine.local())
    if int(index) >= len(chunks):
        raise ValueError(f"{item!r}: {file} plans {len(chunks)} chunk(s) here, 0 to {len(chunks) - 1}")
    return file, int(index), chunks[int(index)]


if __name__ == "__main__":
    raise SystemExit(main())
