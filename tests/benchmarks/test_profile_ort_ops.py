"""The ORT operator profile's aggregation, on a synthetic trace."""

from __future__ import annotations

import pytest

from benchmarks.profile_ort_ops import op_times


def test_op_times_sum_kernel_events_per_operator_and_run():
    trace = [
        {"cat": "Node", "name": "conv_a_kernel_time", "dur": 30, "args": {"op_name": "Conv"}},
        {"cat": "Node", "name": "conv_b_kernel_time", "dur": 10, "args": {"op_name": "Conv"}},
        {"cat": "Node", "name": "q_kernel_time", "dur": 6, "args": {"op_name": "QuantizeLinear"}},
        {"cat": "Node", "name": "conv_a_fence_before", "dur": 99, "args": {"op_name": "Conv"}},
        {"cat": "Session", "name": "model_run", "dur": 500, "args": {}},
    ]
    assert op_times(trace, runs=2) == pytest.approx({"Conv": 20.0, "QuantizeLinear": 3.0})
