"""Models: flax.linen.Module classes, named in a sweep file as "mypkg.models:<class>"."""

import flax.linen as nn
import jax
import jax.numpy as jnp


class EmbedMLP(nn.Module):
    """One embedding shared by every position, the embeddings concatenated, one hidden ReLU layer."""

    num_tokens: int  # grokjax passes these three from the task
    num_classes: int
    arity: int
    width: int = 64  # grokjax's own model.width reaches a module that has the field
    embed: int = 16  # a key of this model's own: [model] embed = 32
    drop: float = 0.0  # dropout of this model's own, drawn from the "dropout" rng

    @nn.compact
    def __call__(self, inputs: jax.Array, *, train: bool) -> jax.Array:
        table = nn.Embed(self.num_tokens, self.embed, name="embed")
        h = table(inputs).reshape(inputs.shape[0], self.arity * self.embed)
        h = nn.relu(nn.Dense(self.width, name="hidden")(h))
        h = nn.Dropout(self.drop, deterministic=not train)(h)
        return nn.Dense(self.num_classes, name="out")(h)

    def neuron_weights(self, params: dict) -> dict[str, jax.Array]:
        """Optional: each embedding direction over the tokens, for grokjax's per-neuron IPR and frequencies."""
        return {"u": params["embed"]["embedding"].T}

    def without_units(self, params: dict, keep: jax.Array) -> dict:
        """Optional: the parameters with the units of neuron_weights whose `keep` is false removed (here the
        embedding's directions zeroed), for grokjax prune and [analysis] min_prune."""
        return {**params, "embed": {"embedding": params["embed"]["embedding"] * keep}}


class Bilinear(nn.Module):
    """Logits = E[a] W E[b]^T ... for two tokens: no neuron_weights, so the per-neuron analyses are left out."""

    num_tokens: int
    num_classes: int
    embed: int = 16

    @nn.compact
    def __call__(self, inputs: jax.Array, *, train: bool) -> jax.Array:
        table = nn.Embed(self.num_tokens, self.embed, name="embed")
        a, b = table(inputs[:, 0]), table(inputs[:, 1])
        mix = self.param("mix", nn.initializers.normal(0.1), (self.embed, self.embed, self.num_classes))
        return jnp.einsum("be,efc,bf->bc", a, mix, b)
