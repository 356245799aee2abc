"""Reads of the usage reports go to the replica (DATABASE_REPLICA_URL); everything else to the primary.

Installed only when DATABASE_REPLICA_URL is set. The replica serves the tables that
the admin's lists, the usage dashboard and report queries page through and that only
grow: request logs and hourly usage aggregates. A replica lags by a moment, which a
report tolerates. Everything else reads the primary:
- keys, tenants, routes and limits, because a change must work on its first request;
- the audit log, because verifying its hash chain compares rows with the chain heads,
  and both must come from one database;
- any read inside a transaction on the primary, so that what a transaction wrote it
  also reads (the admin's change views run in one).
Writes and migrations go to the primary only: the replica is a copy of it.
"""

from django.db import DEFAULT_DB_ALIAS, connections

REPLICA = "replica"
REPORT_MODELS = frozenset({"audit.requestlog", "quotas.tokenusagemetric"})


class ReplicaRouter:
    def db_for_read(self, model, **hints):
        if model._meta.label_lower in REPORT_MODELS and not connections[DEFAULT_DB_ALIAS].in_atomic_block:
            return REPLICA
        return DEFAULT_DB_ALIAS

    def db_for_write(self, model, **hints):
        return DEFAULT_DB_ALIAS

    def allow_relation(self, obj1, obj2, **hints):
        # Both aliases are the same data: a row read from the replica may point at one from the primary.
        return True

    def allow_migrate(self, db, app_label, model_name=None, **hints):
        return db == DEFAULT_DB_ALIAS
