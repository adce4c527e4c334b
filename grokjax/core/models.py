"""The models, as Flax modules: pure `init`/`apply`, vmapped over runs by the trainer.

Every module is called as `model.apply(variables, inputs, train=..., rate=..., mask=...)`:
`inputs` comes from `tasks.model_inputs`, `rate` is the run's dropout probability
(a traced number), and `mask` marks the examples whose statistics BatchNorm may
use (the training set, or a minibatch's filled slots). Logits have shape
(examples, classes).

Dropout is our own three lines, not `flax.linen.Dropout`: Flax's branches on the
rate in Python (`if self.rate == 0.0`), which needs a concrete number, so every
dropout probability would compile its own program. Here the rate is an array.
"""

from __future__ import annotations

import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from grokjax.core.tasks import is_modular
from grokjax.core.types import Static

ACTIVATIONS = {
    "quadratic": jnp.square,
    "relu": jax.nn.relu,
}
NORM_PREFIX = "norm"  # modules named so keep their init under init_scale and hold no "neurons"


def dropout(x: jax.Array, rate: jax.Array, key: jax.Array) -> jax.Array:
    """Zero each entry with probability `rate` and scale the rest by 1 / (1 - rate); rate 0 is the identity."""
    keep = 1.0 - rate
    return jnp.where(jax.random.bernoulli(key, keep, x.shape), x / keep, 0.0)


class Block(nn.Module):
    """Dropout (training only), activation, then the norm: the paper's order, eq. 5 and its code."""

    activation: str
    norm: str
    has_dropout: bool

    @nn.compact
    def __call__(self, h: jax.Array, *, train: bool, rate: jax.Array, mask: jax.Array | None) -> jax.Array:
        if train and self.has_dropout:
            h = dropout(h, rate, self.make_rng("dropout"))
        h = ACTIVATIONS[self.activation](h)
        if self.norm == "batchnorm":
            # PyTorch's BatchNorm1d momentum 0.1 (Flax counts it the other way) and eps 1e-5. One
            # difference stays: Flax's running variance averages the biased batch variance, PyTorch's
            # the unbiased one (n / (n - 1) larger: 14% at batch size 8, nothing at full batch).
            bn = nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5, name=f"{NORM_PREFIX}_bn")
            h = bn(h, mask=None if mask is None else mask[:, None])
        elif self.norm == "layernorm":
            h = nn.LayerNorm(epsilon=1e-5, name=f"{NORM_PREFIX}_ln")(h)
        return h


class MLP(nn.Module):
    """The paper's MLP: f(m, n) = W phi(U e_m + V e_n), with depth - 2 more hidden layers for depth > 2.

    With one-hot inputs the first layer is a lookup (two `nn.Embed` tables of shape
    (p, width)); over the whole p^2 grid it is the broadcast sum U[m] + V[n], so no
    one-hot matrix or gather is built. With onehot=True, gathered examples go through
    the first layer as the paper's code computes it, a one-hot matrix times U and V,
    whose gradient is a matmul rather than a scatter-add (`training.FORMULATIONS`).
    Depth 2, the paper's model: all weights ~ N(0, (16 width)^(-2/3)) (Appendix A; their `fcn`).
    Deeper, the standard parameterization of Appendix G's ReLU MLPs: every layer ~ N(0, 2 / fan_in)
    (Kaiming), the first layer's fan-in being the 2p one-hot inputs.
    """

    p: int
    width: int
    depth: int
    activation: str
    norm: str
    has_dropout: bool
    onehot: bool = False

    @nn.compact
    def __call__(self, inputs: Any, *, train: bool, rate: jax.Array, mask: jax.Array | None) -> jax.Array:
        m, n = inputs
        if self.depth == 2:
            first = init = nn.initializers.normal((16.0 * self.width) ** (-1.0 / 3.0))
        else:
            first, init = nn.initializers.normal((1.0 / self.p) ** 0.5), nn.initializers.variance_scaling(2.0, "fan_in", "normal")
        U = nn.Embed(self.p, self.width, embedding_init=first, name="U")
        V = nn.Embed(self.p, self.width, embedding_init=first, name="V")
        if self.onehot and m.ndim == 1:
            h = jax.nn.one_hot(m, self.p, dtype=U.embedding.dtype) @ U.embedding
            h = h + jax.nn.one_hot(n, self.p, dtype=V.embedding.dtype) @ V.embedding
        else:
            h = (U(m) + V(n)).reshape(-1, self.width)  # pairs-major (p^2, N): faster on CPU than (N, p^2)
        for layer in range(self.depth - 1):
            if layer:
                h = nn.Dense(self.width, use_bias=False, kernel_init=init, name=f"hidden_{layer}")(h)
            h = Block(self.activation, self.norm, self.has_dropout, name=f"block_{layer}")(h, train=train, rate=rate, mask=mask)
        return nn.Dense(self.p, use_bias=False, kernel_init=init, name="W")(h)


class PairMLP(nn.Module):
    """The PAIR explorable's model: logits = ReLU(E[m] W_h + E[n] W_h) W_out E^T (or an untied unembedding).

    Inits as its code (Haiku): the embedding and unembedding ~ variance scaling 2
    over fan-in, the linear layers ~ LeCun normal. The hidden layer is computed once
    per token (p rows) and the readout W_out E^T once per run, so the p^2 grid
    costs p^2 x width x p, not p^2 x embed_size x (width + p).
    """

    p: int
    width: int
    embed_size: int
    tied_embedding: bool
    activation: str
    norm: str
    has_dropout: bool

    @nn.compact
    def __call__(self, inputs: Any, *, train: bool, rate: jax.Array, mask: jax.Array | None) -> jax.Array:
        m, n = inputs
        embed_init = nn.initializers.variance_scaling(2.0, "fan_in", "truncated_normal")
        embed = nn.Embed(self.p, self.embed_size, embedding_init=embed_init, name="embed")
        per_token = nn.Dense(self.width, use_bias=False, name="hidden")(embed.embedding)  # (p, width)
        h = (per_token[m] + per_token[n]).reshape(-1, self.width)
        h = Block(self.activation, self.norm, self.has_dropout, name="block")(h, train=train, rate=rate, mask=mask)
        out = self.param("out", nn.initializers.lecun_normal(), (self.width, self.embed_size))
        if self.tied_embedding:
            readout = embed.attend(out)  # out @ E^T: (width, p)
        else:
            readout = nn.Dense(self.p, use_bias=False, kernel_init=embed_init, name="unembed")(out)
        return h @ readout


class ParityMLP(nn.Module):
    """The sparse-parity model of seed 000: bits (and a last input fixed to 1, a bias) -> hidden -> one logit.

    The logit z is returned as the two-class logits (0, z), so softmax cross-entropy
    on them is the logistic loss on z and argmax predicts 1 exactly when z > 0.
    """

    width: int
    activation: str
    norm: str
    has_dropout: bool

    @nn.compact
    def __call__(self, bits: jax.Array, *, train: bool, rate: jax.Array, mask: jax.Array | None) -> jax.Array:
        # bfloat16 holds 0 and 1 exactly and promotes to the weights' dtype (float32 unless train.precision).
        x = jnp.concatenate([bits.astype(jnp.bfloat16), jnp.ones((bits.shape[0], 1), jnp.bfloat16)], axis=1)
        h = nn.Dense(self.width, use_bias=False, name="hidden")(x)
        h = Block(self.activation, self.norm, self.has_dropout, name="block")(h, train=train, rate=rate, mask=mask)
        z = nn.Dense(1, use_bias=False, name="out")(h)[:, 0]
        return jnp.stack([jnp.zeros_like(z), z], axis=1)


class Transformer(nn.Module):
    """The authors' one-layer encoder-only transformer (d-doshi/Grokking, `utils/models.py`, configured as in
    their `Notebooks/Grokking_with_transformer.ipynb`), on the two tokens (m, n), read out at the last.

    Their maximal-update parameterization (s = 1): attention scores divided by d_head (not its
    square root) and the logits multiplied by 1 / d_model, so that at initialization the logits
    are small (about 0.016 at d_model 128) rather than of order one; token and position
    embeddings ~ N(0, 1); linear layers ~ N(0, 1 / fan_in); no biases; an untied unembedding
    unless tied_embedding. norm = "layernorm" adds their pre-LayerNorms and the final one
    (if_ln); dropout applies where theirs does (embeddings, attention weights, both residual
    branches). With one layer, the logits depend on the first position only through the last
    position's attention, so only the last position's query, MLP and readout are computed: exact.
    """

    p: int
    width: int
    embed_size: int
    heads: int
    tied_embedding: bool
    activation: str
    norm: str
    has_dropout: bool

    @nn.compact
    def __call__(self, inputs: Any, *, train: bool, rate: jax.Array, mask: jax.Array | None) -> jax.Array:
        m, n = jnp.broadcast_arrays(*inputs)
        tokens = jnp.stack([m.reshape(-1), n.reshape(-1)], axis=1)
        d, head = self.embed_size, self.embed_size // self.heads
        linear = functools.partial(nn.Dense, use_bias=False, kernel_init=nn.initializers.variance_scaling(1.0, "fan_in", "normal"))
        embed = nn.Embed(self.p, d, embedding_init=nn.initializers.normal(1.0), name="embed")
        position = self.param("position", nn.initializers.normal(1.0), (2, d))

        def drop(x: jax.Array) -> jax.Array:
            return dropout(x, rate, self.make_rng("dropout")) if train and self.has_dropout else x

        def norm(x: jax.Array, name: str) -> jax.Array:
            return nn.LayerNorm(epsilon=1e-5, name=f"{NORM_PREFIX}_{name}")(x) if self.norm == "layernorm" else x

        x = drop(embed(tokens) + position)  # (examples, 2, d)
        q, k, v = jnp.split(linear(3 * d, name="qkv")(norm(x, "attn")), 3, axis=-1)
        q, k, v = (t.reshape(*t.shape[:-1], self.heads, head) for t in (q[:, -1], k, v))
        scores = jnp.einsum("bhd,bthd->bht", q, k) / head  # the last query over both keys
        attended = jnp.einsum("bht,bthd->bhd", drop(jax.nn.softmax(scores, axis=-1)), v).reshape(-1, d)
        r = x[:, -1] + drop(linear(d, name="attn_out")(attended))
        h = ACTIVATIONS[self.activation](linear(self.width, name="mlp_in")(norm(r, "mlp")))
        r = norm(r + drop(linear(d, name="mlp_out")(h)), "final")
        logits = embed.attend(r) if self.tied_embedding else linear(self.p, name="unembed")(r)
        return logits / d


def build(static: Static) -> nn.Module:
    """The Flax module of a static configuration."""
    common = dict(activation=static.activation, norm=static.norm, has_dropout=static.has_dropout)
    if static.model == "mlp":
        return MLP(p=static.p, width=static.width, depth=static.depth, onehot=static.formulation == "onehot", **common)
    if static.model == "pair_mlp":
        return PairMLP(p=static.p, width=static.width, embed_size=static.embed_size,
                       tied_embedding=static.tied_embedding, **common)
    if static.model == "parity_mlp":
        return ParityMLP(width=static.width, **common)
    return Transformer(p=static.p, width=static.width, embed_size=static.embed_size, heads=static.heads,
                       tied_embedding=static.tied_embedding, **common)


def example_inputs(static: Static) -> Any:
    """A one-example input of the right kind, for `init`."""
    if is_modular(static.task):
        zero = jnp.zeros((1,), jnp.int32)
        return zero, zero
    return jnp.zeros((1, static.n_bits), jnp.int8)


def init(static: Static, key: jax.Array, init_scale: jax.Array) -> dict[str, Any]:
    """Variables {"params": ..., ["batch_stats": ...]}; weights (not norm layers) scaled by init_scale."""
    variables = build(static).init(key, example_inputs(static), train=False, rate=jnp.float32(0.0), mask=None)
    params = jax.tree_util.tree_map_with_path(
        lambda path, w: w if any(str(getattr(k, "key", "")).startswith(NORM_PREFIX) for k in path) else w * init_scale,
        variables["params"],
    )
    return {**variables, "params": params}


def decayed(params: Any) -> Any:
    """Which of the transformer's parameters weight decay acts on, as the authors' optimizer chooses them
    (timm's param_groups_weight_decay): the weights of two or more dimensions, not LayerNorm's scales and
    biases. (Their MLPs decay every parameter: torch.optim.AdamW(model.parameters()).)"""
    return jax.tree.map(lambda w: w.ndim >= 2, params)


def param_count(static: Static) -> int:
    """Trainable parameters of the model (from shapes only; nothing is computed)."""
    shapes = jax.eval_shape(lambda: init(static, jax.random.key(0), jnp.float32(1.0))["params"])
    return int(sum(x.size for x in jax.tree_util.tree_leaves(shapes)))
