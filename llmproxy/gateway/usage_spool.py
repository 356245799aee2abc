"""Usage records that could not be written, kept on disk until the database is back.

Each process spools into VAR_DIR/spool/<pid>/, one JSON-lines file per failed
batch, fsync'd before the batch counts as kept. The process holds an flock on
the directory's ``.lock`` for its whole life, so a directory whose lock can be
taken belongs to a dead process (also after pid reuse): the next process to
flush adopts its files and writes them.

The spool is bounded by LLMPROXY_USAGE_SPOOL_MAX_BYTES per process. When a
batch does not fit, LLMPROXY_USAGE_SPOOL_FULL_POLICY decides: ``drop`` deletes
the oldest spooled batches (counted, logged) and keeps serving; ``refuse``
keeps the batch in memory and makes ``accepting()`` false, so the gateway
answers 503 to new requests until the spool drains.
"""

import fcntl
import logging
import os
import time
from dataclasses import fields
from datetime import datetime
from decimal import Decimal
from pathlib import Path

import orjson
from django.conf import settings

logger = logging.getLogger(__name__)


def encode(record) -> bytes:
    # orjson writes datetimes (also inside guardrail hits, which are dataclasses) as ISO 8601.
    return orjson.dumps({f.name: getattr(record, f.name) for f in fields(record)}, default=_default)


def _default(value):
    if isinstance(value, Decimal):
        return str(value)
    raise TypeError(f"cannot spool {type(value).__name__}")


def decode(line: bytes):
    from llmproxy.gateway.usage import UsageRecord
    from llmproxy.guardrails.hits import Hit

    data = orjson.loads(line)
    data["created_at"] = datetime.fromisoformat(data["created_at"])
    data["cost"] = Decimal(data["cost"])
    data["guardrail_hits"] = [
        Hit(**{**h, "at": datetime.fromisoformat(h["at"])}) for h in data.get("guardrail_hits") or ()
    ]
    return UsageRecord(**data)


class Spool:
    def __init__(self, root: Path | None = None):
        self._root = root
        self._pid = None
        self._lock_fd = None
        self._seq = 0
        self.bytes = 0
        self.records = 0
        self.full = False
        self.full_events = 0  # batches that did not fit
        self.dropped = 0  # records deleted by the drop policy
        self._adopted_at = 0.0

    @property
    def root(self) -> Path:
        return self._root or Path(settings.VAR_DIR) / "spool"

    def _dir(self) -> Path:
        # Re-opened after a fork: the child is another process with its own directory.
        if self._pid != os.getpid():
            self._pid = os.getpid()
            self.bytes = self.records = 0
            directory = self.root / str(self._pid)
            directory.mkdir(parents=True, exist_ok=True)
            self._lock_fd = _lock(directory / ".lock", wait=True)
            (directory / ".database").write_text(_database_identity())
            for path in self._files(directory):
                self.bytes += path.stat().st_size
                self.records += _count_lines(path)
        return self.root / str(self._pid)

    @staticmethod
    def _files(directory: Path) -> list[Path]:
        return sorted(directory.glob("*.jsonl"))

    def has_records(self) -> bool:
        self.adopt_orphans()
        return self.records > 0

    def adopt_orphans(self, every=5.0):
        """Move the files of dead processes' spools into this one (checked at most every ``every`` s).

        A process makes its own directory only when it first spools or adopts,
        and an empty directory of a dead process is removed whatever its database.
        """
        now = time.monotonic()
        if self._adopted_at and now - self._adopted_at < every:
            return
        self._adopted_at = now
        if not self.root.is_dir():
            return
        mine = self.root / str(os.getpid())
        for other in self.root.iterdir():
            if other == mine or not other.is_dir() or not (other / ".lock").exists():
                continue  # a directory still being set up has no lock file yet
            files = self._files(other)
            if files and _read(other / ".database") != _database_identity():
                continue  # records of another database (a test run's, a developer's): not ours to write
            fd = _lock(other / ".lock", wait=False)
            if fd is None:
                continue  # its process is alive
            try:
                for path in files:
                    target = self._dir() / f"{path.stem}-from-{other.name}.jsonl"
                    path.rename(target)
                    self.bytes += target.stat().st_size
                    self.records += _count_lines(target)
                    logger.warning("adopted spool file %s of dead process %s", target.name, other.name)
                (other / ".database").unlink(missing_ok=True)
                (other / ".lock").unlink(missing_ok=True)
                other.rmdir()
            except OSError:
                logger.exception("could not adopt the usage spool %s", other)
            finally:
                os.close(fd)

    def save(self, batch: list) -> bool:
        """Keep ``batch`` on disk; False when it stays the caller's (full under ``refuse``, disk error)."""
        lines = [encode(r) + b"\n" for r in batch]
        size = sum(map(len, lines))
        limit = settings.LLMPROXY_USAGE_SPOOL_MAX_BYTES
        try:
            directory = self._dir()
            if self.bytes + size > limit:
                self.full_events += 1
                if settings.LLMPROXY_USAGE_SPOOL_FULL_POLICY == "refuse":
                    if not self.full:
                        logger.error(
                            "usage spool full (%d of %d bytes): refusing new requests until it drains",
                            self.bytes,
                            limit,
                        )
                    self.full = True
                    return False
                lines, size = self._make_room(directory, lines, size, limit)
            self._seq += 1
            path = directory / f"{time.time_ns():020d}-{self._seq:06d}.jsonl"
            with open(path, "wb") as f:
                f.writelines(lines)
                f.flush()
                os.fsync(f.fileno())
            _fsync_dir(directory)
        except OSError:
            logger.exception("could not spool %d usage records to disk; kept in memory", len(batch))
            return False
        self.bytes += size
        self.records += len(lines)
        return True

    def _make_room(self, directory, lines, size, limit):
        dropped = 0
        for path in self._files(directory):
            if self.bytes + size <= limit:
                break
            count = _count_lines(path)
            self.bytes -= path.stat().st_size
            self.records -= count
            dropped += count
            path.unlink()
        while lines and self.bytes + size > limit:  # a batch larger than the whole spool keeps its newest
            size -= len(lines.pop(0))
            dropped += 1
        self.dropped += dropped
        logger.error(
            "usage spool full (limit %d bytes): dropped the %d oldest records (%d so far)",
            limit,
            dropped,
            self.dropped,
        )
        return lines, size

    def replay(self, write) -> int:
        """Hand each spooled batch, oldest first, to ``write``; a batch is deleted once written.

        Raises what ``write`` raises (the database is still away): the rest stays spooled.
        """
        self.adopt_orphans()
        if not self.records and not self.bytes:
            return 0
        written = 0
        directory = self._dir()
        for path in self._files(directory):
            batch, torn = [], 0
            for line in path.read_bytes().splitlines():
                try:
                    batch.append(decode(line))
                except (ValueError, TypeError, KeyError):
                    torn += 1  # a line cut short by a crash while spooling
            if torn:
                logger.error("skipped %d unreadable lines of the usage spool %s", torn, path.name)
            if batch:
                write(batch)
            size = path.stat().st_size
            path.unlink()
            self.bytes -= size
            self.records -= len(batch) + torn
            written += len(batch)
        _fsync_dir(directory)
        self.bytes = max(self.bytes, 0)
        self.records = max(self.records, 0)
        return written

    def drained(self):
        """Everything spooled and buffered reached the database: a full spool accepts again."""
        if self.full and not self.records:
            logger.warning("usage spool drained: accepting requests again")
            self.full = False


def _lock(path: Path, *, wait: bool):
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    deadline = time.monotonic() + (2.0 if wait else 0.0)
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return fd
        except BlockingIOError:
            # Held by another process: alive, or (wait) an adopter about to remove a dead pid's directory.
            if time.monotonic() >= deadline:
                if wait:
                    return fd  # still ours by pid; the adopter only moves finished files
                os.close(fd)
                return None
            time.sleep(0.05)


def _database_identity() -> str:
    from django.db import connections, router

    from audit.models import RequestLog

    db = connections[router.db_for_write(RequestLog)].settings_dict
    return f"{db['ENGINE']} {db.get('HOST') or ''}:{db.get('PORT') or ''} {db['NAME']}"


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except OSError:
        return None


def _count_lines(path: Path) -> int:
    return path.read_bytes().count(b"\n")


def _fsync_dir(directory: Path):
    # The new or removed file's directory entry is durable only once the directory is synced.
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
