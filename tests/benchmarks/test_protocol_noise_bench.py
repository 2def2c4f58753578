"""The protocol-noise bench's report, on synthetic measurements."""

from __future__ import annotations

from benchmarks.bench_protocol_noise import report


def test_report_judges_fast_answers_at_the_store_seed_and_on_the_seed_mean():
    # cell a: the anchor was lucky at seed 0 (91 against 90, 90 later); the fast answer is
    # steady at 90.5, so it loses by 0.5 at seed 0 and wins by 0.5 on the mean over seeds
    arms = {"a": {"fast": ("f", 90.5), "hawq": ("h", 91.0)},
            "b": {"fast": ("g", 80.0), "global-ranking": ("r", 79.0)}}  # fmt: skip
    done = {"1|f": 90.5, "2|f": 90.5, "1|h": 90.0, "2|h": 89.0,
            "1|g": 80.0, "2|g": 80.0, "1|r": 79.0, "2|r": 79.0}  # fmt: skip
    text = report(arms, done, [1, 2], 0)
    row = next(line for line in text.splitlines() if line.startswith("a "))
    assert "90.50 +/- 0.00" in row and "90.00 +/- 1.00" in row
    assert row.split()[-2:] == ["-0.50", "+0.50"]
    seed_line = next(line for line in text.splitlines() if line.startswith("at the store's seed"))
    assert "1/2 within 0.3, worst -0.50" in seed_line
    mean_line = next(line for line in text.splitlines() if line.startswith("on the seed mean"))
    assert "2/2 within 0.3, worst +0.50" in mean_line
    # pooled spread: policies f, h, g, r have std 0, 1, 0, 0; median 0, max 1
    assert "median 0.00, max 1.00 over 4 policies" in text


def test_report_of_a_bench_copy_scored_by_a_variant_alone():
    # rescore_fast_solve.sh's copies hold the anchors and one variant's answers, no "fast" arm
    arms = {"a": {"fast[RISK=1]": ("f", 90.5), "hawq": ("h", 91.0)},
            "b": {"fast[RISK=1]": ("g", 80.0), "global-ranking": ("r", 79.0)}}  # fmt: skip
    done = {"1|f": 90.5, "2|f": 90.5, "1|h": 90.0, "2|h": 89.0,
            "1|g": 80.0, "2|g": 80.0, "1|r": 79.0, "2|r": 79.0}  # fmt: skip
    lines = report(arms, done, [1, 2], 0).splitlines()
    assert lines[1].split()[:2] == ["cell", "fast[RISK=1]"]
    assert next(ln for ln in lines if ln.startswith("on the seed mean")).count("2/2 within 0.3")
