"""Files the gateway creates are its own: directories 0700, files 0600.

A gateway's data directory holds session keys (gateway.db), its master key, and until they
are sealed and anchored, readings in clear (journal.db).  Anything readable by another local
user would undo the encryption of the blocks, so every file and directory is created private
from the start (never chmod-ed after a window in which it was readable) and tightened if it
already existed.  SQLite gives a database's ``-wal`` and ``-shm`` files the mode of the
database file, so creating the database file first with :func:`private_file` covers them.

Layers above the store (the gateway's state, the node) call these too.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = [
    "DIR_MODE",
    "FILE_MODE",
    "private_database",
    "private_dir",
    "private_file",
    "write_private",
]

DIR_MODE = 0o700
FILE_MODE = 0o600


def private_dir(path: Path, *, tighten: bool = True) -> Path:
    """``path`` as a directory only its owner can enter, created 0700 if missing (parents
    too).  An existing one is tightened to 0700 unless ``tighten`` is false: a data directory
    the operator named may be shared with other things, so only its contents are the
    gateway's to restrict."""
    missing = not path.exists()
    path.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    if (missing or tighten) and path.stat().st_mode & 0o777 != DIR_MODE:
        path.chmod(DIR_MODE)  # mkdir's mode is masked by the umask; make it exact
    return path


def private_file(path: Path) -> Path:
    """``path`` as a file only its owner can read: created empty and 0600 if missing (its
    directory created 0700 if missing), else tightened to 0600.  Call before opening a
    database."""
    private_dir(path.parent, tighten=False)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    except FileExistsError:
        if path.stat().st_mode & 0o777 != FILE_MODE:
            path.chmod(FILE_MODE)
    else:
        os.close(fd)
    return path


def private_database(path: Path) -> Path:
    """:func:`private_file` for a SQLite database, and its ``-wal``, ``-shm`` and ``-journal``
    files if a run before this one left them (with looser modes, they would stay so)."""
    private_file(path)
    for suffix in ("-wal", "-shm", "-journal"):
        companion = path.with_name(path.name + suffix)
        if companion.exists():
            private_file(companion)
    return path


def write_private(path: Path, data: bytes, *, fsync: bool = True) -> None:
    """Write ``data`` to a new 0600 file at ``path`` atomically (temp file, fsync, rename)."""
    private_dir(path.parent, tighten=False)
    temp = path.with_name(path.name + ".tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            if fsync:
                os.fsync(f.fileno())
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)  # a failed write leaves nothing half-written behind
        raise
