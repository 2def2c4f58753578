"""Hardware-friendly channel counts: ``SpaceChoices.channel_multiple`` (collect's space) and
``solve --channel-multiple`` (a solve restricted to the collected counts that are multiples)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from seernet.cli.main import main
from seernet.models import create_model
from seernet.space.graph import GroupPlan, build_space, keep_counts
from seernet.space.policy import SpaceChoices
from seernet.workspace.checkpoint import save_checkpoint

FAST = ["--finetune-steps", "0", "--bn-batches", "1", "--val-limit", "50", "--strategy", "random"]
SHAPE = (1, 1, 28, 28)
# SpaceChoices().fingerprint of resnet20 at 28x28, computed at commit 9929a28, before
# channel_multiple existed: registry workspaces and stores are keyed on it.
FINGERPRINT_BEFORE = "1abd9131d0cb7d4b"
FINGERPRINT_BEFORE_CUSTOM = "ba41d222a01e63e3"  # max_prune 0.5, prune_step 0.25, bits (4, 8)


def is_multiple_or_full(counts, channels: int, n: int) -> bool:
    return all(k >= 1 and (k % n == 0 or k == channels) for k in counts)


@settings(max_examples=300, deadline=None)
@given(
    channels=st.integers(1, 1024),
    n=st.integers(1, 64),
    max_prune=st.sampled_from([0.0, 0.3, 0.5, 0.75, 0.9]),
    step=st.sampled_from([0.01, 0.05, 0.125, 0.25, 1.0]),
)
def test_keep_counts_are_multiples_or_full(channels, n, max_prune, step):
    choices = SpaceChoices(max_prune=max_prune, prune_step=step, channel_multiple=n)
    counts = choices.keep_counts(channels)
    assert is_multiple_or_full(counts, channels, n)
    assert list(counts) == sorted(set(counts)) and counts[-1] == channels
    plain = SpaceChoices(max_prune=max_prune, prune_step=step).keep_counts(channels)
    assert counts[0] >= plain[0]  # rounded up: never more pruning than max_prune allows
    if channels < n:
        assert counts == (channels,)


@settings(max_examples=200, deadline=None)
@given(unit=st.integers(1, 16), n_units=st.integers(1, 64), n=st.integers(1, 32))
def test_whole_unit_counts_are_multiples_of_both(unit, n_units, n):
    """Grouped convolutions and GroupNorm prune whole units: counts are multiples of lcm(N, unit)."""
    units = tuple(tuple(j + b * n_units for b in range(unit)) for j in range(n_units))
    channels = unit * n_units
    counts = keep_counts(GroupPlan(units=units), channels, SpaceChoices(channel_multiple=n))
    assert is_multiple_or_full(counts, channels, math.lcm(n, unit))
    assert list(counts) == sorted(set(counts)) and counts[-1] == channels


def test_the_default_space_keeps_its_fingerprint():
    model = create_model("resnet20", 10, 1)
    assert build_space(model, SHAPE).fingerprint == FINGERPRINT_BEFORE
    assert (
        build_space(model, SHAPE, SpaceChoices(channel_multiple=1)).fingerprint
        == FINGERPRINT_BEFORE
    )
    custom = SpaceChoices(max_prune=0.5, prune_step=0.25, bits=(4, 8))
    assert build_space(model, SHAPE, custom).fingerprint == FINGERPRINT_BEFORE_CUSTOM
    eight = build_space(model, SHAPE, SpaceChoices(channel_multiple=8))
    assert eight.fingerprint != FINGERPRINT_BEFORE
    assert eight.describe()["choices"]["channel_multiple"] == 8


def test_a_group_left_one_count_is_kept_with_a_note():
    space = build_space(create_model("resnet20", 10, 1), SHAPE, SpaceChoices(channel_multiple=16))
    assert all(
        g.channels > 16 and is_multiple_or_full(g.keep, g.channels, 16) for g in space.groups
    )
    assert sum("no choice in multiples of 16" in n for n in space.notes) == 4


def test_group_norm_blocks_and_the_multiple_together():
    import torchvision.models as tvm
    from torch import nn

    gn = tvm.resnet18(weights=None, norm_layer=lambda c: nn.GroupNorm(8, c)).eval()
    space = build_space(gn, (1, 3, 32, 32), SpaceChoices(channel_multiple=12))
    assert space.groups and all(is_multiple_or_full(g.keep, g.channels, 24) for g in space.groups)


def test_restricted_levels_are_the_multiples_and_the_full_count():
    space = build_space(create_model("resnet20", 10, 1), SHAPE)
    levels = space.levels(8)
    for i, g in enumerate(space.groups):
        counts = g.keep[0] + levels[i] * (g.channels - g.keep[0])
        assert np.allclose(counts, [k for k in g.keep if k % 8 == 0 or k == g.channels])
    bits = zip(levels[space.n_groups :], space.levels()[space.n_groups :], strict=True)
    assert all(np.array_equal(a, b) for a, b in bits)  # bit-widths are not restricted


# --- through the CLI ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def args(tmp_path_factory, fake_fmnist: Path) -> list[str]:
    root = tmp_path_factory.mktemp("cm")
    torch.manual_seed(0)
    save_checkpoint(root / "w.pt", create_model("resnet20", 10, 1), {"model": "resnet20"})
    return ["--data-dir", str(fake_fmnist), "--val-size", "100", "--weights", str(root / "w.pt")]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory, args, noise_predictor) -> Path:
    """Collected with the default space (N = 1): 2 samples and a predictor fitted on noise."""
    ws = tmp_path_factory.mktemp("cm") / "w"
    assert main(["collect", "--workdir", str(ws), *args, "--samples", "2", *FAST]) == 0
    noise_predictor(ws)
    return ws


def solve(ws: Path, capsys, *flags: str) -> tuple[int, str]:
    capsys.readouterr()
    code = main(["solve", "--workdir", str(ws), *flags])
    out = capsys.readouterr()
    return code, out.out if code == 0 else out.err.strip()


def assert_multiples(docs: list[dict], n: int, ws: Path) -> None:
    from seernet.steps.context import RunContext
    from seernet.workspace.folder import Workspace

    space = RunContext(Workspace(ws), Workspace(ws).read(), torch.device("cpu")).space
    for doc in docs:
        assert doc["channel_multiple"] == n
        kept = doc["policy"]["channels"]
        assert all(kept[g.name] % n == 0 or kept[g.name] == g.channels for g in space.groups)
        assert any(kept[g.name] < g.channels for g in space.groups)  # something was pruned
        assert doc["costs"]["flops"] <= doc["budgets"]["flops"]


# With 16, resnet20's 16-channel groups cannot be pruned: its smallest model has 46% of the FLOPs.
@pytest.mark.parametrize(("n", "flops"), [(8, "30%,50%,70%"), (16, "50%,70%")])
def test_solve_with_a_channel_multiple_returns_only_multiples(
    workspace: Path, capsys, n: int, flops: str
):
    code, out = solve(workspace, capsys, "--flops", flops, "--bits", "8", "--json",
                      "--channel-multiple", str(n))  # fmt: skip
    assert code == 0, out
    docs = json.loads(out)
    assert_multiples(docs, n, workspace)
    assert all(d["name"].endswith(f"_ch{n}") for d in docs)  # not the unrestricted answers' files
    code, out = solve(workspace, capsys, "--flops", "60%", "--json", "--channel-multiple", str(n))
    assert code == 0, out
    assert_multiples(json.loads(out), n, workspace)  # mixed precision
    code, out = solve(workspace, capsys, "--flops", "50%", "--bits", "8", "--json")
    assert code == 0 and json.loads(out)[0]["channel_multiple"] == 1


def test_a_restricted_solve_leaves_the_context_whole(workspace: Path):
    from seernet.steps.context import RunContext
    from seernet.steps.solve import solve_context, solve_grid
    from seernet.workspace.folder import Workspace

    ctx = RunContext(Workspace(workspace), Workspace(workspace).read(), torch.device("cpu"))
    narrow = solve_context(ctx, 8)
    assert narrow.space is ctx.space and ctx.channel_multiple == 1
    assert (solve_grid(narrow).sizes <= solve_grid(ctx).sizes).all()
    assert (solve_grid(narrow).sizes < solve_grid(ctx).sizes).any()


@pytest.mark.parametrize(
    ("flags", "needle"),
    [
        (["--channel-multiple", "0"], "at least 1"),
        (["--channel-multiple", "-8"], "at least 1"),
        (["--channel-multiple", "8", "--refine", "1"], "collect with --channel-multiple"),
        (["--channel-multiple", "16", "--bits", "8"], "(14.4M with --channel-multiple 16)"),
    ],
)
def test_bad_channel_multiple_is_a_one_line_error(workspace: Path, capsys, flags, needle):
    budget = "30%" if "16" in flags else "50%"  # 16: the smallest model has 46% of the FLOPs
    code, err = solve(workspace, capsys, "--flops", budget, *flags)
    assert code == 2 and needle in err and len(err.splitlines()) == 1


def test_collect_with_a_multiple_then_solve_with_an_incompatible_one(tmp_path: Path, args, capsys):
    ws = tmp_path / "w"
    flags = ["collect", "--workdir", str(ws), *args, "--samples", "1", *FAST]
    assert main([*flags, "--channel-multiple", "4"]) == 0
    space = json.loads((ws / "seernet.json").read_text())["space"]
    assert space["choices"]["channel_multiple"] == 4 and space["fingerprint"] != FINGERPRINT_BEFORE
    from seernet.workspace.store import SampleStore

    with SampleStore.open(ws / "samples.h5") as store:
        groups = store.choices[:, :12]  # resnet20: 12 groups first
    assert (groups % 4 == 0).all()
    capsys.readouterr()
    assert main([*flags, "--channel-multiple", "8"]) == 2  # the space is fixed on the first collect
    assert "fixed" in capsys.readouterr().err
    code, err = solve(ws, capsys, "--flops", "50%", "--channel-multiple", "6")
    assert code == 2 and "does not fit" in err and len(err.splitlines()) == 1


def test_the_api_takes_the_setting(tmp_path: Path):
    from torch import nn
    from torch.utils.data import TensorDataset

    import seernet

    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 3)).eval()  # fmt: skip
    x = torch.randn(24, 1, 8, 8)
    data = TensorDataset(x, torch.arange(24) % 3), TensorDataset(x[:12], torch.arange(12) % 3)
    job = seernet.Compressor(
        net, *data, workdir=tmp_path / "w", choices=SpaceChoices(channel_multiple=4)
    )
    assert [g.keep for g in job.context.space.groups] == [(4, 8)]
