"""Files written whole or not at all: a temporary name per writer, then a rename.

The one atomic writer of skillmix (scans, mixtures, checkpoints): `atomic_file` opens a
temporary file beside the target and renames it over the target when the block ends
(`os.replace` is atomic on POSIX), so a crash at any moment leaves the previous file or
the new one, never a torn file; `write_json_atomic` is the common case.

A full disk (ENOSPC, or a quota: EDQUOT) ends a write with `DiskFull`, which names the
file, the space it needed where that is known and the space free there; the temporary file
is deleted, so the target keeps what it held. `naming_full_disk` turns a full disk met by
another writer (a shard's streams) into the same error.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import glob
import json
import os
import secrets
import shutil
import socket
from collections.abc import Iterator
from typing import IO, Any

PathLike = str | os.PathLike[str]

FULL_DISK_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})
"""What a write into a full filesystem (or past a quota) fails with."""


def free_bytes(path: PathLike) -> int | None:
    """Bytes free to this process on the filesystem holding `path` (its nearest existing
    folder), or None if that cannot be told."""
    where = os.path.abspath(os.fspath(path))
    while not os.path.exists(where) and os.path.dirname(where) != where:
        where = os.path.dirname(where)
    try:
        return shutil.disk_usage(where).free
    except OSError:
        return None


def human_bytes(n: int) -> str:
    """E.g. "10.4 MB" (powers of 1000, as df -H)."""
    size = float(n)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if size < 1000 or unit == "TB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    raise AssertionError("unreachable")


class DiskFull(OSError):
    """A write ran out of disk space (ENOSPC) or quota (EDQUOT).

    path: the file being written (its final name). needed: the bytes it needs, where known;
    written: the bytes written when the disk filled, where not (the file needs more).
    free: the bytes free there after the failed write's temporary file was deleted
    (measured now, if not given). what: what the file is, for the message."""

    def __init__(
        self,
        path: PathLike,
        needed: int | None = None,
        written: int | None = None,
        free: int | None = None,
        what: str | None = None,
        code: int | None = errno.ENOSPC,
    ) -> None:
        self.path, self.needed, self.written, self.what = os.fspath(path), needed, written, what
        self.free = free_bytes(self.path) if free is None else free
        super().__init__(code or errno.ENOSPC, self.describe(), self.path)

    def describe(self) -> str:
        thing = f"{self.what} ({self.path})" if self.what else self.path
        if self.needed:
            need = f"it needs at least {human_bytes(self.needed)}"
        elif self.written:
            need = f"it needs more than the {human_bytes(self.written)} written when it filled"
        else:
            need = "it needs more space"
        free = "" if self.free is None else f", {human_bytes(self.free)} are free there"
        return (
            f"disk full writing {thing}: {need}{free}. Free space on that filesystem (or "
            "move the folder to a larger one) and run it again: what was complete is kept, "
            "no partial file is left under its final name, and the work resumes from there"
        )

    def __str__(self) -> str:
        return self.describe()

    def __reduce__(self) -> tuple[Any, ...]:
        # Crosses process pools (datatrove's, training's) whole, free space as measured.
        args = (self.path, self.needed, self.written, self.free, self.what, self.errno)
        return (type(self), args)


def is_disk_full(exc: BaseException) -> bool:
    return isinstance(exc, OSError) and exc.errno in FULL_DISK_ERRNOS


@contextlib.contextmanager
def naming_full_disk(
    path: PathLike, needed: int | None = None, what: str | None = None
) -> Iterator[None]:
    """Turn a full-disk OSError raised inside the block into `DiskFull` naming `path`."""
    try:
        yield
    except DiskFull:
        raise
    except OSError as exc:
        if not is_disk_full(exc):
            raise
        raise DiskFull(path, needed, what=what, code=exc.errno) from exc


def temp_path(path: PathLike) -> str:
    """A temporary name for writing `path`, unique to this writer (host, process, random).

    Two writers of one file can overlap: a worker that stalled past its lease and the
    attempt that replaced it run the same deterministic scan or build until the stale one
    notices.
    Each writes its own temporary file and renames it into place (same bytes either way);
    with a shared temporary name their writes would interleave into a corrupt file."""
    return f"{os.fspath(path)}.{socket.gethostname()}.{os.getpid()}.{secrets.token_hex(4)}.tmp"


@contextlib.contextmanager
def atomic_file(
    path: PathLike, mode: str = "wb", *, fsync: bool = False, size_hint: int | None = None
) -> Iterator[IO[Any]]:
    """An open temporary file that becomes `path` when the block ends without an error.

    mode: "wb" or "w" (UTF-8). fsync: flush the data to disk before the rename (for a file
    that must survive a power cut whole, such as a checkpoint). If the block raises, the
    temporary file is deleted and `path` keeps what it held. size_hint: the bytes the file
    will take, if known, for the message of a `DiskFull` (else: what was written when the
    disk filled, a lower bound)."""
    tmp = temp_path(path)
    written = 0
    try:
        with open(tmp, mode, encoding=None if "b" in mode else "utf-8") as f:
            try:
                yield f
                if fsync:
                    f.flush()
                    os.fsync(f.fileno())
            except OSError:
                with contextlib.suppress(OSError, ValueError):
                    written = f.tell()
                raise
        os.replace(tmp, path)
    except DiskFull:
        raise
    except OSError as exc:
        if not is_disk_full(exc):
            raise
        with contextlib.suppress(OSError):
            written = max(written, os.path.getsize(tmp))
        # The temporary file goes first: the free space reported is what a retry will find.
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise DiskFull(path, size_hint, written, code=exc.errno) from exc
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


@contextlib.contextmanager
def atomic_dir(
    path: PathLike, *, what: str | None = None, needed: int | None = None
) -> Iterator[str]:
    """A temporary folder that becomes the folder `path` when the block ends without an
    error (a set of files committed together, such as one export of a mixture).

    A folder left at `path` by an earlier writer is replaced whole: the caller records a
    finished folder elsewhere (a manifest) and only writes one that is not recorded. If the
    block raises, the temporary folder is deleted; a full disk becomes `DiskFull` naming
    `path` (and `needed`, the bytes the folder takes, if known)."""
    final = os.fspath(path)
    tmp = temp_path(final)
    os.makedirs(tmp)
    try:
        yield tmp
        if os.path.lexists(final):
            shutil.rmtree(final)
        os.replace(tmp, final)
    except DiskFull:
        raise
    except OSError as exc:
        if not is_disk_full(exc):
            raise
        # The temporary folder goes first: the free space reported is what a retry finds.
        shutil.rmtree(tmp, ignore_errors=True)
        raise DiskFull(final, needed, what=what, code=exc.errno) from exc
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def locked(path: PathLike) -> Iterator[None]:
    """Hold an exclusive lock on the file `path` (created if missing) for the block: for a
    read, then rewrite, of a file that other processes update the same way. An advisory
    `flock`; on a shared filesystem it holds across machines where the filesystem supports
    it (NFSv4, Lustre with flock)."""
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def write_json_atomic(path: PathLike, data: Any, **options: Any) -> None:
    """`data` as one JSON document and a newline; `options` go to json.dumps."""
    with atomic_file(path, "w") as f:
        f.write(json.dumps(data, **options) + "\n")


def save_figure(fig: Any, path: PathLike, **options: Any) -> None:
    """A matplotlib figure as a PNG at `path`, through `atomic_file`."""
    with atomic_file(path) as f:
        fig.savefig(f, format="png", **options)


def copy_atomic(source: PathLike, target: PathLike) -> None:
    """Copy `source` to `target` through `atomic_file` (a full disk: `DiskFull`, no partial
    `target`)."""
    with open(source, "rb") as src, atomic_file(target, size_hint=os.path.getsize(source)) as out:
        shutil.copyfileobj(src, out)


def remove_temporaries(folder: PathLike, of: str | None = None) -> None:
    """Delete what writers killed before their rename left in `folder`: the temporary files
    of the file named `of`, or of every file. Once the file is written (or the build is
    done) they are of no use; a stale writer still going finds its file gone and stops."""
    pattern = "*.tmp" if of is None else f"{glob.escape(of)}.*.tmp"
    for stale in glob.glob(os.path.join(glob.escape(os.fspath(folder)), pattern)):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(stale)
