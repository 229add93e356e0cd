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


def new_id(prefix: str) -> str:
    value = _next_value()
    chars = []
    for _ in range(26):
        chars.append(_CROCKFORD[value & 31])
        value >>= 5
    return f"{prefix}_{''.join(reversed(chars))}"
