"""Django's PostgreSQL backend, with two savings for the hot reads of the API.

**A health check without a round trip.**  With persistent connections,
``CONN_HEALTH_CHECKS`` (see TRAPS.md) makes Django send ``SELECT 1`` before the first query
of every request: on the golden record read, a second round trip to the server for one
real statement.  A connection the server has dropped (a restart, ``pg_terminate_backend``,
an idle timeout) has something to read while it is idle: the server's FATAL message or the
end of the stream.  So an idle connection whose socket has nothing to read is taken as
healthy without asking; anything else (data waiting, a transaction open, a connection
already known to be bad, no ``poll`` on this platform, psycopg2) is checked with Django's
``SELECT 1`` as before.

**Prepared statements, where asked for.**  Django binds parameters on the client and never
prepares (for the sake of transaction-pooling proxies), so PostgreSQL plans every
statement again: for the golden record read, planning the four-table join takes several
times longer than running it.  ``connection.prepared_cursor()`` gives a cursor whose
statements are bound on the server and prepared once per connection (psycopg names and
re-prepares them on a new connection); ``AURUM_PREPARED_READS=0`` turns it back into a
plain cursor (a transaction-pooling PgBouncer older than 1.21 cannot keep prepared
statements).  Everything else uses Django's cursors unchanged.
"""

from __future__ import annotations

import select
import sys
from typing import Any

from django.conf import settings
from django.db.backends.postgresql import base
from django.db.backends.postgresql.psycopg_any import is_psycopg3
from django.utils.asyncio import async_unsafe

# django-stubs describe little of the PostgreSQL backend's internals.
_DatabaseWrapper: Any = base.DatabaseWrapper

if is_psycopg3:
    from django.db.backends.postgresql.psycopg_any import register_tzloader
    from psycopg.pq import Format
    from psycopg.types.string import TextLoader

    _ServerBindingCursor: Any = base.ServerBindingCursor

    class PreparedCursor(_ServerBindingCursor):
        """Binds on the server and prepares every statement it executes."""

        def execute(self, query: Any, params: Any = None, **kwargs: Any) -> Any:
            kwargs.setdefault("prepare", True)
            return super().execute(query, params, **kwargs)


class DatabaseWrapper(_DatabaseWrapper):
    @async_unsafe
    def get_new_connection(self, conn_params: dict[str, Any]) -> Any:
        connection = super().get_new_connection(conn_params)
        if is_psycopg3 and connection.prepare_threshold is None:
            # Django's default (None) forbids preparing at all; a threshold never reached
            # keeps its other statements unprepared and lets prepared_cursor() prepare.
            connection.prepare_threshold = sys.maxsize
        if is_psycopg3:
            # ``json`` columns (a golden record's provenance, mdm.provenance) come as text,
            # as Django has ``jsonb`` come: decoded once, by the field, with orjson.
            connection.adapters.register_loader("json", TextLoader)
        return connection

    def close_if_health_check_failed(self) -> None:
        if (
            self.connection is not None
            and self.health_check_enabled
            and not self.health_check_done  # type: ignore[has-type]
            and not self.pool
            and self._idle_and_quiet()
        ):
            self.health_check_done = True
            return
        super().close_if_health_check_failed()

    def _idle_and_quiet(self) -> bool:
        """The connection is open, idle (no transaction) and the server sent nothing."""
        poll = getattr(select, "poll", None)
        if not is_psycopg3 or poll is None:
            return False
        from psycopg import pq

        pgconn = self.connection.pgconn
        if (
            pgconn.status != pq.ConnStatus.OK
            or pgconn.transaction_status != pq.TransactionStatus.IDLE
        ):
            return False
        try:
            poller = poll()
            poller.register(pgconn.socket, select.POLLIN | select.POLLPRI)
            return not poller.poll(0)
        except Exception:  # a closed socket: let SELECT 1 decide
            return False

    @async_unsafe
    def prepared_cursor(self) -> Any:
        """A cursor (Django's wrapper: errors, query logging) whose statements PostgreSQL
        prepares once per connection; a plain cursor when that is turned off."""
        if not is_psycopg3 or not getattr(settings, "AURUM_PREPARED_READS", True):
            return self.cursor()
        self.close_if_health_check_failed()
        self.ensure_connection()
        with self.wrap_database_errors:
            cursor = PreparedCursor(self.connection)
            # As Django's create_cursor: the cursor's time zone when the connection's differs.
            oid = base.TIMESTAMPTZ_OID
            loader = self.connection.adapters.get_loader(oid, Format.TEXT)
            if self.timezone != loader.timezone:
                register_tzloader(self.timezone, cursor)
            return self._prepare_cursor(cursor)
