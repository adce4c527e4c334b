"""The field's newer training methods, as Optax gradient transformations and a loss (docs/methods.md).

- Grokfast-EMA (Lee et al. 2024, ironjr/grokfast `gradfilter_ema`): each gradient plus lambda times an exponential
  moving average of the gradients so far, the average starting at the first gradient; Grokfast-MA (`gradfilter_ma`)
  the same with the mean of the last `window` gradients, once there are that many.
- ⊥Grad (Prieto et al. 2025, `OrthoGrad`): each parameter's gradient without its component along the parameter,
  rescaled to the gradient's own norm.
- StableMax (Prieto et al. 2025): softmax with exp replaced by s(x) = x + 1 (x >= 0), 1 / (1 - x) (x < 0).
They act on the raw gradients, before the optimizer (and its weight decay), as the authors' code does; alpha and
lambda are traced per run.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

TINY = 1e-30  # the authors' epsilon, in ⊥Grad's norms and StableMax's s(x)


class GrokfastState(NamedTuple):
    average: Any  # the moving average of the gradients so far
    count: jax.Array  # updates so far


def grokfast_ema(alpha: jax.Array, lamb: jax.Array) -> optax.GradientTransformation:
    """g + lamb * a, a <- alpha * a + (1 - alpha) * g, a starting at the first gradient (gradfilter_ema).

    Written out, not optax.ema: that average starts at zero (or is debiased), the authors' at the first gradient."""

    def init(params: Any) -> GrokfastState:
        return GrokfastState(jax.tree.map(jnp.zeros_like, params), jnp.zeros([], jnp.int32))

    def update(updates: Any, state: GrokfastState, params: Any = None) -> tuple[Any, GrokfastState]:
        first = state.count == 0
        previous = jax.tree.map(lambda a, g: jnp.where(first, g, a), state.average, updates)
        average = jax.tree.map(lambda a, g: a * alpha + g * (1 - alpha), previous, updates)
        filtered = jax.tree.map(lambda g, a: g + a * lamb, updates, average)
        return filtered, GrokfastState(average, optax.safe_int32_increment(state.count))

    return optax.GradientTransformation(init, update)


class WindowState(NamedTuple):
    window: Any  # the last `window` gradients of each parameter, (window, *shape), in a ring
    count: jax.Array  # updates so far


def grokfast_ma(window: int, lamb: jax.Array) -> optax.GradientTransformation:
    """g + lamb * (the mean of the last `window` gradients, g included), once `window` gradients have come; before,
    g as it is (gradfilter_ma with its defaults: warmup, a mean). The window is a shape, so static; it holds
    `window` copies of the parameters per run (`plan.run_bytes`)."""

    def init(params: Any) -> WindowState:
        return WindowState(jax.tree.map(lambda w: jnp.zeros((window, *w.shape), w.dtype), params),
                           jnp.zeros([], jnp.int32))

    def update(updates: Any, state: WindowState, params: Any = None) -> tuple[Any, WindowState]:
        slot, full = state.count % window, state.count + 1 >= window
        held = jax.tree.map(lambda buffer, g: buffer.at[slot].set(g), state.window, updates)
        ones = jnp.ones(window, jnp.float32)  # the window's sum as a dot, as a run's other sums (`metrics`)
        filtered = jax.tree.map(lambda g, buffer: jnp.where(full, g + jnp.tensordot(ones, buffer, 1) / window * lamb, g),
                                updates, held)
        return filtered, WindowState(held, optax.safe_int32_increment(state.count))

    return optax.GradientTransformation(init, update)


def orthograd() -> optax.GradientTransformation:
    """Each leaf's gradient g without its component along the parameter w, g - (w.g / (w.w + eps)) w, rescaled to
    the norm of g (OrthoGrad). A parameter of norm 0 passes its gradient unchanged (up to eps): no NaN."""

    def one(g: jax.Array, w: jax.Array) -> jax.Array:
        w_flat, g_flat = w.reshape(-1), g.reshape(-1)
        orthogonal = g_flat - jnp.dot(w_flat, g_flat) / (jnp.dot(w_flat, w_flat) + TINY) * w_flat
        scale = jnp.linalg.norm(g_flat) / (jnp.linalg.norm(orthogonal) + TINY)
        return (orthogonal * scale).reshape(g.shape)

    return optax.stateless(lambda updates, params: jax.tree.map(one, updates, params))


def stablemax_s(logits: jax.Array) -> jax.Array:
    """StableMax's s(x) in place of exp(x): the authors' 1 / (1 - x + eps) for x < 0, x + 1 otherwise (their `s`);
    `metrics.stablemax_log_probs` normalizes it."""
    return jnp.where(logits < 0, 1 / (1 - logits + TINY), logits + 1)
