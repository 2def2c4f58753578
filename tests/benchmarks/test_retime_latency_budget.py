"""retime_latency_budget's report: shares of the unpruned model against the budget's."""

from __future__ import annotations

from benchmarks import retime_latency_budget as retime


def test_report_counts_exports_within_the_budgets_share():
    results = {
        "latency70_8bit": {"name": "a", "share_allowed": 0.7, "share_measured": 0.8,
                           "solve": {"latency_ms": 0.2, "unpruned_latency_ms": 0.4}},
        "latency90_8bit": {"name": "b", "share_allowed": 0.9, "share_measured": 0.85},
        "latency60_8bit": {"refused": "below the smallest model"},
    }  # fmt: skip
    cells = retime.answered(results)
    medians = {"unpruned": 0.5, "latency70_8bit:export": 0.30, "latency70_8bit:table form": 0.31,
               "latency90_8bit:export": 0.47, "latency90_8bit:table form": 0.46}  # fmt: skip
    text = retime.report(cells, medians)
    assert list(cells) == ["latency70_8bit", "latency90_8bit"]
    assert "0.600" in text and "0.940" in text and "0.500" in text  # 0.30/0.5, 0.47/0.5, refine's
    assert text.endswith("exports within the budget's share: 1/2")
