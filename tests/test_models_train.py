import pytest
import torch
import torch.nn.functional as F
from torch import nn

from gregnb.evaluate import evaluate, predict_logits
from gregnb.models import MLP, SmallCNN, build_model
from gregnb.train import METHODS, accuracy, fit, register_method


def test_models_return_logits_and_features():
    mlp, cnn = MLP(2, 3, hidden=(16, 8)), SmallCNN(10, width=8)
    logits, h = mlp(torch.randn(5, 2), return_features=True)
    assert logits.shape == (5, 3) and h.shape == (5, 8)
    # the logits are the last layer applied to the features
    torch.testing.assert_close(mlp.fc(h), logits)
    cnn.eval()
    logits, h = cnn(torch.rand(4, 1, 8, 8), return_features=True)
    assert logits.shape == (4, 10) and h.shape == (4, cnn.feature_dim)
    torch.testing.assert_close(cnn.fc(h), logits)


def test_model_errors():
    with pytest.raises(ValueError, match=r"\(N, 2\)"):
        MLP()(torch.randn(3, 5))
    with pytest.raises(ValueError, match="images"):
        SmallCNN()(torch.randn(3, 64))
    with pytest.raises(ValueError, match="unknown model"):
        build_model("vgg")
    with pytest.raises(ValueError, match="activation"):
        MLP(activation="swishy")


def test_ce_training_learns_blobs(blobs):
    model = MLP(n_classes=3)
    h = fit(model, blobs, epochs=8, lr=5e-3, progress=False)
    assert h["loss"][-1] < h["loss"][0]
    assert h["test_acc"][-1] > 0.95
    # the history's accuracy agrees with an independent count
    preds = predict_logits(model, blobs.test_x).argmax(1)
    assert h["test_acc"][-1] == pytest.approx((preds == blobs.test_y).float().mean().item())


def test_ce_training_learns_digits(digits):
    model = SmallCNN()
    h = fit(model, digits, epochs=3, lr=3e-3, batch_size=64, progress=False)
    assert h["test_acc"][-1] > 0.9
    res = evaluate(model, digits, score="energy")
    assert res["accuracy"] == pytest.approx(accuracy(model, digits.test_x, digits.test_y))
    assert set(res["ood"]) == set(digits.ood) and 0 <= res["mean"]["fpr95"] <= 1


def test_same_seed_same_weights(blobs):
    w = []
    for _ in range(2):
        torch.manual_seed(123)  # the initialisation is the caller's; fit seeds the batches
        m = MLP(n_classes=3)
        fit(m, blobs, epochs=2, progress=False, seed=7)
        w.append(torch.cat([p.flatten() for p in m.parameters()]))
    torch.testing.assert_close(w[0], w[1], rtol=0, atol=0)


def test_cosine_schedule_and_sgd(blobs):
    h = fit(MLP(n_classes=3), blobs, epochs=3, lr=0.1, optimizer="sgd", progress=False)
    assert h["lr"][-1] == pytest.approx(0.0, abs=1e-12)  # cosine anneals to zero at the last step


def test_register_method_extends_loop(blobs):
    seen = []

    def step(model, x, y, x_aux, cfg, step_index):
        seen.append(len(x_aux))
        loss = torch.nn.functional.cross_entropy(model(x), y) + 0.0 * model(x_aux).sum()
        return loss, {"aux_mean": x_aux.mean().item()}

    register_method("_test_aux", step, uses_aux=True)
    try:
        h = fit(MLP(n_classes=3), blobs, "_test_aux", epochs=1, batch_size=100, aux_batch_size=30, progress=False)
        assert set(seen) == {30} and "aux_mean" in h
    finally:
        METHODS.pop("_test_aux")


@pytest.mark.parametrize("kwargs,match", [
    (dict(method="magic"), "unknown method"),
    (dict(epochs=0), "epochs"),
    (dict(lr=-1.0), "lr"),
    (dict(optimizer="lbfgs"), "optimizer"),
    (dict(nonsense=1), "nonsense"),
])
def test_fit_bad_config(blobs, kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        fit(MLP(n_classes=3), blobs, progress=False, **kwargs)


def test_non_finite_loss_stops_with_message(blobs):
    def step(model, x, y, x_aux, cfg, step_index):
        return model(x).sum() * float("nan"), {}

    register_method("_nan", step, uses_aux=False)
    try:
        with pytest.raises(FloatingPointError, match="non-finite loss"):
            fit(MLP(n_classes=3), blobs, "_nan", epochs=1, progress=False)
    finally:
        METHODS.pop("_nan")


def test_fast_max_pool_equals_max_pool2d_bit_for_bit_and_keeps_its_gradient():
    from gregnb.models import MaxPool2x2

    pool, ref = MaxPool2x2(), nn.MaxPool2d(2)
    g = torch.Generator().manual_seed(0)
    for shape in [(7, 32, 8, 8), (3, 2, 5, 9), (2, 4, 2, 2)]:
        x = torch.randn(shape, generator=g)
        x[..., 1::3, :] = 0.0          # ties inside windows, as after a ReLU
        x[0, 0, 0, 0] = float("nan")   # NaN propagates in both
        with torch.no_grad():
            fast = pool(x)
        slow = F.max_pool2d(x, 2)
        assert fast.shape == slow.shape
        assert torch.equal(torch.isnan(fast), torch.isnan(slow))
        assert torch.equal(fast.nan_to_num(0.0), slow.nan_to_num(0.0))
    with pytest.raises(RuntimeError):   # too small for a 2x2 window: max_pool2d's own error
        with torch.no_grad():
            pool(torch.zeros(1, 1, 1, 4))
    # with autograd, ties route the gradient to one element, exactly as nn.MaxPool2d does
    x = torch.zeros(1, 1, 4, 4)
    x[0, 0, :2, :2] = 1.0
    a, b = x.clone().requires_grad_(), x.clone().requires_grad_()
    pool(a).sum().backward()
    ref(b).sum().backward()
    assert torch.equal(a.grad, b.grad) and a.grad.sum() == 4
    assert isinstance(pool, nn.MaxPool2d) and pool.kernel_size == 2 and pool.stride == 2
