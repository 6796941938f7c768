"""Adapter residency: validated loads, least-recently-used eviction of unused adapters, deferred unloads."""

import pytest

from inference.adapter_cache import BASE_ADAPTER, AdapterCache, AdapterGone, AdapterRefused
from specialist.errors import SpecialistError


class _FakeDecoder:
    """Records what the cache loads into and unloads from the decoder."""

    def __init__(self, fail: bool = False):
        self.loaded: list[str] = []
        self.fail = fail

    def load(self, name, path):
        if self.fail:
            raise ValueError("size mismatch for lora_A")
        self.loaded.append(name)

    def unload(self, name):
        self.loaded.remove(name)


@pytest.fixture
def alpha(tiny_adapters):
    return tiny_adapters["alpha"]


def _cache(alpha, max_resident=2, decoder=None):
    from specialist.adapters import read_manifest

    decoder = decoder or _FakeDecoder()
    return AdapterCache(decoder, read_manifest(alpha).base_model.content_sha256, max_resident), decoder


def test_the_least_recently_used_unused_adapter_is_evicted(alpha):
    cache, decoder = _cache(alpha)
    cache.load("a", alpha)
    cache.load("b", alpha)
    cache.touch("a")  # "b" is now the least recently used
    cache.load("c", alpha)
    assert list(cache.resident) == ["a", "c"] and decoder.loaded == ["a", "c"]
    cache.acquire("a", reload=lambda *_: pytest.fail("a is resident"))
    cache.acquire("c", reload=lambda *_: pytest.fail("c is resident"))
    with pytest.raises(SpecialistError, match="slots are in use"):  # both are needed by requests
        cache.load("d", alpha)
    cache.release(["a"])
    cache.load("d", alpha)
    assert list(cache.resident) == ["c", "d"]


def test_an_unload_waits_for_the_last_request_that_needs_the_adapter(alpha):
    cache, decoder = _cache(alpha)
    cache.load("a", alpha)
    cache.acquire("a", reload=lambda *_: None)
    cache.acquire("a", reload=lambda *_: None)
    cache.unload("a")
    assert cache.is_resident("a") and decoder.loaded == ["a"]
    cache.release(["a"])
    assert decoder.loaded == ["a"]
    cache.release(["a"])
    assert not cache.is_resident("a") and decoder.loaded == []


def test_an_evicted_routed_adapter_is_reloaded_and_an_unrouted_one_is_gone(alpha):
    cache, _ = _cache(alpha)
    reloads = []
    cache.route("a", alpha)
    cache.acquire("a", reload=lambda name, path: reloads.append((name, path)))  # routed, never loaded: load first
    assert reloads == [("a", alpha)] and cache.in_use["a"] == 1
    cache.load("a", alpha)
    cache.unload("a")  # pending: a request needs it, and a new request must bring it back
    cache.acquire("a", reload=lambda name, path: reloads.append((name, path)))
    assert len(reloads) == 2
    cache.load("a", alpha)  # resident again: the pending unload is called off
    cache.release(["a", "a"])
    assert cache.is_resident("a")
    cache.unroute("a")
    cache.unload("a")
    with pytest.raises(AdapterGone):
        cache.acquire("a", reload=lambda *_: pytest.fail("not routed: nothing to reload"))
    cache.acquire(BASE_ADAPTER, reload=lambda *_: pytest.fail("the base model is never loaded"))
    assert cache.is_resident(BASE_ADAPTER)


def test_unusable_adapters_are_refused_and_leave_no_trace(alpha, tmp_path):
    cache, decoder = _cache(alpha)
    other_base = AdapterCache(decoder, "0" * 64, 2)
    with pytest.raises(AdapterRefused, match="trained for base model"):
        other_base.load("a", alpha)
    with pytest.raises(AdapterRefused, match="refused"):
        cache.load("empty", tmp_path)  # no adapter files at all
    broken, _ = _cache(alpha, decoder=_FakeDecoder(fail=True))
    with pytest.raises(AdapterRefused, match="could not be loaded: .*size mismatch"):
        broken.load("a", alpha)
    assert not cache.resident and not other_base.resident and not broken.resident and decoder.loaded == []
