"""Doctor's Kafka Connect line, against an HTTP server answering Kafka Connect's documented
`GET /connectors/{name}/status` replies over a real socket (the full worker runs in tests/e2e)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from consumer.jobs.doctor.kafka import connect_checks
from consumer.settings import Settings


class _Connect(BaseHTTPRequestHandler):
    replies: dict[str, tuple[int, Any]] = {}

    def do_GET(self) -> None:  # noqa: N802 - the http.server API
        status, body = self.replies.get(self.path, (404, {"error_code": 404, "message": "not found"}))
        raw = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def connect_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Connect)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def _status(connector: str, *tasks: str, trace: str = "") -> dict[str, Any]:
    return {
        "name": "zoho-cdc-postgres",
        "connector": {"state": connector, "worker_id": "127.0.0.1:8083"},
        "tasks": [
            {"id": i, "state": s, "worker_id": "127.0.0.1:8083", "trace": trace} for i, s in enumerate(tasks)
        ],
        "type": "source",
    }


async def test_the_connector_and_its_tasks_running_is_green_and_a_failed_task_names_its_trace(connect_url):
    settings = Settings(_env_file=None, kafka_connect_url=connect_url)  # type: ignore[call-arg]
    path = "/connectors/zoho-cdc-postgres/status"
    _Connect.replies = {path: (200, _status("RUNNING", "RUNNING"))}
    [running] = await connect_checks(settings)
    assert running.state == "ok" and "RUNNING, 1 task(s) RUNNING" in running.detail

    trace = (
        "org.apache.kafka.connect.errors.ConnectException: replication slot is active\n\tat io.debezium..."
    )
    _Connect.replies = {path: (200, _status("RUNNING", "FAILED", trace=trace))}
    [broken] = await connect_checks(settings)
    assert broken.state == "fail"
    assert "task 0 FAILED" in broken.detail and "replication slot is active" in broken.detail
    assert "at io.debezium" not in broken.detail  # one sentence, not the stack
    assert f"POST {connect_url}/connectors/zoho-cdc-postgres/restart?includeTasks=true" in broken.detail

    _Connect.replies = {}
    [missing] = await connect_checks(settings)
    assert missing.state == "fail" and "is not registered" in missing.detail


async def test_no_connect_url_means_no_connect_line_and_an_unreachable_worker_says_so():
    assert await connect_checks(Settings(_env_file=None)) == []  # type: ignore[call-arg]
    settings = Settings(_env_file=None, kafka_connect_url="http://127.0.0.1:9")  # type: ignore[call-arg]
    [down] = await connect_checks(settings)
    assert down.state == "fail" and "does not answer" in down.detail and "KAFKA_CONNECT_URL" in down.detail
