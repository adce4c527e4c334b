"""One writer per results folder: a lock that the commands writing a folder hold while they write.

Two sweeps writing one folder at once race on its checkpoints and records and leave tables
that neither config made. So `grokjax sweep`, `refine`, `prune`, `plot` and `explore` (and
`sweep.run`, `refine.run` from Python) hold an exclusive OS file lock on FOLDER/.grokjax.lock
(filelock: flock on POSIX) while they write. The kernel drops it when its holder exits, however
it exits: a sweep killed with SIGKILL leaves no lock behind, so running it again takes the lock
over and resumes. Who holds it (process id, host, since when, command) is written beside it, in
FOLDER/.grokjax.holder.json while it is held, so a second command can name the holder in its
one line, or wait for it (`--wait`).

A process holds a folder once however often it asks (the CLI holds it, then `sweep.run` asks
again); the processes of one multi-host sweep count as one owner: process 0 holds the lock
for all of them (`sweep.run`).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import filelock

from grokjax.config.sweep_file import ConfigError

LOCK_FILE = ".grokjax.lock"
HOLDER_FILE = ".grokjax.holder.json"

_held: set[Path] = set()  # folders this process holds (the outermost hold takes and releases the lock)


class FolderInUse(ConfigError):
    """Another process writes the results folder: the command is refused (exit status 2)."""


def holder(folder: Path) -> str:
    """Who holds `folder`'s lock, in words, from its holder file ("another process" when it cannot be read).

    A holder writes the file just after taking the lock, so a missing one is waited for a moment.
    """
    for _ in range(20):
        try:
            info = json.loads((folder / HOLDER_FILE).read_text())
            return f"{info['command']} (process {info['pid']} on {info['host']}, since {info['since']})"
        except FileNotFoundError:
            time.sleep(0.05)
        except (OSError, ValueError, KeyError, TypeError):
            break
    return "another process"


@contextlib.contextmanager
def hold(folder: str | Path, command: str, wait: bool = False, create: bool = True) -> Iterator[Path]:
    """Hold `folder`'s lock while the block writes it; yields the folder.

    A folder held by another process is refused with `FolderInUse` naming the holder, or with
    wait=True, waited for (one line on stderr says so). A missing folder is made (create=True),
    or else left to the block, which has nothing to write into and says so in its own words.
    """
    folder = Path(folder)
    key = folder.resolve()
    if not folder.exists() and not create:
        yield folder
        return
    if key in _held:  # this process holds it already (the CLI, then sweep.run)
        yield folder
        return
    if folder.exists() and not folder.is_dir():
        raise ConfigError(f"{folder}: exists and is not a folder")
    folder.mkdir(parents=True, exist_ok=True)
    lock = filelock.FileLock(folder / LOCK_FILE, thread_local=False)
    try:
        lock.acquire(timeout=0)
    except filelock.Timeout:
        if not wait:
            raise FolderInUse(f"{folder} is in use by {holder(folder)}; wait for it to finish, or give --wait to "
                              "start when it does") from None
        print(f"grokjax: {folder} is in use by {holder(folder)}; waiting for it to finish", file=sys.stderr)
        lock.acquire()
    try:
        since = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        info = {"command": command, "pid": os.getpid(), "host": socket.gethostname(), "since": since}
        (folder / HOLDER_FILE).write_text(json.dumps(info) + "\n")
        _held.add(key)
        yield folder
    finally:
        _held.discard(key)
        (folder / HOLDER_FILE).unlink(missing_ok=True)
        lock.release()


def in_use(folder: str | Path) -> str | None:
    """Who holds `folder`'s lock now, in words, or None when nobody does (read only: nothing is written)."""
    folder = Path(folder)
    if not (folder / HOLDER_FILE).is_file() or not (folder / LOCK_FILE).is_file():
        return None
    probe = filelock.FileLock(folder / LOCK_FILE, thread_local=False)
    try:
        probe.acquire(timeout=0)
    except filelock.Timeout:
        return holder(folder)
    probe.release()
    return None
