"""Django's PostgreSQL backend, with a connection health check that costs no round trip.

With `CONN_HEALTH_CHECKS`, Django checks a persistent connection before a request reuses it by
running `SELECT 1`: a round trip, and some 80 µs of the worker's CPU, on every request. A
connection the server has closed (a restart, a crash, a terminated backend, an idle timeout)
has something to read on its socket: the server's last error, or the end of the stream. An idle
connection in autocommit mode that is still open has nothing. So the check polls the socket, and
only when something is there does it run Django's `SELECT 1`, which then decides.

Its schema editor leaves out Django's second, pattern-matching index on text columns
(`neuronx/postgresql/schema.py`).
"""

import select

from django.db.backends.postgresql import base

from neuronx.postgresql.schema import DatabaseSchemaEditor


class DatabaseWrapper(base.DatabaseWrapper):
    SchemaEditorClass = DatabaseSchemaEditor

    def is_usable(self) -> bool:
        connection = self.connection
        if connection is None or connection.closed or connection.broken:
            return False
        try:
            readable, _, _ = select.select([connection.fileno()], [], [], 0)
        except (OSError, ValueError):
            return False
        return not readable or bool(super().is_usable())
