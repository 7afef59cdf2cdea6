import pytest
import torch

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
