"""Data: built-in data sets, tables from CSV/NPY/NPZ files, splits and preprocessing."""

from __future__ import annotations

from . import datasets
from .tabular import (
    Table,
    TabularPreprocessor,
    read_array_file,
    read_csv,
    read_table,
    train_test_split,
)

__all__ = [
    "Table",
    "TabularPreprocessor",
    "datasets",
    "read_array_file",
    "read_csv",
    "read_table",
    "train_test_split",
]
