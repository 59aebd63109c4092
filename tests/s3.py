"""An S3-compatible server for tests: moto's, in this process, on the loopback interface and
a free port, reached with s3fs through fsspec's configuration (as FSSPEC_S3_ENDPOINT_URL
would set it in a deployment). Stopped when the module's tests end."""

from __future__ import annotations

import socket
import urllib.request
from collections.abc import Iterator

import pytest

from tests.conftest import need_module

BUCKET = "skillmix-test"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def serve() -> Iterator[str]:
    """The endpoint URL of a fresh server holding the empty bucket BUCKET (a fixture's body:
    `yield from serve()`)."""
    server = need_module("moto.server", "pip install 'moto[s3]' flask flask-cors")
    s3fs = need_module("s3fs", "pip install s3fs")
    import fsspec

    port = free_port()
    moto = server.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    moto.start()
    endpoint = f"http://127.0.0.1:{port}"
    patch = pytest.MonkeyPatch()
    patch.setenv("AWS_ACCESS_KEY_ID", "testing")
    patch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    patch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    patch.setenv("NO_PROXY", "127.0.0.1")
    patch.setitem(fsspec.config.conf, "s3", {"endpoint_url": endpoint})
    s3fs.S3FileSystem.clear_instance_cache()
    # moto keeps its buckets per process, not per server: start from none
    urllib.request.urlopen(urllib.request.Request(f"{endpoint}/moto-api/reset", method="POST"))
    try:
        s3fs.S3FileSystem().mkdir(BUCKET)
        yield endpoint
    finally:
        s3fs.S3FileSystem.clear_instance_cache()
        patch.undo()
        moto.stop()
