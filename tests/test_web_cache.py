"""engine.cache.ResultCache: keys, LRU order, the byte bound and the counters."""
import threading

import pytest

from engine.cache import ENTRY_OVERHEAD_BYTES, ResultCache

pytestmark = pytest.mark.timeout(30)


def test_key_depends_on_input_pipeline_and_version():
    base = ResultCache.key(b"image", "grayscale", "0.1.0")
    assert base == ResultCache.key(bytearray(b"image"), "grayscale", "0.1.0")
    assert base == ResultCache.key(memoryview(b"image"), "grayscale", "0.1.0")
    assert base != ResultCache.key(b"image2", "grayscale", "0.1.0")
    assert base != ResultCache.key(b"image", "edge:high=200.0,low=100.0", "0.1.0")
    assert base != ResultCache.key(b"image", "grayscale", "0.2.0")
    # Length prefixes: moving bytes between parts never gives the same key.
    assert ResultCache.key(b"", "ab", "c") != ResultCache.key(b"", "a", "bc")
    assert len(base) == 64


def test_repeated_request_is_a_hit_and_first_is_a_miss():
    cache = ResultCache(max_bytes=10_000)
    key = ResultCache.key(b"in", "grayscale", "1")
    assert cache.get(key) is None
    cache.put(key, b"out", {"width": 3})
    assert cache.get(key) == (b"out", {"width": 3})
    assert (cache.hits, cache.misses, cache.evictions) == (1, 1, 0)
    assert cache.bytes == 3 + ENTRY_OVERHEAD_BYTES


def test_returned_meta_is_a_copy():
    cache = ResultCache()
    meta = {"op_ms": [["edge", 1.0]]}
    cache.put("k", b"x", meta)
    meta["op_ms"].append(["changed", 2])
    got = cache.get("k")[1]
    got["op_ms"].clear()
    assert cache.get("k")[1] == {"op_ms": [["edge", 1.0]]}


def test_least_recently_used_is_evicted_when_bytes_run_out():
    cost = 100 + ENTRY_OVERHEAD_BYTES
    cache = ResultCache(max_bytes=3 * cost)
    for name in "abc":
        cache.put(name, bytes(100))
    cache.get("a")  # a is now the most recently used; b is the oldest
    cache.put("d", bytes(100))
    assert "b" not in cache and {"a", "c", "d"} <= {k for k in "abcd" if k in cache}
    assert cache.evictions == 1 and cache.bytes == 3 * cost and len(cache) == 3


def test_one_large_entry_evicts_several_and_oversize_is_refused():
    cost = 100 + ENTRY_OVERHEAD_BYTES
    cache = ResultCache(max_bytes=4 * cost)
    for name in "abcd":
        cache.put(name, bytes(100))
    assert cache.put("big", bytes(2 * cost)) is True
    assert "a" not in cache and "b" not in cache and "c" not in cache and "d" in cache
    assert cache.evictions == 3
    assert cache.put("huge", bytes(5 * cost)) is False
    assert "huge" not in cache and cache.bytes <= cache.max_bytes


def test_replacing_a_key_does_not_leak_bytes():
    cache = ResultCache(max_bytes=10_000)
    cache.put("k", bytes(1000))
    cache.put("k", bytes(10))
    assert cache.bytes == 10 + ENTRY_OVERHEAD_BYTES and len(cache) == 1


def test_zero_bytes_cache_stores_nothing_but_still_counts():
    cache = ResultCache(max_bytes=0)
    assert cache.put("k", b"x") is False
    assert cache.get("k") is None
    assert cache.stats() == {"hits": 0, "misses": 1, "evictions": 0, "bytes": 0, "entries": 0,
                             "max_bytes": 0, "max_entries": 100_000}


def test_cache_is_bounded_in_entries_as_well_as_bytes():
    cache = ResultCache(max_bytes=10**9, max_entries=3)
    for n in range(10):
        cache.put(f"k{n}", b"x")
    assert len(cache) == 3 and cache.evictions == 7 and "k9" in cache and "k6" not in cache


def test_discard_and_clear_keep_counters():
    cache = ResultCache()
    cache.put("a", b"1")
    cache.put("b", b"2")
    cache.get("a")
    assert cache.discard("a") and not cache.discard("a")
    cache.clear()
    assert len(cache) == 0 and cache.bytes == 0 and cache.hits == 1 and cache.evictions == 0


def test_negative_bound_is_refused():
    with pytest.raises(ValueError):
        ResultCache(max_bytes=-1)


def test_threads_sharing_one_cache_keep_the_bound():
    cost = 50 + ENTRY_OVERHEAD_BYTES
    cache = ResultCache(max_bytes=20 * cost)

    def churn(tid):
        for i in range(500):
            cache.put(f"{tid}-{i}", bytes(50))
            cache.get(f"{tid}-{i // 2}")

    threads = [threading.Thread(target=churn, args=(t,)) for t in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    stats = cache.stats()
    assert stats["bytes"] == stats["entries"] * cost <= cache.max_bytes
    assert stats["hits"] + stats["misses"] == 4 * 500
    assert stats["evictions"] == 4 * 500 - stats["entries"]
