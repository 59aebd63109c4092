"""Files written whole or not at all: a temporary name per writer, then a rename.

The one atomic writer of skillmix (scans, mixtures, checkpoints): `atomic_file` opens a
temporary file beside the target and renames it over the target when the block ends
(`os.replace` is atomic on POSIX), so a crash at any moment leaves the previous file or
the new one, never a torn file; `write_json_atomic` is the common case.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import secrets
import socket
from collections.abc import Iterator
from typing import IO, Any

PathLike = str | os.PathLike[str]


def temp_path(path: PathLike) -> str:
    """A temporary name for writing `path`, unique to this writer (host, process, random).

    Two writers of one file can overlap: a worker that stalled past its lease and the
    attempt that replaced it run the same deterministic scan or build until the stale one
    notices.
    Each writes its own temporary file and renames it into place (same bytes either way);
    with a shared temporary name their writes would interleave into a corrupt file."""
    return f"{os.fspath(path)}.{socket.gethostname()}.{os.getpid()}.{secrets.token_hex(4)}.tmp"


@contextlib.contextmanager
def atomic_file(path: PathLike, mode: str = "wb", *, fsync: bool = False) -> Iterator[IO[Any]]:
    """An open temporary file that becomes `path` when the block ends without an error.

    mode: "wb" or "w" (UTF-8). fsync: flush the data to disk before the rename (for a file
    that must survive a power cut whole, such as a checkpoint). If the block raises, the
    temporary file is deleted and `path` keeps what it held."""
    tmp = temp_path(path)
    try:
        with open(tmp, mode, encoding=None if "b" in mode else "utf-8") as f:
            yield f
            if fsync:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def write_json_atomic(path: PathLike, data: Any, **options: Any) -> None:
    """`data` as one JSON document and a newline; `options` go to json.dumps."""
    with atomic_file(path, "w") as f:
        f.write(json.dumps(data, **options) + "\n")


def remove_temporaries(folder: PathLike, of: str | None = None) -> None:
    """Delete what writers killed before their rename left in `folder`: the temporary files
    of the file named `of`, or of every file. Once the file is written (or the build is
    done) they are of no use; a stale writer still going finds its file gone and stops."""
    pattern = "*.tmp" if of is None else f"{glob.escape(of)}.*.tmp"
    for stale in glob.glob(os.path.join(glob.escape(os.fspath(folder)), pattern)):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(stale)
