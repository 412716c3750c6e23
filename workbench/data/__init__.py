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
from .text import TEXT_CORPORA, TextCorpus, load_text_corpus
from .tokenizers import Tokenizer, bits_per_byte, list_tokenizers, perplexity, tokenizer_from_dict, train_tokenizer
from .tokens import TokenData, is_text_dataset, load_token_data
from .windows import FixedWindows, RandomWindows

__all__ = [
    "EVAL_BATCH",
    "STRATEGIES",
    "TEXT_CORPORA",
    "AugmentConfig",
    "BatchLoader",
    "DataConfig",
    "Dataset",
    "DatasetError",
    "FixedWindows",
    "RandomWindows",
    "TextCorpus",
    "TokenData",
    "Tokenizer",
    "augment_batch",
    "bits_per_byte",
    "check_dataset_name",
    "cifar10_zip_path",
    "eval_loader",
    "fetch_dataset",
    "is_text_dataset",
    "list_datasets",
    "list_tokenizers",
    "load_dataset",
    "load_folder",
    "load_text_corpus",
    "load_token_data",
    "per_example_loss",
    "perplexity",
    "select_subset",
    "subset_size",
    "tokenizer_from_dict",
    "train_loader",
    "train_tokenizer",
]
