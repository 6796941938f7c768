"""The prefix cache keeps entries within its byte budget, least recently used dropped first, and per adapter slot."""

import torch

from inference.prefix_cache import PrefixCache, common_prefix_len


def _layers(n_bytes: int):
    return [(torch.zeros(n_bytes // 8, dtype=torch.float32), torch.zeros(n_bytes // 8, dtype=torch.float32))]


def test_least_recently_used_entries_leave_first_and_a_slot_can_be_dropped():
    cache = PrefixCache(max_bytes=300)
    for key in [(1, (1,)), (1, (2,)), (2, (1,))]:
        cache.put(key, _layers(100))
    assert cache.get((1, (1,))) is not None  # now the most recently used
    cache.put((2, (2,)), _layers(100))  # over budget: the least recently used entry, (1, (2,)), goes
    assert cache.get((1, (2,))) is None and cache.get((2, (1,))) is not None
    assert (cache.hits, cache.misses) == (2, 1)
    cache.drop_slot(2)
    assert cache.get((2, (1,))) is None and cache.get((2, (2,))) is None and cache.get((1, (1,))) is not None
    lone = PrefixCache(max_bytes=10)
    lone.put((1, (1,)), _layers(100))  # bigger than the budget alone: kept, the newest entry always is
    assert lone.get((1, (1,))) is not None


def test_common_prefix_len():
    assert common_prefix_len([1, 2, 3], [1, 2, 4, 5]) == 2
    assert common_prefix_len([], [1]) == 0 and common_prefix_len([1, 2], [1, 2]) == 2
