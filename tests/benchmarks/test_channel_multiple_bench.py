"""The channel-multiple bench on tiny settings: its cells, its resume, its refusal of other settings."""

from __future__ import annotations

import json
import sys

import pytest

from seernet.compression.ort_runtime import has_onnxruntime

pytestmark = pytest.mark.skipif(not has_onnxruntime(), reason="needs onnxruntime")


def run(monkeypatch, capsys, *argv: str) -> str:
    import benchmarks.bench_channel_multiple as bench

    monkeypatch.setattr(sys, "argv", ["bench", *argv])
    bench.main()
    return capsys.readouterr().out


def test_cells_are_measured_once_and_multiples_kept(tmp_path, monkeypatch, capsys):
    flags = ["--out", str(tmp_path), "--multiples", "8,16", "--flops", "30,50", "--runs", "1",
             "--batches", "1"]  # fmt: skip
    out = run(monkeypatch, capsys, *flags)
    assert out.count("measuring") == 5 and "unattainable" in out  # 16: no 30% model
    cells = json.loads((tmp_path / "results.json").read_text())["cells"]
    for n in (8, 16):
        kept = cells[f"N{n}_flops50"]["channels"].values()
        assert all(k % n == 0 or k in (16, 32, 64) for k in kept)
        assert cells[f"N{n}_flops50"]["flops"] <= 0.5 * cells[f"N{n}_flops50"]["unpruned_flops"]
    # one table for every model, timed in turn: the base once, both forms of each attainable cell
    models = json.loads((tmp_path / "results.json").read_text())["latency"]["models"]
    forms = ("pruned (float)", "QDQ int8")
    cells_timed = ("full", "N8_flops30", "N8_flops50", "N16_flops50")
    assert set(models) == {"base (float)"} | {f"{c} {f}" for c in cells_timed for f in forms}
    again = run(monkeypatch, capsys, *flags)
    assert "measuring" not in again and "timing" not in again  # resumed: nothing measured again
    with pytest.raises(SystemExit, match="another --out"):
        run(monkeypatch, capsys, *flags[:-1], "2")
