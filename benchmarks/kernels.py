"""Where a chunk's training time goes on the device: `python -m benchmarks.bench FILE --profile`.

Two segments of the chunk (its compiled program, as `grokjax sweep` runs it) are traced with
JAX's profiler; the trace (TensorBoard's or Perfetto's format) is kept, and its kernels are
summed by kind: the time XLA's threads (or an accelerator's streams) spend in matmuls,
elementwise fusions, gathers, scatters, copies and collectives, and that time over the traced
wall time: how many cores were busy in kernels on average. Read on the 2-core CPU, it says
whether a faster step would need faster kernels or less overhead around them.
"""

from __future__ import annotations

import collections
import glob
import gzip
import json
import time
from pathlib import Path
from typing import Any

import jax

from grokjax.core.types import Hparams, Static
from grokjax.engine import runner

# Events that hold kernels rather than being one (XLA CPU's control flow and thread-pool bookkeeping).
CONTAINERS = ("conditional", "cond", "while", "call", "ThunkExecutor", "Threadpool", "end:", "Wait", "Rendezvous")
KINDS = (  # first match wins: "all-gather" is a collective, not a gather
    ("collectives", ("all-gather", "all-reduce", "all-to-all", "reduce-scatter", "collective")),
    ("matmuls", ("dot", "gemm", "ynn", "xnn", "cublas", "cutlass", "matmul", "xmma", "nvjet")),  # nvjet: cuBLASLt
    ("scatters", ("scatter",)),
    ("gathers", ("gather",)),
    ("copies", ("copy", "transpose")),
)


def trace(static: Static, hp: Hparams, folder: Path, segments: int = 2) -> tuple[Path, float]:
    """Trace `segments` segments of these runs, compiled and warmed up first: the trace file, and the
    segments' wall time."""
    init, segment = runner.programs(static, hp)
    hp = runner.shard_runs(hp, runner.local_mesh(static.devices))
    state, metrics = segment(init(hp), hp, 0)
    jax.block_until_ready(metrics)
    with jax.profiler.trace(str(folder), create_perfetto_trace=True):
        clock = time.perf_counter()
        for _ in range(segments):
            state, metrics = segment(state, hp, 0)
        jax.block_until_ready(metrics)
        wall = time.perf_counter() - clock
    return Path(sorted(glob.glob(str(folder / "plugins" / "profile" / "*" / "perfetto_trace.json.gz")))[-1]), wall


def kind(name: str) -> str:
    lower = name.lower()
    return next((k for k, words in KINDS if any(w in lower for w in words)), "fusions")


def kernel_time(path: Path, wall: float) -> dict[str, Any]:
    """Kernel seconds in a trace by kind, their sum, and that sum over the traced `wall` seconds."""
    events = json.load(gzip.open(path))["traceEvents"]
    names = {(e["pid"], e.get("tid")): e["args"]["name"] for e in events
             if e.get("ph") == "M" and e["name"] in ("process_name", "thread_name")}
    by_kind: collections.Counter = collections.Counter()
    for e in events:
        on_device = (names.get((e.get("pid"), e.get("tid")), "").startswith("tf_XLA")  # XLA's CPU threads
                     or names.get((e.get("pid"), None), "").startswith("/device:"))  # an accelerator's streams
        if e.get("ph") == "X" and on_device and not e["name"].startswith(CONTAINERS):
            by_kind[kind(e["name"])] += e["dur"] / 1e6
    busy = sum(by_kind.values())
    return {"wall_s": wall, "in_kernels_s": busy, "cores_in_kernels": busy / wall, "kernels_s": dict(by_kind.most_common())}


def summary(profile: dict[str, Any]) -> str:
    shares = ", ".join(f"{k} {v / profile['in_kernels_s']:.0%}" for k, v in profile["kernels_s"].items())
    return (f"  profile ({profile['chunk']}; trace in {profile['trace']}): {profile['cores_in_kernels']:.2f} "
            f"of {profile['cores']} cores (or devices) in kernels on average; kernel time: {shares}")
