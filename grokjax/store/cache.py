"""The cache folder: what grokjax computes once per machine and keeps (JAX's compiled programs, the
measured step choices, the charts' JavaScript bundle).

It is ~/.cache/grokjax (or $XDG_CACHE_HOME/grokjax); GROKJAX_CACHE_DIR moves it, and
GROKJAX_CACHE_DIR=off turns caching off.
"""

from __future__ import annotations

import os
from pathlib import Path

CACHE_ENV = "GROKJAX_CACHE_DIR"


def cache_dir() -> Path | None:
    """The cache folder, or None when GROKJAX_CACHE_DIR turns caching off."""
    value = os.environ.get(CACHE_ENV)
    if value is not None:
        return None if value.strip().lower() in ("", "off", "none", "0") else Path(value).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "grokjax"
