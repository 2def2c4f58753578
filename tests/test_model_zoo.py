"""Every registered model through the pipeline on tiny generated images (timm's test-over-the-registry).

Per model: collect 1 sample on a folder of 32x32 PNGs (which builds and records the policy
space), solve a 60% FLOPs budget with the real barrier solver, compress the policy with
one QAT step and export it. The solve runs against a stand-in predictor (the sum of the
encoded coordinates: monotone, like the real one) because one sample cannot fit the MLP
ensemble; what is under test is that every model's space, costs, pruning, quantization
and export work, not predictor quality.
"""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import pytest
import torch

from seernet.cli.main import main
from seernet.models import model_names

SIZE = 32
FAST = [
    "--val-size",
    "4",
    "--samples",
    "1",
    "--finetune-steps",
    "0",
    "--bn-batches",
    "1",
    "--strategy",
    "random",
]


class SumPredictor:
    """Predicted accuracy = sum of the encoded policy (more channels and bits: more accuracy)."""

    def mean_std_torch(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return x.sum(1), torch.zeros(x.shape[0], dtype=x.dtype)


def run(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    import numpy as np
    from PIL import Image

    root = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for cls in ("a", "b"):
            (root / split / cls).mkdir(parents=True)
            for i in range(6):
                Image.fromarray(rng.integers(0, 255, (SIZE, SIZE, 3), dtype=np.uint8)).save(
                    root / split / cls / f"{i}.png"
                )
    return root


@pytest.mark.parametrize("name", model_names())
def test_model_collects_solves_and_compresses(name: str, images: Path, tmp_path: Path):
    from seernet.models import create_model
    from seernet.steps.context import RunContext
    from seernet.steps.solve import BudgetSet, policy_document, solve_one
    from seernet.workspace.checkpoint import save_checkpoint
    from seernet.workspace.folder import Workspace
    from seernet.workspace.store import SampleStore

    torch.manual_seed(0)
    save_checkpoint(tmp_path / "w.pt", create_model(name, 2, 3), {"model": name})
    ws = tmp_path / "ws"
    code, _, err = run(["collect", "--workdir", str(ws), "--model", name, "--dataset", "imagefolder",
                        "--data-dir", str(images), "--weights", str(tmp_path / "w.pt"), "--device", "cpu", *FAST])  # fmt: skip
    assert code == 0, err[-2000:]
    with SampleStore.open(ws / "samples.h5") as store:
        assert len(store) == 1 and 0.0 <= float(store.accuracy[0]) <= 100.0

    w = Workspace(ws)
    ctx = RunContext(w, w.read(), torch.device("cpu"))
    assert ctx.space.input_shape == (1, 3, SIZE, SIZE) and ctx.space.n_groups > 0
    budget = 0.6 * ctx.costs.unpruned()["flops"]
    res = solve_one(ctx, SumPredictor(), BudgetSet({"flops": budget}, "flops-60%", {}), None, None)
    doc = policy_document(ctx, BudgetSet({"flops": budget}, "flops-60%", {}), res, "mixed")
    assert doc.costs["flops"] <= budget
    path = ws / "policies" / "flops-60%.json"
    doc.write(path)

    code, _, err = run(["compress", str(path), "--workdir", str(ws), "--steps", "1", "--batch-size", "4",
                          "--latency-runs", "1", "--device", "cpu", "--json"])  # fmt: skip
    assert code == 0, err[-2000:]
    # metrics.json, not stdout: compress's progress line still precedes its --json output
    metrics = json.loads((ws / "compressed" / "flops-60%" / "metrics.json").read_text())
    assert metrics["costs"]["flops"] == pytest.approx(doc.costs["flops"])
    assert 0.0 <= metrics["accuracy"]["after_finetune"]["val"] <= 100.0
