"""``seernet.device``: the predictor's ``auto`` rule plus one-line errors for typed names."""

from __future__ import annotations

import pytest
import torch

from predictor.device import resolve_device as predictor_device
from seernet.device import resolve_device
from seernet.errors import UserError


def test_auto_and_cpu_agree_with_the_predictor():
    assert resolve_device("auto") == predictor_device("auto")
    assert resolve_device("cpu") == torch.device("cpu")


def test_bad_names_are_user_errors():
    with pytest.raises(UserError, match="unknown device 'bogus'"):
        resolve_device("bogus")
    if not torch.cuda.is_available():
        with pytest.raises(UserError, match="CUDA is not available"):
            resolve_device("cuda:0")
