"""Training a chunk of runs on the devices: a generator over its logged steps (segments).

The runner keeps the device busy: it dispatches segment i + 1 before it fetches
segment i's metrics, and donates the state buffers to it, so the host never waits
between segments except for the metrics themselves (a few numbers per run). The
caller (the sweep) decides what to do with each segment: move a progress bar,
checkpoint (`keep` asks for the state at a segment: it is copied to the host
before its buffers are donated, the one wait for the device it costs), stop (it
simply stops iterating).
"""

from __future__ import annotations

import concurrent.futures
import functools
import os
import threading
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from grokjax.core import analysis
from grokjax.core.training import RunState, hparam_shapes, init_run, train_segment
from grokjax.core.types import Hparams, Static
from grokjax.store.checkpoints import Progress


class Segment(NamedTuple):
    """One logged step of a chunk, as the caller sees it."""

    index: int  # position among the logged steps
    step: int  # optimizer steps taken
    metrics: dict[str, np.ndarray]  # per run, on the host
    neurons: dict[str, np.ndarray] | None  # per-neuron statistics (runs, width) when taken at this step
    state: RunState | None  # on the host when `keep(index)` asked for it; on the devices at the last segment
    probed: dict[str, np.ndarray] | None = None  # what `probe` measured on the state at this step, on the host


class Trained(NamedTuple):
    """A chunk trained to the end."""

    logs: dict[str, np.ndarray]  # metrics, shape (logs, runs)
    params: Any  # trained parameters, leading run axis
    neurons: list[tuple[int, dict[str, np.ndarray]]]  # (step, per-neuron statistics (runs, width)); [] if none


def local_mesh(devices: int = 0) -> Mesh:
    """A one-axis mesh, "runs", over this process's first `devices` devices (0: all): a chunk's runs are split
    across them."""
    return Mesh(np.array(jax.local_devices()[: devices or None]), ("runs",))


def padded_size(size: int, devices: int = 0) -> int:
    """A chunk size rounded up to a multiple of the devices its runs are split over (0: all local devices;
    padding runs fill the rest)."""
    step = devices or jax.local_device_count()
    return -(-size // step) * step


def shard_runs(tree: Any, mesh: Mesh) -> Any:
    """Place a chunk's per-run arrays across the mesh (its length must be a multiple of the device count).

    Everything computed from them (data, weights, optimizer state, metrics) follows
    that placement, since each run's computation reads only its own row.
    """
    return jax.device_put(tree, NamedSharding(mesh, PartitionSpec("runs")))


@functools.cache
def compiled(static: Static, vectorized: bool = True) -> tuple[Callable, Callable]:
    """(init, segment), jitted for one static config; the segment donates its state's buffers.

    Over a leading run axis unless vectorized=False. Each device trains its own share of
    the runs (`shard_map` over `local_mesh(static.devices)`): all of them vmapped, or with
    `static.run_block` in blocks of that many, vmapped within a block, one block after
    another. On a CPU, one run at a time per device is often fastest: a run's own 2-D
    matmuls are faster kernels than the batched ones of a vmapped block. Here runs are
    initialized one after another, not vmapped: the same values, and XLA compiles a lone
    run's (partitionable threefry) random draws about twice as fast; a sweep initializes
    them with one program per static group instead (`programs`).
    """
    init = functools.partial(init_run, static)
    segment = functools.partial(train_segment, static)
    if not vectorized:
        return jax.jit(init, compiler_options=INIT_OPTIONS), jax.jit(segment, donate_argnums=0)
    one = segment

    def local(state: RunState, hp: Hparams, start: Any) -> tuple[RunState, Any]:
        if static.run_block:
            return jax.lax.map(lambda run: one(*run, start), (state, hp), batch_size=static.run_block)
        return jax.vmap(one, in_axes=(0, 0, None))(state, hp, start)

    mesh, runs = local_mesh(static.devices), PartitionSpec("runs")
    segment = jax.shard_map(local, mesh=mesh, in_specs=(runs, runs, PartitionSpec()), out_specs=(runs, runs))
    init = jax.jit(functools.partial(jax.lax.map, init), out_shardings=NamedSharding(mesh, runs),
                   compiler_options=INIT_OPTIONS)
    return init, jax.jit(segment, donate_argnums=0)


# A run's init at LLVM's first level of optimization compiles in about half the time, to the same values, and runs no
# slower (its time goes to the random draws). The training step keeps XLA's default level: at the first it compiles no
# faster (`benchmarks.compile_levels`) and rounds in other last bits.
INIT_OPTIONS = {"xla_backend_optimization_level": 1}


_PROGRAMS: dict[tuple, concurrent.futures.Future] = {}  # (what, static, shapes) -> its compiled program(s)
_LOCK = threading.Lock()


@functools.cache
def _compile_pool(kind: str) -> concurrent.futures.ThreadPoolExecutor:
    """Worker threads that compile programs ahead, one pool per kind. XLA compiles outside Python's lock, so a static
    group's init compiles beside its first chunk's segment, on two cores in the time of the slower."""
    return concurrent.futures.ThreadPoolExecutor(max_workers=max(1, min(4, (os.cpu_count() or 2) // 4)))


def programs(static: Static, hp: Hparams) -> tuple[Callable, Callable]:
    """(init, segment) for these runs (vectorized): the segment compiled once per static config and shape, init
    once per static group (`_compile_init`), in this thread unless `compile_ahead` has started them in a worker."""
    init = _future(("init", static.group), lambda: _compile_init(static), ahead=False).result()
    segment = _future(("train", static, _shapes(hp)), lambda: _compile(static, hp), ahead=False).result()
    return functools.partial(init_runs, init, local_mesh(static.devices)), segment


def neuron_program(static: Static, hp: Hparams) -> Callable:
    """Per-neuron statistics of these runs' parameters (`analysis.neuron_stats`), compiled for their shape and
    placement: once per static config and shape, in this thread unless `compile_ahead` has started it."""
    return _future(("neurons", static, _shapes(hp)), lambda: _compile_neurons(static, hp), ahead=False).result()


def compile_ahead(static: Static, hp: Hparams, neurons: bool = False) -> None:
    """Start compiling a chunk's programs (with neurons, its per-neuron statistics too) in a worker thread, so
    that they are ready when its turn comes (an earlier chunk trains meanwhile)."""
    _future(("init", static.group), lambda: _compile_init(static), ahead=True)
    _future(("train", static, _shapes(hp)), lambda: _compile(static, hp), ahead=True)
    if neurons and analysis.has_neurons(static):
        _future(("neurons", static, _shapes(hp)), lambda: _compile_neurons(static, hp), ahead=True)


def _shapes(hp: Hparams) -> tuple:
    return tuple(np.shape(x) for x in hp)


def _future(key: tuple, compile: Callable[[], Any], ahead: bool) -> concurrent.futures.Future:
    """The future of a program: found, started in the compile pool (ahead), or compiled here."""
    with _LOCK:
        future = _PROGRAMS.get(key)
        if future is not None:
            return future
        pool = _compile_pool("init" if key[0] == "init" else "chunks")  # a chunk's neurons after its segment
        future = pool.submit(compile) if ahead else concurrent.futures.Future()
        _PROGRAMS[key] = future
    if not ahead:
        try:
            future.set_result(compile())
        except BaseException as err:
            future.set_exception(err)
            _PROGRAMS.pop(key, None)
            raise
    return future


def _state_shape(static: Static, hp: Hparams) -> tuple[Any, Hparams]:
    """(the runs' state as shapes, placed across devices as `shard_runs` places it; hp so placed)."""
    init, _ = compiled(static)
    hp = shard_runs(hp, local_mesh(static.devices))
    runs = NamedSharding(local_mesh(static.devices), PartitionSpec("runs"))
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=runs), jax.eval_shape(init, hp)), hp


def _compile_init(static: Static) -> Callable:
    """A run's init (`init_run`), compiled for one run: one program for every chunk of a static group, whatever
    its size, rung or layout (a chunk's runs vectorized would compile once per chunk size, as slowly)."""
    return jax.jit(functools.partial(init_run, static.group),
                   compiler_options=INIT_OPTIONS).lower(hparam_shapes(static)).compile()


def init_runs(init: Callable, mesh: Mesh, hp: Hparams) -> RunState:
    """The runs' initial states, one run at a time (identical to their init vectorized), stacked on the host and
    placed across `mesh` as `shard_runs` places them."""
    hp = jax.device_get(hp)
    runs = max(np.shape(x)[0] for x in hp if np.ndim(x))
    states = jax.device_get([init(jax.tree.map(lambda x, i=i: x[i] if np.ndim(x) else x, hp)) for i in range(runs)])
    return shard_runs(jax.tree.map(lambda *runs: np.stack(runs), *states), mesh)


def _compile(static: Static, hp: Hparams) -> Callable:
    """The segment compiled for these runs; the state is laid out across devices as `shard_runs` lays it."""
    state, hp = _state_shape(static, hp)
    return compiled(static)[1].lower(state, hp, 0).compile()


def _compile_neurons(static: Static, hp: Hparams) -> Callable:
    return neuron_stats(static, True).lower(_state_shape(static, hp)[0].params).compile()


@functools.cache
def neuron_stats(static: Static, vectorized: bool) -> Callable:
    stats = functools.partial(analysis.neuron_stats, static)
    return jax.jit(jax.vmap(stats) if vectorized else stats)


def neuron_steps(static: Static, ipr_every: int) -> set[int]:
    """Logged steps at which per-neuron statistics are taken: every `ipr_every` (0: none), and the last."""
    return {s for s in static.logged_steps if s == static.steps or (ipr_every and s % ipr_every == 0)}


def segments(
    static: Static,
    hp: Hparams,
    resume: Progress | None = None,
    neurons: bool = False,
    ipr_every: int = 0,
    keep: Callable[[int], bool] = lambda i: False,
    vectorized: bool = True,
    probe: Callable[[RunState], Any] | None = None,
) -> Iterator[Segment]:
    """Train runs from the start (or from `resume`) to the end, yielding each logged step.

    Vectorized, the runs are split over this process's devices (`shard_runs`; the first
    `static.devices` of them, or all), so their number must be a multiple of that count. With neurons=True (for
    models where `analysis.has_neurons`), per-neuron statistics come with the
    segments of `neuron_steps` (the last, and every `ipr_every` steps). `probe`, a program of the runs'
    state, is measured at every logged step (the progress measures of a replay).
    """
    init, segment = programs(static, hp) if vectorized else compiled(static, vectorized=False)
    take = neuron_steps(static, ipr_every) if neurons and analysis.has_neurons(static) else set()
    place = (lambda tree: shard_runs(tree, local_mesh(static.devices))) if vectorized else jax.device_put
    hp = place(hp)
    first = 0 if resume is None else resume.next_log
    steps = static.logged_steps
    last = len(steps) - 1

    def dispatch(i: int, state: RunState) -> tuple[RunState, Any, Any, Any]:
        state, metrics = segment(state, hp, i * static.log_every)
        snapshot = None
        if steps[i] in take:  # its program is waited for when first needed, not before training starts
            stats = neuron_program(static, hp) if vectorized else neuron_stats(static, False)
            snapshot = stats(state.params)
        return state, metrics, snapshot, None if probe is None else probe(state)

    pending = dispatch(first, init(hp) if resume is None else place(resume.state))
    for i in range(first, last + 1):
        state, metrics, snapshot, probed = pending
        if i < last:
            saved = jax.device_get(state) if keep(i) else None
            pending = dispatch(i + 1, state)  # runs while the host reads segment i
        else:
            saved = state
        yield Segment(i, steps[i], jax.device_get(metrics), None if snapshot is None else jax.device_get(snapshot),
                      saved, None if probed is None else jax.device_get(probed))


def train(static: Static, hp: Hparams, neurons: bool = False, vectorized: bool = True,
          resume: Progress | None = None) -> Trained:
    """Train runs to the end: metrics stacked over logged steps (logs, runs), the trained weights, neuron snapshots."""
    logs, snapshots = ([], []) if resume is None else (list(resume.logs), list(resume.neurons))
    for seg in segments(static, hp, resume, neurons, vectorized=vectorized):
        logs.append(seg.metrics)
        if seg.neurons is not None:
            snapshots.append((seg.step, seg.neurons))
        params = seg.state.params if seg.state is not None else None
    return Trained(stacked(logs), params, snapshots)


def stacked(logs: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Segments' metrics (each {name: per run}) as one array per name, shape (logged steps, runs)."""
    return {key: np.stack([log[key] for log in logs]) for key in logs[0]}
