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
