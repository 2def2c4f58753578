"""torch's schedulers and BatchNorm update stand in for hand-written ones, with the same floats."""

from itertools import islice

import pytest
import torch
from torch import nn

from seernet.compression.protocol import adapt_batchnorm_
from seernet.data.train import cosine_lr, cosine_schedule, sgd, train_steps


@pytest.mark.parametrize(("peak", "total"), [(0.01, 20), (0.05, 250), (0.0123, 7), (0.2, 1)])
def test_cosine_schedule_gives_exactly_the_hand_written_rates(peak, total):
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=peak)
    sched = cosine_schedule(opt, total)
    seen = []
    for _ in range(total + 3):  # past the end the rate stays at 0
        seen.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert seen == [cosine_lr(s, total, peak) for s in range(total + 3)]


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 3)
    )


def _data(n: int = 6) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(1)
    return [
        (torch.randn(5, 1, 8, 8, generator=g), torch.randint(0, 3, (5,), generator=g))
        for _ in range(n)
    ]


@torch.no_grad()
def _adapt_by_hand(model: nn.Module, data, n_batches: int) -> None:
    """The hand-written version ``update_bn`` replaced: reset, cumulative average, restore momentum."""
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None
    model.train()
    for x, _ in islice(data, n_batches):
        model(x)
    for m, momentum in zip(bns, saved, strict=True):
        m.momentum = momentum
    model.eval()


def test_adapt_batchnorm_equals_the_hand_written_average():
    a, b = _net(), _net()
    data = _data()
    adapt_batchnorm_(a, data, torch.device("cpu"), 4)
    _adapt_by_hand(b, data, 4)
    assert not a.training and a[1].momentum == 0.1
    for k, v in a.state_dict().items():
        assert torch.equal(v, b.state_dict()[k]), k
    assert int(a[1].num_batches_tracked) == 4


def test_train_steps_with_a_scheduler_equals_setting_the_rate_by_hand():
    a, b = _net(), _net()
    data = _data()
    opt_a, opt_b = sgd(a, 0.05, 5e-4), sgd(b, 0.05, 5e-4)
    torch.manual_seed(3)
    train_steps(a, data, torch.device("cpu"), opt_a, cosine_schedule(opt_a, 9), 9)
    torch.manual_seed(3)
    train_steps(b, data, torch.device("cpu"), opt_b, lambda s: cosine_lr(s, 9, 0.05), 9)
    for k, v in a.state_dict().items():
        assert torch.equal(v, b.state_dict()[k]), k
