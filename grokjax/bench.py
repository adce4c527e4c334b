"""`python -m grokjax.bench [SWEEP]`: the same runs vmapped in one program vs. trained one at a time.

Both use grokjax's own jitted code (`train.train`, vectorized or not); each is
timed warm, after a first call that compiles, so the figures are training speed.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
import time

import jax

from grokjax import grid
from grokjax.config import ConfigError, load
from grokjax.chunks import auto_chunk_size
from grokjax.train import train


def timed(fn) -> float:
    start = time.perf_counter()
    jax.block_until_ready(fn())
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m grokjax.bench", description=__doc__)
    parser.add_argument("file", nargs="?", default="sweeps/quickstart.toml", help="sweep file (default: the quickstart)")
    parser.add_argument("--runs", type=int, default=32, help="how many of its runs to time (default 32)")
    parser.add_argument("--chunk-size", type=int, help="runs per vmapped call (default: as grokjax sweep)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args(argv)
    try:
        config = load(args.file, args.overrides)
        runs = grid.expand(config)
    except ConfigError as err:
        print(f"grokjax.bench: error: {err}", file=sys.stderr)
        return 2
    static, group = next(grid.groups(runs))
    chunk = group.iloc[: max(1, args.runs)]
    size = args.chunk_size or auto_chunk_size(static, len(chunk), config.source)
    chunks = [grid.hparams(chunk.iloc[i : i + size], pad_to=size) for i in range(0, len(chunk), size)]
    n, run_steps = len(chunk), len(chunk) * static.steps
    hp = grid.hparams(chunk)
    singles = [jax.tree_util.tree_map(lambda x, i=i: x[i], hp) for i in range(n)]

    cold_vmapped = timed(lambda: train(static, chunks[0]))
    vmapped = timed(lambda: [train(static, c) for c in chunks])
    cold_serial = timed(lambda: train(static, singles[0], vectorized=False))
    serial = timed(lambda: [train(static, h, vectorized=False) for h in singles])

    device = jax.devices()[0]
    print(f"{config.name}: {n} runs of p = {static.p}, width = {static.width}, {static.steps} steps, "
          f"on {device.platform} ({device.device_kind}, {os.cpu_count()} CPU cores), {dt.date.today()}")
    print(f"  vmapped, {size} runs a call: {run_steps / vmapped:10,.0f} run-steps/s  ({vmapped:.1f} s; "
          f"first call {cold_vmapped:.1f} s with compile)")
    print(f"  serial, one run a call:  {run_steps / serial:10,.0f} run-steps/s  ({serial:.1f} s; "
          f"first run {cold_serial:.1f} s with compile)")
    print(f"  speed-up: {serial / vmapped:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
