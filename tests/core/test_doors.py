"""A task or model of the user's own, named by import path: built as the built-ins are, and refused in one line
naming the file and the key (exit status 2, nothing written) when it cannot be used."""

import numpy as np
import pytest

from grokjax.cli import main
from grokjax.config.sweep_file import ConfigError
from grokjax.core import models, registry
from grokjax.core.types import Static

HERE = "tests.core.broken_doors"
SWEEP = """\
name = "doors"
[task]
name = "{task}"
p = 5
{task_keys}
[model]
name = "{model}"
{model_keys}
[train]
loss = "cross_entropy"
steps = 4
log_every = 2
[sweep]
data_fraction = [0.5]
"""


def sweep(tmp_path, task=f"{HERE}:pairs", model=f"{HERE}:Tiny", task_keys="", model_keys="", extra=""):
    path = tmp_path / "doors.toml"
    path.write_text(SWEEP.format(task=task, model=model, task_keys=task_keys, model_keys=model_keys) + extra)
    return path


def test_a_user_task_and_model_are_built_through_the_builtins_door(tmp_path):
    task = registry.build_task(f"{HERE}:pairs", {}, {"p": 7, "symmetric": False})
    assert task.inputs.dtype == np.int32 and task.labels.dtype == np.int32 and task.valid.all() and task.grid
    static = Static(task=f"{HERE}:pairs", p=7, model=f"{HERE}:Tiny")
    module = models.build(static)
    assert (module.num_tokens, module.num_classes) == (7, 7)
    assert registry.import_path("model", "mlp") == "grokjax.core.models:MLP"
    assert models.build(Static(p=7, width=16)).__class__ is registry.resolve("model", "mlp")


@pytest.mark.parametrize("changes, said", [
    (dict(task="nosuchpkg.tasks:f"), 'task.name = "nosuchpkg.tasks:f": cannot import nosuchpkg.tasks'),
    (dict(task=f"{HERE}:missing"), f"{HERE} has no attribute 'missing'"),
    (dict(task=f"{HERE}:NOT_A_FUNCTION"), "is a int; allowed: a function that returns a grokjax.Task"),
    (dict(task=f"{HERE}:returns_a_dict"), "it returned dict; allowed: a grokjax.Task"),
    (dict(task=f"{HERE}:float_inputs"), "the Task's inputs have shape (25, 2) and dtype float64; allowed: integers"),
    (dict(task=f"{HERE}:labels_too_large"), "labels run from 5 to 9; allowed: 0 .. num_classes - 1 = 4"),
    (dict(task=f"{HERE}:short_labels"), "labels have shape (24,)"),
    (dict(task=f"{HERE}:integer_valid"), "valid has shape (25,) and dtype int64; allowed: booleans"),
    (dict(task=f"{HERE}:raises"), "it raised RuntimeError: the data file is missing"),
    (dict(task=f"{HERE}:draw_too_short"), "its draw returned inputs of shape (5, 2), dtype int32; allowed: integers "
                                          "of shape (12, 2), as the Task's inputs"),
    (dict(task=f"{HERE}:test_size_too_large"), "the Task's test_size = 25; allowed: None, or an integer from 1 to "
                                               "examples - 1 = 24"),
    (dict(task=f"{HERE}:drawn_pairs", extra="train_size = [9]\n"), "task.train_size = 9 with the task's test set "
                                                                    "of 4 exceeds its 12 examples; allowed: "
                                                                    "train_size <= 8"),
    (dict(task=f"{HERE}:needs_size"), "its 'size' is not given; allowed: write task.size in [task]"),
    (dict(task_keys="colour = 3"), f"task.colour: {HERE}:pairs takes no 'colour'; it takes: p"),
    (dict(task_keys='colour = {a = 1}'), "task.colour = {'a': 1}; allowed: a string, a finite number"),
    (dict(task="modular_expression", task_keys='expression = "x / y"'), "the operator '/' is not allowed"),
    (dict(task="modular_expression", task_keys='expression = "x + q"'), "unknown name 'q'"),
    (dict(task="modular_expression"), "its 'expression' is not given; allowed: write task.expression in [task]"),
    (dict(model="flax.linen:Module2"), "flax.linen has no attribute 'Module2'"),
    (dict(model=f"{HERE}:NotAModule"), "is not a flax.linen.Module class; allowed: a Module class"),
    (dict(model=f"{HERE}:WrongShape"), "on 2 examples it returned shape (2, 6), dtype float32; allowed: float logits "
                                       "of shape (2, 5)"),
    (dict(model=f"{HERE}:Raises"), "building or calling it raised ValueError: no layers yet"),
    (dict(model=f"{HERE}:NeedsDepth"), "its field 'levels' is not given; allowed: write model.levels in [model]"),
    (dict(model_keys="colour = 3"), f"model.colour: {HERE}:Tiny has no field 'colour'; its fields are: num_tokens, "
                                    "num_classes"),
    (dict(model="mlp", model_keys="colour = 3"), "unknown key 'model.colour'"),
    (dict(extra="dropout = [0.1]\n"), "model.dropout > 0, but its __call__ takes no 'rate'"),
])
def test_what_cannot_be_used_is_refused_in_one_line(tmp_path, capsys, changes, said):
    path = sweep(tmp_path, **changes)
    out = tmp_path / "out"
    assert main(["sweep", str(path), "--out", str(out), "--no-progress", "--no-plots"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith(f"grokjax: error: {path}: "), err
    assert said in err, err
    assert not out.exists()


def test_an_open_tasks_keys_are_sweepable_and_recorded(tmp_path):
    path = sweep(tmp_path, task="modular_expression", task_keys='expression = "x + y"',
                 extra='expression = ["x + y", "x * y"]\n')
    out = tmp_path / "out"
    assert main(["sweep", str(path), "--out", str(out), "--no-progress", "--no-plots"]) == 0
    from grokjax.store import results

    runs = results.load(out).runs
    assert sorted(runs.task_args) == ['{"expression": "x * y"}', '{"expression": "x + y"}']
    with pytest.raises(ConfigError, match="unknown sweep axis 'sweep.colour'"):
        from grokjax.config.sweep_file import load

        load(path, ["sweep.colour=[1, 2]"])


def test_a_task_that_draws_per_data_seed_gives_each_seed_its_own_rows(tmp_path):
    """Task.draw: each data seed trains and tests on its own draw, the test set is the last Task.test_size of it and
    runs train on train_size; seeds sharing a data seed share it (sparse_parity's pool, opened to the user)."""
    import jax

    from grokjax.core.tasks import make_run_data, model_inputs

    static = Static(task=f"{HERE}:drawn_pairs", p=5, model=f"{HERE}:Tiny")
    task = registry.task_of(static)
    assert registry.resolve("task", "sparse_parity") is registry.resolve("task", "grokjax.core.builtin_tasks:sparse_parity")
    keys = [jax.random.key(k) for k in (0, 0, 1)]
    runs = [make_run_data(static, key, 6, 2) for key in keys]
    for key, data in zip(keys, runs):
        inputs = np.asarray(model_inputs(static, data))
        order_key = jax.random.split(key)[0]  # make_run_data's
        np.testing.assert_array_equal(inputs, np.asarray(task.draw(order_key)[0]))
        assert np.asarray(data.train)[:6].all() and not np.asarray(data.train)[6:].any()
        assert np.asarray(data.test).sum() == 4 and np.asarray(data.test)[-4:].all()
        clean = ~np.asarray(data.corrupted)
        np.testing.assert_array_equal(np.asarray(data.labels)[clean], inputs.sum(axis=1)[clean] % 5)
    np.testing.assert_array_equal(runs[0].inputs, runs[1].inputs)
    assert (np.asarray(runs[0].inputs) != np.asarray(runs[2].inputs)).any()
    path = sweep(tmp_path, task=f"{HERE}:drawn_pairs", extra="train_size = [5, 8]\ndata_seed = [0, 1]\n")
    out = tmp_path / "out"
    assert main(["sweep", str(path), "--out", str(out), "--no-progress", "--no-plots"]) == 0
    from grokjax.store import results

    runs_table = results.load(out).runs
    assert sorted(runs_table.n_train.unique()) == [5, 8] and (runs_table.n_test == 4).all()
