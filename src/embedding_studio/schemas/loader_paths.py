"""Which loader options name local paths, and making them absolute where the caller stands.

A task request travels to a worker that may run in another directory (or machine), so the CLI and the Python
client resolve relative paths before sending and the server refuses relative ones (``items.registry.check_loader``).
Pure Python here, so the client has it without the server installed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["PATH_OPTIONS", "path_options", "with_absolute_paths"]

#: Loader options that name a local file or directory. A relative one would be read in the working directory
#: of whichever process builds the loader (a worker, maybe elsewhere), not the caller's: callers make them
#: absolute before sending (:func:`with_absolute_paths`), and a task request with a relative one is refused.
PATH_OPTIONS = frozenset({"path", "root", "credentials_path"})


def path_options(name: str, options: dict[str, Any], prefix: str = "") -> dict[str, str]:
    """The local path options of a loader configuration, by dotted key (``loaders.docs.options.root`` inside an
    ``aggregated`` loader)."""
    found = {
        f"{prefix}{key}": value for key, value in options.items() if key in PATH_OPTIONS and isinstance(value, str)
    }
    if name == "aggregated" and isinstance(options.get("loaders"), dict):
        for source, config in options["loaders"].items():
            if isinstance(config, dict) and isinstance(config.get("options"), dict):
                found.update(
                    path_options(str(config.get("name")), config["options"], f"{prefix}loaders.{source}.options.")
                )
    return found


def with_absolute_paths(name: str, options: dict[str, Any], base: str | Path | None = None) -> dict[str, Any]:
    """``options`` with every relative local path resolved against ``base`` (default: this process's working
    directory), so the caller's ``corpus.jsonl`` is the one read, wherever the loader is built."""
    base_path = Path(base) if base is not None else Path.cwd()
    resolved: dict[str, Any] = {}
    for key, value in options.items():
        if key in PATH_OPTIONS and isinstance(value, str) and value and not Path(value).expanduser().is_absolute():
            value = str((base_path / Path(value).expanduser()).resolve())
        elif key in PATH_OPTIONS and isinstance(value, str) and value.startswith("~"):
            value = str(Path(value).expanduser())
        resolved[key] = value
    if name == "aggregated" and isinstance(resolved.get("loaders"), dict):
        resolved["loaders"] = {
            source: {**config, "options": with_absolute_paths(str(config.get("name")), config["options"], base_path)}
            if isinstance(config, dict) and isinstance(config.get("options"), dict)
            else config
            for source, config in resolved["loaders"].items()
        }
    return resolved
