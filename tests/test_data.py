"""Data layer: datasets, downloads and archives, image folders, batch loading, augmentation, selection.

Everything here is offline and small: downloads are served from tmp_path (file:// or a local HTTP
server on 127.0.0.1) with fabricated files in the published formats.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import pickle
import re
import tarfile
import threading
import time
import zipfile
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from workbench.data import (
    AugmentConfig,
    BatchLoader,
    augment_batch,
    check_dataset_name,
    cifar10_zip_path,
    fetch_dataset,
    list_datasets,
    load_dataset,
    per_example_loss,
    select_subset,
    sources,
)
from workbench.data.augment import _rotate


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


# ---------------------------------------------------------------- registry and digits


def test_list_and_check_names():
    assert list_datasets() == ["cifar10", "digits", "fashion-mnist", "mnist"]
    for name in [*list_datasets(), "folder:/does/not/need/to/exist"]:
        check_dataset_name(name)  # no I/O, so a missing folder is fine here
    with pytest.raises(ValueError, match=r"Unknown dataset 'mnsit'\. Did you mean 'mnist'\?"):
        check_dataset_name("mnsit")
    with pytest.raises(ValueError, match="needs a path"):
        check_dataset_name("folder:")


def test_digits(digits):
    assert digits.train_x.shape == (1437, 1, 8, 8) and digits.test_x.shape == (360, 1, 8, 8)
    assert digits.train_x.dtype == torch.uint8 and digits.train_y.dtype == torch.int64
    assert digits.train_x.max() == 255 and digits.train_x.min() == 0
    assert digits.num_classes == 10 and digits.in_channels == 1 and digits.image_size == 8
    assert set(digits.train_y.tolist()) == set(range(10)) == set(digits.test_y.tolist())
    # Stratified: every class keeps its 20% share in the test split (35-37 of about 180).
    assert digits.test_y.bincount().min() >= 35 and digits.test_y.bincount().max() <= 37
    again = load_dataset("digits")
    assert torch.equal(again.train_x, digits.train_x) and torch.equal(again.test_y, digits.test_y)
    assert digits.mean.shape == (1,) and 0 < digits.mean.item() < 1 and digits.std.item() > 0


# ---------------------------------------------------------------- BatchLoader


def test_loader_shapes_len_and_drop_last(digits):
    loader = BatchLoader(digits.train_x, digits.train_y, 100)
    batches = list(loader)
    assert len(loader) == len(batches) == 15  # 1437 / 100, last batch partial
    assert batches[0][0].shape == (100, 1, 8, 8) and batches[-1][0].shape == (37, 1, 8, 8)
    assert batches[0][0].dtype == torch.float32 and batches[0][1].dtype == torch.int64
    dropped = BatchLoader(digits.train_x, digits.train_y, 100, drop_last=True)
    assert len(dropped) == len(list(dropped)) == 14
    # Without mean/std the values are scaled to [0, 1].
    assert batches[0][0].max() <= 1 and batches[0][0].min() >= 0


def test_loader_normalises_the_train_set(digits):
    loader = BatchLoader(digits.train_x, digits.train_y, 256, shuffle=True, mean=digits.mean, std=digits.std)
    x = torch.cat([xb for xb, _ in loader])
    assert abs(x.mean().item()) < 1e-4 and abs(x.std().item() - 1) < 1e-3


def test_loader_shuffle_is_seeded(digits):
    def orders(seed, epochs=2):
        loader = BatchLoader(digits.train_x, digits.train_y, 64, shuffle=True, seed=seed)
        return [torch.cat([yb for _, yb in loader]) for _ in range(epochs)]

    a, b, c = orders(0), orders(0), orders(1)
    assert all(torch.equal(x, y) for x, y in zip(a, b))  # same seed, same batch order, every epoch
    assert not torch.equal(a[0], c[0])  # another seed, another order
    assert not torch.equal(a[0], a[1])  # a new order each epoch
    assert torch.equal(a[0].sort().values, digits.train_y.sort().values)  # each epoch sees every example once
    unshuffled = torch.cat([yb for _, yb in BatchLoader(digits.train_x, digits.train_y, 64)])
    assert torch.equal(unshuffled, digits.train_y)


def test_loader_augmentation_is_seeded(digits):
    x, y = digits.train_x[:256], digits.train_y[:256]
    cfg = AugmentConfig(crop=2, cutout=3, rotate=10)
    runs = [[xb for xb, _ in BatchLoader(x, y, 64, shuffle=True, seed=3, augment=cfg)] for _ in range(2)]
    assert all(torch.equal(a, b) for a, b in zip(*runs))
    plain = next(iter(BatchLoader(x, y, 64, shuffle=True, seed=3)))[0]
    assert not torch.equal(runs[0][0], plain)


def test_sharded_loaders_cut_every_batch_of_one_process_into_disjoint_pieces(digits):
    """Data parallelism's contract: the ranks' pieces of each step are that step's single-process batch."""
    x, y = digits.train_x, torch.arange(len(digits.train_y))  # labels as indices, to see which examples each got
    single = BatchLoader(x, y, 64, shuffle=True, seed=5, merge_single=True)
    shards = [BatchLoader(x, y, 64, shuffle=True, seed=5, merge_single=True, shard=(r, 2)) for r in (0, 1)]
    for epoch in (0, 3):
        for loader in (single, *shards):
            loader.set_epoch(epoch)
        steps = list(zip(single, *shards))
        assert (
            len(steps) == len(single) == len(shards[0]) == len(shards[1])
        )  # every rank takes the same number of steps
        for (_, whole), (_, a), (_, b) in steps:
            assert not set(a.tolist()) & set(b.tolist())
            assert sorted(a.tolist() + b.tolist()) == sorted(whole.tolist())
            assert abs(len(a) - len(b)) <= 1
    # The ranks augment apart (the same draws would give their pieces the same crops and flips), each reproducibly.
    same = digits.train_x[:1].repeat(128, 1, 1, 1)
    augmented = []
    for rank in (0, 1, 1):
        loader = BatchLoader(
            same, torch.zeros(128), 64, shuffle=True, seed=5, shard=(rank, 2), augment=AugmentConfig(crop=2)
        )
        loader.set_epoch(1)
        augmented.append(next(iter(loader))[0])
    assert not torch.equal(augmented[0], augmented[1]) and torch.equal(augmented[1], augmented[2])


def test_a_final_batch_too_small_for_every_rank_joins_the_one_before(digits):
    x, y = digits.train_x[:131], digits.train_y[:131]  # 2 x 64 + 3: the last 3 cannot give 2 ranks 2 each
    shards = [BatchLoader(x, y, 64, shuffle=True, merge_single=True, shard=(r, 2)) for r in (0, 1)]
    assert [len(s) for s in shards] == [2, 2] and all(len(yb) >= 32 for s in shards for _, yb in s)
    assert "in each process" in shards[0].note
    assert len(BatchLoader(x, y, 64, shuffle=True, merge_single=True)) == 3  # one process: a batch of 3 is fine
    with pytest.raises(ValueError, match="rank < world_size"):
        BatchLoader(x, y, 64, shard=(2, 2))


def test_loader_rejects_float_images():
    with pytest.raises(ValueError, match="uint8"):
        BatchLoader(torch.rand(4, 1, 8, 8), torch.zeros(4), 2)


# ---------------------------------------------------------------- augmentation


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def test_augment_keeps_shape_dtype_and_is_off_by_default():
    x = torch.rand(8, 3, 16, 16)
    for cfg in [
        AugmentConfig(flip=True),
        AugmentConfig(crop=4),
        AugmentConfig(translate=3),
        AugmentConfig(cutout=5),
        AugmentConfig(rotate=15),
        AugmentConfig(brightness=0.3),
        AugmentConfig(contrast=0.3),
        AugmentConfig(flip=True, crop=2, translate=2, cutout=4, rotate=30, brightness=0.2, contrast=0.2),
    ]:
        y = augment_batch(x, cfg, _gen())
        assert y.shape == x.shape and y.dtype == x.dtype
    assert torch.equal(augment_batch(x, AugmentConfig(), _gen()), x)
    assert torch.equal(augment_batch(x, AugmentConfig(rotate=0.0), _gen()), x)


def test_flip_really_flips():
    x = torch.rand(64, 3, 8, 8)
    y = augment_batch(x, AugmentConfig(flip=True), _gen())
    flipped = torch.tensor([torch.equal(y[i], torch.flip(x[i], dims=[-1])) for i in range(64)])
    kept = torch.tensor([torch.equal(y[i], x[i]) for i in range(64)])
    assert (flipped ^ kept).all()  # each sample is exactly one of the two
    assert 10 < flipped.sum() < 54  # about half are flipped


def test_brightness_and_contrast_are_one_affine_map_per_image_within_their_ranges():
    x = torch.randn(256, 3, 8, 8)
    y = augment_batch(x, AugmentConfig(brightness=0.4, contrast=0.25), _gen())
    mean_x, mean_y = x.mean((1, 2, 3)), y.mean((1, 2, 3))
    scale = (y - mean_y[:, None, None, None]).std((1, 2, 3)) / (x - mean_x[:, None, None, None]).std((1, 2, 3))
    shift = mean_y - mean_x
    # Every pixel of an image moved by the same affine map about that image's mean: nothing spatial.
    rebuilt = (x - mean_x[:, None, None, None]) * scale[:, None, None, None] + mean_y[:, None, None, None]
    assert torch.allclose(rebuilt, y, atol=1e-5)
    assert scale.min() >= 0.75 - 1e-5 and scale.max() <= 1.25 + 1e-5 and scale.std() > 0.05
    assert shift.abs().max() <= 0.4 + 1e-5 and shift.std() > 0.1
    assert torch.equal(augment_batch(x, AugmentConfig(brightness=0.4, contrast=0.25), _gen()), y)  # seeded
    with pytest.raises(ValueError, match="contrast must be within"):
        AugmentConfig(contrast=1.0)
    with pytest.raises(ValueError, match="brightness must be 0 or more"):
        AugmentConfig(brightness=-0.1)


@pytest.mark.parametrize("reflect", [True, False])
def test_crop_and_translate_are_windows_of_the_padded_batch(reflect):
    pad = 2
    x = torch.rand(16, 3, 8, 8)
    cfg = AugmentConfig(crop=pad) if reflect else AugmentConfig(translate=pad)
    y = augment_batch(x, cfg, _gen())
    assert y.shape == x.shape
    padded = F.pad(x, (pad,) * 4, mode="reflect" if reflect else "constant")
    offsets = []
    for i in range(16):
        hits = [
            (dy, dx)
            for dy in range(2 * pad + 1)
            for dx in range(2 * pad + 1)
            if torch.equal(y[i], padded[i, :, dy : dy + 8, dx : dx + 8])
        ]
        assert hits, f"sample {i} is not a window of the padded image"
        offsets.append(hits[0])
    assert len(set(offsets)) > 3  # the offsets are per sample, not one for the batch


def test_cutout_zeros_one_square_per_sample():
    x = torch.rand(32, 3, 16, 16) + 0.5  # no zeros to begin with
    y = augment_batch(x, AugmentConfig(cutout=5), _gen())
    zero = y == 0
    assert torch.equal(zero[:, 0], zero[:, 1]) and torch.equal(zero[:, 0], zero[:, 2])  # all channels
    corners = set()
    for i in range(32):
        rows, cols = zero[i, 0].nonzero(as_tuple=True)
        assert len(rows) == 25
        assert rows.max() - rows.min() == 4 and cols.max() - cols.min() == 4  # a 5x5 square
        corners.add((rows.min().item(), cols.min().item()))
    assert torch.equal(y[~zero], x[~zero])
    assert len(corners) > 5


def test_rotation():
    x = torch.rand(4, 3, 9, 9)
    assert torch.allclose(_rotate(x, torch.zeros(4)), x, atol=1e-5)  # 0 degrees is the identity
    assert torch.allclose(_rotate(x, torch.full((4,), 90.0)), torch.rot90(x, 1, dims=(2, 3)), atol=1e-5)
    y = augment_batch(x, AugmentConfig(rotate=30), _gen())
    assert not torch.allclose(y, x)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_loader_and_augment_on_gpu_match_cpu(digits):
    cfg = AugmentConfig(flip=True, crop=2, translate=1, cutout=3, rotate=10)
    cpu, gpu = (
        BatchLoader(
            digits.train_x,
            digits.train_y,
            256,
            shuffle=True,
            seed=5,
            augment=cfg,
            device=d,
            mean=digits.mean,
            std=digits.std,
        )
        for d in ("cpu", "cuda")
    )
    assert gpu.x.device.type == "cuda"  # the uint8 data lives on the GPU
    for (xc, yc), (xg, yg) in zip(cpu, gpu):
        assert xg.device.type == "cuda" and torch.equal(yc, yg.cpu())  # same seed, same order and offsets
        assert torch.allclose(xc, xg.cpu(), atol=1e-4)


# ---------------------------------------------------------------- subset selection


def test_select_random_sizes_and_seed():
    y = torch.arange(100) % 10
    for fraction, k in [(0.1, 10), (0.25, 25), (1.0, 100), (0.001, 1)]:
        idx = select_subset(y, fraction, "random", seed=0)
        assert len(idx) == k and len(set(idx.tolist())) == k and idx.dtype == torch.int64
        assert torch.equal(idx, idx.sort().values)
    assert torch.equal(select_subset(y, 0.3, "random", seed=1), select_subset(y, 0.3, "random", seed=1))
    assert not torch.equal(select_subset(y, 0.3, "random", seed=1), select_subset(y, 0.3, "random", seed=2))


def test_select_balanced_counts(digits):
    idx = select_subset(digits.train_y, 0.5, "balanced", seed=0)
    counts = digits.train_y[idx].bincount(minlength=10)
    assert counts.sum() == round(0.5 * 1437) and counts.max() - counts.min() <= 1
    # A class too small for an equal share gives everything it has; the others share the rest.
    y = torch.tensor([0] * 50 + [1] * 50 + [2] * 4)
    counts = y[select_subset(y, 0.5, "balanced")].bincount()
    assert counts.tolist() == [24, 24, 4]


def test_select_by_scores():
    y = torch.arange(20) % 2
    scores = torch.rand(20, generator=_gen())
    hardest = select_subset(y, 0.25, "hardest", scores=scores)
    easiest = select_subset(y, 0.25, "easiest", scores=scores)
    ranked = scores.argsort(descending=True)
    assert set(hardest.tolist()) == set(ranked[:5].tolist())
    assert set(easiest.tolist()) == set(ranked[-5:].tolist())
    with pytest.raises(ValueError, match="per_example_loss"):
        select_subset(y, 0.5, "hardest")
    with pytest.raises(ValueError, match="one value per example"):
        select_subset(y, 0.5, "easiest", scores=torch.rand(3))
    with pytest.raises(ValueError, match="Unknown selection strategy 'hard'"):
        select_subset(y, 0.5, "hard")
    with pytest.raises(ValueError, match=r"fraction must be in \(0, 1\]"):
        select_subset(y, 0, "random")


def test_per_example_loss_uses_eval_mode(digits):
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Flatten(), torch.nn.Linear(64, 32), torch.nn.BatchNorm1d(32), torch.nn.ReLU(), torch.nn.Linear(32, 10)
    )
    model(torch.randn(64, 1, 8, 8))  # give BatchNorm running statistics that differ from a batch's own
    x, y = digits.test_x, digits.test_y
    losses = per_example_loss(model, x, y, mean=digits.mean, std=digits.std, device="cpu", batch_size=100)
    assert model.training  # mode restored
    model.eval()
    with torch.no_grad():
        xf = (x.float() / 255 - digits.mean.view(1, -1, 1, 1)) / digits.std.view(1, -1, 1, 1)
        expected = F.cross_entropy(model(xf), y, reduction="none")
    assert losses.shape == (360,) and not losses.requires_grad
    assert torch.allclose(losses, expected, atol=1e-5)


# ---------------------------------------------------------------- image folders and zips


def _image_folder(root: Path, gray_one: bool = True, size=(6, 5), fmt="png") -> Path:
    """train/{cat,dog,eel}: 3 images each; test/: 1 each; the pixel value encodes the class."""
    for split, n in [("train", 3), ("test", 1)]:
        for label, cls in enumerate(["cat", "dog", "eel"]):
            (root / split / cls).mkdir(parents=True)
            for i in range(n):
                value = 40 * label + 10 * i
                if gray_one and (split, cls, i) == ("train", "dog", 1):
                    img = Image.new("L", size, value)
                else:
                    img = Image.new("RGB", size, (value, value + 1, value + 2))
                img.save(root / split / cls / f"{i}.{fmt}")
    return root


def _zip(folder: Path, dest: Path, prefix: str = "") -> Path:
    with zipfile.ZipFile(dest, "w") as z:
        for p in sorted(folder.rglob("*")):
            z.write(p, prefix + p.relative_to(folder).as_posix())
    return dest


def test_folder_loads_classes_labels_and_rgb(tmp_path):
    folder = _image_folder(tmp_path / "imgs")
    ds = load_dataset(f"folder:{folder}", root=tmp_path / "data")
    assert ds.classes == ["cat", "dog", "eel"] and ds.num_classes == 3
    assert ds.train_x.shape == (9, 3, 5, 6) and ds.test_x.shape == (3, 3, 5, 6)
    assert ds.train_x.dtype == torch.uint8 and ds.train_y.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    assert ds.test_y.tolist() == [0, 1, 2]
    assert (ds.train_x[:, 0, 0, 0] // 40).tolist() == ds.train_y.tolist()  # label matches its folder
    gray = ds.train_x[4]  # train/dog/1.png was greyscale: repeated into all three channels
    assert torch.equal(gray[0], gray[1]) and torch.equal(gray[0], gray[2]) and gray[0, 0, 0] == 50
    assert ds.train_x[3, :, 0, 0].tolist() == [40, 41, 42]


def test_grayscale_folder_has_one_channel(tmp_path):
    for split in ("train", "test"):
        for cls in ("a", "b"):
            (tmp_path / "g" / split / cls).mkdir(parents=True)
            Image.new("L", (4, 4), 7).save(tmp_path / "g" / split / cls / "x.png")
    ds = load_dataset(f"folder:{tmp_path / 'g'}", root=tmp_path / "data")
    assert ds.in_channels == 1 and ds.train_x.shape == (2, 1, 4, 4)


def test_zip_equals_folder_and_may_have_a_top_folder(tmp_path):
    folder = _image_folder(tmp_path / "imgs")
    from_folder = load_dataset(f"folder:{folder}", root=tmp_path / "data")
    for prefix in ("", "mydata/"):
        zpath = _zip(folder, tmp_path / f"imgs{len(prefix)}.zip", prefix)
        ds = load_dataset(f"folder:{zpath}", root=tmp_path / "data")
        assert ds.classes == from_folder.classes
        assert torch.equal(ds.train_x, from_folder.train_x) and torch.equal(ds.test_y, from_folder.test_y)


def test_jpeg_zip(tmp_path):
    zpath = _zip(_image_folder(tmp_path / "imgs", gray_one=False, size=(8, 8), fmt="jpg"), tmp_path / "j.zip")
    ds = load_dataset(f"folder:{zpath}", root=tmp_path / "data")
    assert ds.train_x.shape == (9, 3, 8, 8) and ds.train_y.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    assert (ds.train_x[3].float() - 40).abs().max() <= 4  # JPEG is lossy, but close


def test_folder_cache_second_load_is_faster_and_equal(tmp_path):
    folder = tmp_path / "many"
    rng = np.random.default_rng(0)
    for split, n in [("train", 300), ("test", 100)]:
        for cls in ("a", "b"):
            (folder / split / cls).mkdir(parents=True)
            for i in range(n // 2):
                Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(
                    folder / split / cls / f"{i}.png"
                )
    zpath = _zip(folder, tmp_path / "many.zip")
    root = tmp_path / "data"
    t0 = time.perf_counter()
    first = load_dataset(f"folder:{zpath}", root=root)
    t1 = time.perf_counter()
    second = load_dataset(f"folder:{zpath}", root=root)
    t2 = time.perf_counter()
    assert t2 - t1 < (t1 - t0) / 2
    assert torch.equal(first.train_x, second.train_x) and torch.equal(first.test_y, second.test_y)
    assert first.classes == second.classes
    assert len(list((root / "cache").glob("folder-many-*.pt"))) == 1
    os.utime(zpath, ns=(time.time_ns(), time.time_ns() + 10**9))  # a changed zip gets a fresh cache
    load_dataset(f"folder:{zpath}", root=root)
    assert len(list((root / "cache").glob("folder-many-*.pt"))) == 2


def _one_line_error(fn, pattern):
    with pytest.raises(ValueError) as info:
        fn()
    message = str(info.value)
    assert "\n" not in message and re.search(pattern, message), message
    return message


def test_folder_errors(tmp_path):
    root = tmp_path / "data"
    _one_line_error(lambda: load_dataset(f"folder:{tmp_path / 'nope'}", root=root), "does not exist")
    (tmp_path / "empty").mkdir()
    _one_line_error(lambda: load_dataset(f"folder:{tmp_path / 'empty'}", root=root), "No images found")
    folder = _image_folder(tmp_path / "imgs")
    for p in (folder / "test").rglob("*.png"):
        p.unlink()
    _one_line_error(lambda: load_dataset(f"folder:{folder}", root=root), "has no test/ images")
    odd = _image_folder(tmp_path / "odd")
    Image.new("RGB", (3, 3)).save(odd / "train" / "cat" / "9.png")
    _one_line_error(lambda: load_dataset(f"folder:{odd}", root=root), "resize all images")
    stray = _image_folder(tmp_path / "stray")
    (stray / "test" / "fox").mkdir()
    Image.new("RGB", (6, 5)).save(stray / "test" / "fox" / "0.png")
    _one_line_error(lambda: load_dataset(f"folder:{stray}", root=root), "test class 'fox' has no train/fox/")
    assert not (root / "cache").exists() or not list((root / "cache").iterdir())  # nothing half-cached


def test_corrupt_zip_errors_and_caches_nothing(tmp_path):
    good = _zip(_image_folder(tmp_path / "imgs"), tmp_path / "good.zip").read_bytes()
    root = tmp_path / "data"
    truncated = tmp_path / "truncated.zip"
    truncated.write_bytes(good[: len(good) // 2])
    _one_line_error(lambda: load_dataset(f"folder:{truncated}", root=root), "corrupt or truncated")
    damaged = tmp_path / "damaged.zip"  # intact directory, but member bytes overwritten (bad CRC)
    damaged.write_bytes(good[:200] + b"\xff" * 100 + good[300:])
    _one_line_error(lambda: load_dataset(f"folder:{damaged}", root=root), "corrupt or truncated|Could not decode")
    with zipfile.ZipFile(tmp_path / "junk.zip", "w") as z:
        for split in ("train", "test"):
            z.writestr(f"{split}/cat/0.png", b"not a png")
    _one_line_error(
        lambda: load_dataset(f"folder:{tmp_path / 'junk.zip'}", root=root), "Could not decode train/cat/0.png"
    )
    assert not (root / "cache").exists() or not list((root / "cache").iterdir())


def test_cifar10_zip_path_env(tmp_path, monkeypatch):
    z = tmp_path / "c.zip"
    z.write_bytes(b"")
    monkeypatch.setenv("WORKBENCH_CIFAR10_ZIP", str(z))
    assert cifar10_zip_path() == z
    monkeypatch.setenv("WORKBENCH_CIFAR10_ZIP", str(tmp_path / "absent.zip"))
    assert cifar10_zip_path() is None


# ---------------------------------------------------------------- downloads and archives


def test_manifest_covers_every_download():
    m = sources.manifest()
    images = {name: entry for name, entry in m.items() if entry["format"] != "text"}
    assert sorted(images) == sorted(set(list_datasets()) - {"digits"})
    assert sorted(set(m) - set(images)) == ["tinyshakespeare"]  # the language-model corpus (workbench.data.text)
    shakespeare = m["tinyshakespeare"]["files"][0]
    assert shakespeare["sha256"] == "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"
    for entry in m.values():
        for f in entry["files"]:
            assert f["urls"] and all(u.startswith(("http://", "https://")) for u in f["urls"])
            assert re.fullmatch(r"[0-9a-f]{32}", f["md5"]) and f["size"] > 0
    for entry in images.values():
        assert len(entry["classes"]) == 10
        roles = {f["role"] for f in entry["files"]}
        assert roles == (
            {"archive"} if entry["format"] == "cifar10-python" else {"train_x", "train_y", "test_x", "test_y"}
        )
    assert m["cifar10"]["files"][0]["md5"] == "c58f30108f718f92721af3b95e74349a"


def _idx(array: np.ndarray) -> bytes:
    header = bytes([0, 0, 8, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    return gzip.compress(header + array.astype(np.uint8).tobytes())


def _md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


@pytest.fixture
def server(tmp_path):
    """An HTTP server on 127.0.0.1 serving tmp_path/www."""
    www = tmp_path / "www"
    www.mkdir()

    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), partial(Quiet, directory=str(www)))
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield www, f"http://127.0.0.1:{httpd.server_address[1]}/"
    httpd.shutdown()
    httpd.server_close()


_FAKE_MNIST_RNG = np.random.default_rng(0)  # one generator shared by every call, as a default argument would be


def _fake_mnist(www: Path, base_url: str, rng=_FAKE_MNIST_RNG) -> tuple[dict, dict]:
    arrays = {
        "train_x": rng.integers(0, 256, (12, 28, 28)),
        "train_y": rng.integers(0, 10, 12),
        "test_x": rng.integers(0, 256, (5, 28, 28)),
        "test_y": rng.integers(0, 10, 5),
    }
    files = []
    for role, array in arrays.items():
        data = _idx(array)
        (www / f"{role}.gz").write_bytes(data)
        files.append(
            {
                "role": role,
                "name": f"{role}.gz",
                "urls": [base_url + f"{role}.gz"],
                "md5": _md5(data),
                "size": len(data),
            }
        )
    return {"mnist": {"format": "idx", "classes": [str(i) for i in range(10)], "files": files}}, arrays


def test_download_verify_decode_and_cache(tmp_path, server, monkeypatch):
    www, url = server
    manifest, arrays = _fake_mnist(www, url)
    monkeypatch.setattr(sources, "manifest", lambda: manifest)
    root = tmp_path / "data"
    folder = fetch_dataset("mnist", root)
    assert sorted(p.name for p in folder.iterdir()) == ["test_x.gz", "test_y.gz", "train_x.gz", "train_y.gz"]
    ds = load_dataset("mnist", root)
    assert ds.train_x.shape == (12, 1, 28, 28) and ds.test_x.shape == (5, 1, 28, 28)
    assert ds.train_x.dtype == torch.uint8 and ds.train_y.dtype == torch.int64
    assert (
        np.array_equal(ds.train_x[:, 0].numpy(), arrays["train_x"]) and ds.test_y.tolist() == arrays["test_y"].tolist()
    )
    assert (root / "cache" / "mnist.pt").exists()
    for p in folder.iterdir():  # the second load reads only the decoded cache
        p.unlink()
    again = load_dataset("mnist", root)
    assert torch.equal(again.train_x, ds.train_x) and again.classes == ds.classes
    (root / "cache" / "mnist.pt").write_bytes(b"garbage")  # an unreadable cache is rebuilt, not trusted
    rebuilt = load_dataset("mnist", root)
    assert torch.equal(rebuilt.test_x, ds.test_x) and len(list(folder.iterdir())) == 4


def test_checksum_mismatch_deletes_the_file(tmp_path, server, monkeypatch):
    www, url = server
    manifest, _ = _fake_mnist(www, url)
    entry = manifest["mnist"]["files"][0]
    entry["md5"] = "0" * 32
    monkeypatch.setattr(sources, "manifest", lambda: manifest)
    folder = tmp_path / "data" / "downloads" / "mnist"
    message = _one_line_error(lambda: load_dataset("mnist", tmp_path / "data"), r"^Checksum mismatch for train_x\.gz")
    assert "has been deleted" in message and str(folder / "train_x.gz") in message
    assert not (folder / "train_x.gz").exists() and not (folder / "train_x.gz.part").exists()
    assert not (tmp_path / "data" / "cache").exists()


def test_truncated_download_is_caught(tmp_path, server, monkeypatch):
    www, url = server
    manifest, _ = _fake_mnist(www, url)
    served = www / "train_x.gz"
    served.write_bytes(served.read_bytes()[:100])  # the server sends a cut-off file; the manifest md5 is the full one's
    monkeypatch.setattr(sources, "manifest", lambda: manifest)
    _one_line_error(lambda: fetch_dataset("mnist", tmp_path / "data"), "Checksum mismatch for train_x.gz")
    assert not list((tmp_path / "data" / "downloads" / "mnist").glob("train_x.gz*"))  # neither file nor .part


def test_a_bad_copied_file_is_caught(tmp_path, monkeypatch):
    manifest, _ = _fake_mnist(tmp_path, "http://127.0.0.1:9/")
    monkeypatch.setattr(sources, "manifest", lambda: manifest)
    folder = tmp_path / "data" / "downloads" / "mnist"
    folder.mkdir(parents=True)
    (folder / "train_x.gz").write_bytes(b"wrong bytes")
    _one_line_error(lambda: fetch_dataset("mnist", tmp_path / "data"), "Checksum mismatch")
    assert not (folder / "train_x.gz").exists()


def test_offline_error(tmp_path, monkeypatch):
    manifest, _ = _fake_mnist(tmp_path, "http://127.0.0.1:9/")
    manifest["mnist"]["files"][0]["urls"] = ["http://127.0.0.1:9/x", "file:///nonexistent/x"]
    monkeypatch.setattr(sources, "manifest", lambda: manifest)
    dest = tmp_path / "data" / "downloads" / "mnist" / "train_x.gz"
    message = _one_line_error(
        lambda: load_dataset("mnist", tmp_path / "data"),
        r"^Could not download mnist from http://127\.0\.0\.1:9/x \(no network\?\)\. ",
    )
    assert "`workbench datasets fetch mnist`" in message and message.endswith(f"copy the file to {dest}.")
    assert not dest.exists() and not dest.with_name("train_x.gz.part").exists()


def test_idx_reader_rejects_bad_files(tmp_path):
    good = _idx(np.arange(24).reshape(2, 3, 4))
    p = tmp_path / "a.gz"
    p.write_bytes(good)
    assert sources.read_idx(p).tolist() == np.arange(24).reshape(2, 3, 4).tolist()
    p.write_bytes(good[:-6])  # gzip stream cut short
    _one_line_error(lambda: sources.read_idx(p), "corrupt or truncated")
    p.write_bytes(gzip.compress(gzip.decompress(good)[:-3]))  # valid gzip, payload shorter than the header says
    _one_line_error(lambda: sources.read_idx(p), "is truncated")
    p.write_bytes(gzip.compress(b"\x00\x00\x0d\x01\x00\x00\x00\x01abcd"))  # float data, not bytes
    _one_line_error(lambda: sources.read_idx(p), "not an IDX file of unsigned bytes")


def _batch(rng, n) -> dict:
    return {
        b"batch_label": b"fake",
        b"labels": rng.integers(0, 10, n).tolist(),
        b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
        b"filenames": [b"x.png"] * n,
    }


def _cifar_tar(path: Path, batches: dict, extra=()) -> bytes:
    with tarfile.open(path, "w:gz") as tar:
        for name, obj in batches.items():
            data = obj if isinstance(obj, bytes) else pickle.dumps(obj, protocol=4)
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for info in extra:
            tar.addfile(info, io.BytesIO(b"x" * info.size) if info.isfile() else None)
    return path.read_bytes()


def _use_cifar_archive(monkeypatch, archive: Path):
    entry = {
        "role": "archive",
        "name": "cifar-10-python.tar.gz",
        "urls": [archive.as_uri()],
        "md5": _md5(archive.read_bytes()),
    }
    manifest = {"cifar10": {**sources.manifest()["cifar10"], "files": [entry]}}
    monkeypatch.setattr(sources, "manifest", lambda: manifest)


def test_cifar_python_archive(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    batches = {"data_batch_1": _batch(rng, 3), "data_batch_2": _batch(rng, 2), "test_batch": _batch(rng, 4)}
    archive = tmp_path / "src.tar.gz"
    _cifar_tar(archive, {**batches, "batches.meta": {b"label_names": [b"airplane"]}})
    _use_cifar_archive(monkeypatch, archive)
    ds = load_dataset("cifar10", tmp_path / "data")
    assert ds.train_x.shape == (5, 3, 32, 32) and ds.test_x.shape == (4, 3, 32, 32) and ds.train_x.dtype == torch.uint8
    assert ds.classes[:2] == ["airplane", "automobile"] and ds.num_classes == 10
    row = batches["data_batch_2"][b"data"][1]  # 1024 red, then 1024 green, then 1024 blue values
    assert np.array_equal(ds.train_x[4].numpy(), row.reshape(3, 32, 32))
    assert ds.train_y.tolist() == batches["data_batch_1"][b"labels"] + batches["data_batch_2"][b"labels"]


def _member(name, kind=tarfile.REGTYPE, link=""):
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.size = kind, link, 1 if kind == tarfile.REGTYPE else 0
    return info


@pytest.mark.parametrize(
    "member, problem",
    [
        (_member("../escape.txt"), "escapes the archive folder"),
        (_member("cifar-10-batches-py/../../escape.txt"), "escapes the archive folder"),
        (_member("/tmp/absolute.txt"), "is an absolute path"),
        (_member("cifar-10-batches-py/link", tarfile.SYMTYPE, "/etc/passwd"), "is a link"),
        (_member("cifar-10-batches-py/hard", tarfile.LNKTYPE, "cifar-10-batches-py/test_batch"), "is a link"),
    ],
)
def test_unsafe_tar_members_are_refused(tmp_path, monkeypatch, member, problem):
    rng = np.random.default_rng(0)
    archive = tmp_path / "src.tar.gz"
    _cifar_tar(archive, {"data_batch_1": _batch(rng, 2), "test_batch": _batch(rng, 2)}, extra=[member])
    _use_cifar_archive(monkeypatch, archive)
    _one_line_error(
        lambda: load_dataset("cifar10", tmp_path / "data"), f"^Refusing .*'{re.escape(member.name)}' {problem}"
    )
    assert not (tmp_path / "escape.txt").exists() and not (tmp_path / "data" / "cache").exists()


class _Exploit:
    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return os.mkdir, (self.target,)


def test_pickles_may_hold_only_arrays(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    target = str(tmp_path / "pwned")
    evil = {**_batch(rng, 2), b"extra": _Exploit(target)}
    archive = tmp_path / "src.tar.gz"
    _cifar_tar(archive, {"data_batch_1": evil, "test_batch": _batch(rng, 2)})
    _use_cifar_archive(monkeypatch, archive)
    _one_line_error(lambda: load_dataset("cifar10", tmp_path / "data"), "unexpected object .*mkdir")
    assert not Path(target).exists()


def test_alternating_flip_shows_every_image_both_ways_over_two_epochs_and_follows_the_example():
    from workbench import AugmentConfig, BatchLoader

    x = torch.randint(0, 256, (40, 1, 4, 4), dtype=torch.uint8)  # distinct images tell the examples apart
    x[:, 0, 0, 0] = torch.arange(40, dtype=torch.uint8)
    aug = AugmentConfig(flip="alternate")

    def seen(loader, epoch):
        loader.set_epoch(epoch)
        out = {}
        for xb, yb in loader:
            for img, label in zip(xb, yb.tolist()):
                plain = next(iter(BatchLoader(x[label : label + 1], torch.tensor([label]), 1)))[0][0]
                out[label] = bool(torch.equal(img, plain.flip(2)) and not torch.equal(img, plain))
        return out

    loader = BatchLoader(x, torch.arange(40), 8, shuffle=True, seed=3, augment=aug)
    first, second, third = seen(loader, 0), seen(loader, 1), seen(loader, 2)
    assert sorted(first) == list(range(40)) and all(first[i] != second[i] for i in range(40)) and first == third
    assert 8 < sum(first.values()) < 32  # a coin per example
    other = BatchLoader(x, torch.arange(40), 8, shuffle=True, seed=4, augment=aug)
    assert seen(other, 0) != first
    shards = [BatchLoader(x, torch.arange(40), 8, shuffle=True, seed=3, augment=aug, shard=(r, 2)) for r in (0, 1)]
    assert {**seen(shards[0], 1), **seen(shards[1], 1)} == second  # the ranks mirror the examples one process would
    with pytest.raises(Exception, match=r"data\.augment\.flip must be true, false or alternate"):
        AugmentConfig(flip="sometimes")
