"""Drop the `varchar_pattern_ops` / `text_pattern_ops` twins of the product's indexes, which
Django's PostgreSQL schema editor made and `neuronx.postgresql`'s no longer makes (see
`neuronx/postgresql/schema.py`), on the product's tables (Django's own `auth` tables keep
theirs). PostgreSQL only; nothing to do elsewhere. Each index is dropped `CONCURRENTLY`, outside
a transaction: writes to its table go on meanwhile."""

from typing import Any

from django.db import migrations

PRODUCT_TABLES = "^(neuronx|gtm_api|consent|usage|webhooks)_"  # table names, as a regex
PATTERN_OPS = "(varchar|text)_pattern_ops"  # in an index's definition


def drop_pattern_indexes(apps: Any, schema_editor: Any) -> None:
    connection = schema_editor.connection
    if connection.vendor != "postgresql":
        return
    with connection.cursor() as cursor:
        # Indexes only: one that backs a constraint is the constraint's to drop.
        cursor.execute(
            "SELECT c.relname FROM pg_index i "
            "JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_class t ON t.oid = i.indrelid "
            "JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = current_schema() AND t.relname ~ %s AND c.relname ~ %s "
            "AND pg_get_indexdef(i.indexrelid) ~ %s "
            "AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = i.indexrelid)",
            [PRODUCT_TABLES, "_like$", PATTERN_OPS],
        )
        names = [name for (name,) in cursor.fetchall()]
    for name in names:
        schema_editor.execute(
            f"DROP INDEX CONCURRENTLY IF EXISTS {schema_editor.quote_name(name)}"
        )


class Migration(migrations.Migration):
    atomic = False  # DROP INDEX CONCURRENTLY cannot run in a transaction

    dependencies = [
        ("neuronx", "0003_idempotency_path_text"),
        ("gtm_api", "0004_lead_tenant_id_index"),
        ("consent", "0001_initial"),
        ("usage", "0001_initial"),
        ("webhooks", "0002_subscriptions_deliveries"),
    ]

    operations = [
        migrations.RunPython(drop_pattern_indexes, migrations.RunPython.noop, elidable=True),
    ]
