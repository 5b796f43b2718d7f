"""Data: built-in data sets, tables from CSV/NPY/NPZ files, splits and preprocessing."""

from __future__ import annotations

from . import datasets
from .tabular import (
    Table,
    TabularPreprocessor,
    csv_to_npy,
    read_array_file,
    read_csv,
    read_csv_chunks,
    read_table,
    train_test_split,
)

__all__ = [
    "Table",
    "TabularPreprocessor",
    "csv_to_npy",
    "datasets",
    "read_array_file",
    "read_csv",
    "read_csv_chunks",
    "read_table",
    "train_test_split",
]
