"""The facts of the machine a comparison ran on, for the generated block of docs/benchmarks.md.

:func:`machine_info` names the CPU, cores, memory, the disk holding the work directory and
the software versions; :func:`disk_fdatasync_mb_s` measures the disk's sequential write
bandwidth with ``dd ... conv=fdatasync``, the yardstick of logq's fsync=always target.
Both read only /proc, /sys and a temporary file, so they run anywhere (missing facts show
as ``?`` or ``None``).
"""

from __future__ import annotations

import datetime as _dt
import os
import platform
import shutil
import subprocess
import tempfile
import time
from importlib import metadata
from typing import Any

__all__ = ["machine_info", "disk_fdatasync_mb_s"]

_KIB_PER_GIB = 1024 * 1024


def _read(path: str) -> str:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return ""


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def _disk_of(path: str) -> str:
    """'<device> <fstype>' of the mount holding ``path``, and whether the kernel calls it rotational."""
    path = os.path.realpath(path)
    best, dev, fstype = "", "?", "?"
    for line in _read("/proc/mounts").splitlines():
        parts = line.split()
        if (
            len(parts) >= 3
            and (path == parts[1] or path.startswith(parts[1].rstrip("/") + "/"))
            and len(parts[1]) > len(best)
        ):
            best, dev, fstype = parts[1], parts[0], parts[2]
    kind = ""
    name = os.path.basename(dev)
    rot = (
        _read(f"/sys/block/{name}/queue/rotational").strip()
        or _read(f"/sys/class/block/{name}/../queue/rotational").strip()
    )
    if rot in ("0", "1"):
        kind = " (rotational)" if rot == "1" else " (non-rotational)"
    virt = " virtio" if name.startswith("vd") else ""
    return f"{dev} {fstype}{virt}{kind}"


def machine_info(path: str | None = None) -> dict[str, Any]:
    """What the figures were measured on: CPU, cores, memory, disk of ``path``, software."""
    cpu = ""
    for line in _read("/proc/cpuinfo").splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem_kib = 0
    for line in _read("/proc/meminfo").splitlines():
        if line.startswith("MemTotal:"):
            mem_kib = int(line.split()[1])
    try:
        load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        load = "?"
    return {
        "cpu": cpu or platform.processor() or platform.machine(),
        "cores": os.cpu_count() or 0,
        "memory_gib": round(mem_kib / _KIB_PER_GIB, 1),
        "disk": _disk_of(path or tempfile.gettempdir()),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "numpy": _version("numpy"),
        "crc32c": _version("crc32c"),
        "logq": _version("logq"),
        "load_average": load,
        "date": _dt.datetime.now().strftime("%Y-%m-%d %H:%M"),
    }


def disk_fdatasync_mb_s(work_dir: str | None, mib: int = 256) -> float | None:
    """The disk's sequential write bandwidth with fdatasync, measured by ``dd`` (MB/s)."""
    d = tempfile.mkdtemp(prefix="logq-dd-", dir=work_dir)
    try:
        t0 = time.perf_counter()
        done = subprocess.run(
            ["dd", "if=/dev/zero", f"of={os.path.join(d, 'dd.bin')}", "bs=1M", f"count={mib}", "conv=fdatasync"],
            capture_output=True,
            timeout=300,
        )
        secs = time.perf_counter() - t0
    except (OSError, subprocess.SubprocessError):
        return None
    finally:
        shutil.rmtree(d, ignore_errors=True)
    return mib * (1 << 20) / secs / 1e6 if done.returncode == 0 else None
