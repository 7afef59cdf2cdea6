import numpy as np
import pytest
import torch
from scipy.special import logsumexp, softmax

from gregnb.scores import energy, max_logit, msp, score_fn


@pytest.mark.parametrize("T", [0.01, 0.1, 1.0, 10.0, 1000.0])
@pytest.mark.parametrize("scale", [1.0, 100.0, 1e4])
def test_energy_matches_float64_formula(T, scale):
    rng = np.random.default_rng(0)
    z = scale * rng.standard_normal((50, 7))
    ours = energy(torch.tensor(z, dtype=torch.float32), T).double().numpy()
    ref = -T * logsumexp(z / T, axis=1)  # scipy, float64
    assert np.all(np.isfinite(ours))
    np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-4 * max(1.0, scale))


def test_energy_hand_worked():
    # logits (0, 0): E = -log 2 ; logits (log 3, 0): E = -log(3 + 1) = -log 4
    z = torch.tensor([[0.0, 0.0], [np.log(3.0), 0.0]])
    np.testing.assert_allclose(energy(z).numpy(), [-np.log(2), -np.log(4)], rtol=1e-6)


def test_energy_is_low_for_confident_inputs():
    confident = torch.tensor([[20.0, 0.0, 0.0]])
    unsure = torch.tensor([[0.1, 0.0, 0.0]])
    assert energy(confident) < energy(unsure)


def test_msp_and_max_logit_against_scipy():
    rng = np.random.default_rng(1)
    z = 50 * rng.standard_normal((30, 5))
    np.testing.assert_allclose(msp(torch.tensor(z), 2.0).numpy(), softmax(z / 2.0, axis=1).max(1), rtol=1e-10)
    np.testing.assert_allclose(max_logit(torch.tensor(z)).numpy(), z.max(1))


def test_msp_is_shift_invariant_energy_is_not():
    z = torch.randn(10, 4, dtype=torch.float64)
    torch.testing.assert_close(msp(z), msp(z + 5.0))
    torch.testing.assert_close(energy(z + 5.0), energy(z) - 5.0)


def test_score_fn_signs():
    z = torch.tensor([[9.0, 0.0], [0.1, 0.0]])
    for name in ("msp", "max_logit", "energy"):
        s = score_fn(name)(z, 1.0)
        assert s[0] > s[1], name  # the confident row is more ID under every score


@pytest.mark.parametrize("bad", [torch.zeros(3), torch.zeros(2, 3, 4)])
def test_bad_shapes_raise(bad):
    with pytest.raises(ValueError, match="shape"):
        energy(bad)


def test_bad_temperature_and_name():
    with pytest.raises(ValueError, match="temperature"):
        energy(torch.zeros(2, 3), 0.0)
    with pytest.raises(ValueError, match="unknown score"):
        score_fn("entropy")


def test_energy_is_differentiable():
    z = torch.randn(4, 3, requires_grad=True)
    energy(z).sum().backward()
    # dE/dz = -softmax(z)
    torch.testing.assert_close(z.grad, -torch.softmax(z.detach(), 1))
