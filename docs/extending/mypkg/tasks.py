"""Tasks: functions that return a grokjax.Task, named in a sweep file as "mypkg.tasks:<function>"."""

import itertools

import numpy as np

import grokjax


def sum_of_three(p: int, weights: list[int] = (1, 1, 1)) -> grokjax.Task:
    """(w0 a + w1 b + w2 c) mod p over all p^3 triples (a, b, c): examples of three tokens."""
    inputs = np.array(list(itertools.product(range(p), repeat=3)))
    labels = inputs @ np.array(weights) % p
    return grokjax.Task(inputs=inputs, labels=labels, num_tokens=p, num_classes=p, cyclic=True)
