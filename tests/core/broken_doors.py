"""Tasks and models of a user's own that grokjax must refuse, each in one line (tests/core/test_doors.py)."""

import flax.linen as nn
import jax.numpy as jnp
import numpy as np

import grokjax

NOT_A_FUNCTION = 3


def pairs(p: int = 5) -> grokjax.Task:
    x, y = np.divmod(np.arange(p * p), p)
    return grokjax.Task(inputs=np.stack([x, y], 1), labels=(x + y) % p, num_tokens=p, num_classes=p)


def returns_a_dict(p: int = 5) -> dict:
    return {"inputs": pairs(p).inputs}


def float_inputs(p: int = 5) -> grokjax.Task:
    task = pairs(p)
    return grokjax.Task(inputs=task.inputs.astype(float), labels=task.labels, num_tokens=p, num_classes=p)


def labels_too_large(p: int = 5) -> grokjax.Task:
    task = pairs(p)
    return grokjax.Task(inputs=task.inputs, labels=task.labels + p, num_tokens=p, num_classes=p)


def short_labels(p: int = 5) -> grokjax.Task:
    task = pairs(p)
    return grokjax.Task(inputs=task.inputs, labels=task.labels[:-1], num_tokens=p, num_classes=p)


def integer_valid(p: int = 5) -> grokjax.Task:
    task = pairs(p)
    return grokjax.Task(inputs=task.inputs, labels=task.labels, num_tokens=p, num_classes=p,
                        valid=np.ones(p * p, int))


def raises(p: int = 5) -> grokjax.Task:
    raise RuntimeError("the data file is missing")


def needs_size(size: int) -> grokjax.Task:
    return pairs(size)


class NotAModule:
    pass


class Tiny(nn.Module):
    num_tokens: int
    num_classes: int

    @nn.compact
    def __call__(self, inputs, *, train):
        return nn.Dense(self.num_classes)(nn.Embed(self.num_tokens, 4)(inputs).reshape(inputs.shape[0], -1))


class WrongShape(nn.Module):
    num_classes: int

    @nn.compact
    def __call__(self, inputs, *, train):
        return nn.Dense(self.num_classes + 1)(inputs.astype(jnp.float32))


class Raises(nn.Module):
    @nn.compact
    def __call__(self, inputs, *, train):
        raise ValueError("no layers yet")


class NeedsDepth(nn.Module):
    levels: int

    @nn.compact
    def __call__(self, inputs, *, train):
        return inputs


def drawn_pairs(p: int = 5) -> grokjax.Task:
    """Each data seed's own 12 random pairs (repeats allowed), their sums mod p; the last 4 are the test set."""

    def draw(key):
        import jax

        inputs = jax.random.randint(key, (12, 2), 0, p)
        return inputs, inputs.sum(axis=1) % p

    inputs = np.zeros((12, 2), np.int32)
    return grokjax.Task(inputs=inputs, labels=inputs[:, 0], num_tokens=p, num_classes=p, draw=draw, test_size=4)


def draw_too_short(p: int = 5) -> grokjax.Task:
    task = drawn_pairs(p)
    return grokjax.Task(inputs=task.inputs, labels=task.labels, num_tokens=p, num_classes=p,
                        draw=lambda key: (task.inputs[:5], task.labels[:5]), test_size=4)


def test_size_too_large(p: int = 5) -> grokjax.Task:
    task = pairs(p)
    return grokjax.Task(inputs=task.inputs, labels=task.labels, num_tokens=p, num_classes=p, test_size=p * p)
