"""Datasets, batch loading with whole-batch augmentation, and training-subset selection.

This part owns the data section of a run (``DataConfig``, ``AugmentConfig``).

Example:
    >>> ds = load_dataset("digits")
    >>> loader = BatchLoader(ds.train_x, ds.train_y, 64, shuffle=True, mean=ds.mean, std=ds.std)
    >>> xb, yb = next(iter(loader))
    >>> xb.shape, xb.dtype, yb.dtype
    (torch.Size([64, 1, 8, 8]), torch.float32, torch.int64)
"""

from .augment import augment_batch
from .config import STRATEGIES, AugmentConfig, DataConfig
from .dataset import Dataset, DatasetError
from .folder import cifar10_zip_path, load_folder
from .loader import EVAL_BATCH, BatchLoader, eval_loader, train_loader
from .registry import check_dataset_name, fetch_dataset, list_datasets, load_dataset
from .select import per_example_loss, select_subset, subset_size

__all__ = [
    "EVAL_BATCH",
    "STRATEGIES",
    "AugmentConfig",
    "BatchLoader",
    "DataConfig",
    "Dataset",
    "DatasetError",
    "augment_batch",
    "check_dataset_name",
    "cifar10_zip_path",
    "eval_loader",
    "fetch_dataset",
    "list_datasets",
    "load_dataset",
    "load_folder",
    "per_example_loss",
    "select_subset",
    "subset_size",
    "train_loader",
]
