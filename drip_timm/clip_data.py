"""Image-text data for CLIP training: webdataset shards, CSV files, and the embedded captioned digits.

Corrupt samples are skipped and counted in shared memory (so counts from loader workers add up).
The webdataset pipeline is OpenCLIP's (``open_clip_train.data``) stages with a counting handler.
"""
import logging
import math
import multiprocessing as mp
import os
import tarfile
from dataclasses import dataclass
from typing import Callable, Optional

import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from .data import DIGIT_NAMES, digits_split

_logger = logging.getLogger(__name__)


class SkipCounter:
    """A process-shared count of skipped samples."""

    def __init__(self):
        self._value = mp.Value('i', 0)

    @property
    def value(self) -> int:
        return self._value.value

    def add(self, what: str, error: BaseException):
        with self._value.get_lock():
            self._value.value += 1
        _logger.warning(f'skipped corrupt sample {what}: {error!r}')


@dataclass
class TrainData:
    loader: object
    num_batches: int
    num_samples: int
    skipped: SkipCounter
    set_epoch: Callable[[int], None]


class CaptionedDigits(Dataset):
    """The embedded digits with captions drawn at random from ``templates``."""

    def __init__(self, transform, tokenizer, templates, split: str = 'train'):
        train, val = digits_split()
        self.samples = train if split == 'train' else val
        self.transform, self.tokenizer, self.templates = transform, tokenizer, templates

    def __len__(self):
        return len(self.samples)

    def __getitem__(self, index):
        img, label = self.samples[index]
        template = self.templates[int(torch.randint(len(self.templates), ()))]
        text = self.tokenizer([template.format(DIGIT_NAMES[label])])[0]
        return self.transform(Image.fromarray(img).convert('RGB')), text


class CountingCsvDataset(Dataset):
    """OpenCLIP's CSV layout (image path and caption columns, tab-separated by default); a corrupt
    or missing image is skipped (the next row is taken) and counted."""

    def __init__(self, path, transform, tokenizer, img_key='filepath', caption_key='title', sep='\t',
                 skipped: Optional[SkipCounter] = None):
        import csv
        if not os.path.isfile(path):
            raise FileNotFoundError(f'CSV file not found: {path}')
        with open(path, newline='') as f:
            rows = list(csv.DictReader(f, delimiter=sep))
        if not rows:
            raise RuntimeError(f'no rows in CSV file {path}')
        for key in (img_key, caption_key):
            if key not in rows[0]:
                raise KeyError(f'CSV file {path} has no column {key!r} (columns: {list(rows[0])})')
        base = os.path.dirname(os.path.abspath(path))
        self.images = [r[img_key] if os.path.isabs(r[img_key]) else os.path.join(base, r[img_key]) for r in rows]
        self.captions = [r[caption_key] for r in rows]
        self.transform, self.tokenizer = transform, tokenizer
        self.skipped = skipped or SkipCounter()

    def __len__(self):
        return len(self.images)

    def __getitem__(self, index):
        for _ in range(len(self)):
            try:
                img = Image.open(self.images[index]).convert('RGB')
                break
            except (OSError, ValueError) as e:
                self.skipped.add(self.images[index], e)
                index = (index + 1) % len(self)
        else:
            raise RuntimeError('every image in the CSV file is unreadable')
        return self.transform(img), self.tokenizer([self.captions[index]])[0]


def check_shards(urls):
    """Expand brace patterns; every shard must exist and hold at least one member."""
    from open_clip_train.data import expand_urls
    shards, _ = expand_urls(urls)
    if not shards:
        raise FileNotFoundError(f'no shards match {urls!r}')
    for shard in shards:
        if '://' in shard or shard.startswith('pipe:'):
            continue
        if not os.path.isfile(shard):
            raise FileNotFoundError(f'webdataset shard not found: {shard}')
        try:
            with tarfile.open(shard) as tar:
                if tar.next() is None:
                    raise RuntimeError(f'empty webdataset shard: {shard}')
        except tarfile.TarError as e:
            raise RuntimeError(f'not a tar shard: {shard} ({e})') from e
    return shards


def webdataset_loader(urls, transform, tokenizer, batch_size, num_samples, workers, world_size, seed,
                      resampled=False) -> TrainData:
    """Training batches from tar shards, as OpenCLIP streams them (equal batch counts on every rank)."""
    import webdataset as wds
    from open_clip_train.data import (
        ResampledShards2, SharedEpoch, detshuffle2, filter_no_caption_or_no_image, tarfile_to_samples_nothrow)
    shards = check_shards(urls)
    if not num_samples:
        raise ValueError('--train-num-samples is required for webdataset training data')
    skipped = SkipCounter()

    def count_and_continue(exn):
        skipped.add('in a shard', exn)
        return True

    epoch = SharedEpoch(0)
    if resampled:
        stages = [ResampledShards2(shards, deterministic=True, epoch=epoch)]
    else:
        stages = [wds.SimpleShardList(shards), detshuffle2(bufsize=len(shards), seed=seed, epoch=epoch),
                  wds.split_by_node, wds.split_by_worker]
    stages += [
        tarfile_to_samples_nothrow,
        wds.shuffle(bufsize=1000, initial=100),
        wds.select(filter_no_caption_or_no_image),
        wds.decode('pilrgb', handler=count_and_continue),
        wds.rename(image='jpg;png;jpeg;webp', text='txt'),
        wds.map_dict(image=transform, text=lambda t: tokenizer([t])[0], handler=count_and_continue),
        wds.to_tuple('image', 'text'),
        wds.batched(batch_size, partial=False),
    ]
    global_batch = batch_size * world_size
    num_workers = max(1, workers)
    worker_batches = max(1, math.ceil(math.ceil(num_samples / global_batch) / num_workers))
    if not resampled and len(shards) < num_workers * world_size:
        raise ValueError(f'{len(shards)} shards for {num_workers * world_size} loader workers in all: '
                         'give more shards, fewer --workers, or --dataset-resampled')
    # Repeat the stream so every worker yields exactly its share, whatever its shards hold.
    dataset = wds.DataPipeline(*stages).repeat(nepochs=10 ** 6).with_epoch(worker_batches)
    loader = wds.WebLoader(dataset, batch_size=None, shuffle=False, num_workers=workers,
                           persistent_workers=False)
    num_batches = worker_batches * num_workers
    return TrainData(loader, num_batches, num_batches * global_batch, skipped, epoch.set_value)


def map_loader(dataset, batch_size, workers, distributed, skipped=None) -> TrainData:
    sampler = DistributedSampler(dataset, shuffle=True, drop_last=True) if distributed else None
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=sampler is None, sampler=sampler,
                        num_workers=workers, drop_last=True, persistent_workers=False)
    if len(loader) == 0:
        raise ValueError(f'{len(dataset)} samples make no full batch of {batch_size}')

    def set_epoch(epoch):
        if sampler is not None:
            sampler.set_epoch(epoch)

    return TrainData(loader, len(loader), len(loader) * batch_size, skipped or SkipCounter(), set_epoch)
