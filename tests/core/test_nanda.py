"""Nanda et al.'s one-layer transformer against its definition: their forward pass written out in numpy over all
three positions with a causal mask (their notebook's `Transformer`), on fixed weights."""

import jax
import jax.numpy as jnp
import numpy as np

from grokjax.core import models
from grokjax.core.types import Static

STATIC = Static(task="modular_addition", p=7, model="nanda_transformer", embed_size=16, heads=4, width=24,
                activation="relu")


def init(static: Static, seed: int) -> dict:
    return jax.jit(lambda key: models.init(static, key, jnp.float32(1.0))["params"])(jax.random.key(seed))


def their_forward(params: dict, a: np.ndarray, b: np.ndarray, p: int) -> np.ndarray:
    """Logits at the last position over the residues: embed (a, b, =) plus positions; causal attention with scores
    over sqrt(d_head); a ReLU MLP with biases; the unembedding without the "=" column."""
    w = {k: np.asarray(v, np.float64) for k, v in params.items()}
    tokens = np.stack([a, b, np.full_like(a, p)], axis=1)
    x = w["embed"][tokens] + w["position"]  # (batch, 3, d)
    q, k, v = (np.einsum("hkd,btd->bhtk", w[n], x) for n in ("query", "key", "value"))
    scores = np.einsum("bhtk,bhsk->bhts", q, k) / np.sqrt(q.shape[-1])
    scores = np.where(np.tril(np.ones((3, 3), bool)), scores, -1e10)  # causal: position t sees s <= t
    attention = np.exp(scores - scores.max(-1, keepdims=True))
    attention /= attention.sum(-1, keepdims=True)
    z = np.einsum("bhts,bhsk->bthk", attention, v).reshape(len(a), 3, -1)
    r = x + z @ w["out"].T
    r = r + np.maximum(r @ w["mlp_in"].T + w["mlp_in_bias"], 0) @ w["mlp_out"].T + w["mlp_out_bias"]
    return (r @ w["unembed"])[:, -1, :-1]


def test_the_last_position_alone_gives_their_logits():
    params = init(STATIC, 3)
    rng = np.random.default_rng(4)
    params = jax.tree.map(lambda w: np.asarray(w) + 0.1 * rng.standard_normal(w.shape, np.float32), params)  # biases too
    a, b = np.divmod(np.arange(49), 7)
    forward = jax.jit(lambda params, inputs: models.call(models.build(STATIC), {"params": params}, inputs,
                                                         train=False, rate=0.0, mask=None))
    ours = forward(params, jnp.stack([a, b], 1))
    np.testing.assert_allclose(ours, their_forward(params, a, b, 7), rtol=2e-5, atol=2e-5)
    grid = forward(params, (jnp.arange(7)[:, None], jnp.arange(7)[None, :]))
    np.testing.assert_allclose(grid, ours, rtol=1e-6, atol=1e-6)  # pairs as the broadcast grid: the same rows


def test_their_initialization_and_weight_decay_on_every_parameter():
    params = init(STATIC, 0)
    assert params["embed"].shape == (8, 16) and params["position"].shape == (3, 16)  # the "=" token and position
    assert params["unembed"].shape == (16, 8) and params["query"].shape == (4, 4, 16)
    assert not params["mlp_in_bias"].any() and not params["mlp_out_bias"].any()
    big = init(Static(**{**STATIC.__dict__, "embed_size": 256, "width": 512}), 1)
    assert abs(float(big["mlp_in"].std()) - 256**-0.5) < 0.01 * 256**-0.5 * 10
    assert abs(float(big["unembed"].std()) - 8**-0.5) < 0.1 * 8**-0.5
    assert models.decays_all(STATIC)
