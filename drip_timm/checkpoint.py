"""Checkpoints: atomic writes, safe reads, and models rebuilt from what a checkpoint records.

Training checkpoints (``train_imagenet.py``, ``train_clip.py``) are dicts saved with
``torch.save`` holding ``state_dict`` plus ``arch`` (timm model name) and ``model_kwargs``; CLIP
ones hold ``clip_model`` (the OpenCLIP config name) instead of ``arch``. They are read only with
``weights_only=True``; ``.safetensors`` files hold a bare state dict and their metadata.
"""
import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

import torch
from timm.utils import CheckpointSaver, get_state_dict

_logger = logging.getLogger(__name__)

CLIP_TOWER_PREFIXES = ('visual.trunk.', 'module.visual.trunk.')


def atomic_save(obj: Any, path: os.PathLike):
    """``torch.save`` to a temporary file in the same folder, then rename: never half-written."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f'.{path.name}.', suffix='.tmp', dir=path.parent)
    try:
        with os.fdopen(fd, 'wb') as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def save_safetensors(state_dict: Dict[str, torch.Tensor], path: os.PathLike, metadata: Optional[Dict[str, Any]] = None):
    """Atomically write a state dict (and JSON-able metadata) as safetensors."""
    from safetensors.torch import save_file
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f'.{path.name}.tmp')
    meta = {k: json.dumps(v) for k, v in (metadata or {}).items()}
    save_file({k: v.contiguous() for k, v in state_dict.items()}, str(tmp), metadata=meta)
    os.replace(tmp, path)


def read_checkpoint(path: os.PathLike) -> Dict[str, Any]:
    """A checkpoint as a dict with at least ``state_dict``; pickles with ``weights_only=True``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f'checkpoint not found: {path}')
    if path.suffix == '.safetensors':
        from safetensors import safe_open
        from safetensors.torch import load_file
        with safe_open(str(path), 'pt') as f:
            meta = {k: json.loads(v) for k, v in (f.metadata() or {}).items()}
        return {**meta, 'state_dict': load_file(str(path))}
    try:
        ckpt = torch.load(path, map_location='cpu', weights_only=True)
    except Exception as e:
        raise RuntimeError(f'cannot read checkpoint {path}: {e}') from e
    if not isinstance(ckpt, dict):
        raise RuntimeError(f'checkpoint {path} holds a {type(ckpt).__name__}, not a state dict')
    if 'state_dict' not in ckpt:
        ckpt = {'state_dict': ckpt.get('model', ckpt)}
    return ckpt


def strip_prefix(state_dict: Dict[str, torch.Tensor], prefix: str) -> Dict[str, torch.Tensor]:
    return {k[len(prefix):] if k.startswith(prefix) else k: v for k, v in state_dict.items()}


def clip_image_tower(state_dict: Dict[str, torch.Tensor]) -> Optional[Dict[str, torch.Tensor]]:
    """The timm trunk of an OpenCLIP image tower (``visual.trunk.*``), or None if there is none."""
    for prefix in CLIP_TOWER_PREFIXES:
        if any(k.startswith(prefix) for k in state_dict):
            return {k[len(prefix):]: v for k, v in state_dict.items() if k.startswith(prefix)}
    return None


def model_spec(ckpt: Dict[str, Any]) -> Tuple[str, Dict[str, Any]]:
    """(timm model name, keyword arguments) recorded in a training checkpoint."""
    if ckpt.get('arch'):
        return ckpt['arch'], dict(ckpt.get('model_kwargs') or {})
    if ckpt.get('clip_model'):
        from .clip import clip_tower_spec
        return clip_tower_spec(ckpt['clip_model'])
    raise KeyError('the checkpoint records no model (no "arch" or "clip_model"); pass the model name')


def load_weights(model: torch.nn.Module, path: os.PathLike, strict: bool = True, use_ema: bool = False,
                 ckpt: Optional[Dict[str, Any]] = None):
    """Load a training, CLIP (image tower) or plain checkpoint into ``model`` (``ckpt``: already read).

    Keys that do not fit are reported by name: with ``strict`` as an error, otherwise returned.
    """
    ckpt = read_checkpoint(path) if ckpt is None else ckpt
    state_dict = ckpt.get('state_dict_ema') if use_ema and ckpt.get('state_dict_ema') else ckpt['state_dict']
    state_dict = strip_prefix(strip_prefix(state_dict, 'module.'), '_orig_mod.')
    tower = clip_image_tower(state_dict)
    if tower is not None:
        state_dict = tower
        head = getattr(model, 'head', None)
        # The CLIP projection is no classifier: the head starts fresh.
        for k in ('head.weight', 'head.bias'):
            if k in state_dict and (head is None or state_dict[k].shape != model.state_dict()[k].shape):
                state_dict.pop(k)
    own = model.state_dict()
    mismatched = [f'{k}: checkpoint {tuple(v.shape)} vs model {tuple(own[k].shape)}'
                  for k, v in state_dict.items() if k in own and own[k].shape != v.shape]
    if not strict and mismatched and all(m.startswith('head.') for m in mismatched):
        # Fine-tuning on other classes: the classifier starts fresh, said by name.
        _logger.warning(f'classifier left fresh (shape mismatch): {"; ".join(mismatched)}')
        state_dict = {k: v for k, v in state_dict.items() if not k.startswith('head.')}
        mismatched = []
    if mismatched:
        raise RuntimeError(f'checkpoint {path} does not fit this model; shape mismatches: ' + '; '.join(mismatched))
    result = model.load_state_dict(state_dict, strict=False)
    missing, unexpected = list(result.missing_keys), list(result.unexpected_keys)
    if tower is not None:
        missing = [k for k in missing if not k.startswith('head.')]
    if strict and (missing or unexpected):
        raise RuntimeError(
            f'checkpoint {path} does not fit this model: missing {missing or "none"}; unexpected {unexpected or "none"}')
    return missing, unexpected


def create_model_from_checkpoint(path: os.PathLike, model_name: Optional[str] = None, use_ema: bool = False,
                                 **kwargs) -> torch.nn.Module:
    """Rebuild the model a checkpoint records (or ``model_name``) and load its weights."""
    import timm
    ckpt = read_checkpoint(path)
    if model_name is None:
        model_name, recorded = model_spec(ckpt)
        kwargs = {**recorded, **kwargs}
    model = timm.create_model(model_name, **kwargs)
    load_weights(model, path, ckpt=ckpt, use_ema=use_ema)
    return model


def rng_state() -> Dict[str, Any]:
    """Every RNG a training step draws from, in types ``weights_only`` loading accepts."""
    import random
    import numpy as np
    np_state = np.random.get_state()
    state = {
        'torch': torch.get_rng_state(),
        'numpy': [np_state[0], torch.from_numpy(np_state[1].astype('int64')), *np_state[2:]],
        'python': random.getstate(),
    }
    if torch.cuda.is_available():
        state['cuda'] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Dict[str, Any]):
    import random
    import numpy as np
    torch.set_rng_state(state['torch'])
    name, keys, *rest = state['numpy']
    np.random.set_state((name, keys.numpy().astype('uint32'), *rest))
    version, internal, gauss = state['python']
    random.setstate((version, tuple(internal), gauss))
    if 'cuda' in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state['cuda'])


class TrainingCheckpointSaver(CheckpointSaver):
    """timm's ``CheckpointSaver`` (last, best, bounded history) writing self-describing checkpoints
    atomically: the model's timm name and keyword arguments, and whatever ``extra_state()``
    returns (scheduler, EMA, RNG, ...), so a resume is exact and validation needs nothing else."""

    def __init__(self, model, optimizer, *, model_name: str, model_kwargs: Dict[str, Any],
                 extra_state=None, **kwargs):
        super().__init__(model, optimizer, **kwargs)
        self.model_name = model_name
        self.model_kwargs = model_kwargs
        self.extra_state = extra_state

    def _save(self, save_path, epoch, metric=None):
        state = {
            'epoch': epoch,
            'arch': self.model_name,
            'model_kwargs': self.model_kwargs,
            'state_dict': get_state_dict(self.model, self.unwrap_fn),
            'optimizer': self.optimizer.state_dict(),
            'version': 2,
            'saver': self.state_dict(epoch, metric),
        }
        if self.model_ema is not None:
            state['state_dict_ema'] = get_state_dict(self.model_ema, self.unwrap_fn)
        if self.amp_scaler is not None:
            state[self.amp_scaler.state_dict_key] = self.amp_scaler.state_dict()
        if metric is not None:
            state['metric'] = metric
        if self.extra_state is not None:
            state.update(self.extra_state())
        atomic_save(state, save_path)
