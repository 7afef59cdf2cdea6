"""Paper-scale data: CIFAR-10/100 as ID, the six OOD test sets, and the auxiliary outlier pool.

Everything is returned as uint8 tensors ``(N, 32, 32, 3)`` (channels last, as stored), so the whole
training set and a 300K-image pool fit on a GPU; :func:`gpu_augment` and :func:`normalize` turn
batches into float ``(B, 3, 32, 32)`` on the device (as in the authors' code: gradients, and so radii, live in
the normalised space).

Where each file goes (under ``root``, default :func:`gregnb.config.data_dir`) and where to get it:

================  ==========================================  ==============================================
set               expected path                               source
================  ==========================================  ==============================================
CIFAR-10 / 100    ``cifar-10-batches-py/``, ``cifar-100-python/``   torchvision downloads it (``download=True``)
SVHN (test)       ``svhn/test_32x32.mat``                      http://ufldl.stanford.edu/housenumbers/test_32x32.mat
Textures (DTD)    ``dtd/images/<class>/*.jpg``                 https://www.robots.ox.ac.uk/~vgg/data/dtd/
Places365         ``places365/**/*.jpg`` (any image folder)    http://places2.csail.mit.edu/download.html (val_256)
LSUN-C            ``LSUN/**/*.jpg``                            ODIN: https://www.dropbox.com/s/fhtsw1m3qxlwj6h/LSUN.tar.gz
LSUN-R            ``LSUN_resize/**/*.jpg``                     ODIN: https://www.dropbox.com/s/moqh2wh8696c3yl/LSUN_resize.tar.gz
iSUN              ``iSUN/**/*.jpg``                            ODIN: https://www.dropbox.com/s/ssz7qxfqae0cca5/iSUN.tar.gz
aux pool          ``300K_random_images.npy`` or a folder       https://people.eecs.berkeley.edu/~hendrycks/300K_random_images.npy
================  ==========================================  ==============================================
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..config import data_dir, display_path
from ..validate import whole
from .base import Benchmark

__all__ = ["load_cifar", "load_svhn", "load_image_folder", "load_aux_pool", "load_ood_sets", "load_cifar_benchmark",
           "normalize", "gpu_augment", "ood_search", "CIFAR_MEAN", "CIFAR_STD", "OOD_SETS"]

CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2470, 0.2435, 0.2616)

OOD_SETS = {
    "Textures": ("dtd/images", "https://www.robots.ox.ac.uk/~vgg/data/dtd/ (extract dtd-r1.0.1.tar.gz)"),
    "SVHN": ("svhn/test_32x32.mat", "http://ufldl.stanford.edu/housenumbers/test_32x32.mat"),
    "Places365": ("places365", "http://places2.csail.mit.edu/download.html (val_256, or the OE repo's 10K subset)"),
    "LSUN-C": ("LSUN", "https://www.dropbox.com/s/fhtsw1m3qxlwj6h/LSUN.tar.gz (ODIN)"),
    "LSUN-R": ("LSUN_resize", "https://www.dropbox.com/s/moqh2wh8696c3yl/LSUN_resize.tar.gz (ODIN)"),
    "iSUN": ("iSUN", "https://www.dropbox.com/s/ssz7qxfqae0cca5/iSUN.tar.gz (ODIN)"),
}
_IMAGE_EXT = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}


def _root(root) -> Path:
    return Path(root) if root is not None else data_dir()


def _missing(path: Path, what: str, source: str) -> FileNotFoundError:
    return FileNotFoundError(f"{what} not found: expected {path}. Get it from {source} and place it there "
                             f"(or pass root=... / set GREGNB_DATA).")


def load_cifar(name: str = "cifar10", root: str | os.PathLike | None = None, download: bool = False):
    """CIFAR-10 or CIFAR-100 through torchvision: ``(train_x, train_y, test_x, test_y)``, images uint8
    ``(N, 32, 32, 3)``, labels int64. ``download=True`` fetches it into ``root`` when the network allows."""
    from torchvision.datasets import CIFAR10, CIFAR100

    class _Local:
        """torchvision's parsing, with the md5 check replaced by an existence check once the files are
        local (lets the tests use tiny files in the real format; a download is still verified)."""

        def _check_integrity(self) -> bool:
            base = Path(self.root) / self.base_folder
            return all((base / f).exists() for f, _ in self.train_list + self.test_list)

        def _load_meta(self) -> None:
            import pickle

            with open(Path(self.root) / self.base_folder / self.meta["filename"], "rb") as f:
                self.classes = pickle.load(f, encoding="latin1")[self.meta["key"]]
            self.class_to_idx = {c: i for i, c in enumerate(self.classes)}

    if name not in ("cifar10", "cifar100"):
        raise ValueError(f"name must be 'cifar10' or 'cifar100', got {name!r}")
    root = _root(root)
    base_cls, folder = (CIFAR10, "cifar-10-batches-py") if name == "cifar10" else (CIFAR100, "cifar-100-python")
    cls = base_cls if download else type(f"Local{base_cls.__name__}", (_Local, base_cls), {})
    if not download and not (root / folder).exists():
        raise _missing(root / folder, name.upper(), "torchvision: load_cifar(..., download=True), or "
                       "https://www.cs.toronto.edu/~kriz/cifar.html (python version, extracted)")
    out = []
    for train in (True, False):
        try:
            ds = cls(str(root), train=train, download=download)
        except RuntimeError as err:  # torchvision's "Dataset not found or corrupted"
            raise _missing(root / folder, name.upper(), "https://www.cs.toronto.edu/~kriz/cifar.html") from err
        except Exception:  # a truncated or corrupt batch file: unpickling or reshaping fails inside torchvision
            files = [f for f, _ in base_cls.train_list + base_cls.test_list] + [base_cls.meta["filename"]]
            raise ValueError(f"cannot read {name.upper()}: {_first_bad_pickle(root / folder, files)}. The file is "
                             f"truncated or corrupt: delete {root / folder} and get it again (download=True, or "
                             f"https://www.cs.toronto.edu/~kriz/cifar.html)") from None
        out += [torch.from_numpy(np.ascontiguousarray(ds.data)), torch.as_tensor(ds.targets, dtype=torch.int64)]
    return tuple(out)


def _first_bad_pickle(folder: Path, names: list[str]) -> str:
    """The first of ``folder/names`` that does not unpickle to CIFAR's format, with the reason (error path only)."""
    import pickle

    for n in names:
        try:
            with open(folder / n, "rb") as f:
                entry = pickle.load(f, encoding="latin1")
            if "data" in entry and np.asarray(entry["data"]).size % 3072:
                return f"{folder / n} holds a partial image array ({np.asarray(entry['data']).size} bytes)"
        except Exception as err:
            return f"{folder / n} ({type(err).__name__}: {err})"
    return f"a file under {folder}"


def load_svhn(root: str | os.PathLike | None = None, max_images: int | None = None) -> torch.Tensor:
    """The SVHN test split from ``svhn/test_32x32.mat`` as uint8 ``(N, 32, 32, 3)``."""
    from scipy.io import loadmat

    path = _root(root) / OOD_SETS["SVHN"][0]
    if not path.exists():
        raise _missing(path, "SVHN test set", OOD_SETS["SVHN"][1])
    try:
        x = loadmat(str(path))["X"]  # (32, 32, 3, N)
        if x.ndim != 4 or x.shape[:3] != (32, 32, 3):
            raise ValueError(f"its 'X' has shape {x.shape}, not (32, 32, 3, N)")
    except Exception as err:  # truncated/corrupt .mat, a missing 'X'
        raise ValueError(f"cannot read the SVHN test set {path} ({type(err).__name__}: {err}); it is truncated or "
                         f"not the SVHN file: get it again from {OOD_SETS['SVHN'][1]}") from None
    x = torch.from_numpy(np.ascontiguousarray(np.transpose(x, (3, 0, 1, 2))))
    return x[:max_images] if max_images else x


def _to_32(img: Image.Image) -> np.ndarray:
    """Resize the shorter side to 32 (bilinear) and centre-crop 32x32, as the OE / energy code does."""
    img = img.convert("RGB")
    w, h = img.size
    s = 32 / min(w, h)
    if s != 1:
        img = img.resize((max(32, round(w * s)), max(32, round(h * s))), Image.Resampling.BILINEAR)
    w, h = img.size
    left, top = (w - 32) // 2, (h - 32) // 2
    return np.asarray(img.crop((left, top, left + 32, top + 32)), dtype=np.uint8)


def load_image_folder(path: str | os.PathLike, max_images: int | None = None, seed: int = 0) -> torch.Tensor:
    """Every image under ``path`` (recursively; jpg/png/bmp/webp) as uint8 ``(N, 32, 32, 3)``, resized and
    centre-cropped to 32x32. With ``max_images``, a seeded random subset of the files."""
    path = Path(path)
    max_images = whole("max_images", max_images, optional=True, hint="how many images to read")
    if not path.is_dir():
        raise FileNotFoundError(f"image folder not found: {path}")
    files = sorted(p for p in path.rglob("*") if p.suffix.lower() in _IMAGE_EXT)
    if not files:
        raise FileNotFoundError(f"no images (jpg/png/bmp/webp) under {path}")
    if max_images and len(files) > max_images:
        idx = np.random.default_rng(seed).choice(len(files), max_images, replace=False)
        files = [files[i] for i in sorted(idx)]
    out = np.empty((len(files), 32, 32, 3), dtype=np.uint8)
    for i, f in enumerate(files):
        try:
            with Image.open(f) as img:
                out[i] = _to_32(img)
        except Exception as err:  # truncated or not an image (PIL reads lazily: errors show in _to_32)
            raise ValueError(f"cannot read the image {f} ({type(err).__name__}: {err}); delete or replace it") from None
    return torch.from_numpy(out)


def load_aux_pool(source: str | os.PathLike | None = None, root: str | os.PathLike | None = None,
                  max_images: int | None = None) -> torch.Tensor:
    """The auxiliary outlier pool as uint8 ``(N, 32, 32, 3)``: a ``.npy`` array of that shape (the 300K
    random images file, memory-mapped) or any image folder. Default: ``root/300K_random_images.npy``."""
    path = Path(source) if source is not None else _root(root) / "300K_random_images.npy"
    max_images = whole("max_images (--max-aux)", max_images, optional=True, hint="the pool images to use")
    if path.suffix == ".npy":
        if not path.exists():
            raise _missing(path, "auxiliary pool", "https://people.eecs.berkeley.edu/~hendrycks/300K_random_images.npy")
        try:
            arr = np.load(path, mmap_mode="r")
        except Exception as err:  # truncated (mmap longer than the file), not a .npy, a pickled object
            raise ValueError(f"cannot read the auxiliary pool {path} ({type(err).__name__}: {err}); it is truncated "
                             f"or not a NumPy array file: get it again") from None
        if arr.ndim != 4 or arr.shape[1:] != (32, 32, 3) or arr.dtype != np.uint8:
            raise ValueError(f"{path} must hold uint8 images of shape (N, 32, 32, 3), got {arr.dtype} {arr.shape}")
        return torch.from_numpy(np.array(arr[:max_images] if max_images else arr))  # a writable copy in memory
    if not path.exists():
        raise _missing(path, "auxiliary pool folder", "any folder of natural images, or the 300K random images .npy")
    return load_image_folder(path, max_images)


def load_ood_sets(root: str | os.PathLike | None = None, names=tuple(OOD_SETS), max_images: int | None = None,
                  skip_missing: bool = False) -> dict[str, torch.Tensor]:
    """The paper's OOD test sets, name -> uint8 ``(N, 32, 32, 3)``. A missing set raises FileNotFoundError
    naming the expected path and its source, unless ``skip_missing`` (then it is left out with a warning)."""
    import warnings

    root = _root(root)
    out = {}
    for name in names:
        if name not in OOD_SETS:
            raise ValueError(f"unknown OOD set {name!r}; choose from {list(OOD_SETS)}")
        rel, source = OOD_SETS[name]
        try:
            if name == "SVHN":
                out[name] = load_svhn(root, max_images)
            else:
                if not (root / rel).is_dir():
                    raise _missing(root / rel, f"OOD set {name}", source)
                out[name] = load_image_folder(root / rel, max_images)
        except FileNotFoundError as err:
            if not skip_missing:
                raise
            warnings.warn(str(err))
    return out


def ood_search(found=(), root: str | os.PathLike | None = None) -> dict:
    """Which of the paper's OOD test sets a run found and which it looked for in vain, for ``metrics.json`` and
    messages: ``{"folder": the data folder, "found": [names], "missing": {name: path relative to that folder}}``.
    ``folder`` is named as :func:`gregnb.config.display_path` does (``$GREGNB_DATA``, ``data``, a path relative to
    the checkout), not as an absolute path of this machine where a portable name exists."""
    folder = display_path(_root(root))
    return {"folder": folder, "found": [n for n in OOD_SETS if n in found],
            "missing": {n: rel for n, (rel, _) in OOD_SETS.items() if n not in found}}


def load_cifar_benchmark(name: str = "cifar10", root: str | os.PathLike | None = None, *, download: bool = False,
                         aux: str | os.PathLike | None = None, max_aux: int | None = None,
                         max_ood: int | None = None, skip_missing_ood: bool = True, load_aux: bool = True) -> Benchmark:
    """CIFAR as a :class:`~gregnb.data.Benchmark` of uint8 NHWC tensors with the transforms attached:
    ``train_transform`` (random crop with 4-pixel zero padding + horizontal flip, then normalisation) and
    ``eval_transform`` (normalisation only), both batched and device-agnostic. ``load_aux=False`` leaves the
    pool empty, ``(0, 32, 32, 3)`` (evaluation needs no pool file)."""
    train_x, train_y, test_x, test_y = load_cifar(name, root, download)
    aux_x = load_aux_pool(aux, root, max_aux) if load_aux else torch.empty((0, 32, 32, 3), dtype=torch.uint8)
    ood = load_ood_sets(root, max_images=max_ood, skip_missing=skip_missing_ood)
    return Benchmark(
        name=name, train_x=train_x, train_y=train_y, test_x=test_x, test_y=test_y, aux_x=aux_x, ood=ood,
        n_classes=10 if name == "cifar10" else 100,
        sources={"id": f"{name} (torchvision)", "aux": str(aux or "300K_random_images.npy") if load_aux else "not loaded",
                 "ood": ", ".join(ood) or "none found"},
        train_transform=gpu_augment, eval_transform=normalize)


def _nchw_float(x: torch.Tensor, what: str) -> torch.Tensor:
    """uint8 NHWC ``(B, H, W, 3)`` or float NCHW ``(B, 3, H, W)`` in [0, 1] -> float NCHW in [0, 1]; else an error."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{what} takes a torch tensor, got {type(x).__name__} (use torch.from_numpy)")
    if x.dtype == torch.uint8:
        if x.ndim != 4 or x.shape[-1] != 3:
            raise ValueError(f"{what}: uint8 images must be (B, H, W, 3) (channels last, as stored), got {tuple(x.shape)}")
        return x.permute(0, 3, 1, 2).float().div_(255)
    if not x.is_floating_point():
        raise ValueError(f"{what} takes uint8 (B, H, W, 3) or float (B, 3, H, W) in [0, 1] images, got {x.dtype}")
    if x.ndim != 4 or x.shape[1] != 3:
        raise ValueError(f"{what}: float images must be (B, 3, H, W) (channels first) in [0, 1], got "
                         f"{tuple(x.shape)}; uint8 images are (B, H, W, 3)")
    if x.numel() and (x.min() < -1e-3 or x.max() > 1 + 1e-3):
        raise ValueError(f"{what}: float images must lie in [0, 1], got values in [{x.min().item():.3g}, "
                         f"{x.max().item():.3g}] (already normalised? 0-255 floats? divide by 255)")
    return x.float() if x.dtype != torch.float32 else x


def normalize(x: torch.Tensor) -> torch.Tensor:
    """uint8 ``(B, 32, 32, 3)`` (or float NCHW in [0, 1]) -> float ``(B, 3, 32, 32)`` normalised with the
    CIFAR mean and std, on ``x``'s device. Other layouts or ranges raise (no silent scrambling)."""
    return _standardize(_nchw_float(x, "normalize"))


def _standardize(x: torch.Tensor) -> torch.Tensor:
    mean = torch.tensor(CIFAR_MEAN, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(CIFAR_STD, device=x.device).view(1, 3, 1, 1)
    return (x - mean) / std


def gpu_augment(x: torch.Tensor, generator: torch.Generator | None = None, pad: int = 4) -> torch.Tensor:
    """Random crop (zero padding ``pad``) and horizontal flip for a whole batch at once, on ``x``'s device
    (no per-image Python), then :func:`normalize`. ``x``: uint8 ``(B, H, W, 3)`` or float ``(B, 3, H, W)``
    in [0, 1]."""
    xc = _nchw_float(x, "gpu_augment")  # (B, 3, H, W) in [0, 1]
    b, _, h, w = xc.shape
    dev = xc.device
    xp = torch.nn.functional.pad(xc, (pad, pad, pad, pad))  # (B, 3, H+2p, W+2p), zeros
    oy = torch.randint(0, 2 * pad + 1, (b,), generator=generator).to(dev)
    ox = torch.randint(0, 2 * pad + 1, (b,), generator=generator).to(dev)
    flip = (torch.rand(b, generator=generator) < 0.5).to(dev)
    rows = oy[:, None] + torch.arange(h, device=dev)  # (B, H)
    cols = ox[:, None] + torch.arange(w, device=dev)  # (B, W)
    cols = torch.where(flip[:, None], cols.flip(1), cols)
    bi = torch.arange(b, device=dev)[:, None, None]
    out = xp.permute(0, 2, 3, 1)[bi, rows[:, :, None], cols[:, None, :]]  # (B, H, W, 3)
    return _standardize(out.permute(0, 3, 1, 2))
