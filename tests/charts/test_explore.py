"""The explore page: written by the command, opened offline in headless Chromium, clicked and hovered there."""

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
    const points = items(view, /^curves_train_acc.*_marks$/);
    return {points: points.length, runs: [...new Set(points.map((p) => p.datum.run_id))].sort((a, b) => a - b),
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


def test_a_figure_3_sized_sweep_makes_a_page_of_bounded_size():
    runs, curves, neurons = synthetic()
    assert len(runs) == 1292 and curves.step.nunique() == 100
    spec = explore.chart(runs, curves, neurons).to_json(indent=None)
    assert len(spec) < 14e6  # with the inlined libraries (about 1 MB), under 15 MB
    table = explore.run_table(runs, curves)
    assert len(table) == 1292 and table.step.map(len).max() == explore.MAX_POINTS


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
