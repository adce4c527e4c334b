"""The benchmarks (benchmarks/, outside the package) run end to end on a tiny sweep and write their figures (its speed is not tested)."""

import json
import os
from pathlib import Path

import pandas as pd
import pytest

from benchmarks import bench, device, kernels
from benchmarks.bench import main
from grokjax.store import results
from tests.conftest import TINY_SWEEP

pytestmark = pytest.mark.slow  # real processes, a browser or notebooks: pytest -m "not slow" skips them


def test_bench_writes_its_figures(sweep_file, tmp_path, capsys):
    out = tmp_path / "bench.json"
    gathered = TINY_SWEEP.replace("data_fraction = [0.4, 0.8]", "data_fraction = [0.2, 0.4]")  # a gather rung first
    assert main([str(sweep_file(gathered)), "--runs", "3", "--no-torch", "--formulations", "--whole", "--profile",
                 "--matmul-seconds", "0.1", "--matmul-sizes", "64,128", "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["runs"] == 4 and report["p"] == 11 and report["width"] == 24  # one whole chunk (a rung of 4 runs)
    for key in ("grokjax_vmapped", "grokjax_serial"):
        assert report[key]["run_steps_per_s"] > 0
    assert report["matmul"]["flops_per_s"] > 0 and report["matmul"]["size"] in (64, 128) and 0 < report["fraction_of_matmul"]
    assert report["pytorch_serial"] == {"skipped": "skipped (--no-torch)"}
    timed = report["formulations"]["seconds"]
    assert {"gather:0", "onehot:0", "grid:0"} <= set(timed) and all(t > 0 for t in timed.values())
    fastest = f"{report['formulations']['formulation']}:{report['formulations']['run_block']}"
    assert timed[fastest] == min(timed[k] for k in timed if k.endswith(":0") or k.startswith(fastest.split(":")[0]))
    whole = report["whole_process"]
    assert whole["runs"] == 8 and whole["grokjax_cold_cache_s"] > 0 and whole["grokjax_warm_cache_s"] > 0
    profile = report["profile"]  # a trace of the chunk's program: the MLP's step is matmuls and fusions
    assert 0 < profile["cores_in_kernels"] <= profile["cores"] and profile["kernels_s"]["matmuls"] > 0
    assert sum(profile["kernels_s"].values()) == pytest.approx(profile["in_kernels_s"])
    assert Path(profile["trace"]).is_file()
    printed = capsys.readouterr().out
    assert "run-steps/s" in printed and "of a dense" in printed and "in kernels on average" in printed


def test_bench_bad_matmul_sizes_get_one_line_and_exit_2(sweep_file, capsys):
    assert main([str(sweep_file()), "--matmul-sizes", "64,0"]) == 2
    err = capsys.readouterr().err
    assert "--matmul-sizes '64,0': whole numbers above 0" in err and len(err.strip().splitlines()) == 1


def test_kernels_are_told_apart_by_kind():
    assert [kernels.kind(n) for n in ("all-gather.2", "dot.17", "ynn_fusion.3", "scatter.1", "gather.4",
                                            "bitcast_copy_fusion", "multiply_add_fusion")] == [
        "collectives", "matmuls", "matmuls", "scatters", "gathers", "copies", "fusions"]


def test_model_flops_formula(sweep_file):
    from grokjax.config.sweep_file import load
    from grokjax.engine import plan, runs_table

    runs = runs_table.expand(load(sweep_file()))
    static, group = next(plan.groups(runs))
    p, n, logs = 11, 24, 3  # 30 steps, logged every 10
    expected = sum(6 * t * n * p * 30 + 2 * p**3 * n * logs for t in group.n_train)
    assert bench.model_flops(static, group) == expected


def test_gpu_suite_records_every_part_on_this_device(sweep_file, tmp_path, capsys, monkeypatch):
    """The device suite, on the tiny sweep: one test by pytest, the matmuls, the largest chunk, a sweep per
    precision, the phases."""
    out = tmp_path / "suite"
    monkeypatch.setenv("GROKJAX_TEST_CACHE", os.environ["GROKJAX_CACHE_DIR"])  # its pytest compiles into this run's cache
    assert device.main([str(sweep_file()), "--out", str(out), "--precisions", "float32,bfloat16",
                 "--tests", "tests/core/test_train.py::test_a_second_run_gives_identical_results",
                 "--matmul-seconds", "0.1", "--matmul-sizes", "64,128"]) == 0
    report = json.loads((out / "suite.json").read_text())
    assert report["machine"]["platform"] == "cpu" and set(report["part_seconds"]) == set(device.PARTS)
    tests = pd.read_parquet(out / "tests.parquet")
    assert tests.test.tolist() == ["tests.core.test_train::test_a_second_run_gives_identical_results"]
    assert tests.outcome.tolist() == ["passed"] and report["tests"] == {"passed": 1, "of": 1, "not_passed": []}
    matmul = pd.read_parquet(out / "matmul.parquet")
    assert matmul.precision.tolist() == ["float32", "tf32", "bfloat16"] and (matmul.flops_per_s > 0).all()
    assert set(matmul["size"]) <= {64, 128}
    chunk = report["chunk"]  # the grid computes both of the tiny sweep's rungs: one chunk of its 8 runs
    assert chunk["runs"] == 8 and chunk["warm_s"] > 0 and chunk["model_flops"] == pytest.approx(
        chunk["model_flops_per_s"] * chunk["warm_s"])
    assert chunk["fraction_of_tf32_matmul"] == pytest.approx(
        chunk["model_flops_per_s"] / matmul.set_index("precision").flops_per_s["tf32"])
    assert chunk["profile"]["kernels_s"]["matmuls"] > 0 and (out / "trace.json.gz").is_file()
    sweeps = pd.read_parquet(out / "sweeps.parquet")
    assert sweeps.precision.tolist() == ["float32", "bfloat16"] and (sweeps.returncode == 0).all()
    assert (sweeps.wall_s > sweeps.in_process_s).all() and (sweeps.runs == 8).all()  # the process holds the training
    assert (sweeps.model_flops_per_s * sweeps.in_process_s).round().eq(sweeps.model_flops.round()).all()
    phases = pd.read_parquet(out / "phases.parquet")  # every run of the reference, at each precision
    float32 = results.load(out / "float32").runs
    assert phases.run_id.tolist() == float32.run_id.tolist() and phases.phase_float32.eq(float32.phase).all()
    assert report["precision"]["float32"] == {"differ": 0, "swept": 8}
    differ = int((phases.phase_bfloat16 != phases.phase_reference).sum())
    assert report["precision"]["bfloat16"] == {"differ": differ, "swept": 8}
    assert results.load(out / "bfloat16").meta["config"]["train"]["precision"] == "bfloat16"
    printed = capsys.readouterr().out
    assert "1 of 1 tests passed" in printed and "TFLOP/s" in printed and "phases differing" in printed


@pytest.mark.parametrize("args, message", [(["--parts", "tests,nothing"], "--parts 'tests,nothing': choose from"),
                                           (["--precisions", "fp8"], "--precisions 'fp8': choose from"),
                                           (["--matmul-sizes", "1024,big"], "--matmul-sizes '1024,big': whole numbers"),
                                           (["--out", "x", "--reference", "nowhere"], "--reference nowhere: no runs.parquet"),
                                           ([], "--out DIR is needed")])
def test_gpu_suite_bad_arguments_get_one_line_and_exit_2(sweep_file, tmp_path, capsys, args, message):
    assert device.main([str(sweep_file()), *args]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_the_device_suites_tests_exist():
    """The device suite runs these tests by node id on the GPU: each must name a test that is there."""
    from benchmarks import device

    root = Path(__file__).resolve().parents[1]
    for node in device.TESTS:
        path, name = node.split("::")
        assert f"def {name}(" in (root / path).read_text(), node


def test_compile_levels_compiles_a_chunk_at_each_level(sweep_file, capsys):
    from benchmarks import compile_levels

    assert compile_levels.main([f"{sweep_file()}:0"]) == 0
    printed = capsys.readouterr().out.splitlines()
    levels = [line for line in printed if line.strip().startswith("level")]
    assert [line.split(":")[0].strip() for line in levels] == ["level default", "level 1", "level 0"]
    assert levels[0].endswith("metrics moved 0")  # the default level against itself


@pytest.mark.parametrize("item, says", [("nofile.toml", "give FILE:INDEX"), ("{tiny}:x", "give FILE:INDEX"),
                                        ("{tiny}:99", "chunk(s) here, 0 to"), ("missing.toml:0", "missing.toml")])
def test_compile_levels_bad_chunks_get_one_line_and_exit_2(sweep_file, capsys, item, says):
    from benchmarks import compile_levels

    assert compile_levels.main([item.format(tiny=sweep_file())]) == 2
    err = capsys.readouterr().err
    assert says in err and len(err.strip().splitlines()) == 1
