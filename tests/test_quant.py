"""Fake quantization: code ranges, STE gradients, calibration, integer export, bit-packing."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import Tensor, nn

from seernet.compression.packing import (
    dequantize_weight,
    export_codes,
    load_codes_,
    pack_codes,
    unpack_codes,
)
from seernet.compression.quant import (
    QuantConv2d,
    QuantLinear,
    best_act_range,
    calibrate_,
    check_bits,
    exact_scale,
    fake_quant_act,
    fake_quant_weight,
    lsq_fake_quant,
    mse_weight_scale,
    quant_layers,
    quantize_,
    set_lsq_,
    weight_scale,
)


def small_net() -> nn.Sequential:
    """Odd channel counts, as left behind by channel pruning."""
    return nn.Sequential(
        nn.Conv2d(3, 7, 3, padding=1),
        nn.BatchNorm2d(7),
        nn.ReLU(),
        nn.Conv2d(7, 5, 3, stride=2, padding=1, bias=False),
        nn.ReLU(),
        nn.Conv2d(5, 5, 3, padding=1, groups=5),  # depthwise
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(5, 3),
    )


LAYERS = ("0", "3", "5", "8")


def quantized_net(w_bits: int, a_bits: int, seed: int = 0) -> tuple[nn.Module, nn.Module, Tensor]:
    """(float net, calibrated quantized copy, calibration inputs), in eval mode."""
    torch.manual_seed(seed)
    net = small_net().eval()
    x = torch.randn(32, 3, 12, 12)
    q = quantize_(copy.deepcopy(net), {n: (w_bits, a_bits) for n in LAYERS})
    calibrate_(q, [x[:16], (x[16:], torch.zeros(16))])
    return net, q.eval(), x


def test_quantize_replaces_only_named_layers_and_keeps_parameters() -> None:
    net = small_net()
    w = net[3].weight
    quantize_(net, {"3": (4, 4), "8": (8, None)})
    assert set(quant_layers(net)) == {"3", "8"}
    assert isinstance(net[3], QuantConv2d) and isinstance(net[8], QuantLinear)
    assert type(net[0]) is nn.Conv2d and net[3].weight is w and net[3].bias is None
    assert net[3].weight.shape == (5, 7, 3, 3)
    # Parameter names are those of the float model; the wrappers only add buffers/extra state.
    float_keys = set(small_net().state_dict())
    assert float_keys <= set(net.state_dict())


@pytest.mark.parametrize("bad", [1, 9, 16, 2.0, True, "4"])
def test_invalid_bits_rejected(bad: object) -> None:
    with pytest.raises(ValueError):
        check_bits(bad)
    with pytest.raises(ValueError):
        quantize_(small_net(), {"3": (bad, 4)})


def test_float_bits_and_unknown_names() -> None:
    assert check_bits(32) is None and check_bits(None) is None
    with pytest.raises(ValueError, match="no such module"):
        quantize_(small_net(), {"nope": (4, 4)})
    with pytest.raises(ValueError, match="BatchNorm2d"):
        quantize_(small_net(), {"1": (4, 4)})


@pytest.mark.parametrize("bits", [2, 3, 4, 8])
def test_weight_codes_per_channel(bits: int) -> None:
    torch.manual_seed(bits)
    layer = quantize_(nn.Sequential(nn.Conv2d(4, 6, 3)), {"0": (bits, None)})[0]
    wq = layer.quantized_weight().detach()
    for c in range(wq.shape[0]):
        assert wq[c].unique().numel() <= 2**bits - 1
    codes = export_codes(layer).weight_codes
    q = 2 ** (bits - 1) - 1
    assert codes.dtype == torch.int8 and codes.abs().max() == q  # the channel max maps to qmax


@pytest.mark.parametrize("bits", [2, 4, 8])
def test_activation_codes_signed_and_unsigned(bits: int) -> None:
    torch.manual_seed(0)
    lin = quantize_(nn.Sequential(nn.Linear(50, 2)), {"0": (None, bits)})[0]
    x = torch.randn(2000, 50) * 3
    q = 2 ** (bits - 1) - 1
    for signed, lo, hi in ((False, 0, 2**bits - 1), (True, -q, q)):
        lin.set_act_range(4.0 / 2**bits, signed)
        codes = lin.quantize_input(x) / lin.act_scale
        assert torch.allclose(codes, codes.round(), atol=1e-4)
        assert codes.min().round() == lo and codes.max().round() == hi


def test_calibration_picks_unsigned_after_relu() -> None:
    _, q, _ = quantized_net(8, 4)
    layers = quant_layers(q)
    assert layers["0"].act_signed  # raw inputs are signed
    assert not layers["3"].act_signed and not layers["5"].act_signed  # after ReLU
    assert layers["8"].act_signed  # after a conv with bias and no ReLU
    assert all(m.calibrated for m in layers.values())


def test_uncalibrated_forward_raises() -> None:
    q = quantize_(small_net(), {"0": (4, 4)})
    with pytest.raises(RuntimeError, match="calibrate_"):
        q(torch.randn(1, 3, 8, 8))


@pytest.mark.parametrize("bits", [2, 3, 4])
def test_mse_clip_beats_plain_max_at_low_bits(bits: int) -> None:
    torch.manual_seed(bits)
    x = torch.distributions.Exponential(1.0).sample((20000,))  # heavy-ish tail, like post-ReLU
    x[0] = 25.0  # one outlier sets the max

    def mse(scale: float) -> float:
        hi = 2**bits - 1
        return (torch.clamp(torch.round(x / scale), 0, hi) * scale - x).square().mean().item()

    grid = (0.05, 0.1, 0.2, 0.5, 1.0)
    scale, signed = best_act_range(x, x.min().item(), x.max().item(), bits, grid)
    assert not signed
    assert mse(scale) < 0.5 * mse(x.max().item() / (2**bits - 1))


def test_8bit_output_close_to_float() -> None:
    net, q, x = quantized_net(8, 8)
    with torch.no_grad():
        ref, out = net(x), q(x)
    assert (out - ref).abs().max() < 0.02 * ref.abs().max()


def test_ste_gradients_reach_weight_and_input() -> None:
    _, q, x = quantized_net(4, 4)
    q.train()
    x = x.clone().requires_grad_(True)
    q(x).square().sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    for name, layer in quant_layers(q).items():
        assert layer.weight.grad is not None and layer.weight.grad.abs().sum() > 0, name


def test_eval_cache_follows_weight_updates() -> None:
    _, q, x = quantized_net(4, 4)
    with torch.no_grad():
        before = q(x)
        q[3].weight.mul_(0.5)  # in place: bumps the version the cache is keyed on
        after = q(x)
        fresh = quantize_(copy.deepcopy(q), {})(x)
    assert not torch.equal(before, after)
    q[3]._cache = None
    with torch.no_grad():
        assert torch.equal(after, q(x)) and torch.equal(after, fresh)


def test_inference_path_equals_autograd_path() -> None:
    _, q, x = quantized_net(3, 3)
    with torch.inference_mode():
        a = q(x)
    with torch.no_grad():  # reuses the scratch buffer allocated under inference_mode
        b = q(x)
    c = q(x)  # grad enabled: the straight-through path
    assert torch.equal(a, b) and torch.equal(b, c.detach())


@settings(max_examples=40, deadline=None)
@given(
    bits=st.integers(2, 8), signed=st.booleans(), seed=st.integers(0, 2**16),
    scale=st.floats(1e-4, 10.0),
)  # fmt: skip
def test_training_fake_quant_equals_the_fused_op(
    bits: int, signed: bool, seed: int, scale: float
) -> None:
    """Values and straight-through gradient bit for bit, ties and codes just outside included."""
    lo, hi = (-(2 ** (bits - 1) - 1), 2 ** (bits - 1) - 1) if signed else (0, 2**bits - 1)
    s = exact_scale(torch.tensor([scale]))
    gen = torch.Generator().manual_seed(seed)
    codes = torch.randint(2 * lo - 3, 2 * hi + 4, (257,), generator=gen) / 2  # half-way ties
    x = torch.cat([codes * s, torch.randn(255, generator=gen) * hi * s])
    ours, fused = x.clone().requires_grad_(), x.clone().requires_grad_()
    zero = torch.zeros(1, dtype=torch.int32)
    out = fake_quant_act(ours, s, zero, lo, hi)
    ref = torch.fake_quantize_per_tensor_affine(fused, s, zero, lo, hi)
    grad = torch.randn(x.shape, generator=gen)
    out.backward(grad)
    ref.backward(grad)
    assert torch.equal(out, ref) and torch.equal(ours.grad, fused.grad)
    assert (ours.grad == 0).any() and (ours.grad != 0).any()  # both sides of the range seen


def test_wrappers_of_a_model_share_one_scratch() -> None:
    _, q, _ = quantized_net(4, 4)
    copied = copy.deepcopy(q)
    for model in (q, copied):
        assert len({id(m.scratch) for m in quant_layers(model).values()}) == 1
    assert quant_layers(q)["3"].scratch is not quant_layers(copied)["3"].scratch


def test_export_rebuild_is_exact() -> None:
    _, q, x = quantized_net(3, 4)
    rebuilt = copy.deepcopy(q)
    for layer in quant_layers(rebuilt).values():
        with torch.no_grad():
            layer.weight.normal_()  # forget the weights: codes alone must rebuild them
    for name, layer in quant_layers(q).items():
        codes = export_codes(layer)
        assert torch.equal(dequantize_weight(codes), layer.quantized_weight().detach())
        load_codes_(quant_layers(rebuilt)[name], codes)
        again = export_codes(quant_layers(rebuilt)[name])
        assert torch.equal(again.weight_codes, codes.weight_codes)
        assert torch.equal(again.weight_scale, codes.weight_scale)
        assert (again.act_scale, again.act_signed) == (codes.act_scale, codes.act_signed)
    with torch.no_grad():
        assert torch.equal(q(x), rebuilt.eval()(x))


def test_state_dict_round_trip(tmp_path: Path) -> None:
    _, q, x = quantized_net(4, 4)
    torch.save(q.state_dict(), tmp_path / "q.pt")
    fresh = quantize_(small_net(), {n: (8, 8) for n in LAYERS})
    fresh.load_state_dict(torch.load(tmp_path / "q.pt", weights_only=True))
    assert fresh[3].w_bits == 4 and not fresh[3].act_signed and fresh[3].calibrated
    with torch.no_grad():
        assert torch.equal(q(x), fresh.eval()(x))


@settings(max_examples=60, deadline=None)
@given(
    bits=st.integers(2, 8), signed=st.booleans(), n=st.integers(0, 70), seed=st.integers(0, 2**16)
)
def test_pack_unpack_round_trip(bits: int, signed: bool, n: int, seed: int) -> None:
    lo, hi = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if signed else (0, 2**bits - 1)
    g = torch.Generator().manual_seed(seed)
    codes = torch.randint(lo, hi + 1, (n,), generator=g)
    packed = pack_codes(codes, bits, signed)
    assert packed.dtype == torch.uint8 and packed.numel() == (n * bits + 7) // 8
    out = unpack_codes(packed, bits, n, signed)
    assert out.dtype == (torch.int8 if signed else torch.uint8)
    assert torch.equal(out.long(), codes)


def test_pack_layout_and_range_checks() -> None:
    # 3-bit codes -1, 2, 3 -> 111 010 011 -> stream (LSB first) 1,1,1,0,1,0,1,1,0
    assert pack_codes(torch.tensor([-1, 2, 3]), 3).tolist() == [0b11010111, 0b0]
    with pytest.raises(ValueError):
        pack_codes(torch.tensor([4]), 3)
    with pytest.raises(ValueError):
        pack_codes(torch.tensor([-1]), 3, signed=False)
    with pytest.raises(ValueError):
        unpack_codes(torch.zeros(3, dtype=torch.uint8), 3, 3)
    w = torch.randint(-7, 8, (5, 3, 2, 2))
    assert torch.equal(unpack_codes(pack_codes(w, 4), 4, w.shape).long(), w)


# --- weight scales: MSE clip ----------------------------------------------------------
def _brute_force_scale(w: Tensor, bits: int, fractions: tuple[float, ...]) -> Tensor:
    """Per channel, loop over the candidates and keep the first with the least squared error."""
    q = 2 ** (bits - 1) - 1
    out = []
    for row in w.flatten(1):
        best, best_err = None, None
        for f in fractions:
            s = exact_scale((row.abs().max() * f / q).reshape(1))
            err = ((row * s.reciprocal()).round().clamp(-q, q) * s - row).square().sum().item()
            if best_err is None or err < best_err:
                best, best_err = s, err
        out.append(best)
    return torch.cat(out)


@pytest.mark.parametrize("bits", [2, 3, 4])
def test_mse_weight_scale_equals_brute_force_on_a_tiny_tensor(bits: int) -> None:
    torch.manual_seed(bits)
    w = torch.randn(4, 2, 3)
    fractions = (1.0, 0.8, 0.6, 0.45, 0.3)
    got = mse_weight_scale(w, bits, fractions)
    assert torch.equal(got, _brute_force_scale(w, bits, fractions))
    assert torch.equal(exact_scale(got), got)  # already exact: code x scale is exact in float32


@pytest.mark.parametrize("bits", [2, 3])
def test_mse_weight_scale_has_less_error_than_max(bits: int) -> None:
    torch.manual_seed(0)
    w = torch.randn(16, 8, 3, 3)
    err = lambda s: (fake_quant_weight(w, s, bits) - w).square().sum().item()  # noqa: E731
    mse, amax = mse_weight_scale(w, bits), weight_scale(w, bits)
    assert err(mse) < 0.7 * err(amax)
    assert (mse <= amax).all() and (mse < amax).any()


def test_layer_stores_the_mse_scale_and_rederives_it_when_bits_change() -> None:
    torch.manual_seed(0)
    layer = quantize_(nn.Sequential(nn.Conv2d(4, 6, 3)), {"0": (2, None)})[0]
    assert torch.equal(layer.weight_scale.detach(), mse_weight_scale(layer.weight, 2))
    assert torch.equal(export_codes(layer).weight_scale, mse_weight_scale(layer.weight, 2))
    layer.set_bits(4, None)
    assert torch.equal(layer.weight_scale.detach(), mse_weight_scale(layer.weight, 4))
    with torch.no_grad():
        layer.weight.mul_(3.0)  # a weight change alone keeps the stored scale ...
    assert torch.equal(layer.weight_scale.detach(), mse_weight_scale(layer.weight / 3.0, 4))
    calibrate_(nn.Sequential(layer), [torch.randn(2, 4, 5, 5)])  # ... calibration re-derives it
    assert torch.equal(layer.weight_scale.detach(), mse_weight_scale(layer.weight, 4))
    calibrate_(nn.Sequential(layer), [torch.randn(2, 4, 5, 5)], weight_clip="max")
    assert torch.equal(layer.weight_scale.detach(), weight_scale(layer.weight, 4))
    with pytest.raises(ValueError, match="weight clip"):
        layer.set_weight_scale_("minmax")


@settings(max_examples=40, deadline=None)
@given(bits=st.integers(2, 8), seed=st.integers(0, 2**16), spread=st.floats(1e-4, 1e3))
def test_codes_in_range_and_dequantize_equals_simulated_weight(
    bits: int, seed: int, spread: float
) -> None:
    g = torch.Generator().manual_seed(seed)
    layer = quantize_(nn.Sequential(nn.Linear(9, 5)), {"0": (bits, None)})[0]
    with torch.no_grad():
        layer.weight.copy_(torch.randn(5, 9, generator=g) * spread)
    layer.set_weight_scale_()
    codes = export_codes(layer)
    q = 2 ** (bits - 1) - 1
    assert codes.weight_codes.abs().max() <= q
    with torch.no_grad():
        assert torch.equal(dequantize_weight(codes), layer.quantized_weight())


# --- LSQ: learned step sizes ----------------------------------------------------------
def test_lsq_step_gradient_is_the_papers_with_its_scale() -> None:
    torch.manual_seed(0)
    x = torch.randn(200) * 2
    r = torch.randn(200)
    step = torch.tensor(0.37, requires_grad=True)
    lo, hi, g = -3, 3, 0.125
    (lsq_fake_quant(x, step, lo, hi, g, exact=False) * r).sum().backward()
    v = x / 0.37
    # d x_hat / d s: round(v) - v inside the range, the clipped code outside (Esser et al., eq. 3).
    expected = torch.where(v <= lo, float(lo), torch.where(v >= hi, float(hi), v.round() - v))
    assert step.grad is not None
    assert torch.allclose(step.grad, g * (r * expected).sum(), rtol=1e-4, atol=1e-6)


def test_lsq_layer_grad_scales_and_forward_values() -> None:
    _, q, x = quantized_net(3, 4)
    frozen = q(x).detach()
    set_lsq_(q, True)
    layers = quant_layers(q)
    assert all(m.weight_scale.requires_grad and m.act_scale.requires_grad for m in layers.values())
    lin = layers["8"]
    seen = {}
    lin.register_forward_pre_hook(lambda m, args: seen.update(x=args[0].detach()))
    out = q(x)  # eval mode (BatchNorm fixed), autograd on: the LSQ path
    assert torch.equal(
        out.detach(), frozen
    )  # the learned-step forward is the frozen one, bit for bit
    r = torch.randn_like(out)
    (out * r).sum().backward()
    for m in layers.values():
        assert m.weight_scale.grad is not None and m.weight_scale.grad.abs().sum() > 0
        assert m.act_scale.grad is not None and m.act_scale.grad != 0
    # The classifier by hand: out = xq @ wq.T + b, so each step's gradient follows in closed form.
    w, s_w, s_a = lin.weight.detach(), lin.exact_weight_scale(), lin.act_scale.detach()
    qw, (alo, ahi) = 3, ((0, 15) if not lin.act_signed else (-7, 7))
    vw, va = w / s_w[:, None], seen["x"] / s_a
    dw = torch.where(vw.abs() >= qw, vw.sign() * qw, vw.round() - vw)  # d wq / d s_w
    da = torch.where(va <= alo, float(alo), torch.where(va >= ahi, float(ahi), va.round() - va))
    xq = (va.round().clamp(alo, ahi)) * s_a
    wq = vw.round().clamp(-qw, qw) * s_w[:, None]
    g_w = 1 / (w.numel() * qw) ** 0.5
    g_a = 1 / (seen["x"].shape[1] * ahi) ** 0.5
    assert torch.allclose(
        lin.weight_scale.grad, g_w * ((r.T @ xq) * dw).sum(1), rtol=1e-3, atol=1e-6
    )
    assert torch.allclose(lin.act_scale.grad, g_a * ((r @ wq) * da).sum(), rtol=1e-3, atol=1e-6)
    set_lsq_(q, False)
    assert not any(
        m.weight_scale.requires_grad or m.act_scale.requires_grad for m in layers.values()
    )
