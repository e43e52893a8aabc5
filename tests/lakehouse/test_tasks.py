"""The per-worker cache every UDF's model or index goes through."""
from climb_spark.lakehouse.tasks import worker_cached


def test_worker_cached_loads_once_per_kind_and_key():
    loads = []

    def load(tag):
        return lambda: loads.append(tag) or object()

    first = worker_cached("test-model", ("a", 1), load("a"))
    assert worker_cached("test-model", ("a", 1), load("again")) is first
    other = worker_cached("test-model", ("b", 1), load("b"))
    same_key_other_kind = worker_cached("test-index", ("a", 1), load("c"))
    assert loads == ["a", "b", "c"] and len({id(first), id(other), id(same_key_other_kind)}) == 3
