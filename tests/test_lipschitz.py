import math

import pytest
import torch
from torch import nn

from gregnb.lipschitz import (attack_radius, certified_radius, global_lipschitz_bound, input_gradient_norm,
                              local_lipschitz, score_attack)
from gregnb.models import MLP, SmallCNN
from gregnb.scores import energy


def _fd_grad_norm(model, x, h=1e-5):
    x = x.double()
    g = torch.zeros_like(x)
    for j in range(x.shape[1]):
        d = torch.zeros_like(x)
        d[:, j] = h
        with torch.no_grad():
            g[:, j] = (energy(model(x + d)) - energy(model(x - d))) / (2 * h)
    return g.norm(dim=1)


def test_input_gradient_norm_matches_finite_differences():
    torch.manual_seed(0)
    model = MLP(2, 3, activation="softplus").double()
    x = torch.randn(10, 2, dtype=torch.float64)
    torch.testing.assert_close(input_gradient_norm(model, x).double(), _fd_grad_norm(model, x), rtol=1e-6, atol=1e-9)


def test_global_bound_is_the_spectral_norm_of_a_single_linear_layer():
    torch.manual_seed(0)
    layer = nn.Linear(7, 5)
    expected = torch.linalg.svdvals(layer.weight.detach().double())[0].item()
    assert global_lipschitz_bound(nn.Sequential(layer), (7,)) == pytest.approx(expected, rel=1e-6)


def test_conv_norm_is_the_operator_norm_not_the_reshaped_kernel():
    torch.manual_seed(0)
    conv = nn.Conv2d(2, 3, 3, padding=1)
    # the explicit matrix of the convolution on 2x5x5 inputs, built independently with unfold
    eye = torch.eye(2 * 25).view(-1, 2, 5, 5)
    with torch.no_grad():
        mat = (conv(eye) - conv.bias.view(1, -1, 1, 1)).flatten(1).T.double()
    expected = torch.linalg.svdvals(mat)[0].item()
    assert global_lipschitz_bound(nn.Sequential(conv), (2, 5, 5)) == pytest.approx(expected, rel=1e-6)
    # the power-iteration path (forced by max_dense=0) agrees within its 1% slack and stays above
    approx = global_lipschitz_bound(nn.Sequential(conv), (2, 5, 5), max_dense=0)
    assert expected <= approx <= 1.0101 * expected


def test_batchnorm_is_folded():
    torch.manual_seed(0)
    lin, bn = nn.Linear(4, 3), nn.BatchNorm1d(3)
    bn.running_var.uniform_(0.5, 2.0)
    bn.weight.data.uniform_(-2, 2)
    seq = nn.Sequential(lin, bn).eval()
    w = lin.weight.detach() * (bn.weight / torch.sqrt(bn.running_var + bn.eps)).detach()[:, None]
    assert global_lipschitz_bound(seq, (4,)) == pytest.approx(torch.linalg.svdvals(w.double())[0].item(), rel=1e-6)


@pytest.mark.parametrize("seed", range(4))
def test_global_bound_upper_bounds_every_gradient_found(seed):
    torch.manual_seed(seed)
    for model, x in [(MLP(2, 3, hidden=(32, 32)), 4 * torch.randn(64, 2)),
                     (SmallCNN(width=4).eval(), torch.rand(16, 1, 8, 8))]:
        if isinstance(model, SmallCNN):  # give BatchNorm non-trivial statistics
            for m in model.modules():
                if isinstance(m, nn.BatchNorm2d):
                    m.running_var.uniform_(0.2, 3.0)
                    m.running_mean.uniform_(-1, 1)
        bound = global_lipschitz_bound(model)
        local = local_lipschitz(model, x, 0.5, steps=10)
        assert local.max().item() <= bound * (1 + 1e-6)


def test_local_estimate_is_at_least_the_centre_gradient():
    torch.manual_seed(1)
    model = MLP(2, 3, hidden=(32, 32))
    x = 2 * torch.randn(32, 2)
    centre = input_gradient_norm(model, x)
    for method in ("pgd", "sample"):
        est = local_lipschitz(model, x, 1.0, method=method, steps=10, n=16)
        assert torch.all(est >= centre - 1e-7)
    assert torch.equal(local_lipschitz(model, x, 0.0), centre)


def test_certified_radius_hand_worked():
    r = certified_radius(torch.tensor([-5.0, -3.0, -1.0]), threshold=-3.0, lipschitz=2.0)
    torch.testing.assert_close(r, torch.tensor([1.0, 0.0, 1.0], dtype=torch.float64))
    r = certified_radius([-5.0, -1.0], -3.0, torch.tensor([4.0, 1.0]), eps=1.5)
    torch.testing.assert_close(r, torch.tensor([0.5, 1.5], dtype=torch.float64))
    assert math.isinf(certified_radius([-5.0], -3.0, 0.0)[0].item())
    with pytest.raises(ValueError, match="lipschitz"):
        certified_radius([-5.0, -1.0], -3.0, torch.tensor([1.0, 2.0, 3.0]))
    with pytest.raises(ValueError, match="finite"):
        certified_radius([float("nan")], -3.0, 1.0)
    with pytest.raises(ValueError, match=">= 0"):
        certified_radius([-1.0], -3.0, -1.0)


@pytest.mark.parametrize("seed", range(6))
def test_certificates_from_the_global_bound_are_never_broken(seed):
    """Soundness: inside the certified radius, no attack and no random probe flips a decision."""
    torch.manual_seed(seed)
    model = MLP(2, 3, hidden=(16, 16)) if seed % 2 == 0 else SmallCNN(width=4).eval()
    x = 3 * torch.randn(40, 2) if seed % 2 == 0 else torch.rand(30, 1, 8, 8)
    with torch.no_grad():
        e = energy(model(x))
    threshold = e.median().item()
    keep = (e - threshold).abs() > 1e-6
    x, e = x[keep], e[keep]
    r = certified_radius(e, threshold, global_lipschitz_bound(model)).float()
    is_id = e <= threshold
    eps = 0.999 * r
    for tgt, mask in (("ood", is_id), ("id", ~is_id)):
        if mask.any():
            _, e_adv = score_attack(model, x[mask], eps[mask], tgt, steps=30, restarts=2, seed=seed)
            assert torch.all((e_adv <= threshold) == is_id[mask])
    # random probes on the sphere of radius 0.999 r
    for _ in range(20):
        d = torch.randn_like(x)
        d = d / d.flatten(1).norm(dim=1).view(-1, *([1] * (x.ndim - 1))) * eps.view(-1, *([1] * (x.ndim - 1)))
        with torch.no_grad():
            assert torch.all((energy(model(x + d)) <= threshold) == is_id)


def test_attack_moves_energy_the_right_way_and_stays_in_the_ball():
    torch.manual_seed(0)
    model = MLP(2, 3)
    x = torch.randn(20, 2)
    with torch.no_grad():
        e0 = energy(model(x))
    x_up, e_up = score_attack(model, x, 0.5, "ood", steps=20)
    x_dn, e_dn = score_attack(model, x, 0.5, "id", steps=20)
    assert torch.all(e_up >= e0 - 1e-6) and torch.all(e_dn <= e0 + 1e-6)
    assert torch.all((x_up - x).norm(dim=1) <= 0.5 + 1e-5) and torch.all((x_dn - x).norm(dim=1) <= 0.5 + 1e-5)
    with torch.no_grad():
        torch.testing.assert_close(energy(model(x_up)), e_up)


def test_attack_radius_brackets_the_certified_radius():
    torch.manual_seed(2)
    model = MLP(2, 3, hidden=(16, 16))
    x = 3 * torch.randn(12, 2)
    with torch.no_grad():
        e = energy(model(x))
    t = e.median().item()
    cert = certified_radius(e, t, global_lipschitz_bound(model))
    found = attack_radius(model, x, t, eps_max=float(cert.max()) * 50 + 1, steps=20)
    finite = torch.isfinite(found)
    assert finite.any()
    assert torch.all(found[finite].double() >= cert[finite] * 0.999)


def test_unsupported_layers_raise_clearly():
    class Residual(nn.Module):
        def forward(self, x):
            return x

    with pytest.raises(ValueError, match="not supported"):
        global_lipschitz_bound(nn.Sequential(nn.Linear(2, 2), nn.GELU()), (2,))
    with pytest.raises(ValueError, match="supports nn.Sequential"):
        global_lipschitz_bound(Residual(), (2,))
    with pytest.raises(ValueError, match="overlapping"):
        global_lipschitz_bound(nn.Sequential(nn.MaxPool2d(3, stride=1)), (1, 5, 5))
