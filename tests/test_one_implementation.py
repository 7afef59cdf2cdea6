"""One implementation of each method's maths (quick tier): the step a student reads in gregnb.train.methods, with its
maths in gregnb.losses, is the step that trains every model, one model (fit) or M stacked members (fit_many).

* every registered method, one toy epoch: fit_many's stacked members are bit for bit what fit gives each alone;
* every TrainConfig field is used by fit, and honoured per member by fit_many (each member's own value, or a
  value its group shares, in the group key), or listed with the reason it is not;
* the training package holds no loss maths (no energy, cross-entropy, hinge or double backward of its own).
"""
import ast
import contextlib
import dataclasses
import sys
import threading
from collections import defaultdict
from pathlib import Path

import pytest
import torch

from gregnb.data.toy2d import load_toy
from gregnb.experiments import default_model
from gregnb.losses import propose_margins
from gregnb.train import METHODS, TrainConfig, fit, fit_many
from gregnb.train.batched import group_members
from gregnb.train.batched_steps import NOT_STACKED, PER_MEMBER, MemberSettings, group_key

TRAIN = Path(__file__).resolve().parent.parent / "gregnb" / "train"
FIELDS = {f.name for f in dataclasses.fields(TrainConfig)}
#: fields fit itself does not read, and why
FIT_UNUSED = {"extra": "settings for methods registered elsewhere: the built-in methods read none"}
#: the history keys whose value is computed apart on the two paths (not a weight): F.cross_entropy's mean for one
#: model, the mean of per-row losses for members (ce_loss's docstring): the same sum, the last bit can differ
VALUE_ONLY = {"loss", "loss_ce"}


@pytest.fixture(scope="module")
def toy():
    return load_toy("blobs", seed=0, n_train=100, n_aux=200, aux_region="left")


@pytest.fixture(scope="module")
def margins(toy):
    """Margins inside the initial model's energies, so the masks select some rows and not others."""
    m_in, _ = propose_margins(default_model(toy, 0), toy.train_x, toy.aux_x)
    return m_in + 0.05, m_in + 0.3


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


VARIANTS = {
    "ce": dict(method="ce"), "oe": dict(method="oe"), "energy": dict(method="energy"), "greg": dict(method="greg"),
    "greg reference": dict(method="greg", convention="reference"),
    "greg all, T=2": dict(method="greg", penalize="all", temperature=2.0),
    "greg lazy": dict(method="greg", grad_every=2), "oe+grad": dict(method="oe+grad"),
    "oe+grad reference": dict(method="oe+grad", convention="reference"),
    "greg+": dict(method="greg+", candidate_factor=3), "greg+ greedy": dict(method="greg+", candidate_factor=3,
                                                                              sampler="greedy"),
    "greg+ one-way, no term": dict(method="greg+", candidate_factor=3, two_way=False, lambda_grad=0.0),
}


def _members(variant: dict, margins, seeds=(0, 1, 2)) -> list[dict]:
    """One config per seed, each member with its own margins and loss weights (what a group may vary)."""
    out = []
    for s in seeds:
        c = dict(variant, epochs=1, batch_size=32, lr=3e-3, seed=s, lambda_s=0.1 * (1 + s), lambda_oe=0.5 / (1 + s))
        if variant["method"] != "greg+":
            c["aux_batch_size"] = 48
        if METHODS[c["method"]].needs_margins:
            c.update(m_in=margins[0] + 0.05 * s, m_out=margins[1] - 0.03 * s)
        if METHODS[c["method"]].input_gradient and variant.get("lambda_grad") != 0.0:
            c["lambda_grad"] = 0.3 * (1 + s)
        out.append(c)
    return out


def test_every_method_has_a_variant():
    assert {v["method"] for v in VARIANTS.values()} == set(METHODS), "add a variant for each registered method"
    assert all(METHODS[m].stacks for m in METHODS), "a built-in method that fit_many cannot stack"


@pytest.mark.parametrize("name", list(VARIANTS))
def test_stacked_members_are_bitwise_fit(name, toy, margins):
    configs = _members(VARIANTS[name], margins)
    models = [default_model(toy, c["seed"]) for c in configs]
    assert len(group_members(models, [TrainConfig(**c) for c in configs], torch.device("cpu"))) == 1
    histories = fit_many(models, toy, configs, progress=False)
    for c, mb, hb in zip(configs, models, histories):
        ma = default_model(toy, c["seed"])
        ha = fit(ma, toy, progress=False, **c)
        for k, v in ma.state_dict().items():
            assert torch.equal(v, mb.state_dict()[k]), f"{name}, seed {c['seed']}: {k} differs from fit's"
        assert set(ha) | {"group_size"} == set(hb)
        for k in set(ha) - {"epoch_seconds"}:
            if k in VALUE_ONLY:
                assert hb[k] == pytest.approx(ha[k], rel=1e-6), (name, k)
            else:
                assert hb[k] == ha[k], f"{name}, seed {c['seed']}: history {k} {hb[k]} vs fit's {ha[k]}"


@contextlib.contextmanager
def _field_reads():
    """The TrainConfig fields read while training (not while a config is built or copied), per config's seed."""
    reads: dict[int, set[str]] = defaultdict(set)
    building = threading.local()
    get, post = TrainConfig.__getattribute__, TrainConfig.__post_init__

    def spy(self, name):
        caller = sys._getframe(1)
        if (name in FIELDS and not getattr(building, "on", False) and caller.f_globals.get("__name__") != "dataclasses"
                and caller.f_code.co_name not in ("__repr__", "__eq__")):
            reads[get(self, "seed")].add(name)
        return get(self, name)

    def post_init(self):
        building.on = True
        try:
            post(self)
        finally:
            building.on = False

    TrainConfig.__getattribute__, TrainConfig.__post_init__ = spy, post_init
    try:
        yield reads
    finally:
        del TrainConfig.__getattribute__  # back to object's
        TrainConfig.__post_init__ = post


def _other_values(name: str, value) -> list:
    """Other values to try for a TrainConfig field (some are invalid for a given config: those are skipped)."""
    if isinstance(value, bool):
        return [not value]
    if isinstance(value, (int, float)):
        return [value + 1, value * 2 + 0.5] + ([value / 2] if value else [])   # / 2: for a field below 1
    if isinstance(value, str):
        return {"method": ["energy"], "optimizer": ["sgd"], "schedule": ["constant", "multistep"],
                "convention": ["reference"], "penalize": ["all"], "sampler": ["random", "greedy"]}[name]
    return {"aux_batch_size": [16, 20], "n_clusters": [4], "window": [(0, 80)], "milestones": [(1,)],
            "extra": [{"note": 1}]}[name]


def test_every_setting_is_used_by_fit_and_honoured_per_member(toy, margins):
    """Each field fit reads reaches every stacked member: one of PER_MEMBER (each member's own value: the bitwise
    test above varies each of them within one group) or, the rest, part of the group key, so members that differ in
    it never share a step (a MemberSettings refuses them). No field is listed by hand in two places."""
    assert not (FIT_UNUSED.keys() | NOT_STACKED.keys() | PER_MEMBER.keys()) - FIELDS, "a listed field does not exist"
    assert all(len(why) > 20 for why in {**FIT_UNUSED, **NOT_STACKED, **PER_MEMBER}.values()), "say why"
    members = _members(VARIANTS["greg"], margins)
    varied = {k for k in members[0] if len({repr(c[k]) for c in members}) > 1}
    assert varied == PER_MEMBER.keys(), "vary every PER_MEMBER field within a group in the bitwise test"
    used_by_fit = set()
    for name, variant in VARIANTS.items():
        extra = dict(optimizer="sgd", schedule="multistep", milestones=(1,), gamma=0.5) if name == "ce" else {}
        with _field_reads() as reads:
            fit(default_model(toy, 0), toy, progress=False, **dict(_members(variant, margins)[0], **extra))
        used_by_fit |= reads[0]
    unused = FIELDS - used_by_fit - FIT_UNUSED.keys()
    assert not unused, f"TrainConfig fields no training step reads: {sorted(unused)} (use them or list them)"
    base = TrainConfig(**_members(VARIANTS["greg+"], margins)[0])
    for name in sorted(FIELDS - PER_MEMBER.keys() - NOT_STACKED.keys()):
        others = []
        for value in _other_values(name, getattr(base, name)):
            with contextlib.suppress(ValueError):
                others.append(TrainConfig(**dict(dataclasses.asdict(base), **{name: value})))
        assert others, f"no valid other value of {name} to try"
        for other in others:
            assert group_key(other) != group_key(base), f"members differing in {name} would share a group"
            with pytest.raises(ValueError, match="share every setting"):
                MemberSettings([base, other], torch.device("cpu"))


def test_a_group_keeps_apart_members_with_and_without_the_gradient_term(margins):
    base = _members(VARIANTS["greg"], margins, seeds=(0, 1))
    assert group_key(TrainConfig(**base[0])) == group_key(TrainConfig(**base[1]))
    for change in (dict(lambda_grad=0.0), dict(method="energy")):
        assert group_key(TrainConfig(**base[0])) != group_key(TrainConfig(**dict(base[1], **change))), change


FORBIDDEN = {"logsumexp", "cross_entropy", "nll_loss", "log_softmax", "softmax", "relu", "softplus", "pow",
             "functional", "energy", "greg_penalty", "energy_margin_loss", "oe_loss", "ce_loss"}


def loss_maths(src: str) -> list[str]:
    """What in ``src`` computes a loss itself: an energy, a cross-entropy, a hinge or square, a double backward."""
    found = []
    for node in ast.walk(ast.parse(src)):
        name = node.attr if isinstance(node, ast.Attribute) else node.id if isinstance(node, ast.Name) else None
        if name in FORBIDDEN:
            found.append(f"line {node.lineno}: {name}")
        if isinstance(node, ast.keyword) and node.arg == "create_graph":
            found.append(f"line {node.value.lineno}: a double backward (create_graph)")
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Pow) and isinstance(node.right, ast.Constant):
            found.append(f"line {node.lineno}: a power")
        if isinstance(node, ast.alias) and "functional" in node.name:
            found.append(f"an import of {node.name}")
    return found


def test_the_training_package_holds_no_loss_maths():
    assert loss_maths("e = -torch.logsumexp(z, 1)") and loss_maths("h = relu(m - e) ** 2")
    assert loss_maths("g = torch.autograd.grad(t, x, create_graph=True)")
    assert loss_maths("import torch.nn.functional as F") and not loss_maths("lr = cfg.gamma ** k")
    for path in sorted(TRAIN.glob("*.py")):
        found = loss_maths(path.read_text())
        assert not found, f"{path.name} computes loss maths itself ({found}): call gregnb.losses"
    methods = (TRAIN / "methods.py").read_text()
    assert "from ..losses import" in methods, "the steps take their maths from gregnb.losses"
