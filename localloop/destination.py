"""The on-failure destination: an S3 bucket (moto's, locally) or a folder standing in for one."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client


def on_failure_key(mapping_uuid: str, partition: str) -> str:
    """Where Lambda puts a discarded batch: `aws/lambda/<ESM UUID>/<partition>/YYYY/MM/DD/
    <timestamp>-<uuid>` (AWS: *Capturing discarded batches for Amazon MSK and self-managed Apache
    Kafka event sources*)."""
    now = time.gmtime()
    day = time.strftime("%Y/%m/%d", now)
    name = f"{time.strftime('%Y-%m-%dT%H.%M.%S', now)}-{uuid.uuid4()}"
    return f"aws/lambda/{mapping_uuid}/{partition}/{day}/{name}"


class FolderDestination:
    """Writes each discarded batch as one JSON file, at the key Lambda would use, below `root`."""

    def __init__(self, root: Path, *, mapping_uuid: str) -> None:
        self.root = root
        self._mapping_uuid = mapping_uuid
        self._lock = threading.Lock()

    def send(self, document: Mapping[str, Any], partition: str) -> None:
        path = self.root / on_failure_key(self._mapping_uuid, partition)
        with self._lock:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(document, indent=1))

    def documents(self) -> Iterator[dict[str, Any]]:
        """Every document written so far (for reports and tests)."""
        if not self.root.exists():
            return
        for path in sorted(p for p in self.root.rglob("*") if p.is_file()):
            document: dict[str, Any] = json.loads(path.read_text())
            yield document


class S3Destination:
    """Writes each discarded batch as one object into a bucket, at the key Lambda would use."""

    def __init__(self, client: S3Client, bucket: str, *, mapping_uuid: str) -> None:
        self.bucket = bucket
        self._client = client
        self._mapping_uuid = mapping_uuid

    def send(self, document: Mapping[str, Any], partition: str) -> None:
        key = on_failure_key(self._mapping_uuid, partition)
        self._client.put_object(Bucket=self.bucket, Key=key, Body=json.dumps(document).encode())

    def documents(self) -> Iterator[dict[str, Any]]:
        """Every document written so far, wherever it is now (a replay moves what it sent)."""
        pages = self._client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket)
        for page in pages:
            for item in page.get("Contents", []):
                if f"aws/lambda/{self._mapping_uuid}/" in item["Key"]:
                    body = self._client.get_object(Bucket=self.bucket, Key=item["Key"])["Body"]
                    document: dict[str, Any] = json.loads(body.read())
                    yield document
