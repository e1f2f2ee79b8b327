"""Parked Sparkplug messages in Redis, shared by bridges: taking some leaves the others."""

from __future__ import annotations

from plantstream.store import sparkplug_state as state


def test_unpark_removes_only_what_was_taken_even_with_two_bridges(redis_client):
    node = state.node_key("f1", "e1")
    first = [(node, f"spBv1.0/f1/DDATA/e1/d{i}", b"p%d" % i, i) for i in range(3)]
    state.park(client=redis_client, messages=first, max_len=100)
    seen_by_a = state.parked(client=redis_client, node=node)
    seen_by_b = state.parked(client=redis_client, node=node)  # another bridge, same moment
    # a third bridge parks one more while the two replay
    late = (node, "spBv1.0/f1/DDATA/e1/d9", b"late", 9)
    state.park(client=redis_client, messages=[late], max_len=100)
    state.unpark(client=redis_client, node=node, entries=[e for *_, e in seen_by_a[:2]])
    state.unpark(client=redis_client, node=node, entries=[e for *_, e in seen_by_b[:2]])
    left = [
        (topic, payload) for topic, payload, _, _ in state.parked(client=redis_client, node=node)
    ]
    assert left == [("spBv1.0/f1/DDATA/e1/d2", b"p2"), ("spBv1.0/f1/DDATA/e1/d9", b"late")]
