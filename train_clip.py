#!/usr/bin/env python3
"""Pretrain a CLIP model with a DRIP image tower, with OpenCLIP's training flags.

    python train_clip.py                                        # captioned digits, DRIP-2X-nano4-32
    python train_clip.py --model DRIP-2X-16 --train-data '/data/laion/{00000..02000}.tar' \
        --train-num-samples 26000000 --dataset-resampled --batch-size 256 --lr 5e-4 --wd 0.2 \
        --warmup 2000 --epochs 10 --precision amp_bf16 --workers 8 --imagenet-val /data/imagenet/val
    torchrun --nproc_per_node=8 train_clip.py ...

Without --train-data it trains on the embedded digits with captions from templates and evaluates
zero-shot on held-out digits with templates it never saw.
"""
import argparse
import sys

import drip_timm  # noqa: F401  registers the DRIP timm models and CLIP configs
from drip_timm.cli import run_cli, setup_logging
from drip_timm.clip_train import PRECISIONS, train
from drip_timm.engine import add_uniform_warmup_args


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--model', default='DRIP-2X-nano4-32', help='OpenCLIP model config name')
    p.add_argument('--pretrained', default=None, help='OpenCLIP pretrained tag or checkpoint file')
    add_uniform_warmup_args(p)
    p.add_argument('--drip-kwargs', nargs='*', default=None, metavar='K=V',
                   help='boundary settings of the DRIP tower, e.g. boundary_mode=uniform boundary_grad=none')
    p.add_argument('--train-data', default=None,
                   help="webdataset shards ('dir/{00000..00099}.tar') or a CSV file; default: embedded digits")
    p.add_argument('--dataset-type', default='auto', choices=['auto', 'webdataset', 'csv'])
    p.add_argument('--train-num-samples', type=int, default=None)
    p.add_argument('--dataset-resampled', action='store_true')
    p.add_argument('--csv-img-key', default='filepath')
    p.add_argument('--csv-caption-key', default='title')
    p.add_argument('--csv-separator', default='\t')
    p.add_argument('--imagenet-val', default=None, help='ImageFolder split for zero-shot evaluation')
    p.add_argument('--zeroshot-frequency', type=int, default=2)
    p.add_argument('--batch-size', type=int, default=64)
    p.add_argument('--lr', type=float, default=2e-3)
    p.add_argument('--wd', type=float, default=0.1)
    p.add_argument('--beta1', type=float, default=0.9)
    p.add_argument('--beta2', type=float, default=0.98)
    p.add_argument('--eps', type=float, default=1e-6)
    p.add_argument('--warmup', type=int, default=100, help='warmup steps')
    p.add_argument('--lr-scheduler', default='cosine', choices=['cosine', 'const'])
    p.add_argument('--epochs', type=int, default=30)
    p.add_argument('--precision', default='fp32', choices=sorted(PRECISIONS))
    p.add_argument('--workers', type=int, default=2)
    p.add_argument('--resume', default=None, help="checkpoint path, or 'latest' for <logs>/<name>'s last")
    p.add_argument('--save-frequency', type=int, default=10)
    # --logs-dir: the same, for torchrun, whose parser mistakes --logs for its own --logs-specs.
    p.add_argument('--logs', '--logs-dir', dest='logs', default='./logs')
    p.add_argument('--name', default=None)
    p.add_argument('--local-loss', action='store_true')
    p.add_argument('--gather-with-grad', action='store_true')
    p.add_argument('--grad-checkpointing', action='store_true')
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--log-every-n-steps', type=int, default=50)
    p.add_argument('--device', default=None)
    return p


def main(argv=None):
    setup_logging()
    args = build_parser().parse_args(argv)
    return run_cli(lambda: train(args), 'train_clip')


if __name__ == '__main__':
    sys.exit(main())
