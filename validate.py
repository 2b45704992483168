#!/usr/bin/env python3
"""Validate a DRIP (or any timm) classifier, with timm's validate.py flags.

    python validate.py --checkpoint output/train/RUN/model_best.pth.tar    # model and data from the run
    python validate.py --model drip_b16_2x --checkpoint w.safetensors --data-dir /data/imagenet --amp

Reports top-1, top-5, params, mean tokens after pooling, mean GMACs with each image's own segments
and images/s; without --data-dir it validates on the embedded digits.
"""
import argparse
import json
import sys

import drip_timm  # noqa: F401  registers the DRIP models
from drip_timm.classification import validate, write_results
from drip_timm.cli import run_cli, setup_logging


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--model', default=None, help='timm model name (default: the one the checkpoint records)')
    p.add_argument('--checkpoint', default='', help='training checkpoint, timm checkpoint or safetensors file')
    p.add_argument('--use-ema', action='store_true', help="validate the checkpoint's EMA weights")
    p.add_argument('--pretrained', action='store_true')
    p.add_argument('--model-kwargs', nargs='*', default=None, metavar='K=V')
    p.add_argument('--data-dir', default=None, help='ImageFolder root (default: the embedded digits)')
    p.add_argument('--split', default='val')
    p.add_argument('-b', '--batch-size', type=int, default=128)
    p.add_argument('--workers', '-j', type=int, default=2)
    p.add_argument('--amp', action='store_true')
    p.add_argument('--amp-dtype', default='bfloat16', choices=['bfloat16', 'float16'])
    p.add_argument('--img-size', type=int, default=None)
    p.add_argument('--input-size', type=int, nargs=3, default=None, metavar='N')
    p.add_argument('--crop-pct', type=float, default=None)
    p.add_argument('--mean', type=float, nargs='+', default=None)
    p.add_argument('--std', type=float, nargs='+', default=None)
    p.add_argument('--interpolation', default='')
    p.add_argument('--num-classes', type=int, default=None)
    p.add_argument('--gmacs-images', type=int, default=16, help='images traced for the data-dependent GMACs')
    p.add_argument('--device', default=None)
    p.add_argument('--results-file', default='')
    p.add_argument('--results-format', default='csv', choices=['csv', 'json'])
    return p


def main(argv=None):
    setup_logging()
    args = build_parser().parse_args(argv)
    if not args.model and not args.checkpoint and not args.pretrained:
        raise SystemExit('give --checkpoint (it records the model) or --model')

    def run():
        results = validate(args)
        print(json.dumps(results, indent=2))
        if args.results_file:
            write_results(results, args.results_file, args.results_format)

    return run_cli(run, 'validate')


if __name__ == '__main__':
    sys.exit(main())
