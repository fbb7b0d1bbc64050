"""Loaders by name, so configuration (settings, a fine-tuning method, a task) picks the item source.

Each name maps to a class imported on first use: a deployment reading from PostgreSQL does not
import boto3 or google-cloud-storage.
"""

from __future__ import annotations

import importlib
import inspect
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, field_validator

from embedding_studio.extras import missing_extra, require
from embedding_studio.items.loader import DataLoader, LoaderError

# Pure helpers the client uses too (it makes paths absolute before sending), so they live in the light schemas.
from embedding_studio.schemas.loader_paths import PATH_OPTIONS, path_options, with_absolute_paths  # noqa: F401

LOADERS: dict[str, str] = {
    "local_text": "embedding_studio.items.loaders.local:LocalTextLoader",
    "local_json": "embedding_studio.items.loaders.local:LocalJsonLoader",
    "local_image": "embedding_studio.items.loaders.local:LocalImageLoader",
    "jsonl_catalog": "embedding_studio.items.loaders.catalog:JsonlCatalogLoader",
    "s3_text": "embedding_studio.items.loaders.s3:AwsS3TextLoader",
    "s3_json": "embedding_studio.items.loaders.s3:AwsS3JsonLoader",
    "s3_image": "embedding_studio.items.loaders.s3:AwsS3ImageLoader",
    "gcs_text": "embedding_studio.items.loaders.gcs:GCPTextLoader",
    "gcs_json": "embedding_studio.items.loaders.gcs:GCPJsonLoader",
    "gcs_image": "embedding_studio.items.loaders.gcs:GCPImageLoader",
    "pgsql_text": "embedding_studio.items.loaders.pgsql:PgsqlTextLoader",
    "pgsql_multi_text": "embedding_studio.items.loaders.pgsql:PgsqlMultiTextColumnLoader",
    "pgsql_jsonb": "embedding_studio.items.loaders.pgsql:PgsqlJsonbLoader",
    "pgsql_image": "embedding_studio.items.loaders.pgsql:PgsqlImageLoader",
    "aggregated": "embedding_studio.items.loaders.aggregated:AggregatedLoader",
}

#: Loaders whose items are images: an image collection stores their keys, not their pixels, so anything that embeds
#: the catalog again (a fine-tuning's deployment reindex) must read one of these, never copy a collection. Each can
#: read an image by the key search returns (``load_keys``), which is how upserted images are embedded.
IMAGE_LOADERS: tuple[str, ...] = ("local_image", "s3_image", "gcs_image", "pgsql_image")


def reads_images(name: str) -> bool:
    """Whether the loader registered as ``name`` gives images."""
    return name in IMAGE_LOADERS


class UnknownLoaderError(LoaderError):
    """No loader is registered under the configured name."""


def loader_class(name: str) -> type[DataLoader]:
    try:
        target = LOADERS[name]
    except KeyError:
        raise UnknownLoaderError(f"unknown loader {name!r}; known loaders: {', '.join(sorted(LOADERS))}") from None
    module_name, class_name = target.split(":")
    # A loader whose extra is missing is refused naming the extra to install: up front for the cloud loaders (they
    # import their SDK on first read, which would fail later, in a worker), on import for any other.
    try:
        if module_name.rsplit(".", 1)[-1] in ("s3", "gcs"):
            require(module_name.rsplit(".", 1)[-1], for_what=f"loader {name!r}")
        module = importlib.import_module(module_name)
    except ImportError as error:
        missing = missing_extra(error, for_what=f"loader {name!r}")
        if missing is None:
            raise
        raise LoaderError(str(missing)) from error
    return getattr(module, class_name)


def _check_options(name: str, cls: type[DataLoader], options: dict[str, Any]) -> None:
    """Name the option that is wrong instead of letting a TypeError from deep in a constructor speak.

    A constructor that takes ``**options`` hands them to its base class, so the base's options are accepted and its
    required ones required (the pgsql loaders' ``connection_url``)."""
    accepted: set[str] = set()
    required: set[str] = set()
    for klass in cls.__mro__:
        if klass is object or "__init__" not in vars(klass):
            continue
        signature = inspect.signature(klass.__init__)
        parameters = list(signature.parameters.values())[1:]
        for parameter in parameters:
            if parameter.kind in (parameter.VAR_KEYWORD, parameter.VAR_POSITIONAL):
                continue
            accepted.add(parameter.name)
            if parameter.default is parameter.empty:
                required.add(parameter.name)
        if not any(parameter.kind is parameter.VAR_KEYWORD for parameter in parameters):
            break
    fixed = set(getattr(cls, "fixed_options", ()))  # e.g. the content type of s3_text is text
    accepted -= fixed
    required -= fixed
    unknown = sorted(set(options) - accepted)
    if unknown:
        raise LoaderError(
            f"loader {name!r} has no option {', '.join(map(repr, unknown))}; its options: {', '.join(sorted(accepted))}"
        )
    missing = sorted(required - set(options))
    if missing:
        raise LoaderError(f"loader {name!r} needs option {', '.join(map(repr, missing))}")


def create_loader(name: str, **options: Any) -> DataLoader:
    """The loader registered as ``name``, built with ``options`` (checked against its constructor)."""
    cls = loader_class(name)
    _check_options(name, cls, options)
    return cls(**options)


class LoaderConfig(BaseModel):
    """A loader as configuration states it: ``{"name": "s3_text", "options": {"bucket": "docs"}}``."""

    name: str = Field(description="A registered loader name, e.g. jsonl_catalog, local_text, s3_text, pgsql_text.")
    options: dict[str, Any] = Field(default_factory=dict, description="Keyword options of that loader.")

    @field_validator("name")
    @classmethod
    def _known_name(cls, name: str) -> str:
        if name not in LOADERS:
            raise ValueError(f"unknown loader {name!r}; known loaders: {', '.join(sorted(LOADERS))}")
        return name

    def create(self) -> DataLoader:
        return create_loader(self.name, **self.options)


def create_configured_loader() -> DataLoader:
    """The catalog loader the settings name (``EMBEDDING_STUDIO_CATALOG_LOADER`` and its options)."""
    from embedding_studio.config import get_settings

    settings = get_settings()
    return create_loader(settings.catalog_loader, **settings.catalog_loader_options)


class RelativePathError(LoaderError):
    """A loader option names a local path relative to nobody knows which directory."""


def check_loader(name: str, options: dict[str, Any]) -> None:
    """Refuse, with the reason, a loader configuration that cannot work, without reading any item: an unknown name
    (the known ones listed), an option it does not take or lacks, a relative path, a local path that does not
    exist. Building a loader reads nothing (files, buckets and tables are opened on first use), so this is cheap
    enough for a request."""
    relative = {key: value for key, value in path_options(name, options).items() if not Path(value).is_absolute()}
    if relative:
        shown = ", ".join(f"{key}={value!r}" for key, value in relative.items())
        raise RelativePathError(
            f"loader {name!r}: {shown} is a relative path; give an absolute one (the CLI and the Python client make "
            "paths absolute in the caller's directory; a worker would read it in its own)"
        )
    try:
        loader = create_loader(name, **options)
    except LoaderError:
        raise
    except (TypeError, ValueError) as error:
        raise LoaderError(f"loader {name!r}: {error}") from error
    loader.close()
