"""Usage records, written off the request path in batches.

The gateway appends one record per request to an in-process buffer; a task on
the serving loop flushes it every LLMPROXY_USAGE_FLUSH_SECONDS in a worker
thread (RequestLog rows, hourly TokenUsageMetric increments, keys'
last_used_at), and an atexit hook flushes what is left when the server stops,
so a graceful stop loses nothing. A batch the database refuses goes to an
on-disk spool (usage_spool.py) and is written first on the next flush that
reaches the database.
"""

import asyncio
import atexit
import logging
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

import orjson
from django.conf import settings
from django.db import IntegrityError, close_old_connections, connections, router, transaction
from django.db.models import F, Q

from llmproxy.gateway.usage_spool import Spool

logger = logging.getLogger(__name__)

# When the database is away, records wait here; past this many the oldest go
# (with an error in the log) rather than the process running out of memory.
MAX_BUFFERED = 200_000
LOG_FAILURE_EVERY = 10.0


@dataclass(slots=True)
class UsageRecord:
    created_at: datetime
    request_id: str
    tenant_id: int
    api_key_id: int | None
    key_prefix: str
    endpoint: str
    model: str
    status: int
    stream: bool = False
    provider: str = ""
    upstream_model: str = ""
    input_tokens: int = 0
    output_tokens: int = 0
    tokens_estimated: bool = False
    cost: Decimal = Decimal(0)
    latency_ms: float = 0.0
    ttfb_ms: float | None = None
    cache_hit: bool = False
    error_type: str = ""
    attempts: list = field(default_factory=list)
    # Only for tenants that opted in to storing prompts; redacted here, off the request path.
    prompt: str = ""
    completion: str = ""
    guardrail_hits: tuple | list = ()  # llmproxy.guardrails.hits.Hit, one per guardrail that fired


class UsageRecorder:
    def __init__(self):
        self._pending: deque[UsageRecord] = deque()
        self._lock = threading.Lock()
        self._tasks: dict = {}
        self._writing = 0
        self.dropped = 0
        self.spool = Spool()

    def add(self, record: UsageRecord):
        self._pending.append(record)
        if len(self._pending) > MAX_BUFFERED:
            self._pending.popleft()
            self.dropped += 1
            if self.dropped % 1000 == 1:
                logger.error("usage buffer full: %d records dropped so far", self.dropped)
        self._ensure_flusher()

    def _ensure_flusher(self):
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        task = self._tasks.get(loop)
        if task is None or task.done():
            self._tasks[loop] = loop.create_task(self._flush_forever())

    async def _flush_forever(self):
        interval = settings.LLMPROXY_USAGE_FLUSH_SECONDS
        failing_since = last_logged = None
        while True:
            await asyncio.sleep(interval)
            if self._pending or _auth_failures_waiting() or self.spool.has_records():
                try:
                    await asyncio.to_thread(self.flush)
                except Exception as exc:
                    # The whole error once, then a line every LOG_FAILURE_EVERY s: an outage
                    # must be visible in the log without a traceback per flush.
                    now = time.monotonic()
                    if failing_since is None:
                        failing_since = last_logged = now
                        logger.exception("usage flush failed; records kept (on disk) for the next try")
                    elif now - last_logged >= LOG_FAILURE_EVERY:
                        last_logged = now
                        logger.error(
                            "usage flush still failing after %.0f s (%d records waiting): %s",
                            now - failing_since,
                            self.backlog(),
                            exc,
                        )
                else:
                    if failing_since is not None:
                        logger.warning(
                            "usage flush works again after %.0f s", time.monotonic() - failing_since
                        )
                    failing_since = None

    def pending(self) -> int:
        return len(self._pending)

    def backlog(self) -> int:
        """Records not yet in the database: buffered, being written or spooled."""
        return len(self._pending) + self._writing + self.spool.records

    def wake(self):
        """Make sure the flusher runs (for records kept elsewhere, e.g. failed authentications)."""
        self._ensure_flusher()

    def flush(self, final=False) -> int:
        """Write everything buffered (sync; safe from any thread). Returns the rows written."""
        _write_auth_failures(final=final)
        with self._lock:
            batch = []
            while self._pending:
                batch.append(self._pending.popleft())
            self._writing = len(batch)
            try:
                # Spooled batches first: they are older.
                written = self.spool.replay(_write_keeping_owned)
                if batch:
                    _write_keeping_owned(batch)
                self.spool.drained()
            except Exception:
                # To disk, or (spool full under the refuse policy, disk error) back in front, in order.
                if batch and not self.spool.save(batch):
                    self._pending.extendleft(reversed(batch))
                raise
            finally:
                self._writing = 0
                close_old_connections()
            return written + len(batch)


def accepting() -> bool:
    """False while records cannot be kept (spool full under the refuse policy): the gateway answers 503."""
    return not recorder.spool.full


def _write_keeping_owned(batch: list[UsageRecord]):
    try:
        _write(batch)
    except IntegrityError:
        # A tenant or key deleted while its records waited: keep what can
        # still be written instead of poisoning the buffer.
        _write(_without_deleted_owners(batch))


def _write(batch: list[UsageRecord]):
    from audit.models import RequestLog
    from audit.partitions import ensure_partitions_for
    from keys.models import ApiKey
    from quotas.models import TokenUsageMetric

    rollups: dict = {}
    last_used: dict = {}
    for r in batch:
        if r.prompt or r.completion:
            from audit.redaction import redact

            r.prompt, r.completion = redact(r.prompt), redact(r.completion)
        bucket = r.created_at.replace(minute=0, second=0, microsecond=0)
        key = (bucket, r.tenant_id, r.api_key_id, r.model)
        agg = rollups.setdefault(key, [0, 0, 0, Decimal(0), 0, 0])
        agg[0] += 1
        agg[1] += r.input_tokens
        agg[2] += r.output_tokens
        agg[3] += r.cost
        agg[4] += 1 if r.status >= 400 or r.error_type else 0
        agg[5] += 1 if r.cache_hit else 0
        key_id = r.api_key_id
        if key_id is not None and (key_id not in last_used or last_used[key_id] < r.created_at):
            last_used[key_id] = r.created_at

    db = connections[router.db_for_write(RequestLog)]
    if db.vendor == "postgresql" and batch:
        # The request log's monthly partitions: a comparison, a catalog query about once a month.
        ensure_partitions_for(max(r.created_at for r in batch), using=db.alias)
    with transaction.atomic():
        if db.vendor == "postgresql":
            _copy_request_logs(db, RequestLog, batch)
        else:
            columns = _columns(RequestLog)
            rows = [RequestLog(**{f.attname: getattr(r, f.attname, d) for f, d in columns}) for r in batch]
            RequestLog.objects.bulk_create(rows, batch_size=1000)
        for (bucket, tenant_id, api_key_id, model), agg in rollups.items():
            _add_usage(TokenUsageMetric, bucket, tenant_id, api_key_id, model, agg)
        for api_key_id, when in last_used.items():
            stale = Q(last_used_at__isnull=True) | Q(last_used_at__lt=when)
            ApiKey.objects.filter(stale, id=api_key_id).update(last_used_at=when)
        hits = [hit for r in batch for hit in r.guardrail_hits]
        if hits:
            from llmproxy.guardrails.hits import record_hits

            record_hits(hits)


def _columns(model):
    """(field, default) of every column but the primary key: a record fills what it has, defaults the rest."""
    return [(f, f.get_default()) for f in model._meta.concrete_fields if not f.primary_key]


def _copy_request_logs(db, model, batch: list[UsageRecord]):
    # COPY rather than bulk_create: measured 110-180 µs of CPU per row through the ORM (model
    # instances, per-field preparation, array parameters) and a tenth of that by COPY, on a
    # thread that shares the GIL with the serving loop (bench/README.md).
    columns = _columns(model)
    quote = db.ops.quote_name
    sql = f"COPY {quote(model._meta.db_table)} ({', '.join(quote(f.column) for f, _ in columns)}) FROM STDIN"
    json_columns = {i for i, (f, _) in enumerate(columns) if f.get_internal_type() == "JSONField"}
    with db.cursor() as cursor, cursor.cursor.copy(sql) as copy:
        for record in batch:
            row = [getattr(record, f.attname, default) for f, default in columns]
            for i in json_columns:
                row[i] = orjson.dumps(row[i]).decode()
            copy.write_row(row)


def _auth_failures_waiting() -> bool:
    from llmproxy.gateway.auth_throttle import tally

    return tally.pending()


def _write_auth_failures(final=False):
    from audit.services import record_auth_failures
    from llmproxy.gateway.auth_throttle import tally

    buckets = tally.drain(complete_only=not final)
    if buckets:
        try:
            record_auth_failures(buckets)
        except Exception:
            logger.exception("failed authentications could not be audited; %d buckets lost", len(buckets))


def _without_deleted_owners(batch):
    from keys.models import ApiKey
    from tenants.models import Tenant

    tenants = set(Tenant.objects.filter(id__in={r.tenant_id for r in batch}).values_list("id", flat=True))
    keys = set(
        ApiKey.objects.filter(id__in={r.api_key_id for r in batch if r.api_key_id}).values_list(
            "id", flat=True
        )
    )
    kept = [r for r in batch if r.tenant_id in tenants]
    if len(kept) < len(batch):
        logger.warning("dropped %d usage records of deleted tenants", len(batch) - len(kept))
    for r in kept:
        if r.api_key_id is not None and r.api_key_id not in keys:
            r.api_key_id = None
    return kept


def _add_usage(model_cls, bucket, tenant_id, api_key_id, model, agg):
    lookup = {"bucket": bucket, "tenant_id": tenant_id, "model": model}
    lookup["api_key_id" if api_key_id is not None else "api_key__isnull"] = api_key_id if api_key_id else True
    increments = {
        "requests": F("requests") + agg[0],
        "input_tokens": F("input_tokens") + agg[1],
        "output_tokens": F("output_tokens") + agg[2],
        "cost": F("cost") + agg[3],
        "errors": F("errors") + agg[4],
        "cache_hits": F("cache_hits") + agg[5],
    }
    # Race-safe across processes: increment in SQL; create only when no row
    # exists, and if another process created it first, increment that one.
    if model_cls.objects.filter(**lookup).update(**increments):
        return
    try:
        with transaction.atomic():
            model_cls.objects.create(
                bucket=bucket,
                tenant_id=tenant_id,
                api_key_id=api_key_id,
                model=model,
                requests=agg[0],
                input_tokens=agg[1],
                output_tokens=agg[2],
                cost=agg[3],
                errors=agg[4],
                cache_hits=agg[5],
            )
    except IntegrityError:
        model_cls.objects.filter(**lookup).update(**increments)


recorder = UsageRecorder()


@atexit.register
def _flush_at_exit():
    try:
        recorder.flush(final=True)
    except Exception:
        logger.exception("usage records could not be written at exit")
