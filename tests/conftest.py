import os

os.environ.setdefault("GREGNB_FAST", "1")
os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("GREGNB_DEVICE", "cpu")

import matplotlib  # noqa: E402

matplotlib.use("Agg")

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(min(2, torch.get_num_threads()))


@pytest.fixture(scope="session")
def digits():
    from gregnb.data.digits import load_benchmark

    return load_benchmark(0)


@pytest.fixture(scope="session")
def blobs():
    from gregnb.data.toy2d import load_toy

    return load_toy("blobs", seed=0)
