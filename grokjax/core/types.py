"""What a run is: its task's examples (`Task`), its static config (one compiled program per value) and its
per-run numbers (traced).

Kept apart from the functions that use them, so that tasks, models, metrics and the analysis
are typed by them without importing the training step, and `grokjax.Task` imports no JAX.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np

from grokjax.config.fields import traced_fields


class Fourier(NamedTuple):
    """Where a task's labels live in a cyclic group Z_order, for the Fourier progress measures (docs/measures.md).

    Modular addition: example (x, y) is the element x + y of Z_p, token t the element t. Multiplication: the
    nonzero x, y re-indexed by their discrete logarithm, log x + log y in Z_(p-1), the pairs holding 0 outside.
    """

    index: np.ndarray  # int (examples,): each example's element of Z_order; -1: outside (no component there)
    order: int
    tokens: np.ndarray  # int (num_tokens,): each token's element of Z_order (-1: outside), for the embedding's norms


@dataclasses.dataclass(frozen=True, eq=False)
class Task:
    """What is learned: every example of a task, built once on the host (docs/extending.md).

    A task function (built in, or the user's own, named in [task] by an import path) returns one.
    Runs differ only in which examples they train on and which labels they corrupt: masks over
    these rows, drawn from the run's data seed (`tasks.make_run_data`).
    """

    inputs: np.ndarray  # integer token ids in [0, num_tokens), shape (examples, arity)
    labels: np.ndarray  # integer classes in [0, num_classes), shape (examples,)
    num_tokens: int
    num_classes: int
    valid: np.ndarray | None = None  # bool (examples,): the rows that are examples (None: all); the rest are in no set
    cyclic: bool = False  # tokens are the residues 0 .. num_tokens - 1 in order: per-neuron Fourier analyses apply
    # Each data seed's own examples: a traceable function of the run's data key returning (inputs, labels) with the
    # shapes of `inputs` and `labels`, already in random order (sparse_parity's pool); `inputs` and `labels` then
    # give the shapes (one draw, or placeholders), which checks and `init` read. None: every run shares these rows.
    draw: Callable[[Any], tuple[Any, Any]] | None = None
    # A held-out test set of this many examples, the last of each run's order; runs then train on their first
    # `train_size` examples (a [task] field) instead of a data fraction. None: every example not trained on.
    test_size: int | None = None
    # The cyclic group the labels are a function of (the Fourier progress measures apply); None: they do not.
    fourier: Fourier | None = None

    @property
    def examples(self) -> int:
        return int(self.inputs.shape[0])

    @property
    def arity(self) -> int:
        return int(self.inputs.shape[1])

    @property
    def mask(self) -> np.ndarray:
        return np.ones(self.examples, bool) if self.valid is None else self.valid

    @functools.cached_property
    def grid(self) -> bool:
        """Whether the rows are all num_tokens^2 pairs, row i = (i // num_tokens, i % num_tokens): models may then
        compute all examples as a broadcast over two (num_tokens,) axes instead of gathering rows."""
        t = self.num_tokens
        if self.draw is not None or self.arity != 2 or self.examples != t * t:
            return False
        first, second = np.divmod(np.arange(t * t), t)
        return bool(np.array_equal(self.inputs[:, 0], first) and np.array_equal(self.inputs[:, 1], second))


@dataclasses.dataclass(frozen=True)
class Static:
    """What shapes the compiled program: runs that share these fields share one (`fields.static_fields`, checked
    by a test: the fields of `fields.FIELDS` whose role is static, under their column names, then the derived)."""

    task: str = "modular_addition"
    p: int = 97
    symmetric: bool = False
    n_bits: int = 30
    k_bits: int = 3
    test_size: int = 1000
    pool_size: int = 3000
    model: str = "mlp"
    width: int = 500
    depth: int = 2
    activation: str = "quadratic"
    norm: str = "none"
    embed_size: int = 128
    heads: int = 4
    tied_embedding: bool = False
    loss: str = "mse"
    optimizer: str = "adamw"
    schedule: str = "constant"
    warmup_steps: int = 0
    betas: tuple[float, float] = (0.9, 0.98)
    regularization: str = "l2"
    grokfast_filter: str = "ema"
    grokfast_window: int = 100
    orthograd: bool = False
    batch_size: int = 0
    steps: int = 2000
    log_every: int = 20
    precision: str = "float32"
    loss_precision: str = "float32"
    has_dropout: bool = False  # derived: some run of the chunk has dropout > 0
    has_grokfast: bool = False  # derived: the runs' grokfast_lambda > 0
    train_slots: int = 0  # derived: examples a full-batch step gathers (`plan.train_slots`)
    formulation: str = "gather"  # derived: how the step is computed (`training.FORMULATIONS`)
    run_block: int = 0  # derived: runs vectorized together (0 all, 1 one at a time)
    devices: int = 0  # derived: local devices a chunk's runs are split over (0 all)
    task_args: tuple[tuple[str, Any], ...] = ()  # the [task] keys a task function takes that grokjax does not define
    model_args: tuple[tuple[str, Any], ...] = ()  # the same for [model]
    optimizer_args: tuple[tuple[str, Any], ...] = ()  # an Optax optimizer's own keys; None for a per-run float

    @property
    def group(self) -> Static:
        """The static group of this config: the same but for its rung and how its step is computed and laid out.
        A group's runs share one init program, and its chunks are sized and pooled together."""
        return dataclasses.replace(self, train_slots=0, formulation="gather", run_block=0, devices=0)

    @property
    def logged_steps(self) -> list[int]:
        """Steps after which metrics are taken: every log_every, and the last."""
        n = math.ceil(self.steps / self.log_every)
        return [min((i + 1) * self.log_every, self.steps) for i in range(n)]


class Hparams(NamedTuple):
    """Per-run numbers, traced (`fields.traced_fields`, checked by a test): each a scalar, or a vector with a
    leading run axis, so that new values never recompile."""

    data_seed: Any
    dropout: Any
    init_scale: Any
    learning_rate: Any
    momentum: Any
    weight_decay: Any
    seed: Any
    n_train: Any
    n_corrupt: Any
    grokfast_alpha: Any = None  # read only by a program with Grokfast (Static.has_grokfast)
    grokfast_lambda: Any = None
    optimizer: Any = None  # {key: per-run number} of an Optax optimizer's own float keys (None: none)


HPARAM_DTYPES = Hparams(*(dtype for _, dtype in traced_fields()))
