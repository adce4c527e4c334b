"""Looking inside the models: per-neuron IPR and frequencies (eqs. 3-4), and the analytic solution (eq. 2).

Neuron k of the 2-layer MLP f(m, n) = W phi(U e_m + V e_n) owns row k of U and V
(its input weights, one per residue) and column k of W (its output weights); a deeper
MLP's first-layer neurons own rows of U and V, and the transformer's embedding
directions their columns of the embedding (Figure 7).
A periodic neuron's weights have one dominant Fourier component, so their
inverse participation ratio is near 1; white noise spreads over all components.
All functions are pure JAX on one run's params and are vmapped over runs.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from grokjax.core import models, registry
from grokjax.core.types import Static

# A neuron counts as periodic ("generalizing") when its IPR is at least this. White noise at
# p = 97 has an expected IPR of about 0.04 and a pure cosine has 1; the paper's Figure 4
# shows trained neurons split into modes below 0.3 and above 0.6.
PERIODIC_IPR = 0.5


def has_neurons(static: Static) -> bool:
    """Whether per-neuron analysis applies: a model that shows its units (a `neuron_weights` method: the MLPs and
    the transformer, Figures 4 and 7) on a task whose tokens are residues in order (`Task.cyclic`)."""
    return left_out(static) is None


def left_out(static: Static) -> str | None:
    """Why per-neuron analysis does not apply to these runs, in words; None where it does."""
    task = registry.task_of(static)
    if not hasattr(registry.resolve("model", static.model), "neuron_weights"):
        return f"the model {static.model} has no neuron_weights method (docs/extending.md)"
    if not task.cyclic:
        return f"the tokens of task {static.task} are not residues in order (its Task is not cyclic)"
    return None


def neuron_weights(static: Static, params: Any) -> dict[str, jax.Array]:
    """Each unit's weight vectors over the tokens, as (units, tokens) arrays, by name (u, v, w): the model's
    `neuron_weights(params)`. The 2-layer MLP: neuron k's input weights from m (row k of U) and from n (of V)
    and its output weights (column k of W); the transformer: its embedding directions (u only)."""
    return models.build(static).neuron_weights(params)


def power_spectrum(vectors: jax.Array) -> jax.Array:
    """|rfft(x)|^2 of each row, computed as two matmuls with the DFT's cosines and sines.

    Not `jnp.fft.rfft`: XLA's partitioner cannot split an FFT along the runs axis, so a chunk
    split over devices gathered every run's weights onto each device at every logged step
    (an all-gather that held the devices in step, 7 to 9% of a segment on the 2-core CPU).
    A matmul splits like the rest of the step; for the paper's p it costs no more.
    """
    p = vectors.shape[-1]
    angles = 2 * np.pi * np.outer(np.arange(p), np.arange(p // 2 + 1)) / p
    cos, sin = jnp.asarray(np.cos(angles), vectors.dtype), jnp.asarray(np.sin(angles), vectors.dtype)
    highest = jax.lax.Precision.HIGHEST  # not TF32 or bfloat16 passes where a GPU would default to them
    return jnp.matmul(vectors, cos, precision=highest) ** 2 + jnp.matmul(vectors, sin, precision=highest) ** 2


def ipr(vectors: jax.Array, r: int = 2) -> jax.Array:
    """IPR of each row: (||x~||_2r / ||x~||_2)^(2r) over the magnitudes of its real DFT (eq. 3, r = 2)."""
    power = power_spectrum(vectors)
    return jnp.sum(power**r, axis=-1) / jnp.sum(power, axis=-1) ** r


def white_noise_ipr(p: int) -> float:
    """The expected IPR (r = 2) of Gaussian white noise of length p, to first order.

    Of the rfft's M = p // 2 + 1 components, the complex ones have |x~|^2 exponential
    (E|x~|^4 = 2 mu^2) and the real ones (frequency 0, and p/2 for even p) chi-squared
    with one degree of freedom (E|x~|^4 = 3 mu^2); the ratio of expectations of the
    numerator and the squared denominator is then (2c + 3r) / ((c + r)^2 + c + 2r),
    with c complex and r real components: about 2 / M.
    """
    real = 1 if p % 2 else 2
    complex_ = p // 2 + 1 - real
    return (2 * complex_ + 3 * real) / ((complex_ + real) ** 2 + complex_ + 2 * real)


def neuron_stats(static: Static, params: Any) -> dict[str, jax.Array]:
    """Per unit (`neuron_weights`): the IPR of each weight vector (NaN where the model has none), their mean
    (eq. 4), the dominant frequency of its input weights and its weight norm; shape (units,)."""
    weights = neuron_weights(static, params)
    iprs = {name: ipr(w) for name, w in weights.items()}
    units, p = weights["u"].shape
    spectrum = sum(power_spectrum(weights[k]) for k in ("u", "v") if k in weights)
    missing = jnp.full((units,), jnp.nan, jnp.float32)
    return {
        **{f"ipr_{k}": iprs.get(k, missing) for k in ("u", "v", "w")},
        "ipr": sum(iprs.values()) / len(iprs),
        # Frequencies 1 .. (p - 1) / 2 of the input weights; frequency 0 is a constant.
        "dominant_frequency": 1 + jnp.argmax(spectrum[:, 1 : (p - 1) // 2 + 1], axis=-1).astype(jnp.int32),
        "norm": jnp.sqrt(sum(jnp.sum(w**2, axis=-1) for w in weights.values())),
    }


def ipr_mean(static: Static, params: Any) -> jax.Array:
    """The network's mean per-unit IPR (the paper's IPR bar), over units whose weights are not all zero.

    A unit that weight decay has shrunk to exactly zero (as in the forgetting phase) has
    no spectrum: its IPR is NaN, and it is left out of the mean.
    """
    return jnp.nanmean(neuron_stats(static, params)["ipr"])


def analytic_solution(p: int, width: int, key: jax.Array) -> dict[str, Any]:
    """Weights of eq. 2 in the `mlp` params layout: 100% accurate on modular addition for large width.

    U_ki = a cos(2 pi i s_k / p + phi_k^u), V_kj = a cos(2 pi j s_k / p + phi_k^v),
    W_qk = a cos(-2 pi q s_k / p - phi_k^u - phi_k^v), with s = a random permutation of
    1..width (so every frequency appears when width >= p) and i.i.d. phases in (-pi, pi].
    The amplitude a = (2 / width)^(1/3) makes f = (1/N) sum_k cos(2 pi s_k (m + n - q) / p)
    + terms with random phases that average out (Appendix D).
    """
    k_perm, k_u, k_v = jax.random.split(key, 3)
    freq = (jax.random.permutation(k_perm, width) + 1)[:, None]
    phi_u = jax.random.uniform(k_u, (width, 1), minval=-jnp.pi, maxval=jnp.pi)
    phi_v = jax.random.uniform(k_v, (width, 1), minval=-jnp.pi, maxval=jnp.pi)
    # (s_k i) mod p in integers: the angle stays below 2 pi, so float32 cosines stay exact.
    angle = 2 * jnp.pi * ((freq * jnp.arange(p)[None, :]) % p).astype(jnp.float32) / p
    scale = (2.0 / width) ** (1.0 / 3.0)
    U = scale * jnp.cos(angle + phi_u)
    V = scale * jnp.cos(angle + phi_v)
    W = scale * jnp.cos(-angle - phi_u - phi_v)  # row k: neuron k's output weights over q
    return {"U": {"embedding": U.T}, "V": {"embedding": V.T}, "W": {"kernel": W}}

