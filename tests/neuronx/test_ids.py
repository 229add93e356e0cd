import random

from neuronx import ids as id_minting
from neuronx.ids import new_id


def test_ids_are_prefixed_unique_and_sort_in_minting_order():
    ids = [new_id("lead") for _ in range(5000)]
    assert all(i.startswith("lead_") and len(i) == 31 for i in ids)
    assert len(set(ids)) == len(ids)
    assert ids == sorted(ids)


def test_the_body_is_the_crockford_base32_of_the_value(monkeypatch):
    def crockford(value: int) -> str:
        return "".join(
            "0123456789ABCDEFGHJKMNPQRSTVWXYZ"[(value >> (5 * i)) & 31] for i in range(25, -1, -1)
        )

    rng = random.Random(7)
    for value in [
        0,
        1,
        31,
        32,
        1023,
        1024,
        2**128 - 1,
        *(rng.getrandbits(128) for _ in range(2000)),
    ]:
        monkeypatch.setattr(id_minting, "_next_value", lambda value=value: value)
        assert new_id("lead") == f"lead_{crockford(value)}"
