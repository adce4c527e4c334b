"""Charts: built from DataFrames, sized for full sweeps, written as offline HTML and PNG."""

import io
import json

import altair as alt
import numpy as np
import pandas as pd
import pytest

from benchmarks.explore import synthetic
from grokjax.charts import figures
from grokjax.cli import main
from grokjax.summary.phases import PHASES


@pytest.fixture(scope="module")
def fig3_sized():
    """Synthetic runs and curves the size of sweeps/doshi_fig3_wd.toml (1,292 runs, 100 logs), as the explore benchmark's."""
    runs, curves, _ = synthetic()
    return runs, curves


def test_charts_handle_a_full_figure_3_sweep(fig3_sized):
    runs, curves = fig3_sized
    assert len(runs) == 1292 and len(curves) == 129_200
    for chart in (figures.phase_diagram(runs), figures.accuracy_heatmaps(runs),
                  figures.training_curves(curves, runs), figures.phase_counts(runs)):
        spec = chart.to_dict()  # raises if any dataset exceeds Altair's 5,000-row limit
        assert spec["$schema"].startswith("https://vega.github.io/schema/vega-lite/")
    cells = figures.phase_cells(runs)
    assert len(cells) == 1292 and set(cells.facet) == {f"weight decay = {w:g}" for w in (0, 5, 15, 20)}
    assert "0.30000000000000004" not in figures.phase_diagram(runs).to_json()


def test_majority_phase_and_agreement_over_seeds():
    runs = pd.DataFrame({
        "run_id": range(6), "seed": [0, 1, 2, 0, 1, 2], "data_fraction": [0.5] * 3 + [0.6] * 3,
        "corruption_fraction": 0.1, "weight_decay": 1.0,
        "phase": ["memorization", "coexistence", "coexistence", "full_inversion", "partial_inversion", "confusion"],
        "train_acc": 0.5, "test_acc": 0.5, "train_acc_corrupted": 0.5,
    })
    cells = figures.phase_cells(runs).set_index("data_fraction")
    assert cells.loc[0.5, "phase"] == "coexistence" and cells.loc[0.5, "agreement"] == pytest.approx(2 / 3)
    assert cells.loc[0.6, "phase"] == "partial_inversion"  # a three-way tie goes to the paper's order
    assert cells.loc[0.6, "runs"] == 3


def test_phase_colours_are_fixed_and_in_the_papers_order(fig3_sized):
    runs, _ = fig3_sized
    scale = figures.phase_diagram(runs).to_dict()["spec"]["encoding"]["color"]["scale"]
    assert scale["domain"] == list(PHASES)
    assert scale["range"] == [figures.PHASE_COLORS[p] for p in PHASES]
    assert len(set(scale["range"])) == len(PHASES)


def test_example_runs_pick_one_per_phase(fig3_sized):
    runs, _ = fig3_sized
    chosen = runs.set_index("run_id").loc[figures.example_runs(runs)]
    assert chosen.phase.tolist() == list(PHASES)


def test_html_pages_are_altairs_own_with_the_bundle_kept_in_the_cache(tmp_path, monkeypatch):
    chart = alt.Chart(pd.DataFrame({"x": [0, 1], "y": [2, 3]})).mark_line().encode(x="x:Q", y="y:Q")
    altairs = io.StringIO()
    chart.save(altairs, format="html", inline=True)
    assert figures.html_page(chart) == altairs.getvalue()  # the same self-contained page, byte for byte

    monkeypatch.setenv("GROKJAX_CACHE_DIR", str(tmp_path))
    bundle = figures.javascript_bundle()
    (kept,) = (tmp_path / "charts").iterdir()
    assert kept.read_text(encoding="utf-8") == bundle
    kept.write_text("// read back, not built again", encoding="utf-8")
    assert figures.javascript_bundle() == "// read back, not built again"
    monkeypatch.setenv("GROKJAX_CACHE_DIR", "off")
    assert figures.javascript_bundle() == bundle  # built, nothing kept


def test_plot_command_redraws_from_parquet_alone(tmp_path, sweep_file, capsys):
    out = tmp_path / "out"
    assert main(["sweep", str(sweep_file()), "--out", str(out), "--no-progress"]) == 0
    names = [f"{n}.{k}" for n in ("phase_diagram", "accuracy", "curves") for k in ("html", "png")] + ["explore.html"]
    assert all((out / n).is_file() for n in names)
    for n in names:
        (out / n).unlink()
    (out / "sweep.toml").unlink()
    assert main(["plot", str(out)]) == 0
    for n in names:
        data = (out / n).read_bytes()
        if n.endswith(".png"):
            assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000
        else:
            text = data.decode()
            assert "<script src=" not in text, "the HTML must open offline"
            assert "vega" in text
    assert not list(out.glob("*.tmp"))
    assert main(["plot", str(tmp_path / "missing")]) == 2
    assert "no runs.parquet" in capsys.readouterr().err


def test_plot_refuses_a_broken_parquet_file(tmp_path, capsys):
    (tmp_path / "runs.parquet").write_text("not parquet")
    assert main(["plot", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "runs.parquet" in err and "Traceback" not in err


@pytest.mark.parametrize("n", [1, 5, 7, 8, 13, 19, 40])
def test_x_labels_are_every_kth_cell_value_at_most_seven(n):
    """A heatmap's x axis labels every k-th cell value from the first, no more than MAX_X_LABELS of them."""
    values = [round(0.3 + 0.05 * i, 2) for i in range(n)]
    runs = pd.DataFrame({"data_fraction": values * 2, "corruption_fraction": [0.0] * n + [0.1] * n})
    axis = figures.grid_encodings(runs.assign(
        x0=runs.data_fraction, x1=runs.data_fraction, y0=runs.corruption_fraction, y1=runs.corruption_fraction),
        ("data_fraction", "corruption_fraction"))["x"].to_dict()["axis"]
    shown = axis["values"]
    k = -(-n // figures.MAX_X_LABELS)
    assert shown == [float(v) for v in values[::k]] and len(shown) <= figures.MAX_X_LABELS
    assert n <= figures.MAX_X_LABELS or k > 1


@pytest.mark.parametrize("low, high", [(50, 1500), (1, 100_000), (10, 2000), (60, 90)])
def test_log_step_labels_are_round_numbers_inside_the_steps_and_few(low, high):
    ticks = figures.log_ticks(low, high)
    assert 1 <= len(ticks) <= figures.MAX_X_LABELS and ticks == sorted(ticks)
    assert all(low <= t <= high for t in ticks)
    round_numbers = [t for t in ticks if t / 10 ** np.floor(np.log10(t)) in (1, 2, 5)]
    assert round_numbers == ticks or ticks == [low, high]  # a range holding no round number keeps its ends
    if high / low >= 10:  # every power of ten in the range is labelled
        assert {10.0**k for k in range(7) if low <= 10**k <= high} <= set(ticks)


def test_log_steps_put_the_labels_on_the_axis(fig3_sized):
    runs, curves = fig3_sized
    spec = json.loads(figures.training_curves(curves, runs, log_steps=True).to_json())
    x = spec["vconcat"][0]["spec"]["encoding"]["x"]
    steps = curves.step[curves.step > 0]
    assert x["scale"] == {"type": "log", "domain": [steps.min(), steps.max()], "nice": False}
    assert x["axis"]["values"] == figures.log_ticks(steps.min(), steps.max())


def test_every_chart_and_the_explore_page_hold_their_aggregates_whatever_the_sweeps_size():
    """100,776 synthetic runs (the Figure 3 grid, 78 seeds): every dataset of every chart is one row per cell,
    per phase or per plotted point, and the explore page's summaries and runs' curves stay within their budget."""
    from grokjax.charts import explore

    runs, curves, neurons = synthetic(seeds=78, logs=5, width=2)
    assert len(runs) == 100_776
    cells = len(figures.phase_cells(runs))
    bounds = {  # chart: the most rows any of its datasets may hold, from what it draws
        "phase_diagram": cells, "accuracy_heatmaps": 2 * cells, "phase_counts": len(PHASES) * runs.weight_decay.nunique(),
        "training_curves": len(PHASES) * curves.step.nunique() * 8,
        "ipr_histograms": len(PHASES) * 20, "frequency_counts": 48 * len(PHASES),
    }
    charts = {"phase_diagram": figures.phase_diagram(runs), "accuracy_heatmaps": figures.accuracy_heatmaps(runs),
              "phase_counts": figures.phase_counts(runs), "training_curves": figures.training_curves(curves, runs),
              "ipr_histograms": figures.ipr_histograms(neurons, runs), "frequency_counts": figures.frequency_counts(neurons, runs)}
    for name, chart in charts.items():
        datasets = chart.to_dict()["datasets"].values()
        assert max(len(d) for d in datasets) <= bounds[name], name
    page = figures.spec(explore.chart(runs, curves, neurons))["datasets"]
    assert len(page["cells"]) == cells and all(len(cell["step"]) for cell in page["cells"])  # every cell's summary
    curve_columns = [c for c in page["cells"][0] if c.endswith(("_mean", "_lo", "_hi"))]
    numbers = sum(len(row["step"]) + sum(len(row[c]) for c in curve_columns) + explore.ROW_COST for row in page["cells"])
    numbers += sum(len(row["step"]) * (1 + len(curve_columns) // 3) + explore.ROW_COST for row in page["runs"])
    assert numbers <= explore.CURVE_BUDGET


@pytest.mark.parametrize(("values", "labels"), [
    (np.linspace(0.1, 0.9, 13).round(12), 2), (np.linspace(0, 0.9, 19).round(12), 2), ([0.0, 5.0, 15.0, 20.0], 0),
    ([0.25, 0.5, 0.75], 2), ([1, 2, 3], 0), ([0.1, 0.2, 0.3], 1)])
def test_linear_tick_labels_take_the_fewest_decimals_that_keep_each_label_near_its_value(values, labels):
    fmt = figures.tick_format(pd.Series(values))
    assert fmt == f",.{labels}~f"
    v, gap = np.array(values), np.diff(values).min()
    assert np.abs(np.round(v, labels) - v).max() <= 0.1 * gap  # each label within a tenth of a step of its value
    assert labels == 0 or np.abs(np.round(v, labels - 1) - v).max() > 0.1 * gap  # not so at one decimal fewer


def test_stage_times_groups_what_fits_and_holds_every_stage(fig3_sized):
    """A Figure 3-sized grid (17 x 19 cells, 4 weight decays) is grouped by weight decay: its cells would be 323
    lines. Each group's four Kaplan-Meier curves start at 1 and never rise."""
    runs, _ = fig3_sized
    rng = np.random.default_rng(0)
    steps = {s: pd.array(np.where(rng.random(len(runs)) < 0.6, rng.integers(1, 20, len(runs)) * 100, None),
                         dtype="Int64") for s in ("memorization", "circuit_formation", "cleanup", "generalization")}
    runs = runs.assign(steps=2000, **{f"stage_{s}": v for s, v in steps.items()})
    assert figures.stage_groups(runs) == ["weight_decay"]
    few = runs[runs.weight_decay == 0].iloc[:6]  # a handful of cells: each its own group
    assert figures.stage_groups(few) == [c for c in ("data_fraction", "corruption_fraction") if few[c].nunique() > 1]
    spec = figures.stage_times(runs).to_dict()
    frame = pd.DataFrame(spec["data"]["values"] if "values" in spec["data"] else spec["datasets"][spec["data"]["name"]])
    assert set(frame.stage) == {"memorization", "circuit formation", "cleanup", "generalization"}
    for _, curve in frame.groupby(["group", "stage"]):
        assert curve.surviving.iloc[0] == 1 and (np.diff(curve.surviving) <= 1e-12).all()


def test_method_curves_are_medians_over_seeds_per_setting_and_panel():
    """Lines: the method fields varied (Grokfast's lambda); panels: the other swept fields (weight decay); each point
    the median over seeds; a train loss of exactly 0 is left off the log scale. Drawn only where a method varies."""
    from grokjax.charts.drawing import chart_names

    grid = [(lam, wd, seed) for lam in (0.0, 2.0) for wd in (0.0, 1.0) for seed in (0, 1, 2)]
    runs = pd.DataFrame({"run_id": range(12), "grokfast_lambda": [g[0] for g in grid],
                         "weight_decay": [g[1] for g in grid], "seed": [g[2] for g in grid], "data_fraction": 0.5})
    steps = np.arange(1, 6) * 10
    curves = pd.DataFrame([{"run_id": r, "step": s, "test_acc": (r * 7 % 5) / 5 * s / 50,
                            "softmax_collapse": 0.0, "train_loss": 0.0 if s == 50 else 1.0 / s}
                           for r in range(12) for s in steps])
    assert figures.method_groups(runs) == (["grokfast_lambda"], ["weight_decay"])
    assert "methods" in chart_names(runs, None) and "methods" not in chart_names(runs.assign(grokfast_lambda=0.0), None)
    spec = figures.method_curves(curves, runs).to_dict()
    frames = [pd.DataFrame(spec["datasets"][row["data"]["name"]]) for row in spec["vconcat"]]
    accuracy, _, loss = frames
    expected = curves.merge(runs, on="run_id").groupby(["grokfast_lambda", "weight_decay", "step"]).test_acc.median()
    for row in accuracy.itertuples():
        lam, wd = float(row.method.split("= ")[1]), float(row.panel.split("= ")[1])
        assert row.test_acc == pytest.approx(expected[(lam, wd, row.step)])
    assert set(accuracy.panel) == {"weight decay = 0", "weight decay = 1"}
    assert set(accuracy.method) == {"Grokfast λ = 0", "Grokfast λ = 2"} and len(accuracy) == 20
    assert (loss.train_loss > 0).all() and 50 not in set(loss.step)
    many = runs.assign(grokfast_lambda=runs.run_id.astype(float))  # 12 settings in one panel each: at most drawn
    wide = pd.concat([many, many.assign(run_id=many.run_id + 12, grokfast_lambda=many.grokfast_lambda + 12)])
    wide_curves = pd.concat([curves, curves.assign(run_id=curves.run_id + 12)])
    spec = figures.method_curves(wide_curves, wide).to_dict()
    drawn = pd.DataFrame(spec["datasets"][spec["vconcat"][0]["data"]["name"]])
    assert drawn.method.nunique() == figures.MAX_METHOD_LINES and len(drawn) <= figures.MAX_METHOD_LINES * 2 * 5
