"""An index on `Delivery.finished_at` for the delivery log's retention purge. On PostgreSQL it is
built `CONCURRENTLY`, outside a transaction: deliveries go on being written meanwhile."""

from typing import Any

from django.db import migrations, models

INDEX = models.Index(fields=["finished_at"], name="webhooks_de_finishe_01e236_idx")


def add_index(apps: Any, schema_editor: Any) -> None:
    model = apps.get_model("webhooks", "Delivery")
    if schema_editor.connection.vendor == "postgresql":
        # A build that failed half-way leaves an invalid index of that name behind.
        name = schema_editor.quote_name(INDEX.name)
        schema_editor.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {name}")
        schema_editor.add_index(model, INDEX, concurrently=True)
    else:
        schema_editor.add_index(model, INDEX)


def remove_index(apps: Any, schema_editor: Any) -> None:
    model = apps.get_model("webhooks", "Delivery")
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.remove_index(model, INDEX, concurrently=True)
    else:
        schema_editor.remove_index(model, INDEX)


class Migration(migrations.Migration):
    atomic = False  # CREATE INDEX CONCURRENTLY cannot run in a transaction

    dependencies = [
        ("neuronx", "0004_drop_pattern_indexes"),
        ("webhooks", "0002_subscriptions_deliveries"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[migrations.AddIndex(model_name="delivery", index=INDEX)],
            database_operations=[migrations.RunPython(add_index, remove_index)],
        )
    ]
