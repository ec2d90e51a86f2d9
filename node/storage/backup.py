"""Online backup and restore of the store, and the lock that keeps one agent per store.

Backups use SQLite's online backup API from a separate connection, so they are consistent and
safe while the agent writes. A restore replaces the store's pages in one transaction, only while
no agent holds the store, and only from a file that is a sound sunrig store.
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
from pathlib import Path

from node.storage.migrations import migrations
from node.storage.store import Database


class BackupError(Exception):
    """A backup or restore could not be made; the message says which file and why."""


class StoreLock:
    """An advisory lock beside the store, held by the running agent."""

    def __init__(self, store_path: str | Path):
        self.path = Path(f"{store_path}.lock")
        self._fd: int | None = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o640)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise BackupError(f"{self.path}: another sunrig process is using this store") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> StoreLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def backup(store_path: str | Path, dest: str | Path) -> int:
    """Copy the live store to `dest` (written whole, then moved into place); returns its bytes."""
    store_path, dest = Path(store_path), Path(dest)
    if not store_path.is_file():
        raise BackupError(f"{store_path}: no store to back up")
    tmp = dest.with_name(dest.name + ".partial")
    tmp.unlink(missing_ok=True)
    src = sqlite3.connect(f"file:{store_path}?mode=ro", uri=True, timeout=30)
    out = sqlite3.connect(tmp)
    try:
        src.backup(out)
    except sqlite3.Error as exc:
        raise BackupError(f"{store_path}: backup failed: {exc}") from None
    finally:
        out.close()
        src.close()
    os.replace(tmp, dest)
    return dest.stat().st_size


def check_backup(path: str | Path) -> list[str]:
    """The migrations a backup has applied; raises BackupError if it is not a sound store."""
    path = Path(path)
    if not path.is_file():
        raise BackupError(f"{path}: no such file")
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            if conn.execute("PRAGMA integrity_check").fetchone() != ("ok",):
                raise BackupError(f"{path}: the database is damaged (integrity check failed)")
            rows = conn.execute("SELECT name FROM _sqlite_migrations WHERE migration_set = ? "
                                "ORDER BY rowid", [migrations.name]).fetchall()
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        raise BackupError(f"{path}: not a sunrig store ({exc})") from None
    applied = [r[0] for r in rows]
    empty = Database(sqlite3.connect(":memory:"))
    known = {m.name for m in migrations.pending(empty)}  # every registered migration
    newer = [name for name in applied if name not in known]
    if not applied:
        raise BackupError(f"{path}: not a sunrig store (no sunrig migrations)")
    if newer:
        raise BackupError(f"{path}: made by a newer sunrig (migrations {', '.join(newer)}); "
                          "upgrade first")
    return applied


def restore(src: str | Path, store_path: str | Path) -> None:
    """Replace the store with a backup, then bring it to the current schema.

    Refuses while an agent holds the store; the old contents stay until the copy commits."""
    check_backup(src)
    store_path = Path(store_path)
    with StoreLock(store_path):
        source = sqlite3.connect(f"file:{src}?mode=ro", uri=True)
        target = sqlite3.connect(store_path, timeout=30)
        try:
            source.backup(target)
            migrations.apply(Database(target))
            target.execute("PRAGMA journal_mode=WAL")
        except sqlite3.Error as exc:
            raise BackupError(f"{store_path}: restore failed, store unchanged: {exc}") from None
        finally:
            target.close()
            source.close()
