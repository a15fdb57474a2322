"""Shared pytest fixtures."""

from pathlib import Path

import pytest

from multimodal_gpt.data.corpora import DATA_DIR_ENV, default_data_dir


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The real data sets (`../shared/data`, or `$MMGPT_DATA_DIR`); a test that uses them skips only if absent."""
    path = default_data_dir()
    if not path.is_dir():
        pytest.skip(f"real data folder {path} not found: set {DATA_DIR_ENV} to the shared data folder")
    return path
