"""Seeded datasets behind one registry: bundled, generated and user files."""

from depthlab.data import bundled, files, generated, graphs  # noqa: F401  (registers the datasets)
from depthlab.data.base import Dataset, RawData, load_data, register_dataset
from depthlab.data.files import read_npz

__all__ = ["Dataset", "RawData", "load_data", "read_npz", "register_dataset"]
