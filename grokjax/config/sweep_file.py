"""Sweep files: TOML in, a validated, frozen `SweepConfig` out.

Every rejection is a `ConfigError` whose message is one line naming the file,
the key and what is allowed, so the CLI can print it and exit 2.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import re
import tomllib
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from grokjax.config.fields import (  # noqa: F401 (MODULAR_TASKS: re-exported)
    BY_KEY,
    FIELDS,
    MODULAR_TASKS,
    OPEN_TASKS,
    OPTIMIZERS,
    PHASES,
    RULES,
    SWEEPABLE_TABLES,
    is_import_path,
)


class ConfigError(ValueError):
    """A sweep file or override that cannot be run; the message is one line for the user.

    Characters that would break the line (newlines, other control and unprintable
    characters, say in a key of a broken file) are shown escaped, as in Python literals.
    """

    def __init__(self, message: str) -> None:
        super().__init__("".join(c if c.isprintable() else repr(c)[1:-1] for c in message))


# --- the tables (their fields are declared in grokjax.config.fields) ------------------------------


def _table(cls_name: str, table: str, doc: str) -> type:
    fields = [(f.name, type(f.default), dataclasses.field(default=f.default)) for f in FIELDS if f.table == table]
    if table in OPEN_TABLES:  # ((key, value), ...): the keys grokjax does not define, for an open task or model
        fields.append(("args", tuple, dataclasses.field(default=())))
    cls = dataclasses.make_dataclass(cls_name, fields, frozen=True)
    cls.__module__, cls.__doc__ = __name__, doc
    return cls


OPEN_TABLES = {"task": "name", "model": "name", "train": "optimizer"}  # table: the field naming what takes keys
ARG_TYPES = (str, int, float, bool)  # what a key of an open task or model may hold (or a list of these)
TaskConfig = _table("TaskConfig", "task", "[task]: what is learned, and the run's split")
ModelConfig = _table("ModelConfig", "model", "[model]: the network")
TrainConfig = _table("TrainConfig", "train", "[train]: loss, optimizer, steps, precision, seed")
PhaseConfig = _table("PhaseConfig", "phases", "[phases]: the thresholds of the paper's Appendix C, Table 2")
AnalysisConfig = _table("AnalysisConfig", "analysis", "[analysis]: analyses the phase diagram does not need")
PlotConfig = _table("PlotConfig", "plot", "[plot]: the phase diagram's axes")


@dataclass(frozen=True)
class Expectation:
    """One `[[expect]]` entry: a claim of the paper that the sweep's runs should bear out (`grokjax.summary.expect`).

    The runs `where` selects (a query on runs.parquet's columns, `grokjax.config.expressions`, such as
    "weight_decay > 0 and dynamics == 'grokking'"; "" all runs) give a value:
    the share of them in one of `phase`, or their `metric` (a runs.parquet column, or an
    arithmetic expression of them such as "min_prune / width", or two columns of the same runs compared,
    "stage_generalization - stage_circuit_formation") taken as `of` (mean, median, min or max; a NaN anywhere
    makes it NaN). The claim holds if that value is above the
    value of the runs `than` selects, or else if it lies within `at_least` .. `at_most` (for a
    phase share without bounds: at least 0.5, a majority).
    """

    claim: str
    where: str = ""
    phase: tuple[str, ...] = ()
    metric: str = ""
    of: str = "mean"
    at_least: float | None = None
    at_most: float | None = None
    than: str = ""

    def to_dict(self) -> dict[str, Any]:
        out = {"claim": self.claim, "where": self.where}
        out.update({"phase": list(self.phase)} if self.phase else {"metric": self.metric, "of": self.of})
        out.update({k: v for k, v in (("at_least", self.at_least), ("at_most", self.at_most)) if v is not None})
        out.update({"than": self.than} if self.than else {})
        return out


EXPECT_KEYS = {f.name for f in dataclasses.fields(Expectation)}


def _expectations(source: str, entries: Any) -> tuple[Expectation, ...]:
    """Validate the `[[expect]]` array of tables (its queries are checked on the runs, by `grokjax.summary.expect`)."""
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise ConfigError(f"{source}: 'expect' must be an array of tables ([[expect]] entries), got {_show(entries)}")
    out = []
    for i, entry in enumerate(entries):
        where = f"{source}: expect[{i}]"
        unknown = set(entry) - EXPECT_KEYS
        if unknown:
            raise ConfigError(f"{where}: unknown key '{sorted(unknown)[0]}'; an [[expect]] entry has: "
                              + ", ".join(sorted(EXPECT_KEYS)))
        for key in ("claim", "where", "metric", "of", "than"):
            if key in entry and not isinstance(entry[key], str):
                raise ConfigError(f"{where}.{key} = {_show(entry[key])}; allowed: a string")
        if not entry.get("claim", "").strip():
            raise ConfigError(f"{where}: 'claim' missing; allowed: the paper's claim, in words")
        phase = entry.get("phase", ())
        phase = (phase,) if isinstance(phase, str) else phase
        if not isinstance(phase, (list, tuple)) or any(p not in PHASES for p in phase):
            raise ConfigError(f"{where}.phase = {_show(entry['phase'])}; allowed: one of, or a list of: "
                              + ", ".join(PHASES))
        if bool(phase) == bool(entry.get("metric")):
            raise ConfigError(f"{where}: give exactly one of 'phase' (a share of runs) and 'metric' (a runs.parquet "
                              "column)")
        if entry.get("of", "mean") not in ("mean", "median", "min", "max"):
            raise ConfigError(f"{where}.of = {_show(entry['of'])}; allowed: mean, median, min or max")
        for key in ("at_least", "at_most"):
            v = entry.get(key)
            if v is not None and (not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v)):
                raise ConfigError(f"{where}.{key} = {_show(v)}; allowed: a finite number")
        if entry.get("metric") and not entry.get("than") and entry.get("at_least") is None and entry.get("at_most") is None:
            raise ConfigError(f"{where}: a 'metric' needs 'at_least', 'at_most' or 'than'")
        out.append(Expectation(claim=entry["claim"], where=entry.get("where", ""), phase=tuple(phase),
                               metric=entry.get("metric", ""), of=entry.get("of", "mean"),
                               at_least=None if entry.get("at_least") is None else float(entry["at_least"]),
                               at_most=None if entry.get("at_most") is None else float(entry["at_most"]),
                               than=entry.get("than", "")))
    return tuple(out)


@dataclass(frozen=True)
class SweepConfig:
    name: str
    task: TaskConfig = field(default_factory=TaskConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    phases: PhaseConfig = field(default_factory=PhaseConfig)
    analysis: AnalysisConfig = field(default_factory=AnalysisConfig)
    plot: PlotConfig = field(default_factory=PlotConfig)
    # ("train.weight_decay", (0.0, 5.0)), ... in file order; the grid is their product.
    axes: tuple[tuple[str, tuple[Any, ...]], ...] = ()
    expect: tuple[Expectation, ...] = ()  # the paper's claims, checked on the results (`grokjax.summary.expect`)
    source: str = "<config>"

    def hash(self) -> str:
        """A short fingerprint of the resolved config, all of it (the provenance of a results folder)."""
        return _fingerprint(self.to_dict())

    def training_hash(self) -> str:
        """A short fingerprint of what training depends on: a results folder belongs to the config that trained it,
        and one that differs only in what is read off the trained runs (`AFTER_TRAINING`: name, [phases],
        [[expect]], [plot], analysis.min_prune and progress) resumes it, training nothing new, and recomputes
        phases, claims, pruning, progress measures (by a replay) and charts."""
        return _fingerprint(_without(self.to_dict(), AFTER_TRAINING))

    def plan_hashes(self) -> tuple[str, ...]:
        """The hashes a saved plan of this config's training may name: its training hash, and as versions before
        analysis.min_prune left it computed it, and before training hashes, the whole config's."""
        return self.training_hash(), _fingerprint(_without(self.to_dict(), AFTER_TRAINING[:4])), self.hash()

    def plot_axes(self) -> tuple[str, str] | None:
        """The phase diagram's (x, y) as [plot] chose them ("" where it did not), or None for the defaults."""
        return (self.plot.x, self.plot.y) if self.plot.x or self.plot.y else None

    def to_dict(self) -> dict[str, Any]:
        """The resolved config as plain TOML-able data (what `sweep.toml` holds)."""
        out: dict[str, Any] = {"name": self.name}
        for table in TABLES:
            values = {f.name: getattr(getattr(self, table), f.name) for f in dataclasses.fields(TABLES[table])}
            args = values.pop("args", ())  # written as the table's own keys, as in the sweep file
            out[table] = {k: _plain(v) for k, v in [*values.items(), *args]
                          if not (f"{table}.{k}" in LATER_FIELDS and v == BY_KEY[f"{table}.{k}"].default)}
        out["sweep"] = {key: [_plain(v) for v in values] for key, values in self.axes}
        if self.expect:  # absent when there are none, so that older configs keep their hash
            out["expect"] = [e.to_dict() for e in self.expect]
        return out


# Fields added since results folders first held their config's hash: left out of the config at their defaults, so
# that a folder of an earlier version keeps its hash (and resumes).
LATER_FIELDS = ("analysis.progress", "train.grokfast_alpha", "train.grokfast_lambda", "train.orthograd",
               "train.loss_precision", "train.grokfast_filter", "train.grokfast_window")
# The parts of a config that leave the training hash: tables, and "table.key" for one key of a table.
AFTER_TRAINING = ("name", "phases", "expect", "plot", "analysis.min_prune", "analysis.progress")


def _without(data: dict[str, Any], parts: tuple[str, ...]) -> dict[str, Any]:
    out = {k: v for k, v in data.items() if k not in parts}
    for table, _, key in (part.partition(".") for part in parts if "." in part):
        out[table] = {k: v for k, v in out[table].items() if k != key}
    return out


def _fingerprint(data: dict[str, Any]) -> str:
    text = json.dumps(data, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def takes_args(table: str, name: str) -> bool:
    """Whether a [task], [model] or [train] naming this (its name, or its optimizer) takes keys grokjax does not
    define: the user's own task or model (an import path), the open built-in tasks (modular_expression), and
    an Optax optimizer (not adamw, adam or sgd)."""
    if table == "train":
        return name not in OPTIMIZERS
    return table in OPEN_TABLES and (is_import_path(name) or (table == "task" and name in OPEN_TASKS))


def _arg(source: str, key: str, value: Any) -> Any:
    """A value of a key grokjax does not define: a string, number or true/false, or a list of them (as a tuple)."""
    if isinstance(value, list) and all(isinstance(v, ARG_TYPES) for v in value):
        return tuple(value)
    if not isinstance(value, ARG_TYPES) or (isinstance(value, float) and not math.isfinite(value)):
        raise ConfigError(f"{source}: {key} = {_show(value)}; allowed: a string, a finite number, true or false, "
                          "or a list of them")
    return value


TABLES: dict[str, type] = {
    "task": TaskConfig,
    "model": ModelConfig,
    "train": TrainConfig,
    "phases": PhaseConfig,
    "analysis": AnalysisConfig,
    "plot": PlotConfig,
}
_TABLE_FIELDS = {t: {f.name for f in dataclasses.fields(cls)} - {"args"} for t, cls in TABLES.items()}  # keys grokjax defines


def _coerce(source: str, key: str, value: Any) -> Any:
    """Check one field's value against its rule; return it in its canonical Python type."""
    if key not in RULES:
        raise ConfigError(f"{source}: unknown key '{key}'")
    kind, ok, allowed = RULES[key]
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if kind is tuple and isinstance(value, list):
        value = tuple(float(v) if isinstance(v, int) and not isinstance(v, bool) else v for v in value)
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise ConfigError(f"{source}: {key} = {_show(value)} has the wrong type; allowed: {allowed}")
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{source}: {key} = {_show(value)} is not finite; allowed: {allowed}")
    if not ok(value):
        raise ConfigError(f"{source}: {key} = {_show(value)} is out of range; allowed: {allowed}")
    return value


def _show(value: Any) -> str:
    text = repr(value) if not isinstance(value, str) else f'"{value}"'
    return text if len(text) <= 60 else text[:57] + "..."


def _opens(data: dict[str, Any], table: str) -> bool:
    """Whether plain data (a parsed file) gives [table] keys of its own: the name (or optimizer) it writes or
    sweeps for the table is one that takes them (`takes_args`)."""
    if table not in OPEN_TABLES:
        return False
    naming, given = OPEN_TABLES[table], data.get(table, {})
    written = given.get(naming, getattr(TABLES[table](), naming)) if isinstance(given, dict) else None
    return any(isinstance(n, str) and takes_args(table, n)
               for n in [written, *_swept_names(data.get("sweep"), table, naming)])


def _swept_names(sweep: Any, table: str, naming: str) -> list[Any]:
    """The names a sweep file's [sweep] gives its task, model or optimizer (`task = [...]`), unchecked."""
    if not isinstance(sweep, dict):
        return []
    keys = (table, f"{table}.name") if naming == "name" else (naming, f"{table}.{naming}")
    values = [v for k, v in sweep.items() if k in keys]
    return [n for v in values if isinstance(v, list) for n in v]


# --- sweep axes ----------------------------------------------------------------------------

_FIELD_OWNER = {
    f.name: table
    for table in SWEEPABLE_TABLES
    for f in dataclasses.fields(TABLES[table])
    if f.name not in ("name", "args")
}


def _axis_key(source: str, key: str, args: Collection[str] = (), open_tables: Collection[str] = ()) -> str:
    """Resolve `weight_decay` or `train.weight_decay` to the qualified key. `args`: the qualified keys of an open
    task's, model's or optimizer's own that the file writes ("task.expression"), sweepable by name too;
    `open_tables`: the tables that take keys of their own, where "train.b2" names one the file does not write."""
    if "." in key:
        table, _, name = key.partition(".")
        if table in SWEEPABLE_TABLES and (f"{table}.{name}" in RULES or key in args or table in open_tables):
            return key
    elif key in _FIELD_OWNER:
        return f"{_FIELD_OWNER[key]}.{key}"
    elif key in SWEEPABLE_TABLES[:2]:
        return f"{key}.name"  # `task` and `model` name the kind, as the runs.parquet columns do
    elif [a for a in args if a.split(".", 1)[1] == key]:
        return next(a for a in args if a.split(".", 1)[1] == key)
    known = ", ".join(sorted([*_FIELD_OWNER, "task", "model", *(a.split(".", 1)[1] for a in args)]))
    raise ConfigError(f"{source}: unknown sweep axis 'sweep.{key}'; axes can be: {known}")


RANGE_KEYS = {"start", "stop", "num", "log"}


def _axis_values(source: str, key: str, spec: Any) -> tuple[Any, ...]:
    where = f"sweep.{key.split('.')[-1]}"
    kind = RULES[key][0] if key in RULES else None  # None: a key of an open task or model
    if isinstance(spec, dict):
        extra = set(spec) - RANGE_KEYS
        missing = RANGE_KEYS - {"log"} - set(spec)
        if extra or missing:
            raise ConfigError(
                f"{source}: {where} must be a list or {{start = .., stop = .., num = .., log = false}}; "
                f"got keys {sorted(spec)}"
            )
        num = spec["num"]
        if not isinstance(num, int) or isinstance(num, bool) or not 1 <= num <= 100_000:
            raise ConfigError(f"{source}: {where}.num = {_show(num)}; allowed: an integer from 1 to 100000")
        for end in ("start", "stop"):
            v = spec[end]
            if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v):
                raise ConfigError(f"{source}: {where}.{end} = {_show(v)}; allowed: a finite number")
        log = spec.get("log", False)
        if not isinstance(log, bool):
            raise ConfigError(f"{source}: {where}.log = {_show(log)}; allowed: true (evenly spaced logarithms) or "
                              "false (evenly spaced values)")
        if log and not (spec["start"] > 0 and spec["stop"] > 0):
            raise ConfigError(f"{source}: {where} with log = true needs start > 0 and stop > 0")
        if kind not in (int, float, None):
            raise ConfigError(f"{source}: {where} takes a list of values, not {{start, stop, num}}")
        if log:
            first, last = math.log(spec["start"]), math.log(spec["stop"])
            step = (last - first) / (num - 1) if num > 1 else 0.0
            values = [math.exp(first + i * step) for i in range(num)]
            values[0], values[-1] = spec["start"], spec["stop"] if num > 1 else spec["start"]
            # Keep 12 significant digits, so 1e-3 .. 1 reads back as 0.01, not 0.009999999999999998.
            values = [float(f"{v:.12g}") for v in values]
        else:
            step = (spec["stop"] - spec["start"]) / (num - 1) if num > 1 else 0.0
            values = [spec["start"] + i * step for i in range(num)]
            # Round away float noise so 0.1 + 3 * 0.05 reads back as 0.25, not 0.25000000000000006.
            values = [round(v, 12) for v in values]
        if kind is int:
            if any(v != int(v) for v in values):
                raise ConfigError(f"{source}: {where} = {spec} does not give whole numbers")
            values = [int(v) for v in values]
    elif isinstance(spec, list):
        values = spec
    else:
        raise ConfigError(
            f"{source}: {where} = {_show(spec)}; allowed: a non-empty list or {{start = .., stop = .., num = ..}}"
        )
    if not values:
        raise ConfigError(f"{source}: {where} is empty; give at least one value")
    coerced = tuple(_coerce(source, key, v) if kind else _arg(source, key, v) for v in values)
    if len(set(coerced)) != len(coerced):
        raise ConfigError(f"{source}: {where} repeats a value: {list(coerced)}")
    return coerced


# --- loading -------------------------------------------------------------------------------

_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")


def from_dict(data: dict[str, Any], source: str = "<config>", default_name: str = "sweep") -> SweepConfig:
    """Validate plain data (as parsed from TOML) into a `SweepConfig`."""
    known_top = {"name", "sweep", "expect", *TABLES}
    for key in data:
        if key not in known_top:
            raise ConfigError(
                f"{source}: unknown key '{key}'; top-level keys are: name, " + ", ".join([*TABLES, "sweep", "expect"])
            )
    name = data.get("name", default_name)
    if not isinstance(name, str) or not _NAME.match(name) or name in (".", ".."):
        raise ConfigError(
            f"{source}: name = {_show(name)}; allowed: letters, digits, '_', '-' and '.' (it names the results folder)"
        )
    tables = {}
    for table, cls in TABLES.items():
        given = data.get(table, {})
        if not isinstance(given, dict):
            raise ConfigError(f"{source}: '{table}' must be a table ([{table}]), got {_show(given)}")
        fields = _TABLE_FIELDS[table]
        values, args = {}, {}
        for key, value in given.items():
            if key in fields:
                values[key] = _coerce(source, f"{table}.{key}", value)
            elif _opens(data, table):
                args[key] = _arg(source, f"{table}.{key}", value)
            else:
                hint = (" (a task or model of your own, \"package.module:attribute\", and an Optax optimizer take "
                        "keys of their own)" if table in OPEN_TABLES else "")
                raise ConfigError(
                    f"{source}: unknown key '{table}.{key}'; [{table}] has: " + ", ".join(sorted(fields)) + hint
                )
        tables[table] = cls(**values, **({"args": tuple(args.items())} if args else {}))
    sweep = data.get("sweep", {})
    if not isinstance(sweep, dict):
        raise ConfigError(f"{source}: 'sweep' must be a table ([sweep]), got {_show(sweep)}")
    axes: list[tuple[str, tuple[Any, ...]]] = []
    args = {f"{t}.{k}" for t in OPEN_TABLES for k, _ in getattr(tables[t], "args", ())}
    open_tables = [t for t in OPEN_TABLES if _opens(data, t)]
    for key, spec in sweep.items():
        qualified = _axis_key(source, key, args, open_tables)
        if any(qualified == k for k, _ in axes):
            raise ConfigError(f"{source}: sweep axis '{qualified}' is given twice")
        axes.append((qualified, _axis_values(source, qualified, spec)))
    expect = _expectations(source, data.get("expect", []))
    return SweepConfig(name=name, axes=tuple(axes), expect=expect, source=source, **tables)


def load(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> SweepConfig:
    """Read a sweep file, apply `--set KEY=VALUE` overrides, validate."""
    path = Path(path)
    source = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{source}: no such sweep file") from None
    except IsADirectoryError:
        raise ConfigError(f"{source}: is a folder, not a sweep file") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"{source}: cannot be read: {err}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{source}: not valid TOML: {err}") from None
    for item in overrides:
        apply_override(data, item, source)
    return from_dict(data, source=source, default_name=path.stem)


def _written_args(data: dict[str, Any]) -> set[str]:
    """The qualified keys of an open task's or model's own that plain data (a parsed file) writes."""
    out = set()
    for table in OPEN_TABLES:
        given = data.get(table, {})
        if isinstance(given, dict):
            out |= {f"{table}.{k}" for k in given if k not in _TABLE_FIELDS[table]}
    return out


def apply_override(data: dict[str, Any], item: str, source: str) -> None:
    """Apply one `KEY=VALUE` (dotted key, TOML value; bare words are strings) in place."""
    key, sep, raw = item.partition("=")
    key = key.strip()
    where = f"{source} (--set {item})"
    if not sep or not key:
        raise ConfigError(f"{where}: expected KEY=VALUE, e.g. train.steps=50 or sweep.weight_decay=[0,5]")
    parts = key.split(".", 1)
    if any(not p for p in parts) or (len(parts) == 2 and parts[0] != "sweep" and "." in parts[1]):
        raise ConfigError(f"{where}: '{key}' is not a key; use TABLE.KEY (e.g. train.steps) or name")
    try:
        value = tomllib.loads(f"v = {raw.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw.strip()  # a bare word such as relu or modular_subtraction
    if len(parts) == 1:
        if parts[0] != "name":
            raise ConfigError(f"{where}: '{key}' is not a key; use TABLE.KEY (e.g. train.steps) or name")
        data["name"] = value
        return
    table, name = parts
    if table == "sweep":
        args = _written_args(data)
        opened = [t for t in OPEN_TABLES if _opens(data, t)]
        qualified = _axis_key(where, name, args, opened)
        _axis_values(where, qualified, value)
        sweep = data.get("sweep", {})
        for existing in [k for k in sweep if isinstance(sweep, dict) and _axis_key(where, k, args, opened) == qualified]:
            del sweep[existing]  # `weight_decay` replaces `train.weight_decay` and vice versa
    elif table in TABLES:
        if name not in _TABLE_FIELDS[table] and _opens(data, table):
            _arg(where, key, value)
        elif name not in _TABLE_FIELDS[table]:
            known = ", ".join(sorted(_TABLE_FIELDS[table]))
            raise ConfigError(f"{where}: unknown key '{key}'; [{table}] has: {known}")
        else:
            _coerce(where, key, value)
    else:
        raise ConfigError(f"{where}: unknown table '{table}'; tables are: " + ", ".join([*TABLES, "sweep"]))
    target = data.setdefault(table, {})
    if not isinstance(target, dict):
        raise ConfigError(f"{where}: '{table}' in the file is not a table")
    target[name] = value


# --- rules between fields, checked on every run of the grid --------------------------------


def _is_prime(n: int) -> bool:
    return n >= 2 and all(n % d for d in range(2, math.isqrt(n) + 1))


def check_run(source: str, run: dict[str, Any]) -> None:
    """Reject a run whose fields do not go together (keys are the runs.parquet column names)."""
    task, model = run["task"], run["model"]

    def fail(message: str) -> None:
        raise ConfigError(f"{source}: {message}")

    if run["ipr_every"] and run["ipr_every"] % run["log_every"]:
        fail(f"train.ipr_every = {run['ipr_every']} is not a multiple of train.log_every = {run['log_every']}")
    if (task == "sparse_parity" and not is_import_path(model)) != (model == "parity_mlp"):
        fail(f'task = "{task}" with model = "{model}"; allowed: task "sparse_parity" goes with model '
             '"parity_mlp" (or a model of your own), the other tasks with "mlp", "pair_mlp", "transformer" or yours')
    if model == "parity_mlp" and run["loss"] != "cross_entropy":
        fail(f'model = "parity_mlp" with loss = "{run["loss"]}"; allowed: loss = "cross_entropy" (one output logit)')
    if task == "modular_division" and not _is_prime(run["p"]):
        fail(f"task.p = {run['p']} with modular_division; allowed: a prime p (every n != 0 needs an inverse)")
    if model != "mlp" and not is_import_path(model) and run["depth"] != 2:
        fail(f'model.depth = {run["depth"]} with model = "{model}"; allowed: depth applies to "mlp" only (keep 2)')
    if model in ("transformer", "nanda_transformer"):
        if run["embed_size"] % run["heads"]:
            fail(f"model.heads = {run['heads']} does not divide model.embed_size = {run['embed_size']}")
        if run["norm"] == "batchnorm" or (model == "nanda_transformer" and run["norm"] != "none"):
            fail(f'model.norm = "{run["norm"]}" with model = "{model}"; allowed: "none"'
                 + (' or "layernorm"' if model == "transformer" else " (it has no norm)"))
    if task == "sparse_parity":
        if run["k_bits"] > run["n_bits"]:
            fail(f"task.k_bits = {run['k_bits']} > task.n_bits = {run['n_bits']}; allowed: k_bits <= n_bits")
        if run["train_size"] + run["test_size"] > run["pool_size"]:
            fail(f"task.train_size + task.test_size = {run['train_size'] + run['test_size']} > task.pool_size = "
                 f"{run['pool_size']}; allowed: train and test sets that fit in the pool")
        if run["pool_size"] > 2 ** run["n_bits"]:
            fail(f"task.pool_size = {run['pool_size']} > 2^n_bits = {2 ** run['n_bits']}; allowed: distinct strings")
