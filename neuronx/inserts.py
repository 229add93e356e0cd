"""Inserts that report a unique conflict instead of raising it.

`Model.objects.create()` inside a transaction must be wrapped in a savepoint to survive an
`IntegrityError` (two more round trips), and a check before it is one more. A claim or a
create whose uniqueness the database enforces can instead insert with `ON CONFLICT DO NOTHING …
RETURNING` (`INSERT OR IGNORE … RETURNING` on SQLite): one statement, which leaves the
transaction usable when it inserts nothing.
"""

from django.db import connections
from django.db.models import Model
from django.db.models.constants import OnConflict
from django.db.models.sql import InsertQuery

from neuronx.fixed_sql import statement_cursor


def insert_unless_conflict(instance: Model, *, using: str = "default") -> bool:
    """Insert `instance`'s row as `save()` would; False, and nothing written, if it conflicts.

    No signals are sent. On PostgreSQL only a unique conflict makes it insert nothing; on
    SQLite a NOT NULL or check violation does too, so a caller that finds no conflicting row
    must treat False as an error.
    """
    meta = instance._meta
    fields = [
        field
        for field in meta.local_concrete_fields
        if not field.generated and not (field is meta.auto_field and instance.pk is None)
    ]
    query = InsertQuery(type(instance), on_conflict=OnConflict.IGNORE)
    query.insert_values(fields, [instance])
    compiler = query.get_compiler(using=using)
    compiler.returning_fields = [meta.pk]
    ((sql, params),) = compiler.as_sql()
    # The text is the same for every instance of a model, so it is prepared once per connection.
    with statement_cursor(connections[using]) as cursor:
        cursor.execute(sql, params)
        row = cursor.fetchone()
    if row is None:
        return False
    if instance.pk is None:
        instance.pk = row[0]
    instance._state.adding = False
    instance._state.db = using
    return True
