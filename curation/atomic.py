"""Files written whole or not at all: a temporary name per writer, then a rename."""

from __future__ import annotations

import contextlib
import glob
import os
import secrets
import socket


def temp_path(path: str) -> str:
    """A temporary name for writing `path`, unique to this writer (host, process, random).

    Two writers of one file can overlap: a worker that stalled past its lease and the
    attempt that replaced it run the same deterministic scan or build until the stale one
    notices.
    Each writes its own temporary file and renames it into place (same bytes either way);
    with a shared temporary name their writes would interleave into a corrupt file."""
    return f"{path}.{socket.gethostname()}.{os.getpid()}.{secrets.token_hex(4)}.tmp"


def remove_temporaries(folder: str) -> None:
    """Delete what writers killed before their rename left in `folder` (once the build is
    done they are of no use; a stale writer still going finds its file gone and stops)."""
    for stale in glob.glob(os.path.join(glob.escape(folder), "*.tmp")):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(stale)
