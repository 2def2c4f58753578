"""PriorModel: monotone by construction, ranks as its tables with few samples, spread grows off data."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from predictor.prior_model import DamageCurves, PriorModel

D = 6
LEVELS = [np.linspace(0.0, 1.0, 5).tolist() for _ in range(D)]
TRUE = np.array([0.05, 0.1, 0.3, 0.6, 1.0, 2.0])
DAMAGE = [((1 - np.asarray(lv)) ** 2 * t).tolist() for lv, t in zip(LEVELS, TRUE, strict=True)]
KINDS = [0, 0, 1, 1, 2, 2]


def truth(X: np.ndarray) -> np.ndarray:
    return 10 + 80 * np.exp(-0.7 * ((1 - X) ** 2 @ TRUE))


def data(n: int, seed: int = 0, noise: float = 0.3) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.choice(np.linspace(0.0, 1.0, 5), size=(n, D))
    X[0] = 1.0
    return X, truth(X) + rng.normal(0, noise, n)


@pytest.fixture(scope="module")
def fitted() -> PriorModel:
    X, y = data(40)
    return PriorModel(LEVELS, DAMAGE, KINDS, random_state=0).fit(X, y)


@pytest.fixture(scope="module")
def prior_only() -> PriorModel:
    X, y = data(40)
    return PriorModel(LEVELS, DAMAGE, KINDS, residual="none").fit(X, y)


def test_curves_interpolate_and_clamp():
    curves = DamageCurves([[0.0, 0.5, 1.0]], [[2.0, 1.0, 0.0]])
    x = torch.tensor([[-1.0], [0.0], [0.25], [0.5], [0.75], [1.0], [2.0]], dtype=torch.float64)
    assert curves(x)[:, 0].tolist() == pytest.approx([2.0, 2.0, 1.5, 1.0, 0.5, 0.0, 0.0])


def test_curves_refuse_rising_damage():
    with pytest.raises(ValueError, match="not rise"):
        DamageCurves([[0.0, 1.0]], [[0.0, 1.0]])


def test_fits_and_ranks_unseen_policies(fitted: PriorModel):
    X, _ = data(300, seed=5, noise=0.0)
    mean = fitted.predict(X)
    rmse = float(np.sqrt(np.mean((mean - truth(X)) ** 2)))
    assert rmse < 2.0
    tau = np.corrcoef(np.argsort(np.argsort(mean)), np.argsort(np.argsort(truth(X))))[0, 1]
    assert tau > 0.9


def test_no_mean_above_cap():
    X, y = data(30)
    model = PriorModel(LEVELS, DAMAGE, KINDS, cap=85.0).fit(X, y)
    assert model.predict(np.ones((1, D)))[0] <= 85.0 + 1e-9


@pytest.fixture(scope="module")
def prior_only_exponent() -> PriorModel:
    X, y = sub_additive_data(40)
    return PriorModel(LEVELS, DAMAGE, KINDS, residual="none", exponents=EXPONENTS).fit(X, y)


@settings(max_examples=25, deadline=None)
@given(
    x=st.lists(st.floats(0.0, 1.0), min_size=D, max_size=D),
    d=st.integers(0, D - 1),
    up=st.floats(0.0, 1.0),
    learned=st.booleans(),
)
def test_prior_mean_never_falls_when_a_coordinate_rises(
    prior_only: PriorModel, prior_only_exponent: PriorModel, x, d, up, learned
):
    lo = np.asarray(x)
    hi = lo.copy()
    hi[d] = min(1.0, lo[d] + up)
    m = (prior_only_exponent if learned else prior_only).predict(np.stack([lo, hi]))
    assert m[1] >= m[0] - 1e-9


# kind 2's damages count as their table entries ** 1.6: small ones less than they add up to
TRUE_EXPONENT = 1.6
EXPONENTS = [1.0, 1.0, None]  # learn kind 2's exponent


def sub_additive_data(n: int, seed: int = 0, noise: float = 0.3) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.choice(np.linspace(0.0, 1.0, 5), size=(n, D))
    X[0] = 1.0
    t = (1 - X) ** 2 * TRUE
    t[:, 4:] = t[:, 4:] ** TRUE_EXPONENT
    return X, 10 + 80 * np.exp(-0.7 * t.sum(1)) + rng.normal(0, noise, n)


def test_learned_exponent_recovers_sub_additive_damages():
    X, y = sub_additive_data(80)
    learned = PriorModel(LEVELS, DAMAGE, KINDS, residual="none", exponents=EXPONENTS).fit(X, y)
    additive = PriorModel(LEVELS, DAMAGE, KINDS, residual="none").fit(X, y)
    assert learned.exponent_[2] == pytest.approx(TRUE_EXPONENT, abs=0.2)
    assert learned.exponent_[:2].tolist() == [1.0, 1.0] and additive.exponent_.tolist() == [1.0] * 3
    Xt, yt = sub_additive_data(300, seed=5, noise=0.0)
    err = lambda m: np.sqrt(np.mean((m.predict(Xt) - yt) ** 2))  # noqa: E731
    assert err(learned) < 0.5 * err(additive)


def test_weighted_fit_keeps_the_high_accuracy_policies_right():
    """Noise that grows with the loss, and low-accuracy rows off the model's form: weighting
    each row by its fitted noise predicts unseen policies above 80% better (8 data seeds)."""
    Xt = np.random.default_rng(99).choice(np.linspace(0.0, 1.0, 5), size=(2000, D))
    Xt = Xt[truth(Xt) > 80]
    errors = {False: [], True: []}
    for seed in range(8):
        rng = np.random.default_rng(seed)
        X = rng.choice(np.linspace(0.0, 1.0, 5), size=(80, D))
        X[0] = 1.0
        t = truth(X)
        y = t + rng.normal(0, 1, len(t)) * (0.1 + 0.05 * (90 - t)) - 0.15 * np.maximum(80 - t, 0)
        for weighted in errors:
            m = PriorModel(LEVELS, DAMAGE, KINDS, residual="none", weighted=weighted).fit(X, y)
            errors[weighted].append(np.sqrt(np.mean((m.predict(Xt) - truth(Xt)) ** 2)))
    assert np.mean(errors[True]) < np.mean(errors[False])
    assert sum(w < u for w, u in zip(errors[True], errors[False], strict=True)) >= 6


def test_a_fixed_exponent_reads_the_tables_raised_to_it():
    X, y = sub_additive_data(40)
    raised = [
        (np.asarray(v) ** (1.5 if k == 2 else 1.0)).tolist()
        for v, k in zip(DAMAGE, KINDS, strict=True)
    ]
    fixed = PriorModel(LEVELS, DAMAGE, KINDS, exponents=[1.0, 1.0, 1.5]).fit(X, y)
    plain = PriorModel(LEVELS, raised, KINDS).fit(X, y)
    Xt, _ = sub_additive_data(50, seed=2)
    a, sa = fixed.predict(Xt, return_std=True)
    b, sb = plain.predict(Xt, return_std=True)
    assert np.allclose(a, b, atol=1e-6) and np.allclose(sa, sb, atol=1e-6)


@pytest.mark.parametrize("exponents", [[1.0, 1.0], [0.5, 1.0, 1.0], [None, 4.0, 1.0]])
def test_exponents_are_checked(exponents):
    X, y = data(20)
    with pytest.raises(ValueError, match="exponents"):
        PriorModel(LEVELS, DAMAGE, KINDS, exponents=exponents).fit(X, y)


def test_spread_grows_away_from_the_samples(fitted: PriorModel):
    X, _ = data(40)
    top = X[np.argsort(-fitted.predict(X))[:5]]  # measured policies near the base
    far = np.zeros((1, D))  # every coordinate at its most damaging level, never measured
    _, s_near = fitted.predict(top, return_std=True)
    _, s_far = fitted.predict(far, return_std=True)
    assert s_far[0] > s_near.max()


def test_gp_residual_corrects_the_prior_near_data():
    X, y = data(60)
    y = y - 3.0 * (X[:, 0] < 0.5)  # an effect the tables do not know
    with_gp = PriorModel(LEVELS, DAMAGE, KINDS).fit(X, y)
    without = PriorModel(LEVELS, DAMAGE, KINDS, residual="none").fit(X, y)
    err = lambda m: np.sqrt(np.mean((m.predict(X) - y) ** 2))  # noqa: E731
    assert err(with_gp) < err(without)


def test_codes_beside_damages_tell_apart_policies_the_tables_rate_alike():
    """Coordinate 0's table is flat: its level changes no damage. With ``code_weight`` the GP
    still sees a policy that moved it as away from the samples (a larger spread), and a save
    and load keeps the predictions."""
    flat = [[0.0] * len(LEVELS[0]), *DAMAGE[1:]]
    X, y = data(60)
    X[:, 0] = 1.0  # every sample keeps coordinate 0 whole
    y = y - 3.0 * (X[:, 1] < 0.5)  # an effect the tables do not know: the GP has work
    far = X[:5].copy()
    far[:, 0] = 0.0  # the same damages, another structure
    std = {}
    for w in (0.0, 1.0):
        model = PriorModel(LEVELS, flat, KINDS, code_weight=w).fit(X, y)
        _, s_far = model.predict(far, return_std=True)
        _, s_near = model.predict(X[:5], return_std=True)
        std[w] = s_far - s_near
    assert np.allclose(std[0.0], 0.0) and np.all(std[1.0] > 0.01)


def test_save_load_round_trip_with_codes(tmp_path):
    X, y = data(40)
    fitted = PriorModel(LEVELS, DAMAGE, KINDS, code_weight=1.0).fit(X, y)
    fitted.save(tmp_path / "p.pt", {})
    loaded, _ = PriorModel.load(tmp_path / "p.pt")
    X, _ = data(20, seed=9)
    a, sa = fitted.predict(X, return_std=True)
    b, sb = loaded.predict(X, return_std=True)
    assert loaded.gp_code_scale_ > 0 and np.allclose(a, b) and np.allclose(sa, sb)


def test_gradients_are_finite(fitted: PriorModel):
    x = torch.rand(8, D, dtype=torch.float64, requires_grad=True)
    mean, std = fitted.mean_std_torch(x)
    (mean - std).sum().backward()
    assert torch.isfinite(x.grad).all()


@pytest.mark.parametrize("exponents", [None, EXPONENTS])
def test_save_load_round_trip(tmp_path, exponents):
    X, y = sub_additive_data(40)
    fitted = PriorModel(LEVELS, DAMAGE, KINDS, exponents=exponents).fit(X, y)
    fitted.save(tmp_path / "p.pt", {"space": "s"})
    loaded, meta = PriorModel.load(tmp_path / "p.pt")
    X, _ = data(20, seed=9)
    a, sa = fitted.predict(X, return_std=True)
    b, sb = loaded.predict(X, return_std=True)
    assert meta == {"space": "s"} and np.allclose(a, b) and np.allclose(sa, sb)
    assert np.array_equal(loaded.exponent_, fitted.exponent_)


def test_loads_files_saved_before_exponents(fitted: PriorModel, tmp_path):
    """A version-3 file from before ``exponents`` existed: every exponent 1, same predictions."""
    fitted.save(tmp_path / "p.pt", {})
    blob = torch.load(tmp_path / "p.pt", weights_only=True)
    header = json.loads(blob["header"])
    del header["params"]["exponents"], header["fitted"]["exponent_"]
    torch.save({**blob, "header": json.dumps(header)}, tmp_path / "old.pt")
    loaded, _ = PriorModel.load(tmp_path / "old.pt")
    X, _ = data(20, seed=9)
    assert loaded.exponent_.tolist() == [1.0, 1.0, 1.0]
    assert np.allclose(loaded.predict(X), fitted.predict(X))


def test_load_refuses_other_files(tmp_path):
    torch.save({"header": '{"format": "other"}'}, tmp_path / "x.pt")
    with pytest.raises(ValueError, match="not a seernet prior-model"):
        PriorModel.load(tmp_path / "x.pt")


@pytest.mark.parametrize(("power", "exponents"), [(1.0, None), (None, None), (1.0, EXPONENTS)])
def test_parameter_variance_is_the_gradient_quadratic_form(power, exponents):
    """_param_var equals g' C g with g the prior mean's gradient in every fitted parameter
    (log_a, v, u, [exponent], [power], floor), taken by autograd through the link."""
    X, y = sub_additive_data(40)
    m = PriorModel(LEVELS, DAMAGE, KINDS, residual="none", power=power, exponents=exponents).fit(
        X, y
    )
    assert (m.power_ == 1.0) if power else (1.0 <= m.power_ <= 3.0)
    x = torch.as_tensor(data(7, seed=3)[0])
    t0 = m.curves_(x)
    kinds = torch.nn.functional.one_hot(torch.as_tensor(m.kind_index_)).double()
    v = torch.linalg.lstsq(kinds, torch.log(torch.as_tensor(m.scale_))[:, None]).solution[:, 0]
    u = torch.log(torch.as_tensor(m.scale_)) - kinds @ v  # any split of log a_d: g is the same
    q = [m.exponent_[2]] if exponents else []
    theta = torch.cat([torch.zeros(1), v, u, torch.tensor(q), torch.tensor([m.power_] if power is None else []),
                       torch.tensor([m.floor_])]).requires_grad_(True)  # fmt: skip

    def prior(th):
        nk = kinds.shape[1]
        a = torch.exp(th[0] + kinds @ th[1 : 1 + nk] + th[1 + nk : 1 + nk + D])
        exps = torch.as_tensor(m.exponent_)
        if exponents:
            exps = torch.cat([exps[:2], th[1 + nk + D : 2 + nk + D]])
        t = t0 ** exps[torch.as_tensor(m.kind_index_)]
        p = th[-2] if power is None else m.power_
        return th[-1] + (m.top_ - th[-1]) * torch.exp(-((t @ a) ** p))

    g = torch.autograd.functional.jacobian(prior, theta)
    expected = ((g @ torch.as_tensor(m.param_cov_)) * g).sum(1)
    a = torch.as_tensor(m.scale_)
    c = m._tensors(torch.float64)
    t = m._curves_torch(x, c)
    got = m._param_var(t, a, t @ a, c)
    assert torch.allclose(got, expected.clamp_min(0.0), rtol=1e-6, atol=1e-9)
