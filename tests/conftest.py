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


@pytest.fixture(scope='session')
def tiny_folder(tmp_path_factory):
    """A small ImageFolder of real digits (3 classes; 12 train and 4 val images each) with one
    corrupt file in train."""
    from PIL import Image
    from drip_timm.data import digits_split
    root = tmp_path_factory.mktemp('tiny_digits')
    train, val = digits_split()
    for split, samples, per_class in (('train', train, 12), ('val', val, 4)):
        counts = {}
        for img, label in samples:
            if label > 2 or counts.get(label, 0) >= per_class:
                continue
            counts[label] = counts.get(label, 0) + 1
            folder = root / split / str(label)
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(img, mode='L').save(folder / f'{counts[label]:03d}.png')
    (root / 'train' / '1' / 'corrupt.png').write_bytes(b'\x89PNG\r\n\x1a\n this is not an image')
    return root


@pytest.fixture
def free_port():
    """A TCP port nothing listens on now, for torchrun's rendezvous."""
    import socket
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]
