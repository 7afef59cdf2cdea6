"""Paper-scale loaders on tiny files written in the real formats (nothing downloads)."""
import numpy as np
import pytest
import torch
from cifar_files import write_cifar10, write_folder
from scipy.io import savemat

from gregnb.data.cifar import (CIFAR_MEAN, CIFAR_STD, gpu_augment, load_aux_pool, load_cifar, load_cifar_benchmark,
                               load_image_folder, load_ood_sets, load_svhn, normalize)


def test_cifar_pickles_load_with_torchvision_parsing(tmp_path):
    written = write_cifar10(tmp_path)
    train_x, train_y, test_x, test_y = load_cifar("cifar10", tmp_path)
    assert train_x.shape == (20, 32, 32, 3) and train_x.dtype == torch.uint8 and test_x.shape == (4, 32, 32, 3)
    data, labels = written["test_batch"]
    expected = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)  # planes -> HWC, independently of torchvision
    assert np.array_equal(test_x.numpy(), expected) and test_y.tolist() == labels


def test_missing_files_name_the_path_and_the_source(tmp_path):
    with pytest.raises(FileNotFoundError, match="cifar-10-batches-py.*cs.toronto.edu|download=True"):
        load_cifar("cifar10", tmp_path)
    with pytest.raises(FileNotFoundError, match=r"svhn/test_32x32\.mat.*ufldl"):
        load_svhn(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"300K_random_images\.npy.*berkeley"):
        load_aux_pool(root=tmp_path)
    with pytest.raises(FileNotFoundError, match=r"dtd/images.*robots\.ox"):
        load_ood_sets(tmp_path, names=["Textures"])
    with pytest.raises(ValueError, match="unknown OOD set"):
        load_ood_sets(tmp_path, names=["MNIST"])


def test_svhn_mat(tmp_path):
    rng = np.random.default_rng(1)
    x = rng.integers(0, 256, (32, 32, 3, 7), dtype=np.uint8)
    (tmp_path / "svhn").mkdir()
    savemat(tmp_path / "svhn" / "test_32x32.mat", {"X": x, "y": np.ones((7, 1))})
    out = load_svhn(tmp_path)
    assert out.shape == (7, 32, 32, 3) and np.array_equal(out[3].numpy(), x[:, :, :, 3])


def test_image_folder_resizes_and_crops(tmp_path):
    arrays = write_folder(tmp_path / "LSUN", 3, size=(32, 32))
    out = load_image_folder(tmp_path / "LSUN")
    assert out.shape == (3, 32, 32, 3)
    assert np.array_equal(out[0].numpy(), arrays[0])  # already 32x32 PNG: unchanged
    write_folder(tmp_path / "big", 2, size=(64, 40), ext="jpg")
    big = load_image_folder(tmp_path / "big")
    assert big.shape == (2, 32, 32, 3)
    assert load_image_folder(tmp_path / "LSUN", max_images=2).shape[0] == 2
    with pytest.raises(FileNotFoundError, match="no images"):
        (tmp_path / "empty").mkdir()
        load_image_folder(tmp_path / "empty")


def test_aux_pool_npy_and_folder(tmp_path):
    pool = np.random.default_rng(2).integers(0, 256, (9, 32, 32, 3), dtype=np.uint8)
    np.save(tmp_path / "300K_random_images.npy", pool)
    assert np.array_equal(load_aux_pool(root=tmp_path).numpy(), pool)
    assert load_aux_pool(tmp_path / "300K_random_images.npy", max_images=4).shape[0] == 4
    np.save(tmp_path / "bad.npy", pool[:, :16])
    with pytest.raises(ValueError, match="32, 32, 3"):
        load_aux_pool(tmp_path / "bad.npy")
    write_folder(tmp_path / "pool_folder", 3)
    assert load_aux_pool(tmp_path / "pool_folder").shape == (3, 32, 32, 3)


def test_full_benchmark_from_tiny_files(tmp_path):
    write_cifar10(tmp_path)
    np.save(tmp_path / "300K_random_images.npy", np.zeros((10, 32, 32, 3), np.uint8))
    write_folder(tmp_path / "iSUN", 2, size=(32, 32))
    write_folder(tmp_path / "dtd" / "images", 2, size=(50, 60), ext="jpg")
    with pytest.warns(UserWarning, match="not found"):
        bench = load_cifar_benchmark("cifar10", tmp_path)
    assert set(bench.ood) == {"iSUN", "Textures"} and bench.n_classes == 10 and len(bench.aux_x) == 10
    x = bench.prepare_eval(bench.test_x)
    assert x.shape == (4, 3, 32, 32) and x.dtype == torch.float32


def test_normalize_values():
    x = torch.full((1, 32, 32, 3), 255, dtype=torch.uint8)
    out = normalize(x)
    for c in range(3):
        assert out[0, c, 0, 0].item() == pytest.approx((1 - CIFAR_MEAN[c]) / CIFAR_STD[c], rel=1e-6)


def test_gpu_augment_is_a_crop_and_flip_of_each_image():
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (16, 32, 32, 3), dtype=torch.uint8)
    out = gpu_augment(x, torch.Generator().manual_seed(0))
    # replay the same random draws and build each crop independently, image by image
    oy = torch.randint(0, 9, (16,), generator=g)
    ox = torch.randint(0, 9, (16,), generator=g)
    flip = torch.rand(16, generator=g) < 0.5
    padded = torch.nn.functional.pad(x.permute(0, 3, 1, 2).float(), (4, 4, 4, 4))
    for i in range(16):
        crop = padded[i, :, oy[i]:oy[i] + 32, ox[i]:ox[i] + 32]
        if flip[i]:
            crop = crop.flip(-1)
        expected = normalize(crop[None] / 255)[0]
        torch.testing.assert_close(out[i], expected)
    assert flip.any() and (~flip).any()
