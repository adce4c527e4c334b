"""grokjax: vectorized JAX sweeps of grokking and label-corruption experiments.

    import grokjax
    grokjax.configure()                  # optional: JAX set up as the grokjax command sets it up
    folder = grokjax.run_sweep("sweeps/quickstart.toml")
    res = grokjax.load_results(folder)   # res.runs, res.curves: DataFrames; res.meta: provenance
"""

from __future__ import annotations

from pathlib import Path

from grokjax.config.sweep_file import ConfigError, SweepConfig
from grokjax.config.sweep_file import load as load_config
from grokjax.store.results import Results
from grokjax.store.results import load as load_results
from grokjax.version import __version__

__all__ = ["ConfigError", "Results", "SweepConfig", "configure", "load_config", "load_results", "run_sweep",
           "__version__"]


def configure(cpu_devices: bool = True, compile_cache: bool = True) -> None:
    """Set up JAX in this process as the `grokjax` command does; sweeps run without it too, only slower.

    cpu_devices: one CPU device per core, so that a chunk's runs keep every core busy (only before
    JAX has started, and unless JAX_NUM_CPU_DEVICES or XLA's flag says otherwise). compile_cache:
    JAX's persistent compilation cache in grokjax's cache folder, so a second sweep of the same
    shapes loads its programs. Both change JAX's global configuration, which is why the library's
    calls never do it on their own.
    """
    from grokjax.engine import tuning

    if cpu_devices:
        tuning.split_cpu()
    if compile_cache:
        tuning.enable_compile_cache()


def run_sweep(
    config: SweepConfig | str | Path,
    out: str | Path | None = None,
    overrides: list[str] | tuple[str, ...] = (),
    chunk_size: int | None = None,
    progress: bool = True,
    plots: bool = True,
    overwrite: bool = False,
    restart: bool = False,
) -> Path:
    """Run a sweep (a sweep file's path or a SweepConfig) and return its results folder.

    The folder holds runs.parquet, curves.parquet, sweep.toml and, unless plots=False,
    the phase diagram, accuracy and curves charts as HTML and PNG. As `grokjax sweep`:
    an interrupted sweep resumes, another config's folder is refused unless overwrite.
    """
    from grokjax.engine import sweep

    outcome = sweep.run(config, out=out, overrides=overrides, chunk_size=chunk_size, progress=progress, plots=plots,
                        overwrite=overwrite, restart=restart)
    return outcome.folder
