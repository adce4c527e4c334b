import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from grokjax.config.fields import static_fields, traced_fields
from grokjax.core import models
from grokjax.core.metrics import example_losses, masked_mean
from grokjax.core.tasks import split_counts
from grokjax.core.training import make_optimizer
from grokjax.core.types import HPARAM_DTYPES, Hparams, Static
from grokjax.engine.runner import train
from tests.conftest import init_model


def tiny_static(**changes) -> Static:
    fields = dict(task="modular_addition", p=11, model="mlp", width=24, activation="quadratic", loss="mse",
                  optimizer="adamw", betas=(0.9, 0.98), steps=30, log_every=10)
    fields.update(changes)
    return Static(**fields)


def hparams(p: int, rows: list[dict]) -> Hparams:
    """Hparams with a leading run axis from a list of per-run settings."""
    defaults = dict(seed=0, data_seed=0, weight_decay=0.0, learning_rate=0.01, init_scale=1.0,
                    data_fraction=0.5, corruption_fraction=0.0)
    full = [{**defaults, **row} for row in rows]
    counts = [split_counts(r["data_fraction"], r["corruption_fraction"], p * p) for r in full]
    return Hparams(
        seed=np.array([r["seed"] for r in full], np.int32),
        data_seed=np.array([r["data_seed"] for r in full], np.int32),
        weight_decay=np.array([r["weight_decay"] for r in full], np.float32),
        learning_rate=np.array([r["learning_rate"] for r in full], np.float32),
        init_scale=np.array([r["init_scale"] for r in full], np.float32),
        n_train=np.array([c[0] for c in counts], np.int32),
        n_corrupt=np.array([c[1] for c in counts], np.int32),
        dropout=np.array([r.get("dropout", 0.0) for r in full], np.float32),
        momentum=np.array([r.get("momentum", 0.0) for r in full], np.float32),
    )


RUNS = [
    dict(seed=0, weight_decay=0.0, data_fraction=0.5, corruption_fraction=0.0),
    dict(seed=1, data_seed=4, weight_decay=2.0, data_fraction=0.7, corruption_fraction=0.3, learning_rate=0.02),
    dict(seed=2, weight_decay=0.5, data_fraction=0.3, corruption_fraction=0.5, init_scale=2.0),
]


@pytest.mark.parametrize("loss, optimizer, activation", [("mse", "adamw", "quadratic"),
                                                          ("cross_entropy", "sgd", "relu"),
                                                          ("mse", "adam", "relu")])
def test_vmapped_run_equals_run_alone(loss, optimizer, activation):
    static = tiny_static(loss=loss, optimizer=optimizer, activation=activation)
    hp = hparams(static.p, RUNS)
    together = train(static, hp).logs
    for i in range(len(RUNS)):
        alone = train(static, jax.tree_util.tree_map(lambda x: x[i], hp), vectorized=False).logs
        for key, value in alone.items():
            np.testing.assert_allclose(together[key][:, i], value, rtol=2e-4, atol=1e-6, err_msg=key)


def test_a_second_run_gives_identical_results():
    """Bit for bit, weights too: a sweep resumed or run again must not depend on the order of a device's sums."""
    static = tiny_static()
    hp = hparams(static.p, RUNS)
    first, second = train(static, hp), train(static, hp)
    for key, value in first.logs.items():
        np.testing.assert_array_equal(second.logs[key], value, err_msg=key)
    for a, b in zip(jax.tree.leaves(first.params), jax.tree.leaves(second.params)):
        np.testing.assert_array_equal(a, b)


def test_changing_per_run_values_never_recompiles():
    static = tiny_static(width=20)
    compiles = []
    jax.monitoring.register_event_duration_secs_listener(
        lambda name, *args, **kw: compiles.append(name) if name == "/jax/core/compile/backend_compile_duration" else None
    )
    train(static, hparams(static.p, RUNS))
    first = len(compiles)
    assert first > 0
    other = [dict(seed=9, data_seed=7, weight_decay=5.0, learning_rate=0.003, init_scale=0.5,
                  data_fraction=0.9, corruption_fraction=0.6)] * 3
    train(static, hparams(static.p, other))
    assert len(compiles) == first, "new per-run values must reuse the compiled program"
    train(tiny_static(width=21), hparams(static.p, RUNS))  # a new shape compiles anew
    assert len(compiles) > first


def one_run(lr: float, wd: float, momentum: float = 0.0) -> Hparams:
    return Hparams(seed=0, data_seed=0, weight_decay=jnp.float32(wd), learning_rate=jnp.float32(lr), init_scale=1.0,
                   n_train=1, n_corrupt=0, dropout=0.0, momentum=jnp.float32(momentum))


def test_adamw_decay_is_decoupled_as_in_pytorch():
    params = {"w": jnp.array([1.0, -2.0, 0.5])}
    grads = {"w": jnp.array([0.3, 0.0, -1.0])}
    lr, wd = 0.01, 5.0
    tx = make_optimizer(tiny_static(), one_run(lr, wd))
    updates, _ = tx.update(grads, tx.init(params), params)
    # First AdamW step: m_hat = g, v_hat = g^2, theta <- theta - lr * wd * theta - lr * g / (|g| + eps).
    g, theta = np.asarray(grads["w"]), np.asarray(params["w"])
    expected = -lr * wd * theta - lr * g / (np.abs(g) + 1e-8)
    np.testing.assert_allclose(updates["w"], expected, rtol=1e-5)


def test_sgd_and_adam_decay_is_coupled_l2():
    params = {"w": jnp.array([1.0, -2.0])}
    grads = {"w": jnp.array([0.3, 0.1])}
    tx = make_optimizer(tiny_static(optimizer="sgd"), one_run(0.1, 0.5))
    updates, _ = tx.update(grads, tx.init(params), params)
    np.testing.assert_allclose(updates["w"], -0.1 * (np.array([0.3, 0.1]) + 0.5 * np.array([1.0, -2.0])), rtol=1e-6)


def test_mse_is_mean_over_outputs_and_examples():
    logits = jnp.array([[0.2, 0.9, -0.1], [1.0, 0.0, 0.5], [0.3, 0.3, 0.3]])
    labels = jnp.array([1, 0, 2])
    mask = jnp.array([True, True, False])
    targets = np.eye(3)[[1, 0]]
    expected = np.mean((np.asarray(logits)[:2] - targets) ** 2)  # as torch.nn.MSELoss()
    np.testing.assert_allclose(masked_mean(example_losses(logits, labels, "mse"), mask), expected, rtol=1e-6)


def test_mlp_init_and_grid_forward():
    static = tiny_static(p=13, width=64)
    params = init_model(static, jax.random.key(0), 1.0)["params"]
    U, V, W = params["U"]["embedding"], params["V"]["embedding"], params["W"]["kernel"]
    assert U.shape == V.shape == (13, 64) and W.shape == (64, 13)
    std = np.std(np.concatenate([np.ravel(U), np.ravel(V), np.ravel(W)]))
    assert std == pytest.approx((16 * 64) ** (-1 / 3), rel=0.05)
    grid = (jnp.arange(13)[:, None], jnp.arange(13)[None, :])
    logits = models.build(static).apply({"params": params}, grid, train=False, rate=0.0, mask=None)
    m, n = 5, 9
    by_hand = (U[m] + V[n]) ** 2 @ W  # f(m, n) = W phi(U e_m + V e_n)
    np.testing.assert_allclose(logits[m * 13 + n], by_hand, rtol=1e-5)


def test_last_segment_stops_at_steps():
    static = tiny_static(steps=25, log_every=10)
    assert static.logged_steps == [10, 20, 25]
    hp = hparams(static.p, RUNS[:1])
    ragged = train(static, hp).logs
    whole = train(tiny_static(steps=25, log_every=25), hp).logs
    for key in ragged:
        np.testing.assert_allclose(ragged[key][-1], whole[key][-1], rtol=1e-5, err_msg=key)


def test_gathered_training_slots_give_the_masked_full_grid_gradient():
    """A full-batch step gathers the training pairs (train_slots); its gradient is the masked grid gradient."""
    from grokjax.core.tasks import model_inputs
    from grokjax.core.training import init_run, training_slots

    hp = jax.tree.map(lambda x: x[1], hparams(11, RUNS))
    gathered = tiny_static(train_slots=96)  # >= n_train = 84; the 12 extra slots weigh 0
    state = init_run(gathered, hp)
    model = models.build(gathered)
    index, weights = training_slots(gathered, state.data, hp.n_train)
    assert int(weights.sum()) == int(hp.n_train) == int(state.data.train.sum())
    assert bool(state.data.train[index[: int(hp.n_train)]].all())

    def loss(params, inputs, labels, mask):
        logits = model.apply({"params": params}, inputs, train=True, rate=0.0, mask=mask)
        return masked_mean(example_losses(logits, labels, "mse"), mask)

    on_slots = jax.grad(loss)(state.params, model_inputs(gathered, state.data, index), state.data.labels[index], weights)
    on_grid = jax.grad(loss)(state.params, model_inputs(gathered, state.data), state.data.labels, state.data.train)
    for a, b in zip(jax.tree.leaves(on_slots), jax.tree.leaves(on_grid)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-8)


def test_training_slots_do_not_change_training():
    hp = hparams(11, RUNS)
    all_examples = train(tiny_static(), hp).logs
    gathered = train(tiny_static(train_slots=88), hp).logs
    for key in ("train_correct", "test_correct", "corrupted_correct"):
        np.testing.assert_array_equal(gathered[key], all_examples[key])
    np.testing.assert_allclose(gathered["train_loss"], all_examples["train_loss"], rtol=1e-4)


def test_precision_settings():
    """tf32 only changes GPU matmuls (on CPU it is float32 exactly); bfloat16 computes in bfloat16, weights stay float32."""
    hp = hparams(11, RUNS)
    f32 = train(tiny_static(), hp)
    tf32 = train(tiny_static(precision="tf32"), hp)
    bf16 = train(tiny_static(precision="bfloat16"), hp)
    if jax.devices()[0].platform == "cpu":
        np.testing.assert_array_equal(tf32.logs["train_loss"], f32.logs["train_loss"])
    assert all(leaf.dtype == jnp.float32 for leaf in jax.tree.leaves(bf16.params))
    assert not np.array_equal(bf16.logs["train_loss"], f32.logs["train_loss"])
    np.testing.assert_allclose(bf16.logs["weight_norm"], f32.logs["weight_norm"], rtol=0.05)


def test_static_and_hparams_are_the_fields_declared_in_fields():
    """The written classes hold exactly the static and traced fields of fields.FIELDS, in order, with their defaults."""
    assert [(f.name, f.default) for f in dataclasses.fields(Static)] == static_fields()
    # and last, an Optax optimizer's own per-run numbers (a dict whose keys the sweep file names)
    assert Hparams._fields == (*(name for name, _ in traced_fields()), "optimizer")
    assert HPARAM_DTYPES == Hparams(*(dtype for _, dtype in traced_fields()))
