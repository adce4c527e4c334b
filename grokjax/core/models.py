"""The models, as Flax modules: pure `init`/`apply`, vmapped over runs by the trainer.

A model is a `flax.linen.Module` class, built in or the user's own (`registry.resolve`), built by
`build` and called by `call` the same way (docs/extending.md): constructed with the [model] keys
it takes and num_tokens, num_classes and arity; called as `module(inputs, train=...)` on integer
inputs of shape (batch, arity), returning logits (batch, num_classes). What a module declares
decides the rest:
- `rate` in its `__call__`: it gets the run's dropout probability (a traced number, `model.dropout`);
- `mask` in its `__call__`: it gets the examples whose statistics BatchNorm may use (the training set,
  or a minibatch's filled slots);
- `takes_pairs = True`: over a task of all token pairs (`Task.grid`) it gets the pairs as two arrays,
  for all examples a (tokens, 1) and a (1, tokens) array to broadcast (`tasks.model_inputs`);
- `decayed(self, params)`: which parameters weight decay acts on (default: those of 2 or more dimensions);
- `neuron_weights(self, params)`: each unit's weight vectors over the tokens, for the per-neuron analyses.

Dropout is our own three lines, not `flax.linen.Dropout`: Flax's branches on the
rate in Python (`if self.rate == 0.0`), which needs a concrete number, so every
dropout probability would compile its own program. Here the rate is an array.
"""

from __future__ import annotations

import functools
import inspect
import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from grokjax.core import registry
from grokjax.core.tasks import shape_of
from grokjax.core.types import Static

ACTIVATIONS = {
    "quadratic": jnp.square,
    "relu": jax.nn.relu,
}
NORM_PREFIX = "norm"  # modules named so keep their init under init_scale and hold no "neurons"


def pairs(inputs: Any, arity: int) -> tuple[jax.Array, jax.Array]:
    """The two tokens of each example, from rows (batch, 2) or from two arrays (`takes_pairs`)."""
    if arity != 2:
        raise ValueError(f"this model reads pairs of tokens; the task's examples have {arity}")
    return inputs if isinstance(inputs, tuple) else (inputs[:, 0], inputs[:, 1])


def rows(inputs: Any) -> jax.Array:
    """Inputs as rows (batch, arity): two broadcast arrays of pairs stacked, row-major."""
    if not isinstance(inputs, tuple):
        return inputs
    return jnp.stack([a.reshape(-1) for a in jnp.broadcast_arrays(*inputs)], axis=1)


def decay_all(params: Any) -> Any:
    """Every parameter decays: the authors' MLPs (torch.optim.AdamW(model.parameters()))."""
    return jax.tree.map(lambda w: True, params)


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

    num_tokens: int
    num_classes: int
    arity: int
    width: int
    depth: int
    activation: str
    norm: str
    has_dropout: bool
    onehot: bool = False
    takes_pairs = True
    decayed = staticmethod(decay_all)

    @nn.compact
    def __call__(self, inputs: Any, *, train: bool, rate: jax.Array, mask: jax.Array | None) -> jax.Array:
        m, n = pairs(inputs, self.arity)
        if self.depth == 2:
            first = init = nn.initializers.normal((16.0 * self.width) ** (-1.0 / 3.0))
        else:
            first = nn.initializers.normal((1.0 / self.num_tokens) ** 0.5)
            init = nn.initializers.variance_scaling(2.0, "fan_in", "normal")
        U = nn.Embed(self.num_tokens, self.width, embedding_init=first, name="U")
        V = nn.Embed(self.num_tokens, self.width, embedding_init=first, name="V")
        if self.onehot and m.ndim == 1:
            h = jax.nn.one_hot(m, self.num_tokens, dtype=U.embedding.dtype) @ U.embedding
            h = h + jax.nn.one_hot(n, self.num_tokens, dtype=V.embedding.dtype) @ V.embedding
        else:
            h = (U(m) + V(n)).reshape(-1, self.width)  # pairs-major (p^2, N): faster on CPU than (N, p^2)
        for layer in range(self.depth - 1):
            if layer:
                h = nn.Dense(self.width, use_bias=False, kernel_init=init, name=f"hidden_{layer}")(h)
            h = Block(self.activation, self.norm, self.has_dropout, name=f"block_{layer}")(h, train=train, rate=rate, mask=mask)
        return nn.Dense(self.num_classes, use_bias=False, kernel_init=init, name="W")(h)

    def neuron_weights(self, params: Any) -> dict[str, jax.Array]:
        """Neuron k's input weights from m (row k of U) and from n (of V), and with depth 2 its output weights
        (column k of W); a deeper MLP's outputs feed hidden layers, not the residues, so U and V only."""
        weights = {"u": params["U"]["embedding"].T, "v": params["V"]["embedding"].T}
        if self.depth == 2:
            weights["w"] = params["W"]["kernel"]
        return weights

    def without_units(self, params: Any, keep: jax.Array) -> Any:
        """The parameters with the first hidden layer's neurons whose `keep` is false removed: their outputs zeroed
        (row k of the layer reading them, W at depth 2: the paper's pruning, Figure 6)."""
        reader = "W" if self.depth == 2 else "hidden_1"
        kernel = params[reader]["kernel"]
        return {**params, reader: {**params[reader], "kernel": kernel * keep[:, None].astype(kernel.dtype)}}


class PairMLP(nn.Module):
    """The PAIR explorable's model: logits = ReLU(E[m] W_h + E[n] W_h) W_out E^T (or an untied unembedding).

    Inits as its code (Haiku): the embedding and unembedding ~ variance scaling 2
    over fan-in, the linear layers ~ LeCun normal. The hidden layer is computed once
    per token (p rows) and the readout W_out E^T once per run, so the p^2 grid
    costs p^2 x width x p, not p^2 x embed_size x (width + p).
    """

    num_tokens: int
    num_classes: int
    arity: int
    width: int
    embed_size: int
    tied_embedding: bool
    activation: str
    norm: str
    has_dropout: bool
    takes_pairs = True
    decayed = staticmethod(decay_all)

    @nn.compact
    def __call__(self, inputs: Any, *, train: bool, rate: jax.Array, mask: jax.Array | None) -> jax.Array:
        m, n = pairs(inputs, self.arity)
        embed_init = nn.initializers.variance_scaling(2.0, "fan_in", "truncated_normal")
        embed = nn.Embed(self.num_tokens, self.embed_size, embedding_init=embed_init, name="embed")
        per_token = nn.Dense(self.width, use_bias=False, name="hidden")(embed.embedding)  # (p, width)
        h = (per_token[m] + per_token[n]).reshape(-1, self.width)
        h = Block(self.activation, self.norm, self.has_dropout, name="block")(h, train=train, rate=rate, mask=mask)
        out = self.param("out", nn.initializers.lecun_normal(), (self.width, self.embed_size))
        if self.tied_embedding:
            readout = embed.attend(out)  # out @ E^T: (width, p)
        else:
            readout = nn.Dense(self.num_classes, use_bias=False, kernel_init=embed_init, name="unembed")(out)
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
    decayed = staticmethod(decay_all)

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
    branches). With one layer, the logits depend on the other positions only through the last
    position's attention, so only the last position's query, MLP and readout are computed: exact.
    Weight decay leaves its 1-D parameters alone (the default `decayed`, as timm's
    param_groups_weight_decay that the authors' optimizer uses).
    """

    num_tokens: int
    num_classes: int
    arity: int
    width: int
    embed_size: int
    heads: int
    tied_embedding: bool
    activation: str
    norm: str
    has_dropout: bool
    takes_pairs = True

    @nn.compact
    def __call__(self, inputs: Any, *, train: bool, rate: jax.Array, mask: jax.Array | None) -> jax.Array:
        tokens = rows(inputs)
        d, head = self.embed_size, self.embed_size // self.heads
        linear = functools.partial(nn.Dense, use_bias=False, kernel_init=nn.initializers.variance_scaling(1.0, "fan_in", "normal"))
        embed = nn.Embed(self.num_tokens, d, embedding_init=nn.initializers.normal(1.0), name="embed")
        position = self.param("position", nn.initializers.normal(1.0), (self.arity, d))

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
        if self.tied_embedding and self.num_classes != self.num_tokens:
            raise ValueError(f"tied_embedding needs as many classes as tokens ({self.num_classes} != {self.num_tokens})")
        logits = embed.attend(r) if self.tied_embedding else linear(self.num_classes, name="unembed")(r)
        return logits / d

    def neuron_weights(self, params: Any) -> dict[str, jax.Array]:
        """The embedding's directions, u only: direction j's entries over the tokens (column j of the embedding)."""
        return {"u": params["embed"]["embedding"].T}


class NandaTransformer(nn.Module):
    """Nanda et al.'s one-layer transformer ("Progress measures for grokking via mechanistic interpretability",
    2023, and their notebook's `Transformer`): the tokens (a, b, =), "=" being token num_tokens; d_model
    `embed_size`, `heads` heads of d_model / heads, an MLP of `width` ReLU units with biases, no LayerNorm, read
    out at the last position. Their standard parameterization: the embedding, position embedding, attention and
    MLP weights ~ N(0, 1 / d_model), the unembedding ~ N(0, 1 / (num_tokens + 1)), attention scores over the
    square root of d_head. The unembedding's column for "=" is left out of the logits, as their loss leaves it.
    Weight decay acts on every parameter (their AdamW over model.parameters()). Only the last position's query,
    MLP and readout are computed: with one layer and a causal mask, exact.
    """

    num_tokens: int
    num_classes: int
    arity: int
    width: int
    embed_size: int
    heads: int
    activation: str
    takes_pairs = True
    decayed = staticmethod(decay_all)

    @nn.compact
    def __call__(self, inputs: Any, *, train: bool) -> jax.Array:
        tokens = rows(inputs)
        tokens = jnp.concatenate([tokens, jnp.full((tokens.shape[0], 1), self.num_tokens, tokens.dtype)], axis=1)
        d, h = self.embed_size, self.heads
        k = d // h
        weights = nn.initializers.normal(d**-0.5)
        embed = self.param("embed", weights, (self.num_tokens + 1, d))
        x = embed[tokens] + self.param("position", weights, (self.arity + 1, d))  # (examples, arity + 1, d)
        query, key, value = (self.param(name, weights, (h, k, d)) for name in ("query", "key", "value"))
        q = jnp.einsum("hkd,bd->bhk", query, x[:, -1])
        scores = jnp.einsum("bhk,hkd,btd->bht", q, key, x) / k**0.5  # the last query over every position
        z = jnp.einsum("bht,hkd,btd->bhk", jax.nn.softmax(scores, axis=-1), value, x).reshape(-1, h * k)
        r = x[:, -1] + z @ self.param("out", weights, (d, h * k)).T
        hidden = r @ self.param("mlp_in", weights, (self.width, d)).T + self.param("mlp_in_bias", nn.initializers.zeros, (self.width,))
        r = r + ACTIVATIONS[self.activation](hidden) @ self.param("mlp_out", weights, (d, self.width)).T
        r = r + self.param("mlp_out_bias", nn.initializers.zeros, (d,))
        unembed = self.param("unembed", nn.initializers.normal((self.num_tokens + 1) ** -0.5), (d, self.num_classes + 1))
        return r @ unembed[:, : self.num_classes]

    def neuron_weights(self, params: Any) -> dict[str, jax.Array]:
        """The embedding's directions over the residues (the "=" token left out), u only."""
        return {"u": params["embed"][: self.num_tokens].T}


BUILTIN = tuple(registry.BUILTIN_MODELS)
DERIVED = {  # what a module is built with besides the [model] table and the task's shape
    "has_dropout": lambda static: static.has_dropout,
    "onehot": lambda static: static.formulation == "onehot",
}


def build(static: Static) -> nn.Module:
    """The Flax module of a static configuration, built in or the user's own, built alike: with the fields it
    declares among grokjax's [model] fields (width, depth, ...: their sweep-file values), the derived ones
    (has_dropout, onehot), num_tokens, num_classes and arity, and the [model] keys grokjax does not define."""
    cls = registry.resolve("model", static.model)
    num_tokens, num_classes, arity = shape_of(static)
    known = {"num_tokens": num_tokens, "num_classes": num_classes, "arity": arity,
             **{k: getattr(static, k) for k in MODEL_FIELDS}, **{k: f(static) for k, f in DERIVED.items()}}
    fields = registry.model_fields(cls)
    return cls(**{k: v for k, v in known.items() if k in fields}, **dict(static.model_args))


MODEL_FIELDS = ("width", "depth", "activation", "norm", "embed_size", "heads", "tied_embedding")


@functools.cache
def keywords(cls: type) -> frozenset[str]:
    return frozenset(inspect.signature(cls.__call__).parameters)


def _arguments(model: nn.Module, inputs: Any, rate: jax.Array, mask: jax.Array | None) -> tuple[Any, dict[str, Any]]:
    """The inputs and keywords a module takes: pairs as rows unless it `takes_pairs`; `rate` and `mask` if its
    `__call__` names them."""
    if not getattr(model, "takes_pairs", False):
        inputs = rows(inputs)
    return inputs, {k: v for k, v in (("rate", rate), ("mask", mask)) if k in keywords(type(model))}


def call(model: nn.Module, variables: dict[str, Any], inputs: Any, *, train: bool, rate: jax.Array,
         mask: jax.Array | None, **kwargs: Any) -> Any:
    """`model.apply(variables, inputs, train=...)`, as the module takes its inputs (`_arguments`)."""
    inputs, extra = _arguments(model, inputs, rate, mask)
    return model.apply(variables, inputs, train=train, **extra, **kwargs)


def example_inputs(static: Static) -> Any:
    """A one-example input of the right kind, for `init`."""
    return jnp.zeros((1, shape_of(static)[2]), jnp.int32)


def init(static: Static, key: jax.Array, init_scale: jax.Array) -> dict[str, Any]:
    """Variables {"params": ..., ["batch_stats": ...]}; weights (not norm layers) scaled by init_scale."""
    model = build(static)
    inputs, extra = _arguments(model, example_inputs(static), jnp.float32(0.0), None)
    variables = model.init(key, inputs, train=False, **extra)
    params = jax.tree_util.tree_map_with_path(
        lambda path, w: w if any(str(getattr(k, "key", "")).startswith(NORM_PREFIX) for k in path) else w * init_scale,
        variables["params"],
    )
    return {**variables, "params": params}


def decayed(static: Static, params: Any) -> Any:
    """Which parameters weight decay acts on (True leaves): the module's `decayed(params)` where it has one,
    else those of two or more dimensions (not biases, nor LayerNorm's scales and offsets)."""
    model = build(static)
    if hasattr(model, "decayed"):
        return model.decayed(params)
    return jax.tree.map(lambda w: w.ndim >= 2, params)


@functools.cache
def decays_all(static: Static) -> bool:
    """Whether weight decay acts on every parameter (then the optimizer needs no mask, nor its state a layer)."""
    shapes = jax.eval_shape(lambda: init(static, jax.random.key(0), jnp.float32(1.0))["params"])
    return all(jax.tree.leaves(decayed(static, shapes)))


def param_count(static: Static) -> int:
    """Trainable parameters of the model (from shapes only; nothing is computed)."""
    shapes = jax.eval_shape(lambda: init(static, jax.random.key(0), jnp.float32(1.0))["params"])
    return int(sum(x.size for x in jax.tree_util.tree_leaves(shapes)))


def example_floats(static: Static) -> int:
    """Floats one example's forward pass makes, counted on the traced program (what the memory plan of a model
    without a formula of its own assumes): the intermediate values of a batch of two less those of a batch of one,
    so that what the weights alone make (transposes, an embedding's products) is not counted per example."""
    shapes = jax.eval_shape(lambda: init(static, jax.random.key(0), jnp.float32(1.0)))

    def floats(batch: int) -> int:
        inputs = jnp.zeros((batch, shape_of(static)[2]), jnp.int32)
        jaxpr = jax.make_jaxpr(lambda variables: call(build(static), variables, inputs, train=False,
                                                      rate=jnp.float32(0.0), mask=None))(shapes)
        return sum(math.prod(v.aval.shape) for eqn in jaxpr.eqns for v in eqn.outvars if hasattr(v.aval, "shape"))

    return int(floats(2) - floats(1))
