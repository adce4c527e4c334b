"""What every result carries: the exact config, the versions, the device, the times, how it was computed."""

from __future__ import annotations

import os
import platform
import socket
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

import jax

from grokjax.version import __version__


def device_info() -> dict[str, Any]:
    devices = jax.local_devices()
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {
        "platform": devices[0].platform,
        "device_kind": devices[0].device_kind,
        "device_count": len(devices),
        "host": socket.gethostname(),
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
    }


def versions() -> dict[str, str]:
    """The packages' versions; grokjax's from its source, which also runs uninstalled (PYTHONPATH, as on a borrowed GPU)."""
    names = ("jax", "jaxlib", "optax", "numpy", "pandas", "pyarrow")
    out = {"python": platform.python_version(), "grokjax": __version__, "grokjax_revision": revision()}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def revision() -> str:
    """The git commit of grokjax's source when it runs from a checkout, with "+changes" when its package files
    differ from that commit; "not a git checkout" otherwise (an installed wheel)."""
    root = Path(__file__).resolve().parents[2]
    if not (root / ".git").exists():
        return "not a git checkout"
    try:
        def git(*args: str) -> str:
            return subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=10,
                                  check=True).stdout.strip()

        commit = git("rev-parse", "HEAD")
        changed = git("status", "--porcelain", "--untracked-files=no", "--", "grokjax")
    except (OSError, subprocess.SubprocessError):
        return "not a git checkout"
    return commit + ("+changes" if changed else "")
