import math

import pytest
import torch
import torch.nn.functional as F

from gregnb.losses import energy_margin_loss, greg_objective, greg_penalty, oe_loss
from gregnb.models import MLP, SmallCNN
from gregnb.scores import energy

torch.set_default_dtype(torch.float32)


def test_energy_margin_loss_hand_worked():
    e_id = torch.tensor([-10.0, -3.0])  # m_in = -5: hinges 0 and 2 -> squares 0, 4 -> mean 2
    e_ood = torch.tensor([-8.0, 0.0])  # m_out = -4: hinges 4 and 0 -> squares 16, 0 -> mean 8
    assert energy_margin_loss(e_id, e_ood, -5.0, -4.0).item() == pytest.approx(10.0)


def test_oe_loss_is_cross_entropy_to_uniform():
    z = torch.randn(7, 5, dtype=torch.float64)
    uniform = torch.full_like(z, 1 / 5)
    assert oe_loss(z).item() == pytest.approx(F.cross_entropy(z, uniform).item(), rel=1e-12)
    assert oe_loss(torch.zeros(3, 5)).item() == pytest.approx(math.log(5), rel=1e-6)


def _mlp64(seed=0):
    torch.manual_seed(seed)
    return MLP(2, 3, hidden=(16, 16), activation="softplus").double()


def _fd_grad_norms(model, x, h=1e-6):
    """Per-sample ||grad_x E(x_i)|| by central finite differences (float64)."""
    norms = []
    for i in range(len(x)):
        g = torch.zeros_like(x[i])
        for j in range(x.shape[1]):
            d = torch.zeros_like(x[i])
            d[j] = h
            with torch.no_grad():
                g[j] = (energy(model((x[i] + d)[None])) - energy(model((x[i] - d)[None]))).item() / (2 * h)
        norms.append(g.norm())
    return torch.stack(norms)


def test_paper_penalty_matches_finite_differences():
    model = _mlp64()
    x = 3 * torch.randn(12, 2, dtype=torch.float64)
    n_id = 5
    with torch.no_grad():
        e = energy(model(x))
    # margins at the medians of each part, so both masks select some rows and skip others
    m_in, m_out = e[:n_id].median().item(), e[n_id:].median().item() - 1e-9
    if m_in >= m_out:
        m_out = m_in + 1e-3
    xg = x.clone().requires_grad_(True)
    eg = energy(model(xg))
    pen, norms = greg_penalty(xg, eg, n_id, m_in, m_out, return_norms=True)
    fd = _fd_grad_norms(model, x)
    mask_id, mask_ood = (e[:n_id] <= m_in).double(), (e[n_id:] >= m_out).double()
    expected = (mask_id * fd[:n_id]).mean() + (mask_ood * fd[n_id:]).mean()
    assert 0 < mask_id.sum() < n_id and 0 < mask_ood.sum() < len(x) - n_id
    assert pen.item() == pytest.approx(expected.item(), rel=1e-6)
    # masks select exactly the rows past their margins: other rows have a zero gradient row
    masks = torch.cat([mask_id, mask_ood]).bool()
    assert torch.all(norms[~masks] == 0) and torch.all(norms[masks] > 0)
    torch.testing.assert_close(norms[masks], fd[masks], rtol=1e-6, atol=1e-9)


def test_penalize_all_is_the_unmasked_mean():
    model = _mlp64(1)
    x = torch.randn(8, 2, dtype=torch.float64)
    xg = x.clone().requires_grad_(True)
    pen = greg_penalty(xg, energy(model(xg)), 3, -100.0, 100.0, penalize="all")  # no row past a margin
    fd = _fd_grad_norms(model, x)
    assert pen.item() == pytest.approx((fd[:3].mean() + fd[3:].mean()).item(), rel=1e-6)
    xg = x.clone().requires_grad_(True)
    assert greg_penalty(xg, energy(model(xg)), 3, -100.0, 100.0).item() == 0.0


def _bn_cnn():
    torch.manual_seed(0)
    model = SmallCNN(n_classes=4, width=4).double()
    model.train()  # BatchNorm couples the rows through the batch statistics
    return model


@pytest.mark.parametrize("convention", ["reference", "paper"])
def test_penalty_matches_jacobian_formulation_with_batchnorm(convention):
    model = _bn_cnn()
    x = torch.rand(10, 1, 8, 8, dtype=torch.float64)
    n_id = 4
    with torch.no_grad():
        e = energy(model(x))
    m_in, m_out = e[:n_id].median().item(), e[n_id:].median().item()
    if m_in >= m_out:
        m_out = m_in + 1e-3
    mask_id = (e[:n_id] < m_in).double() if convention == "reference" else (e[:n_id] <= m_in).double()
    mask_ood = (e[n_id:] > m_out).double() if convention == "reference" else (e[n_id:] >= m_out).double()

    def authors_hinge(inp):  # a second forward, differentiated with jacobian, as in the authors' code
        en = energy(model(inp))
        return -F.relu(m_in - en[:n_id]).mean() + F.relu(en[n_id:] - m_out).mean()

    def masked_sum(inp):
        en = energy(model(inp))
        return (mask_id * en[:n_id]).sum() + (mask_ood * en[n_id:]).sum()

    fn = authors_hinge if convention == "reference" else masked_sum
    jac = torch.autograd.functional.jacobian(fn, x)
    norms = jac.flatten(1).norm(dim=1)
    expected = norms.mean() if convention == "reference" else norms[:n_id].mean() + norms[n_id:].mean()
    xg = x.clone().requires_grad_(True)
    ours = greg_penalty(xg, energy(model(xg)), n_id, m_in, m_out, convention=convention)
    assert ours.item() == pytest.approx(expected.item(), rel=1e-5, abs=1e-12)
    assert expected.item() > 0


def test_reference_is_paper_over_n_without_coupling():
    # without BatchNorm: reference = (1/N) [ (1/n_id) sum_ID + (1/n_ood) sum_OOD ] of the masked norms,
    # paper = (1/n_id) sum_ID + (1/n_ood) sum_OOD: the same sums, but the reference is 1/N smaller
    model = _mlp64(2)
    x = 2 * torch.randn(9, 2, dtype=torch.float64)
    with torch.no_grad():
        x = x[energy(model(x)).argsort()]  # the 4 lowest energies are the ID rows
    xg = x.clone().requires_grad_(True)
    e = energy(model(xg))
    lo, hi = e.detach()[3].item(), e.detach()[4].item()
    m_in, m_out = lo + (hi - lo) / 3, lo + 2 * (hi - lo) / 3  # every row strictly past its margin, m_in < m_out
    ref = greg_penalty(xg, e, 4, m_in, m_out, convention="reference")
    paper = greg_penalty(xg, e, 4, m_in, m_out, convention="paper")
    # every row is masked in; reference gradients carry 1/n of their part
    fd = _fd_grad_norms(model, x)
    assert ref.item() == pytest.approx(((fd[:4] / 4).sum() + (fd[4:] / 5).sum()).item() / 9, rel=1e-6)
    assert paper.item() == pytest.approx((fd[:4].mean() + fd[4:].mean()).item(), rel=1e-6)


@pytest.mark.parametrize("n_id, n_ood", [(6, 6), (4, 8)])
def test_with_batchnorm_reference_is_paper_over_n_only_for_equal_parts(n_id, n_ood):
    # the authors' code weights ID rows by 1/n_id and outlier rows by 1/n_ood before differentiating; with
    # BatchNorm coupling the rows, that equals 1/n times the masked sum's gradient only when n_id = n_ood = n
    # (their GReg batch, 64 + 64); two-way GReg+'s 64 + 128 is close to N but not exact
    model = _bn_cnn()
    x = torch.rand(n_id + n_ood, 1, 8, 8, dtype=torch.float64)
    with torch.no_grad():
        e = energy(model(x))
    m_in, m_out = e.quantile(0.4).item(), e.quantile(0.6).item()
    xg = x.clone().requires_grad_(True)
    e = energy(model(xg))
    assert 0 < ((e[:n_id] < m_in).sum() + (e[n_id:] > m_out).sum()) < n_id + n_ood   # some rows masked out
    ratio = (greg_penalty(xg, e, n_id, m_in, m_out, convention="paper")
             / greg_penalty(xg, e, n_id, m_in, m_out, convention="reference")).item() / (n_id + n_ood)
    if n_id == n_ood:
        assert ratio == pytest.approx(1.0, rel=1e-9)
    else:
        assert abs(ratio - 1.0) > 1e-6


def test_penalty_is_differentiable_wrt_parameters():
    model = _bn_cnn().float()
    x = torch.rand(8, 1, 8, 8).requires_grad_(True)
    e = energy(model(x))
    m_in, m_out = e[:4].median().item(), e[4:].median().item()  # some rows in, some out
    pen = greg_penalty(x, e, 4, m_in, m_out)
    pen.backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert sum(g.abs().sum().item() for g in grads) > 0


def test_penalty_with_no_row_masked_has_zero_finite_gradients():
    model = _mlp64()
    x = torch.randn(6, 2, dtype=torch.float64).requires_grad_(True)
    pen = greg_penalty(x, energy(model(x)), 3, -1e6, 1e6)
    pen.backward()
    assert pen.item() == 0.0
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())


def test_penalty_bad_inputs():
    model = _mlp64()
    x = torch.randn(6, 2, dtype=torch.float64)
    with pytest.raises(ValueError, match="requires_grad"):
        greg_penalty(x, energy(model(x)), 3, -5, 0)
    xg = x.clone().requires_grad_(True)
    e = energy(model(xg))
    with pytest.raises(ValueError, match="n_id"):
        greg_penalty(xg, e, 0, -5, 0)
    with pytest.raises(ValueError, match="n_id"):
        greg_penalty(xg, e, 6, -5, 0)
    with pytest.raises(ValueError, match="shape"):
        greg_penalty(xg, e[:4], 2, -5, 0)
    with pytest.raises(ValueError, match="NaN"):
        greg_penalty(xg, e * float("nan"), 2, -5, 0)
    with pytest.raises(ValueError, match="convention"):
        greg_penalty(xg, e, 2, -5, 0, convention="code")
    with pytest.raises(ValueError, match="m_in must be below"):
        energy_margin_loss(e[:2], e[2:], 0.0, -1.0)


def test_objective_parts_add_up():
    torch.manual_seed(0)
    model = MLP(2, 3)
    x_id, y = torch.randn(6, 2), torch.randint(0, 3, (6,))
    x_ood = 4 * torch.randn(10, 2)
    total, parts = greg_objective(model, x_id, y, x_ood, m_in=-3.0, m_out=-1.0, lambda_s=0.1, lambda_grad=0.0)
    with torch.no_grad():
        logits = model(torch.cat([x_id, x_ood]))
        e = energy(logits)
        ce = F.cross_entropy(logits[:6], y)
        ls = (F.relu(e[:6] + 3) ** 2).mean() + (F.relu(-1 - e[6:]) ** 2).mean()
    assert total.item() == pytest.approx((ce + 0.1 * ls).item(), rel=1e-6)
    assert parts["loss_grad"] == 0.0
    assert parts["past_m_in"] == pytest.approx((e[:6] <= -3).float().mean().item())
    total_g, parts_g = greg_objective(model, x_id, y, x_ood, m_in=-3.0, m_out=-1.0, lambda_grad=2.0)
    assert total_g.item() == pytest.approx(total.item() + 2.0 * parts_g["loss_grad"], rel=1e-5)


def test_greg_objective_under_bf16_autocast_matches_float32():
    """The double-backward path under autocast (as on CUDA with --amp), checked on the CPU's autocast."""
    torch.manual_seed(0)
    model = SmallCNN(width=8).train()
    x_id, y = torch.rand(16, 1, 8, 8), torch.randint(0, 10, (16,))
    x_ood = torch.rand(16, 1, 8, 8)
    with torch.no_grad():
        e = energy(model(torch.cat([x_id, x_ood])))
    # margins inside the energies' range so that some rows are masked in on both sides
    kw = dict(m_in=e[:16].median().item(), m_out=e[:16].median().item() + 1e-3)
    results = []
    for amp in (False, True):
        model.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
            total, parts = greg_objective(model, x_id, y, x_ood, lambda_grad=1.0, **kw)
        total.backward()
        grads = torch.cat([p.grad.flatten() for p in model.parameters()])
        results.append((total.item(), parts["loss_grad"], grads))
    (t32, g32, w32), (t16, g16, w16) = results
    assert t16 == pytest.approx(t32, rel=3e-2) and g16 == pytest.approx(g32, rel=5e-2)
    cos = torch.nn.functional.cosine_similarity(w16.float(), w32.float(), dim=0).item()
    assert cos > 0.95 and torch.isfinite(w16).all()  # measured: about 0.98 (bf16 rounds the double backward)


def test_stacked_members_get_what_each_gets_alone():
    """A leading member axis: each member's loss is the one-model call's (the same reductions, row by row)."""
    from gregnb.losses import ce_loss, member_energy, penalty_logs

    torch.manual_seed(0)
    logits, y = torch.randn(3, 10, 4), torch.randint(0, 4, (3, 6))
    m_in, m_out = torch.tensor([-1.6, -1.4, -1.5]), torch.tensor([-1.0, -1.2, -0.9])
    e = member_energy(logits)
    stacked = {"oe": oe_loss(logits[:, 6:]), "ce": ce_loss(logits[:, :6], y),
               "energy": energy_margin_loss(e[:, :6], e[:, 6:], m_in, m_out)}
    for i in range(3):
        assert torch.equal(member_energy(logits)[i], energy(logits[i]))
        alone = {"oe": oe_loss(logits[i, 6:]), "ce": ce_loss(logits[i, :6], y[i]),
                 "energy": energy_margin_loss(e[i, :6], e[i, 6:], m_in[i].item(), m_out[i].item())}
        for k, v in alone.items():
            assert stacked[k][i].item() == pytest.approx(v.item(), rel=1e-6), k
    models = [_mlp64(s) for s in range(2)]
    x = torch.randn(2, 8, 2, dtype=torch.float64).requires_grad_(True)
    e = torch.stack([energy(m(x[i])) for i, m in enumerate(models)])
    lo, hi = e.detach()[:, :3].median(1).values, e.detach()[:, 3:].median(1).values
    hi = torch.maximum(hi, lo + 1e-3)  # margins inside both members' energies: some rows masked, some not
    for convention in ("paper", "reference"):
        pen, norms = greg_penalty(x, e, 3, lo, hi, convention=convention, return_norms=True)
        logs = penalty_logs(e.detach(), 3, lo, hi, norms, convention=convention)
        for i, m in enumerate(models):
            xi = x[i].detach().clone().requires_grad_(True)
            ei = energy(m(xi))
            one, one_norms = greg_penalty(xi, ei, 3, lo[i].item(), hi[i].item(), convention=convention,
                                          return_norms=True)
            assert pen[i].item() == pytest.approx(one.item(), rel=1e-12)
            one_logs = penalty_logs(ei.detach(), 3, lo[i].item(), hi[i].item(), one_norms, convention=convention)
            assert {k: v[i].item() for k, v in logs.items()} == pytest.approx(one_logs, rel=1e-12)


def test_settings_in_any_number_type():
    """Margins and weights: Python numbers, 0-d tensors and NumPy scalars give the same loss."""
    import numpy as np

    e_id, e_ood = torch.tensor([-10.0, -3.0]), torch.tensor([-8.0, 0.0])
    expected = energy_margin_loss(e_id, e_ood, -5.0, -4.0)
    for m_in, m_out in ((torch.tensor(-5.0), torch.tensor(-4.0)), (np.float32(-5), np.float64(-4)),
                        (np.array(-5.0), -4), (-5, np.int64(-4))):
        assert torch.equal(energy_margin_loss(e_id, e_ood, m_in, m_out), expected)
    torch.manual_seed(0)
    model = MLP(2, 3)
    x_id, y, x_ood = torch.randn(4, 2), torch.tensor([0, 1, 2, 0]), torch.randn(6, 2)
    a, _ = greg_objective(model, x_id, y, x_ood, m_in=-2.0, m_out=-1.0, lambda_s=0.1, lambda_grad=0.5)
    b, _ = greg_objective(model, x_id, y, x_ood, m_in=np.float64(-2.0), m_out=torch.tensor(-1.0),
                          lambda_s=torch.tensor(0.1), lambda_grad=np.float32(0.5))
    assert a.item() == pytest.approx(b.item(), rel=1e-6)


def test_bad_arguments_are_named():
    e = torch.tensor([-2.0, -1.0, 0.0, 1.0])
    with pytest.raises(ValueError, match=r"logits_ood.*K >= 1 classes.*\(3, 0\)"):
        oe_loss(torch.zeros(3, 0))
    with pytest.raises(ValueError, match="logits_ood must .*dimensions"):
        oe_loss(torch.zeros(5))
    with pytest.raises(TypeError, match="m_in must be a number.*'-5'"):
        energy_margin_loss(e[:2], e[2:], "-5", 0.0)
    with pytest.raises(ValueError, match="m_out must be a finite number.*nan"):
        energy_margin_loss(e[:2], e[2:], -5.0, float("nan"))
    with pytest.raises(ValueError, match="m_in: a per-member tensor"):
        energy_margin_loss(e[:2], e[2:], torch.tensor([-5.0, -4.0]), 0.0)  # one model: margins are numbers
    with pytest.raises(ValueError, match="m_in: a per-member tensor .* \\(3\\)"):
        energy_margin_loss(torch.zeros(3, 2), torch.zeros(3, 2), torch.tensor([-5.0, -4.0]), 0.0)
    with pytest.raises(ValueError, match="lambda_grad must be a finite number >= 0"):
        greg_objective(MLP(2, 3), torch.randn(2, 2), torch.tensor([0, 1]), torch.randn(2, 2), m_in=-2.0, m_out=-1.0,
                       lambda_grad=-1.0)
    model = _mlp64()
    x = torch.randn(6, 2, dtype=torch.float64).requires_grad_(True)
    other = torch.randn(6, 2, dtype=torch.float64).requires_grad_(True)
    with pytest.raises(ValueError, match="not computed from inputs"):
        greg_penalty(x, energy(model(other)), 3, -5.0, 0.0)
    with pytest.raises(ValueError, match="carry no gradient"):
        greg_penalty(x, energy(model(x)).detach(), 3, -5.0, 0.0)
