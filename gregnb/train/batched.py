"""Train many small models as one: :func:`fit_many`.

The seeds x settings of a sweep are small networks (the 2-D MLP, the 8x8 digits CNN) trained with the same
loop. :func:`fit_many` puts the members that share every setting but their seeds, margins and loss weights
(:mod:`gregnb.train.batched_steps`) into one group and trains each group as one stacked network
(:mod:`gregnb.train.stacked`): one forward, one backward and one optimiser step per step for all members, through
the same step functions as :func:`gregnb.train.fit` (:mod:`gregnb.train.methods`, the maths in :mod:`gregnb.losses`).
Each member keeps what ``fit`` would give it alone: its initial weights, its own seeded generator consumed in the
same order (data order, outlier draws, augmentation), its margins and loss weights and, for ``"greg+"``, its own
sampler picks from candidates scored in eval mode. The result equals ``fit`` on each model (bit for bit for the
toy MLPs, to floating-point tolerance for stacked CNNs: ``tests/test_one_implementation.py``,
``tests/test_batched.py``); models that cannot be stacked (other architectures, methods not registered with
``stacks=True``, ``amp``, several processes) are trained one at a time by ``fit``.

CNNs stack only when asked (``stack_images=True``): on a CPU a stacked convolution step costs about as much per
member as alone (``benchmarks/sweep.py``: no speed-up on the digits sweep), and its rounding depends on which
members share the group, so a chapter's numbers would depend on which models happened to be cached already.
Stacked MLP members are bitwise equal to ``fit`` whatever their group, so MLPs stack by default.

What differs: ``epoch_seconds`` is the group's epoch wall time divided by its number of members (the amortised
cost; a group's members share their steps) and the history records that number as ``group_size``.

Members that train alone run side by side on a CPU: each is trained by ``fit`` on **one** CPU thread, ``workers``
members at a time in Python threads (default: ``GREGNB_WORKERS``, else torch's thread count). The digits CNN's
GReg step is arithmetic-bound and a small convolution splits badly over threads, so two members on one thread
each finish sooner than two members one after the other on two threads each (``benchmarks/sweep.py`` prints
the ratio). One thread per member also makes a member's numbers independent of the machine's core count and of
which members train beside it: a laptop, CI and the findings records (made on one thread) train the same weights.
"""
from __future__ import annotations

import math
import threading
import time
from collections.abc import Mapping
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait

import torch
from torch import nn
from tqdm.auto import tqdm

from ..config import device as default_device
from ..config import seed_everything
from ..config import workers as default_workers
from ..data.base import Benchmark
from ..losses import member_energy
from ..validate import describe, flag, module, no_inference_mode, scalar, whole
from ..validate import device as check_device
from . import distributed
from .batched_steps import MemberSettings, group_key
from .checks import check_data
from .config import History, TrainConfig, plain_config
from .loop import fit, make_optimizer, make_scheduler
from .registry import METHODS
from .stacked import StackedNet, stack_signature, unstack_into

__all__ = ["fit_many", "group_members", "MAX_MEMBERS"]

#: the default cap on a stacked group's members, per architecture kind (see :func:`fit_many`)
MAX_MEMBERS = {"vector": 64, "image": 12}


def _group_key(model: nn.Module, cfg: TrainConfig, dev: torch.device, stack_images: bool = False):
    """Members with equal keys train together (:func:`gregnb.train.batched_steps.group_key`); None = alone with ``fit``."""
    sig = stack_signature(model)
    if (sig is None or (sig[0] == "image" and not stack_images) or not METHODS[cfg.method].stacks
            or (cfg.amp and dev.type == "cuda") or distributed.dist_info()[1] > 1):
        return None
    return sig, group_key(cfg)


def group_members(models: list[nn.Module], cfgs: list[TrainConfig], dev: torch.device,
                  stack_images: bool = False) -> list[list[int]]:
    """The members' indices, grouped as :func:`fit_many` trains them (a one-member group for each that
    trains alone), in order of first appearance."""
    groups: dict = {}
    out: list[list[int]] = []
    for i, (m, c) in enumerate(zip(models, cfgs)):
        key = _group_key(m, c, dev, stack_images)
        if key is None:
            out.append([i])
        elif key in groups:
            groups[key].append(i)
        else:
            groups[key] = [i]
            out.append(groups[key])
    return out


def fit_many(models: list[nn.Module], data: Benchmark, configs: list[dict], *, device: str | torch.device | None = None,
             progress: bool = True, desc: str = "training", max_members: int | None = None,
             stack_images: bool = False, workers: int | None = None) -> list[History]:
    """Train ``models[i]`` on ``data`` with ``configs[i]`` (``method`` plus :class:`TrainConfig` fields, as
    :func:`gregnb.train.fit` takes them), many at once; returns each member's :class:`History`.

    ``models`` are trained in place (left in eval mode, as ``fit`` leaves them). ``max_members`` caps a
    stacked group (larger groups are split; default :data:`MAX_MEMBERS` for the architecture: a CNN step's
    activations, and GReg's double-backward graph, grow with every member, and on a CPU a convolution step
    costs about as much per member stacked as alone, so large CNN groups buy memory, not time). ``progress``
    shows one bar over all members' epochs with the expected remaining time. Each member's own ``progress``
    setting is ignored. ``stack_images``: stack CNNs too (off by default: see the module docstring).
    ``workers``: on a CPU, how many members that train alone run side by side, each on one thread (default
    :func:`gregnb.config.workers`: ``GREGNB_WORKERS``, else torch's thread count); any number gives the same weights.
    """
    no_inference_mode("fit_many")
    if not isinstance(models, (list, tuple)) or not isinstance(configs, (list, tuple)) or \
            not all(isinstance(c, Mapping) for c in configs):
        raise TypeError(f"fit_many takes a list of models and a list of configs (one dict per model, e.g. "
                        f"[dict(method='ce', epochs=3)]), got models={describe(models)}, configs={describe(configs)}")
    for i, m in enumerate(models):
        module(f"models[{i}]", m)
    progress, max_members = flag("progress", progress), whole("max_members", max_members, optional=True)
    w = scalar(workers)
    if workers is not None and (isinstance(w, bool) or not isinstance(w, int) or w < 1):
        raise ValueError(f"workers must be at least 1 (a whole number: members trained side by side), got "
                         f"{describe(workers)}; or None for the default")
    if len(models) != len(configs):
        raise ValueError(f"got {len(models)} models and {len(configs)} configs; pass one config per model")
    if len({id(m) for m in models}) != len(models):
        raise ValueError("fit_many trains each model in place: pass distinct model objects (copy.deepcopy a "
                         "shared one)")
    cfgs = [TrainConfig(**{**c, "progress": False}) for c in configs]
    dev = check_device(device) if device is not None else default_device()  # a bad name: a clear error, now
    histories: list[History | None] = [None] * len(models)
    groups = []
    for g in group_members(models, cfgs, dev, stack_images):
        sig = stack_signature(models[g[0]])
        cap = max_members or MAX_MEMBERS[sig[0] if sig else "vector"]
        groups += [g[i:i + cap] for i in range(0, len(g), cap)]
    bar = tqdm(total=sum(c.epochs for c in cfgs), desc=desc, unit="model-epoch", disable=not progress or not models,
               smoothing=0.0)
    alone = [g[0] for g in groups if len(g) == 1 and _group_key(models[g[0]], cfgs[g[0]], dev, stack_images) is None]
    try:
        histories_alone = _fit_alone(models, data, cfgs, alone, dev, bar, workers)
        for g in groups:
            if g[0] in histories_alone:
                histories[g[0]] = histories_alone[g[0]]
                continue
            for i, h in zip(g, _fit_group([models[i] for i in g], data, [cfgs[i] for i in g], dev, bar)):
                histories[i] = h
    finally:
        bar.close()
    if groups:  # the global RNG as training one group after the other leaves it, whatever ran side by side
        seed_everything(cfgs[groups[-1][0]].seed)
    return histories


class _Stopped(Exception):
    """Raised inside a member's training when another member failed or the run was interrupted."""


def _fit_alone(models: list[nn.Module], data: Benchmark, cfgs: list[TrainConfig], members: list[int],
               dev: torch.device, bar, workers: int | None) -> dict[int, History]:
    """Train ``models[i]`` for each ``i`` in ``members`` with :func:`fit`; on a CPU on one thread each, ``workers``
    at a time (a model with dropout draws from the global generator, so it trains on its own, after the others)."""
    if not members:
        return {}
    if dev.type != "cpu":
        out = {}
        for i in members:
            out[i] = fit(models[i], data, device=dev, **plain_config(cfgs[i]))
            bar.update(cfgs[i].epochs)
        return out
    threads = torch.get_num_threads()
    workers = default_workers() if workers is None else int(workers)
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    solo = [i for i in members if any(isinstance(m, nn.modules.dropout._DropoutNd) for m in models[i].modules())]
    shared = [i for i in members if i not in solo]
    stop, lock = threading.Event(), threading.Lock()

    def train(i: int) -> History:
        steps = math.ceil(len(data.train_x) / cfgs[i].batch_size)
        done = [0]

        def tick(step: int, logs: dict) -> None:
            if stop.is_set():
                raise _Stopped
            if step % steps == 0:  # one epoch more (a skipped one-sample tail is caught up at the end)
                with lock:
                    bar.update(1)
                done[0] += 1

        history = fit(models[i], data, device=dev, step_hook=tick, **plain_config(cfgs[i]))
        with lock:
            bar.update(cfgs[i].epochs - done[0])
        return history

    out: dict[int, History] = {}
    torch.set_num_threads(1)
    try:
        if shared:
            with ThreadPoolExecutor(max(1, min(workers, len(shared))), thread_name_prefix="gregnb-fit") as pool:
                # the longest runs first, so that no core idles at the end (the order changes no member's weights)
                order = sorted(shared, key=lambda i: -METHODS[cfgs[i].method].relative_cost(cfgs[i]))
                futures = {pool.submit(train, i): i for i in order}
                try:
                    finished, _ = wait(futures, return_when=FIRST_EXCEPTION)
                    for f in finished:
                        if f.exception() is not None and not isinstance(f.exception(), _Stopped):
                            raise f.exception()
                    out.update({futures[f]: f.result() for f in futures})
                except BaseException:  # a member failed, or the user interrupted: stop the others at their next step
                    stop.set()
                    pool.shutdown(wait=True, cancel_futures=True)
                    raise
        for i in solo:
            out[i] = train(i)
    finally:
        torch.set_num_threads(threads)
    return out


def _fit_group(models: list[nn.Module], data: Benchmark, cfgs: list[TrainConfig], dev: torch.device,
               bar) -> list[History]:
    """Train one group of stackable members with equal group keys as one :class:`StackedNet`."""
    cfg0, m = cfgs[0], len(models)
    spec = METHODS[cfg0.method]
    gens = [seed_everything(c.seed) for c in cfgs]
    seed_everything(cfg0.seed)
    for model in models:
        model.to(dev)
    check_data(models[0], data, spec, dev, 1)
    net = StackedNet(models).to(dev)
    if cfg0.channels_last and data.train_x.ndim == 4 and dev.type == "cuda":
        net.to(memory_format=torch.channels_last)
    settings = MemberSettings(cfgs, dev)
    aux_per_step = cfg0.aux_per_step
    steps_per_epoch = math.ceil(len(data.train_x) / cfg0.batch_size)
    opt = make_optimizer(net, cfg0)
    sched = make_scheduler(opt, cfg0, steps_per_epoch)
    probes = _probes(data, cfgs, dev)
    histories = [History() for _ in models]
    step = 0
    for epoch in range(cfg0.epochs):
        t0 = time.perf_counter()
        net.train()
        sums: dict[str, list[torch.Tensor]] = {}
        trained_on: list[set[int]] = [set() for _ in models]
        orders = [torch.randperm(len(data.train_x), generator=g) for g in gens]
        for i in range(steps_per_epoch):
            batch = _prepare_batch(data, orders, i, cfg0.batch_size, steps_per_epoch, gens,
                                   aux_per_step if spec.uses_aux else 0, dev)
            if batch is None:
                continue
            x, y, x_aux, aux_idx = batch
            loss, logs = spec.step(net, x, y, x_aux, settings, step)  # the step fit takes, on a MemberSettings
            picked = logs.pop("picked_index", None)  # a sampler's picks, as positions in x_aux
            if not bool(torch.isfinite(loss).all()):
                j = int((~torch.isfinite(loss)).nonzero()[0])
                raise FloatingPointError(f"non-finite loss ({loss[j].item()}) at step {step} (epoch {epoch + 1}) of "
                                         f"member {j} (seed {cfgs[j].seed}, method {cfgs[j].method!r}); lower the "
                                         f"learning rate (now {sched.get_last_lr()[0]:.3g}) or check the inputs")
            opt.zero_grad(set_to_none=True)
            loss.sum().backward()
            opt.step()
            sched.step()
            step += 1
            for k, v in {"loss": loss.detach(), **logs}.items():
                sums.setdefault(k, []).append(v.detach().double().cpu())
            if aux_idx is not None:
                used = torch.gather(aux_idx, 1, picked.cpu()) if picked is not None else aux_idx
                for j, row in enumerate(used.tolist()):
                    trained_on[j].update(row)
        seconds = time.perf_counter() - t0
        _record_epoch(net, data, histories, cfgs, sums, trained_on, seconds, sched, probes, spec.uses_aux, epoch)
        bar.update(m)
        bar.set_postfix(method=cfg0.method, members=m)
    unstack_into(net, models)
    for model, h, c in zip(models, histories, cfgs):
        model.eval()
        h.config, h.extensions = plain_config(c), []
    return histories


def _probes(data: Benchmark, cfgs: list[TrainConfig], dev: torch.device):
    """Each member's fixed probes for the gradient-norm curves (as :func:`gregnb.train.fit` draws them)."""
    ids, auxs = [], []
    for c in cfgs:
        g = torch.Generator().manual_seed(c.seed + 1)
        ids.append(data.train_x[torch.randperm(len(data.train_x), generator=g)[:256]])
        if data.aux_x is not None and len(data.aux_x):
            auxs.append(data.aux_x[torch.randperm(len(data.aux_x), generator=g)[:256]])
    prep = lambda xs: torch.stack([data.prepare_eval(x.to(dev)) for x in xs])  # noqa: E731
    return prep(ids), (prep(auxs) if auxs else None)


def _prepare_batch(data, orders, i, batch_size, steps_per_epoch, gens, aux_per_step, dev):
    """Step ``i``'s batches for every member ``(M, B, ...)``, each drawn with its own generator in the order
    :func:`gregnb.train.fit` draws them; None for a one-sample tail."""
    idx = torch.stack([o[i * batch_size:(i + 1) * batch_size] for o in orders])
    if idx.shape[1] < 2 and steps_per_epoch > 1:
        return None
    xs, x_auxs, aux_rows = [], [], []
    for j, g in enumerate(gens):
        a = torch.randint(len(data.aux_x), (aux_per_step,), generator=g) if aux_per_step else None
        xs.append(data.prepare_train(data.train_x[idx[j]].to(dev), g))
        if a is not None:
            x_auxs.append(data.prepare_train(data.aux_x[a].to(dev), g))
            aux_rows.append(a)
    y = data.train_y[idx].to(dev)
    if not aux_per_step:
        return torch.stack(xs), y, None, None
    return torch.stack(xs), y, torch.stack(x_auxs), torch.stack(aux_rows)


@torch.no_grad()
def _logits(net: StackedNet, x: torch.Tensor, batch_size: int = 1024) -> torch.Tensor:
    """Eval-mode logits ``(M, N, K)`` of every member on the same inputs ``x (N, ...)``."""
    out = []
    for i in range(0, len(x), batch_size):
        xb = x[i:i + batch_size]
        out.append(net(xb.unsqueeze(0).expand(net.n_members, *xb.shape)))
    return torch.cat(out, 1)


def _grad_norms(net: StackedNet, x: torch.Tensor) -> list[float]:
    """Each member's mean ``||grad_x E||`` on its probes ``x (M, N, ...)`` in eval mode (as
    :func:`gregnb.lipschitz.input_gradient_norm`, temperature 1)."""
    with torch.enable_grad():
        xb = x.detach().requires_grad_(True)
        e = member_energy(net(xb))
        (g,) = torch.autograd.grad(e.sum(), xb)
    return g.flatten(2).norm(dim=2).mean(1).tolist()


def _record_epoch(net, data, histories, cfgs, sums, trained_on, seconds, sched, probes, uses_aux, epoch) -> None:
    """Each member's epoch record, with the keys and order of :func:`gregnb.train.fit`'s history."""
    if not sums:
        raise RuntimeError(f"epoch {epoch + 1} ran no training step ({len(data.train_x)} samples, batch_size "
                           f"{cfgs[0].batch_size})")
    means = {k: torch.stack(v).sum(0) / len(v) for k, v in sums.items()}
    net.eval()
    test_x = data.prepare_eval(data.test_x.to(next(net.parameters()).device))
    acc = (_logits(net, test_x).argmax(-1).cpu() == torch.as_tensor(data.test_y).cpu()).float().mean(1).tolist()
    gn_id = _grad_norms(net, probes[0]) if cfgs[0].log_grad_norms else None
    gn_aux = _grad_norms(net, probes[1]) if cfgs[0].log_grad_norms and probes[1] is not None else None
    lr = sched.get_last_lr()[0]
    for j, h in enumerate(histories):
        for k, v in means.items():
            h.setdefault(k, []).append(float(v[j]))
        h.setdefault("lr", []).append(lr)
        if uses_aux:
            h.setdefault("aux_distinct", []).append(float(len(trained_on[j])))
        h.setdefault("epoch_seconds", []).append(seconds / len(histories))
        h.setdefault("test_acc", []).append(acc[j])
        if gn_id is not None:
            h.setdefault("grad_norm_id", []).append(gn_id[j])
            if gn_aux is not None:
                h.setdefault("grad_norm_aux", []).append(gn_aux[j])
        h.setdefault("group_size", []).append(float(len(histories)))
