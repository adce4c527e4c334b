"""Per-neuron IPR, frequencies and the analytic solution (seed 002, eqs. 2-4, Appendix D)."""

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest

from grokjax.config.sweep_file import ConfigError
from grokjax.core import analysis, builtin_tasks, models
from grokjax.core.types import Static
from grokjax.engine.sweep import run
from grokjax.store import results as results_module
from tests.conftest import init_model


def mlp(p: int, width: int) -> Static:
    return Static(task="modular_addition", p=p, model="mlp", width=width, activation="quadratic", loss="mse",
                  optimizer="adamw", betas=(0.9, 0.98), steps=1, log_every=1)


def grid_logits(static: Static, params) -> np.ndarray:
    pairs = jnp.arange(static.p)
    return np.asarray(models.build(static).apply({"params": params}, (pairs[:, None], pairs[None, :]),
                                                 train=False, rate=0.0, mask=None))


@pytest.mark.parametrize("p, width, seed", [(13, 256, 0), (11, 512, 1), (17, 512, 2)])
def test_analytic_solution_is_exact_and_periodic(p, width, seed):
    params = analysis.analytic_solution(p, width, jax.random.key(seed))
    static = mlp(p, width)
    assert jax.tree.map(jnp.shape, params) == jax.tree.map(jnp.shape, init_model(static, jax.random.key(0), 1.0)["params"])
    predicted = grid_logits(static, params).argmax(axis=1)
    np.testing.assert_array_equal(predicted, builtin_tasks.modular_addition(p).labels)  # 100% on all p^2 pairs
    stats = analysis.neuron_stats(static, params)
    assert float(stats["ipr"].min()) > 0.999  # one Fourier component per weight vector


def test_random_init_has_the_ipr_of_white_noise():
    p = 13
    params = init_model(mlp(p, 2048), jax.random.key(0), 1.0)["params"]
    expected = analysis.white_noise_ipr(p)
    assert float(analysis.ipr_mean(mlp(p, 2048), params)) == pytest.approx(expected, rel=0.03)
    assert analysis.white_noise_ipr(97) == pytest.approx(0.0404, abs=1e-4)  # the value quoted in the docs


@pytest.mark.parametrize("p", [12, 97])
def test_white_noise_ipr_matches_monte_carlo(p):
    noise = np.random.default_rng(p).normal(size=(20_000, p))
    measured = float(analysis.ipr(jnp.asarray(noise)).mean())
    assert measured == pytest.approx(analysis.white_noise_ipr(p), rel=0.03)


def test_neuron_stats_match_numpy():
    p, width = 11, 16
    params = init_model(mlp(p, width), jax.random.key(3), 1.0)["params"]
    U, V = (np.asarray(params[k]["embedding"]).T for k in ("U", "V"))
    W = np.asarray(params["W"]["kernel"])
    stats = {k: np.asarray(v) for k, v in analysis.neuron_stats(mlp(p, width), params).items()}

    def ipr(x):
        s = np.abs(np.fft.rfft(x))
        return np.sum(s**4) / np.sum(s**2) ** 2

    for k in range(width):
        by_hand = [ipr(U[k]), ipr(V[k]), ipr(W[k])]
        np.testing.assert_allclose([stats["ipr_u"][k], stats["ipr_v"][k], stats["ipr_w"][k]], by_hand, rtol=1e-5)
        assert stats["ipr"][k] == pytest.approx(np.mean(by_hand), rel=1e-5)
        power = np.abs(np.fft.rfft(U[k])) ** 2 + np.abs(np.fft.rfft(V[k])) ** 2
        assert stats["dominant_frequency"][k] == 1 + np.argmax(power[1 : (p - 1) // 2 + 1])
        assert stats["norm"][k] == pytest.approx(np.sqrt(np.sum(U[k] ** 2 + V[k] ** 2 + W[k] ** 2)), rel=1e-5)
    assert stats["dominant_frequency"].min() >= 1 and stats["dominant_frequency"].max() <= (p - 1) // 2


@pytest.mark.parametrize("p", [7, 10, 97])
def test_power_spectrum_is_the_squared_real_dft(p):
    x = np.random.default_rng(p).normal(size=(5, p)).astype(np.float32)
    expected = np.abs(np.fft.rfft(x.astype(np.float64), axis=-1)) ** 2
    np.testing.assert_allclose(analysis.power_spectrum(jnp.asarray(x)), expected, rtol=1e-4, atol=1e-4 * expected.max())


def cosines(p: int, units: int, phase: float = 0.3) -> tuple[np.ndarray, np.ndarray]:
    """(units, p) weight vectors, unit j a pure cosine of frequency 1 + j % ((p - 1) // 2), and those frequencies."""
    freq = 1 + np.arange(units) % ((p - 1) // 2)
    return np.cos(2 * np.pi * freq[:, None] * np.arange(p)[None, :] / p + phase), freq


def test_transformer_embedding_directions_and_deep_mlp_first_layer_neurons():
    """Figure 7's units: the transformer's embedding directions (columns of the embedding over the residues)
    and the 3-layer MLP's first-layer neurons (rows of U and V); a pure cosine has IPR 1 and its frequency."""
    p = 13
    transformer = Static(task="modular_addition", p=p, model="transformer", embed_size=8, heads=2, width=16)
    params = init_model(transformer, jax.random.key(0), 1.0)["params"]
    waves, freq = cosines(p, 8)
    params["embed"]["embedding"] = jnp.asarray(waves.T, jnp.float32)  # (p, d): column j is direction j
    stats = {k: np.asarray(v) for k, v in analysis.neuron_stats(transformer, params).items()}
    assert stats["ipr"].shape == (8,) and np.isnan(stats["ipr_v"]).all() and np.isnan(stats["ipr_w"]).all()
    np.testing.assert_allclose(stats["ipr"], 1.0, rtol=1e-5)
    np.testing.assert_array_equal(stats["dominant_frequency"], freq)
    np.testing.assert_allclose(stats["norm"], np.linalg.norm(waves, axis=1), rtol=1e-5)

    deep = Static(task="modular_addition", p=p, model="mlp", depth=3, width=16, activation="relu")
    params = init_model(deep, jax.random.key(0), 1.0)["params"]
    waves, freq = cosines(p, 16)
    params["U"]["embedding"] = jnp.asarray(waves.T, jnp.float32)  # U periodic, V white noise
    stats = {k: np.asarray(v) for k, v in analysis.neuron_stats(deep, params).items()}
    V = np.asarray(params["V"]["embedding"]).T
    noise = [np.sum(np.abs(np.fft.rfft(v)) ** 4) / np.sum(np.abs(np.fft.rfft(v)) ** 2) ** 2 for v in V]
    assert np.isnan(stats["ipr_w"]).all()
    np.testing.assert_allclose(stats["ipr_u"], 1.0, rtol=1e-5)
    np.testing.assert_allclose(stats["ipr"], (1.0 + np.array(noise)) / 2, rtol=1e-5)  # the mean of U's and V's


def test_transformer_sweep_writes_one_row_per_embedding_direction(sweep_file, tmp_path):
    text = """\
        [task]
        p = 7
        [model]
        name = "transformer"
        embed_size = 8
        heads = 2
        width = 16
        activation = "relu"
        [train]
        loss = "cross_entropy"
        steps = 4
        log_every = 2
        [sweep]
        weight_decay = [0.0, 1.0]
        """
    results = run(sweep_file(text), out=tmp_path / "out", progress=False, plots=False).results
    runs, neurons = results.runs, results.neurons
    assert len(neurons) == len(runs) * 8 and neurons.ipr_w.isna().all()
    np.testing.assert_allclose(runs.set_index("run_id").ipr_mean, neurons.groupby("run_id").ipr.mean(), rtol=1e-4)


def test_sweep_writes_neurons_and_ipr_columns(sweep_file, tmp_path):
    results = run(sweep_file(), out=tmp_path / "out", progress=False, plots=False).results
    runs, curves, neurons = results.runs, results.curves, results.neurons
    width = int(runs.width.iloc[0])
    assert len(neurons) == len(runs) * width
    assert (neurons.groupby("run_id").neuron.apply(list) == pd.Series([list(range(width))] * len(runs), index=runs.run_id)).all()
    per_run = neurons.groupby("run_id").ipr.mean()
    np.testing.assert_allclose(runs.set_index("run_id").ipr_mean, per_run, rtol=1e-4)
    periodic = neurons.assign(high=neurons.ipr >= analysis.PERIODIC_IPR).groupby("run_id").high.mean()
    np.testing.assert_allclose(runs.set_index("run_id").frac_periodic, periodic)
    last = curves.sort_values("step").groupby("run_id").ipr_mean.last()
    np.testing.assert_allclose(last, runs.set_index("run_id").ipr_mean)
    assert ((neurons.ipr > 0) & (neurons.ipr <= 1 + 1e-6)).all()


def test_models_without_neurons_get_empty_tables(sweep_file, tmp_path):
    text = """\
        [task]
        p = 7
        [model]
        name = "pair_mlp"
        width = 8
        embed_size = 8
        [train]
        loss = "cross_entropy"
        steps = 4
        log_every = 2
        """
    results = run(sweep_file(text), out=tmp_path / "out", progress=False, plots=False).results
    assert len(results.neurons) == 0 and list(results.neurons.columns)[:3] == ["run_id", "step", "neuron"]
    assert results.runs.ipr_mean.isna().all() and results.runs.frac_periodic.isna().all()
    assert (tmp_path / "out" / "neurons.parquet").is_file()


def test_ipr_histograms_share_per_phase_and_charts_written(sweep_file, tmp_path):
    from grokjax.charts import figures

    results = run(sweep_file(), out=tmp_path / "out", progress=False, plots=True).results
    chart = figures.ipr_histograms(results.neurons, results.runs)
    data = pd.DataFrame(chart.to_dict()["datasets"][chart.to_dict()["data"]["name"]])
    np.testing.assert_allclose(data.groupby("phase").share.sum(), 1.0)
    assert set(data.phase) == set(results.runs.phase.dropna())
    for name in ("ipr", "curves"):
        assert (tmp_path / "out" / f"{name}.png").stat().st_size > 0
    assert "mean IPR" in figures.training_curves(results.curves, results.runs).to_json()


def test_frequency_counts_count_the_periodic_neurons(sweep_file, tmp_path):
    from grokjax.charts import figures

    results = run(sweep_file(), out=tmp_path / "out", progress=False, plots=False).results
    ids = list(results.runs.run_id[:3])
    spec = figures.frequency_counts(results.neurons, results.runs, run_ids=ids).to_dict()
    counts = pd.DataFrame(spec["datasets"][spec["data"]["name"]])
    periodic = results.neurons[results.neurons.run_id.isin(ids) & (results.neurons.ipr >= analysis.PERIODIC_IPR)]
    assert counts.neurons.sum() == len(periodic)
    assert counts.dominant_frequency.between(1, (11 - 1) // 2).all()


def test_ipr_every_adds_snapshots_and_keeps_the_final_table(sweep_file, tmp_path):
    plain = run(sweep_file(), out=tmp_path / "plain", progress=False, plots=False).results
    snapped = run(sweep_file(name="snap.toml"), out=tmp_path / "snap", overrides=["train.ipr_every=20"],
                  progress=False, plots=False).results
    neurons = snapped.neurons
    assert sorted(neurons.step.unique()) == [20, 30]  # every 20 steps, and the last
    width = int(snapped.runs.width.iloc[0])
    assert (neurons.groupby("step").size() == len(snapped.runs) * width).all()
    final = results_module.final_neurons(neurons).reset_index(drop=True)
    pd.testing.assert_frame_equal(final, plain.neurons.reset_index(drop=True))


def test_ipr_every_must_be_a_multiple_of_log_every(sweep_file, tmp_path):
    with pytest.raises(ConfigError, match="ipr_every = 15 is not a multiple of train.log_every = 10"):
        run(sweep_file(), out=tmp_path / "x", overrides=["train.ipr_every=15"], progress=False, plots=False)
