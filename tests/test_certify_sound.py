"""Sound radii hold for the model as it runs (float32), not just for its exact float64 graph.

The judge is the real float32 model: PGD with random restarts inside the certified ball (both pushing the
energy up and down), plus random points in and on the ball. Thresholds are shifted off each point's own
float32 energy to make margins of exactly 0 and of 1e-7 .. 1e-3 energy units (and 1e-2, where radii are
large enough for the attack to have room), on the 2-D MLP, the BatchNorm CNN and the Lipschitz CNN, for
every method. The safety margin itself is checked against a float64 copy of each model."""
import copy

import pytest
import torch
from torch import nn

from gregnb.certify import sound_radius
from gregnb.certify.rounding import model_energy, safety_margin
from gregnb.lipschitz import score_attack
from gregnb.models import MLP, LipschitzCNN, SmallCNN
from gregnb.scores import energy

MARGINS = (0.0, 1e-7, 1e-6, 1e-5, 1e-4, 1e-3, 1e-2)


def _bn_from_data(model: nn.Module, x: torch.Tensor) -> nn.Module:
    """BatchNorm statistics of a real batch (momentum 1) and random affine parameters: every BN is folded
    by the certifier, and the features still depend on the input (random statistics can swamp them)."""
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.momentum = 1.0
            m.weight.data.uniform_(0.5, 2.0)
            m.bias.data.uniform_(-0.5, 0.5)
    model.train()
    with torch.no_grad():
        model(x)
    return model.eval()


def _models():
    """(name, model, two inputs, eps_max, methods): untrained, fixed seeds."""
    torch.manual_seed(0)
    mlp = MLP(2, 3, hidden=(16, 16)).eval()
    torch.manual_seed(1)
    cnn = _bn_from_data(SmallCNN(width=4), torch.rand(64, 1, 8, 8))
    torch.manual_seed(2)
    lip = LipschitzCNN(width=4, lipschitz=8.0).eval()
    torch.manual_seed(3)
    return [("mlp", mlp, 2 * torch.randn(2, 2), 3.0, ("global", "ibp", "crown", "grid")),
            ("cnn", cnn, torch.rand(2, 1, 8, 8), 2.0, ("global", "ibp", "crown")),
            ("lipcnn", lip, torch.rand(2, 1, 8, 8), 2.0, ("global", "ibp", "crown"))]


def _flipped(model, x0: torch.Tensor, r: torch.Tensor, threshold: torch.Tensor, decide_id: torch.Tensor,
             seed: int = 0, n_random: int = 128) -> torch.Tensor:
    """Per case (``x0[k]``, radius ``r[k]``, ``threshold[k]``, decision ``decide_id[k]``): whether the float32
    model's decision changes anywhere the judge looks in the closed ball: PGD (30 steps, 4 restarts, three
    from random starts) towards the other side, then ``n_random`` random points in the ball and on its
    sphere. Returns ``(B,)`` bools."""
    out = torch.zeros(len(x0), dtype=torch.bool)
    r32 = r.float()
    for target, mask in (("ood", decide_id), ("id", ~decide_id)):
        if mask.any():
            _, e_adv = score_attack(model, x0[mask], r32[mask], target, steps=30, restarts=4, seed=seed)
            out[mask] |= (e_adv > threshold[mask]) if target == "ood" else (e_adv <= threshold[mask])
    gen = torch.Generator().manual_seed(seed)
    b, d = len(x0), x0[0].numel()
    v = torch.randn(b, n_random, d, generator=gen)
    v = v / v.norm(dim=2, keepdim=True)
    rad = torch.cat([torch.rand(b, n_random // 2, 1, generator=gen) ** (1 / d), torch.ones(b, n_random // 2, 1)], 1)
    pts = x0[:, None] + (r32.view(-1, 1, 1) * rad * v).view(b, n_random, *x0.shape[1:])
    inside = (pts - x0[:, None]).flatten(2).norm(dim=2) <= r32[:, None]  # float32 may step just outside
    with torch.no_grad():
        e = energy(model(pts.flatten(0, 1))).view(b, n_random)
    t = threshold.float()[:, None]  # the model compares in float32
    flip = torch.where(decide_id[:, None], e > t, e <= t) & inside
    return out | flip.any(1)


@pytest.mark.slow
def test_no_attack_flips_a_decision_inside_a_sound_radius_at_any_margin():
    positive = 0
    for name, model, x, eps_max, methods in _models():
        e32 = model_energy(model, x)
        cases = []  # (point, threshold, decided ID, radius)
        for i in range(len(x)):
            for margin in MARGINS:
                for decide_id in (True, False) if margin > 0 else (True,):
                    # E32 <= t is ID: t = E32 + margin; E32 > t is OOD: t = E32 - margin
                    t = float(e32[i]) + (margin if decide_id else -margin)
                    for method in methods:
                        r = float(sound_radius(model, x[i:i + 1], t, method=method, eps_max=eps_max, n_bisect=6)[0])
                        assert 0 <= r <= eps_max
                        if margin == 0:
                            assert r == 0, (name, method, "a point on the threshold gets radius 0")
                        if r > 0:
                            cases.append((i, t, decide_id, r, margin, method))
        positive += len(cases)
        idx, t, dec, r = (torch.tensor([c[k] for c in cases]) for k in range(4))
        flipped = _flipped(model, x[idx], r.double(), t.double(), dec)
        assert not flipped.any(), (name, [c for c, f in zip(cases, flipped) if f])
    assert positive >= 20  # the judge really judged: large enough margins get positive radii


def test_the_safety_margin_bounds_the_float32_error_and_zeroes_points_inside_it():
    gen = torch.Generator().manual_seed(0)
    for name, model, x, eps_max, methods in _models():
        m64 = copy.deepcopy(model).double()
        for eps in (0.0, 0.1, eps_max):
            d = x[0].numel()
            v = torch.randn(len(x), 300, d, generator=gen)
            v = eps * torch.rand(len(x), 300, 1, generator=gen) * v / v.norm(dim=2, keepdim=True)
            pts = (x[:, None] + v.view(len(x), 300, *x.shape[1:])).flatten(0, 1)
            with torch.no_grad():  # the float32 model against its float64 copy, at the same float32 points
                err = (energy(model(pts)).double() - energy(m64(pts.double()))).abs().view(len(x), -1).amax(1)
            prob = safety_margin(model, x, 0.0, eps, rounding="probabilistic")
            worst = safety_margin(model, x, 0.0, eps, rounding="worst-case")
            assert (err < prob).all() and (prob < worst).all(), (name, eps, err, prob, worst)
            assert (prob < 1e-3).all(), (name, eps, prob)  # small against the energy scale of a trained model
            assert torch.equal(worst, safety_margin(model, x, 0.0, eps)), name  # worst case is the default
        # a threshold between the float32 energy and the exact one: the two decisions disagree -> radius 0
        with torch.no_grad():
            e32, e64 = energy(model(x)).double(), energy(m64(x.double()))
        t = float((e32[0] + e64[0]) / 2)
        for method in methods:
            assert sound_radius(model, x[:1], t, method=method, eps_max=eps_max)[0] == 0, (name, method)
        # just outside the margin at the point: certified only if the margin over the ball allows it
        tol = float(safety_margin(model, x[:1], float(e32[0]), 0.0)[0])
        assert sound_radius(model, x[:1], float(e32[0]) + 0.5 * tol, method="crown", eps_max=eps_max)[0] == 0


def test_worst_case_rounding_gives_smaller_radii_and_bad_rounding_raises():
    name, model, x, eps_max, _ = _models()[1]
    t = float(model_energy(model, x[:1])[0]) + 1e-2
    prob = sound_radius(model, x[:1], t, method="crown", eps_max=eps_max, rounding="probabilistic")
    worst = sound_radius(model, x[:1], t, method="crown", eps_max=eps_max)  # the default: a proof
    assert 0 < worst[0] <= prob[0]
    assert not _flipped(model, x[:1], worst, torch.tensor([t], dtype=torch.float64), torch.tensor([True])).any()
    with pytest.raises(ValueError, match="rounding"):
        sound_radius(model, x, t, rounding="exact")
