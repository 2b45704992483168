import os

import pytest
import torch

import drip_timm  # noqa: F401  registers the models

torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture(scope='session')
def digits_root(tmp_path_factory):
    """The embedded digits as an ImageFolder, written once per test session."""
    from drip_timm.data import ensure_digits_folder
    return ensure_digits_folder(tmp_path_factory.mktemp('digits'))
