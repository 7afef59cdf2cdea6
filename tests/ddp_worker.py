"""Run by tests/test_distributed.py under torchrun: one process of a 2-process gloo run."""
import json
import sys

import torch
import torch.distributed as dist

from gregnb.data.toy2d import load_toy
from gregnb.models import MLP
from gregnb.train import fit


def main(out: str, method: str) -> None:
    dist.init_process_group("gloo")
    torch.set_num_threads(1)
    data = load_toy("blobs", seed=0, n_train=256, n_aux=500)
    torch.manual_seed(0)
    model = MLP(n_classes=3)  # no BatchNorm: per-process batches then give exactly the global gradient
    losses = []
    fit(model, data, method, device="cpu", epochs=2, batch_size=64, aux_batch_size=64, lr=1e-2, progress=False,
        m_in=-3.0, m_out=-1.0, log_grad_norms=False, step_hook=lambda s, logs: losses.append(logs["loss"]))
    if dist.get_rank() == 0:
        weights = torch.cat([p.detach().flatten() for p in model.parameters()]).tolist()
        with open(out, "w") as f:
            json.dump({"losses": losses, "weights": weights}, f)
    dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
