"""Suite-wide settings. The suite never writes the checkout's ``data/`` (nor a folder the caller's
``GREGNB_DATA`` names): every session gets its own temporary data folder, set before gregnb is imported, so the
library, the notebook kernels, the site build and every subprocess see it. Trained models start cold, as on CI; the
generated digits benchmark is copied in (read only) from the checkout's ``data/`` when it is there, saving its
~20 s build (the file name carries the generator's version, so a changed generator is built afresh)."""
import atexit
import os
import shutil
import tempfile
from pathlib import Path

_DATA = tempfile.mkdtemp(prefix="gregnb-test-data-")
os.environ["GREGNB_DATA"] = _DATA
atexit.register(shutil.rmtree, _DATA, ignore_errors=True)
for _cached in (Path(__file__).resolve().parent.parent / "data").glob("digits_v*_seed*.npz"):
    shutil.copy2(_cached, _DATA)
os.environ.setdefault("GREGNB_FAST", "1")
os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("GREGNB_DEVICE", "cpu")

import matplotlib  # noqa: E402

matplotlib.use("Agg")

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(min(2, torch.get_num_threads()))


def pytest_collection_modifyitems(items):
    """A test that uses the ``site`` fixture builds the site, one that uses ``chapter_runs`` executes notebooks: they
    get the ``site`` / ``notebook`` marker (left out of the quick tier, ``python3 run.py test --quick``) without each
    test having to say so."""
    for item in items:
        names = getattr(item, "fixturenames", ())
        if "site" in names:
            item.add_marker(pytest.mark.site)
        if "site" in names or "chapter_runs" in names:
            item.add_marker(pytest.mark.notebook)


@pytest.fixture(scope="session")
def digits():
    from gregnb.data.digits import load_benchmark

    return load_benchmark(0)


@pytest.fixture(scope="session")
def blobs():
    from gregnb.data.toy2d import load_toy

    return load_toy("blobs", seed=0)


@pytest.fixture(scope="module")
def tiny_cifar(tmp_path_factory):
    """A data folder with tiny files in the real formats: CIFAR-10 (5 x 8 training images, 8 test images,
    :func:`cifar_files.write_cifar10`) and a 64-image 300K-style pool; no OOD test set. Returns
    ``(root, {file: (data, labels)})``."""
    from cifar_files import write_cifar10, write_pool

    root = tmp_path_factory.mktemp("tiny_cifar")
    written = write_cifar10(root, n_per_batch=8)
    write_pool(root, 64)
    return root, written


@pytest.fixture(scope="session")
def chapter_runs(tmp_path_factory):
    """Each notebook executed once per session (FAST mode, the figure probe): the notebook test reads its run, the
    site build renders the same execution (tests/notebook_runs.py)."""
    from notebook_runs import ChapterRuns

    return ChapterRuns(tmp_path_factory.mktemp("chapter_runs"))
