"""One writer per results folder: a second command is refused naming the holder, or waits (--wait); a killed
holder's lock is taken over; the cache folder's step choices survive processes writing at once."""

import json
import multiprocessing
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from grokjax.cli import main
from grokjax.engine import tuning
from grokjax.store import checkpoints, lock, results
from tests.conftest import TINY_SWEEP

pytestmark = pytest.mark.slow  # real processes, a browser or notebooks: pytest -m "not slow" skips them

ROOT = Path(__file__).resolve().parents[2]
SWEEP = TINY_SWEEP.replace("steps = 30", "steps = 200").replace("log_every = 10", "log_every = 20") + "seed = [0, 1]\n"
ARGS = ["--chunk-size", "4", "--no-progress", "--no-plots"]  # 16 runs: 4 chunks of 4
CLI = "import sys; from grokjax.cli import main; sys.exit(main(sys.argv[1:]))"
# Holds a folder's lock from another process until the file named by its second argument appears.
HOLDER = """
import sys, time
from pathlib import Path
from grokjax.store import lock

with lock.hold(sys.argv[1], "grokjax sweep held.toml"):
    print("held", flush=True)
    while not Path(sys.argv[2]).exists():
        time.sleep(0.05)
"""


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    folder = tmp_path_factory.mktemp("lock")
    (folder / "sweep.toml").write_text(SWEEP)
    assert main(["sweep", str(folder / "sweep.toml"), "--out", str(folder / "alone"), *ARGS]) == 0
    return folder


def start(code: str, *args: str, **env: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", code, *args], cwd=ROOT, env={**os.environ, **env},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for(condition, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def assert_same_tables(out: Path, reference: Path) -> None:
    a, b = results.load(out), results.load(reference)
    for name in ("runs", "curves", "neurons"):
        pd.testing.assert_frame_equal(getattr(a, name), getattr(b, name))


def copy_tables(source: Path, folder: Path) -> None:
    """A finished sweep's tables and sweep.toml, for the commands to find."""
    for name in ("runs.parquet", "curves.parquet", "neurons.parquet", "sweep.toml"):
        (folder / name).write_bytes((source / name).read_bytes())


@pytest.fixture
def held(tmp_path):
    """A results folder held by another process (a stand-in for a running sweep); set `release` to let it go."""
    folder, release = tmp_path / "out", tmp_path / "release"
    proc = start(HOLDER, str(folder), str(release))
    assert proc.stdout.readline().strip() == "held", proc.stderr.read()
    yield folder, release, proc
    release.touch()
    proc.wait(timeout=30)


def test_a_second_sweep_into_a_folder_in_use_is_refused_naming_the_holder(reference, held, capsys):
    folder, _, proc = held
    assert main(["sweep", str(reference / "sweep.toml"), "--out", str(folder), *ARGS]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert f"{folder} is in use by grokjax sweep held.toml (process {proc.pid} on " in err and "--wait" in err
    assert sorted(p.name for p in folder.iterdir()) == [lock.HOLDER_FILE, lock.LOCK_FILE]  # nothing written


@pytest.mark.parametrize("command", [["plot"], ["explore"], ["prune", "--order", "low"], ["refine", "--budget", "2"]])
def test_every_command_that_writes_a_folder_is_refused_while_it_is_in_use(reference, held, capsys, command):
    folder, _, proc = held
    copy_tables(reference / "alone", folder)
    before = {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}
    assert main([command[0], str(folder), *command[1:]]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"in use by grokjax sweep held.toml (process {proc.pid}" in err
    assert {p.name: p.stat().st_mtime_ns for p in folder.iterdir()} == before


def test_wait_starts_when_the_holder_finishes(reference, held, capsys):
    folder, release, proc = held
    copy_tables(reference / "alone", folder)
    releaser = start(f"import time, pathlib; time.sleep(1.5); pathlib.Path({str(release)!r}).touch()")
    assert main(["explore", str(folder), "--wait"]) == 0
    assert proc.wait(timeout=30) == 0 and releaser.wait(timeout=30) == 0  # it got the lock only once released
    assert "waiting for it to finish" in capsys.readouterr().err
    assert (folder / "explore.html").is_file() and not (folder / lock.HOLDER_FILE).exists()


def test_sweeps_launched_at_once_into_one_folder_give_the_sweep_alone(reference, tmp_path):
    """The double launch: whichever holds the folder first trains; another is refused naming it (or, started after
    it finished, finds nothing to train), one with --wait trains after it; the tables are the sweep's alone."""
    out = tmp_path / "out"
    args = ["sweep", str(reference / "sweep.toml"), "--out", str(out), *ARGS]
    procs = [start(CLI, *args), start(CLI, *args), start(CLI, *args, "--wait")]
    outcomes = [(proc.wait(timeout=300), proc.stderr.read()) for proc in procs]
    assert outcomes[2][0] == 0, outcomes[2][1]
    for code, err in outcomes[:2]:
        assert code == 0 or (code == 2 and "is in use by grokjax sweep" in err and "Traceback" not in err), err
    assert_same_tables(out, reference / "alone")


def test_a_killed_sweeps_lock_is_taken_over_and_the_sweep_resumes(reference, tmp_path):
    out = tmp_path / "out"
    proc = start(CLI, "sweep", str(reference / "sweep.toml"), "--out", str(out), *ARGS)
    wait_for(lambda: len(list((out / checkpoints.STATE_DIR).glob("chunk_*/done"))) >= 1 or proc.poll() is not None)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert json.loads((out / lock.HOLDER_FILE).read_text())["pid"] == proc.pid  # the dead holder's record stays
    assert main(["sweep", str(reference / "sweep.toml"), "--out", str(out), *ARGS]) == 0
    assert_same_tables(out, reference / "alone")
    assert not (out / lock.HOLDER_FILE).exists()


def _write_choices(path: str, worker: int) -> None:
    for i in range(20):
        tuning.write_choice(Path(path), f"worker {worker} shape {i}", {"formulation": "gather", "seconds": {}})


def test_step_choices_written_by_processes_at_once_are_all_kept(tmp_path):
    path = tmp_path / "cache" / tuning.CHOICES_FILE
    workers = [multiprocessing.get_context("spawn").Process(target=_write_choices, args=(str(path), w)) for w in range(4)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=120)
        assert w.exitcode == 0
    assert set(json.loads(path.read_text())) == {f"worker {w} shape {i}" for w in range(4) for i in range(20)}


def test_info_names_the_holder_of_a_folder_in_use_and_writes_nothing(reference, held, capsys):
    folder, release, proc = held
    copy_tables(reference / "alone", folder)
    before = {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}
    assert main(["info", str(folder)]) == 0
    assert f"in use by grokjax sweep held.toml (process {proc.pid} on " in capsys.readouterr().out
    assert {p.name: p.stat().st_mtime_ns for p in folder.iterdir()} == before
    release.touch()
    proc.wait(timeout=30)
    assert main(["info", str(folder)]) == 0
    out = capsys.readouterr().out
    assert "in use" not in out and "step (picked by the cost model)" in out
