"""The anchor-errors bench: measured minus predicted, split into fast answers and anchors."""

from __future__ import annotations

import pytest

from benchmarks.bench_anchor_errors import errors


def test_errors_split_fast_answers_from_anchors_and_skip_failed_arms():
    arms = {  # bench_protocol_noise.arms_of's form: (policy key, accuracy)
        "c1": {"fast": ("[1.0, 0.0]", 90.0), "hawq": ("[0.0, 1.0]", 91.0),
               "global-ranking": ("[0.5, 0.5]", 40.0)},  # failed: left out
        "c2": {"fast": ("[0.5, 0.0]", 80.0)},
    }  # fmt: skip
    rate = lambda x: 80.0 + 10.0 * float(x[0])  # noqa: E731
    out = errors(arms, rate, min_acc=50.0)
    assert out["fast"] == pytest.approx([0.0, -5.0])
    assert out["anchor"] == pytest.approx([11.0])
