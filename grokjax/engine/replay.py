"""The progress measures of a chunk's runs at every logged step, by replaying their training.

The key frequencies come from the final state, so the measures at earlier steps need those steps' weights
again. Rather than keeping every logged step's weights (gigabytes at sweep scale), the chunk is trained a
second time from its initial state with the same compiled programs: training is deterministic, so the replay
passes through the same weights bit for bit, and each logged step's measures are taken on the way
(`progress.measures`). It costs one more training of the chunk; nothing is kept but the measures.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import numpy as np

from grokjax.core import progress
from grokjax.core.training import RunState
from grokjax.core.types import Hparams, Static
from grokjax.engine import runner


@functools.cache
def _programs(static: Static) -> tuple[Any, Any]:
    """(key frequencies of the runs' states, their measures given the key frequencies), vectorized over runs."""
    keys = jax.jit(jax.vmap(functools.partial(progress.key_frequencies, static)))
    measures = jax.jit(jax.vmap(functools.partial(progress.measures, static)))
    return keys, measures


def measured(static: Static, hp: Hparams, final: RunState) -> tuple[np.ndarray, list[dict[str, np.ndarray]]]:
    """(the runs' key frequencies as a mask (runs, frequencies), their measures at each logged step: one dict of
    per-run arrays per step, with the replay's own metrics, which equal the first pass's)."""
    keys, measures = _programs(static)
    keep = keys(final)
    logs = [{**seg.metrics, **seg.probed} for seg in runner.segments(static, hp, probe=lambda s: measures(s, keep))]
    return np.asarray(jax.device_get(keep)), logs


def final_state(static: Static, hp: Hparams, params: Any = None) -> RunState:
    """The runs' final state, for their key frequencies: their stored trained `params` (the chunk's real runs, in
    order) in a state with their data, or, without them, the state a replay to the last step reaches."""
    if params is None:
        for seg in runner.segments(static, hp):
            state = seg.state
        return state
    init, _ = runner.programs(static, hp)
    start = jax.device_get(init(hp))
    real = len(jax.tree.leaves(params)[0])
    padded = jax.tree.map(lambda trained, own: np.concatenate([trained, own[real:]]), params, start.params)
    return runner.shard_runs(start._replace(params=padded), runner.local_mesh(static.devices))


def frequency_lists(keep: np.ndarray) -> list[list[int]]:
    """Each run's key frequencies k (1-based), ascending, from their mask."""
    return [(np.flatnonzero(row) + 1).tolist() for row in keep]
