"""Validating an import's rows in file order — in this process, or spread over child processes.

Every row goes through `lead_row_validate`, the code `POST /v1/leads` runs, then through the
in-file duplicate check. Validation is CPU-bound Python and most of an import's work, while
writing a chunk mostly waits on the database. So for a large file, run from a single-threaded
process (a Celery worker), forked children — one per CPU — validate the file's parts (found by
the counting pass, `records_index`), each reading its own parts, and stream the outcomes back;
the worker takes them in file order, checks duplicates and writes, while the children validate
the rows after. Small files, and processes with other threads (where forking is unsafe),
validate in-process. The outcome is the same either way.
"""

import contextlib
import fcntl
import gc
import itertools
import multiprocessing
import os
import pickle
import queue
import signal
import threading
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from typing import IO, Any

from django.conf import settings

from gtm_api.lead_fields import FieldError, lead_row_validate
from gtm_api.services.imports_reader import FileIndex, FileRejected, Record, records_read
from gtm_api.services.imports_writer import ValidRow, lead_columns

Outcome = tuple[int, ValidRow | list[FieldError]]

# Parts a child may have validated ahead of the writer, besides the one in its pipe.
_AHEAD = 2
# How much lower the children's scheduling priority is than the worker's (see `os.nice`).
_NICENESS = 10
# A pipe of 1 MiB (Linux's default maximum): fewer, larger reads.
_PIPE_BYTES = 1_048_576


def rows_validated(records: Iterable[Record]) -> Iterator[Outcome]:
    """Each record validated in file order, with the in-file duplicate check."""
    for part in _parts(_checked(records), 1_000, _Keys()):
        yield from part


def _parts(outcomes: Iterator[Outcome], size: int, keys: "_Keys") -> Iterator[list[Outcome]]:
    """The outcomes, `size` at a time, checked for duplicates."""
    while part := list(itertools.islice(outcomes, size)):
        yield keys.deduplicated(part)


def _checked(records: Iterable[Record]) -> Iterator[Outcome]:
    """Each record validated on its own (the duplicate check needs the rows before it)."""
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
        consents = clean.pop("consents", None) or []
        yield number, ValidRow((number, lead_columns(clean), consents))


class _Keys:
    """The in-file duplicate check: a row repeating the `external_id` or `email` of an earlier
    valid row is a row error (`duplicate_in_file`), whatever the mode: the first one wins."""

    def __init__(self) -> None:
        self.external_ids: dict[str, int] = {}
        self.emails: dict[str, int] = {}

    def deduplicated(self, part: list[Outcome]) -> list[Outcome]:
        """The next outcomes in file order, each duplicate replaced by its errors (in place)."""
        external_ids, emails = self.external_ids, self.emails
        for position, (number, outcome) in enumerate(part):
            if type(outcome) is not ValidRow:
                continue
            external_id, email = outcome.keys()
            if external_id in external_ids or email in emails:
                part[position] = (
                    number,
                    [
                        FieldError(
                            name, "duplicate_in_file", f"Row {seen[value]} has the same {name}."
                        )
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
        return part


def file_validated(
    open_file: Callable[[], IO[bytes]], *, fmt: str, index: FileIndex
) -> Generator[list[Outcome], None, None]:
    """The outcomes of the file's rows in order, a part of the file (`index.span` rows) at a
    time; from child processes when that pays off."""
    keys = _Keys()
    if index.rows < settings.LEAD_IMPORT_PARALLEL_MIN_ROWS or threading.active_count() > 1:
        with open_file() as stream:
            yield from _parts(_checked(records_read(stream, fmt=fmt)), index.span, keys)
        return
    processes = min(_cpus(), len(index.starts))
    for part in _from_children(open_file, fmt, index, processes):
        yield keys.deduplicated(part)


def _cpus() -> int:
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1  # pragma: no cover  (not Linux)


def _from_children(
    open_file: Callable[[], IO[bytes]], fmt: str, index: FileIndex, processes: int
) -> Iterator[list[Outcome]]:
    """Part k of the file is validated by child k mod `processes`, which sends it as one
    message; the parts are taken in order."""
    parts = len(index.starts)
    children: list[tuple[int, Any]] = []
    pumps: list[threading.Thread] = []
    stop = threading.Event()
    finished = False
    try:
        # Every child is forked before any thread starts: forking with threads is unsafe.
        for child in range(processes):
            receiver, sender = multiprocessing.Pipe(duplex=False)
            _widen(sender)
            # A bare fork, not multiprocessing.Process: Celery's pool processes count as
            # daemonic, and those may not start Process children. A child gets the parent's
            # memory by forking; it opens the file for itself, never uses the database
            # connection it inherits, and leaves through os._exit, so never closes it either.
            pid = os.fork()
            if pid == 0:  # pragma: no cover  (a child; coverage does not follow it)
                code = 1
                try:
                    receiver.close()
                    for _, other in children:
                        other.close()
                    _validate_parts(open_file, fmt, index, range(child, parts, processes), sender)
                    code = 0
                finally:
                    os._exit(code)
            sender.close()
            children.append((pid, receiver))
        # A thread per child moves its parts from the pipe into memory as they come, so the
        # child runs ahead of the writer (by `_AHEAD` parts); they are unpickled when needed.
        inboxes: list[queue.Queue[bytes | None]] = []
        for _, receiver in children:
            inbox: queue.Queue[bytes | None] = queue.Queue(maxsize=_AHEAD)
            pump = threading.Thread(target=_pump, args=(receiver, inbox, stop), daemon=True)
            pump.start()
            inboxes.append(inbox)
            pumps.append(pump)
        for part in range(parts):
            data = inboxes[part % processes].get()
            if data is None:
                raise RuntimeError("a validating process died")
            item = pickle.loads(data)  # noqa: S301  (our child, our pipe)
            if isinstance(item, FileRejected):
                raise item
            if isinstance(item, str):
                raise RuntimeError(f"validation failed: {item}")
            # A valid row comes as `(number, columns, consents)`, a failed one as
            # `(number, None, errors)`.
            yield [
                (row[0], ValidRow(row))
                if row[1] is not None
                else (row[0], [FieldError(*error) for error in row[2]])
                for row in item
            ]
        finished = True
    finally:
        stop.set()
        for pid, _ in children:
            if not finished:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        for pump in pumps:
            pump.join()
        for _, receiver in children:
            receiver.close()


def _pump(receiver: Any, inbox: "queue.Queue[bytes | None]", stop: threading.Event) -> None:
    data: bytes | None
    while True:
        try:
            data = receiver.recv_bytes()
        except (EOFError, OSError):
            data = None
        while True:
            try:
                inbox.put(data, timeout=0.1)
                break
            except queue.Full:
                if stop.is_set():  # the parts are no longer wanted
                    return
        if data is None:
            return


def _widen(end: Any) -> None:
    """Give the pipe room for a part, so the child can run ahead of the writer."""
    if hasattr(fcntl, "F_SETPIPE_SZ"):
        with contextlib.suppress(OSError):
            fcntl.fcntl(end.fileno(), fcntl.F_SETPIPE_SZ, _PIPE_BYTES)


def _validate_parts(
    open_file: Callable[[], IO[bytes]],
    fmt: str,
    index: FileIndex,
    parts: Sequence[int],
    sender: Any,
) -> None:
    # Keep the collector off the objects inherited from the parent: traversing them would copy
    # the pages they live on, and slow validation down.
    gc.freeze()
    # Writing is the import's critical path (the worker, then PostgreSQL, chunk after chunk);
    # validation runs ahead of it, so it takes the CPU time writing leaves.
    os.nice(_NICENESS)

    def send(item: Any) -> None:
        sender.send_bytes(pickle.dumps(item, protocol=pickle.HIGHEST_PROTOCOL))

    try:
        with open_file() as stream:
            for part in parts:
                records = records_read(
                    stream, fmt=fmt, offset=index.starts[part], first_row=part * index.span + 1
                )
                # Plain tuples: they unpickle in C, other classes one Python call at a time.
                batch: list[tuple[int, Any, Any]] = []
                for number, outcome in _checked(itertools.islice(records, index.span)):
                    if isinstance(outcome, ValidRow):
                        batch.append((number, outcome.columns, outcome.consents))
                    else:
                        batch.append(
                            (number, None, [(e.field, e.code, e.message) for e in outcome])
                        )
                send(batch)
    except FileRejected as exc:
        send(FileRejected(exc.code, exc.message))
    except Exception as exc:
        send(f"{type(exc).__name__}: {exc}")
    finally:
        with contextlib.suppress(OSError):
            sender.close()
