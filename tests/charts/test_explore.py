"""The explore page: written by the command, opened offline in headless Chromium, clicked and hovered there."""

import base64
import gzip
import json
import re

import numpy as np
import pandas as pd
import pytest

import grokjax
from benchmarks import browser
from benchmarks.explore import synthetic
from grokjax.charts import explore, figures
from grokjax.cli import main

# A click on a cell, then a shift-click on another; what the curves and histograms show after each.
CLICKS = """async (view) => {
  const cells = items(view, /^phase.*_marks$/);
  const find = (key) => cells.find((c) => ["x", "y", "facet"].every((k) => c.datum[k] === key[k]));
  const shown = () => {
    const points = items(view, /^(curves|runs)_train_acc.*_marks$/), ids = points.map((p) => p.datum.run_id);
    return {points: points.length, runs: [...new Set(ids.filter((id) => id !== null))].sort((a, b) => a - b),
            bands: items(view, /^band_train_acc.*_marks$/).length,
            neurons: items(view, /^neurons_ipr.*_marks$/).reduce((n, bar) => n + bar.datum.neurons, 0),
            selected: items(view, /^selected.*_marks$/).map((line) => line.datum.text)};
  };
  const states = {cells: cells.length, first: shown()};
  await hover(view, find(KEYS[0]));
  const tip = document.getElementById("vg-tooltip-element");
  states.tooltip = tip ? tip.innerText : "";
  await click(view, find(KEYS[0]));
  states.one = shown();
  await click(view, find(KEYS[1]), true);
  states.two = shown();
  return states;
}"""


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """The tiny sweep of conftest (8 runs: 2 data x 2 corruption fractions, 2 weight decays), without charts."""
    from tests.conftest import TINY_SWEEP

    path = tmp_path_factory.mktemp("explore") / "tiny.toml"
    path.write_text(TINY_SWEEP)
    return grokjax.run_sweep(path, out=path.parent / "results", progress=False, plots=False).folder


def cell_runs(runs: pd.DataFrame, key: dict) -> list[int]:
    """The run ids of a cell, found from the runs table by the cell's labels."""
    keyed = explore.cell_keys(runs)
    return sorted(keyed[(keyed.x == key["x"]) & (keyed.y == key["y"]) & (keyed.facet == key["facet"])].run_id.tolist())


@pytest.mark.slow
def test_a_click_on_a_cell_shows_its_runs(folder, capsys):
    assert main(["explore", str(folder)]) == 0
    page = folder / "explore.html"
    assert capsys.readouterr().out.strip() == str(page)
    text = page.read_text()
    assert not re.search(r"<script[^>]*\bsrc=", text) and not re.search(r"<link[^>]*https?:", text), "opens offline"
    res = grokjax.load_results(folder)
    cells = figures.phase_cells(res.runs)
    first = explore.cell_keys(res.runs).set_index("run_id").loc[figures.example_runs(res.runs)[0]]
    # click a cell of another facet than the first selected one, then shift-click a cell beside the first
    others = pd.concat([cells[cells.facet != first.facet].head(1),
                        cells[(cells.facet == first.facet) & ((cells.x != first.x) | (cells.y != first.y))].head(1)])
    keys = others[explore.KEYS].to_dict("records")
    states = browser.probe(page, CLICKS.replace("KEYS", json.dumps(keys)))["value"]
    assert states["cells"] == len(cells)
    width = int(res.runs.width.iloc[0])
    for state, chosen in ((states["first"], [first]), (states["one"], keys[:1]), (states["two"], keys)):
        run_ids = sorted(r for key in chosen for r in cell_runs(res.runs, key))
        assert state["runs"] == run_ids  # the curves are those of the selected cells' runs, and only theirs
        assert state["neurons"] == width * len(run_ids)  # each of their neurons in one bin of the histogram
        assert len(state["selected"]) == len(chosen)
    assert states["one"]["runs"] != states["first"]["runs"]
    assert states["two"]["points"] > states["one"]["points"] > 0
    # hovering a cell shows its phase, its config and its accuracies
    cell = others.iloc[0]
    assert cell["phase"] in states["tooltip"] and cell["facet"] in states["tooltip"]
    assert all(name in states["tooltip"] for name in ("train accuracy", "test accuracy", "seeds in the majority phase"))


@pytest.mark.slow
def test_without_neurons_or_some_curves_the_page_keeps_the_rest(folder, tmp_path):
    res = grokjax.load_results(folder)
    curves = res.curves.drop(columns=["weight_norm", "train_acc_clean"]).assign(ipr_mean=np.nan)  # as sparse parity
    page = tmp_path / "page.html"
    figures.save(explore.chart(res.runs, curves, neurons=None), page)
    names = browser.probe(page, """async (view) => {
      const names = [], walk = (node) => { if (/_marks$/.test(node.name) && node.items.length) names.push(node.name);
        for (const item of node.items || []) for (const child of item.items || []) walk(child); };
      walk(view.scenegraph().root);
      return [...new Set(names)];
    }""")["value"]
    assert {re.sub(r"(_\d+)?_marks$", "", n) for n in names} == {"phase", "selected", "curves_train_acc", "curves_train_loss"}


def test_seed_agreement_is_drawn_as_opacity_where_cells_hold_several_runs():
    runs = pd.DataFrame({
        "run_id": range(4), "seed": [0, 1, 0, 1], "data_fraction": [0.5, 0.5, 0.6, 0.6], "corruption_fraction": 0.1,
        "phase": ["memorization", "coexistence", "coexistence", "coexistence"],
        "train_acc": 0.5, "test_acc": 0.5, "train_acc_corrupted": 0.5,
    })
    curves = pd.DataFrame({"run_id": range(4), "step": 10, "train_acc": 0.5})
    spec = explore.chart(runs, curves).to_dict()
    phase = spec["vconcat"][0]["hconcat"][0]
    assert phase["encoding"]["opacity"]["field"] == "agreement"
    assert "opacity" not in explore.chart(runs[runs.seed == 0], curves).to_dict()["vconcat"][0]["hconcat"][0]["encoding"]


def test_runs_without_a_phase_are_counted_as_such_on_chosen_axes():
    """A run that diverged before its first logged step has no phase; its cell says so, over any axes."""
    runs = pd.DataFrame({
        "run_id": range(4), "learning_rate": [0.01, 0.01, 0.1, 0.1], "weight_decay": [1.0, 10.0, 1.0, 10.0],
        "data_fraction": 0.4, "corruption_fraction": 0.0,
        "phase": pd.array(["memorization", "coexistence", "coexistence", pd.NA], dtype="string"),
        "train_acc": 0.5, "test_acc": 0.5, "train_acc_corrupted": 0.5,
    })
    axes = ("learning_rate", "weight_decay")
    shares = explore.phase_shares(runs, explore.cell_keys(runs, axes))
    assert sorted(shares.phases) == ["1 coexistence", "1 coexistence", "1 memorization", "1 no phase"]
    spec = explore.chart(runs, pd.DataFrame({"run_id": range(4), "step": 10, "train_acc": 0.5}), axes=axes).to_dict()
    assert spec["vconcat"][0]["hconcat"][0]["encoding"]["x"]["title"] == "learning rate"


@pytest.mark.slow
@pytest.mark.parametrize("small", [False, True])
def test_a_cell_of_several_runs_shows_their_band_and_the_runs_that_fit(tmp_path, monkeypatch, small):
    """Three seeds per cell: the selected cell draws its mean in its quartile band, and its runs' curves as the
    budget allows (all three with the default, none with a small one: the selected cell then says so)."""
    if small:
        monkeypatch.setattr(explore, "CURVE_BUDGET", 10_000)
    runs, curves, neurons = synthetic(seeds=3, logs=10, width=4)
    runs = runs[(runs.weight_decay == 0) & (runs.data_fraction <= 0.3)].drop(columns="weight_decay")
    page = tmp_path / "page.html"
    figures.save(explore.chart(runs, curves, neurons), page)
    key = explore.cell_keys(runs).iloc[-1][explore.KEYS].to_dict()
    state = browser.probe(page, CLICKS.replace("KEYS", json.dumps([key, key])))["value"]["one"]
    runs_of_cell = cell_runs(runs, key)
    assert len(runs_of_cell) == 3 and state["bands"] > 0
    assert state["runs"] == ([] if small else runs_of_cell)
    assert ("curves of 0 runs" in state["selected"][0]) == small
    assert "3 runs, " in state["selected"][0]


def test_a_figure_3_sized_sweep_makes_a_page_of_bounded_size(tmp_path):
    runs, curves, neurons = synthetic()
    assert len(runs) == 1292 and curves.step.nunique() == 100
    page = tmp_path / "page.html"
    figures.save(explore.chart(runs, curves, neurons), page)
    assert page.stat().st_size < 5e6  # with the inlined libraries (about 1 MB)
    cells = figures.spec(explore.chart(runs, curves, neurons))["datasets"]["cells"]
    assert len(cells) == 1292 and {len(c["step"]) for c in cells} == {explore.MAX_POINTS}  # one run each: its curves


def test_a_cells_summary_is_its_runs_mean_and_quartiles_at_each_step():
    """Three runs in one cell and one in another, with fixed curves: the summary at each kept step is the mean and
    the 25th and 75th percentiles (linear interpolation, as numpy defines them) of the cell's runs; a cell of one
    run has that run's curve and no quartiles."""
    runs = pd.DataFrame({"run_id": range(4), "seed": [0, 1, 2, 0], "data_fraction": [0.5, 0.5, 0.5, 0.6],
                         "corruption_fraction": 0.0, "phase": "coexistence", "train_acc": 1.0, "test_acc": 1.0,
                         "train_acc_corrupted": np.nan})
    steps = np.arange(0, 100, 10)
    values = [np.linspace(0, 1, 10), np.linspace(1, 0, 10), np.full(10, 0.3), np.arange(10) / 10]
    curves = pd.DataFrame({"run_id": np.repeat(range(4), len(steps)), "step": np.tile(steps, 4),
                           "test_acc": np.concatenate(values)})
    keys = explore.cell_keys(runs)
    cells = explore.cell_table(runs, keys, None)
    table = explore.summary_table(keys, cells, curves, ["test_acc"], points=4).set_index("x")
    kept = [0, 30, 60, 90]  # 4 of the 10 logged steps, evenly spaced, first and last included
    many = table.loc["0.5"]
    by_step = curves[curves.run_id < 3].pivot(index="step", columns="run_id", values="test_acc").loc[kept].to_numpy()
    assert many.step == kept
    np.testing.assert_allclose(many.test_acc_mean, by_step.mean(axis=1), atol=1e-3)
    np.testing.assert_allclose(many.test_acc_lo, np.quantile(by_step, 0.25, axis=1), atol=1e-3)
    np.testing.assert_allclose(many.test_acc_hi, np.quantile(by_step, 0.75, axis=1), atol=1e-3)
    one = table.loc["0.6"]
    np.testing.assert_allclose(one.test_acc_mean, [0.0, 0.3, 0.6, 0.9])
    assert one.test_acc_lo == [] and one.test_acc_hi == []


@pytest.mark.parametrize(("cells", "per_cell", "metrics", "steps"), [
    (390, 1, 8, 30), (1292, 1, 8, 100), (1292, 5, 8, 100), (1000, 50, 6, 20), (11_628, 5, 8, 100), (40_000, 1, 8, 100)])
def test_the_curves_share_their_budget_summaries_first(cells, per_cell, metrics, steps):
    """What `layout` gives costs at most CURVE_BUDGET, unless every cell's summary at MIN_POINTS is more; the runs'
    curves take only what the summaries leave, at full resolution where one run per cell fits at it."""
    table = pd.DataFrame({"runs": np.full(cells, per_cell)})
    summary, shown, points = explore.layout(table, metrics, steps)
    most = min(explore.MAX_POINTS, steps)
    quartiles = 2 * metrics if per_cell > 1 else 0
    summaries = cells * (summary * (1 + metrics + quartiles) + explore.ROW_COST)
    runs = cells * shown * (points * (1 + metrics) + explore.ROW_COST) if per_cell > 1 else 0
    assert explore.MIN_POINTS <= summary <= most and explore.MIN_POINTS <= points <= most
    assert summaries + runs <= explore.CURVE_BUDGET or (summary == explore.MIN_POINTS and shown == 0)
    assert shown == 0 if per_cell == 1 else summary == most or shown == 0
    if summaries + cells * (most * (1 + metrics) + explore.ROW_COST) <= explore.CURVE_BUDGET and per_cell > 1:
        assert shown >= 1 and points == most


def test_the_page_carries_its_tables_packed_and_the_same_tables_make_the_same_page(tmp_path):
    runs, curves, neurons = synthetic(seeds=2, logs=5, width=4)
    chart = explore.chart(runs, curves, neurons)
    text = figures.html_page(chart)
    packed = re.search(r'atob\("([A-Za-z0-9+/=]+)"\)', text).group(1)
    assert json.loads(gzip.decompress(base64.b64decode(packed))) == json.loads(json.dumps(figures.spec(chart)["datasets"]))
    assert figures.html_page(explore.chart(runs, curves, neurons)) == text


def test_out_writes_the_same_page_elsewhere(folder, tmp_path):
    assert main(["explore", str(folder), "--out", str(tmp_path / "page.html")]) == 0
    assert main(["explore", str(folder)]) == 0
    assert (tmp_path / "page.html").read_bytes() == (folder / "explore.html").read_bytes()


@pytest.mark.parametrize("make", ["missing", "empty", "broken", "out in a missing folder"])
def test_explore_refuses_what_is_not_a_results_folder(folder, tmp_path, capsys, make):
    out = ["--out", str(tmp_path / "nowhere" / "page.html")] if make.startswith("out") else []
    folder = folder if out else tmp_path / "results"
    if make in ("empty", "broken"):
        folder.mkdir()
    if make == "broken":
        (folder / "runs.parquet").write_text("not parquet")
    assert main(["explore", str(folder), *out]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"grokjax explore: {folder}: ") and err.count("\n") == 1 and "Traceback" not in err
    assert not list(tmp_path.rglob("*.html"))
