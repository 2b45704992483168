"""The embedded default dataset: scikit-learn's handwritten digits (real 8x8 scans) as 32 px images.

``ensure_digits_folder(root)`` writes them once as an ImageFolder (``train/`` and ``val/``, one
folder per digit), so the training scripts read the default exactly as they read ImageNet.
The split is deterministic: every ``VAL_EVERY``-th image of each class is held out. For choosing
settings without looking at ``val``, ``train_dev/`` and ``dev/`` split ``train`` once more (every
``DEV_EVERY``-th training image of each class goes to ``dev``):
``train_imagenet.py --train-split train_dev --val-split dev``.
"""
import logging
import multiprocessing as mp
import os
from pathlib import Path
from typing import List, Optional, Tuple

import numpy as np
from PIL import Image
from timm.data import ImageDataset

_logger = logging.getLogger(__name__)

DIGIT_NAMES = ('zero', 'one', 'two', 'three', 'four', 'five', 'six', 'seven', 'eight', 'nine')
IMG_SIZE = 32
VAL_EVERY = 6  # ~297 of 1797 images held out
DEV_EVERY = 5  # ~297 of the 1501 training images for tuning


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


def dev_split(train: List[Tuple[np.ndarray, int]]) -> Tuple[List[int], List[int]]:
    """Indices into ``train`` of (train_dev, dev): every ``DEV_EVERY``-th image of each class is dev."""
    train_dev, dev = [], []
    seen = [0] * 10
    for i, (_, label) in enumerate(train):
        (dev if seen[label] % DEV_EVERY == DEV_EVERY - 1 else train_dev).append(i)
        seen[label] += 1
    return train_dev, dev


def ensure_digits_folder(root: Optional[os.PathLike] = None) -> Path:
    """Write the digits as ``root/{train,val,train_dev,dev}/<digit>/<index>.png`` unless already complete."""
    root = Path(root) if root is not None else default_digits_root()
    done = root / '.complete-dev'  # written last; older caches without the dev splits are completed
    if done.exists():
        return root
    train, val = digits_split()
    train_dev, dev = dev_split(train)
    splits = {
        'train': list(enumerate(train)),
        'val': list(enumerate(val)),
        # named by their index in train/, so they sort (and shuffle) exactly as there
        'train_dev': [(i, train[i]) for i in train_dev],
        'dev': [(i, train[i]) for i in dev],
    }
    for split, samples in splits.items():
        for i, (img, label) in samples:
            folder = root / split / str(label)
            folder.mkdir(parents=True, exist_ok=True)
            path = folder / f'{i:05d}.png'
            if path.exists():
                continue
            tmp = path.with_suffix('.tmp.png')
            Image.fromarray(img, mode='L').save(tmp)
            os.replace(tmp, path)
    done.touch()
    _logger.info(f'wrote the embedded digits dataset ({len(train)} train, {len(val)} val; '
                 f'{len(train_dev)} train_dev, {len(dev)} dev) to {root}')
    return root


class CountingImageDataset(ImageDataset):
    """timm's ``ImageDataset`` that skips an unreadable image (taking the next one) and counts it.

    The count lives in shared memory, so skips in loader worker processes are counted too.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._skipped = mp.Value('i', 0)

    @property
    def skipped(self) -> int:
        return self._skipped.value

    def __getitem__(self, index):
        for _ in range(min(self._max_retries, len(self))):
            try:
                img, target = self.reader[index][:2]
                img = Image.open(img)
                img = img.convert(self.input_img_mode)  # decodes, so truncated files fail here
                break
            except (OSError, ValueError) as e:
                with self._skipped.get_lock():
                    self._skipped.value += 1
                _logger.warning(f'skipped unreadable image {self.filename(index)}: {e}')
                index = (index + 1) % len(self)
        else:
            raise RuntimeError(f'{self._max_retries} consecutive unreadable images near index {index}')
        if self.transform is not None:
            img = self.transform(img)
        target = -1 if target is None else target
        if self.target_transform is not None:
            target = self.target_transform(target)
        return img, target


def image_folder(root: os.PathLike, split: str, input_img_mode: str = 'RGB') -> CountingImageDataset:
    """The ``split`` folder of an ImageFolder tree, with a clear error when it is missing or empty."""
    path = Path(root) / split
    if not Path(root).is_dir():
        raise FileNotFoundError(f'data directory not found: {root}')
    if not path.is_dir():
        raise FileNotFoundError(f'split folder not found: {path} (expected <data-dir>/{split}/<class>/<image>)')
    dataset = CountingImageDataset(str(path), input_img_mode=input_img_mode)
    if len(dataset) == 0:
        raise RuntimeError(f'no images found under {path}')
    return dataset
