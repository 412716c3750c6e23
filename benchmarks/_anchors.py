"""The reference scripts of the speedrun race (../shared/anchors), run unchanged beside the preset on a GPU.

They are raced against, never copied into the project: each is imported from where it lies, fed the data
files its own ``CifarLoader`` reads (``cifar10/train.pt`` and ``test.pt`` under the working directory,
written here from the same dataset the preset trains on), and driven the way its ``__main__`` block does:
one compiled model (max-autotune), a warm-up run, then timed runs. Each script times itself with CUDA
events (whitening, training and the final test-time-augmented evaluation; not the per-epoch evaluations).

Both import torchvision at the top, yet with the data files in place they use it only for
``transforms.Normalize``. Where torchvision does not import (PyPI's build does not beside this torch), a
stand-in module gives that one transform, ``(x - mean) / std`` per channel as torchvision computes it, and
the results record that it was used.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import sys
import types
from collections.abc import Iterator
from pathlib import Path

import torch

from workbench.data import Dataset

SCRIPTS = ("airbench94_muon", "cifar10_speedrun")


def write_reference_data(dataset: Dataset, folder: str | Path, seed: int = 0) -> Path:
    """``folder/cifar10/{train,test}.pt`` as the reference loaders read them: uint8 N x 32 x 32 x 3 (HWC)
    images, int64 labels and the class names. The training split is shuffled once with ``seed`` (the zip
    stores it class by class); the test split keeps its order."""
    out = Path(folder) / "cifar10"
    out.mkdir(parents=True, exist_ok=True)
    order = torch.randperm(len(dataset.train_y), generator=torch.Generator().manual_seed(seed))
    for split, x, y in (
        ("train", dataset.train_x[order], dataset.train_y[order]),
        ("test", dataset.test_x, dataset.test_y),
    ):
        torch.save(
            {"images": x.permute(0, 2, 3, 1).contiguous(), "labels": y.long(), "classes": list(dataset.classes)},
            out / f"{split}.pt",
        )
    return out


class _Normalize(torch.nn.Module):
    """torchvision.transforms.Normalize on a tensor: per-channel (x - mean) / std over the channel axis -3."""

    def __init__(self, mean, std):
        super().__init__()
        self.mean, self.std = mean, std

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = torch.as_tensor(self.mean, dtype=x.dtype, device=x.device)[:, None, None]
        std = torch.as_tensor(self.std, dtype=x.dtype, device=x.device)[:, None, None]
        return (x - mean) / std


def torchvision_or_stand_in() -> bool:
    """True when the real torchvision imports; else install the stand-in (Normalize only) and return False."""
    try:
        import torchvision.transforms  # noqa: F401

        return True
    except Exception:  # noqa: BLE001 - torchvision missing or broken (any error): the stand-in
        vision = types.ModuleType("torchvision")
        vision.transforms = types.ModuleType("torchvision.transforms")
        vision.transforms.Normalize = _Normalize
        sys.modules.update({"torchvision": vision, "torchvision.transforms": vision.transforms})
        return False


def load_script(anchors: str | Path, name: str) -> types.ModuleType:
    """Import ``anchors/<name>.py`` as a module (its ``__main__`` block does not run)."""
    path = Path(anchors) / f"{name}.py"
    if not path.is_file():
        raise FileNotFoundError(f"no reference script {path}: point --race at the folder holding {', '.join(SCRIPTS)}")
    spec = importlib.util.spec_from_file_location(f"reference_{name}", path)
    module = importlib.util.module_from_spec(spec)
    # The scripts log their own source from sys.argv[0], as when run as `python script.py`; under a
    # pytest-xdist worker that is "-c".
    argv0, sys.argv[0] = sys.argv[0], str(path)
    try:
        spec.loader.exec_module(module)
    finally:
        sys.argv[0] = argv0
    return module


@contextlib.contextmanager
def working_directory(path: str | Path) -> Iterator[None]:
    before = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(before)


class Reference:
    """One reference script, its model compiled once and reused between runs as its ``__main__`` does."""

    def __init__(self, module: types.ModuleType, name: str):
        self.module, self.name = module, name
        self.model = module.CifarNet().cuda().to(memory_format=torch.channels_last)
        self.model.compile(mode="max-autotune")
        self._last: dict = {}
        if name == "airbench94_muon":  # its main returns the TTA accuracy only; the time is in its last table row
            show = module.print_training_details

            def keep(variables, is_final_entry):
                if is_final_entry:
                    self._last = {"seconds": variables["time_seconds"], "accuracy": variables["val_acc"]}
                show(variables, is_final_entry)

            module.print_training_details = keep

    def run(self, run: int | str) -> dict:
        """One run (``"warmup"`` trains on random labels, as upstream): TTA accuracy, plain accuracy and seconds."""
        torch.cuda.empty_cache()
        torch.cuda.synchronize()
        if self.name == "cifar10_speedrun":
            torch.cuda._sleep(int(6e9))  # its main block idles the GPU between runs the same way
            plain, tta, seconds = self.module.main(run, self.model)
        else:
            tta = self.module.main(run, self.model)
            plain, seconds = self._last["accuracy"], self._last["seconds"]
        return {"run": run, "accuracy": float(tta), "accuracy_plain": float(plain), "seconds": float(seconds)}
