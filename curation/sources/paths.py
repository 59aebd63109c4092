"""Where a corpus may be read from: URI checks done before any file is opened.

A corpus URI comes from an API user, so it is untrusted: it must resolve inside
one of the operator's allowed roots. Local paths are resolved with realpath
(symlinks followed) and every matched file is checked again, so a symlink
inside an allowed folder cannot lead out of it. Remote fsspec URLs have no
realpath; they are normalised and must sit under a root of the same protocol.
"""

from __future__ import annotations

import glob
import ipaddress
import os
import posixpath
from urllib.parse import unquote, urlsplit

GLOB_CHARS = frozenset("*?[")


class SourceRejected(ValueError):
    """A corpus source that cannot be used; the message says why and what to do."""


def _has_glob(path: str) -> bool:
    return any(c in GLOB_CHARS for c in path)


def _real_roots(allowed_roots: list[str]) -> list[str]:
    return [os.path.realpath(r) for r in allowed_roots if "://" not in r]


def _remote_roots(allowed_roots: list[str]) -> list[str]:
    return [r.rstrip("/") for r in allowed_roots if "://" in r]


def is_inside(path: str, root: str) -> bool:
    """True when `path` is `root` or below it (both already absolute and normalised)."""
    return path == root or path.startswith(root.rstrip("/") + "/")


def ensure_local_inside(path: str, allowed_roots: list[str], shown: str | None = None) -> str:
    """realpath of `path`, or SourceRejected when it leaves every allowed root."""
    real = os.path.realpath(path)
    roots = _real_roots(allowed_roots)
    if not any(is_inside(real, root) for root in roots):
        where = f"{shown or path} resolves to {real}, which" if real != path else f"{path}"
        raise SourceRejected(
            f"{where} is outside the allowed roots ({', '.join(roots) or 'none configured'}); "
            "move or copy the corpus under one of them, or ask an operator to add a root "
            "(SKILLMIX_ALLOWED_ROOTS)"
        )
    return real


def _local_path_from_uri(uri: str) -> str:
    if "\x00" in uri:
        raise SourceRejected("the corpus uri contains a NUL byte")
    if not uri.startswith("file:"):
        return uri
    parts = urlsplit(uri)
    if parts.netloc not in ("", "localhost"):
        raise SourceRejected(
            f"{uri} names the host {parts.netloc!r}; file:// URLs must be local "
            "(file:///absolute/path)"
        )
    if parts.query or parts.fragment:
        raise SourceRejected(f"{uri} has a query or fragment; give a plain file:///absolute/path")
    path = unquote(parts.path)
    if "\x00" in path:
        raise SourceRejected("the corpus uri contains an encoded NUL byte")
    return path


def _resolve_local(uri: str, allowed_roots: list[str]) -> list[str]:
    path = _local_path_from_uri(uri)
    if not os.path.isabs(path):
        raise SourceRejected(
            f"{uri!r} is a relative path; give an absolute path under one of the allowed roots"
        )
    path = os.path.normpath(path)
    if not _has_glob(path):
        real = ensure_local_inside(path, allowed_roots, shown=uri)
        if not os.path.exists(real):
            raise SourceRejected(f"{uri} does not exist")
        return [real]
    # The folder above the first glob character must already be allowed, so a
    # pattern such as /*/secrets/*.jsonl is refused without being expanded.
    base = path[: min(path.index(c) for c in GLOB_CHARS if c in path)]
    ensure_local_inside(os.path.dirname(base) or "/", allowed_roots, shown=uri)
    matches = sorted(glob.glob(path, recursive=True))
    if not matches:
        raise SourceRejected(f"no files match {uri}")
    return sorted(ensure_local_inside(m, allowed_roots, shown=m) for m in matches)


def _check_remote_host(uri: str, host: str) -> None:
    hostname = host.rsplit("@", 1)[-1].split(":", 1)[0].strip("[]")
    try:
        ip = ipaddress.ip_address(hostname)
    except ValueError:
        return
    if ip.is_link_local or ip.is_loopback or ip.is_private or ip.is_reserved:
        raise SourceRejected(f"{uri} points at an internal address ({ip}); that is never allowed")


def _remote_inside(uri: str, protocol: str, allowed_roots: list[str]) -> str:
    parts = urlsplit(uri)
    _check_remote_host(uri, parts.netloc)
    rest = unquote(uri.split("://", 1)[1])
    if any(seg in ("..", ".") for seg in rest.split("/")):
        raise SourceRejected(f"{uri} contains '.' or '..' segments; give the full path")
    normalised = f"{protocol}://{posixpath.normpath(rest)}"
    roots = [r for r in _remote_roots(allowed_roots) if r.startswith(f"{protocol}://")]
    if not any(is_inside(normalised, root) for root in roots):
        raise SourceRejected(
            f"{uri} is outside the allowed roots for {protocol}:// "
            f"({', '.join(roots) or 'none configured'}); ask an operator to add a root"
        )
    return normalised


def ensure_remote_inside(
    uri: str, allowed_roots: list[str], allowed_protocols: set[str] | None = None
) -> str:
    """`uri` (an fsspec URL such as s3://bucket/prefix) normalised, or SourceRejected when its
    protocol is not allowed or it lies outside every allowed root of that protocol. Nothing
    is opened."""
    if "\x00" in uri or "://" not in uri:
        raise SourceRejected(f"{uri!r} is not a URL (protocol://bucket/path)")
    protocol = uri.split("://", 1)[0].lower()
    if protocol == "file" or protocol not in set(allowed_protocols or ()):
        raise SourceRejected(
            f"protocol {protocol!r} is not allowed here (allowed: "
            f"{', '.join(sorted(set(allowed_protocols or ()) - {'file'})) or 'none'}); "
            "ask an operator to add it to SKILLMIX_ALLOWED_PROTOCOLS"
        )
    return _remote_inside(uri, protocol, allowed_roots)


def _resolve_remote(uri: str, protocol: str, allowed_roots: list[str]) -> list[str]:
    import fsspec

    normalised = _remote_inside(uri, protocol, allowed_roots)
    fs, path = fsspec.core.url_to_fs(normalised)
    found = fs.glob(path) if _has_glob(path) else ([path] if fs.exists(path) else [])
    if not found:
        raise SourceRejected(f"no files match {uri}")
    return sorted(fs.unstrip_protocol(p) for p in found)


def resolve_source(
    uri: str, allowed_roots: list[str], allowed_protocols: set[str] | None = None
) -> list[str]:
    """Paths (files or folders) that `uri` names, each checked to lie in an allowed root.

    Accepts an absolute local path or glob (`/data/web/*.jsonl.gz`, `**` for
    recursion), a `file://` URL, or a URL of a protocol in `allowed_protocols`
    (default: only `file`). Nothing is opened; only names are listed. Matches
    are sorted, which is the corpus order a scan reports in.
    """
    protocols = {"file"} if allowed_protocols is None else set(allowed_protocols)
    protocol = uri.split("://", 1)[0].lower() if "://" in uri else "file"
    if protocol not in protocols:
        raise SourceRejected(
            f"protocol {protocol!r} is not allowed for corpora (allowed: "
            f"{', '.join(sorted(protocols))}); copy the data under an allowed root"
        )
    if protocol == "file":
        return _resolve_local(uri, allowed_roots)
    return _resolve_remote(uri, protocol, allowed_roots)
