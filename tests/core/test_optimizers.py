"""Optimizers and schedules against their definitions: Optax's optimizers by name with per-run hyperparameters,
a linear warmup and a cosine decay of the learning rate."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from grokjax.cli import main
from grokjax.config.sweep_file import from_dict
from grokjax.core.training import learning_rate, make_optimizer
from grokjax.core.types import Hparams, Static
from grokjax.engine import plan, runs_table

PARAMS = {"w": jnp.array([[0.5, -1.0], [2.0, 0.25]]), "b": jnp.array([0.1, -0.3])}
GRADS = {"w": jnp.array([[0.2, 0.1], [-0.4, 0.3]]), "b": jnp.array([0.05, -0.02])}


def hp(lr=0.01, wd=0.0, **own):
    return Hparams(data_seed=0, dropout=0.0, init_scale=1.0, learning_rate=jnp.float32(lr), momentum=0.0,
                   weight_decay=jnp.float32(wd), seed=0, n_train=1, n_corrupt=0,
                   optimizer={k: jnp.float32(v) for k, v in own.items()} or None)


def test_warmup_rises_linearly_from_zero_and_cosine_falls_to_zero():
    lr, steps, warmup = 0.01, 100, 10
    rising = learning_rate(Static(steps=steps, warmup_steps=warmup), jnp.float32(lr))
    for count in (0, 1, 5, 10, 50):
        assert float(rising(count)) == pytest.approx(lr * min(count / warmup, 1.0), rel=1e-6)
    falling = learning_rate(Static(steps=steps, schedule="cosine"), jnp.float32(lr))
    for count in (0, 25, 50, 100):
        assert float(falling(count)) == pytest.approx(lr * 0.5 * (1 + math.cos(math.pi * count / steps)), abs=1e-9)
    both = learning_rate(Static(steps=steps, schedule="cosine", warmup_steps=warmup), jnp.float32(lr))
    assert float(both(0)) == 0.0 and float(both(warmup)) == pytest.approx(lr) and float(both(steps)) == 0.0
    assert learning_rate(Static(), 0.01) == 0.01  # no schedule: the rate itself (the optimizer state is unchanged)


def test_an_optax_optimizer_by_name_is_optax_at_the_runs_own_hyperparameters():
    static = Static(optimizer="lion", optimizer_args=(("b1", None), ("b2", None)), task="modular_addition", p=5,
                    width=4)
    for b1, b2, wd in ((0.9, 0.99, 0.0), (0.5, 0.9, 0.3)):
        ours = make_optimizer(static, hp(0.01, wd, b1=b1, b2=b2))
        theirs = optax.lion(0.01, b1=b1, b2=b2, weight_decay=wd)
        state_a, state_b = ours.init(PARAMS), theirs.init(PARAMS)
        for _ in range(3):
            a, state_a = ours.update(GRADS, state_a, PARAMS)
            b, state_b = theirs.update(GRADS, state_b, PARAMS)
            jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=1e-6), a, b)


def test_an_optimizers_float_keys_are_per_run_numbers_one_program(tmp_path):
    config = from_dict({"task": {"p": 7}, "model": {"width": 8},
                        "train": {"optimizer": "rmsprop", "decay": 0.9, "centered": True, "steps": 4, "log_every": 2},
                        "sweep": {"train.decay": [0.8, 0.9, 0.99], "weight_decay": [0.0, 1.0]}})
    runs = runs_table.expand(config)
    assert len(list(plan.groups(runs))) == 1  # decay and weight decay vary per run; centered is static
    assert set(runs.optimizer_args) == {'{"centered": true, "decay": null}'}
    np.testing.assert_array_equal(runs_table.hparams(runs).optimizer["decay"], runs.decay.astype(np.float32))


@pytest.mark.parametrize("train, said", [
    ('optimizer = "nosuch"', 'train.optimizer = "nosuch": not an Optax optimizer'),
    ('optimizer = "lion"\ncolour = 1.0', "train.colour: optax.lion takes no 'colour' of yours"),
    ('optimizer = "lion"\nb1 = "high"', 'train.optimizer = "lion": it raised'),
    ('optimizer = "adamw"\nb1 = 0.9', "unknown key 'train.b1'"),
    ('schedule = "linear"', 'train.schedule = "linear" is out of range; allowed: one of "constant", "cosine"'),
])
def test_a_bad_optimizer_is_refused_in_one_line(tmp_path, capsys, train, said):
    path = tmp_path / "opt.toml"
    path.write_text(f'[task]\np = 7\n[model]\nwidth = 8\n[train]\nsteps = 4\nlog_every = 2\n{train}\n')
    assert main(["sweep", str(path), "--out", str(tmp_path / "out"), "--no-progress", "--no-plots"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and said in err, err
    assert not (tmp_path / "out").exists()


def test_a_log_axis_spaces_logarithms_evenly_with_exact_ends():
    config = from_dict({"sweep": {"learning_rate": {"start": 1e-4, "stop": 1e-1, "num": 4, "log": True}}})
    assert config.axes == (("train.learning_rate", (1e-4, 1e-3, 1e-2, 1e-1)),)
    with pytest.raises(Exception, match="log = true needs start > 0"):
        from_dict({"sweep": {"weight_decay": {"start": 0.0, "stop": 1.0, "num": 3, "log": True}}})
