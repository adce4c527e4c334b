"""What a run is: its static config (one compiled program per value) and its per-run numbers (traced).

Kept apart from the functions that use them, so that tasks, models, metrics and the analysis
are typed by them without importing the training step.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, NamedTuple

from grokjax.config.fields import traced_fields


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
    betas: tuple[float, float] = (0.9, 0.98)
    regularization: str = "l2"
    batch_size: int = 0
    steps: int = 2000
    log_every: int = 20
    precision: str = "float32"
    has_dropout: bool = False  # derived: some run of the chunk has dropout > 0
    train_slots: int = 0  # derived: examples a full-batch step gathers (`plan.train_slots`)
    formulation: str = "gather"  # derived: how the step is computed (`training.FORMULATIONS`)
    run_block: int = 0  # derived: runs vectorized together (0 all, 1 one at a time)
    devices: int = 0  # derived: local devices a chunk's runs are split over (0 all)

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


HPARAM_DTYPES = Hparams(*(dtype for _, dtype in traced_fields()))
