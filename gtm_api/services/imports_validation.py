"""Validating an import's rows in file order — in this process, or in a child process.

Every row goes through `lead_row_validate`, the code `POST /v1/leads` runs, then through the
in-file duplicate check. Validation is CPU-bound Python and is most of an import's work, while
writing a chunk mostly waits on the database; so for a large file, run from a single-threaded
process (a Celery worker), the rows are validated by a forked child and streamed back in
batches, and the two overlap on two cores. Small files, and processes with other threads (where
forking is unsafe), validate in-process. The outcome is the same either way.
"""

import contextlib
import fcntl
import gc
import multiprocessing
import os
import pickle
import queue
import signal
import threading
from collections.abc import Iterable, Iterator
from typing import IO, Any

from django.conf import settings

from gtm_api.lead_fields import FieldError, lead_row_validate
from gtm_api.services.imports_reader import FileRejected, Record, records_read
from gtm_api.services.imports_writer import ValidRow, valid_row

Outcome = tuple[int, ValidRow | list[FieldError]]

_BATCH = 1_000
# A pipe of 1 MiB (Linux's default maximum): fewer, larger reads.
_PIPE_BYTES = 1_048_576


def rows_validated(records: Iterable[Record]) -> Iterator[Outcome]:
    """Each record validated in file order, with the in-file duplicate check.

    A row repeating the `external_id` or `email` of an earlier valid row is a row error
    (`duplicate_in_file`), whatever the mode: the first one wins.
    """
    external_ids: dict[str, int] = {}
    emails: dict[str, int] = {}
    for record in records:
        number = record.number
        if record.errors and not record.data:
            yield number, record.errors
            continue
        clean, field_errors = lead_row_validate(record.data)
        if record.errors:
            reported = {error.field for error in record.errors}
            field_errors = [*record.errors, *(e for e in field_errors if e.field not in reported)]
        if field_errors:
            yield number, field_errors
            continue
        external_id = clean.get("external_id")
        email = clean.get("email")
        if external_id in external_ids or email in emails:
            yield (
                number,
                [
                    FieldError(name, "duplicate_in_file", f"Row {seen[value]} has the same {name}.")
                    for name, value, seen in (
                        ("external_id", external_id, external_ids),
                        ("email", email, emails),
                    )
                    if value is not None and value in seen
                ],
            )
            continue
        if external_id is not None:
            external_ids[external_id] = number
        if email is not None:
            emails[email] = number
        consents = clean.pop("consents", None) or []
        yield number, valid_row(number, clean, consents)


def file_validated(stream: IO[bytes], *, fmt: str, rows: int) -> Iterator[Outcome]:
    """The outcome of every row of the file, from a child process when that pays off."""
    if rows < settings.LEAD_IMPORT_PARALLEL_MIN_ROWS or threading.active_count() > 1:
        yield from rows_validated(records_read(stream, fmt=fmt))
        return
    receiver, sender = multiprocessing.Pipe(duplex=False)
    _widen(sender)
    # A bare fork, not multiprocessing.Process: Celery's pool processes count as daemonic, and
    # those may not start Process children. The child gets the open file (and everything
    # else) by forking; it never uses the database connection it inherits, and leaves through
    # os._exit, so never closes it either.
    pid = os.fork()
    if pid == 0:  # pragma: no cover  (the child; coverage does not follow it)
        code = 1
        try:
            receiver.close()
            _validate_child(stream, fmt, sender)
            code = 0
        finally:
            os._exit(code)
    sender.close()
    # A thread moves the child's batches from the pipe into memory as they come, so the child
    # never waits for the writer; this process unpickles them when it needs them.
    batches: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
    pump = threading.Thread(target=_pump, args=(receiver, batches), daemon=True)
    pump.start()
    finished = False
    try:
        while (data := batches.get()) is not None:
            item = pickle.loads(data)  # noqa: S301  (our child, our pipe)
            if item is None:
                finished = True
                return
            if isinstance(item, FileRejected):
                raise item
            if isinstance(item, str):
                raise RuntimeError(f"validation failed: {item}")
            for number, valid, errors in item:
                if valid is not None:
                    yield number, ValidRow(number, *valid)
                else:
                    yield number, [FieldError(*error) for error in errors]
        raise RuntimeError("the validating process died")
    finally:
        if not finished:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        receiver.close()
        pump.join()


def _pump(receiver: Any, batches: "queue.SimpleQueue[bytes | None]") -> None:
    try:
        while True:
            batches.put(receiver.recv_bytes())
    except (EOFError, OSError):
        batches.put(None)


def _widen(end: Any) -> None:
    """Give the pipe room for a few batches, so the child can run ahead of the writer."""
    if hasattr(fcntl, "F_SETPIPE_SZ"):
        with contextlib.suppress(OSError):
            fcntl.fcntl(end.fileno(), fcntl.F_SETPIPE_SZ, _PIPE_BYTES)


def _validate_child(stream: IO[bytes], fmt: str, sender: Any) -> None:
    # Keep the collector off the objects inherited from the parent: traversing them would copy
    # the pages they live on, and slow validation down.
    gc.freeze()

    def send(item: Any) -> None:
        sender.send_bytes(pickle.dumps(item, protocol=pickle.HIGHEST_PROTOCOL))

    try:
        batch: list[tuple[int, Any, Any]] = []
        # Plain tuples: they unpickle in C, dataclasses one Python call at a time.
        for number, outcome in rows_validated(records_read(stream, fmt=fmt)):
            if isinstance(outcome, ValidRow):
                valid = (outcome.lead, outcome.consents, outcome.columns)
                batch.append((number, valid, None))
            else:
                errors = [(e.field, e.code, e.message) for e in outcome]
                batch.append((number, None, errors))
            if len(batch) == _BATCH:
                send(batch)
                batch = []
        send(batch)
        send(None)
    except FileRejected as exc:
        send(FileRejected(exc.code, exc.message))
    except Exception as exc:
        send(f"{type(exc).__name__}: {exc}")
    finally:
        with contextlib.suppress(OSError):
            sender.close()
