"""The PostgreSQL backend's health check: no round trip for an open connection, and a
connection the server has closed is found out and replaced before a request uses it. Its
schema editor gives a text column one index, without Django's pattern-matching twin."""

import importlib
import os
import time
from collections.abc import Iterator

import dj_database_url
import psycopg
import pytest
from django.db import connection
from django.db.utils import ConnectionHandler

from neuronx.models import ApiKey, Tenant
from neuronx.postgresql.base import DatabaseWrapper


@pytest.fixture
def postgres_url() -> str:
    """The suite's PostgreSQL, or (the embedded run) a server at 127.0.0.1 when one answers:
    its `postgres` database, where connections are opened and a scratch schema is made and
    dropped (`scratch_schema`); none of its tables is touched."""
    if connection.vendor == "postgresql":
        settings = connection.settings_dict
        return f"postgres://{settings['USER']}@{settings['HOST']}:{settings['PORT']}/postgres"
    url = os.environ.get("TEST_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/postgres")
    try:
        psycopg.connect(url, connect_timeout=2).close()
    except psycopg.Error:
        pytest.skip(f"needs a PostgreSQL server: none answers at {url} (set TEST_POSTGRES_URL)")
    return url


@pytest.fixture
def wrapper(postgres_url: str, django_db_blocker) -> Iterator[DatabaseWrapper]:
    """A connection of its own (not the test database's), as a worker holds one."""
    config = dj_database_url.parse(postgres_url, conn_max_age=60, conn_health_checks=True)
    settings = ConnectionHandler().configure_settings({"default": config})["default"]
    settings["ENGINE"] = "neuronx.postgresql"
    probe = DatabaseWrapper(settings, alias="probe")
    with django_db_blocker.unblock():
        probe.ensure_connection()
        yield probe
        probe.close()


@pytest.fixture
def admin(postgres_url: str) -> Iterator[psycopg.Connection]:
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        yield conn


def _last_statement(admin: psycopg.Connection, pid: int) -> str | None:
    row = admin.execute("SELECT query FROM pg_stat_activity WHERE pid = %s", [pid]).fetchone()
    return None if row is None else str(row[0])


def test_an_open_connection_is_usable_without_a_statement(wrapper, admin):
    with wrapper.cursor() as cursor:
        cursor.execute("SELECT 'the last statement'")
    pid = wrapper.connection.info.backend_pid
    assert wrapper.is_usable()
    assert _last_statement(admin, pid) == "SELECT 'the last statement'"


def test_a_connection_the_server_closed_is_found_out_and_replaced(wrapper, admin):
    pid = wrapper.connection.info.backend_pid
    admin.execute("SELECT pg_terminate_backend(%s)", [pid])
    deadline = time.monotonic() + 10
    while _last_statement(admin, pid) is not None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not wrapper.is_usable()
    # What Django does before a request reuses the connection: check, close, reconnect.
    wrapper.health_check_done = False
    with wrapper.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        (new_pid,) = cursor.fetchone()
    assert new_pid != pid
    assert wrapper.is_usable()


@pytest.fixture
def scratch_schema(wrapper: DatabaseWrapper) -> Iterator[str]:
    """A schema of its own on the probe connection, first on its search path, dropped after."""
    name = f"nx_schema_{os.getpid()}"
    with wrapper.cursor() as cursor:
        cursor.execute(f"DROP SCHEMA IF EXISTS {name} CASCADE")
        cursor.execute(f"CREATE SCHEMA {name}")
        cursor.execute(f"SET search_path TO {name}")
    try:
        yield name
    finally:
        with wrapper.cursor() as cursor:
            cursor.execute(f"DROP SCHEMA {name} CASCADE")
            cursor.execute("RESET search_path")


def _indexes(wrapper: DatabaseWrapper, schema: str) -> dict[str, str]:
    with wrapper.cursor() as cursor:
        cursor.execute("SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = %s", [schema])
        return dict(cursor.fetchall())


def test_text_columns_get_one_index_each_not_a_pattern_twin(wrapper, scratch_schema):
    with wrapper.schema_editor(atomic=False) as editor:
        editor.create_model(Tenant)
        editor.create_model(ApiKey)
    indexes = _indexes(wrapper, scratch_schema)
    assert not [name for name, sql in indexes.items() if "_pattern_ops" in sql], indexes
    # The indexes the columns need are all there: ids, the key prefix, the foreign key.
    for table, column in (
        ("neuronx_tenant", "id"),
        ("neuronx_tenant", "slug"),
        ("neuronx_apikey", "id"),
        ("neuronx_apikey", "prefix"),
        ("neuronx_apikey", "tenant_id"),
    ):
        index = f"{table} USING btree ({column})"
        assert any(index in sql for sql in indexes.values()), (index, indexes)


def test_the_migration_drops_the_pattern_twins_a_database_has(wrapper, scratch_schema):
    drop = importlib.import_module("neuronx.migrations.0004_drop_pattern_indexes")
    with wrapper.schema_editor(atomic=False) as editor:
        editor.create_model(Tenant)
        editor.execute("CREATE TABLE elsewhere (name varchar(20))")
        for table, column in (("neuronx_tenant", "slug"), ("elsewhere", "name")):
            editor.execute(
                f"CREATE INDEX {table}_{column}_0_like ON {table} ({column} varchar_pattern_ops)"
            )
    with wrapper.schema_editor(atomic=False) as editor:
        drop.drop_pattern_indexes(None, editor)
    indexes = _indexes(wrapper, scratch_schema)
    assert "neuronx_tenant_slug_0_like" not in indexes
    assert "elsewhere_name_0_like" in indexes  # not a table of the product's
    assert any("neuronx_tenant USING btree (slug)" in sql for sql in indexes.values())


@pytest.mark.django_db
def test_the_migration_drops_concurrently_outside_a_transaction() -> None:
    drop = importlib.import_module("neuronx.migrations.0004_drop_pattern_indexes")
    # DROP INDEX CONCURRENTLY fails inside a transaction block.
    assert drop.Migration.atomic is False
    assert [op.atomic for op in drop.Migration.operations] == [None]  # the migration's: none
    if connection.vendor == "postgresql":  # the suite's database, migrated by this backend
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT indexname FROM pg_indexes WHERE schemaname = current_schema() "
                "AND tablename ~ %s AND indexdef ~ %s",
                [drop.PRODUCT_TABLES, drop.PATTERN_OPS],
            )
            assert cursor.fetchall() == []
