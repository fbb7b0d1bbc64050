"""Device selection from configuration."""

from __future__ import annotations

import pytest
import torch

from embedding_studio.models import DeviceUnavailableError, cuda_memory_allocated, release_memory, resolve_device


def test_cpu_and_auto_resolve() -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU error")
def test_cuda_without_gpu_raises_a_clear_error() -> None:
    with pytest.raises(DeviceUnavailableError, match="'cuda' was requested but no CUDA GPU"):
        resolve_device("cuda")
    assert cuda_memory_allocated() == 0
    release_memory()  # must be harmless without CUDA


def test_unknown_setting_is_named() -> None:
    with pytest.raises(DeviceUnavailableError, match="'tpu'"):
        resolve_device("tpu")
