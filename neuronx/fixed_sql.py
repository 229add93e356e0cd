"""Hot read queries compiled once per database connection and query shape, then only executed.

Building and compiling a queryset costs the ORM several times what PostgreSQL takes to run a
lookup by primary key or a page of an index. A `FixedQuery` builds its queryset once per
connection and shape, with marker strings in place of the values, keeps the SQL, where each
value goes, the columns and their converters (the ORM's own: JSON, timestamps on SQLite…), and
then executes that SQL through the connection's cursor (query logging and counting included).
Rows come back as model instances, exactly as the queryset would give them, or as plain dicts
of the same converted values for rendering; the rows of a `values_list()` queryset as lists.

Only string values (ids) can be parameters: they reach the SQL unchanged, so a marker is found
again in the compiled parameters. Anything else (a page size, an ordering) is part of the shape.
"""

import weakref
from collections.abc import Callable, Hashable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from django.db import connections
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.backends.utils import CursorWrapper
from django.db.models import Model, QuerySet
from django.db.models.query import ModelIterable

M = TypeVar("M", bound=Model)


@dataclass(frozen=True)
class _Compiled:
    sql: str
    param_names: tuple[str, ...]
    columns: tuple[str, ...]  # attribute names, in the order of the selected columns
    converters: tuple[tuple[int, tuple[Any, ...], Any], ...]  # (column, converters, expression)


class FixedQuery(Generic[M]):
    """`build(shape, markers)` returns the queryset for one shape, with `markers[name]` in place
    of each parameter value; it must select the model's columns and nothing else, or be a
    `values_list()` (read with `tuples`)."""

    def __init__(
        self,
        model: type[M],
        params: tuple[str, ...],
        build: Callable[[Any, dict[str, str]], "QuerySet[M, Any]"],
        *,
        prepared: bool = False,
    ) -> None:
        self.model = model
        self.params = params
        self.build = build
        # Only for a query whose best plan is the same whatever the values (a lookup by primary
        # key): a prepared statement ends up on one generic plan, which cannot be the best one
        # for a small tenant's page and for a large one's alike.
        self.prepared = prepared
        self._compiled: weakref.WeakKeyDictionary[
            BaseDatabaseWrapper, dict[Hashable, _Compiled]
        ] = weakref.WeakKeyDictionary()

    def _compile(self, connection: BaseDatabaseWrapper, shape: Hashable) -> _Compiled:
        by_shape = self._compiled.setdefault(connection, {})
        compiled = by_shape.get(shape)
        if compiled is None:
            markers = {name: f"\x00fixed-sql:{name}\x00" for name in self.params}
            names_of = {marker: name for name, marker in markers.items()}
            queryset = self.build(shape, markers)
            compiler = queryset.query.get_compiler(connection=connection)
            sql, values = compiler.as_sql()
            unknown = [value for value in values if value not in names_of]
            assert not unknown, f"parameters other than the markers: {unknown!r}"
            select = compiler.select
            instances = queryset._iterable_class is ModelIterable  # not a `values_list()`
            if instances:
                klass_info = compiler.klass_info
                assert klass_info is not None and klass_info["model"] is self.model
                assert list(klass_info["select_fields"]) == list(range(len(select)))
            converters = compiler.get_converters([column for column, _, _ in select])
            compiled = _Compiled(
                sql=sql,
                param_names=tuple(names_of[value] for value in values),
                columns=tuple(column.target.attname for column, _, _ in select)
                if instances
                else (),
                converters=tuple(
                    (position, tuple(functions), expression)
                    for position, (functions, expression) in sorted(converters.items())
                ),
            )
            by_shape[shape] = compiled
        return compiled

    def _rows(
        self, shape: Hashable, values: dict[str, str], using: str
    ) -> tuple[tuple[str, ...], list[Any]]:
        connection = connections[using]
        compiled = self._compile(connection, shape)
        with statement_cursor(connection, prepared=self.prepared) as cursor:
            cursor.execute(compiled.sql, [values[name] for name in compiled.param_names])
            rows: list[Any] = cursor.fetchall()
        if compiled.converters:
            converted = []
            for row in rows:
                row = list(row)
                for position, functions, expression in compiled.converters:
                    value = row[position]
                    for function in functions:
                        value = function(value, expression, connection)
                    row[position] = value
                converted.append(row)
            rows = converted
        return compiled.columns, rows

    def instances(
        self, shape: Hashable = None, *, using: str = "default", **values: str
    ) -> list[M]:
        columns, rows = self._rows(shape, values, using)
        return [self.model.from_db(using, list(columns), row) for row in rows]

    def dicts(
        self, shape: Hashable = None, *, using: str = "default", **values: str
    ) -> list[dict[str, Any]]:
        columns, rows = self._rows(shape, values, using)
        return [dict(zip(columns, row, strict=True)) for row in rows]

    def tuples(self, shape: Hashable = None, *, using: str = "default", **values: str) -> list[Any]:
        """The rows of a `values_list()` queryset, each a sequence of its values."""
        return self._rows(shape, values, using)[1]


@contextmanager
def statement_cursor(
    connection: BaseDatabaseWrapper, *, prepared: bool = True
) -> Iterator[CursorWrapper]:
    """A cursor whose statements PostgreSQL prepares (parses and plans once per connection),
    where the connection allows it (`DATABASE_PREPARED_STATEMENTS`); else the usual cursor.

    Django's own cursors bind parameters on the client, which never prepares. This one binds
    them on the server; it is otherwise the cursor `connection.cursor()` gives (health check,
    error mapping), so only fixed SQL whose parameters are plain values should go through it.
    While queries are logged (DEBUG, or a test counting them) it is the usual cursor: Django
    cannot show the text of a statement bound on the server.
    """
    if (
        not prepared
        or connection.vendor != "postgresql"
        or connection.settings_dict["OPTIONS"].get("prepare_threshold") is None
        or connection.queries_logged
    ):
        with connection.cursor() as cursor:
            yield cursor
        return
    from django.db.backends.postgresql.base import ServerBindingCursor  # PostgreSQL only

    connection.close_if_health_check_failed()
    connection.ensure_connection()
    with connection.wrap_database_errors:
        raw = ServerBindingCursor(connection.connection)  # type: ignore[call-arg]
        cursor = connection._prepare_cursor(raw)  # type: ignore[attr-defined]
    with cursor:
        yield cursor
