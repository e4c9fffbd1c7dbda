"""Helpers and fixtures for tests that start real processes: free ports, the test database's
address for another process, and an S3 API server (moto's standalone server, in its own process)
for the object-storage path.
"""

import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from pytest_django import Settings

S3_KEY_ID = "test-key-id"
S3_SECRET = "test-secret-key"
S3_REGION = "us-east-1"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for_http(url: str, process: subprocess.Popen, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"The process serving {url} exited with {process.returncode}.")
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise RuntimeError(f"Nothing answered at {url} within {timeout:.0f} s.")


def shared_database_url() -> str:
    """The test database (SQLite file or PostgreSQL), for a server in another process."""
    from django.db import connection

    database = connection.settings_dict
    if database["ENGINE"] == "django.db.backends.sqlite3":
        return f"sqlite:///{database['NAME']}"
    user, password = database.get("USER") or "", database.get("PASSWORD") or ""
    credentials = f"{user}:{password}@" if password else (f"{user}@" if user else "")
    host, port = database.get("HOST") or "127.0.0.1", database.get("PORT") or 5432
    return f"postgres://{credentials}{host}:{port}/{database['NAME']}"


@pytest.fixture(scope="session")
def s3_server() -> Iterator[str]:
    """A real S3 API server on 127.0.0.1 (moto's standalone server), for the whole run."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_http(url, process)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)


@dataclass
class Bucket:
    endpoint: str
    name: str
    client: Any  # boto3's S3 client: boto3 ships no type information

    def keys(self) -> list[str]:
        listing = self.client.list_objects_v2(Bucket=self.name)
        return sorted(item["Key"] for item in listing.get("Contents", []))

    def environment(self) -> dict[str, str]:
        """The settings that point a dashboard process at this bucket."""
        return {
            "S3_BUCKET": self.name,
            "S3_ENDPOINT_URL": self.endpoint,
            "S3_REGION": S3_REGION,
            "S3_ACCESS_KEY_ID": S3_KEY_ID,
            "S3_SECRET_ACCESS_KEY": S3_SECRET,
        }


@pytest.fixture
def bucket(s3_server: str) -> Bucket:
    import boto3

    client = boto3.client(
        "s3",
        endpoint_url=s3_server,
        aws_access_key_id=S3_KEY_ID,
        aws_secret_access_key=S3_SECRET,
        region_name=S3_REGION,
    )
    name = f"batches-{uuid.uuid4().hex[:12]}"
    client.create_bucket(Bucket=name)
    return Bucket(s3_server, name, client)


@pytest.fixture
def object_storage(settings: Settings, bucket: Bucket) -> Bucket:
    """Every stored file of the test goes to an S3 bucket on the moto server."""
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {
            "BACKEND": "foundations.object_storage.ObjectStorage",
            "OPTIONS": {
                "bucket_name": bucket.name,
                "endpoint_url": bucket.endpoint,
                "region_name": S3_REGION,
                "access_key": S3_KEY_ID,
                "secret_key": S3_SECRET,
                "file_overwrite": False,
                "default_acl": None,
            },
        },
    }
    return bucket
