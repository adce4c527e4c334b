"""Grokfast-EMA, ⊥Grad and StableMax against their authors' definitions (ironjr/grokfast `gradfilter_ema`; Prieto
et al.'s `OrthoGrad` and `stablemax_cross_entropy`), written here in NumPy as their loops compute them, on fixed
inputs; and through a sweep: switched off, a run is value for value the run without the field."""

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest

import grokjax
from grokjax.cli import main
from grokjax.core import methods
from grokjax.core.metrics import example_losses, stablemax_log_probs

RNG = np.random.default_rng(7)
GRADIENTS = [{"w": RNG.normal(size=(3, 4)).astype(np.float32), "b": RNG.normal(size=5).astype(np.float32)}
             for _ in range(6)]


def gradfilter_ema(gradients, alpha, lamb):
    """The authors' loop: grads starts as the first gradient, then grads = grads * alpha + g * (1 - alpha) and the
    gradient becomes g + grads * lamb, at every step."""
    grads, out = None, []
    for g in gradients:
        if grads is None:
            grads = {n: v.copy() for n, v in g.items()}
        grads = {n: grads[n] * alpha + g[n] * (1 - alpha) for n in g}
        out.append({n: g[n] + grads[n] * lamb for n in g})
    return out


@pytest.mark.parametrize("alpha, lamb", [(0.98, 2.0), (0.5, 5.0), (0.9, 0.0)])
def test_grokfast_ema_is_gradfilter_ema(alpha, lamb):
    tx = methods.grokfast_ema(jnp.float32(alpha), jnp.float32(lamb))
    state = tx.init(jax.tree.map(jnp.zeros_like, GRADIENTS[0]))
    for g, expected in zip(GRADIENTS, gradfilter_ema(GRADIENTS, np.float32(alpha), np.float32(lamb))):
        got, state = tx.update(g, state)
        for name in g:
            np.testing.assert_allclose(got[name], expected[name], rtol=1e-6, atol=1e-7)
    if lamb == 0:  # off: the gradients pass as they are
        np.testing.assert_array_equal(tx.update(GRADIENTS[0], state)[0]["w"], GRADIENTS[0]["w"])


def orthogonalized(g, w):
    """OrthoGrad._orthogonalize_gradients on one parameter."""
    w, g = w.reshape(-1).astype(np.float64), g.reshape(-1).astype(np.float64)
    proj = np.dot(w, g) / (np.dot(w, w) + 1e-30)
    g_orth = g - proj * w
    return g_orth * (np.linalg.norm(g) / (np.linalg.norm(g_orth) + 1e-30))


def test_orthograd_is_the_authors_projection_rescaled():
    params = {"w": RNG.normal(size=(3, 4)).astype(np.float32), "b": np.zeros(5, np.float32)}
    got, _ = methods.orthograd().update(GRADIENTS[0], methods.orthograd().init(params), params)
    np.testing.assert_allclose(got["w"].reshape(-1), orthogonalized(GRADIENTS[0]["w"], params["w"]), rtol=1e-5)
    assert abs(float(jnp.vdot(got["w"], params["w"]))) < 1e-4  # orthogonal to the parameter
    np.testing.assert_allclose(np.linalg.norm(got["w"]), np.linalg.norm(GRADIENTS[0]["w"]), rtol=1e-5)
    # A parameter of norm 0: its gradient passes unchanged, no NaN.
    np.testing.assert_allclose(got["b"], GRADIENTS[0]["b"], rtol=1e-6)
    zero, _ = methods.orthograd().update({"b": np.zeros(5, np.float32)}, None, {"b": np.zeros(5, np.float32)})
    assert np.isfinite(zero["b"]).all() and not zero["b"].any()


def test_stablemax_loss_is_the_authors_log_stablemax():
    logits = np.array([[-3.0, 0.0, 2.5, -0.25], [10.0, -10.0, 0.5, 0.0]], np.float32)
    labels = np.array([2, 1])
    s = np.where(logits < 0, 1 / (1 - logits.astype(np.float64) + 1e-30), logits + 1.0)
    expected = -np.log(s / s.sum(axis=1, keepdims=True))[np.arange(2), labels]
    np.testing.assert_allclose(example_losses(jnp.asarray(logits), jnp.asarray(labels), "stablemax"), expected, rtol=1e-6)
    # s is continuous at 0 and grows linearly, not exponentially: no probability rounds to exactly 1 here.
    assert float(jnp.exp(stablemax_log_probs(jnp.array([[100.0, 0.0]])))[0, 1]) > 0


SWEEP = """\
name = "methods"
[task]
p = 11
[model]
width = 16
[train]
loss = "{loss}"
learning_rate = 0.01
steps = 20
log_every = 10
{extra}
[sweep]
data_fraction = [0.5]
weight_decay = [0.0, 1.0]
{axes}
"""


def test_methods_train_through_the_command_line_and_switched_off_change_nothing(tmp_path):
    def swept(name, loss="cross_entropy", extra="", axes=""):
        path = tmp_path / f"{name}.toml"
        path.write_text(SWEEP.format(loss=loss, extra=extra, axes=axes))
        assert main(["sweep", str(path), "--out", str(tmp_path / name), "--no-progress", "--no-plots"]) == 0
        return grokjax.load_results(tmp_path / name)

    plain = swept("plain")
    both = swept("both", loss="stablemax", extra="orthograd = true", axes="grokfast_lambda = [0.0, 2.0]")
    assert sorted(both.runs.grokfast_lambda.unique()) == [0.0, 2.0] and both.runs.orthograd.all()
    losses = both.curves.merge(both.runs[["run_id", "weight_decay", "grokfast_lambda"]], on="run_id")
    by_lambda = losses[losses.weight_decay == 0].groupby("grokfast_lambda").train_loss.apply(list)
    assert by_lambda[0.0] != by_lambda[2.0], "runs of one sweep with and without Grokfast train apart"
    assert both.meta["compiled_programs"] == 2
    assert np.isfinite(both.runs[["train_loss", "test_loss"]].to_numpy(float)).all()
    # Grokfast-MA's runs at lambda 0, and any alpha, are the plain runs; at lambda 2 they train apart.
    off = swept("off", extra='grokfast_filter = "ma"\ngrokfast_window = 3',
                axes="grokfast_lambda = [0.0, 2.0]\ngrokfast_alpha = [0.9]")
    metrics = ["train_loss", "test_loss", "train_acc", "test_acc", "weight_norm"]
    at = off.runs.set_index("run_id").grokfast_lambda
    zero = off.curves[off.curves.run_id.map(at) == 0].reset_index(drop=True)
    zero["run_id"] = zero.run_id.map(dict(zip(sorted(zero.run_id.unique()), sorted(plain.runs.run_id))))
    pd.testing.assert_frame_equal(zero[["run_id", "step", *metrics]], plain.curves[["run_id", "step", *metrics]])
    window = off.curves[off.curves.run_id.map(at) == 2]
    assert np.isfinite(window[metrics].to_numpy(float)).all()
    assert window.train_loss.tolist() != zero.train_loss.tolist()
    for res in (plain, both):  # cross-entropy and StableMax runs measure softmax collapse (MSE runs do not: above)
        shares = res.curves[["softmax_collapse", "zero_loss_fraction"]].to_numpy()
        assert ((shares >= 0) & (shares <= 1)).all() and "softmax_collapse" in res.runs


@pytest.mark.parametrize("line, said", [
    ("grokfast_alpha = -0.1", "train.grokfast_alpha = -0.1 is out of range; allowed: a number with 0 <= grokfast_alpha < 1"),
    ('grokfast_lambda = "big"', "train.grokfast_lambda"),
    ("grokfast_lambda = 1000.0", "allowed: a number from 0 (off) to 100"),
    ("orthograd = 3", "train.orthograd = 3"),
    ('loss_precision = "float16"', 'allowed: one of "float32", "float64"'),
    ('grokfast_filter = "fir"', 'train.grokfast_filter = "fir" is out of range; allowed: one of "ema", "ma"'),
    ("grokfast_window = 0", "allowed: an integer from 1 to 10000"),
])
def test_bad_method_settings_are_one_line(tmp_path, capsys, line, said):
    path = tmp_path / "bad.toml"
    path.write_text(SWEEP.format(loss="stablemax", extra=line, axes=""))
    assert main(["sweep", str(path), "--out", str(tmp_path / "out"), "--no-progress", "--no-plots"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and said in err, err
    assert not (tmp_path / "out").exists()


def test_softmax_collapse_counts_what_rounds_to_one_and_losses_of_exactly_zero():
    """evaluate's counts over the training examples: a float32 softmax whose correct class is exactly 1, and a
    per-example loss of exactly 0; none for MSE runs."""
    from grokjax.core.metrics import evaluate
    from grokjax.core.tasks import RunData

    logits = jnp.array([[200.0, 0.0, 0.0], [5.0, 0.0, 0.0], [0.0, 120.0, 0.0], [300.0, 0.0, 0.0]])
    labels = jnp.array([0, 0, 1, 0])
    train = jnp.array([True, True, True, False])
    data = RunData(jnp.arange(4), train, ~train, jnp.zeros(4, bool), labels, None)
    softmax = np.asarray(jax.nn.softmax(logits))[np.arange(4), np.asarray(labels)]
    out = evaluate(logits, data, {"w": jnp.ones(1)}, "cross_entropy")
    assert int(out["collapsed_count"]) == int(((softmax == 1.0) & np.asarray(train)).sum()) == 2
    assert int(out["zero_loss_count"]) == 2  # log(1 + e^-200 + ...) is exactly 0 in float32
    stable = evaluate(logits, data, {"w": jnp.ones(1)}, "stablemax")
    assert int(stable["collapsed_count"]) == 2 and int(stable["zero_loss_count"]) == 0  # s(x) decays as 1/x
    assert "collapsed_count" not in evaluate(logits, data, {"w": jnp.ones(1)}, "mse")


def float64_cross_entropy(logits, labels):
    """The authors' `cross_entropy_float64`, per example: log_softmax of the logits cast to float64."""
    x = np.asarray(logits, np.float64)
    shifted = x - x.max(axis=1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    return -log_probs[np.arange(len(x)), np.asarray(labels)]


COLLAPSING = np.array([[20.0, 0.0, 0.0], [19.0, 1.0, 0.5], [0.0, 40.0, 0.0], [2.0, 0.0, 1.0]], np.float32)
COLLAPSING_LABELS = np.array([0, 0, 1, 2])


def test_float64_loss_is_the_authors_and_does_not_collapse_where_float32_does():
    """A gap of 20 rounds the float32 loss and softmax to exactly 0 and 1; float64 holds 4e-9 (until a gap of 37)."""
    logits, labels = jnp.asarray(COLLAPSING), jnp.asarray(COLLAPSING_LABELS)
    f32 = np.asarray(example_losses(logits, labels, "cross_entropy"))
    f64 = np.asarray(example_losses(logits, labels, "cross_entropy", "float64"))
    np.testing.assert_allclose(f64, float64_cross_entropy(COLLAPSING, COLLAPSING_LABELS).astype(np.float32), rtol=1e-6)
    assert f32[0] == 0.0 and f64[0] > 0 and f64[2] == 0.0  # float64 collapses later, not never
    from grokjax.core.metrics import collapsed
    assert collapsed(logits, labels).tolist() == [True, True, True, False]
    assert collapsed(logits, labels, "float64").tolist() == [False, False, True, False]


def test_float64_loss_keeps_its_precision_inside_the_training_loop():
    """The gradient of the float64 loss, taken as a training step takes it (grad inside cond inside scan, vmapped
    over runs: each re-traces the loss outside float64's scope), is the float64 softmax minus the one-hot labels:
    nonzero for the correct class of a collapsed float32 example."""
    labels = jnp.asarray(COLLAPSING_LABELS)

    def run(logits):
        def step(carry, t):
            grad = jax.grad(lambda x: example_losses(x, labels, "cross_entropy", "float64").sum())
            return jax.lax.cond(t < 1, lambda c: grad(logits), lambda c: c, carry), None
        return jax.lax.scan(step, jnp.zeros_like(logits), jnp.arange(2))[0]

    got = np.asarray(jax.jit(jax.vmap(run))(jnp.stack([jnp.asarray(COLLAPSING)] * 2)))
    x = COLLAPSING.astype(np.float64)
    softmax = np.exp(x - x.max(axis=1, keepdims=True))
    expected = softmax / softmax.sum(axis=1, keepdims=True) - np.eye(3)[COLLAPSING_LABELS]
    np.testing.assert_allclose(got[0], expected.astype(np.float32), rtol=1e-5)
    assert got[0][0, 0] < 0  # float32 gives exactly 0 here
    assert got.dtype == np.float32


def test_loss_precision_float32_keeps_the_configs_hash_and_float64_is_its_own_program(tmp_path):
    from grokjax.config.sweep_file import load

    paths = []
    for name, line in (("plain", ""), ("explicit", 'loss_precision = "float32"')):
        paths.append(tmp_path / f"{name}.toml")
        paths[-1].write_text(SWEEP.format(loss="cross_entropy", extra=line, axes=""))
    assert load(paths[0]).hash() == load(paths[1]).hash()
    path = tmp_path / "both.toml"
    path.write_text(SWEEP.format(loss="stablemax", extra="", axes='loss_precision = ["float32", "float64"]'))
    assert main(["sweep", str(path), "--out", str(tmp_path / "both"), "--no-progress", "--no-plots"]) == 0
    res = grokjax.load_results(tmp_path / "both")
    assert sorted(res.runs.loss_precision.unique()) == ["float32", "float64"] and res.meta["compiled_programs"] == 2
    assert np.isfinite(res.curves.train_loss).all()


def gradfilter_ma(gradients, window, lamb):
    """The authors' loop with its defaults (warmup, mean): each gradient joins a deque of the last `window`; once
    the deque is full, the gradient becomes g + lamb * sum(deque) / len(deque)."""
    from collections import deque

    grads, out = {n: deque(maxlen=window) for n in gradients[0]}, []
    for g in gradients:
        step = {}
        for n in g:
            grads[n].append(g[n].copy())
            step[n] = g[n] + sum(grads[n]) / len(grads[n]) * lamb if len(grads[n]) == window else g[n]
        out.append(step)
    return out


@pytest.mark.parametrize("window, lamb", [(3, 5.0), (1, 2.0), (4, 0.5)])
def test_grokfast_ma_is_gradfilter_ma(window, lamb):
    tx = methods.grokfast_ma(window, jnp.float32(lamb))
    state = tx.init(jax.tree.map(jnp.zeros_like, GRADIENTS[0]))
    for i, (g, expected) in enumerate(zip(GRADIENTS, gradfilter_ma(GRADIENTS, window, np.float32(lamb)))):
        got, state = tx.update(g, state)
        for name in g:
            np.testing.assert_allclose(got[name], expected[name], rtol=1e-6, atol=1e-6)
            if i + 1 < window:  # before the window fills, the gradient passes as it is
                np.testing.assert_array_equal(got[name], g[name])


def test_the_collapse_count_of_a_run_does_not_depend_on_how_many_runs_are_vmapped_with_it():
    """Logits at the edge of collapse (a lead of 14 to 19 over 58 others, where float32 rounds some sums of
    exponentials to exactly 1 and others not): each run's flags alone equal its flags among 2, 3 and 8 runs."""
    from grokjax.core.metrics import collapsed

    rng = np.random.default_rng(0)
    logits = rng.normal(size=(8, 500, 59)).astype(np.float32)  # at this size a dot over the classes is not
    logits[..., 0] += rng.uniform(14, 19, size=(8, 500)).astype(np.float32)  # invariant: one flag differs
    labels = jnp.zeros(500, jnp.int32)
    flags = jax.jit(jax.vmap(lambda x: collapsed(x, labels)))
    alone = np.stack([np.asarray(flags(jnp.asarray(logits[i:i + 1])))[0] for i in range(8)])
    assert 0 < alone.sum() < alone.size  # at the edge: some collapse, some not
    for n in (2, 3, 8):
        np.testing.assert_array_equal(np.asarray(flags(jnp.asarray(logits[:n]))), alone[:n])
