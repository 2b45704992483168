"""The embedded default dataset: scikit-learn's handwritten digits (real 8x8 scans) as 32 px images.

``ensure_digits_folder(root)`` writes them once as an ImageFolder (``train/`` and ``val/``, one
folder per digit), so the training scripts read the default exactly as they read ImageNet.
The split is deterministic: every ``VAL_EVERY``-th image of each class is held out.
"""
import logging
import os
from pathlib import Path
from typing import List, Optional, Tuple

import numpy as np
from PIL import Image

_logger = logging.getLogger(__name__)

DIGIT_NAMES = ('zero', 'one', 'two', 'three', 'four', 'five', 'six', 'seven', 'eight', 'nine')
IMG_SIZE = 32
VAL_EVERY = 6  # ~297 of 1797 images held out


def default_digits_root() -> Path:
    return Path(os.environ.get('DRIP_DATA_CACHE', Path.home() / '.cache' / 'drip_timm')) / 'digits'


def digits_split() -> Tuple[List[Tuple[np.ndarray, int]], List[Tuple[np.ndarray, int]]]:
    """(train, val) lists of (uint8 image [32, 32], label)."""
    from sklearn.datasets import load_digits
    digits = load_digits()
    train, val = [], []
    seen = [0] * 10
    for img, label in zip(digits.images, digits.target):
        big = Image.fromarray((img * (255.0 / 16.0)).astype(np.uint8)).resize((IMG_SIZE, IMG_SIZE), Image.BILINEAR)
        sample = (np.asarray(big), int(label))
        (val if seen[label] % VAL_EVERY == VAL_EVERY - 1 else train).append(sample)
        seen[label] += 1
    return train, val


def ensure_digits_folder(root: Optional[os.PathLike] = None) -> Path:
    """Write the digits as ``root/{train,val}/<digit>/<index>.png`` unless already complete."""
    root = Path(root) if root is not None else default_digits_root()
    done = root / '.complete'
    if done.exists():
        return root
    train, val = digits_split()
    for split, samples in (('train', train), ('val', val)):
        for i, (img, label) in enumerate(samples):
            folder = root / split / str(label)
            folder.mkdir(parents=True, exist_ok=True)
            path = folder / f'{i:05d}.png'
            tmp = path.with_suffix('.tmp.png')
            Image.fromarray(img, mode='L').save(tmp)
            os.replace(tmp, path)
    done.touch()
    _logger.info(f'wrote the embedded digits dataset ({len(train)} train, {len(val)} val) to {root}')
    return root
