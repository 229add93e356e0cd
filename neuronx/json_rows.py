"""Rows rendered as JSON text by PostgreSQL, byte for byte as an output serializer and the API's
`JsonRenderer` render them, so that a page of rows goes into the response as it comes.

`json_row(Output)` reads the serializer's fields (name, model column, field type) and gives the
expressions to select for its rows: the row's JSON text in parts, with each JSON document column
between two parts as its own text. PostgreSQL writes strings (`to_json` escapes them as Python's
`json.dumps` does), integers, booleans, nulls and timestamps (ISO 8601 in UTC, as DRF's
`DateTimeField` writes them); JSON documents are written again in Python (`JsonRowSql.render`),
since `jsonb::text` puts spaces after `:` and `,` and writes some numbers unlike Python. For a
serializer with a field of any other kind, `json_row` gives None: DRF renders its rows.
"""

import json
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache

from django.conf import settings
from django.core.exceptions import FieldDoesNotExist
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.backends.signals import connection_created
from django.db.models import F, Func, Model, TextField
from django.db.models.expressions import Combinable
from django.db.models.functions import Cast
from django.utils import timezone
from rest_framework import ISO_8601, serializers
from rest_framework.settings import api_settings

from neuronx.serializers import FixedFieldsOutput

# Renderings of each field in turn, by the field's own rules.
_FIELD_BY_FIELD = (serializers.Serializer.to_representation, FixedFieldsOutput.to_representation)
_TEXT_COLUMNS = frozenset({"CharField", "TextField"})
_INTEGER_COLUMNS = frozenset(
    {
        "SmallIntegerField",
        "IntegerField",
        "BigIntegerField",
        "PositiveSmallIntegerField",
        "PositiveIntegerField",
        "PositiveBigIntegerField",
    }
)
# `to_json` of a value as its field renders it: a text column as a string, an integer column as
# a number, a boolean column as `true`/`false`.
_TO_JSON = "COALESCE(to_json(%(expressions)s)::text, 'null')"
# `DateTimeField.to_representation` in UTC: `isoformat()`, whose microseconds are left out
# when they are zero, with `Z` for `+00:00`.
_TIMESTAMP = (
    """COALESCE('"' || replace(to_char(%(expressions)s AT TIME ZONE 'UTC', """
    """'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'), '.000000Z', 'Z') || '"', 'null')"""
)
_DOCUMENT = "document"  # a JSON column: its text, written again in Python
_DECODE = json.JSONDecoder().decode  # what `json.loads` does, without its checks of the text
_ENCODE = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode


@dataclass(frozen=True)
class JsonRowSql:
    """`expressions` select the row's JSON text: text, then a JSON document and text again for
    each JSON document field; `render` joins what they read into the row's JSON text."""

    expressions: tuple[Combinable, ...]
    timestamps: bool  # written in UTC: usable only while that is the current time zone

    def usable(self) -> bool:
        return not self.timestamps or (
            settings.USE_TZ and timezone.get_current_timezone_name() == "UTC"
        )

    @staticmethod
    def render(parts: Sequence[str | None]) -> str:
        text = parts[0]
        assert text is not None
        for position in range(1, len(parts), 2):
            document, after = parts[position], parts[position + 1]
            assert after is not None
            text += _document(document) + after
        return text


def _document(text: str | None) -> str:
    """A JSON column as DRF renders the value the ORM reads from it (`json.loads`)."""
    if text is None:
        return "null"
    if text == "{}":
        return text
    return _ENCODE(_DECODE(text))


# A row version as PostgreSQL tells it: the transaction that wrote the row (`xmin`) and where it
# is (`ctid`). Every write of a row is a new version, with the writing transaction's `xmin` and a
# `ctid` of its own; two versions written by one transaction have different `ctid`s, and only
# the last of them outlives it. Transaction ids are reused where the database goes back in time
# (a point-in-time restore, a promoted replica that lagged): `RowTexts` forget every row when a
# connection finds a server other than the last one (by its start time). Left aside: a table
# rewrite (VACUUM FULL, CLUSTER) could give a row the `ctid` of a version of itself that the same
# transaction wrote and replaced, and that a process read from inside that transaction, which
# the API never does; `xmin` repeats after 2^32 transactions.
_VERSION = "%(table)s.xmin::text || ':' || %(table)s.ctid::text"


def row_version(model: type[Model]) -> Func:
    """The expression of a row's version, PostgreSQL only."""
    return _sql(_VERSION % {"table": f'"{model._meta.db_table}"'})


class RowTexts:
    """Rows' JSON texts by row and version, in a process: a row that has not changed since a
    process last wrote it as JSON is not written again. Up to `limit` characters of text, then
    emptied."""

    def __init__(self, limit: int = 8_000_000) -> None:
        self.limit = limit
        self.texts: dict[tuple[str, str], str] = {}
        self.size = 0
        _ROW_TEXTS.add(self)

    def every(self, keys: Sequence[tuple[str, str]]) -> list[str] | None:
        """The texts of all of `keys`, or None if some are not here."""
        texts, found = self.texts, []
        for key in keys:
            text = texts.get(key)
            if text is None:
                return None
            found.append(text)
        return found

    def put(self, key: tuple[str, str], text: str) -> None:
        if self.size + len(text) > self.limit:
            self.clear()
        self.texts[key] = text
        self.size += len(text)

    def clear(self) -> None:
        self.texts, self.size = {}, 0


_ROW_TEXTS: "weakref.WeakSet[RowTexts]" = weakref.WeakSet()
_SERVERS: dict[str, object] = {}  # connection alias -> the server's start time


def server_seen(alias: str, started: object) -> None:
    """A connection of `alias` found the server that started at `started`: if another one
    answered before, the rows read from it may have versions this one gives to other rows."""
    if _SERVERS.get(alias, started) != started:
        for texts in list(_ROW_TEXTS):
            texts.clear()
    _SERVERS[alias] = started


def _connection_created(sender: object, connection: BaseDatabaseWrapper, **kwargs: object) -> None:
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_postmaster_start_time()")
            (started,) = cursor.fetchone()
        server_seen(connection.alias, started)


connection_created.connect(_connection_created, dispatch_uid="neuronx.json_rows.server_seen")


@cache
def json_row(output: type[serializers.ModelSerializer]) -> JsonRowSql | None:
    """The row expressions of `output`'s model for `output`'s rendering; None if it has a field
    whose rendering they cannot give, or renders its rows by rules of its own."""
    if output.to_representation not in _FIELD_BY_FIELD:
        return None
    model: type[Model] = output.Meta.model
    parts: list[Combinable] = []
    terms: list[Func] = []  # of the text part being built
    timestamps = False
    for name, field in output().fields.items():
        if field.write_only:
            continue
        # An identifier needs no escaping, in JSON nor in an SQL literal.
        if not name.isidentifier() or len(field.source_attrs) != 1:
            return None
        try:
            column = model._meta.get_field(field.source_attrs[0])
        except FieldDoesNotExist:
            return None
        if not column.concrete or column.is_relation:
            return None
        template = _template(field, column.get_internal_type())
        if template is None:
            return None
        timestamps |= template is _TIMESTAMP
        opening = "{" if not parts and not terms else ","
        key = f"'{opening}\"{name}\":'"  # an SQL literal
        if template is _DOCUMENT:
            terms.append(_sql(key))
            parts += [_joined(terms), Cast(F(column.attname), TextField())]
            terms = []
        else:
            terms.append(_sql(f"{key} || {template}", F(column.attname)))
    if not parts and not terms:
        return None
    terms.append(_sql("'}'"))
    parts.append(_joined(terms))
    return JsonRowSql(expressions=tuple(parts), timestamps=timestamps)


def _template(field: serializers.Field, stored: str) -> str | None:
    """The SQL of a column's value as `field` renders it, if it is one of the known kinds."""
    kind = type(field)
    if kind is serializers.CharField and stored in _TEXT_COLUMNS:
        return _TO_JSON
    if (
        kind is serializers.ChoiceField
        and stored in _TEXT_COLUMNS
        and all(type(choice) is str for choice in field.choices)  # type: ignore[attr-defined]
    ):
        return _TO_JSON  # a stored choice renders as itself
    if kind is serializers.IntegerField and stored in _INTEGER_COLUMNS:
        return _TO_JSON
    if kind is serializers.BooleanField and stored == "BooleanField":
        return _TO_JSON
    if (
        kind is serializers.DateTimeField
        and stored == "DateTimeField"
        and getattr(field, "format", api_settings.DATETIME_FORMAT) == ISO_8601
        and not hasattr(field, "timezone")
    ):
        return _TIMESTAMP
    if (
        isinstance(field, serializers.JSONField)
        and type(field).to_representation is serializers.JSONField.to_representation
        and not field.binary
        and stored == "JSONField"
    ):
        return _DOCUMENT
    return None


def _sql(template: str, *columns: F) -> Func:
    return Func(*columns, template=template, output_field=TextField())


def _joined(terms: list[Func]) -> Func:
    return Func(*terms, template="%(expressions)s", arg_joiner=" || ", output_field=TextField())
