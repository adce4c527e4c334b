"""Models, dropout, BatchNorm, regularizers, momentum, minibatches, the new tasks and their config rules.

Every expected value is derived from the definitions (architecture, PyTorch's update
rules, the task's algebra), never read off a run.
"""

import dataclasses
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from grokjax.cli import main
from grokjax.config.sweep_file import ConfigError, from_dict
from grokjax.core import models
from grokjax.core.registry import task_of
from grokjax.core.tasks import corrupt_count, make_run_data, minibatch, permuted_position, split_counts
from grokjax.core.training import init_run, make_optimizer
from grokjax.core.types import Hparams, Static
from grokjax.engine import plan, runs_table
from grokjax.engine.runner import train
from tests.conftest import init_model


def tiny_static(**changes) -> Static:
    fields = dict(task="modular_addition", p=7, model="mlp", width=16, activation="quadratic", loss="mse",
                  optimizer="adamw", betas=(0.9, 0.98), steps=20, log_every=10)
    fields.update(changes)
    return Static(**fields)


def parity_static(**changes) -> Static:
    fields = dict(task="sparse_parity", model="parity_mlp", loss="cross_entropy", n_bits=10, k_bits=3,
                  pool_size=200, test_size=80, width=16, activation="relu")
    fields.update(changes)
    return tiny_static(**fields)


def hparams(static: Static, rows: list[dict]) -> Hparams:
    """Hparams with a leading run axis; split sizes as runs_table.expand computes them."""
    defaults = dict(seed=0, data_seed=0, weight_decay=0.0, learning_rate=0.01, init_scale=1.0,
                    data_fraction=0.5, corruption_fraction=0.0, train_size=100, dropout=0.0, momentum=0.0)
    full = [{**defaults, **row} for row in rows]
    if static.task == "sparse_parity":
        counts = [(r["train_size"], corrupt_count(r["corruption_fraction"], r["train_size"])) for r in full]
    else:
        examples = int(task_of(static).mask.sum())
        counts = [split_counts(r["data_fraction"], r["corruption_fraction"], examples) for r in full]
    column = lambda name, dtype: np.array([r[name] for r in full], dtype)  # noqa: E731
    return Hparams(
        seed=column("seed", np.int32),
        data_seed=column("data_seed", np.int32),
        weight_decay=column("weight_decay", np.float32),
        learning_rate=column("learning_rate", np.float32),
        init_scale=column("init_scale", np.float32),
        n_train=np.array([c[0] for c in counts], np.int32),
        n_corrupt=np.array([c[1] for c in counts], np.int32),
        dropout=column("dropout", np.float32),
        momentum=column("momentum", np.float32),
    )


def one_run(lr: float, wd: float, momentum: float = 0.0) -> Hparams:
    return Hparams(seed=0, data_seed=0, weight_decay=jnp.float32(wd), learning_rate=jnp.float32(lr), init_scale=1.0,
                   n_train=1, n_corrupt=0, dropout=0.0, momentum=jnp.float32(momentum))


def leaf_shapes(tree) -> list[tuple[int, ...]]:
    return sorted(tuple(x.shape) for x in jax.tree_util.tree_leaves(tree))


# --- 1. parameter counts and shapes, by hand from the architecture ---------------------------

P, N, E, D, BITS = 7, 16, 12, 16, 10

# (static changes, sorted expected shapes of params, expected batch_stats shapes)
ARCHITECTURES = {
    "mlp_depth2": (dict(), [(P, N), (P, N), (N, P)], []),
    "mlp_depth3": (dict(depth=3), [(P, N), (P, N), (N, N), (N, P)], []),
    "mlp_depth3_batchnorm": (dict(depth=3, norm="batchnorm"), [(P, N), (P, N), (N, N), (N, P)] + [(N,)] * 4,
                             [(N,)] * 4),
    "mlp_depth2_layernorm": (dict(norm="layernorm"), [(P, N), (P, N), (N, P)] + [(N,)] * 2, []),
    "mlp_depth4_layernorm": (dict(depth=4, norm="layernorm"), [(P, N), (P, N), (N, N), (N, N), (N, P)] + [(N,)] * 6,
                             []),
    "pair_mlp_tied": (dict(model="pair_mlp", embed_size=E, tied_embedding=True), [(P, E), (E, N), (N, E)], []),
    "pair_mlp_untied": (dict(model="pair_mlp", embed_size=E), [(P, E), (E, N), (N, E), (E, P)], []),
    "pair_mlp_batchnorm": (dict(model="pair_mlp", embed_size=E, norm="batchnorm"),
                           [(P, E), (E, N), (N, E), (E, P), (N,), (N,)], [(N,), (N,)]),
    "parity_mlp": (dict(task="sparse_parity", model="parity_mlp", n_bits=BITS), [(BITS + 1, N), (N, 1)], []),
    "transformer": (dict(model="transformer", embed_size=D, heads=2),
                    [(P, D), (2, D), (D, 3 * D), (D, D), (D, N), (N, D), (D, P)], []),
    "transformer_tied": (dict(model="transformer", embed_size=D, heads=4, tied_embedding=True),
                         [(P, D), (2, D), (D, 3 * D), (D, D), (D, N), (N, D)], []),
    "transformer_layernorm": (dict(model="transformer", embed_size=D, heads=2, norm="layernorm"),
                              [(P, D), (2, D), (D, 3 * D), (D, D), (D, N), (N, D), (D, P)] + [(D,)] * 6, []),
}

HAND_COUNTS = {
    "mlp_depth2": 2 * P * N + N * P,
    "mlp_depth3": 2 * P * N + N * N + N * P,
    "mlp_depth3_batchnorm": 2 * P * N + N * N + N * P + 2 * (2 * N),
    "mlp_depth2_layernorm": 2 * P * N + N * P + 2 * N,
    "mlp_depth4_layernorm": 2 * P * N + 2 * N * N + N * P + 3 * (2 * N),
    "pair_mlp_tied": P * E + E * N + N * E,
    "pair_mlp_untied": P * E + E * N + N * E + E * P,
    "pair_mlp_batchnorm": P * E + E * N + N * E + E * P + 2 * N,
    "parity_mlp": (BITS + 1) * N + N,
    # The authors' transformer: token and position embeddings of the two tokens, qkv and output projections, MLP.
    "transformer": P * D + 2 * D + 4 * D * D + 2 * D * N + D * P,
    "transformer_tied": P * D + 2 * D + 4 * D * D + 2 * D * N,
    "transformer_layernorm": P * D + 2 * D + 4 * D * D + 2 * D * N + D * P + 3 * (2 * D),
}


@pytest.mark.parametrize("name", list(ARCHITECTURES))
def test_param_count_and_shapes_match_the_architecture(name):
    changes, shapes, stats = ARCHITECTURES[name]
    static = tiny_static(p=P, width=N, **changes)
    variables = jax.eval_shape(lambda: models.init(static, jax.random.key(0), 1.0))  # shapes only, no compute
    assert models.param_count(static) == HAND_COUNTS[name]
    assert sum(math.prod(s) for s in shapes) == HAND_COUNTS[name]  # the table agrees with the formula
    assert leaf_shapes(variables["params"]) == sorted(shapes)
    assert leaf_shapes(variables.get("batch_stats", {})) == sorted(stats)


def test_batchnorm_has_running_mean_and_var_per_hidden_layer():
    static = tiny_static(depth=3, norm="batchnorm")
    variables = init_model(static, jax.random.key(0), 1.0)
    stats = variables["batch_stats"]
    assert len(stats) == static.depth - 1
    for layer in stats.values():
        (bn,) = layer.values()
        assert set(bn) == {"mean", "var"}
        np.testing.assert_array_equal(bn["mean"], np.zeros(N))  # PyTorch's initial running statistics
        np.testing.assert_array_equal(bn["var"], np.ones(N))


def test_init_scale_scales_weights_but_not_norm_layers():
    static = tiny_static(depth=3, norm="layernorm")
    one = init_model(static, jax.random.key(1), 1.0)["params"]
    three = init_model(static, jax.random.key(1), 3.0)["params"]
    for path, w in jax.tree_util.tree_leaves_with_path(one):
        scaled = three
        for k in path:
            scaled = scaled[k.key]
        is_norm = any(str(k.key).startswith(models.NORM_PREFIX) for k in path)
        np.testing.assert_allclose(scaled, w if is_norm else 3.0 * w, rtol=1e-6, err_msg=str(path))


@functools.partial(jax.jit, static_argnums=0)
def _logits_at_init(static: Static, key: jax.Array) -> jax.Array:
    variables = models.init(static, key, 1.0)
    grid_inputs = (jnp.arange(static.p)[:, None], jnp.arange(static.p)[None, :])
    return models.build(static).apply(variables, grid_inputs, train=False, rate=0.0, mask=None)


def logits_at_init(static: Static, seed: int = 0) -> np.ndarray:
    return np.asarray(_logits_at_init(static, jax.random.key(seed)))


def test_transformer_logits_at_init_scale_as_one_over_d_model():
    """The authors' maximal-update parameterization: the readout before the 1 / d_model factor has entries of
    order one (embeddings N(0, 1), layers N(0, 1 / fan_in), each residual branch adding order one), so the
    logits' spread times d_model stays between 1 and 4 as d_model grows, and halves when d_model doubles."""
    spread = {}
    for d in (32, 64, 128):
        static = tiny_static(model="transformer", p=13, embed_size=d, heads=4, width=4 * d, activation="relu")
        spread[d] = np.mean([logits_at_init(static, seed).std() for seed in range(3)])
        assert 1.0 < spread[d] * d < 4.0, (d, spread[d])
    assert 1.6 < spread[32] / spread[64] < 2.5 and 1.6 < spread[64] / spread[128] < 2.5


@functools.partial(jax.jit, static_argnums=0)
def zero_gradient_update(static: Static, lr: float, wd: float) -> tuple[dict, dict]:
    """(parameters at init, the optimizer's first update from a zero gradient)."""
    params = models.init(static, jax.random.key(0), 1.0)["params"]
    tx = make_optimizer(static, one_run(lr, wd))
    return params, tx.update(jax.tree.map(jnp.zeros_like, params), tx.init(params), params)[0]


def test_transformer_weight_decay_leaves_one_dimensional_parameters_alone():
    """With a zero gradient, AdamW's update is -lr * wd * theta on the weights (2-D and more) and nothing
    on LayerNorm's scales and biases, as the authors' optimizer groups them."""
    lr, wd = 0.1, 0.5
    params, updates = zero_gradient_update(tiny_static(model="transformer", embed_size=8, heads=2, norm="layernorm"), lr, wd)
    flat = jax.tree_util.tree_leaves_with_path(updates)
    assert {w.ndim for _, w in flat} == {1, 2}
    for (path, u), w in zip(flat, jax.tree_util.tree_leaves(params)):
        np.testing.assert_allclose(u, -lr * wd * w if w.ndim >= 2 else 0 * w, rtol=1e-6, atol=1e-7, err_msg=str(path))
    # the authors' MLPs decay every parameter, LayerNorm's too
    params, updates = zero_gradient_update(tiny_static(norm="layernorm"), lr, wd)
    for u, w in zip(jax.tree_util.tree_leaves(updates), jax.tree_util.tree_leaves(params)):
        np.testing.assert_allclose(u, -lr * wd * w, rtol=1e-6)


def test_deep_mlp_init_is_kaiming_per_layer_and_the_two_layer_mlp_the_papers():
    """Depth 3: every layer ~ N(0, 2 / fan_in), the first layer's fan-in the 2p one-hot inputs; depth 2: all
    weights ~ N(0, (16 N)^(-2/3)) (Appendix A). Sample standard deviations of 832 to 4,096 weights, within 10%
    (the other rule is off by 40% or more)."""
    p, width = 13, 64
    deep = init_model(tiny_static(p=p, width=width, depth=3, activation="relu"), jax.random.key(0), 1.0)["params"]
    expected = {"U": (2 / (2 * p)) ** 0.5, "V": (2 / (2 * p)) ** 0.5, "hidden_1": (2 / width) ** 0.5,
                "W": (2 / width) ** 0.5}
    for name, std in expected.items():
        (w,) = jax.tree_util.tree_leaves(deep[name])
        assert abs(float(w.std()) / std - 1) < 0.1, name
    shallow = init_model(tiny_static(p=p, width=width), jax.random.key(0), 1.0)["params"]
    for name in ("U", "V", "W"):
        (w,) = jax.tree_util.tree_leaves(shallow[name])
        assert abs(float(w.std()) / (16 * width) ** (-1 / 3) - 1) < 0.1, name


# --- 2, 3. dropout ----------------------------------------------------------------------------

# The same static and run shapes as the vmapped "mlp_depth3_layernorm_dropout" case below, so the
# compiled program is shared (train.compiled is cached per Static).
DROPOUT_STATIC = tiny_static(depth=3, norm="layernorm", has_dropout=True)
DROPOUT_RUNS = [dict(seed=0, weight_decay=0.1, data_fraction=0.5),
                dict(seed=1, data_seed=4, weight_decay=1.0, data_fraction=0.7, corruption_fraction=0.3,
                     init_scale=0.8)]

EAGER_MODELS = {  # op by op is slow, so two models: dropout before LayerNorm (twice) and before BatchNorm
    "mlp_depth3_layernorm": dict(depth=3, norm="layernorm"),
    "mlp_batchnorm": dict(norm="batchnorm"),
}


@pytest.mark.parametrize("name", list(EAGER_MODELS))
def test_dropout_rate_zero_is_exactly_the_model_without_dropout(name):
    """Forward pass, gradients and BatchNorm statistics in training mode, bit for bit (op by op, no jit)."""
    inputs = (jnp.arange(P)[:, None], jnp.arange(P)[None, :])
    mask = jnp.arange(P * P) % 3 != 0
    results = []
    for has_dropout in (True, False):
        static = tiny_static(has_dropout=has_dropout, **EAGER_MODELS[name])
        variables = init_model(static, jax.random.key(0), 1.0)
        params = variables.pop("params")

        def loss(params):
            logits, state = models.build(static).apply(
                {"params": params, **variables}, inputs, train=True, rate=jnp.float32(0.0), mask=mask,
                rngs={"dropout": jax.random.key(5)}, mutable=list(variables))
            return jnp.sum(jnp.square(logits)), (logits, state)

        results.append(jax.grad(loss, has_aux=True)(params))
    with_dropout, without = (jax.tree_util.tree_leaves(r) for r in results)
    assert len(with_dropout) == len(without)
    for a, b in zip(with_dropout, without):
        np.testing.assert_array_equal(a, b)


def test_dropout_rate_zero_trains_as_no_dropout():
    """train.train with has_dropout and rate 0 equals the program without dropout.

    The two are different XLA programs, so the compiler may order float sums differently:
    the comparison allows float32 rounding (1e-5 relative), nothing more.
    """
    rows = [{**r, "dropout": 0.0} for r in DROPOUT_RUNS]
    hp = hparams(DROPOUT_STATIC, rows)
    with_dropout = train(DROPOUT_STATIC, hp).logs
    without = train(dataclasses.replace(DROPOUT_STATIC, has_dropout=False), hp).logs
    assert with_dropout.keys() == without.keys()
    assert np.isfinite(without["train_loss"]).all()
    for key in without:
        np.testing.assert_allclose(with_dropout[key], without[key], rtol=1e-5, atol=1e-7, err_msg=key)


def test_dropout_changes_training_and_is_deterministic_per_seed():
    zero = train(DROPOUT_STATIC, hparams(DROPOUT_STATIC, [{**r, "dropout": 0.0} for r in DROPOUT_RUNS])).logs
    hp = hparams(DROPOUT_STATIC, [{**r, "dropout": 0.3} for r in DROPOUT_RUNS])
    first, second = train(DROPOUT_STATIC, hp).logs, train(DROPOUT_STATIC, hp).logs
    for key in first:
        np.testing.assert_array_equal(first[key], second[key], err_msg=key)
    for i in range(len(DROPOUT_RUNS)):
        assert np.isfinite(first["train_loss"][:, i]).all()
        assert not np.allclose(first["train_loss"][:, i], zero["train_loss"][:, i], rtol=1e-3)
        assert not np.allclose(first["weight_norm"][:, i], zero["weight_norm"][:, i], rtol=1e-3)


def test_dropout_function_zeroes_and_rescales():
    x = jnp.arange(1.0, 2001.0)
    y = np.asarray(models.dropout(x, jnp.float32(0.25), jax.random.key(0)))
    kept = y != 0
    np.testing.assert_allclose(y[kept], np.asarray(x)[kept] / 0.75, rtol=1e-6)
    assert 0.2 < 1 - kept.mean() < 0.3
    np.testing.assert_array_equal(models.dropout(x, jnp.float32(0.0), jax.random.key(0)), x)


# --- 4. BatchNorm: running statistics in eval mode, masked statistics in training -----------


def batchnorm_setup():
    static = tiny_static(norm="batchnorm", activation="relu")
    variables = init_model(static, jax.random.key(0), 1.0)
    rng = np.random.default_rng(0)
    mean = rng.normal(size=N).astype(np.float32)
    var = rng.uniform(0.5, 3.0, size=N).astype(np.float32)
    scale = rng.uniform(0.5, 2.0, size=N).astype(np.float32)
    bias = rng.normal(size=N).astype(np.float32)
    variables["batch_stats"]["block_0"]["norm_bn"] = {"mean": jnp.asarray(mean), "var": jnp.asarray(var)}
    variables["params"]["block_0"]["norm_bn"] = {"scale": jnp.asarray(scale), "bias": jnp.asarray(bias)}
    return static, variables, mean, var, scale, bias


def test_batchnorm_eval_uses_running_statistics():
    static, variables, mean, var, scale, bias = batchnorm_setup()
    params = variables["params"]
    grid_inputs = (jnp.arange(P)[:, None], jnp.arange(P)[None, :])
    logits = models.build(static).apply(variables, grid_inputs, train=False, rate=jnp.float32(0.0), mask=None)
    U, V, W = (np.asarray(x) for x in (params["U"]["embedding"], params["V"]["embedding"], params["W"]["kernel"]))
    h = np.maximum(U[:, None, :] + V[None, :, :], 0.0).reshape(P * P, N)
    expected = ((h - mean) / np.sqrt(var + 1e-5) * scale + bias) @ W
    np.testing.assert_allclose(logits, expected, rtol=1e-5, atol=1e-5)


def test_batchnorm_training_statistics_use_masked_examples_only():
    static, variables, mean, var, scale, bias = batchnorm_setup()
    params = variables["params"]
    model = models.build(static)
    m = jnp.array([0, 1, 2, 3, 4, 5, 6, 3, 2, 1])
    n = jnp.array([6, 5, 4, 3, 2, 1, 0, 0, 0, 0])
    mask = jnp.array([True, True, False, True, True, False, True, True, False, True])

    def apply(m, n):
        return model.apply(variables, (m, n), train=True, rate=jnp.float32(0.0), mask=mask, mutable=["batch_stats"])

    logits, state = apply(m, n)
    U, V = np.asarray(params["U"]["embedding"]), np.asarray(params["V"]["embedding"])
    h = np.maximum(U[np.asarray(m)] + V[np.asarray(n)], 0.0)
    batch_mean = h[np.asarray(mask)].mean(axis=0)
    new = state["batch_stats"]["block_0"]["norm_bn"]
    np.testing.assert_allclose(new["mean"], 0.9 * mean + 0.1 * batch_mean, rtol=1e-5, atol=1e-6)
    # Training normalizes with the masked batch's own statistics, not the running ones.
    batch_var = h[np.asarray(mask)].var(axis=0)
    W = np.asarray(params["W"]["kernel"])
    expected = ((h - batch_mean) / np.sqrt(batch_var + 1e-5) * scale + bias) @ W
    keep = np.asarray(mask)
    np.testing.assert_allclose(np.asarray(logits)[keep], expected[keep], rtol=1e-4, atol=1e-4)
    # The excluded examples' values do not enter the statistics.
    other_m = jnp.where(mask, m, (m + 3) % P)
    other_n = jnp.where(mask, n, (n + 5) % P)
    assert (np.asarray(other_m) != np.asarray(m)).any()
    other_logits, other_state = apply(other_m, other_n)
    for k in ("mean", "var"):
        np.testing.assert_allclose(other_state["batch_stats"]["block_0"]["norm_bn"][k], new[k], rtol=1e-6, err_msg=k)
    np.testing.assert_allclose(np.asarray(other_logits)[keep], np.asarray(logits)[keep], rtol=1e-5, atol=1e-6)


# --- 5. a vmapped run equals the same run alone -----------------------------------------------

VMAP_CASES = {
    # The static of DROPOUT_STATIC: its vectorized program is already compiled by the dropout tests.
    "mlp_depth3_layernorm_dropout": (dict(depth=3, norm="layernorm", has_dropout=True), dict(dropout=0.2)),
    # sgd with momentum rides on the minibatch case: one compiled program less on a 2-core CPU.
    "mlp_batchnorm_minibatch_sgd_momentum": (dict(norm="batchnorm", batch_size=8, activation="relu",
                                                  optimizer="sgd", loss="cross_entropy"),
                                             dict(momentum=0.9, learning_rate=0.05)),
    "pair_mlp_tied_cross_entropy": (dict(model="pair_mlp", tied_embedding=True, embed_size=16, loss="cross_entropy",
                                         activation="relu"), dict()),
    "transformer": (dict(model="transformer", embed_size=16, heads=2, width=32, loss="cross_entropy",
                         activation="relu", optimizer="adam"), dict(learning_rate=0.003)),
    "parity_mlp_l1": (dict(task="sparse_parity", model="parity_mlp", loss="cross_entropy", n_bits=10, k_bits=3,
                           pool_size=200, test_size=80, activation="relu", regularization="l1"), dict()),
}
VMAP_RUNS = [{**DROPOUT_RUNS[0], "train_size": 100}, {**DROPOUT_RUNS[1], "train_size": 90}]


@pytest.mark.parametrize("name", list(VMAP_CASES))
def test_vmapped_run_equals_run_alone(name):
    changes, per_run = VMAP_CASES[name]
    static = tiny_static(**changes)
    hp = hparams(static, [{**row, **per_run} for row in VMAP_RUNS])
    together = train(static, hp).logs
    assert np.isfinite(together["train_loss"]).all()
    for i in range(len(VMAP_RUNS)):
        alone = train(static, jax.tree_util.tree_map(lambda x: x[i], hp), vectorized=False).logs
        for key, value in alone.items():
            np.testing.assert_allclose(together[key][:, i], value, rtol=2e-4, atol=1e-6, err_msg=key)


# --- 6. L1 regularization ------------------------------------------------------------------------

EPS = 1e-8  # Adam's epsilon, as torch.optim.Adam(W)


@pytest.mark.parametrize("optimizer", ["sgd", "adamw", "adam"])
def test_l1_update_shrinks_weights_toward_zero(optimizer):
    lr, wd = 0.1, 0.5
    theta = jnp.array([1.0, -2.0, 0.3, -0.06, 0.0])
    params = {"w": theta}
    tx = make_optimizer(tiny_static(optimizer=optimizer, regularization="l1"), one_run(lr, wd))
    updates, _ = tx.update({"w": jnp.zeros_like(theta)}, tx.init(params), params)
    sign = np.sign(np.asarray(theta))
    if optimizer == "adam":
        # Coupled: Adam's first step on the gradient d = wd sign(theta) is d / (|d| + eps).
        expected = -lr * wd * sign / (wd + EPS)
    else:
        # sgd: coupled, -lr (0 + wd sign); adamw: decoupled, -lr (Adam step on a zero gradient = 0, + wd sign).
        expected = -lr * wd * sign
    np.testing.assert_allclose(updates["w"], expected, rtol=1e-6)
    after = np.asarray(optax.apply_updates(params, updates)["w"])
    before = np.asarray(theta)
    nonzero = before != 0
    assert (np.abs(after[nonzero]) < np.abs(before[nonzero])).all()
    assert after[~nonzero].tolist() == [0.0]


def test_sgd_l1_is_the_subgradient_of_wd_times_the_l1_norm():
    lr, wd = 0.05, 2.0
    params = {"a": jnp.array([0.5, -1.5]), "b": jnp.array([[0.2, -0.1], [3.0, -0.7]])}
    grads = {"a": jnp.array([0.3, 0.1]), "b": jnp.array([[-0.2, 0.4], [0.0, 1.0]])}
    tx = make_optimizer(tiny_static(optimizer="sgd", regularization="l1"), one_run(lr, wd))
    updates, _ = tx.update(grads, tx.init(params), params)
    penalty = jax.grad(lambda p: wd * sum(jnp.sum(jnp.abs(w)) for w in jax.tree_util.tree_leaves(p)))(params)
    for k in params:
        np.testing.assert_allclose(updates[k], -lr * (grads[k] + penalty[k]), rtol=1e-6, err_msg=k)


def adam_steps(grads: list[np.ndarray], b1: float, b2: float) -> list[np.ndarray]:
    """torch.optim.Adam's bias-corrected steps m_hat / (sqrt(v_hat) + eps) for a sequence of gradients."""
    m, v, out = 0.0, 0.0, []
    for t, g in enumerate(grads, start=1):
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        out.append((m / (1 - b1**t)) / (np.sqrt(v / (1 - b2**t)) + EPS))
    return out


def run_optimizer(optimizer: str, regularization: str, lr: float, wd: float, theta: np.ndarray,
                  grads: list[np.ndarray]) -> list[np.ndarray]:
    tx = make_optimizer(tiny_static(optimizer=optimizer, regularization=regularization), one_run(lr, wd))
    params = {"w": jnp.asarray(theta)}
    state, out = tx.init(params), []
    for g in grads:
        updates, state = tx.update({"w": jnp.asarray(g)}, state, params)
        params = optax.apply_updates(params, updates)
        out.append(np.asarray(params["w"]))
    return out


L1_THETA = np.array([1.0, -2.0, 0.5, 0.05], np.float32)
L1_GRADS = [np.array([0.3, 0.0, -1.0, 0.2], np.float32), np.array([-0.1, 0.5, 0.2, 0.0], np.float32)]


def test_adamw_l1_is_decoupled_and_adds_no_l2():
    """adamw + l1: theta <- theta - lr (Adam step on the loss gradient alone + wd sign(theta)), no wd theta term."""
    lr, wd, (b1, b2) = 0.01, 3.0, tiny_static().betas
    got = run_optimizer("adamw", "l1", lr, wd, L1_THETA, L1_GRADS)
    theta, steps = L1_THETA, adam_steps(L1_GRADS, b1, b2)
    for t in range(len(L1_GRADS)):
        theta = theta - lr * (steps[t] + wd * np.sign(theta))
        np.testing.assert_allclose(got[t], theta, rtol=1e-5, atol=1e-7, err_msg=f"step {t + 1}")
    l2 = run_optimizer("adamw", "l2", lr, wd, L1_THETA, L1_GRADS)
    assert not np.allclose(l2[-1], got[-1], rtol=1e-4), "l1 must not also decay by wd * theta"


def test_adam_l1_is_coupled():
    """adam + l1: the Adam moments see g + wd sign(theta) (the PAIR notebook's L1 with Adam)."""
    lr, wd, (b1, b2) = 0.01, 0.3, tiny_static().betas
    got = run_optimizer("adam", "l1", lr, wd, L1_THETA, L1_GRADS)
    theta, m, v = L1_THETA, 0.0, 0.0
    for t, g in enumerate(L1_GRADS, start=1):
        d = g + wd * np.sign(theta)
        m, v = b1 * m + (1 - b1) * d, b2 * v + (1 - b2) * d * d
        theta = theta - lr * (m / (1 - b1**t)) / (np.sqrt(v / (1 - b2**t)) + EPS)
        np.testing.assert_allclose(got[t - 1], theta, rtol=1e-5, atol=1e-7, err_msg=f"step {t}")


# --- 7. SGD momentum --------------------------------------------------------------------------


@pytest.mark.parametrize("wd", [0.0, 0.1])
def test_sgd_momentum_matches_pytorch(wd):
    lr, mu = 0.1, 0.9
    theta0 = np.array([1.0, -2.0, 0.5], np.float32)
    g1, g2 = np.array([0.3, -0.2, 1.0], np.float32), np.array([-0.5, 0.1, 0.4], np.float32)
    tx = make_optimizer(tiny_static(optimizer="sgd"), one_run(lr, wd, momentum=mu))
    params = {"w": jnp.asarray(theta0)}
    state = tx.init(params)
    got = []
    for g in (g1, g2):
        updates, state = tx.update({"w": jnp.asarray(g)}, state, params)
        params = optax.apply_updates(params, updates)
        got.append(np.asarray(params["w"]))
    # torch.optim.SGD(momentum=mu, weight_decay=wd): d = g + wd theta; v <- mu v + d (v = d at step 1); theta -= lr v.
    d1 = g1 + wd * theta0
    v1 = d1
    theta1 = theta0 - lr * v1
    d2 = g2 + wd * theta1
    v2 = mu * v1 + d2
    theta2 = theta1 - lr * v2
    np.testing.assert_allclose(got[0], theta1, rtol=1e-6)
    np.testing.assert_allclose(got[1], theta2, rtol=1e-6)


# --- 8. minibatches and permutations ------------------------------------------------------------


# Jitted once per shape: called eagerly, their while_loop would compile anew on every call.
permuted_position_jit = jax.jit(permuted_position)
minibatch_jit = jax.jit(minibatch, static_argnums=0)


@pytest.mark.parametrize("n", [1, 2, 7, 100, 1000])
def test_permuted_position_is_a_permutation(n):
    q = jnp.arange(n, dtype=jnp.uint32)
    outs = [np.asarray(permuted_position_jit(q, jax.random.key(seed), jnp.int32(n))) for seed in (0, 1)]
    for out in outs:
        np.testing.assert_array_equal(np.sort(out), np.arange(n))
    if n >= 7:
        assert (outs[0] != outs[1]).any() and (outs[0] != np.arange(n)).any()


def batches(static, data, key, n_train, steps):
    out = [minibatch_jit(static, data, key, jnp.int32(t), jnp.int32(n_train)) for t in steps]
    return [(np.asarray(e), np.asarray(w)) for e, w in out]


def test_minibatch_epochs_cover_the_training_set_without_repeats():
    bs, n_train, p = 8, 50, 11
    static = tiny_static(p=p, batch_size=bs)
    data = make_run_data(static, jax.random.key(3), n_train, 0)
    train_set = set(np.flatnonzero(np.asarray(data.train)).tolist())
    assert len(train_set) == n_train
    per_epoch = n_train // bs
    key = jax.random.key(7)
    epochs = [batches(static, data, key, n_train, range(e * per_epoch, (e + 1) * per_epoch)) for e in range(2)]
    orders = []
    for epoch in epochs:
        drawn = np.concatenate([e for e, _ in epoch])
        assert all(w.all() and w.shape == (bs,) for _, w in epoch)
        assert set(drawn.tolist()) <= train_set
        assert len(set(drawn.tolist())) == len(drawn) == per_epoch * bs
        orders.append(drawn)
    assert (orders[0] != orders[1]).any(), "each epoch is a fresh permutation"
    # The same step always gives the same batch.
    again = batches(static, data, key, n_train, [3])[0][0]
    np.testing.assert_array_equal(again, epochs[0][3][0])


def test_minibatch_smaller_training_set_pads_with_zero_weights():
    bs, n_train = 8, 5
    static = tiny_static(p=7, batch_size=bs)
    data = make_run_data(static, jax.random.key(1), n_train, 0)
    train_set = set(np.flatnonzero(np.asarray(data.train)).tolist())
    for examples, weights in batches(static, data, jax.random.key(2), n_train, [0, 1, 2]):
        assert weights.shape == (bs,) and weights.sum() == n_train
        assert set(examples[weights].tolist()) == train_set  # the whole training set, once
        assert set(examples.tolist()) <= train_set


def test_minibatch_parity_draws_training_strings():
    static = parity_static(batch_size=16)
    n_train = 100
    data = make_run_data(static, jax.random.key(0), n_train, 0)
    (examples, weights), = batches(static, data, jax.random.key(1), n_train, [2])
    assert weights.all() and np.asarray(data.train)[examples].all()
    assert len(set(examples.tolist())) == 16


# --- 9. sparse parity data ------------------------------------------------------------------


def codes_of(bits: np.ndarray) -> np.ndarray:
    return (bits.astype(np.int64) << np.arange(bits.shape[1])).sum(axis=1)


@pytest.mark.parametrize("train_size, xi", [(100, 0.0), (120, 0.3), (37, 0.5)])
def test_sparse_parity_counts_labels_and_pool(train_size, xi):
    static = parity_static()
    n_corrupt = math.floor(xi * train_size)
    data = make_run_data(static, jax.random.key(5), train_size, n_corrupt)
    train_set, test_set, corrupted = (np.asarray(x) for x in (data.train, data.test, data.corrupted))
    bits, labels = np.asarray(data.inputs), np.asarray(data.labels)
    assert bits.shape == (static.pool_size, static.n_bits)
    assert set(np.unique(bits).tolist()) <= {0, 1}
    assert train_set.sum() == train_size
    assert test_set.sum() == static.test_size
    assert corrupted.sum() == n_corrupt
    assert not (train_set & test_set).any()
    assert not (corrupted & ~train_set).any()
    assert len(set(codes_of(bits).tolist())) == static.pool_size, "pool strings are distinct"
    parity = bits[:, : static.k_bits].sum(axis=1) % 2
    np.testing.assert_array_equal(labels[~corrupted], parity[~corrupted])
    assert set(np.unique(labels).tolist()) <= {0, 1}


def test_sparse_parity_pool_depends_on_data_seed_only():
    static = parity_static()

    def data(seed, data_seed, n_train=100):
        hp = Hparams(seed=seed, data_seed=data_seed, weight_decay=0.0, learning_rate=0.01, init_scale=1.0,
                     n_train=n_train, n_corrupt=0, dropout=0.0, momentum=0.0)
        return init_run(static, hp).data

    base = data(0, 3)
    for other in (data(9, 3), data(0, 3, n_train=60)):
        np.testing.assert_array_equal(other.inputs, base.inputs)
    np.testing.assert_array_equal(data(9, 3).train, base.train)
    assert (np.asarray(data(0, 4).inputs) != np.asarray(base.inputs)).any()


# --- 10. modular division and symmetric pairs ----------------------------------------------------


@pytest.mark.parametrize("task, symmetric", [("modular_division", False), ("modular_addition", True),
                                             ("modular_division", True)])
def test_invalid_pairs_are_in_neither_set(task, symmetric):
    p = 7
    static = tiny_static(task=task, p=p, symmetric=symmetric)
    m, n = np.divmod(np.arange(p * p), p)
    valid = np.ones(p * p, bool)
    if task == "modular_division":
        valid &= n != 0
    if symmetric:
        valid &= m <= n
    examples = int(valid.sum())
    by_hand = sum(1 for a in range(p) for b in range(p)
                  if (b != 0 or task != "modular_division") and (a <= b or not symmetric))
    assert examples == by_hand == {(True, False): p * (p - 1), (False, True): p * (p + 1) // 2,
                                   (True, True): (p - 1) * (p + 2) // 2}[(task == "modular_division", symmetric)]
    for fraction in (0.3, 1.0):
        n_train, _ = split_counts(fraction, 0.0, examples)
        data = make_run_data(static, jax.random.key(2), n_train, 0)
        train_set, test_set = np.asarray(data.train), np.asarray(data.test)
        assert not (train_set & ~valid).any() and not (test_set & ~valid).any()
        assert not (train_set & test_set).any()
        assert train_set.sum() == n_train
        assert train_set.sum() + test_set.sum() == examples
        labels = np.asarray(data.labels)[valid]
        if task == "modular_division":
            np.testing.assert_array_equal((labels * n[valid]) % p, m[valid])
        else:
            np.testing.assert_array_equal(labels, (m[valid] + n[valid]) % p)


def test_grid_counts_only_valid_pairs():
    config = from_dict({"task": {"name": "modular_division", "p": 7, "symmetric": True, "data_fraction": 0.5}})
    runs = runs_table.expand(config)
    examples = sum(1 for m in range(7) for n in range(1, 7) if m <= n)
    assert int(runs.n_train[0] + runs.n_test[0]) == examples
    assert int(runs.n_train[0]) == examples // 2


# --- 11. Appendix A batch scaling ----------------------------------------------------------


def test_appendix_a_batch_scaling():
    config = from_dict({
        "task": {"p": 7},
        "train": {"batch_scaling": "appendix_a", "steps": 2000, "log_every": 20, "learning_rate": 0.01},
        "sweep": {"batch_size": [64, 256, 0]},
    })
    runs = runs_table.expand(config).set_index("batch_size")
    assert (runs.loc[64, "steps"], runs.loc[64, "log_every"]) == (8000, 80)
    assert runs.loc[64, "learning_rate"] == pytest.approx(0.005, rel=1e-12)
    for size in (256, 0):
        assert (runs.loc[size, "steps"], runs.loc[size, "log_every"]) == (2000, 20)
        assert runs.loc[size, "learning_rate"] == 0.01
    statics = {s.batch_size: s for s, _ in plan.groups(runs_table.expand(config))}
    assert (statics[64].steps, statics[64].log_every) == (8000, 80)
    unscaled = runs_table.expand(from_dict({"task": {"p": 7}, "train": {"batch_size": 64, "steps": 2000}}))
    assert int(unscaled.steps[0]) == 2000 and float(unscaled.learning_rate[0]) == 0.01


# --- 12. combinations that cannot run -------------------------------------------------------

PARITY = {"name": "sparse_parity", "n_bits": 12, "pool_size": 300, "train_size": 100, "test_size": 100}
BAD_COMBINATIONS = {
    "parity_with_mlp": ({"task": PARITY, "model": {"name": "mlp"}, "train": {"loss": "cross_entropy"}},
                        'task = "sparse_parity" with model = "mlp"'),
    "mlp_on_parity_model": ({"model": {"name": "parity_mlp"}, "train": {"loss": "cross_entropy"}},
                            'task = "modular_addition" with model = "parity_mlp"'),
    "parity_mlp_with_mse": ({"task": PARITY, "model": {"name": "parity_mlp"}, "train": {"loss": "mse"}},
                            'loss = "mse"'),
    "division_p12": ({"task": {"name": "modular_division", "p": 12}}, "task.p = 12"),
    "heads_not_dividing": ({"model": {"name": "transformer", "embed_size": 16, "heads": 3}}, "model.heads = 3"),
    "transformer_batchnorm": ({"model": {"name": "transformer", "embed_size": 16, "heads": 2, "norm": "batchnorm"}},
                              'model.norm = "batchnorm"'),
    "pair_mlp_depth3": ({"model": {"name": "pair_mlp", "depth": 3}}, "model.depth = 3"),
    "parity_sets_exceed_pool": ({"task": {**PARITY, "train_size": 250}, "model": {"name": "parity_mlp"},
                                 "train": {"loss": "cross_entropy"}}, "task.train_size + task.test_size = 350"),
    "parity_pool_exceeds_strings": ({"task": {**PARITY, "n_bits": 8}, "model": {"name": "parity_mlp"},
                                     "train": {"loss": "cross_entropy"}}, "task.pool_size = 300"),
    "bad_row_inside_the_grid": ({"model": {"norm": "batchnorm", "embed_size": 16, "heads": 2},
                                 "sweep": {"model": ["mlp", "transformer"]}}, 'model.norm = "batchnorm"'),
}


def to_toml(data: dict) -> str:
    def value(v):
        if isinstance(v, str):
            return f'"{v}"'
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, list):
            return "[" + ", ".join(value(x) for x in v) + "]"
        return repr(v)

    lines = ['name = "bad"']
    for table, fields in data.items():
        lines.append(f"[{table}]")
        lines += [f"{k} = {value(v)}" for k, v in fields.items()]
    return "\n".join(lines) + "\n"


def small(data: dict) -> dict:
    """The bad config made cheap, so that a missed rejection would still finish quickly."""
    out = {k: dict(v) for k, v in data.items()}
    task = out.setdefault("task", {})
    if task.get("name", "modular_addition") != "sparse_parity":
        task.setdefault("p", 7)
    out.setdefault("model", {}).setdefault("width", 8)
    out.setdefault("train", {}).update(steps=2, log_every=1)
    return out


@pytest.mark.parametrize("name", list(BAD_COMBINATIONS))
def test_bad_combinations_raise_one_line_config_error(name):
    data, needle = BAD_COMBINATIONS[name]
    with pytest.raises(ConfigError) as err:
        runs_table.expand(from_dict(small(data)))
    message = str(err.value)
    assert needle in message
    assert "\n" not in message


@pytest.mark.parametrize("name", list(BAD_COMBINATIONS))
def test_bad_combinations_exit_2_with_one_line(sweep_file, tmp_path, capsys, name):
    data, needle = BAD_COMBINATIONS[name]
    path = sweep_file(to_toml(small(data)), name="bad.toml")
    out = tmp_path / "out"
    assert main(["sweep", str(path), "--out", str(out), "--no-progress", "--no-plots"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert str(path) in err and needle in err
    assert not out.exists(), "nothing is written for a bad combination"
