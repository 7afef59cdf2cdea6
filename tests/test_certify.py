"""Sound certificates (gregnb.certify): every bound is checked against an independent computation:
sampled energies in the ball, PGD attacks, a brute-force radius on a 2-D model, and hand-worked
linear models."""
import math

import pytest
import torch
from torch import nn

from gregnb.certify import build_graph, energy_bounds, grid_radius, logit_bounds, run_graph, sound_radius
from gregnb.certify.rounding import safety_margin
from gregnb.certification import certified_area, certified_curve, nearest_other_class
from gregnb.lipschitz import attack_radius, score_attack
from gregnb.models import MLP, LipschitzCNN, SmallCNN
from gregnb.scores import energy


def _random_bn(model: nn.Module) -> nn.Module:
    """Non-trivial BatchNorm statistics and affine parameters (so folding is really tested)."""
    for m in model.modules():
        if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            m.running_var.uniform_(0.2, 3.0)
            m.running_mean.uniform_(-1, 1)
            m.weight.data.uniform_(-2, 2)
            m.bias.data.uniform_(-1, 1)
    return model.eval()


def _models(seed: int):
    """(name, model, inputs, eps_max): a ReLU MLP on 2-D points, a small CNN with BatchNorm and
    max-pooling on 8x8 images, and the Lipschitz CNN."""
    torch.manual_seed(seed)
    return [("mlp", MLP(2, 3, hidden=(32, 32)).eval(), 2 * torch.randn(24, 2), 3.0),
            ("cnn", _random_bn(SmallCNN(width=4)), torch.rand(12, 1, 8, 8), 2.0),
            ("lipcnn", LipschitzCNN(width=4, lipschitz=8.0).eval(), torch.rand(8, 1, 8, 8), 2.0)]


def _threshold(model, x) -> float:
    """A threshold halfway between the two middle energies: half the points ID, none on the boundary."""
    with torch.no_grad():
        e = energy(model(x)).double().sort().values
    return float((e[len(e) // 2 - 1] + e[len(e) // 2]) / 2)


def _in_ball(x: torch.Tensor, eps: float, n: int, gen: torch.Generator) -> torch.Tensor:
    """``n`` points per sample, uniform in the ℓ2 ball plus ``n`` on its sphere: ``(N, 2n, ...)``."""
    d = x[0].numel()
    v = torch.randn(len(x), 2 * n, d, generator=gen)
    v = v / v.norm(dim=2, keepdim=True)
    r = torch.cat([torch.rand(len(x), n, 1, generator=gen) ** (1 / d), torch.ones(len(x), n, 1)], 1)
    return x[:, None] + (eps * r * v).view(len(x), 2 * n, *x.shape[1:])


def test_graph_reproduces_the_model():
    for _, model, x, _ in _models(0):
        ops = build_graph(model, tuple(x.shape[1:]))
        torch.testing.assert_close(run_graph(ops, x), model(x).detach().double(), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("method", ["global", "ibp", "crown"])
def test_energy_bounds_contain_sampled_and_attacked_energies(method):
    gen = torch.Generator().manual_seed(0)
    for name, model, x, _ in _models(1):
        eps = 0.5 if name == "mlp" else 0.2
        lo, hi = energy_bounds(model, x, eps, method)
        pts = _in_ball(x, eps, 200, gen)
        with torch.no_grad():
            e = energy(model(pts.flatten(0, 1))).double().view(len(x), -1)
        _, e_up = score_attack(model, x, eps, "ood", steps=40, restarts=2)  # pushes E up
        _, e_down = score_attack(model, x, eps, "id", steps=40, restarts=2)  # pushes E down
        highest = torch.maximum(e.amax(1), e_up.double())
        lowest = torch.minimum(e.amin(1), e_down.double())
        assert (lo <= lowest + 1e-6).all() and (hi >= highest - 1e-6).all(), (name, method)


@pytest.mark.parametrize("method", ["global", "ibp", "crown"])
def test_no_attack_flips_a_decision_inside_the_sound_radius(method):
    for name, model, x, eps_max in _models(2):
        with torch.no_grad():
            e = energy(model(x)).double()
        threshold = _threshold(model, x)
        r = sound_radius(model, x, threshold, method=method, eps_max=eps_max)
        assert (r >= 0).all() and (r <= eps_max).all()
        is_id = e <= threshold
        for target, mask in (("ood", is_id), ("id", ~is_id)):
            _, e_adv = score_attack(model, x[mask], 0.999 * r[mask].float(), target, steps=60, restarts=2)
            flipped = (e_adv > threshold) if target == "ood" else (e_adv <= threshold)
            assert not flipped.any(), (name, method, target)
        # and the attack's own radius (an upper bound of the true radius) is never below a sound radius
        ra = attack_radius(model, x, threshold, eps_max=eps_max, steps=20, n_bisect=6)
        assert (r <= ra * (1 + 1e-6)).all(), (name, method)


def test_the_sound_radius_is_verified_by_the_bounds_themselves():
    _, model, x, eps_max = _models(3)[1]
    with torch.no_grad():
        e = energy(model(x)).double()
    t = _threshold(model, x)
    r = sound_radius(model, x, t, method="crown", eps_max=eps_max)
    lo, hi = energy_bounds(model, x, r, "crown")
    assert torch.where(e <= t, hi <= t + 1e-9, lo > t - 1e-9).all()


def test_crown_is_tighter_than_ibp_and_ibp_than_nothing():
    for name, model, x, eps_max in _models(4)[:2]:
        t = _threshold(model, x)
        # the untrained CNN's energies sit within the worst-case rounding margin of the median: compare the
        # bounds' tightness under the (smaller) probabilistic margin, which this test is not about
        r = {m: sound_radius(model, x, t, method=m, eps_max=eps_max, rounding="probabilistic")
             for m in ("global", "ibp", "crown")}
        assert r["crown"].median() >= 2 * r["ibp"].median() > 0, name
        assert (r["crown"] >= r["ibp"] * (1 - 0.05)).float().mean() >= 0.9, name  # per point, up to search tolerance


def test_ibp_and_global_bounds_are_monotone_in_eps():
    _, model, x, _ = _models(5)[1]
    prev = None
    for eps in (0.0, 0.01, 0.05, 0.2, 0.5):
        for method in ("global", "ibp"):
            lo, hi = energy_bounds(model, x, eps, method)
            if prev is not None and method in prev:
                assert (lo <= prev[method][0] + 1e-12).all() and (hi >= prev[method][1] - 1e-12).all()
            prev = {**(prev or {}), method: (lo, hi)}
    lo, hi = energy_bounds(model, x, 0.0, "crown")  # at eps = 0 the bounds collapse onto E(x)
    e = energy(model(x)).detach().double()
    torch.testing.assert_close(lo, e, atol=1e-4, rtol=0)
    torch.testing.assert_close(hi, e, atol=1e-4, rtol=0)


def test_a_linear_model_is_certified_exactly():
    torch.manual_seed(6)
    layer = nn.Linear(5, 1)
    model = nn.Sequential(layer).eval()
    x = torch.randn(10, 5)
    a = layer.weight.detach().double()[0]
    e = -(x.double() @ a + layer.bias.detach().double())  # K = 1: E = -f
    t = _threshold(model, x)
    exact = (t - e).abs() / a.norm()  # the distance to the hyperplane E = t, worked by hand
    for method in ("global", "ibp", "crown"):
        r = sound_radius(model, x, t, method=method, eps_max=10.0, rel_tol=1e-4, n_bisect=40)
        assert (r <= exact).all()
        # the bounds are exact, so the radius is where the hyperplane's distance meets the safety margin
        # (float32 rounding) over the ball: |a| r + tol(r) <= |t - E|, and no more than tol(eps_max) below
        margin, tol, tol_max = (t - e).abs(), safety_margin(model, x, t, r), safety_margin(model, x, t, 10.0)
        assert (tol > 0).all() and (tol_max < 1e-3 * margin).all()
        assert (r * a.norm() + tol <= margin * (1 + 1e-9)).all()
        assert (r * a.norm() >= (margin - tol_max) * (1 - 2e-4)).all()
        lo, hi = energy_bounds(model, x, 0.3, method)
        torch.testing.assert_close(hi, e + 0.3 * a.norm(), rtol=1e-9, atol=1e-9)
        torch.testing.assert_close(lo, e - 0.3 * a.norm(), rtol=1e-9, atol=1e-9)
    # several logits: each one's range over the ball is exact, z_k(x) ± eps ||w_k||
    wide = nn.Sequential(nn.Linear(5, 4)).eval()
    w, b = wide[0].weight.detach().double(), wide[0].bias.detach().double()
    z = x.double() @ w.T + b
    for method in ("ibp", "crown"):
        lo, hi = logit_bounds(wide, x, 0.3, method)
        torch.testing.assert_close(lo, z - 0.3 * w.norm(dim=1), rtol=1e-9, atol=1e-9)
        torch.testing.assert_close(hi, z + 0.3 * w.norm(dim=1), rtol=1e-9, atol=1e-9)


def _toy_model():
    """A small ReLU MLP fitted (full batch, a few hundred Adam steps) to the toy blobs."""
    from gregnb.data.toy2d import load_toy

    data = load_toy("blobs", seed=0, n_aux=50)
    torch.manual_seed(0)
    model = MLP(2, data.n_classes, hidden=(32, 32))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(300):
        opt.zero_grad()
        nn.functional.cross_entropy(model(data.train_x), data.train_y).backward()
        opt.step()
    return model.eval(), data


def test_grid_radius_matches_a_brute_force_radius_and_the_attack_on_the_toy():
    model, data = _toy_model()
    with torch.no_grad():
        e_test = energy(model(data.test_x))
    t = float(e_test.quantile(0.95))
    x = torch.cat([data.test_x[:6], data.ood["near"][:6]])
    eps_max, cell = 3.0, 0.01
    r = grid_radius(model, x, t, eps_max=eps_max, cell=cell)
    # brute force: the nearest flipped point on a fine polar grid around each point
    ang = torch.linspace(0, 2 * math.pi, 361)[:-1]
    rad = torch.linspace(0, eps_max, 601)[1:]
    offs = (rad[:, None, None] * torch.stack([ang.cos(), ang.sin()], 1)[None]).reshape(-1, 2)
    dist = offs.norm(dim=1)
    with torch.no_grad():
        e0 = energy(model(x))
        brute = []
        for i in range(len(x)):
            e = energy(model(x[i] + offs))
            flip = (e > t) if e0[i] <= t else (e <= t)
            brute.append(dist[flip].min().item() if flip.any() else eps_max)
    brute = torch.tensor(brute, dtype=torch.float64)
    assert (r <= brute + 1e-3).all()  # sound: never beyond a flip that was found
    assert (r >= brute - 2 * cell - 0.01).all()  # near-exact: within two cells (and the polar grid's spacing)
    ra = attack_radius(model, x, t, eps_max=eps_max, steps=30, n_bisect=10).double()
    hit = torch.isfinite(ra)
    assert hit.sum() >= 4
    assert (r[hit] <= ra[hit] * (1 + 1e-6)).all()
    assert ((ra[hit] - r[hit]) / ra[hit]).median() <= 0.05  # within a few percent of the attack
    via_api = sound_radius(model, x, t, method="grid", eps_max=eps_max, cell=cell)
    torch.testing.assert_close(via_api, r)


def test_misdetected_points_get_radius_zero():
    _, model, x, eps_max = _models(7)[0]
    with torch.no_grad():
        e = energy(model(x)).double()
    t = _threshold(model, x)
    truth = torch.ones(len(x), dtype=torch.bool)  # call every point ID: those decided OOD are wrong
    for method in ("global", "ibp", "crown"):
        r = sound_radius(model, x, t, method=method, eps_max=eps_max, is_id=truth)
        assert (r[e > t] == 0).all() and (r[e <= t] > 0).all()


def test_lipschitz_cnn_layers_have_the_designed_operator_norms():
    torch.manual_seed(8)
    model = LipschitzCNN(width=4, lipschitz=5.0)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    for _ in range(30):  # training steps move the weights; the power iteration keeps up
        opt.zero_grad()
        model(torch.rand(16, 1, 8, 8)).pow(2).mean().backward()
        opt.step()
    model.eval()
    shapes = [(1, 8, 8), (4, 8, 8), (8, 4, 4)]
    convs = [m for m in model.body if isinstance(m, nn.Conv2d)]
    for conv, shape in zip(convs, shapes):  # the explicit matrix of each convolution, built column by column
        d = math.prod(shape)
        with torch.no_grad():
            cols = nn.functional.conv2d(torch.eye(d).view(d, *shape), conv.weight, None, 1, 1).flatten(1)
        assert torch.linalg.matrix_norm(cols.double(), 2).item() == pytest.approx(1.0, rel=2e-2)
    fc_norm = torch.linalg.matrix_norm(model.fc.weight.detach().double(), 2).item()
    assert fc_norm == pytest.approx(5.0, rel=2e-2)
    x = torch.rand(4, 1, 8, 8)
    torch.testing.assert_close(model(x), model(x))  # eval mode: fixed weights


def test_certified_curve_and_scale_by_hand():
    r = torch.tensor([0.0, 0.1, 0.3, 0.3, 1.0])
    torch.testing.assert_close(certified_curve(r, [0.0, 0.1, 0.2, 0.3, 2.0]),
                               torch.tensor([0.8, 0.8, 0.6, 0.6, 0.0], dtype=torch.float64))

    class Tiny:
        train_x = torch.tensor([[0.0, 0.0], [3.0, 4.0], [1.0, 0.0]]).view(3, 1, 1, 2)
        train_y = torch.tensor([0, 1, 1])
        test_x = torch.tensor([[0.0, 0.0]]).view(1, 1, 1, 2)
        test_y = torch.tensor([0])

    assert nearest_other_class(Tiny()).tolist() == [1.0]  # the class-0 training point at distance 0 is skipped


def test_certified_curve_counts_the_detection_mask_not_positive_radii():
    r = torch.tensor([0.0, 0.0, 0.1, 0.3])
    detected = torch.tensor([False, True, True, True])   # the second is detected, certified at no radius
    torch.testing.assert_close(certified_curve(r, [0.0, 0.05, 0.2], detected),
                               torch.tensor([0.75, 0.5, 0.25], dtype=torch.float64))
    with pytest.raises(ValueError, match="detected"):
        certified_curve(r, [0.0], detected[:3])
    with pytest.raises(ValueError, match="detected"):
        certified_curve(r, [0.0], detected.float())


def test_certified_area_over_log_eps_by_hand():
    # range [0.001, 1]: three decades. Radii 0.01, 0.1 and 10 cover 1/3, 2/3 and all of it; a detected point
    # certified at 0.0001 (below the range) and a missed one count 0: (1/3 + 2/3 + 1 + 0 + 0) / 5 = 0.4.
    r = torch.tensor([0.01, 0.1, 10.0, 1e-4, 0.0])
    detected = torch.tensor([True, True, True, True, False])
    assert certified_area(r, 1e-3, 1.0, detected) == pytest.approx(0.4)
    # it is the mean over log eps of the certified curve: a fine log grid's trapezoid agrees
    grid = torch.logspace(-3, 0, 30001, dtype=torch.float64)
    curve = certified_curve(r, grid, detected)
    trapezoid = float(torch.trapezoid(curve, grid.log()) / math.log(1e3))
    assert trapezoid == pytest.approx(0.4, abs=1e-3)
    # 0.5 lies halfway between 0.25 and 1 on a log axis (a linear axis would give 1/3)
    assert certified_area(torch.tensor([0.5]), 0.25, 1.0) == pytest.approx(0.5)
    for lo, hi in ((0.0, 1.0), (1.0, 1.0), (0.1, math.inf)):
        with pytest.raises(ValueError, match="eps_min"):
            certified_area(r, lo, hi)


def test_bad_input_raises_value_error():
    _, model, x, _ = _models(9)[0]
    with pytest.raises(ValueError, match="method"):
        energy_bounds(model, x, 0.1, "exact")
    with pytest.raises(ValueError, match="eps"):
        energy_bounds(model, x, -0.1, "ibp")
    with pytest.raises(ValueError, match="NaN"):
        energy_bounds(model, torch.full((2, 2), math.nan), 0.1, "ibp")
    with pytest.raises(ValueError, match="threshold"):
        sound_radius(model, x, math.nan)
    with pytest.raises(ValueError, match="eps_max"):
        sound_radius(model, x, 0.0, eps_max=0.0)
    with pytest.raises(ValueError, match="not supported"):
        energy_bounds(nn.Sequential(nn.Linear(2, 3), nn.Tanh(), nn.Linear(3, 2)), x, 0.1, "ibp")
    with pytest.raises(ValueError, match="2-D"):
        grid_radius(SmallCNN(width=4).eval(), torch.rand(2, 1, 8, 8), 0.0, eps_max=1.0)
    with pytest.raises(ValueError, match="radii"):
        certified_curve(torch.tensor([-1.0]), [0.0])
    with pytest.raises(ValueError, match="lipschitz"):
        LipschitzCNN(lipschitz=0.0)
