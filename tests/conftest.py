import os
import tempfile
import textwrap
from pathlib import Path

import jax
import pytest

import grokjax
from grokjax.core import models
from grokjax.engine import runner


def _fresh_cache() -> str:
    """An empty folder for this test run: one per run, shared by its xdist workers (they start at once)."""
    run = os.environ.get("PYTEST_XDIST_TESTRUNUID")
    if run is None:
        return tempfile.mkdtemp(prefix="grokjax-test-cache-")
    folder = Path(tempfile.gettempdir()) / f"grokjax-test-cache-{run}"
    folder.mkdir(exist_ok=True)
    return str(folder)


# Tests (and the CLI processes they start) compute the step as a user's sweep does (the cost model, which
# measures nothing; tests/engine/test_tuning.py times the candidates), and share one fresh compilation cache.
os.environ["GROKJAX_STEP"] = "auto"
# One CPU device, as the tests were written for (grokjax.engine.tuning.split_cpu would give one per core);
# tests of several devices start processes of their own with XLA_FLAGS set.
if "xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=1").strip()
# GROKJAX_TEST_CACHE names a folder that keeps them from one test run to the next (the quick loop, run again and again);
# by default each run starts from an empty one, as CI does, which pytest-xdist's workers share (named for the run).
os.environ["GROKJAX_CACHE_DIR"] = os.environ.get("GROKJAX_TEST_CACHE") or _fresh_cache()
# This process keeps its compiled programs in that cache too, as the CLI processes do (the library calls
# that tests make here would not turn it on: that is grokjax.configure's, and the command line's).
grokjax.configure(cpu_devices=False)

# models.init as one compiled program, as the runner compiles a run's init: run eagerly, each of its operations
# compiles on its own, several times slower.
init_model = jax.jit(models.init, static_argnums=0, compiler_options=runner.INIT_OPTIONS)

TINY_SWEEP = """\
name = "tiny"
[task]
p = 11
[model]
width = 24
[train]
steps = 30
log_every = 10
[sweep]
data_fraction = [0.4, 0.8]
corruption_fraction = [0.0, 0.25]
weight_decay = [0.0, 1.0]
"""


@pytest.fixture
def sweep_file(tmp_path: Path):
    """Write a sweep file (the tiny one unless text is given) and return its path."""

    def make(text: str = TINY_SWEEP, name: str = "sweep.toml") -> Path:
        path = tmp_path / name
        path.write_text(textwrap.dedent(text))
        return path

    return make
