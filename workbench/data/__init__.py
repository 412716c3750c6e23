"""Datasets, batch loading with whole-batch augmentation, and training-subset selection.

Example:
    >>> ds = load_dataset("digits")
    >>> loader = BatchLoader(ds.train_x, ds.train_y, 64, shuffle=True, mean=ds.mean, std=ds.std)
    >>> xb, yb = next(iter(loader))
    >>> xb.shape, xb.dtype, yb.dtype
    (torch.Size([64, 1, 8, 8]), torch.float32, torch.int64)
"""
from .augment import augment_batch
from .dataset import Dataset, DatasetError
from .folder import cifar10_zip_path, load_folder
from .loader import BatchLoader
from .registry import check_dataset_name, fetch_dataset, list_datasets, load_dataset
from .select import STRATEGIES, per_example_loss, select_subset

__all__ = [
    "BatchLoader",
    "Dataset",
    "DatasetError",
    "STRATEGIES",
    "augment_batch",
    "check_dataset_name",
    "cifar10_zip_path",
    "fetch_dataset",
    "list_datasets",
    "load_dataset",
    "load_folder",
    "per_example_loss",
    "select_subset",
]
