"""Errors of the models package; each message names what was asked for and what was expected."""

from __future__ import annotations


class ModelError(Exception):
    """Base of every error the models package raises on purpose."""


class ModelNotFoundError(ModelError):
    """A model name or path that resolves to nothing we can load without reaching a hub."""


class DeviceUnavailableError(ModelError):
    """A device was asked for by configuration but this machine does not have it."""
