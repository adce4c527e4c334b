"""What a plan reads from this machine: its devices' platform, count and memory size.

Read once per sweep and handed to `plan` as data, so that planning is data in, data out and a
test or a benchmark can plan for a machine it is not on. The size, never what is free: a
plan that read the load would cut the same sweep into other chunks on a busy machine, and
other chunk sizes give other float32 roundings.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import jax


@dataclass(frozen=True)
class Machine:
    """The devices a sweep's chunks are split over."""

    platform: str  # "cpu", "gpu", "tpu"
    devices: int  # local devices
    memory: int  # bytes for arrays per device (on CPU: the host's, which the devices share)


def local() -> Machine:
    """This process's devices, as JAX sees them now."""
    devices = jax.local_devices()
    return Machine(devices[0].platform, len(devices), min(memory_bytes(d) for d in devices))


def memory_bytes(device: jax.Device) -> int:
    """A device's memory for arrays: its allocator's limit; on CPU, the host's memory (a container's limit where
    it is lower)."""
    stats = device.memory_stats() or {}
    if "bytes_limit" in stats:
        return int(stats["bytes_limit"])
    physical = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    try:  # a container's limit (cgroup v2), where it is lower
        return min(physical, int(Path("/sys/fs/cgroup/memory.max").read_text()))
    except (OSError, ValueError):  # no cgroup v2, or "max"
        return physical
