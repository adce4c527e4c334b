"""Killing a sweep at any moment and starting it again gives the uninterrupted results (SIGKILL, real processes)."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from grokjax.cli import main
from grokjax.store import checkpoints, results
from grokjax.store.checkpoints import STATE_DIR
from tests.conftest import TINY_SWEEP

pytestmark = pytest.mark.slow  # real processes, a browser or notebooks: pytest -m "not slow" skips them

ROOT = Path(__file__).resolve().parents[2]
SWEEP = TINY_SWEEP.replace("steps = 30", "steps = 200").replace("log_every = 10", "log_every = 20") + "seed = [0, 1, 2, 3]\n"
ARGS = ["--chunk-size", "8", "--no-progress", "--no-plots"]  # 32 runs: 4 chunks of 8
# A child that SIGKILLs itself inside its Nth atomic write, after the temporary file is written, before the rename.
KILL_IN_WRITE = """
import os, signal, sys
from grokjax.store import files
from grokjax.cli import main

real, calls, when = files.atomic_write, [0], int(os.environ["KILL_AT_WRITE"])
def dying(path, write):
    calls[0] += 1
    if calls[0] == when:
        write(path.with_name("." + path.name + ".partial"))
        os.kill(os.getpid(), signal.SIGKILL)
    real(path, write)
files.atomic_write = dying
sys.exit(main(sys.argv[1:]))
"""


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    folder = tmp_path_factory.mktemp("resume")
    (folder / "sweep.toml").write_text(SWEEP)
    assert main(["sweep", str(folder / "sweep.toml"), "--out", str(folder / "whole"), *ARGS]) == 0
    return folder


def child(code: str, args: list[str], **env: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", code, *args], cwd=ROOT, env={**os.environ, **env},
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def done_chunks(out: Path) -> int:
    return len(list((out / STATE_DIR).glob("chunk_*/done")))


def assert_same_tables(out: Path, whole: Path) -> None:
    a, b = results.load(out), results.load(whole)
    pd.testing.assert_frame_equal(a.runs, b.runs)
    pd.testing.assert_frame_equal(a.curves, b.curves)
    pd.testing.assert_frame_equal(a.neurons, b.neurons)
    assert sorted(p.name for p in (out / "params").iterdir()) == sorted(p.name for p in (whole / "params").iterdir())


CLI = "import sys; from grokjax.cli import main; sys.exit(main(sys.argv[1:]))"


@pytest.mark.parametrize("after_chunks", [0, 2])
def test_sigkill_between_chunks_then_resume(reference, after_chunks):
    """Killed before the first chunk is recorded, or after two of four: the resumed sweep equals the whole one."""
    out = reference / f"killed_after_{after_chunks}"
    proc = child(CLI, ["sweep", str(reference / "sweep.toml"), "--out", str(out), *ARGS])
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if (out / checkpoints.STATE_DIR / "plan.json").exists() and done_chunks(out) >= after_chunks:
            break
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    kept = done_chunks(out)
    assert kept >= after_chunks and kept < 4 and not (out / "runs.parquet").exists()
    assert main(["sweep", str(reference / "sweep.toml"), "--out", str(out), *ARGS]) == 0
    assert results.load(out).meta["chunks_resumed"] == kept
    assert_same_tables(out, reference / "whole")


@pytest.mark.parametrize("write", [2, 9])
def test_sigkill_during_a_write_then_resume(reference, write):
    """Killed inside an atomic write (a chunk's record, or its params): no partial file is read back."""
    out = reference / f"killed_in_write_{write}"
    proc = child(KILL_IN_WRITE, ["sweep", str(reference / "sweep.toml"), "--out", str(out), *ARGS],
                 KILL_AT_WRITE=str(write))
    proc.wait(timeout=120)
    assert proc.returncode == -signal.SIGKILL
    assert list(out.rglob(".*.partial"))  # the half-written file exists, under a name nothing reads
    assert main(["sweep", str(reference / "sweep.toml"), "--out", str(out), *ARGS]) == 0
    assert_same_tables(out, reference / "whole")


def test_a_finished_sweep_run_again_trains_nothing_and_restart_trains_all(reference, capsys):
    whole = reference / "whole"
    assert main(["sweep", str(reference / "sweep.toml"), "--out", str(whole), *ARGS]) == 0
    assert results.load(whole).meta["chunks_resumed"] == 4
    assert main(["sweep", str(reference / "sweep.toml"), "--out", str(whole), "--restart", *ARGS]) == 0
    assert results.load(whole).meta["chunks_resumed"] == 0


def wait_for(condition, proc: subprocess.Popen, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and proc.poll() is None and not condition():
        time.sleep(0.01)


def test_sigkill_inside_a_chunk_loses_at_most_one_segment(reference):
    """With a checkpoint every segment, a kill mid-chunk resumes from that chunk's last segment."""
    out = reference / "killed_mid_chunk"
    proc = child(CLI, ["sweep", str(reference / "sweep.toml"), "--out", str(out), *ARGS, "--checkpoint-every", "1"])
    # A checkpoint of a chunk not yet recorded (a recorded chunk's checkpoint is about to be deleted).
    checkpoints = lambda: [p for p in (out / STATE_DIR).glob("chunk_*/progress.npz")  # noqa: E731
                           if not (p.parent / "done").exists()]
    wait_for(lambda: checkpoints() and done_chunks(out) >= 1, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert checkpoints() or done_chunks(out) == 4  # (the sweep may have finished a chunk in between)
    assert main(["sweep", str(reference / "sweep.toml"), "--out", str(out), *ARGS]) == 0
    assert_same_tables(out, reference / "whole")
    assert not checkpoints()  # superseded by the chunks' records


def test_ctrl_c_stops_after_the_segment_and_says_how_to_resume(reference):
    out = reference / "interrupted"
    proc = child(CLI, ["sweep", str(reference / "sweep.toml"), "--out", str(out), *ARGS])
    wait_for(lambda: done_chunks(out) >= 1, proc)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "stopping after the current segment" in err and "run the same command again to resume" in err
    assert "Traceback" not in err
    # Stopped inside a chunk, its segment is checkpointed; the signal can also land between two chunks.
    between = "stopped after chunk" in err
    assert list((out / STATE_DIR).glob("chunk_*/progress.npz")) or between or done_chunks(out) == 4
    assert main(["sweep", str(reference / "sweep.toml"), "--out", str(out), *ARGS]) == 0
    assert_same_tables(out, reference / "whole")


def test_info_tells_chunks_done_and_left_of_an_unfinished_sweep(reference, capsys):
    out = reference / "whole"  # a finished sweep; make an unfinished copy of its state
    partial = reference / "unfinished"
    partial.mkdir()
    (partial / "sweep.toml").write_text((out / "sweep.toml").read_text())
    state = partial / checkpoints.STATE_DIR
    state.mkdir()
    (state / "plan.json").write_text((out / checkpoints.STATE_DIR / "plan.json").read_text())
    for name in ("chunk_00000", "chunk_00001"):
        (state / name).mkdir()
        (state / name / "done").write_text("done\n")
    assert main(["info", str(partial)]) == 0
    text = capsys.readouterr().out
    assert "unfinished" in text and "chunks: 2 done, 2 left" in text and f"grokjax sweep {partial / 'sweep.toml'}" in text
