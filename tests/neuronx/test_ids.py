from neuronx.ids import new_id


def test_ids_are_prefixed_unique_and_sort_in_minting_order():
    ids = [new_id("lead") for _ in range(5000)]
    assert all(i.startswith("lead_") and len(i) == 31 for i in ids)
    assert len(set(ids)) == len(ids)
    assert ids == sorted(ids)
