"""DDP under torchrun (2 CPU processes, gloo) matches a single process with the same global batch,
for the energy loss and for GReg (the gradient penalty under DistributedDataParallel)."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from gregnb.data.toy2d import load_toy
from gregnb.models import MLP
from gregnb.train import fit

HERE = Path(__file__).resolve().parent


@pytest.mark.slow
@pytest.mark.parametrize("method", ["energy", "greg"])
def test_two_process_run_matches_single_process(method, tmp_path):
    out = tmp_path / "ddp.json"
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(HERE.parent))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "0",
           "--rdzv_backend", "c10d", "--rdzv_endpoint", "127.0.0.1:0", str(HERE / "ddp_worker.py"), str(out), method]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ddp = json.loads(out.read_text())

    data = load_toy("blobs", seed=0, n_train=256, n_aux=500)
    torch.manual_seed(0)
    model = MLP(n_classes=3)
    losses = []
    fit(model, data, method, device="cpu", epochs=2, batch_size=64, aux_batch_size=64, lr=1e-2, progress=False,
        m_in=-3.0, m_out=-1.0, log_grad_norms=False, step_hook=lambda s, logs: losses.append(logs["loss"]))
    assert len(losses) == len(ddp["losses"]) == 8
    torch.testing.assert_close(torch.tensor(ddp["losses"]), torch.tensor(losses), rtol=1e-4, atol=1e-5)
    weights = torch.cat([p.detach().flatten() for p in model.parameters()])
    torch.testing.assert_close(torch.tensor(ddp["weights"]), weights, rtol=1e-4, atol=1e-5)
