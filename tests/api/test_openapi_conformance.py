"""Schemathesis over every operation of the real app on the embedded database: what the OpenAPI document
promises (status codes, error bodies, constraints) is what the server answers.

Each operation gets a bounded number of generated requests (examples, coverage and fuzzing phases,
positive and negative data) on a fresh database; every response is checked against the document.
The search operation runs twice: before any model is deployed, and with a tiny blue model indexed.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import Case
from schemathesis.config import SchemathesisConfig
from schemathesis.python.asgi import shutdown_lifespans

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from embedding_studio.api.app import create_app  # noqa: E402
from tasks.worker_process import clear_queue, write_catalog  # noqa: E402

if TYPE_CHECKING:
    from embedding_studio.vectordb import VectorStore

# Rules the schema cannot express, each allowed on the one operation it concerns and nowhere else.
CONFIG = SchemathesisConfig.from_str(
    """
# Fine-tuning needs a batch that exists and is released, and a model id that names a model; reindex needs
# model ids that name models: facts of the database, refused with 422 naming them (documented on the operation).
[[operations]]
include-name = ["POST /api/v1/fine-tuning/tasks", "POST /api/v1/reindex/tasks"]
checks.positive_data_acceptance.expected-statuses = ["2xx", "409", "422"]

# An item gives `text` or `fields` (exactly one), and its fields must hold some text: cross-field rules
# JSON Schema can only approximate, refused with 422 naming the item.
[[operations]]
include-name = "POST /api/v1/items/upsert"
checks.positive_data_acceptance.expected-statuses = ["2xx", "409", "422"]

# An event must name an item its session showed: a fact of the stored session, refused with 422.
[[operations]]
include-name = "POST /api/v1/clickstream/sessions/{session_id}/events"
checks.positive_data_acceptance.expected-statuses = ["2xx", "404", "409", "422"]

# Before any model is deployed search answers the documented 503: the service is not there yet.
[[operations]]
include-name = "POST /api/v1/search"
checks.not_a_server_error.expected-statuses = ["2xx", "4xx", "503"]
"""
)

APP = create_app(run_migrations=False)
# The document is read from the app itself, so collecting the tests needs no database; requests go through
# the ASGI app, whose lifespan (the hot-path connection pool) schemathesis starts on the first one.
schema = schemathesis.openapi.from_dict(APP.openapi(), config=CONFIG)
schema.app = APP
# Only the search path, as a schema of its own: a filtered schema still collects every operation (skipping
# the others), and their fixtures would index a model 22 times.
search_schema = schemathesis.openapi.from_dict(
    {**APP.openapi(), "paths": {"/api/v1/search": APP.openapi()["paths"]["/api/v1/search"]}}, config=CONFIG
)
search_schema.app = APP

BOUNDED = settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)


@pytest.fixture(scope="module", autouse=True)
def _app_stops_with_the_module() -> Iterator[None]:
    """The lifespan schemathesis started closes its pool before the session's database goes away."""
    yield
    shutdown_lifespans()


@pytest.fixture()
def fresh_db(clean_db: str) -> Iterator[None]:
    clear_queue()
    yield
    clear_queue()  # tasks the fuzzer created leave no job for another test's worker


@pytest.fixture()
def blue_model(fresh_db: None, tmp_path: Path, vector_store: VectorStore) -> None:
    from embedding_studio.models.tiny import tiny_model_directory
    from embedding_studio.tasks import LoaderSpec, index_catalog

    catalog = write_catalog(tmp_path / "corpus.jsonl", 12)
    model = str(tiny_model_directory(tmp_path / "tiny", seed=0))
    index_catalog(  # the first is blue
        model, LoaderSpec(name="jsonl_catalog", options={"path": str(catalog)}), store=vector_store
    )


def test_the_document_declares_this_apis_error_bodies() -> None:
    """FastAPI's own ``HTTPValidationError`` is never sent, so it must not be advertised either."""
    document = APP.openapi()
    assert "HTTPValidationError" not in document["components"]["schemas"]
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            if operation.get("parameters") or operation.get("requestBody"):
                answer = operation["responses"].get("422", {})
                assert answer["content"]["application/json"]["schema"]["$ref"].endswith("/ValidationErrorOut"), (
                    method,
                    path,
                )


@schema.parametrize()
@BOUNDED
def test_every_answer_is_described_by_the_openapi_document(case: Case, fresh_db: None) -> None:
    case.call_and_validate()


@search_schema.parametrize()
@BOUNDED
def test_search_with_a_blue_model_answers_as_documented(case: Case, blue_model: None) -> None:
    response = case.call_and_validate()
    assert response.status_code != 503, response.text
