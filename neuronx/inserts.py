"""Single-row inserts compiled once per model, and inserts that report a unique conflict
instead of raising it.

`Model.objects.create()` compiles its INSERT for every row, which costs the ORM more than the
database takes to insert a small row, and binds the values into the text on the client. The
rows a request writes one at a time (its lead, consents, usage and event, its idempotency
claim) go through `insert` instead: the model's INSERT is compiled once per database vendor,
with the values bound by the server, as a statement prepared once per connection where that is
on (`neuronx.fixed_sql.statement_cursor`). Values are what `save()` would write: each field's
`pre_save` (auto timestamps) and its database preparation.

A claim or a create whose uniqueness the database enforces uses `insert_unless_conflict`:
`ON CONFLICT DO NOTHING … RETURNING` (`INSERT OR IGNORE … RETURNING` on SQLite), one statement
that leaves the transaction usable when it inserts nothing, where `create()` in a transaction
needs a savepoint to survive an `IntegrityError` (two more round trips) and a check before it.
No signals are sent by either.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from django.db import connections
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import Field, Model
from django.db.models.constants import OnConflict
from django.db.models.sql import InsertQuery

from neuronx.fixed_sql import statement_cursor

M = TypeVar("M", bound=Model)


@dataclass(frozen=True)
class _Insert:
    sql: str
    fields: tuple["Field[Any, Any]", ...]


_compiled: dict[tuple[str, type[Model], bool], _Insert] = {}


def _insert_sql(
    model: type[Model], connection: BaseDatabaseWrapper, *, unless_conflict: bool
) -> _Insert:
    key = (connection.vendor, model, unless_conflict)
    found = _compiled.get(key)
    if found is None:
        meta = model._meta
        fields = tuple(
            field
            for field in meta.local_concrete_fields
            if not field.generated and field is not meta.auto_field
        )
        query = InsertQuery(model, on_conflict=OnConflict.IGNORE if unless_conflict else None)
        query.insert_values(fields, [model()])
        compiler = query.get_compiler(connection=connection)
        if unless_conflict:
            compiler.returning_fields = [meta.pk]
        ((sql, params),) = compiler.as_sql()
        # One plain placeholder per field, so the values below line up with the text.
        assert len(params) == len(fields), (model, sql)
        found = _compiled[key] = _Insert(sql=sql, fields=fields)
    return found


def _values(insert: _Insert, instance: Model, connection: BaseDatabaseWrapper) -> list[Any]:
    values = []
    for field in insert.fields:
        value = field.pre_save(instance, True)
        assert not hasattr(value, "resolve_expression"), (field, value)
        values.append(field.get_db_prep_save(value, connection))
    return values


def _inserted(instance: Model, using: str) -> None:
    instance._state.adding = False
    instance._state.db = using


def insert(instance: M, *, using: str = "default") -> M:
    """Insert `instance`'s row as `save()` would (its primary key set by the caller)."""
    connection = connections[using]
    compiled = _insert_sql(type(instance), connection, unless_conflict=False)
    assert instance.pk is not None, "insert() takes rows whose primary key is set"
    with statement_cursor(connection) as cursor:
        cursor.execute(compiled.sql, _values(compiled, instance, connection))
    _inserted(instance, using)
    return instance


def insert_rows(instances: Sequence[M], *, using: str = "default") -> list[M]:
    """`bulk_create(instances)`, with the usual single row through `insert`."""
    if not instances:
        return []
    if len(instances) > 1:
        return type(instances[0])._default_manager.db_manager(using).bulk_create(instances)
    return [insert(instances[0], using=using)]


def insert_unless_conflict(instance: Model, *, using: str = "default") -> bool:
    """Insert `instance`'s row as `save()` would; False, and nothing written, if it conflicts.

    On PostgreSQL only a unique conflict makes it insert nothing; on SQLite a NOT NULL or check
    violation does too, so a caller that finds no conflicting row must treat False as an error.
    """
    connection = connections[using]
    meta = instance._meta
    compiled = _insert_sql(type(instance), connection, unless_conflict=True)
    if meta.auto_field is not None:
        assert instance.pk is None, "an automatic primary key is left to the database"
    with statement_cursor(connection) as cursor:
        cursor.execute(compiled.sql, _values(compiled, instance, connection))
        row = cursor.fetchone()
    if row is None:
        return False
    if instance.pk is None:
        instance.pk = row[0]
    _inserted(instance, using)
    return True
