"""The ``embedding-studio`` command's entry point: the CLI, or one line naming the extra to install.

The CLI needs the ``server`` extra (and most commands ``train``), which ``pip install embedding-studio`` (the client
only) does not bring. This module imports nothing outside the standard library and ``extras`` until the CLI is
loaded, so a missing extra, whether found when the CLI loads or when a command imports what it needs (``serve``
loading uvicorn, a worker importing torch), is reported as ``error: embedding-studio serve needs the [server]
extra ...: pip install 'embedding-studio[server]'`` rather than a traceback. Any other failure is left alone.
"""

from __future__ import annotations

import sys

from embedding_studio.extras import missing_extra


def main() -> None:
    """Run the CLI (``embedding_studio.cli.main.app``); exit 1 with one line when an extra it needs is missing."""
    command = " ".join(["embedding-studio", *[word for word in sys.argv[1:2] if not word.startswith("-")]])
    try:
        from embedding_studio.cli.main import app

        app()
    except ImportError as error:
        missing = missing_extra(error, for_what=command)
        if missing is None:
            raise
        print(f"error: {missing}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
