"""Files written whole or not at all, and pytrees as .npz archives under one key scheme.

A pytree leaf's key is its path with the parts joined by "/": a dict's key, a named tuple's
or dataclass's field name, a sequence's index (the mlp's parameters: "U/embedding",
"V/embedding", "W/kernel"; a run's state: "params/U/embedding", "opt_state/0/mu/U/embedding").
Parameters and segment checkpoints both use it, and it is what `params/` held from the start,
so parameters written by any earlier version load.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import numpy as np


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Call write(tmp) on a temporary file beside `path`, then rename it into place."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def savez(path: Path, arrays: dict[str, np.ndarray]) -> None:
    with path.open("wb") as f:  # a file object, so numpy does not append ".npz" to the temporary name
        np.savez(f, **arrays)


def tree_key(path: tuple[Any, ...]) -> str:
    """A leaf's key from its pytree path (`jax.tree_util.tree_flatten_with_path`)."""
    parts = []
    for k in path:
        if isinstance(k, jax.tree_util.DictKey):
            parts.append(str(k.key))
        elif isinstance(k, jax.tree_util.GetAttrKey):
            parts.append(k.name)
        elif isinstance(k, jax.tree_util.SequenceKey):
            parts.append(str(k.idx))
        else:  # FlattenedIndexKey: a custom node's leaf by position
            parts.append(str(k.key))
    return "/".join(parts)


def tree_arrays(tree: Any, prefix: str = "") -> dict[str, np.ndarray]:
    """The leaves of a pytree as host arrays keyed by `prefix` + their key."""
    return {prefix + tree_key(path): np.asarray(leaf) for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]}


def tree_keys(like: Any, prefix: str = "") -> list[str]:
    """The keys `tree_arrays` gives a pytree shaped like `like`, in its leaves' order."""
    return [prefix + tree_key(path) for path, _ in jax.tree_util.tree_flatten_with_path(like)[0]]


def nested(arrays: dict[str, np.ndarray]) -> dict[str, Any]:
    """Keyed arrays back into nested dicts (a parameter tree, which is dicts all the way down)."""
    out: dict[str, Any] = {}
    for key, value in arrays.items():
        node = out
        *parents, leaf = key.split("/")
        for name in parents:
            node = node.setdefault(name, {})
        node[leaf] = value
    return out
