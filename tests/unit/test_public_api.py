"""The package's public surface: __all__ is sorted, complete and importable."""

from __future__ import annotations

import job


def test_all_is_sorted_and_every_name_exists():
    assert list(job.__all__) == sorted(job.__all__)
    for name in job.__all__:
        assert hasattr(job, name), name


def test_every_public_attribute_is_exported():
    public = {
        name
        for name, value in vars(job).items()
        if not name.startswith("_") and not isinstance(value, type(job))
    }
    assert public - {"annotations"} == set(job.__all__)


def test_every_query_block_is_bound():
    """Each named block of queries.sql has its constant in job._queries, and vice versa."""
    from job.backends.postgres import _queries

    constants = {n for n in vars(_queries) if n.isupper() and not n.startswith("_")} - {"QUERIES"}
    assert constants == {name.upper() for name in _queries.QUERIES}
