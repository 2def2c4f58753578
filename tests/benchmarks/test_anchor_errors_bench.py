"""The anchor-errors bench: measured minus predicted, split into fast answers and anchors."""

from __future__ import annotations

import pytest

from benchmarks.bench_anchor_errors import errors


def test_errors_split_fast_answers_from_anchors_and_skip_failed_arms():
    results = {
        "c1": {"fast": {"measured": 90.0, "encoded": [1.0, 0.0]},
               "hawq": {"measured": 91.0, "encoded": [0.0, 1.0]},
               "global-ranking": {"measured": 40.0, "encoded": [0.5, 0.5]},  # failed: left out
               "global-ranking-uniform": {"measured": None}},
        "c2": {"fast": {"measured": 80.0, "encoded": [0.5, 0.0]}},
    }  # fmt: skip
    rate = lambda x: 80.0 + 10.0 * float(x[0])  # noqa: E731
    out = errors(results, rate, min_acc=50.0)
    assert out["fast"] == pytest.approx([0.0, -5.0])
    assert out["anchor"] == pytest.approx([11.0])
