"""The plan of a sweep: its runs cut into chunks, each trained by one compiled call.

Runs that share their static fields form a group (one model shape); within a group,
runs are chunked per rung of training slots (`train_slots`), so each chunk gathers
about as many training examples as its runs have; chunks are as large as the devices'
memory allows; and each chunk's step is computed the way the cost model picks
(`grokjax.engine.costmodel`), or as timed on this machine (--step tuned: `tuning.time_ends`
measures, and its timings come in as data). Data in, data out: the runs, the machine's
devices (`machine.Machine`: their kind, count and size, never their load) and any timings
give the chunks, so one config on one kind of machine is always planned alike. The plan is
data too (`to_json`): a resumed sweep reads it back and trains exactly the same chunks, the
same way, so it gets the same numbers.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import jax
import numpy as np
import pandas as pd

from grokjax.config.fields import OPEN_COLUMNS, STATIC_COLUMNS
from grokjax.config.sweep_file import ConfigError
from grokjax.core import models
from grokjax.core.registry import task_of
from grokjax.core.tasks import num_classes, num_examples
from grokjax.core.training import step_examples
from grokjax.core.types import Static
from grokjax.engine import costmodel, runs_table, tuning
from grokjax.engine.machine import Machine
from grokjax.engine.runner import padded_size

MEMORY_FRACTION = 0.5  # of each device's memory that a chunk may fill: the safety margin
# On CPU, chunks past a few dozen runs gain nothing (the cores are busy with a few) and cost memory.
CPU_MAX_CHUNK = 32
SLOT_STEPS_PER_DOUBLING = 4  # train_slots take values 8 * 2^(k/4): at most 19% padding, few distinct shapes


@dataclass(frozen=True)
class Chunk:
    """Runs trained by one compiled call: `runs` padded to `size` (a multiple of the devices it is split over)."""

    index: int  # position among all chunks of the sweep; names its params file and its record
    static: Static
    runs: pd.DataFrame
    size: int


def groups(runs: pd.DataFrame) -> Iterator[tuple[Static, pd.DataFrame]]:
    """(static config, its runs) for each distinct static combination, in run order.

    The static config has train_slots = 0; each chunk sets its runs' rung (`train_slots`).
    """
    keys = [*STATIC_COLUMNS, *OPEN_COLUMNS, "beta1", "beta2", "ipr_every"]  # ipr_every: the neuron snapshots
    derived = [runs.dropout > 0, runs.grokfast_lambda > 0]  # has_dropout, has_grokfast
    for _, group in runs.groupby([*(runs[k] for k in keys), *derived], sort=False):
        yield runs_table.static_of(group.iloc[0]), group


def train_slots(static: Static, n_train: int) -> int:
    """Examples a full-batch step gathers for runs of up to n_train training examples: a rung of a ladder.

    The ladder (8 * 2^(k/4)) bounds the padding slots to 19% while keeping the number of
    distinct shapes, hence of compiled programs, small. When the rung reaches the number
    of examples, gathering saves nothing and 0 is returned: the step then computes all
    examples (for the mlp, the broadcast grid, with no gather or scatter) and masks the
    loss. Minibatch runs gather their batches instead (0).
    """
    if static.batch_size:
        return 0
    k = math.ceil(SLOT_STEPS_PER_DOUBLING * math.log2(max(n_train, 8) / 8) - 1e-9)
    slots = -(-int(8 * 2 ** (k / SLOT_STEPS_PER_DOUBLING)) // 8) * 8
    while slots < n_train:  # guard the float rounding of the ladder
        slots += 8
    return 0 if slots >= num_examples(static) else slots


def plan(runs: pd.DataFrame, source: str, machine: Machine, chunk_size: int | None = None, step: str = "auto",
         first: int = 0, timings: dict[int, dict[str, float]] | None = None) -> list[Chunk]:
    """All chunks of the sweep: per static group, per rung of training slots, in run order, indexed from `first`
    (a refinement round's chunks follow those already in the folder, so records and params keep one name each).

    Chunks fit `machine`'s memory at the group's largest runs, and each rung is cut into chunks
    of equal size, so no chunk is mostly padding runs. Each chunk's step is computed
    the way the cost model picks (step="auto", `costmodel.choose`), the fastest way in
    `timings` (step="tuned": seconds per run of each way, measured on the chunks `ends` names,
    keyed by their index; `tuning.time_ends` measures them), or as `step` says
    (`tuning.parse_step`: e.g. "gather", "onehot:8").
    """
    chunks = cut(runs, source, machine, chunk_size, first)
    if step == "auto":
        chunks = [_with_step(c, *costmodel.choose(c.static, c.size, machine.platform, machine.devices), machine)
                  for c in chunks]
    elif step == "tuned":
        if timings is None:
            raise ValueError("step = \"tuned\" plans from timings: measure plan.ends(cut(...)) with tuning.time_ends")
        chunks = [c for group in by_group(chunks) for c in fastest(group, timings, machine)]
    else:
        way = tuning.parse_step(step, source)
        chunks = [_with_step(c, *way, machine) for c in chunks]
    return pooled(chunks, source, machine, chunk_size, first)


def pooled(chunks: list[Chunk], source: str, machine: Machine, chunk_size: int | None, first: int) -> list[Chunk]:
    """The chunks, those that one program computes (the rungs the grid computes alike) pooled and cut again into
    equal chunks: each distinct static config and chunk size is a compile, so fewer of them train sooner."""
    out: list[Chunk] = []
    for group in by_group(chunks):
        n = sum(len(c.runs) for c in group)
        most = min(n, chunk_size or auto_chunk_size(group[0].static.group, n, source, machine))
        programs: dict[Static, list[pd.DataFrame]] = {}
        for c in group:
            programs.setdefault(c.static, []).append(c.runs)
        for static, parts in programs.items():
            part = pd.concat(parts)
            size = math.ceil(len(part) / math.ceil(len(part) / most))
            for start in range(0, len(part), size):
                out.append(Chunk(first + len(out), static, part.iloc[start : start + size],
                                 padded_size(size, static.devices or machine.devices)))
    return out


def cut(runs: pd.DataFrame, source: str, machine: Machine, chunk_size: int | None = None,
        first: int = 0) -> list[Chunk]:
    """The chunks of `plan`, each computed the default way for its rung (its step not chosen yet)."""
    chunks: list[Chunk] = []
    for static, group in groups(runs):
        rungs = group.n_train.map(lambda n, s=static: train_slots(s, int(n)))
        widest = dataclasses.replace(static, train_slots=0)  # the largest a step can be, whatever the formulation
        most = min(len(group), chunk_size or auto_chunk_size(widest, len(group), source, machine))
        for rung in sorted(rungs.unique(), key=lambda r: r or math.inf):  # smallest first, the grid (0) last
            part = group[rungs == rung]
            size = math.ceil(len(part) / math.ceil(len(part) / most))  # padded for its devices by _with_step
            chunk_static = dataclasses.replace(static, train_slots=int(rung), formulation="gather" if rung else "grid")
            for start in range(0, len(part), size):
                chunks.append(Chunk(first + len(chunks), chunk_static, part.iloc[start : start + size], size))
    return chunks


def by_group(chunks: list[Chunk]) -> list[list[Chunk]]:
    """The chunks of each static group (the same static config but for the rung and the step), in order."""
    found: dict[Static, list[Chunk]] = {}
    for c in chunks:
        found.setdefault(c.static.group, []).append(c)
    return list(found.values())


def ends(chunks: list[Chunk]) -> list[list[Chunk]]:
    """Per static group, the chunks --step tuned measures: the largest chunk of the smallest and of the largest
    rung, where gathering gains most and least and a chunk's runs most and least fill the cores."""
    out = []
    for group in by_group(chunks):
        rungs = sorted({c.static.train_slots for c in group if c.static.train_slots}) or [0]
        out.append([max((c for c in group if c.static.train_slots == rung), key=lambda c: len(c.runs))
                    for rung in dict.fromkeys((rungs[0], rungs[-1]))])
    return out


def fastest(group: list[Chunk], timings: dict[int, dict[str, float]], machine: Machine) -> list[Chunk]:
    """One static group's chunks, each computed the way `timings` (seconds per run of each way, on the group's
    `ends`, by chunk index) says is fastest for its rung: a rung between the ends takes the way whose times,
    interpolated linearly in the rung's training slots, are lowest there (a step's cost is about linear in
    its examples). Chunks of the grid rung (every example) take the largest rung's layout."""
    measured = ends(group)[0]  # the smallest rung's chunk, then the largest's (one where they are the same)
    low_end, high_end = measured[0], measured[-1]
    rungs = (low_end.static.train_slots, high_end.static.train_slots)
    low, high = (({tuning.parse_step(name, "measured"): t for name, t in timings[c.index].items()})
                 for c in (low_end, high_end))

    def best(rung: int) -> tuple[str, int, int]:
        w = (rung - rungs[0]) / (rungs[1] - rungs[0]) if rungs[1] > rungs[0] else 0.0
        common = set(low) & set(high)
        return min(common, key=lambda way: (1 - w) * low[way] + w * high[way]) if common else min(low, key=low.get)

    return [_with_step(c, *best(c.static.train_slots or rungs[1]), machine) for c in group]


def _with_step(chunk: Chunk, formulation: str, run_block: int, devices: int, machine: Machine) -> Chunk:
    """The chunk computed this way (a rung that holds every example is computed as the grid), padded to a
    multiple of its devices."""
    static = computed_as(chunk.static, formulation, run_block, devices)
    return dataclasses.replace(chunk, static=static, size=padded_size(chunk.size, devices or machine.devices))


def computed_as(static: Static, formulation: str, run_block: int, devices: int) -> Static:
    """`static` computed this way; the grid computes every example whatever the rung, so its rung is 0 (one
    program for all the rungs it computes), as is a rung that holds every example."""
    formulation = formulation if static.train_slots else "grid"
    slots = static.train_slots if formulation != "grid" else 0
    return dataclasses.replace(static, train_slots=slots, formulation=formulation, run_block=run_block, devices=devices)


def to_json(chunks: list[Chunk]) -> list[dict[str, Any]]:
    """The plan as data: each chunk's run ids, padded size and way of computing its step."""
    return [{"run_ids": c.runs.run_id.tolist(), "size": c.size, "formulation": c.static.formulation,
             "run_block": c.static.run_block, "devices": c.static.devices} for c in chunks]


def from_json(saved: list[dict[str, Any]], runs: pd.DataFrame, machine: Machine, first: int = 0) -> list[Chunk]:
    """The chunks of a saved plan (`to_json`), rebuilt on these runs, indexed from `first` as planned, padded for
    `machine`'s devices."""
    chunks = []
    for index, entry in enumerate(saved, start=first):
        part = runs.loc[entry["run_ids"]]
        static = runs_table.static_of(part.iloc[0])
        devices = entry.get("devices", 0)  # plans of before the device split ran on all devices
        static = computed_as(dataclasses.replace(static, train_slots=train_slots(static, int(part.n_train.max()))),
                             entry["formulation"], entry["run_block"], devices)
        chunks.append(Chunk(index, static, part, padded_size(entry["size"], devices or machine.devices)))
    return chunks


def useful_work(chunks: list[Chunk]) -> float:
    """Fraction of the training-step examples computed that are real training examples (not padding
    slots, test examples or padding runs), over these chunks; what a step's compute is worth."""
    useful = computed = 0
    for chunk in chunks:
        static = chunk.static
        computed += chunk.size * step_examples(static) * static.steps
        useful += int(np.minimum(chunk.runs.n_train, static.batch_size or chunk.runs.n_train).sum()) * static.steps
    return round(useful / computed, 4) if computed else 1.0


# --- memory ---------------------------------------------------------------------------------


def example_floats(static: Static) -> int:
    """Activations of one example through the model (hidden units, logits, inputs), in floats."""
    classes = num_classes(static)
    if static.model == "mlp":
        return (static.depth - 1) * static.width + classes
    if static.model == "pair_mlp":
        return static.width + classes
    if static.model == "parity_mlp":
        return static.n_bits + 1 + static.width + classes
    if static.model == "transformer":  # two positions in (and their keys and values), the last through the MLP
        return 11 * static.embed_size + 2 * static.heads + static.width + classes
    return models.example_floats(static)


@functools.cache
def drawn_bytes(static: Static) -> int:
    """Bytes of one example's row where the task draws rows per run (`Task.draw`); 0 where runs share them."""
    task = task_of(static)
    if task.draw is None:
        return 0
    inputs, _ = jax.eval_shape(task.draw, jax.random.key(0))
    return int(inputs.shape[1]) * inputs.dtype.itemsize


def run_bytes(static: Static) -> int:
    """Estimated peak memory of one run in a vmapped chunk, in bytes (float32).

    Weights, gradients, updates and optimizer moments (8 per parameter; with Grokfast, 1
    more for its average or `grokfast_window` more for its window); a training step's
    activations and their gradients (4 per example float, over the examples a step reads);
    a float64 loss's copies of the logits and their gradients (4 floats per logit); the
    logged step's forward pass over every example (2 per example float); the run's data
    (order, masks and labels; the rows a task draws per run).
    """
    examples = num_examples(static)
    per_param = 8 + static.has_grokfast * (static.grokfast_window if static.grokfast_filter == "ma" else 1)
    loss64 = 4 * num_classes(static) * step_examples(static) if static.loss_precision == "float64" else 0
    floats = (per_param * models.param_count(static) + loss64
              + example_floats(static) * (4 * step_examples(static) + 2 * examples))
    data = examples * (11 + drawn_bytes(static))
    return 4 * floats + data + 65536


def auto_chunk_size(static: Static, n_runs: int, source: str, machine: Machine) -> int:
    """Runs per call: as many as fit MEMORY_FRACTION of every device's memory, a multiple of the device count.

    On CPU the devices share the host's memory, and the size is also capped (CPU_MAX_CHUNK per device).
    """
    per_run = run_bytes(static)
    if machine.platform == "cpu":
        budget, cap = MEMORY_FRACTION * machine.memory / machine.devices, CPU_MAX_CHUNK
    else:
        budget, cap = MEMORY_FRACTION * machine.memory, n_runs
    if per_run > budget:
        raise ConfigError(
            f"{source}: one run at p = {static.p}, width = {static.width} needs about {per_run / 2**30:.1f} GiB; "
            f"a device has {budget / 2**30:.1f} GiB to give (half its memory); lower task.p or model.width"
        )
    per_device = min(math.ceil(n_runs / machine.devices), cap, int(budget // per_run))
    return per_device * machine.devices


def formulations(chunks: list[Chunk], machine: Machine) -> list[dict[str, Any]]:
    """How each static group's step is computed (for the provenance): one entry per distinct choice."""
    seen: dict[tuple, dict[str, Any]] = {}
    for c in chunks:
        s = c.static
        k = (s.model, s.p, s.width, s.formulation, s.run_block, s.devices)
        entry = seen.setdefault(k, {"model": s.model, "p": s.p, "width": s.width, "formulation": s.formulation,
                                    "run_block": s.run_block, "devices": s.devices or machine.devices,
                                    "chunks": 0})
        entry["chunks"] += 1
    return list(seen.values())
