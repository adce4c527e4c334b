"""Every config field declared once: its table, default, rule, role, dtype and runs.parquet column.

The rest follows from this table: the config classes and their validation
(`grokjax.config.sweep_file`), the static config of a compiled program (`core.types.Static`), the
per-run arrays (`core.types.Hparams`) and the columns of runs.parquet (`results.RUN_COLUMNS`).

Roles:
- static: changes shapes or code paths; runs that differ in it need their own compiled program;
- traced: a per-run number, an array with a leading run axis; new values never recompile;
- host: never reaches the device (it shapes the grid, the split sizes, what the host records).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

MAX_SEED = 2**31 - 1
MODULAR_TASKS = ("modular_addition", "modular_subtraction", "modular_multiplication", "modular_division")
S5_TASKS = ("s5_composition", "s5_conjugation", "s5_aba")
TASKS = (*MODULAR_TASKS, "modular_expression", *S5_TASKS, "sparse_parity")  # built in; or an import path
OPEN_TASKS = ("modular_expression",)  # built-in tasks whose [task] table takes keys grokjax does not define
PHASES = ("coexistence", "partial_inversion", "full_inversion", "memorization", "forgetting", "confusion")
MODELS = ("mlp", "pair_mlp", "parity_mlp", "transformer", "nanda_transformer")  # built in; or an import path
IMPORT_PATH = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*$")  # module:attribute
ACTIVATIONS = ("quadratic", "relu")
NORMS = ("none", "batchnorm", "layernorm")
LOSSES = ("mse", "cross_entropy", "stablemax")  # stablemax: Prieto et al.'s StableMax cross-entropy (docs/methods.md)
OPTIMIZERS = ("adamw", "adam", "sgd")  # built in; or any Optax optimizer by name
OPTAX_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
SCHEDULES = ("constant", "cosine")  # cosine: from learning_rate down to 0 at the last step
REGULARIZATIONS = ("l2", "l1")
BATCH_SCALINGS = ("none", "appendix_a")
PRECISIONS = ("float32", "tf32", "bfloat16")
GROKFAST_FILTERS = ("ema", "ma")  # Grokfast's exponential moving average, or moving average over a window
LOSS_PRECISIONS = ("float32", "float64")  # the loss (and its softmax) from the float32 logits (docs/methods.md)

Rule = tuple[type, Callable[[Any], bool], str]  # (type, check, what is allowed)


@dataclass(frozen=True)
class Field:
    table: str  # task | model | train | phases | analysis | plot
    name: str
    default: Any
    rule: Rule
    role: str = "host"  # static | traced | host
    dtype: Any = None  # traced fields: the array's dtype
    column: str | None = ""  # runs.parquet column; "" = the field's name, None = none (phases, analysis)

    @property
    def key(self) -> str:
        return f"{self.table}.{self.name}"

    @property
    def column_name(self) -> str | None:
        return self.name if self.column == "" else self.column


def choice(options: tuple[str, ...]) -> Rule:
    return str, lambda v: v in options, "one of " + ", ".join(f'"{o}"' for o in options)


def is_import_path(name: str) -> bool:
    """Whether a task or model name is the user's own, "package.module:attribute"."""
    return bool(IMPORT_PATH.match(name))


def choice_or_import(options: tuple[str, ...], what: str) -> Rule:
    return (str, lambda v: v in options or is_import_path(v),
            "one of " + ", ".join(f'"{o}"' for o in options) + f', or "package.module:{what}" (your own)')


def betas_ok(v: Any) -> bool:
    return isinstance(v, tuple) and len(v) == 2 and all(isinstance(b, float) and 0.0 <= b < 1.0 for b in v)


BOOL: Rule = (bool, lambda v: True, "true or false")
SEED: Rule = (int, lambda v: 0 <= v <= MAX_SEED, f"an integer from 0 to {MAX_SEED}")
POSITIVE_INT: Rule = (int, lambda v: v >= 1, "an integer >= 1")
F, I32 = np.float32, np.int32
AXIS: Rule = (str, lambda v: v == "" or bool(re.match(r"^[A-Za-z_]\w*$", v)),
              'a numeric runs.parquet column the sweep varies, e.g. "learning_rate" ("": the default axes)')

FIELDS: tuple[Field, ...] = (
    Field("task", "name", "modular_addition", choice_or_import(TASKS, "function"), "static", column="task"),
    Field("task", "p", 97, (int, lambda v: 2 <= v <= 4096, "an integer from 2 to 4096 (the task holds p^2 examples)"),
          "static"),
    Field("task", "data_fraction", 0.5, (float, lambda v: 0.0 < v <= 1.0, "a number with 0 < data_fraction <= 1")),
    Field("task", "corruption_fraction", 0.0,
          (float, lambda v: 0.0 <= v < 1.0, "a number with 0 <= corruption_fraction < 1")),
    Field("task", "data_seed", 0, SEED, "traced", I32),
    # Modular tasks: only pairs with m <= n (the PAIR explorable's symmetric input).
    Field("task", "symmetric", False, BOOL, "static"),
    # sparse_parity: n-bit strings labelled by the parity of their first k bits; a fixed pool of
    # pool_size strings whose last test_size are the test set and whose first train_size the training set.
    Field("task", "n_bits", 30, (int, lambda v: 1 <= v <= 31, "an integer from 1 to 31"), "static"),
    Field("task", "k_bits", 3, (int, lambda v: 1 <= v <= 31, "an integer from 1 to 31 (at most n_bits)"), "static"),
    Field("task", "train_size", 1200, POSITIVE_INT),
    Field("task", "test_size", 1000, POSITIVE_INT, "static"),
    Field("task", "pool_size", 3000, (int, lambda v: 2 <= v <= 10_000_000, "an integer from 2 to 10000000"), "static"),
    Field("model", "name", "mlp", choice_or_import(MODELS, "Module"), "static", column="model"),
    Field("model", "width", 500, POSITIVE_INT, "static"),  # neurons of the hidden layer(s); the transformer's d_mlp
    # mlp: layers of weights (2 as in the paper, 3 as in its Appendix G)
    Field("model", "depth", 2, (int, lambda v: 2 <= v <= 8, "an integer from 2 to 8"), "static"),
    Field("model", "activation", "quadratic", choice(ACTIVATIONS), "static"),
    Field("model", "norm", "none", choice(NORMS), "static"),  # after the activation, as in the paper's eq. 5
    # on the pre-activations, as in the paper's code; static `has_dropout` says whether any run has some
    Field("model", "dropout", 0.0, (float, lambda v: 0.0 <= v < 1.0, "a probability with 0 <= dropout < 1"),
          "traced", F),
    Field("model", "embed_size", 128, POSITIVE_INT, "static"),  # pair_mlp: embedding size; transformer: d_model
    Field("model", "heads", 4, (int, lambda v: v >= 1, "an integer >= 1 that divides embed_size"), "static"),
    Field("model", "tied_embedding", False, BOOL, "static"),  # pair_mlp, transformer: unembedding = embedding^T
    Field("model", "init_scale", 1.0, (float, lambda v: v > 0.0, "a number > 0"), "traced", F),
    Field("train", "loss", "mse", choice(LOSSES), "static"),
    # adamw | adam | sgd with PyTorch's conventions, or any Optax optimizer by its function's name ("lion"), whose
    # own keys are written in [train] (floats: per-run numbers, through optax.inject_hyperparams)
    Field("train", "optimizer", "adamw", (str, lambda v: v in OPTIMIZERS or bool(OPTAX_NAME.match(v)),
          'one of "adamw", "adam", "sgd", or the name of an Optax optimizer (e.g. "lion", "rmsprop")'), "static"),
    Field("train", "schedule", "constant", choice(SCHEDULES), "static"),  # the learning rate over the steps
    # linear warmup from 0 over the first warmup_steps updates (Power et al.: 10), then the schedule
    Field("train", "warmup_steps", 0, (int, lambda v: v >= 0, "an integer >= 0 (0: no warmup)"), "static"),
    Field("train", "learning_rate", 0.01, (float, lambda v: v > 0.0, "a number > 0"), "traced", F),
    Field("train", "betas", (0.9, 0.98), (tuple, betas_ok, "two numbers in [0, 1), e.g. [0.9, 0.98]"), "static",
          column=None),  # columns beta1, beta2
    Field("train", "momentum", 0.0, (float, lambda v: 0.0 <= v < 1.0, "a number with 0 <= momentum < 1"), "traced", F),
    Field("train", "weight_decay", 0.0, (float, lambda v: v >= 0.0, "a number >= 0"), "traced", F),
    Field("train", "regularization", "l2", choice(REGULARIZATIONS), "static"),
    # Grokfast-EMA (Lee et al. 2024): g + lambda * EMA_alpha(g) before the optimizer; lambda 0 is off (docs/methods.md)
    Field("train", "grokfast_alpha", 0.98, (float, lambda v: 0.0 <= v < 1.0, "a number with 0 <= grokfast_alpha < 1"),
          "traced", F),
    Field("train", "grokfast_lambda", 0.0, (float, lambda v: 0.0 <= v <= 100.0, "a number from 0 (off) to 100"),
          "traced", F),
    # Grokfast-MA instead: the mean of the last grokfast_window gradients (grokfast_alpha unused)
    Field("train", "grokfast_filter", "ema", choice(GROKFAST_FILTERS), "static"),
    Field("train", "grokfast_window", 100, (int, lambda v: 1 <= v <= 10_000, "an integer from 1 to 10000"), "static"),
    # ⊥Grad (Prieto et al. 2025): each parameter's gradient without its component along the parameter, rescaled
    Field("train", "orthograd", False, BOOL, "static"),
    Field("train", "batch_size", 0, (int, lambda v: v >= 0, "an integer >= 0 (0: full batch)"), "static"),
    # "appendix_a": steps x 256/batch_size, lr x sqrt(batch_size/256)
    Field("train", "batch_scaling", "none", choice(BATCH_SCALINGS)),
    Field("train", "steps", 2000, POSITIVE_INT, "static"),
    Field("train", "log_every", 20, POSITIVE_INT, "static"),
    # per-neuron IPR every this many steps (a multiple of log_every); 0: at the end only
    Field("train", "ipr_every", 0, (int, lambda v: v >= 0, "an integer >= 0, a multiple of log_every (0: at the end only)")),
    # matmul precision / compute dtype: float32 | tf32 | bfloat16
    Field("train", "precision", "float32", choice(PRECISIONS), "static"),
    # the dtype the loss is computed in from the logits (Prieto et al.'s softmax precision); the rest stays as is
    Field("train", "loss_precision", "float32", choice(LOSS_PRECISIONS), "static"),
    Field("train", "seed", 0, SEED, "traced", I32),
    # The thresholds of the paper's Appendix C, Table 2.
    Field("phases", "threshold", 0.9, (float, lambda v: 0.0 < v <= 1.0, "a number with 0 < threshold <= 1"), column=None),
    Field("phases", "inversion_offset", 1.05, (float, lambda v: 0.0 < v <= 2.0, "a number in (0, 2]"), column=None),
    # Dynamics: test reaching the threshold more than this fraction of the run's steps after train did
    # counts as grokking rather than comprehension.
    Field("phases", "grokking_delay", 0.1, (float, lambda v: 0.0 <= v <= 1.0, "a fraction of the steps in [0, 1]"),
          column=None),
    # Analyses the phase diagram does not need. min_prune: per run, the fewest low-IPR neurons whose removal
    # drops test accuracy below 90% of its value (Figure 32): width + 1 forward passes over all examples; read off
    # the trained runs (from params/ when turned on over a finished folder), so it never retrains.
    Field("analysis", "min_prune", False, BOOL, column=None),
    # progress: the Fourier progress measures at every logged step (restricted and excluded loss, the embedding's
    # Fourier Gini coefficient) and the stages they mark, by replaying each chunk's training (docs/measures.md).
    Field("analysis", "progress", False, BOOL, column=None),
    # The phase diagram's axes, two numeric columns the sweep varies ("": data_fraction, and corruption_fraction or
    # the first of weight_decay and dropout that varies); read off the trained runs, so they never retrain.
    Field("plot", "x", "", AXIS, column=None),
    Field("plot", "y", "", AXIS, column=None),
)

# What [analysis] progress adds: curves.parquet's measures at every logged step (their final values in runs.parquet),
# and runs.parquet's key frequencies and the step each stage begins (docs/measures.md).
PROGRESS_MEASURES = ("restricted_loss", "excluded_loss", "fourier_gini")
STAGES = ("memorization", "circuit_formation", "cleanup", "generalization")
# Softmax collapse (Prieto et al. 2025), for cross-entropy and StableMax runs: curves.parquet (and final values in
# runs.parquet), the shares of training examples whose float32 softmax is one-hot and whose loss is exactly 0.
COLLAPSE_MEASURES = ("softmax_collapse", "zero_loss_fraction")
# The fields of the training methods (docs/methods.md): a sweep that varies one gets the chart comparing them.
METHOD_COLUMNS = ("loss", "orthograd", "loss_precision", "grokfast_lambda", "grokfast_alpha", "grokfast_filter",
                  "grokfast_window")
PROGRESS_RUN_COLUMNS = (*PROGRESS_MEASURES, "key_frequencies", *(f"stage_{s}" for s in STAGES), "excluded_rise")

TABLES = ("task", "model", "train", "phases", "analysis", "plot")
SWEEPABLE_TABLES = ("task", "model", "train")
BY_KEY = {f.key: f for f in FIELDS}
RULES: dict[str, Rule] = {f.key: f.rule for f in FIELDS}

# How the static config and per-run arrays extend the fields.
DERIVED_STATIC = {  # name: default; set per chunk by the plan, or from the run's fields
    "has_dropout": False,  # any dropout > 0; runs at rate 0 use the program without it
    "has_grokfast": False,  # grokfast_lambda > 0; runs at 0 use the program without Grokfast's gradient average
    "train_slots": 0,  # full batch: training examples gathered per step; 0: all examples, loss masked
    "formulation": "gather",  # how the step is computed: train.FORMULATIONS (chosen by grokjax.engine.tuning)
    "run_block": 0,  # runs vectorized together within a chunk: 0 all (vmapped), b blocks of b, one after another
    "devices": 0,  # local devices a chunk's runs are split over: 0 all, d the first d (chosen by grokjax.engine.tuning)
    "task_args": (),  # ((key, value), ...): the [task] keys grokjax does not define, for an open task (column task_args)
    "model_args": (),  # the same for a model of the user's own (column model_args)
    "optimizer_args": (),  # the same for an Optax optimizer; a float's value is None: a per-run number (Hparams)
}
DERIVED_TRACED = {"n_train": I32, "n_corrupt": I32}  # the run's split sizes, from its fractions or sizes


# JSON objects: the own keys of an open task, model or optimizer ("{}": none; an optimizer's float keys are
# per-run numbers, null here and in their own columns)
OPEN_COLUMNS = ("task_args", "model_args", "optimizer_args")
STATIC_COLUMNS = tuple(f.column_name for f in FIELDS if f.role == "static" and f.column_name)  # all but betas


def column_of(key: str) -> str:
    """A field's runs.parquet column from its key ("train.weight_decay"); betas is split into beta1 and beta2 later.
    A key of an open task's or model's own ("task.expression") has a column of its name too."""
    if key not in BY_KEY:
        return key.split(".", 1)[1]
    field = BY_KEY[key]
    return field.column_name or field.name


def open_keys(*columns: Iterable[str]) -> list[str]:
    """The keys of open tasks, models and optimizers in a runs table's task_args, model_args and optimizer_args
    (JSON objects), in order: each has a column of its own beside them."""
    keys: dict[str, None] = {}
    for text in [t for column in columns for t in column]:
        keys.update(dict.fromkeys(json.loads(text)))
    return list(keys)


def static_fields() -> list[tuple[str, Any]]:
    """(Static field name, default): the static fields under their column names (betas as a pair), then the derived."""
    own = [(f.column_name or f.name, f.default) for f in FIELDS if f.role == "static"]
    return own + list(DERIVED_STATIC.items())


# Traced fields that Hparams holds after the split sizes, with a default (None: a program that does not read them),
# so that per-run numbers written by hand need not name them.
LATE_TRACED = ("grokfast_alpha", "grokfast_lambda")


def traced_fields() -> list[tuple[str, Any]]:
    """(Hparams field name, dtype)."""
    traced = [(f.name, f.dtype) for f in FIELDS if f.role == "traced"]
    return ([t for t in traced if t[0] not in LATE_TRACED] + list(DERIVED_TRACED.items())
            + [t for t in traced if t[0] in LATE_TRACED])


def config_columns() -> tuple[str, ...]:
    """runs.parquet's config columns, in declaration order, betas as beta1 and beta2, then the keys of an open task
    or model, then the split sizes."""
    out: list[str] = []
    for f in FIELDS:
        if f.key == "train.betas":
            out += ["beta1", "beta2"]
        elif f.column_name is not None:
            out.append(f.column_name)
    return ("run_id", *out, *OPEN_COLUMNS, "n_train", "n_corrupt", "n_test")
