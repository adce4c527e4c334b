import os
import tempfile
import textwrap
from pathlib import Path

import pytest

# Tests (and the CLI processes they start) pin the step's formulation, so that no test pays for
# measuring the candidates (tests/test_tuning.py does that), and share one fresh compilation cache.
os.environ["GROKJAX_STEP"] = "gather"
os.environ["GROKJAX_CACHE_DIR"] = tempfile.mkdtemp(prefix="grokjax-test-cache-")

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
