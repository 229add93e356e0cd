"""Django's PostgreSQL schema editor, without a second index on each indexed text column.

For every indexed or unique `varchar` or `text` column (every id, every foreign key to one, a
slug), Django's PostgreSQL schema editor adds a second index with the `varchar_pattern_ops`
operator class, so that `LIKE 'prefix%'` lookups can use an index outside the C locale. The
product makes no such lookup: its ids are matched whole. Each twin cost one more index write
per insert of a row (a lead, a consent record, an event…) and, since the planner uses it for
equality too, split the reads of one column between two indexes competing for the same shared
buffers. Migration `neuronx.0004_drop_pattern_indexes`
drops those a database already has on the product's tables.
"""

from typing import Any

from django.db.backends.postgresql import schema


class DatabaseSchemaEditor(schema.DatabaseSchemaEditor):
    def _create_like_index_sql(self, model: Any, field: Any) -> None:
        return None
