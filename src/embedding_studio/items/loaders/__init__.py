"""Concrete loaders, one module per kind of source; pick one by name with :func:`create_loader`."""

from __future__ import annotations

from typing import Any

from embedding_studio.items.loader import DataLoader


def create_loader(name: str, **options: Any) -> DataLoader:
    """See :func:`embedding_studio.items.registry.create_loader`."""
    from embedding_studio.items.registry import create_loader as create

    return create(name, **options)


__all__ = ["create_loader"]
