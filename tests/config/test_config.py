"""Sweep files and --set overrides: what loads, and every rejection with exit status 2."""

import pytest

from grokjax.cli import main
from grokjax.config.sweep_file import ConfigError, from_dict, load


def test_defaults_are_the_papers_default_setting(sweep_file):
    config = load(sweep_file("name = 'x'\n"))
    assert (config.task.name, config.task.p) == ("modular_addition", 97)
    assert (config.model.width, config.model.activation) == (500, "quadratic")
    t = config.train
    assert (t.loss, t.optimizer, t.learning_rate, t.betas, t.steps) == ("mse", "adamw", 0.01, (0.9, 0.98), 2000)
    assert (config.phases.threshold, config.phases.inversion_offset) == (0.9, 1.05)


def test_axes_lists_ranges_and_qualified_names(sweep_file):
    config = load(sweep_file("""\
        [sweep]
        data_fraction = {start = 0.1, stop = 0.9, num = 17}
        "train.weight_decay" = [0, 5]
        width = [16, 32]
        """))
    axes = dict(config.axes)
    assert axes["task.data_fraction"][:3] == (0.1, 0.15, 0.2) and axes["task.data_fraction"][-1] == 0.9
    assert len(axes["task.data_fraction"]) == 17
    assert axes["train.weight_decay"] == (0.0, 5.0)
    assert axes["model.width"] == (16, 32)
    assert config.name == "sweep"  # the file's stem


def test_overrides_replace_values_and_axes(sweep_file):
    path = sweep_file()
    config = load(path, ["train.steps=7", "sweep.weight_decay=[3]", "model.activation=relu", "name=other"])
    assert config.train.steps == 7 and config.model.activation == "relu" and config.name == "other"
    assert dict(config.axes)["train.weight_decay"] == (3.0,)
    replaced = load(path, ["sweep.train.weight_decay=[4, 5]"])
    assert dict(replaced.axes)["train.weight_decay"] == (4.0, 5.0)


def test_to_dict_round_trips():
    config = from_dict({"name": "r", "train": {"steps": 5}, "sweep": {"seed": [1, 2]}})
    assert from_dict(config.to_dict(), source=config.source) == config


BAD_FILES = [
    ("[train]\nstepz = 3\n", "unknown key 'train.stepz'", "log_every"),
    ("[trian]\nsteps = 3\n", "unknown key 'trian'", "train"),
    ("[train]\nsteps = 'ten'\n", "train.steps", "integer"),
    ("[train]\nsteps = 0\n", "train.steps", ">= 1"),
    ("[train]\nsteps = true\n", "train.steps", "integer"),
    ("[train]\nlearning_rate = nan\n", "train.learning_rate", "> 0"),
    ("[train]\noptimizer = 'Lion!'\n", "train.optimizer", '"adamw"'),
    ("[train]\nprecision = 'float16'\n", "train.precision", '"float32", "tf32", "bfloat16"'),
    ("[train]\nbetas = [0.9]\n", "train.betas", "two numbers"),
    ("[task]\np = 1\n", "task.p", "from 2 to 4096"),
    ("[task]\np = 1888462\n", "task.p", "from 2 to 4096"),
    ("[task]\ndata_fraction = 1.5\n", "task.data_fraction", "0 < data_fraction <= 1"),
    ("[task]\ndata_fraction = 0\n", "task.data_fraction", "0 < data_fraction <= 1"),
    ("[task]\ncorruption_fraction = 1.0\n", "task.corruption_fraction", "0 <= corruption_fraction < 1"),
    ("[task]\ncorruption_fraction = -0.1\n", "task.corruption_fraction", "0 <= corruption_fraction < 1"),
    ("[task]\nname = 'modular_power'\n", "task.name", "modular_addition"),
    ("[model]\nwidth = 0\n", "model.width", ">= 1"),
    ("[model]\nactivation = 'tanh'\n", "model.activation", '"quadratic"'),
    ("[sweep]\nweight_decay = []\n", "sweep.weight_decay", "empty"),
    ("[sweep]\ndata_fraction = [0.5, 1.2]\n", "task.data_fraction", "0 < data_fraction <= 1"),
    ("[sweep]\ndata_fraction = {start = 0.1, stop = 0.9}\n", "sweep.data_fraction", "start"),
    ("[sweep]\nwidht = [16]\n", "sweep.widht", "width"),
    ("[sweep]\nweight_decay = 5\n", "sweep.weight_decay", "list"),
    ("[task]\np = 7\ndata_fraction = 0.01\n", "data_fraction", "no training example"),
    ("name = 'a/b'\n", "name", "letters"),
    ("[phases]\ngrokking_delay = 2\n", "phases.grokking_delay", "[0, 1]"),
    ("[train\nsteps = 3\n", "not valid TOML", "line"),
]


@pytest.mark.parametrize("text, key, allowed", BAD_FILES, ids=[b[1] for b in BAD_FILES])
def test_bad_files_exit_2_with_one_line(sweep_file, tmp_path, capsys, text, key, allowed):
    path = sweep_file(text, name="bad.toml")
    out = tmp_path / "out"
    assert main(["sweep", str(path), "--out", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert str(path) in err
    assert key in err and allowed in err
    assert not out.exists(), "nothing is written for bad input"


BAD_OVERRIDES = [
    ("train.steps=abc", "train.steps"),
    ("train.stepz=3", "unknown key 'train.stepz'"),
    ("sweep.weight_decay=[]", "empty"),
    ("sweep.weight_decay=[-1]", "train.weight_decay"),
    ("steps=3", "TABLE.KEY"),
    ("train.steps", "KEY=VALUE"),
    ("foo.bar=1", "unknown table 'foo'"),
]


@pytest.mark.parametrize("item, needle", BAD_OVERRIDES)
def test_bad_overrides_exit_2(sweep_file, tmp_path, capsys, item, needle):
    out = tmp_path / "out"
    assert main(["sweep", str(sweep_file()), "--set", item, "--out", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and needle in err and f"--set {item}" in err
    assert not out.exists()


def test_missing_file_and_bad_chunk_size(tmp_path, capsys, sweep_file):
    assert main(["sweep", str(tmp_path / "nope.toml")]) == 2
    assert "nope.toml: no such sweep file" in capsys.readouterr().err
    assert main(["sweep", str(sweep_file()), "--chunk-size", "0", "--out", str(tmp_path / "o")]) == 2
    assert "--chunk-size" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_config_error_is_raised_by_the_api(sweep_file):
    with pytest.raises(ConfigError, match="model.width"):
        load(sweep_file("[model]\nwidth = -3\n"))
