"""A local folder standing in for the S3 bucket of an on-failure destination."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any


class FolderDestination:
    """Writes each discarded batch as one JSON object, under a key laid out like Lambda's.

    Lambda's S3 keys look like `aws/lambda/<ESM UUID>/<partition>/YYYY/MM/DD/<timestamp>-<uuid>`;
    the same layout is kept below `root`.
    """

    def __init__(self, root: Path, *, mapping_uuid: str) -> None:
        self.root = root
        self._mapping_uuid = mapping_uuid
        self._lock = threading.Lock()

    def send(self, document: Mapping[str, Any], partition: str) -> None:
        now = time.gmtime()
        folder = (
            self.root
            / "aws"
            / "lambda"
            / self._mapping_uuid
            / partition
            / time.strftime("%Y/%m/%d", now)
        )
        name = f"{time.strftime('%Y-%m-%dT%H.%M.%S', now)}-{uuid.uuid4()}"
        with self._lock:
            folder.mkdir(parents=True, exist_ok=True)
            (folder / name).write_text(json.dumps(document, indent=1))

    def documents(self) -> Iterator[dict[str, Any]]:
        """Every document written so far (for reports and tests)."""
        if not self.root.exists():
            return
        for path in sorted(p for p in self.root.rglob("*") if p.is_file()):
            document: dict[str, Any] = json.loads(path.read_text())
            yield document
