"""A minimal Kinesis stand-in that acknowledges every PutRecords at once (or after a fixed delay).

It runs in its own process so the client's CPU figures are the client's alone. It reads each
request fully, counts its records without parsing JSON, and answers success for each.

    python -m bench.stub --delay-ms 0 --delay-ms 15
starts one server per delay on a free loopback port, prints "<port> <delay_ms>" for each, and
serves until killed.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Final

# Every record of a PutRecords request carries exactly one of these keys.
_RECORD_MARKER: Final = b'"PartitionKey"'
_SHARD_ID: Final = "shardId-000000000000"


def put_records_response(record_count: int) -> bytes:
    """A successful PutRecords answer for `record_count` records."""
    one = json.dumps({"SequenceNumber": "4965" + "0" * 52, "ShardId": _SHARD_ID})
    records = ",".join([one] * record_count)
    return ('{"FailedRecordCount":0,"Records":[' + records + "]}").encode()


def _describe_stream_response(name: str) -> bytes:
    return json.dumps(
        {
            "StreamDescription": {
                "StreamName": name,
                "StreamARN": f"arn:aws:kinesis:us-east-1:123456789012:stream/{name}",
                "StreamStatus": "ACTIVE",
                "Shards": [],
                "HasMoreShards": False,
                "RetentionPeriodHours": 24,
                "StreamCreationTimestamp": 0,
                "EnhancedMonitoring": [],
                "EncryptionType": "NONE",
            }
        }
    ).encode()


def _handler(delay_s: float) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, like Kinesis
        # Without TCP_NODELAY, Nagle + delayed ACK add ~40 ms to small answers.
        disable_nagle_algorithm = True

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            body = self.rfile.read(length)
            target = self.headers.get("X-Amz-Target", "")
            if delay_s:
                time.sleep(delay_s)  # the simulated network round trip, not synchronisation
            if target.endswith(".PutRecords"):
                answer = put_records_response(body.count(_RECORD_MARKER))
            elif target.endswith(".DescribeStream"):
                answer = _describe_stream_response(json.loads(body).get("StreamName", "bench"))
            else:
                answer = b"{}"
            self.send_response(200)
            self.send_header("Content-Type", "application/x-amz-json-1.1")
            self.send_header("Content-Length", str(len(answer)))
            self.send_header("x-amzn-RequestId", "00000000-0000-0000-0000-000000000000")
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, format: str, *args: object) -> None:
            return  # silence: one line per request would cost the server more than the answer

    return Handler


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128


def serve(delays_ms: list[float]) -> None:
    servers = []
    for delay_ms in delays_ms:
        server = _Server(("127.0.0.1", 0), _handler(delay_ms / 1000))
        servers.append(server)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        print(f"{server.server_address[1]} {delay_ms:g}", flush=True)
    threading.Event().wait()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--delay-ms", type=float, action="append", default=[])
    args = parser.parse_args(argv)
    serve(args.delay_ms or [0.0])


if __name__ == "__main__":
    main(sys.argv[1:])
