"""Atomic file writing: a reader, a rerun or a crash never sees a half-written file."""
from __future__ import annotations

import contextlib
import os
import shutil
import threading
import uuid
from pathlib import Path

__all__ = ["atomic_path", "atomic_folder", "write_bytes_atomic", "write_text_atomic"]


@contextlib.contextmanager
def atomic_path(path, suffix=".tmp"):
    """Yield a temporary path beside ``path``; when the block succeeds it replaces ``path``.

    The temporary file is in the same folder (so ``os.replace`` is atomic) and ends with
    ``suffix``, for writers that choose the format by extension (``.png``, ``.weights.h5``).
    On an exception it is removed and the old ``path``, if any, is left as it was. The parent
    folder is created if needed.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{threading.get_ident()}{suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_bytes_atomic(path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically; returns the path."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_text_atomic(path, text: str) -> Path:
    """Write ``text`` (UTF-8, newlines as given) to ``path`` atomically; returns the path."""
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8", newline="") as handle:
            handle.write(text)
    return Path(path)


@contextlib.contextmanager
def atomic_folder(path, overwrite=False):
    """Yield a new empty folder beside ``path``; when the block succeeds it replaces ``path``.

    ``overwrite=False`` refuses an existing ``path`` (FileExistsError) before anything is
    written. An old ``path`` is moved aside, the new folder renamed into place, then the old one
    removed, so ``path`` is never half written; on an exception the temporary folder is removed
    and the old ``path`` left as it was.
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; choose another folder or pass overwrite=True")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        tmp.mkdir()
        yield tmp
        if path.exists():
            old = path.with_name(f".{path.name}.{uuid.uuid4().hex}.old")
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
