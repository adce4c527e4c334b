"""The benchmark command runs end to end on a tiny sweep and writes its figures (its speed is not tested)."""

import json

from grokjax import bench
from grokjax.bench import main


def test_bench_writes_its_figures(sweep_file, tmp_path, capsys):
    out = tmp_path / "bench.json"
    assert main([str(sweep_file()), "--runs", "3", "--no-torch", "--formulations", "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["runs"] == 4 and report["p"] == 11 and report["width"] == 24  # one whole chunk (a rung of 4 runs)
    for key in ("grokjax_vmapped", "grokjax_serial"):
        assert report[key]["run_steps_per_s"] > 0
    assert report["matmul"]["flops_per_s"] > 0 and 0 < report["fraction_of_matmul"]
    assert report["pytorch_serial"] == {"skipped": "skipped (--no-torch)"}
    assert set(report["formulations"]) == {"grid", "gather", "gather_onehot", "expanded", "fused_loss"}
    assert all(f["grad_rel_diff"] < 1e-4 for f in report["formulations"].values())  # all exact to float32
    printed = capsys.readouterr().out
    assert "run-steps/s" in printed and "of a dense" in printed


def test_model_flops_formula(sweep_file):
    from grokjax import grid, plan
    from grokjax.config import load

    runs = grid.expand(load(sweep_file()))
    static, group = next(plan.groups(runs))
    p, n, logs = 11, 24, 3  # 30 steps, logged every 10
    expected = sum(6 * t * n * p * 30 + 2 * p**3 * n * logs for t in group.n_train)
    assert bench.model_flops(static, group) == expected
