"""Choosing the torch device from configuration, and giving GPU memory back between trials."""

from __future__ import annotations

import gc
from typing import Literal

import torch

from embedding_studio.models.errors import DeviceUnavailableError

DeviceSetting = Literal["auto", "cpu", "cuda"]


def resolve_device(setting: str = "auto") -> torch.device:
    """Turn the `device` setting into a torch device.

    `cuda` is an explicit demand, so it fails loudly on a machine without a GPU instead of silently
    training for hours on the CPU; `auto` takes the GPU when there is one.
    """
    normalized = setting.strip().lower()
    if normalized == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if normalized == "cpu":
        return torch.device("cpu")
    if normalized == "cuda" or normalized.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise DeviceUnavailableError(
                f"device {setting!r} was requested but no CUDA GPU is available to torch on this machine "
                f"(torch {torch.__version__}, built with CUDA {torch.version.cuda or 'none'}); "
                "set EMBEDDING_STUDIO_DEVICE=cpu or auto"
            )
        device = torch.device(normalized)
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise DeviceUnavailableError(
                f"device {setting!r} was requested but only {torch.cuda.device_count()} CUDA device(s) exist"
            )
        return device
    raise DeviceUnavailableError(f"unknown device setting {setting!r}: expected one of 'auto', 'cpu', 'cuda'")


def limit_cpu_threads(threads: int) -> None:
    """Encode on ``threads`` CPU threads in this process (0 keeps torch's default of one per core).

    For the API: one query is a ~15-token forward pass that a second thread barely speeds up (MiniLM, 2-core
    machine: 18.5 ms on one thread, 17.2 ms on two), while idle OpenMP threads spin after each pass on the
    cores that PostgreSQL's search and the HTTP server need. Sequential searches over loopback, 100,000 items:
    p99 100 ms on two threads vs 59-66 ms on one with PostgreSQL reading the index through the kernel, and
    within noise of each other once the index sits in shared buffers (three runs each: 38.6-70.6 ms on one
    thread, 43.5-48.8 ms on two). Concurrent requests still use every core, each on its own thread.
    """
    if threads > 0 and torch.get_num_threads() != threads:
        torch.set_num_threads(threads)


def release_memory() -> None:
    """Free what Python and the CUDA caching allocator still hold after a trial, so the next one fits."""
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
        torch.cuda.empty_cache()


def cuda_memory_allocated() -> int:
    """Bytes currently allocated by tensors on the current CUDA device; 0 without CUDA."""
    if not torch.cuda.is_available():
        return 0
    return int(torch.cuda.memory_allocated())
