"""Items kept as files under one root directory (the embedded default).

An item's id is its path relative to the root without the configured extension (``docs/a`` for
``docs/a.txt``), so ids stay stable whether the files sit flat or in folders.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from embedding_studio.items.loader import (
    ContentType,
    ItemMissingError,
    LoaderError,
    ObjectStoreLoader,
    RetryPolicy,
    TransientLoadError,
)


class LocalFileLoader(ObjectStoreLoader):
    """Files under ``root``; an id that would resolve outside the root is refused, not read."""

    def __init__(
        self,
        root: str | os.PathLike[str],
        content_type: ContentType = "text",
        extension: str = ".txt",
        max_workers: int = 8,
        fallback_encoding: str | None = None,
        retry: RetryPolicy | dict[str, Any] | None = None,
        source: str = "default",
    ) -> None:
        super().__init__(
            content_type=content_type,
            extension=extension,
            max_workers=max_workers,
            fallback_encoding=fallback_encoding,
            retry=retry,
            source=source,
        )
        self.root = Path(root).resolve()
        if not self.root.is_dir():
            raise LoaderError(f"item directory {self.root} does not exist or is not a directory")

    def describe(self) -> str:
        return str(self.root)

    def _path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if not path.is_relative_to(self.root):
            raise ItemMissingError(f"{key!r} points outside the item directory {self.root}")
        return path

    def fetch_bytes(self, key: str) -> bytes:
        path = self._path(key)
        try:
            return path.read_bytes()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError) as error:
            raise ItemMissingError(f"{path} does not exist") from error
        except InterruptedError as error:
            raise TransientLoadError(str(error)) from error

    def iter_keys(self) -> Iterator[str]:
        pattern = f"*{self.extension}" if self.extension else "*"
        for path in sorted(self.root.rglob(pattern)):
            if path.is_file():
                yield path.relative_to(self.root).as_posix()


class LocalTextLoader(LocalFileLoader, content_type="text", extension=".txt"):
    """Files decoded as text (UTF-8, else the fallback encoding)."""


class LocalJsonLoader(LocalFileLoader, content_type="json", extension=".json"):
    """Files parsed as JSON."""


class LocalImageLoader(LocalFileLoader, content_type="image", extension=".png"):
    """Files opened as PIL images."""
