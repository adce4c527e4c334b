"""The way to compute a chunk's training step: the cost model's (auto), timed on this machine (tuned), or fixed.

The candidates (`training.FORMULATIONS`: gathered training pairs, the paper's one-hot
matmul, the broadcast grid; and runs vmapped all together, in blocks, or one after
another, split over one CPU device per core or on one) compute the same numbers up to
float32 rounding, not bit for bit. By default (`--step auto`) `grokjax.engine.costmodel` picks one
from the chunk's shape alone, so a sweep's numbers never depend on timing. `--step tuned`
times the candidates instead: the first time a shape of chunk meets a kind of device, each
candidate trains a segment of the chunk's real runs and the fastest wins; the choice is kept
in the cache folder beside JAX's compiled programs (under a file lock, so processes measuring
at once keep each other's), and later sweeps read it back. Its numbers then depend on which
way won on the machine that first timed them: the plan in the results folder records it.

The cache folder is `grokjax.store.cache.cache_dir()`; GROKJAX_CACHE_DIR=off turns both caches off
(a tuned step is then measured anew in every process).
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from pathlib import Path
from typing import Any

import filelock
import jax
import numpy as np

from grokjax.config.sweep_file import ConfigError
from grokjax.core.training import FORMULATIONS
from grokjax.core.types import Hparams, Static
from grokjax.engine import costmodel, runner, runs_table
from grokjax.store.cache import cache_dir
from grokjax.store.files import atomic_write

STEP_ENV = "GROKJAX_STEP"  # the default of `grokjax sweep --step`
CHOSEN = ("auto", "tuned")  # --step values that choose a way per chunk: the cost model, or timed on this machine
CHOICES_FILE = "steps.json"
# JAX's compilation cache locks its folder (filelock) for every read and write only when it evicts, so a
# size limit makes it safe for processes compiling at once (a reader never sees a half-written entry).
COMPILE_CACHE_BYTES = 4 * 2**30
BLOCK = 8  # the block size tried between all runs vmapped and one run at a time
# Part of every choice's key: raise it when the candidates, their programs or how they are timed change,
# so that choices measured before are measured again (a stale one can pick a way twice as slow).
REVISION = 2


def enable_compile_cache() -> Path | None:
    """Turn on JAX's persistent compilation cache in the cache folder; returns where (None: off)."""
    folder = cache_dir()
    if folder is not None:
        jax.config.update("jax_compilation_cache_dir", str(folder / "jax"))
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.2)
        jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
        jax.config.update("jax_compilation_cache_max_size", COMPILE_CACHE_BYTES)
    return folder


def default_step() -> str:
    return os.environ.get(STEP_ENV, "auto")


def cores() -> int:
    """The CPU cores this process may run on (its affinity where the OS says, else all)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def split_cpu() -> None:
    """One CPU device per core, unless the user says otherwise (JAX_NUM_CPU_DEVICES, or XLA's
    --xla_force_host_platform_device_count) or JAX has started already (then nothing changes).

    XLA's CPU backend keeps about one core busy with a small chunk's many small operations; split
    over one device per core, its runs keep every core busy. Whether a chunk gains from the split
    is measured like the rest of the step (`candidates`): large runs, whose matmuls already use
    every core, stay on one device.
    """
    if "JAX_NUM_CPU_DEVICES" in os.environ or "xla_force_host_platform_device_count" in os.environ.get("XLA_FLAGS", ""):
        return
    try:
        jax.config.update("jax_num_cpu_devices", cores())
    except RuntimeError:
        pass  # the backends are up (a notebook ran JAX first): keep their devices


def step_name(formulation: str, run_block: int, devices: int) -> str:
    """A way of computing the step as --step writes it: FORMULATION:BLOCK[@DEVICES]."""
    return f"{formulation}:{run_block}" + (f"@{devices}" if devices else "")


def check_step(step: str, source: str) -> None:
    """One line naming what is allowed, for a --step that is neither auto, tuned nor a way (`parse_step`)."""
    if step not in CHOSEN:
        parse_step(step, source)


def parse_step(step: str, source: str) -> tuple[str, int, int]:
    """--step FORMULATION[:BLOCK][@DEVICES] as (formulation, run block, devices); one line naming what is
    allowed otherwise."""
    rest, _, devices = step.partition("@")
    form, _, block = rest.partition(":")
    count = jax.local_device_count()
    if (form not in FORMULATIONS or (block and not (block.isdigit() and int(block) >= 0))
            or ("@" in step and not (devices.isdigit() and 1 <= int(devices) <= count))):
        raise ConfigError(f"{source}: --step = {step!r}; allowed: auto (the cost model), tuned (the fastest, timed on "
                          f"this machine), or one of {', '.join(FORMULATIONS)} with an "
                          "optional :BLOCK (runs vectorized together; 0 all, 1 one at a time) and @DEVICES (the local "
                          f"devices its runs are split over, 1 to {count}; default all), e.g. gather, gather:8 or "
                          "gather:8@1")
    return form, int(block or 0), int(devices or 0)


def candidates(static: Static, runs: int) -> tuple[list[str], list[tuple[int, int]]]:
    """(formulations, layouts as (run block, devices)) worth timing for a chunk of `runs` runs of this static config.

    Layouts: all runs vmapped, in blocks of `BLOCK`, or one at a time, each device training its
    own share of them: split over all local devices where the chunk has a run for each, else on
    one; and with a split, also one run at a time on one device (no padding run, and a large
    run's matmuls can use every core).
    """
    forms = costmodel.candidates(static)
    many = jax.local_device_count()
    split = many > 1 and runs >= many
    devices = 0 if split or many == 1 else 1
    per_device = -(-runs // many) if split else runs
    layouts = [(block, devices) for block in (0, BLOCK, 1) if block < per_device]
    return forms, layouts + ([(1, 1)] if split else [])


def key(static: Static, runs: int) -> str:
    """What a measurement depends on: the device, JAX's and the candidates' versions, the program's shape and the
    run count."""
    device = jax.local_devices()[0]
    shape = {k: v for k, v in dataclasses.asdict(static).items() if k not in ("formulation", "run_block", "devices")}
    what = {"platform": device.platform, "device_kind": device.device_kind, "devices": jax.local_device_count(),
            "jax": jax.__version__, "revision": REVISION, "runs": runs, **shape}
    return json.dumps(what, sort_keys=True, default=str)


def segment_seconds(static: Static, hp: Hparams) -> float:
    """Wall time of the last segment of these runs (its training steps and its logged step's metrics),
    compiled and warmed up first (best of two).

    The segment's program and mix of work are those the sweep runs: up to `log_every` training
    steps, then one pass over every example for the metrics. (Timing a few steps and one pass
    instead weighted the pass several times too much, and the pass favours other ways.)
    """
    init, segment = runner.programs(static, hp)
    hp = runner.shard_runs(hp, runner.local_mesh(static.devices))
    start = static.logged_steps[-2] if len(static.logged_steps) > 1 else 0
    jax.block_until_ready(segment(init(hp), hp, start))
    best = float("inf")
    for _ in range(2):
        state = jax.block_until_ready(init(hp))
        clock = time.perf_counter()
        jax.block_until_ready(segment(state, hp, start))
        best = min(best, time.perf_counter() - clock)
    return best


def padded(hp: Hparams, runs: int, devices: int) -> Hparams:
    """The first `runs` runs of hp, padded (repeating the last) to a multiple of the devices used."""
    index = np.minimum(np.arange(runner.padded_size(runs, devices)), runs - 1)
    return jax.tree.map(lambda x: x[index], hp)


def time_way(static: Static, hp: Hparams, runs: int, name: str) -> float:
    """`segment_seconds` of the first `runs` runs of hp, computed the way `name` (as `step_name` writes it)."""
    form, block, devices = parse_step(name, "measured")
    return segment_seconds(dataclasses.replace(static, formulation=form, run_block=block, devices=devices),
                           padded(hp, runs, devices))


def measure(static: Static, hp: Hparams, runs: int) -> dict[str, Any]:
    """Time the candidates on the first `runs` runs of hp: first the formulations in the first layout (all
    runs vmapped, over all devices where there are several), then the layouts with the winner. The
    timings are keyed by `step_name`."""
    forms, layouts = candidates(static, runs)
    timed: dict[str, float] = {}

    def time_it(form: str, layout: tuple[int, int]) -> float:
        name = step_name(form, *layout)
        if name not in timed:
            timed[name] = time_way(static, hp, runs, name)
        return timed[name]

    form = min(forms, key=lambda f: time_it(f, layouts[0])) if len(forms) > 1 else forms[0]
    block, devices = min(layouts, key=lambda b: time_it(form, b)) if len(layouts) > 1 else layouts[0]
    return {"formulation": form, "run_block": block, "devices": devices,
            "seconds": {k: round(v, 6) for k, v in timed.items()}}


def choose(static: Static, hp: Hparams, runs: int) -> tuple[Static, dict[str, Any]]:
    """`static` with the fastest formulation and layout for chunks of `runs` runs (hp: at least that many),
    and the record of the choice: its timings (`measure`), and whether it was measured now or read
    from the cache.
    """
    folder = cache_dir()
    path = folder / CHOICES_FILE if folder is not None else None
    k = key(static, runs)
    known = read_choices(path)
    if k in known:
        choice = {**known[k], "measured": "cached"}
    else:
        choice = {**measure(static, hp, runs), "measured": "now"}
        if path is not None:
            write_choice(path, k, choice)
    return dataclasses.replace(static, formulation=choice["formulation"], run_block=choice["run_block"],
                               devices=choice["devices"]), choice


def with_timings(static: Static, hp: Hparams, runs: int, choice: dict[str, Any], names: set[str]) -> dict[str, Any]:
    """The record `choice` (of `choose`, same arguments) with the ways `names` timed too where it lacks them,
    and kept so in the cache."""
    missing = sorted(set(names) - set(choice["seconds"]))
    if not missing:
        return choice
    choice = {**choice, "seconds": {**choice["seconds"], **{n: round(time_way(static, hp, runs, n), 6) for n in missing}}}
    folder = cache_dir()
    if folder is not None:
        write_choice(folder / CHOICES_FILE, key(static, runs), choice)
    return choice


def time_ends(ends: list[list[Any]]) -> dict[int, dict[str, float]]:
    """Seconds per run of each way, on the chunks `plan.ends` names (per static group, the largest chunk of its
    smallest and largest rung), by chunk index: what `plan.plan(step="tuned")` chooses from.

    Each end's ways are timed (or read from the cache: `choose`), then each end's winner at the other end
    too, so that every rung between can compare the same ways at both ends.
    """
    timings: dict[int, dict[str, float]] = {}
    for group in ends:
        measured = []
        for chunk in group:
            hp = runs_table.hparams(chunk.runs, pad_to=runner.padded_size(chunk.size))
            measured.append((chunk, hp, choose(chunk.static, hp, chunk.size)[1]))
        winners = {step_name(r["formulation"], r["run_block"], r["devices"]) for _, _, r in measured}
        for chunk, hp, r in measured:
            if len(group) > 1:
                r = with_timings(chunk.static, hp, chunk.size, r, winners)
            chosen = step_name(r["formulation"], r["run_block"], r["devices"])
            timings[chunk.index] = {name: t / chunk.size for name, t in r["seconds"].items()} or {chosen: 0.0}  # a single candidate is not timed
    return timings


def read_choices(path: Path | None) -> dict[str, Any]:
    try:
        return json.loads(path.read_text()) if path is not None else {}
    except (OSError, ValueError):
        return {}


def write_choice(path: Path, k: str, choice: dict[str, Any]) -> None:
    """Add one choice to the file: read, changed and written under its lock, so that processes measuring side by
    side keep each other's."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with filelock.FileLock(path.with_name(path.name + ".lock"), thread_local=False):
            choices = {**read_choices(path), k: {name: v for name, v in choice.items() if name != "measured"}}
            atomic_write(path, lambda tmp: tmp.write_text(json.dumps(choices, indent=1)))
    except OSError:
        pass  # an unwritable cache only costs measuring again next time
