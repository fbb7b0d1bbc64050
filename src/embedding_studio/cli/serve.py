"""``embedding-studio serve``: the HTTP API on uvicorn, with migrations applied first."""

from __future__ import annotations

import errno
import socket

import typer
from fastapi import FastAPI

from embedding_studio.cli.errors import UserFacingError, friendly_errors


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on now, for a server started next: the one helper the demo, the benchmarks and the
    test servers share (the OS picks it, so two callers never race for a fixed number)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def ensure_port_is_free(host: str, port: int) -> None:
    """Fail with one clear line before uvicorn would, deep in its startup, with a traceback."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
        try:
            probe.bind((host, port))
        except OSError as error:
            if error.errno == errno.EADDRINUSE:
                raise UserFacingError(
                    f"port {port} on {host} is already in use: stop the other server or pass --port"
                ) from error
            raise UserFacingError(f"cannot listen on {host}:{port}: {error.strerror}") from error


def app_without_migrations() -> FastAPI:
    """The app for each uvicorn worker process; ``serve`` has applied the migrations once already."""
    from embedding_studio.api.app import create_app

    return create_app(run_migrations=False)


def serve(
    host: str | None = typer.Option(None, help="Address to bind (default: EMBEDDING_STUDIO_API_HOST or 127.0.0.1)."),
    port: int | None = typer.Option(None, help="Port to listen on (default: EMBEDDING_STUDIO_API_PORT or 5000)."),
    log_level: str = typer.Option("info", help="uvicorn log level: critical, error, warning, info, debug."),
    workers: int = typer.Option(1, min=1, help="Server processes; more use more cores (each has its own pool)."),
) -> None:
    """Serve the HTTP API (OpenAPI docs at /docs).

    Example: embedding-studio serve --port 5000
    """
    import uvicorn

    from embedding_studio.config import get_settings
    from embedding_studio.db import upgrade_database

    settings = get_settings()
    host = host or settings.api_host
    port = port if port is not None else settings.api_port
    with friendly_errors():
        ensure_port_is_free(host, port)
        upgrade_database()
    if workers == 1:
        uvicorn.run(app_without_migrations(), host=host, port=port, log_level=log_level)
    else:
        uvicorn.run(
            f"{__name__}:app_without_migrations",
            factory=True,
            workers=workers,
            host=host,
            port=port,
            log_level=log_level,
        )
