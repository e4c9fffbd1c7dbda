"""Upload JSONL files of growing size through the upload view and measure the peak memory.

Each size runs in a fresh process (its own SQLite database under a temporary VAR_DIR), so the
peak resident size (ru_maxrss) belongs to that upload alone. The file is written to disk first;
the process then posts it with Django's test client to `/w/<slug>/upload/`, which stores it,
validates every line and renders the report.

    .venv/bin/python bench/bench_upload_memory.py            # 10, 50 and 100 MB
    .venv/bin/python bench/bench_upload_memory.py 25 100     # sizes in MB
"""

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LINE_TEXT = "Summarise the following passage in one sentence. " * 18  # about 1 KB a request


def write_file(path: Path, megabytes: int) -> int:
    target = megabytes * 1_000_000
    written = count = 0
    with path.open("w", encoding="utf-8") as handle:
        while written < target:
            line = json.dumps({
                "custom_id": f"req-{count}",
                "params": {"model": "claude-haiku-4-5", "max_tokens": 256,
                           "messages": [{"role": "user", "content": f"{count}: {LINE_TEXT}"}]},
            }) + "\n"  # fmt: skip
            handle.write(line)
            written += len(line)
            count += 1
    return count


def child(path: str) -> None:
    import resource

    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.test import Client

    from batches.models import Submission
    from batches.workspaces import create_workspace
    from emulator.catalog import MODELS

    call_command("migrate", verbosity=0)
    user = get_user_model().objects.create_user("bench")
    workspace = create_workspace("Bench", "http://127.0.0.1:9/emulator", "sk-bench", members=[user])
    workspace.models_available = [{"id": m.id, "max_tokens": m.max_tokens} for m in MODELS]
    workspace.save()
    # A real HTTP upload: a WSGI server in a thread of this process, and httpx streaming the
    # file from disk in chunks (Django's test client would build the whole body in memory).
    import threading
    from wsgiref.simple_server import WSGIRequestHandler, make_server

    import httpx
    from django.core.wsgi import get_wsgi_application

    class QuietHandler(WSGIRequestHandler):
        def log_message(self, *args):
            pass

    server = make_server("127.0.0.1", 0, get_wsgi_application(), handler_class=QuietHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    client = Client()
    client.force_login(user)
    cookies = {name: morsel.value for name, morsel in client.cookies.items()}
    base = f"http://127.0.0.1:{server.server_port}"
    with httpx.Client(base_url=base, cookies=cookies, timeout=600) as http:
        page = http.get(f"/w/{workspace.slug}/upload/")
        token = http.cookies.get("csrftoken")
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        started = time.perf_counter()
        with open(path, "rb") as handle:
            response = http.post(
                f"/w/{workspace.slug}/upload/",
                data={"oversize": "split", "csrfmiddlewaretoken": token},
                files={"file": (Path(path).name, handle, "application/jsonl")},
            )
        elapsed = time.perf_counter() - started
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    server.shutdown()
    assert page.status_code == 200
    submission = Submission.objects.get()
    assert response.status_code == 302, response.status_code
    assert submission.state == Submission.State.READY, submission.problems[:3]
    print(json.dumps({
        "seconds": elapsed, "baseline_kb": before, "peak_kb": peak,
        "requests": submission.request_count, "problems": submission.problem_count,
        "status": response.status_code,
        "state": submission.state,
    }))  # fmt: skip


def main(sizes: list[int]) -> None:
    print(f"{'file':>8} {'requests':>9} {'seconds':>8} {'MB/s':>6} {'baseline':>9} "
          f"{'peak':>8} {'growth':>8}")  # fmt: skip
    rows = []
    for megabytes in sizes:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / f"upload-{megabytes}mb.jsonl"
            write_file(path, megabytes)
            env = {**os.environ, "VAR_DIR": tmp, "LOG_LEVEL": "WARNING",
                   "ALLOWED_HOSTS": "127.0.0.1", "DJANGO_SETTINGS_MODULE": "dashboard.settings",
                   "DATABASE_URL": f"sqlite:///{tmp}/bench.sqlite3"}  # fmt: skip
            env.pop("REDIS_URL", None)
            out = subprocess.run(
                [sys.executable, __file__, "--child", str(path)],
                cwd=ROOT, env=env, capture_output=True, text=True,
            )  # fmt: skip
            if out.returncode:
                sys.exit(out.stderr)
            result = json.loads(out.stdout.strip().splitlines()[-1])
        growth = (result["peak_kb"] - result["baseline_kb"]) / 1024
        rows.append((megabytes, growth))
        print(f"{megabytes:>6}MB {result['requests']:>9,} {result['seconds']:>8.1f} "
              f"{megabytes / result['seconds']:>6.1f} {result['baseline_kb'] / 1024:>7.0f}MB "
              f"{result['peak_kb'] / 1024:>6.0f}MB {growth:>6.1f}MB")  # fmt: skip
    if len(rows) > 1:
        (small, small_growth), (large, large_growth) = rows[0], rows[-1]
        print(f"\nThe file grew {large / small:.0f}x; peak memory above the baseline went from "
              f"{small_growth:.1f} MB to {large_growth:.1f} MB.")  # fmt: skip


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--child":
        sys.path.insert(0, str(ROOT))
        child(sys.argv[2])
    else:
        main([int(size) for size in sys.argv[1:]] or [10, 50, 100])
