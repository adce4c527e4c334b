"""Expressions of sweep files and the command line are data: the same answers as pandas' query and eval
on every valid string, and every other string refused with one line, before anything runs."""

import shutil

import numpy as np
import pandas as pd
import pytest

from grokjax.cli import main
from grokjax.config import expressions
from grokjax.config.expressions import ExpressionError

TINY = """\
name = "tiny"
[task]
p = 7
[model]
width = 16
[train]
steps = 20
log_every = 10
[sweep]
weight_decay = [0.0, 1.0]
"""


def frame() -> pd.DataFrame:
    """Five runs with the dtypes of runs.parquet: int, float with NaN, text with a missing value, Int64 with NA,
    bool."""
    return pd.DataFrame({
        "seed": [0, 1, 2, 3, 4],
        "width": [16, 16, 32, 32, 64],
        "weight_decay": [0.0, 0.0, 1.0, 5.0, 10.0],
        "data_fraction": [0.2, 0.4, 0.5, 0.7, 0.9],
        "test_acc": [0.1, np.nan, 0.95, 1.0, 0.5],
        "norm": ["none", "batchnorm", "none", "layernorm", "batchnorm"],
        "phase": pd.array(["coexistence", "memorization", None, "coexistence", "full_inversion"], dtype="string"),
        "min_prune": pd.array([3, None, 10, 0, 20], dtype="Int64"),
        "symmetric": [True, False, True, False, True],
    })


# The strings of sweeps/**/*.toml and more: each selects the rows pandas' query selected.
QUERIES = [
    "weight_decay == 0", "weight_decay == 0.0", "weight_decay > 0", "weight_decay >= 10", "width == 32",
    "weight_decay == 0 and data_fraction <= 0.4", "weight_decay >= 0.1 and weight_decay <= 0.3",
    "norm == 'batchnorm'", "norm != 'batchnorm'", 'norm == "none"', "phase == 'coexistence'", "phase != 'coexistence'",
    "0.1 <= data_fraction < 0.5", "1 < weight_decay <= 10 < width", "width in [16, 64]", "width not in (16, 64)",
    "norm in ['none', 'layernorm']", "width == [16, 64]", "width != [16, 64]", "[16, 64] == width",
    "weight_decay in [-1, 0]", "weight_decay == 0 or norm == 'layernorm'", "not weight_decay == 0",
    "weight_decay > 0 & data_fraction < 0.8", "weight_decay == 0 | width > 32", "~(width == 16)", "symmetric",
    "not symmetric", "symmetric == True", "symmetric and width > 16", "test_acc > 0.5", "test_acc != 0.5",
    "test_acc == test_acc", "min_prune > 2", "min_prune == 0", "min_prune / width > 0.2", "width - min_prune >= 13",
    "width * data_fraction > 10", "width // 16 == 2", "width % 32 == 0", "width ** 2 > 1000", "-width < -20",
    "+width < 20", "width / 32 >= 1", "abs(weight_decay - 5) < 4.5", "sqrt(width) >= 5.6", "log(width) > 3",
    "log10(width) < 1.5", "exp(data_fraction) > 2", "floor(data_fraction * 10) == 5", "ceil(data_fraction * 2) == 1",
    "(weight_decay == 0 or width == 64) and not symmetric", "width == 'x'", "norm == 1",
]


@pytest.mark.parametrize("query", QUERIES)
def test_selects_the_rows_pandas_query_selected(query):
    runs = frame()
    pd.testing.assert_frame_equal(expressions.select(runs, query), runs.query(query))


@pytest.mark.parametrize("metric", ["min_prune / width", "width - min_prune", "test_acc * 2 - 1", "width ** 0.5",
                                    "abs(weight_decay - 5)", "log(width) + exp(test_acc)", "width // 3 % 4",
                                    "floor(test_acc * 3)", "data_fraction"])
def test_columns_are_pandas_eval_as_floats(metric):
    runs = frame()
    mine, theirs = expressions.column(runs, metric), runs.eval(metric)
    np.testing.assert_array_equal(mine.astype(float).to_numpy(), theirs.astype(float).to_numpy())
    assert mine.index.equals(runs.index)


def test_the_functions_pandas_lacks_and_the_edges():
    runs = frame()
    assert expressions.select(runs, "isnan(test_acc)").seed.tolist() == [1]
    assert expressions.select(runs, "isnan(min_prune)").seed.tolist() == [1]  # Int64's NA is NaN here
    assert expressions.select(runs, "isnan(phase)").seed.tolist() == [2]  # a missing text value
    np.testing.assert_array_equal(expressions.column(runs, "log2(width)"), np.log2(runs.width))
    assert expressions.select(runs, "").equals(runs) and expressions.select(runs, "  ").equals(runs)
    assert expressions.column(runs, "width ** -1").tolist() == [1 / 16, 1 / 16, 1 / 32, 1 / 32, 1 / 64]
    for text, reason in [("width", "numbers, not a true/false per row"), ("1 == 1", "one value for all rows"),
                         ("True", "one value for all rows"), ("norm + 1", "'+' needs numbers, got text"),
                         ("width and symmetric", "'and' needs true/false"), ("norm < 1", "cannot order")]:
        with pytest.raises(ExpressionError, match=reason.replace("+", r"\+")):
            expressions.select(runs, text)
    for text in ("norm", "2 + 3"):
        with pytest.raises(ExpressionError):
            expressions.column(runs, text)


def test_integer_expressions_over_named_arrays():
    x, y = np.meshgrid(np.arange(7), np.arange(7), indexing="ij")
    names = {"x": x, "y": y, "p": 7}
    expressions.check("(x * x + y) % p", names)
    value = expressions.evaluate("(x * x + y) % p", names)
    assert value.dtype == np.int64 and np.array_equal(value, (x * x + y) % 7)
    assert expressions.evaluate("x ** 3 - 2 * y // 3", names).dtype == np.int64
    assert expressions.evaluate("9 ** 9 ** 9 == p", names) == np.False_  # int64 throughout: no unbounded integer
    with pytest.raises(ExpressionError, match=r"unknown name 'z'; the names are: x, y, p"):
        expressions.check("x + z", ["x", "y", "p"])


def test_unknown_names_are_listed_briefly():
    names = [f"c{i}" for i in range(30)]
    with pytest.raises(ExpressionError) as err:
        expressions.check("nope > 1", names)
    assert "unknown name 'nope'; the names are: c0, c1" in str(err.value) and "c11 (and 18 more)" in str(err.value)
    assert "allowed: names (the columns), numbers" in str(err.value) and "\n" not in str(err.value)


def hostile(marker) -> list[str]:
    """Strings that run code, or exhaust the parser, when pandas or Python evaluates them."""
    touch = f"touch {marker}"
    return [
        f"seed == @pd.io.common.os.system('{touch}')",
        f"__import__('os').system('{touch}')",
        "().__class__.__bases__[0].__subclasses__()",
        "seed.__class__",
        "(lambda: 1)()",
        "[x for x in (1,)]",
        f"open('{marker}', 'w')",
        "eval('1')",
        f"exec(\"open('{marker}', 'w')\")",
        "getattr(seed, 'x')",
        "seed[0]",
        "f'{seed}'",
        "b'x' == seed",
        "seed" + " + seed" * 2000,
        "(" * 200 + "seed" + ")" * 200,
        "-" * 900 + "seed",
        "abs(x=1)",
        "abs(*[seed])",
        "sqrt(seed, seed)",
        "not_a_column == 1",
        "__builtins__",
        "seed @ seed",
        "seed if seed else 1",
        "(seed := 1)",
        "seed is None",
        "{'a': seed}",
        "seed in seed",
        "seed in [width]",
        "'a' * 1000000000 == seed",
        "seed == 1; import os",
        "seed ==",
        "a\x00b",
    ]


@pytest.mark.parametrize("index", range(len(hostile("m"))))
def test_hostile_strings_are_refused_without_side_effect(index, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    marker = tmp_path / "MARKER"
    text = hostile(marker)[index]
    runs = frame()
    for attempt in (lambda: expressions.select(runs, text), lambda: expressions.column(runs, text),
                    lambda: expressions.evaluate(text, {c: runs[c] for c in runs}),
                    lambda: expressions.check(text, list(runs))):
        with pytest.raises(ExpressionError) as err:
            attempt()
        message = str(err.value)
        assert "; allowed: " in message and "\n" not in message and len(message) < 1000
    assert not marker.exists() and list(tmp_path.iterdir()) == []


def test_messages_say_what_was_refused():
    cases = {"seed.system": "attribute access ('.system') is not allowed",
             "seed == @x": "'@' is not allowed", "open('f')": "calling 'open' is not allowed",
             "seed[0]": "a subscript", "abs(x=1)": "keyword arguments ('x=' in abs(...))",
             "x" * 1001: "longer than 1000 characters", "(" * 40 + "1" + ")" * 40: "nested deeper than 32 levels"}
    for text, reason in cases.items():
        with pytest.raises(ExpressionError) as err:
            expressions.check(text, ["seed"])
        assert err.value.reason.startswith(reason), (text, err.value.reason)


# --- end to end: the CLI refuses them with one line and exit status 2 ----------------------------------


def hostile_where(marker) -> str:
    return f"seed == @pd.io.common.os.system('touch {marker}')"


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "Traceback" not in err and err.startswith("grokjax: error: ")
    return err


def test_sweep_refuses_a_hostile_expect_before_training(sweep_file, tmp_path, capsys):
    marker = tmp_path / "MARKER"
    path = sweep_file(TINY + f'[[expect]]\nclaim = "c"\nphase = "coexistence"\nwhere = "{hostile_where(marker)}"\n')
    assert main(["sweep", str(path), "--out", str(tmp_path / "out"), "--no-progress", "--no-plots"]) == 2
    err = one_line_error(capsys)
    assert f"{path}: expect[0].where = " in err and "'@' is not allowed" in err and "allowed: " in err
    assert not marker.exists() and not (tmp_path / "out").exists()


@pytest.fixture(scope="module")
def tiny_results(tmp_path_factory):
    """A two-run sweep (p = 7, width 16, 20 steps) with its params."""
    folder = tmp_path_factory.mktemp("expressions")
    (folder / "tiny.toml").write_text(TINY)
    assert main(["sweep", str(folder / "tiny.toml"), "--out", str(folder / "out"), "--no-progress",
                 "--no-plots"]) == 0
    return folder / "out"


def test_check_refuses_a_hostile_sweep_toml(tiny_results, tmp_path, capsys):
    folder = tmp_path / "results"
    shutil.copytree(tiny_results, folder)
    marker = tmp_path / "MARKER"
    with open(folder / "sweep.toml", "a") as f:
        f.write(f'\n[[expect]]\nclaim = "c"\nmetric = "test_acc"\nat_least = 0.0\nthan = "{hostile_where(marker)}"\n')
    capsys.readouterr()
    assert main(["check", str(folder)]) == 2
    err = one_line_error(capsys)
    assert "sweep.toml: expect[0].than = " in err and "'@' is not allowed" in err
    assert not marker.exists()


def test_prune_refuses_a_hostile_where(tiny_results, tmp_path, capsys):
    capsys.readouterr()
    for text in (hostile_where(tmp_path / "MARKER"), f"__import__('os').system('touch {tmp_path / 'MARKER'}')"):
        assert main(["prune", str(tiny_results), "--where", text]) == 2
        err = one_line_error(capsys)
        assert '--where "' in err and "is not a query on runs.parquet" in err
    assert not (tmp_path / "MARKER").exists() and not (tiny_results / "pruning.parquet").exists()
    # A query of the grammar still chooses the runs to prune.
    assert main(["prune", str(tiny_results), "--where", "weight_decay == 0 and norm == 'none'"]) == 0
    assert pd.read_parquet(tiny_results / "pruning.parquet").run_id.unique().tolist() == [0]
