"""HotFamily: lock-free shards per writer, added up (with retired ones) at scrape."""

from __future__ import annotations

import threading

from prometheus_client import CollectorRegistry, Histogram, generate_latest

from engine.metrics import hot_counter, hot_histogram, new_registry


def scrape(registry: CollectorRegistry) -> list[str]:
    """The sample lines of the registry's text exposition."""
    text = generate_latest(registry).decode()
    return [line for line in text.splitlines() if not line.startswith("#")]


def test_a_counter_scrapes_the_sum_of_its_shards_as_a_total() -> None:
    registry = new_registry()
    frames = hot_counter("easel_test_frames", "Frames.", ["pipeline", "outcome"], registry)
    one, two, other = frames.shard("p", "in"), frames.shard("p", "in"), frames.shard("q", "in")
    one.inc()
    one.inc(2)
    two.inc(3)
    other.inc()
    assert scrape(registry) == [
        'easel_test_frames_total{outcome="in",pipeline="p"} 6.0',
        'easel_test_frames_total{outcome="in",pipeline="q"} 1.0',
    ]


def test_a_histogram_scrapes_cumulative_buckets_count_and_sum_over_its_shards() -> None:
    registry = new_registry()
    seconds = hot_histogram("easel_test_seconds", "Seconds.", ["pipeline"], (0.125, 1.0), registry)
    one, two = seconds.shard("p"), seconds.shard("p")
    one.observe(0.0625)
    one.observe(1.0)  # a value on a bound counts in that bound's bucket
    two.observe(0.25)
    two.observe(4.0)
    assert scrape(registry) == [
        'easel_test_seconds_bucket{le="0.125",pipeline="p"} 1.0',
        'easel_test_seconds_bucket{le="1.0",pipeline="p"} 3.0',
        'easel_test_seconds_bucket{le="+Inf",pipeline="p"} 4.0',
        'easel_test_seconds_count{pipeline="p"} 4.0',
        'easel_test_seconds_sum{pipeline="p"} 5.3125',
    ]


def test_bucket_bounds_are_exposed_as_prometheus_client_writes_them() -> None:
    hot, plain = new_registry(), new_registry()
    hot_histogram("easel_test_batch", "Batch.", ["pipeline"], (1, 2, 4), hot).shard("p")
    Histogram("easel_test_batch", "Batch.", ["pipeline"], buckets=(1, 2, 4), registry=plain).labels(
        "p"
    )
    plain_buckets = [line for line in scrape(plain) if "_bucket" in line]
    hot_buckets = [line for line in scrape(hot) if "_bucket" in line]
    assert hot_buckets == plain_buckets


def test_loop_shard_is_one_shared_shard_per_label_set() -> None:
    registry = new_registry()
    frames = hot_counter("easel_test_frames", "Frames.", ["pipeline"], registry)
    assert frames.loop_shard("p") is frames.loop_shard("p")
    assert frames.loop_shard("q") is not frames.loop_shard("p")
    frames.loop_shard("p").inc()
    frames.loop_shard("p").inc()
    assert scrape(registry) == [
        'easel_test_frames_total{pipeline="p"} 2.0',
        'easel_test_frames_total{pipeline="q"} 0.0',
    ]


def test_retired_counter_shards_keep_their_counts_once() -> None:
    registry = new_registry()
    frames = hot_counter("easel_test_frames", "Frames.", ["pipeline"], registry)
    gone, live = frames.shard("p"), frames.shard("p")
    gone.inc(5)
    live.inc()
    frames.retire(gone, "p")
    assert scrape(registry) == ['easel_test_frames_total{pipeline="p"} 6.0']
    frames.retire(gone, "p")  # retiring twice must not count it twice
    assert scrape(registry) == ['easel_test_frames_total{pipeline="p"} 6.0']
    live.inc()
    frames.retire(live, "p")
    assert scrape(registry) == ['easel_test_frames_total{pipeline="p"} 7.0']


def test_retired_histogram_shards_keep_their_buckets_and_sum() -> None:
    registry = new_registry()
    seconds = hot_histogram("easel_test_seconds", "Seconds.", ["pipeline"], (1.0,), registry)
    first, second = seconds.shard("p"), seconds.shard("p")
    first.observe(0.5)
    second.observe(2.0)
    before = scrape(registry)
    seconds.retire(first, "p")
    seconds.retire(second, "p")
    seconds.retire(second, "p")
    assert scrape(registry) == before
    assert 'easel_test_seconds_count{pipeline="p"} 2.0' in before
    assert 'easel_test_seconds_sum{pipeline="p"} 2.5' in before


def test_writers_on_several_threads_with_a_shard_each_give_exact_totals() -> None:
    registry = new_registry()
    frames = hot_counter("easel_test_frames", "Frames.", ["pipeline"], registry)
    seconds = hot_histogram("easel_test_seconds", "Seconds.", ["pipeline"], (1.0,), registry)
    start = threading.Barrier(5)

    def writer(retire: bool) -> None:
        count, timing = frames.shard("p"), seconds.shard("p")
        start.wait()
        for _ in range(10_000):
            count.inc()
            timing.observe(0.5)
        if retire:
            frames.retire(count, "p")
            seconds.retire(timing, "p")

    threads = [threading.Thread(target=writer, args=(n % 2 == 0,)) for n in range(4)]
    for thread in threads:
        thread.start()
    start.wait()
    while any(thread.is_alive() for thread in threads):
        scrape(registry)  # scrapes while shards are written and retired
    for thread in threads:
        thread.join()
    lines = scrape(registry)
    assert 'easel_test_frames_total{pipeline="p"} 40000.0' in lines
    assert 'easel_test_seconds_bucket{le="1.0",pipeline="p"} 40000.0' in lines
    assert 'easel_test_seconds_sum{pipeline="p"} 20000.0' in lines
