"""grokjax: vectorized JAX sweeps of grokking and label-corruption experiments.

    import grokjax
    grokjax.configure()                  # optional: JAX set up as the grokjax command sets it up
    outcome = grokjax.run_sweep("sweeps/quickstart.toml")  # outcome.folder; outcome.results as below
    res = grokjax.load_results("results/quickstart")    # res.runs, res.curves: DataFrames; res.meta: provenance

A task or model of one's own: a function returning a `grokjax.Task`, a `flax.linen.Module` class,
named in a sweep file by import path (docs/extending.md).
"""

from __future__ import annotations

from typing import Any

from grokjax.config.sweep_file import ConfigError, SweepConfig
from grokjax.config.sweep_file import load as load_config
from grokjax.core.types import Fourier, Task
from grokjax.store.results import Results
from grokjax.store.results import load as load_results
from grokjax.version import __version__

__all__ = ["ConfigError", "Fourier", "Results", "SweepConfig", "Task", "configure", "load_config", "load_results", "run_sweep",
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


def __getattr__(name: str) -> Any:
    """`grokjax.run_sweep` is `grokjax.engine.sweep.run`, loaded on first use so that `import grokjax` (and the
    command line's --help) does not load the engine."""
    if name == "run_sweep":
        from grokjax.engine.sweep import run

        return run
    raise AttributeError(f"module 'grokjax' has no attribute {name!r}")
