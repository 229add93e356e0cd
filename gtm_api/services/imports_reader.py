"""Reading import files one record at a time: CSV with a header of lead field names, or NDJSON.

Files are read as bytes from the storage API and decoded here, so a row with bytes that are not
UTF-8 is one row error (`invalid_encoding`), not a failed file. Problems with the file as a whole
(empty, a header naming unknown columns, UTF-16, a line too long to be a lead) raise
`FileRejected`; they are found by the first pass over the file (`records_index`), before any row
is written.

Rows are numbered from 1 in file order, counting records only: for a CSV the first row after
the header is row 1 (line 2 of a spreadsheet); blank lines are skipped and not counted.
"""

import csv
import io
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import IO, Any

from django.db.models.fields.files import FieldFile

from gtm_api.lead_fields import LEAD_FIELDS, LEAD_TEXT_FIELDS, FieldError

# Longest physical line accepted: far more than any valid lead (attributes and consents
# included), small enough that a file without newlines cannot exhaust a worker's memory.
MAX_LINE_BYTES = 1_048_576
# A failed-rows file may be submitted again as it is: its `error` column is ignored.
ERROR_COLUMN = "error"
ATTRIBUTE_PREFIX = "attributes."
REQUIRED_COLUMNS = tuple(spec.name for spec in LEAD_TEXT_FIELDS if spec.required)
_JSON_COLUMNS = ("attributes", "consents")
_SNIFF_BYTES = 4096
_BOMS = {
    b"\xff\xfe\x00\x00": "UTF-32",
    b"\x00\x00\xfe\xff": "UTF-32",
    b"\xff\xfe": "UTF-16",
    b"\xfe\xff": "UTF-16",
}
_UTF8_BOM = b"\xef\xbb\xbf"
_BLANK = _UTF8_BOM + b" \t\r\n"


class FileRejected(Exception):
    """The file as a whole cannot be imported; `code` says why (see docs/imports.md)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(slots=True)
class Record:
    """One record of a file: what `lead_row_validate` reads, or why it could not be read."""

    number: int
    data: dict[str, Any]
    errors: list[FieldError] = field(default_factory=list)


# -- format -------------------------------------------------------------------------------------

_NDJSON_TYPES = {"application/x-ndjson", "application/ndjson", "application/jsonl"}
_CSV_TYPES = {"text/csv", "application/csv", "text/comma-separated-values"}


def format_detect(*, name: str, content_type: str, head: bytes) -> str:
    """`csv` or `ndjson`, from the media type, else the file name, else the first byte."""
    media_type = content_type.split(";")[0].strip().lower()
    if media_type in _NDJSON_TYPES:
        return "ndjson"
    if media_type in _CSV_TYPES:
        return "csv"
    lowered = name.lower()
    if lowered.endswith((".ndjson", ".jsonl")):
        return "ndjson"
    if lowered.endswith(".csv"):
        return "csv"
    return "ndjson" if head.lstrip(_BLANK).startswith(b"{") else "csv"


def encoding_check(head: bytes) -> None:
    """UTF-8 (with or without BOM) is the only encoding; refuse UTF-16/32 up front."""
    for bom, name in _BOMS.items():
        if head.startswith(bom):
            raise FileRejected(
                "unsupported_encoding",
                f"The file is {name}; save it as UTF-8 (“CSV UTF-8” in spreadsheet programs).",
            )
    if b"\x00" in head[:_SNIFF_BYTES]:
        raise FileRejected(
            "unsupported_encoding",
            "The file contains NUL bytes, as UTF-16 text does; save it as UTF-8.",
        )


def _lines(stream: IO[bytes], offset: list[int] | None = None) -> Iterator[bytes]:
    """Physical lines, each at most MAX_LINE_BYTES; `offset[0]` counts the bytes handed out."""
    number = 0
    while True:
        line = stream.readline(MAX_LINE_BYTES + 1)
        if not line:
            return
        number += 1
        if len(line) > MAX_LINE_BYTES:
            raise FileRejected(
                "line_too_long",
                f"Line {number} is longer than {MAX_LINE_BYTES} bytes: this is not a lead file.",
            )
        if offset is not None:
            offset[0] += len(line)
        yield line


def _decoded(lines: Iterable[bytes], *, first: bool = True) -> Iterator[str]:
    # Undecodable bytes survive as lone surrogates and are reported per row (`_bad_encoding`).
    # Only the file's first line may start with a byte order mark.
    for line in lines:
        if first:
            line = line.removeprefix(_UTF8_BOM)
            first = False
        yield line.decode("utf-8", "surrogateescape")


def _bad_encoding(value: str) -> bool:
    if value.isascii():
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


# -- CSV ----------------------------------------------------------------------------------------

_TEXT, _ATTRIBUTE, _JSON, _IGNORED = range(4)


@dataclass(frozen=True)
class CsvHeader:
    names: list[str]
    # (column index, kind, lead field or attribute key) for every column that is read.
    plan: list[tuple[int, int, str]]


def csv_header(names: list[str]) -> CsvHeader:
    """Check the header row: known, distinct columns, the required ones present."""
    cleaned = [name.strip() for name in names]
    if not any(cleaned):
        raise FileRejected("empty_file", "The file has no header row.")
    if any(_bad_encoding(name) for name in cleaned):
        raise FileRejected(
            "unsupported_encoding", "The header row is not UTF-8; save the file as UTF-8."
        )
    seen = set(cleaned)
    duplicates = sorted({name for name in cleaned if cleaned.count(name) > 1})
    if duplicates:
        raise FileRejected(
            "duplicate_column", f"Columns appear more than once: {', '.join(duplicates)}."
        )
    plan: list[tuple[int, int, str]] = []
    unknown = []
    for index, name in enumerate(cleaned):
        if name == ERROR_COLUMN:
            continue
        if name in _JSON_COLUMNS:
            plan.append((index, _JSON, name))
        elif name in LEAD_FIELDS:
            plan.append((index, _TEXT, name))
        elif name.startswith(ATTRIBUTE_PREFIX) and len(name) > len(ATTRIBUTE_PREFIX):
            plan.append((index, _ATTRIBUTE, name[len(ATTRIBUTE_PREFIX) :]))
        else:
            unknown.append(name or f"(column {index + 1} has no name)")
    if unknown:
        raise FileRejected(
            "unknown_column",
            f"Unknown columns: {', '.join(unknown)}. Columns are lead fields "
            f"({', '.join(LEAD_FIELDS)}, consents) or attributes.<key>.",
        )
    missing = [name for name in REQUIRED_COLUMNS if name not in seen]
    if missing:
        raise FileRejected("missing_column", f"Required columns are missing: {', '.join(missing)}.")
    return CsvHeader(names=cleaned, plan=plan)


def _csv_rows(
    stream: IO[bytes], offset: list[int] | None = None, *, first: bool = True
) -> Iterator[list[str]]:
    # The reader asks for a line only when the record needs one, so after each record
    # `offset[0]` is where the next one starts.
    try:
        yield from csv.reader(_decoded(_lines(stream, offset), first=first), strict=False)
    except csv.Error as exc:
        raise FileRejected("malformed_file", f"The file is not readable as CSV: {exc}.") from None


def _blank(values: list[str]) -> bool:
    return not values or (len(values) == 1 and not values[0].strip())


def _numbered(rows: Iterator[list[str]], number: int = 1) -> Iterator[tuple[int, list[str]]]:
    """Data rows with their numbers (from `number`); blank lines are skipped and not counted."""
    number -= 1
    for values in rows:
        if _blank(values):
            continue
        number += 1
        yield number, values


def _csv_records(stream: IO[bytes], offset: int = 0, first_row: int = 1) -> Iterator[Record]:
    rows = _csv_rows(stream)
    header = csv_header(next(rows, []))
    if offset:
        stream.seek(offset)
        rows = _csv_rows(stream, first=False)
    width = len(header.names)
    for number, values in _numbered(rows, first_row):
        if len(values) != width:
            message = f"The row has {len(values)} values; the header has {width} columns."
            yield Record(number, {}, [FieldError("", "ragged_row", message)])
            continue
        yield _csv_record(number, values, header)


def _csv_record(number: int, values: list[str], header: CsvHeader) -> Record:
    data: dict[str, Any] = {}
    errors: list[FieldError] = []
    attributes: dict[str, Any] | None = None
    for index, kind, name in header.plan:
        value = values[index]
        if not value or value.isspace():
            continue  # an empty cell is a field not given
        if not value.isascii() and _bad_encoding(value):
            column = header.names[index]
            errors.append(FieldError(column, "invalid_encoding", "The value is not UTF-8 text."))
            continue
        if kind == _TEXT:
            data[name] = value
        elif kind == _ATTRIBUTE:
            if attributes is None:
                attributes = {}
            attributes[name] = value
        else:
            try:
                data[name] = _json(value)
            except ValueError:
                errors.append(FieldError(name, "invalid_json", f"The {name} cell is not JSON."))
    if attributes is not None:
        merged = data.get("attributes")
        data["attributes"] = {**merged, **attributes} if isinstance(merged, dict) else attributes
    return Record(number, data, errors)


# -- NDJSON -------------------------------------------------------------------------------------


def _ndjson_lines(
    stream: IO[bytes], offset: list[int] | None = None, *, first: bool = True
) -> Iterator[bytes]:
    """The lines that are records: blank lines are skipped and not counted."""
    for raw in _lines(stream, offset):
        if first:
            raw = raw.removeprefix(_UTF8_BOM)
            first = False
        if raw.strip():
            yield raw


def _ndjson_records(stream: IO[bytes], offset: int = 0, first_row: int = 1) -> Iterator[Record]:
    if offset:
        stream.seek(offset)
    number = first_row - 1
    for raw in _ndjson_lines(stream, first=not offset):
        number += 1
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            yield Record(
                number, {}, [FieldError("", "invalid_encoding", "The line is not UTF-8 text.")]
            )
            continue
        try:
            data = _json(text)
        except ValueError as exc:
            yield Record(number, {}, [FieldError("", "malformed_row", f"Not valid JSON: {exc}.")])
            continue
        if not isinstance(data, dict):
            yield Record(
                number,
                {},
                [FieldError("", "malformed_row", "Each line must be one JSON object (a lead).")],
            )
            continue
        yield Record(number, data)


def _json(text: str) -> Any:
    """JSON as the API reads a request body: NaN and Infinity are not JSON (nor storable)."""
    return json.loads(text, parse_constant=_no_constant)


def _no_constant(name: str) -> Any:
    raise ValueError(f"Out of range float values are not JSON compliant: {name}")


# -- entry points -------------------------------------------------------------------------------


def stored_file_open(file: FieldFile) -> IO[bytes]:
    """An import's stored file, opened for reading bytes through its storage."""
    assert file.name, "the import has no stored file"
    return file.storage.open(file.name, "rb")  # type: ignore[return-value]


def _start(stream: IO[bytes]) -> bytes:
    """Check the encoding from the first bytes and rewind; returns those bytes."""
    head = stream.read(_SNIFF_BYTES)
    stream.seek(0)
    encoding_check(head)
    return head


def records_read(
    stream: IO[bytes], *, fmt: str, offset: int = 0, first_row: int = 1
) -> Iterator[Record]:
    """Every record of the file in order, or from the byte `offset` where row `first_row`
    starts (one of a `FileIndex`'s `starts`). Raises `FileRejected` for a problem with the
    file."""
    _start(stream)
    if fmt == "csv":
        return _csv_records(stream, offset, first_row)
    return _ndjson_records(stream, offset, first_row)


@dataclass(frozen=True)
class FileIndex:
    """How many records a file has, and where every `span` of them starts: parts of the file
    can then be read, and validated, apart from each other."""

    rows: int
    span: int
    # The byte offsets of rows 1, span + 1, 2 × span + 1, …
    starts: list[int]


def records_index(stream: IO[bytes], *, fmt: str, limit: int, span: int) -> FileIndex:
    """The first, structural pass over the whole file: how many records it has (≤ `limit`),
    and where each part of `span` records starts.

    Reads every line (so a line too long or a broken file is found before any row is written)
    but builds no record.
    """
    _start(stream)
    offset = [0]
    ends: Iterable[Any]
    if fmt == "csv":
        rows = _csv_rows(stream, offset)
        csv_header(next(rows, []))
        # A record starts where the previous one (or the blank lines after it) ended.
        ends = (None for values in rows if not _blank(values))
    else:
        ends = _ndjson_lines(stream, offset)
    starts = []
    count = 0
    start = offset[0]
    for _ in ends:
        if count % span == 0:
            starts.append(start)
        count += 1
        if count > limit:
            raise FileRejected(
                "too_many_rows", f"The file has more than {limit} rows; split it into several."
            )
        start = offset[0]
    if count == 0:
        raise FileRejected("empty_file", "The file has no rows.")
    return FileIndex(rows=count, span=span, starts=starts)


def header_check(stream: IO[bytes], *, fmt: str) -> None:
    """The cheap checks done when a file is uploaded: encoding, and a CSV's header row."""
    if not _start(stream).strip(_BLANK):
        raise FileRejected("empty_file", "The file is empty.")
    if fmt == "csv":
        csv_header(next(_csv_rows(stream), []))
        stream.seek(0)


def failed_rows_csv(
    stream: IO[bytes], *, fmt: str, failures: Iterable[tuple[int, str]]
) -> Iterator[str]:
    """The failed rows of the file with an `error` column, as chunks of CSV text.

    `failures` are `(row, error text)` in row order. For a CSV the original header and cells
    are kept, so the file can be fixed and submitted again (its `error` column is ignored on
    input). NDJSON rows become CSV columns of the lead fields; `attributes` and `consents`
    cells hold JSON, which a CSV import reads back.
    """
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")

    def flush() -> str:
        text = buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
        return text

    pending = iter(failures)
    due = next(pending, None)
    stream.seek(0)
    if fmt == "csv":
        rows = _csv_rows(stream)
        header = next(rows, [])
        keep = [index for index, name in enumerate(header) if name.strip() != ERROR_COLUMN]
        writer.writerow([_printable(header[index]) for index in keep] + [ERROR_COLUMN])
        yield flush()
        for number, values in _numbered(rows):
            if due is None:
                return
            if number == due[0]:
                cells = [values[index] if index < len(values) else "" for index in keep]
                cells += values[len(header) :]  # a ragged row keeps its extra values
                writer.writerow([_printable(cell) for cell in cells] + [due[1]])
                yield flush()
                due = next(pending, None)
        return
    columns = [*LEAD_FIELDS, "consents"]
    writer.writerow([*columns, ERROR_COLUMN])
    yield flush()
    for record in _ndjson_records(stream):
        if due is None:
            return
        if record.number == due[0]:
            writer.writerow([*(_cell(record.data.get(name)) for name in columns), due[1]])
            yield flush()
            due = next(pending, None)


def _printable(value: str) -> str:
    return value.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False)
