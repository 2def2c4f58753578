"""The dynamic filter rule on hand-computed numbers."""

import torch
from torch import nn

from seernet.compression.dynamic_criterion import filter_scores


def test_filter_scores_follow_the_documented_rule():
    before, after = nn.Sequential(nn.Linear(2, 3)), nn.Sequential(nn.Linear(2, 3))
    with torch.no_grad():
        before[0].weight.copy_(torch.tensor([[1.0, 1.0], [0.0, 0.0], [2.0, 2.0]]))
        after[0].weight.copy_(torch.tensor([[1.0, 1.0], [1.0, 1.0], [2.0, 4.0]]))
    # m = [1, 1, 3] / (5/3) = [.6, .6, 1.8];  d = [0, 1, 1] / (2/3) = [0, 1.5, 1.5]
    s = filter_scores(before, after)["0"]
    assert torch.allclose(s, torch.tensor([0.6, 2.1, 3.3], dtype=torch.float64))
    static = filter_scores(before, before)["0"]  # nothing moved: magnitude alone
    assert torch.allclose(static, torch.tensor([1.0, 0.0, 2.0], dtype=torch.float64))
