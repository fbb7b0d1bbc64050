"""Errors a user of the database layer can act on."""


class DatabaseUnavailableError(RuntimeError):
    """The configured database cannot be reached or the embedded one cannot be started."""
