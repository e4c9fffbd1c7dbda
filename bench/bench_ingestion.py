"""Time results ingestion against the official SDK merely iterating the same results stream.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/test .venv/bin/python bench/bench_ingestion.py

Writes a results file of 100,000 lines (BENCH_RESULTS; 90% succeeded with a short answer, 10%
errored), and serves it from a small local replay server that answers like the API: the batch's
retrieve (with its `results_url`) and the results stream. Then, interleaved, `runs` times each:

- the anchor: `anthropic.Anthropic(...).messages.batches.results(id)` iterated to the end (the SDK
  decodes every line into its typed objects and keeps nothing);
- the dashboard: `batches.ingestion.ingest_results` for the same batch: streamed, each line
  checked, stored as Result rows, the raw file kept gzipped, totals worked out; reset between runs.

Give a number of runs as its argument (default 5). Prints each run and the medians, their
ratio, and the peak memory of this process.
"""

import os
import resource
import statistics
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # imported where used, after django.setup()
    from batches.models import Batch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")

import django
import orjson

django.setup()

from django.db import connection  # noqa: E402
from django.utils import timezone  # noqa: E402

SIZE = int(os.environ.get("BENCH_RESULTS", "100000"))
BATCH_ID = "msgbatch_bench_ingestion"
KEY = "sk-ant-bench-ingestion-000000"


def results_file(path: Path) -> None:
    with path.open("wb") as out:
        for n in range(SIZE):
            custom_id = f"req-{n:06d}"
            if n % 10 == 0:
                result = {
                    "type": "errored",
                    "error": {
                        "type": "error",
                        "error": {
                            "type": "invalid_request_error",
                            "message": f"max_tokens: too big in {n}",
                        },
                    },
                }
            else:
                result = {
                    "type": "succeeded",
                    "message": {
                        "id": f"msg_{n:024d}",
                        "type": "message",
                        "role": "assistant",
                        "model": "claude-haiku-4-5",
                        "content": [
                            {
                                "type": "text",
                                "text": f"The answer to question {n} is {n * 7}"
                                " because that is what the arithmetic gives.",
                            }
                        ],
                        "stop_reason": "end_turn",
                        "stop_sequence": None,
                        "usage": {
                            "input_tokens": 24,
                            "output_tokens": 18,
                            "cache_creation_input_tokens": 0,
                            "cache_read_input_tokens": 0,
                        },
                    },
                }
            out.write(orjson.dumps({"custom_id": custom_id, "result": result}) + b"\n")


def replay_server(path: Path) -> ThreadingHTTPServer:
    body = path.read_bytes()
    port = 0  # set once the server is bound, below

    class Replay(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            base = f"http://127.0.0.1:{port}"
            if self.path.endswith("/results"):
                self.send_response(200)
                self.send_header("content-type", "application/binary")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                view = memoryview(body)
                for start in range(0, len(body), 1 << 16):
                    self.wfile.write(view[start : start + (1 << 16)])
                return
            now = "2026-12-01T00:00:00Z"
            batch = {
                "id": BATCH_ID, "type": "message_batch", "processing_status": "ended",
                "request_counts": {"processing": 0, "succeeded": SIZE - SIZE // 10,
                                   "errored": SIZE // 10, "canceled": 0, "expired": 0},
                "created_at": now, "expires_at": now, "ended_at": now,
                "cancel_initiated_at": None, "archived_at": None,
                "results_url": f"{base}/v1/messages/batches/{BATCH_ID}/results",
            }  # fmt: skip
            data = orjson.dumps(batch)
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Replay)
    port = server.server_port
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def sdk_iterate(base_url: str) -> float:
    import anthropic

    client = anthropic.Anthropic(api_key=KEY, base_url=base_url, max_retries=0)
    began = time.perf_counter()
    count = sum(1 for _ in client.messages.batches.results(BATCH_ID))
    took = time.perf_counter() - began
    client.close()
    assert count == SIZE, count
    return took


def ingest(batch: "Batch") -> float:
    from batches import ingestion
    from batches.models import Batch, Result

    Result.objects.filter(batch=batch).delete()
    stored = Batch.objects.get(pk=batch.pk)
    if stored.results_file:
        stored.results_file.delete(save=False)
    Batch.objects.filter(pk=batch.pk).update(
        results_ingested_at=None, results_ingested=0, results_file="", ingest_attempts=0,
        ingest_not_before=None, ingest_error="", ingest_checkpoint_lines=0,
        ingest_checkpoint_digest="", ingest_claimed_until=None, totals_at=None,
    )  # fmt: skip
    began = time.perf_counter()
    report = ingestion.ingest_results(batch.pk)
    took = time.perf_counter() - began
    assert report.stored == SIZE and not report.error, report
    return took


def main() -> None:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    from batches.models import Batch
    from batches.workspaces import create_workspace

    old = connection.creation.create_test_db(verbosity=0, keepdb=False)
    path = Path(tempfile.gettempdir()) / f"bench-results-{os.getpid()}.jsonl"
    server = None
    try:
        results_file(path)
        size_mb = path.stat().st_size / 1e6
        server = replay_server(path)
        base_url = f"http://127.0.0.1:{server.server_port}"
        workspace = create_workspace("Bench", base_url, KEY)
        batch = Batch.objects.create(
            workspace=workspace, api_id=BATCH_ID, processing_status="ended",
            succeeded=SIZE - SIZE // 10, errored=SIZE // 10, created_at=timezone.now(),
            ended_at=timezone.now(),
            results_url=f"{base_url}/v1/messages/batches/{BATCH_ID}/results",
        )  # fmt: skip
        print(f"{SIZE:,} results, {size_mb:.0f} MB, on {connection.vendor}")
        sdk_iterate(base_url)  # warm up both
        ingest(batch)
        anchor, ours = [], []
        for number in range(runs):
            anchor.append(sdk_iterate(base_url))
            ours.append(ingest(batch))
            print(f"run {number + 1}: SDK iterate {anchor[-1]:.2f} s, ingestion {ours[-1]:.2f} s")
        a, o = statistics.median(anchor), statistics.median(ours)
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"medians: SDK iterate {a:.2f} s, ingestion {o:.2f} s = {o / a:.2f}x "
              f"(peak RSS of this process {peak:.0f} MB)")  # fmt: skip
    finally:
        if server is not None:
            server.shutdown()
        path.unlink(missing_ok=True)
        connection.creation.destroy_test_db(old, verbosity=0)


if __name__ == "__main__":
    main()
