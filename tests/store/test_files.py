"""One key scheme for pytrees in .npz files (parameters and segment checkpoints), which parameters written by
0.1.0 still load under; files written whole or not at all."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import pytest

from grokjax.store import files, results


class State(NamedTuple):
    params: dict
    opt_state: tuple


def test_every_kind_of_node_gets_a_readable_key_and_comes_back_in_order():
    tree = State({"U": {"embedding": np.ones(2)}, "W": {"kernel": np.zeros(3)}}, ({"mu": np.full(1, 2.0)}, 5))
    arrays = files.tree_arrays(tree, "state/")
    assert list(arrays) == files.tree_keys(tree, "state/") == [
        "state/params/U/embedding", "state/params/W/kernel", "state/opt_state/0/mu", "state/opt_state/1"]
    assert files.nested({"U/embedding": 1, "W/kernel": 2}) == {"U": {"embedding": 1}, "W": {"kernel": 2}}


def test_parameters_written_as_0_1_0_wrote_them_load(tmp_path):
    """0.1.0 keyed each parameter by its dict keys joined with "/" (`"/".join(str(k.key) for k in path)`)."""
    (tmp_path / results.PARAMS_DIR).mkdir()
    u, w = np.arange(12.0).reshape(2, 3, 2), np.arange(8.0).reshape(2, 4)
    np.savez(tmp_path / results.PARAMS_DIR / "chunk_00000.npz", run_id=np.array([7, 3]), **{"U/embedding": u, "W/kernel": w})
    loaded = results.load_params(tmp_path, [3, 7])
    np.testing.assert_array_equal(loaded["U"]["embedding"], u[::-1])
    np.testing.assert_array_equal(loaded["W"]["kernel"], w[::-1])
    params = {"U": {"embedding": u}, "W": {"kernel": w}}
    results.write_params(tmp_path, 1, np.array([8, 9]), params)
    with np.load(tmp_path / results.PARAMS_DIR / "chunk_00001.npz") as data:
        assert sorted(data.files) == ["U/embedding", "W/kernel", "run_id"]


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "f.txt"
    path.write_text("old")

    def broken(tmp):
        tmp.write_text("half")
        raise OSError("disk full")

    with pytest.raises(OSError):
        files.atomic_write(path, broken)
    assert path.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["f.txt"]
