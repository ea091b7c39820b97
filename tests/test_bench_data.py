"""benchmarks/speed/data.py: the order its per-item measurement runs the loader configurations in."""

from collections import Counter

import pytest

from benchmarks.speed.data import CONFIGS, balanced_order


@pytest.mark.parametrize("items", [CONFIGS, tuple("abcdef"), ("x", "y")])
def test_over_n_items_each_configuration_runs_first_once_and_after_each_other_once(items):
    n = len(items)
    rows = [balanced_order(items, k) for k in range(n)]
    assert all(sorted(r) == sorted(items) for r in rows)
    assert Counter(r[0] for r in rows) == Counter(items)
    follows = Counter((r[j], r[j + 1]) for r in rows for j in range(n - 1))
    assert len(follows) == n * (n - 1) and set(follows.values()) == {1}
    assert balanced_order(items, n + 1) == rows[1]
