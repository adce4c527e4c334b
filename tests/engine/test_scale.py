"""Past one device: memory-aware chunk sizes, runs sharded over 4 simulated CPU devices, two processes."""

import os
import socket
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pandas as pd
import pytest

from grokjax.cli import main
from grokjax.config.sweep_file import ConfigError, load
from grokjax.engine import machine, plan, runner, runs_table
from grokjax.engine.machine import Machine
from grokjax.store import results
from tests.conftest import TINY_SWEEP

ROOT = Path(__file__).resolve().parents[2]
SCALE_SWEEP = TINY_SWEEP.replace("weight_decay = [0.0, 1.0]", "weight_decay = [0.0, 1.0, 2.0]")  # 12 runs
EXACT = ["run_id", "n_train", "n_corrupt", "train_acc", "test_acc", "train_acc_clean", "train_acc_corrupted", "phase",
         "step_train_acc_90", "step_test_acc_90", "min_prune"]  # fmt: skip
FLOATS = ["train_loss", "test_loss", "weight_norm", "ipr_mean", "frac_periodic"]


def grokjax_cli(*args: str, devices: int = 1, **kwargs) -> subprocess.Popen:
    env = {**os.environ, "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}", "JAX_PLATFORMS": "cpu"}
    code = "import sys; from grokjax.cli import main; sys.exit(main(sys.argv[1:]))"
    return subprocess.Popen([sys.executable, "-c", code, *args], env=env, cwd=ROOT, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kwargs)


@pytest.fixture(scope="module")
def single(tmp_path_factory):
    """The sweep on this process's one device, 2 runs a chunk: the reference."""
    folder = tmp_path_factory.mktemp("scale")
    (folder / "scale.toml").write_text(SCALE_SWEEP)
    assert main(["sweep", str(folder / "scale.toml"), "--out", str(folder / "one"), "--chunk-size", "2",
                 "--no-progress", "--no-plots"]) == 0
    return folder


@pytest.mark.slow
def test_four_devices_give_the_single_device_results(single):
    """12 runs, chunks of 6 padded to 8 over 4 devices: no padding run reaches the results."""
    proc = grokjax_cli("sweep", str(single / "scale.toml"), "--out", str(single / "four"), "--chunk-size", "6",
                       "--no-progress", "--no-plots", devices=4)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    one, four = results.load(single / "one"), results.load(single / "four")
    assert four.meta["device"]["device_count"] == 4 and four.meta["chunk_sizes"] == [8, 8]
    assert len(four.runs) == 12 and len(four.curves) == len(one.curves) and len(four.neurons) == len(one.neurons)
    pd.testing.assert_frame_equal(four.runs[EXACT], one.runs[EXACT])
    # Sharding changes how XLA vectorizes, so float metrics agree to float32 rounding, as between chunk sizes.
    np.testing.assert_allclose(four.runs[FLOATS], one.runs[FLOATS], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(four.curves.drop(columns="run_id"), one.curves.drop(columns="run_id"), rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_runs_split_over_two_devices_or_kept_on_one_give_the_single_device_results(single):
    """On two devices, a chunk's runs split over both (gather) or kept on the first (gather:2@1, in blocks)."""
    # chunks of 3 runs: padded to 4 when split, each device training its 2 one at a time; or all on one device
    for step, sizes in (("gather:1", [4] * 4), ("gather:2@1", [3] * 4)):
        out = single / f"two-devices-{step}"
        proc = grokjax_cli("sweep", str(single / "scale.toml"), "--out", str(out), "--chunk-size", "3",
                           "--no-progress", "--no-plots", "--no-params", "--step", step, devices=2)
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
        one, two = results.load(single / "one"), results.load(out)
        assert two.meta["device"]["device_count"] == 2 and two.meta["chunk_sizes"] == sizes
        assert {s["devices"] for s in two.meta["step"]} == {2 if step == "gather:1" else 1}
        pd.testing.assert_frame_equal(two.runs[EXACT], one.runs[EXACT])
        np.testing.assert_allclose(two.runs[FLOATS], one.runs[FLOATS], rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_cpu_devices_default_to_one_per_core_unless_the_user_says():
    """tuning.split_cpu: one CPU device per core; JAX_NUM_CPU_DEVICES or XLA's flag win; a running JAX is left alone.
    On several devices the step's candidates are the split (18 runs: 9 a device, so blocks of 8 too) and one device."""
    code = ("import os, jax; from grokjax.engine import tuning; from grokjax.core.types import Static; tuning.split_cpu(); "
            "print(jax.local_device_count(), len(os.sched_getaffinity(0)), "
            "tuning.candidates(Static(train_slots=64), 18)[1] if jax.local_device_count() > 1 else '')")
    env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "JAX_NUM_CPU_DEVICES")}
    run = lambda extra: subprocess.run([sys.executable, "-c", code], env={**env, **extra, "JAX_PLATFORMS": "cpu"},  # noqa: E731
                                       cwd=ROOT, text=True, capture_output=True, check=True).stdout.split(maxsplit=2)
    devices, cores, layouts = run({})
    assert devices == cores
    if int(cores) > 1:
        assert layouts.strip() == "[(0, 0), (8, 0), (1, 0), (1, 1)]"
    assert run({"XLA_FLAGS": "--xla_force_host_platform_device_count=3"})[0] == "3"
    assert run({"JAX_NUM_CPU_DEVICES": "1"})[0] == "1"
    started = "import jax; jax.numpy.zeros(1); " + code
    assert subprocess.run([sys.executable, "-c", started], env={**env, "JAX_PLATFORMS": "cpu"}, cwd=ROOT, text=True,
                          capture_output=True, check=True).stdout.split()[0] == "1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_processes_write_parts_that_read_as_the_single_process_sweep(single):
    out = single / "two"
    common = ["sweep", str(single / "scale.toml"), "--out", str(out), "--chunk-size", "2", "--no-progress",
              "--coordinator", f"127.0.0.1:{free_port()}", "--num-processes", "2"]
    procs = [grokjax_cli(*common, "--process-id", str(i)) for i in (0, 1)]
    outputs = [proc.communicate(timeout=300) for proc in procs]
    assert [proc.returncode for proc in procs] == [0, 0], outputs
    assert "Phases:" in outputs[0][0] and "Process 1 of 2 done" in outputs[1][0]
    for table in ("runs", "curves", "neurons"):
        assert sorted(p.name for p in (out / f"{table}.parquet").iterdir()) == ["part-00000.parquet", "part-00001.parquet"]
    assert len(pd.read_parquet(out / "runs.parquet")) == 12  # one call reads the folder of parts
    one, two = results.load(single / "one"), results.load(out)
    # Same chunks of 2 on one device each: bit for bit the single-process results.
    pd.testing.assert_frame_equal(two.runs, one.runs)
    pd.testing.assert_frame_equal(two.curves, one.curves)
    pd.testing.assert_frame_equal(two.neurons, one.neurons)
    assert two.meta["runs"] == 12 and [p["runs"] for p in two.meta["parts"]] == [6, 6]
    assert (out / "phase_diagram.png").is_file()  # process 0 draws the charts from the merged parts
    stored = results.load_params(out, [0, 11])
    assert stored["W"]["kernel"].shape == (2, 24, 11)
    # Run again by one process: every chunk is recorded, so nothing trains, and the parts become one file.
    assert main(["sweep", str(single / "scale.toml"), "--out", str(out), "--no-progress", "--no-plots"]) == 0
    assert (out / "runs.parquet").is_file()
    pd.testing.assert_frame_equal(results.load(out).runs, one.runs)


@pytest.mark.slow
def test_a_single_process_sweep_replaces_an_earlier_folder_of_parts(single, tmp_path):
    out = tmp_path / "out"
    (out / "runs.parquet").mkdir(parents=True)
    pd.read_parquet(single / "one" / "runs.parquet").to_parquet(out / "runs.parquet" / "part-00007.parquet")
    assert main(["sweep", str(single / "scale.toml"), "--out", str(out), "--no-progress", "--no-plots", "--no-params"]) == 0
    assert (out / "runs.parquet").is_file() and len(results.load(out).runs) == 12


@pytest.mark.slow
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--coordinator", "127.0.0.1:1"], "--num-processes, --process-id missing"),
        (["--coordinator", "127.0.0.1:1", "--num-processes", "2", "--process-id", "2"], "--process-id = 2; allowed: 0 to 1"),
        (["--coordinator", "127.0.0.1:1", "--num-processes", "0", "--process-id", "0"], "--num-processes = 0"),
        (["--coordinator", "nonsense", "--num-processes", "1", "--process-id", "0"], "allowed: HOST:PORT"),
        (["--coordinator", "h:99999", "--num-processes", "1", "--process-id", "0"], "allowed: HOST:PORT"),
        (["--checkpoint-every", "-1"], "--checkpoint-every = -1; allowed: an integer >= 0"),
    ],
)
def test_bad_arguments_get_one_line_and_exit_2(single, capsys, args, message):
    assert main(["sweep", str(single / "scale.toml"), "--out", str(single / "bad"), *args]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not (single / "bad").exists()


SIZES = [  # one static configuration of each model kind and step shape, and the paper's full size
    ("sweeps/quickstart.toml", []),
    ("sweeps/doshi_fig3_wd.toml", []),
    ("sweeps/small/doshi_fig9_batchnorm.toml", []),
    ("sweeps/small/doshi_fig7_mlp3.toml", []),
    ("sweeps/small/doshi_fig7_transformer.toml", []),
    ("sweeps/small/pair_modular_addition.toml", []),
    ("sweeps/small/pair_sparse_parity.toml", []),
    ("sweeps/small/doshi_fig3_dropout.toml", ["sweep.dropout=[0.5]"]),
    ("sweeps/small/prieto_softmax_collapse.toml", ['sweep.loss_precision=["float64"]']),
    ("sweeps/small/grokfast.toml", ["sweep.grokfast_lambda=[2.0]"]),
]


@pytest.mark.parametrize(("path", "overrides"), SIZES)
def test_run_bytes_bounds_what_xla_allocates(path, overrides):
    """The estimate is at least XLA's own accounting of a compiled segment, and not wastefully above it."""
    config = load(ROOT / path, ["train.steps=2", "train.log_every=1", *overrides])
    static, group = next(plan.groups(runs_table.expand(config)))
    runs = 4
    hp = runs_table.hparams(group.iloc[:1], pad_to=runs)
    init, segment = runner.compiled(static)
    memory = segment.lower(jax.eval_shape(init, hp), hp, 0).compile().memory_analysis()
    actual = (memory.temp_size_in_bytes + memory.argument_size_in_bytes + memory.output_size_in_bytes) / runs
    assert actual <= plan.run_bytes(static) <= 4 * actual


def test_chunk_size_fits_memory_and_fails_clearly_when_one_run_cannot(monkeypatch):
    static, group = next(plan.groups(runs_table.expand(load(ROOT / "sweeps/doshi_fig3_wd.toml"))))
    per_run = plan.run_bytes(static)
    monkeypatch.setattr(plan, "CPU_MAX_CHUNK", 10_000)
    assert plan.auto_chunk_size(static, len(group), "f.toml", Machine("cpu", 1, 40 * per_run)) == 20  # half of its memory
    with pytest.raises(ConfigError, match=r"f.toml: one run at p = 97, width = 500 needs about"):
        plan.auto_chunk_size(static, len(group), "f.toml", Machine("cpu", 1, per_run))


def test_the_full_figure_3_sweep_is_planned_in_chunks_that_fit(monkeypatch):
    """All 1,292 runs of doshi_fig3_wd on a device with 80 GiB free: no chunk above half of it."""
    monkeypatch.setattr(plan, "CPU_MAX_CHUNK", 10_000)
    config = load(ROOT / "sweeps/doshi_fig3_wd.toml")
    one = machine.local()
    chunks = plan.plan(runs_table.expand(config), config.source, Machine(one.platform, one.devices, 80 * 2**30), None,
                       step="gather")
    assert sum(len(c.runs) for c in chunks) == 1292
    assert all(c.size * plan.run_bytes(c.static) <= 40 * 2**30 for c in chunks)


@pytest.mark.parametrize("path", ["sweeps/quickstart.toml", "sweeps/doshi_fig3_wd.toml", "sweeps/small/doshi_fig9_batchnorm.toml"])
@pytest.mark.parametrize("platform, devices", [("cpu", 2), ("gpu", 1)])
def test_one_program_computes_equal_chunks_and_a_saved_plan_reads_back_alike(path, platform, devices):
    """Each run in one chunk; the chunks of one program (static config) all of one size, so it compiles once;
    the grid's chunks at rung 0, whatever rungs their runs come from; the plan as saved gives the same chunks."""
    config = load(ROOT / path)
    runs = runs_table.split_sizes(runs_table.expand(config))
    ours = Machine(platform, devices, 64 * 2**30)
    chunks = plan.plan(runs, config.source, ours)
    assert sorted(r for c in chunks for r in c.runs.run_id) == sorted(runs.run_id)
    sizes: dict = {}
    for c in chunks:
        sizes.setdefault(c.static, set()).add(c.size)
        assert len(c.runs) <= c.size and (c.static.train_slots == 0 or c.static.formulation != "grid")
        assert c.static.train_slots in (0, plan.train_slots(c.static, int(c.runs.n_train.max())))
    assert all(len(s) == 1 for s in sizes.values())
    back = plan.from_json(plan.to_json(chunks), runs, ours)
    assert [(c.static, c.size, c.runs.run_id.tolist()) for c in back] == [
        (c.static, c.size, c.runs.run_id.tolist()) for c in chunks]
