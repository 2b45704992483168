#!/usr/bin/env python3
"""Train or fine-tune a DRIP (or any timm) classifier, with timm's train.py flags.

    python train_imagenet.py                                   # embedded digits, drip_nano4_32_2x
    python train_imagenet.py --data-dir /data/imagenet --model drip_b16_2x --initial-checkpoint clip.pt \
        --lr 5e-4 --layer-decay 0.65 --mixup 0.8 --cutmix 1.0 --smoothing 0.1 --amp -b 128 --epochs 100
    torchrun --nproc_per_node=8 train_imagenet.py --data-dir /data/imagenet ...

Defaults are the embedded-digits recipe (30 epochs, AdamW 2e-3, 9 warmup epochs, cosine); pass ImageNet flags for ImageNet.
"""
import argparse
import sys

import drip_timm  # noqa: F401  registers the DRIP models
from drip_timm.classification import DEFAULT_MODEL, train
from drip_timm.cli import run_cli, setup_logging
from drip_timm.engine import add_uniform_warmup_args


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    g = p.add_argument_group('data')
    g.add_argument('--data-dir', default=None, help='ImageFolder root (default: the embedded digits)')
    g.add_argument('--dataset', default='', help="timm dataset name; '' = ImageFolder (the only kind supported)")
    g.add_argument('--train-split', default='train')
    g.add_argument('--val-split', default='val')
    g.add_argument('--workers', '-j', type=int, default=2)
    g.add_argument('--img-size', type=int, default=None)
    g.add_argument('--input-size', type=int, nargs=3, default=None, metavar='N')
    g.add_argument('--crop-pct', type=float, default=None)
    g.add_argument('--mean', type=float, nargs='+', default=None)
    g.add_argument('--std', type=float, nargs='+', default=None)
    g.add_argument('--interpolation', default='')
    g = p.add_argument_group('model')
    g.add_argument('--model', default=None, help=f'timm model name (default {DEFAULT_MODEL}, or the one an '
                                                 '--initial-checkpoint records)')
    g.add_argument('--pretrained', action='store_true')
    g.add_argument('--initial-checkpoint', default='', help='timm/DRIP or train_clip.py checkpoint to start from')
    g.add_argument('--resume', default='', help='continue a run from its checkpoint')
    g.add_argument('--num-classes', type=int, default=None)
    g.add_argument('--model-kwargs', nargs='*', default=None, metavar='K=V',
                   help='extra model arguments, e.g. compression=4 pre_depth=4 boundary_mode=uniform')
    g.add_argument('--drop-path', type=float, default=None)
    g.add_argument('--freeze-backbone', action='store_true', help='train only the classifier')
    add_uniform_warmup_args(g)
    g.add_argument('--grad-checkpointing', action='store_true')
    g.add_argument('--channels-last', action='store_true')
    g = p.add_argument_group('optimization')
    g.add_argument('-b', '--batch-size', type=int, default=64)
    g.add_argument('-vb', '--validation-batch-size', type=int, default=None)
    g.add_argument('--opt', default='adamw')
    g.add_argument('--lr', type=float, default=2e-3)
    g.add_argument('--momentum', type=float, default=0.9)
    g.add_argument('--weight-decay', type=float, default=0.05)
    g.add_argument('--layer-decay', type=float, default=None)
    g.add_argument('--clip-grad', type=float, default=None)
    g.add_argument('--clip-mode', default='norm')
    g.add_argument('--grad-accum-steps', type=int, default=1)
    g.add_argument('--sched', default='cosine')
    g.add_argument('--epochs', type=int, default=40)
    g.add_argument('--warmup-epochs', type=int, default=3)
    g.add_argument('--warmup-lr', type=float, default=1e-5)
    g.add_argument('--min-lr', type=float, default=1e-5)
    g = p.add_argument_group('augmentation and regularization')
    g.add_argument('--mixup', type=float, default=0.0)
    g.add_argument('--cutmix', type=float, default=0.0)
    g.add_argument('--smoothing', type=float, default=0.0)
    g.add_argument('--hflip', type=float, default=None)
    g.add_argument('--scale', type=float, nargs=2, default=None)
    g.add_argument('--ratio', type=float, nargs=2, default=None)
    g.add_argument('--color-jitter', type=float, default=None)
    g.add_argument('--model-ema', action='store_true')
    g.add_argument('--model-ema-decay', type=float, default=0.9998)
    g = p.add_argument_group('runtime')
    g.add_argument('--amp', action='store_true')
    g.add_argument('--amp-dtype', default='bfloat16', choices=['bfloat16', 'float16'])
    g.add_argument('--device', default=None, help='cuda or cpu (default: cuda if available)')
    g.add_argument('--seed', type=int, default=42)
    g.add_argument('--output', default='./output/train')
    g.add_argument('--experiment', default='')
    g.add_argument('--checkpoint-hist', type=int, default=3)
    g.add_argument('--log-interval', type=int, default=50)
    return p


def main(argv=None):
    setup_logging()
    args = build_parser().parse_args(argv)
    if args.dataset:
        raise SystemExit(f'--dataset {args.dataset!r}: only ImageFolder data (--data-dir) is supported')
    return run_cli(lambda: train(args), 'train')


if __name__ == '__main__':
    sys.exit(main())
