"""How many runs go into one compiled call: what fits the devices' free memory.

A chunk's memory grows linearly with its runs (each run's arrays get a leading
run axis), so the chunk size is the free memory we allow ourselves divided by
one run's footprint. `run_bytes` estimates that footprint from shapes alone;
tests/test_chunks.py checks it against XLA's own accounting of the compiled
program (`memory_analysis`) for every model kind.
"""

from __future__ import annotations

import math
import os

import jax

from grokjax import models
from grokjax.config import ConfigError
from grokjax.tasks import is_modular, num_classes, num_examples
from grokjax.train import Static, run_block

MEMORY_FRACTION = 0.5  # of each device's free memory that a chunk may fill: the safety margin
# On CPU, chunks past a few blocks of runs gain nothing (the runs of a block share the cores;
# blocks run one after another) and cost memory and padding.
CPU_MAX_CHUNK = 32


def example_floats(static: Static) -> int:
    """Activations of one example through the model (hidden units, logits, inputs), in floats."""
    classes = num_classes(static)
    if static.model == "mlp":
        return (static.depth - 1) * static.width + classes
    if static.model == "pair_mlp":
        return static.width + classes
    if static.model == "parity_mlp":
        return static.n_bits + 1 + static.width + classes
    e = static.embed_size  # transformer: three positions in, the last one through attention and MLP
    return 8 * e + 3 * static.heads + static.width + classes


def run_bytes(static: Static) -> int:
    """Estimated peak memory of one run in a vmapped chunk, in bytes (float32).

    Weights, gradients, updates and optimizer moments (8 per parameter); a training
    step's activations and their gradients (4 per example float, over the examples a
    step reads); the logged step's forward pass over every example (2 per example
    float); the run's data (order, masks and labels; parity's bit strings).
    """
    examples = num_examples(static)
    step_examples = static.batch_size or static.train_slots or examples
    floats = 8 * models.param_count(static) + example_floats(static) * (4 * step_examples + 2 * examples)
    data = examples * (11 + (0 if is_modular(static.task) else static.n_bits))
    return 4 * floats + data + 65536


def free_bytes(device: jax.Device) -> int:
    """Free memory of a device; on CPU, the host's available memory."""
    stats = device.memory_stats() or {}
    if "bytes_limit" in stats:
        return int(stats["bytes_limit"] - stats.get("bytes_in_use", 0))
    try:
        with open("/proc/meminfo") as f:
            info = dict(line.split(":", 1) for line in f)
        return int(info["MemAvailable"].split()[0]) * 1024
    except (OSError, KeyError, ValueError):
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")


def auto_chunk_size(static: Static, n_runs: int, source: str) -> int:
    """Runs per call: as many as fit MEMORY_FRACTION of every local device, a multiple of the device count.

    On CPU the devices share the host's memory, and the size is also capped (CPU_MAX_CHUNK per device).
    """
    devices = jax.local_devices()
    per_run = run_bytes(static)
    if devices[0].platform == "cpu":
        budget, cap = MEMORY_FRACTION * free_bytes(devices[0]) / len(devices), CPU_MAX_CHUNK
    else:
        budget, cap = MEMORY_FRACTION * min(free_bytes(d) for d in devices), n_runs
    if per_run > budget:
        raise ConfigError(
            f"{source}: one run at p = {static.p}, width = {static.width} needs about {per_run / 2**30:.1f} GiB; "
            f"a device has {budget / 2**30:.1f} GiB to give (half its free memory); lower task.p or model.width"
        )
    per_device = min(math.ceil(n_runs / len(devices)), cap, int(budget // per_run))
    return per_device * len(devices)


def padded_size(size: int) -> int:
    """A chunk size rounded up to a multiple of the local device count and of `train.run_block()`
    (padding runs fill the rest)."""
    step = math.lcm(jax.local_device_count(), run_block() or 1)
    return -(-size // step) * step
