"""The embedded broker's filesystem transport: a consumer polling the folder while a
producer writes never reads a message before it is whole (kombu's own transport can:
celery/kombu#1551, which lost jobs in the SDK tests)."""

from __future__ import annotations

import threading
from pathlib import Path
from queue import Empty

from kombu import Connection
from kombu.transport import resolve_transport

from service import broker_fs


def test_filesystem_means_the_whole_message_transport() -> None:
    assert resolve_transport("filesystem") is broker_fs.Transport


def test_a_consumer_racing_the_producer_reads_every_message_whole(tmp_path: Path) -> None:
    folder = tmp_path / "queue"
    folder.mkdir()
    options = {"data_folder_in": str(folder), "data_folder_out": str(folder)}
    n, got, errors = 3000, [], []
    big = "x" * 20_000  # a large payload widens the window in which a file is half written
    with Connection("filesystem://", transport_options=options) as conn:
        producer, consumer = conn.channel(), conn.channel()
        assert isinstance(producer, broker_fs.Channel)

        def consume() -> None:
            while len(got) < n and not errors:
                try:
                    got.append(consumer._get("q")["i"])
                except Empty:
                    continue
                except Exception as exc:  # a half-written message: JSONDecodeError
                    errors.append(exc)

        reader = threading.Thread(target=consume)
        reader.start()
        for i in range(n):
            producer._put("q", {"i": i, "body": big})
        reader.join(60)
    assert not errors, errors[:1]
    assert sorted(got) == list(range(n))
    assert not list(folder.glob("*.tmp"))
