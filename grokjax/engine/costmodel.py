"""How a chunk's training step is computed, chosen by a cost model of its work: the same on every run.

The ways of computing a step (`training.FORMULATIONS`, and a chunk's runs vmapped all together,
in blocks, or one at a time, split over the devices or on one) train the same runs up to
float32 rounding, not bit for bit. A choice by timing lets the machine's load into a sweep's
numbers: timed while another process loads the machine, a chunk can take another way and its
runs other last digits. This rule reads nothing but the chunk's static config, its run count,
the platform and the device count, so a sweep's tables are a function of its config, the device
kind and count and the versions its provenance records. Timing the ways stays available as an
explicit option (`--step tuned`, `grokjax.engine.tuning`).

The formulation: the one with the least work per step, in FLOP-equivalents,

    examples the step computes x (6 x the weights an example meets after the input layer
                                  + the input layer's cost per example),

where the input layer costs, per example, SCATTER[platform] = (per float, fixed): its floats
gathered forward and scatter-added backward, and the indexing around them, whatever the width
(gather); a matmul over the one-hot inputs, 8 p x width (onehot, forward and weight gradient);
or a broadcast add, 2 x width (grid). SCATTER is fitted per platform on every way timed on the
sweep files' end chunks (benchmarks/steps.py; docs/performance.md, "How the step
is chosen", compares this rule's picks with the measured best).

The layout, per platform: on CPU, one run at a time on each device (a run's own 2-D matmuls are
faster kernels there than a block's batched ones; minibatch runs, whose steps are small, in
blocks of 8), split over the devices where each gets a run; on accelerators, all runs vmapped
over all devices (a batched matmul is what fills them).
"""

from __future__ import annotations

import functools

from grokjax.core import models
from grokjax.core.tasks import num_classes, num_examples, shape_of
from grokjax.core.types import Static

# FLOP-equivalents of a gathered example's input: (per float gathered forward and scatter-added backward,
# fixed per example). cpu: fitted on the sweep files' end chunks (docs/performance.md); accelerators: an
# estimate (a scattered float moves 8 bytes where a matmul does hundreds of FLOPs) until a device's ways
# are timed.
SCATTER = {"cpu": (8.0, 3500.0), "gpu": (64.0, 0.0), "tpu": (64.0, 0.0)}
# Runs vectorized together per device (`Static.run_block`: 1 one at a time, 0 all), full batch and minibatch.
RUN_BLOCK = {"cpu": (1, 8), "gpu": (0, 0), "tpu": (0, 0)}


def candidates(static: Static) -> list[str]:
    """The formulations that can compute this chunk's step."""
    if static.batch_size:
        return ["gather", "onehot"] if static.model == "mlp" else ["gather"]
    if not static.train_slots:
        return ["grid"]  # the rung reaches every example: gathering saves nothing
    return ["gather", "onehot", "grid"] if static.model == "mlp" else ["gather", "grid"]


@functools.cache
def _body_weights(static: Static) -> int:
    """Weights an example meets after the input layer (the mlp's hidden and output layers; for other models,
    all of them)."""
    if static.model == "mlp":
        return static.width * static.width * (static.depth - 2) + static.width * num_classes(static)
    return models.param_count(static)


def _input_floats(static: Static) -> int:
    """Floats of one example's input representation (what gather looks up and scatter-adds)."""
    if static.model == "transformer":
        return 2 * static.embed_size
    if static.model == "parity_mlp":
        return static.n_bits
    if static.model in ("mlp", "pair_mlp"):
        return 2 * static.width
    return shape_of(static)[2]  # a model of the user's own: the example's tokens


def cost(static: Static, formulation: str, platform: str) -> float:
    """FLOP-equivalents per run of one training step computed as `formulation` (see the module docstring)."""
    if formulation == "grid":
        examples = static.batch_size or num_examples(static)
        first = 2 * static.width if static.model in models.BUILTIN else 0
    else:
        examples = static.batch_size or static.train_slots or num_examples(static)
        per_float, fixed = SCATTER.get(platform, SCATTER["gpu"])
        first = 8 * static.p * static.width if formulation == "onehot" else per_float * _input_floats(static) + fixed
    return examples * (6 * _body_weights(static) + first)


def choose(static: Static, runs: int, platform: str, devices: int) -> tuple[str, int, int]:
    """(formulation, run block, devices; 0 all) for a chunk of `runs` runs on `devices` local devices."""
    form = min(candidates(static), key=lambda f: cost(static, f, platform))
    split = devices > 1 and runs >= devices
    per_device = -(-runs // devices) if split else runs
    block = RUN_BLOCK.get(platform, RUN_BLOCK["gpu"])[bool(static.batch_size)]
    block = block if block < per_device else 0  # a block of all a device's runs is all of them vmapped
    return form, block, 0 if split or devices == 1 else 1
