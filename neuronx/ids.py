"""Opaque, prefixed, time-ordered identifiers (monotonic ULID body): `lead_01JF3Q…`.

Within one process, ids minted in the same millisecond still sort in minting order (the random
part is incremented), so ordering by id is ordering by creation for rows one process writes.
"""

import os
import threading
import time

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_RANDOM_BITS = 80
_lock = threading.Lock()
_last_ms = 0
_last_random = 0


def _next_value() -> int:
    global _last_ms, _last_random
    with _lock:
        now_ms = int(time.time() * 1000)
        if now_ms <= _last_ms and _last_random < (1 << _RANDOM_BITS) - 1:
            now_ms, random_part = _last_ms, _last_random + 1
        else:
            random_part = int.from_bytes(os.urandom(10), "big") >> 1  # room to increment
        _last_ms, _last_random = now_ms, random_part
    return (now_ms << _RANDOM_BITS) | random_part


# Crockford base32 of every 10-bit value: the 26 characters (130 bits) two at a time, as bulk
# imports mint hundreds of thousands of ids.
_PAIRS = [high + low for high in _CROCKFORD for low in _CROCKFORD]
_SHIFTS = range(120, -1, -10)


def new_id(prefix: str) -> str:
    value = _next_value()
    return f"{prefix}_{''.join([_PAIRS[(value >> shift) & 1023] for shift in _SHIFTS])}"
