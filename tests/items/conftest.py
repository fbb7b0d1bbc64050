"""Real object-store servers on 127.0.0.1 for the loader tests: moto's S3 server and the GCS emulator.

Both run in threads of the test process for the whole session; each test uses its own bucket.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from embedding_studio.cli.serve import free_port

S3_CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing", "region_name": "us-east-1"}


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture()
def s3_bucket(s3_endpoint: str) -> Iterator[tuple[str, object]]:
    """A fresh bucket and a boto3 client to fill it."""
    import boto3

    client = boto3.client("s3", endpoint_url=s3_endpoint, **S3_CREDENTIALS)
    bucket = f"items-{uuid.uuid4().hex[:12]}"
    client.create_bucket(Bucket=bucket)
    yield bucket, client
    client.close()


@pytest.fixture(scope="session")
def gcs_endpoint() -> Iterator[str]:
    from gcp_storage_emulator.server import create_server

    port = free_port()
    server = create_server("127.0.0.1", port, in_memory=True)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture()
def gcs_bucket(gcs_endpoint: str) -> Iterator[tuple[str, object]]:
    """A fresh bucket on the emulator and a client to fill it."""
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    client = storage.Client(
        project="test", credentials=AnonymousCredentials(), client_options={"api_endpoint": gcs_endpoint}
    )
    bucket = client.create_bucket(f"items-{uuid.uuid4().hex[:12]}")
    yield bucket.name, client
    client.close()
