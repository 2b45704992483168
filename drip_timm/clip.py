"""DRIP image towers in OpenCLIP: model configs, tower lookup, zero-shot class names and templates.

``import drip_timm`` adds the JSON configs under ``model_configs/`` to OpenCLIP, so
``open_clip.create_model_and_transforms('DRIP-2X-16')`` builds a CLIP model whose image tower is
the timm model ``drip_b16_2x`` (OpenCLIP's ``TimmModel``: trunk + linear projection).
"""
from pathlib import Path
from typing import Any, Dict, List, Sequence, Tuple

import torch

from .data import DIGIT_NAMES

MODEL_CONFIG_DIR = Path(__file__).parent / 'model_configs'

# Captions for the embedded digits: training templates, and held-out ones for zero-shot evaluation.
DIGIT_TRAIN_TEMPLATES = (
    'a photo of the number {}.',
    'a handwritten {}.',
    'the digit {}.',
    'a scan of a handwritten {}.',
    'a small picture of a {}.',
    'the number {} written by hand.',
    'a {} in pen.',
    'a blurry {}.',
)
DIGIT_EVAL_TEMPLATES = (
    'an image of the digit {}.',
    'a drawing of a {}.',
    'a low resolution {}.',
)


def register_clip_configs():
    import open_clip
    open_clip.add_model_config(MODEL_CONFIG_DIR)


def clip_tower_spec(clip_model: str) -> Tuple[str, Dict[str, Any]]:
    """(timm model name, keyword arguments) of a CLIP config's image tower."""
    import open_clip
    cfg = open_clip.get_model_config(clip_model)
    if cfg is None:
        raise KeyError(f'unknown CLIP model {clip_model!r}')
    name = cfg['vision_cfg'].get('timm_model_name')
    if not name:
        raise KeyError(f'CLIP model {clip_model!r} has no timm image tower')
    return name, {}


def zero_shot_names(class_folders: Sequence[str]) -> Tuple[List[str], Sequence[str]]:
    """Class names and templates for an ImageFolder's classes: ImageNet's (1000 classes, OpenCLIP's
    names and templates), the digits (held-out templates), else the folder names."""
    from open_clip import IMAGENET_CLASSNAMES, OPENAI_IMAGENET_TEMPLATES
    if len(class_folders) == 1000:
        return list(IMAGENET_CLASSNAMES), OPENAI_IMAGENET_TEMPLATES
    if all(c.isdigit() and int(c) < 10 for c in class_folders):
        return [DIGIT_NAMES[int(c)] for c in class_folders], DIGIT_EVAL_TEMPLATES
    return [c.replace('_', ' ') for c in class_folders], OPENAI_IMAGENET_TEMPLATES


@torch.no_grad()
def zero_shot_eval(model, tokenizer, loader, classnames, templates, device, amp_dtype=None) -> Dict[str, float]:
    """Top-1 / top-5 zero-shot accuracy (percent) with OpenCLIP's classifier builder, and for a
    DRIP tower the mean tokens kept."""
    from open_clip import build_zero_shot_classifier
    from timm.utils import accuracy
    from .engine import autocast_for, drip_module
    drip = drip_module(model.visual)
    model.eval()
    with autocast_for(device, amp_dtype):
        classifier = build_zero_shot_classifier(model, tokenizer, classnames, templates, device=device)
    correct1 = correct5 = count = tokens = 0.0
    for images, target in loader:
        images, target = images.to(device), target.to(device)
        with autocast_for(device, amp_dtype):
            features = model.encode_image(images, normalize=True)
        logits = features.float() @ classifier.float()
        top1, top5 = accuracy(logits, target, topk=(1, min(5, len(classnames))))
        n = images.shape[0]
        correct1 += top1.item() * n
        correct5 += top5.item() * n
        count += n
        if drip is not None:
            tokens += drip.boundary_rate.item() * drip.num_patches * n
    count = max(count, 1)
    metrics = {'zeroshot-top1': correct1 / count, 'zeroshot-top5': correct5 / count}
    if drip is not None:
        metrics['zeroshot-tokens'] = tokens / count
    return metrics
