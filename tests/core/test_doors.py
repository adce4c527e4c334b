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
