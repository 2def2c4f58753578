"""The latency-model bench's cells and report, on synthetic results."""

from __future__ import annotations

from benchmarks.bench_latency_model import cells, report


def test_cells_cover_both_bit_modes_of_every_budget():
    got = cells([30, 50], [80])
    assert got["flops30_8"] == ["--flops", "30%", "--bits", "8"]
    assert got["latency80_mixed"] == ["--latency", "80%", "--bits", "mixed"]
    assert len(got) == 6


def answer(predicted: float, low: int) -> dict:
    return {"name": "p", "policy": {}, "predicted_ms": predicted, "unpruned_predicted_ms": 1.0,
            "inputs_below_8": low, "flops_reduction": 2.0}  # fmt: skip


def test_report_gives_absolute_and_share_errors_and_refusals():
    solved = {"a": answer(0.5, 0), "b": answer(0.9, 3), "c": {"refused": "too small"}}
    # the unpruned model measured 1.25x its prediction: the share error removes that drift
    measured = {
        "unpruned_ms": 1.25,
        "ms": {"a": 0.625, "b": 0.9},
        "load_before": 1.0,
        "load_after": 1.0,
    }
    text = report({"batches": {"1": {"solved": solved, "measured": measured, "profile": {}}}})
    line_a = next(line for line in text.splitlines() if line.startswith("b1 a "))
    assert "-20.0%" in line_a and "+0.0%" in line_a  # 0.5 / 0.625 - 1; (0.5/1) / (0.625/1.25) - 1
    line_b = next(line for line in text.splitlines() if line.startswith("b1 b "))
    assert "mixed" in line_b and "+0.0%" in line_b and "+25.0%" in line_b
    summary = next(line for line in text.splitlines() if line.startswith("batch 1: 2 policies"))
    assert "median 10.0%" in summary and "max 20.0%" in summary  # |errors| 20 and 0
    assert "refused by solve" in text and "b1 c" in text
