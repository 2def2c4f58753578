import pytest
import torch

from seernet.errors import UserError
from seernet.models import create_model, model_names
from seernet.workspace.checkpoint import load_weights, save_checkpoint


@pytest.mark.parametrize("name", model_names())
def test_forward_shape_any_channels_and_classes(name: str):
    torch.manual_seed(0)
    model = create_model(name, num_classes=7, in_channels=1).eval()
    with torch.no_grad():
        out = model(torch.randn(2, 1, 32, 32))
    assert out.shape == (2, 7)


@pytest.mark.parametrize("name", model_names())
def test_checkpoint_round_trip(name: str, tmp_path):
    torch.manual_seed(0)
    a = create_model(name, 5, 3).eval()
    save_checkpoint(tmp_path / "m.pt", a, {"model": name})
    b = create_model(name, 5, 3).eval()
    load_weights(b, tmp_path / "m.pt", name)
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(a(x), b(x))


def test_unknown_model_lists_known_ones():
    with pytest.raises(UserError, match="resnet20"):
        create_model("resnet21")


def test_checkpoint_of_another_architecture_is_refused(tmp_path):
    save_checkpoint(tmp_path / "m.pt", create_model("resnet20", 10, 1), {"model": "resnet20"})
    with pytest.raises(UserError, match="resnet20"):
        load_weights(create_model("resnet32", 10, 1), tmp_path / "m.pt", "resnet32")
    torch.save(create_model("vgg_small", 10, 1).state_dict(), tmp_path / "plain.pt")
    with pytest.raises(UserError, match="does not fit"):
        load_weights(create_model("resnet20", 10, 1), tmp_path / "plain.pt", "resnet20")


def test_non_state_dict_checkpoint_is_refused(tmp_path):
    torch.save({"hello": "world"}, tmp_path / "x.pt")
    with pytest.raises(UserError, match="state dict"):
        load_weights(create_model("resnet20", 10, 1), tmp_path / "x.pt", "resnet20")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(UserError, match="not a loadable"):
        load_weights(create_model("resnet20", 10, 1), tmp_path / "junk.pt", "resnet20")
