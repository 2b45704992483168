"""What DRIP saves, measured side by side in one run.

    python -m drip_timm.benchmark --model vit_base_patch16_224 drip_b16_2x drip_b16_4x drip_b16_10x

One row per model: params, GMACs with uniform boundaries (the paper's convention), GMACs on real
images (``--data``, each image with its own segments), tokens after pooling, inference images/s,
training step seconds (forward + backward + AdamW step), peak memory (a fresh process per model:
CUDA allocator peak, or peak RSS on CPU), and each figure's ratio to the first model. Models are
timed interleaved (A B A B ...) and medians reported, so the ratios hold on a noisy machine.
"""
import argparse
import csv
import json
import logging
import statistics
import subprocess
import sys
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any, Dict, List, Optional

import timm
import torch
import torch.nn.functional as F

from .cli import parse_kwargs, run_cli, setup_logging
from .drip_vit import DRIP_ARCHS, DripVisionTransformer
from .flops import count_gmacs

_logger = logging.getLogger(__name__)

FIGURES = ('params_m', 'gmacs', 'gmacs_data', 'tokens', 'infer_img_s', 'train_step_s', 'peak_mem_mb')
IMAGE_SUFFIXES = ('.png', '.jpg', '.jpeg', '.bmp', '.webp', '.gif', '.tif', '.tiff')


def create(name: str, args, device) -> torch.nn.Module:
    kwargs = {'img_size': args.img_size} if args.img_size else {}
    if name in DRIP_ARCHS:
        kwargs.update(parse_kwargs(args.model_kwargs))
    model = timm.create_model(name, **kwargs).to(device)
    if isinstance(model, DripVisionTransformer):
        model.set_boundary_mode(args.boundary_mode)
    return model


def input_shape(model, batch_size: int):
    return (batch_size, *model.pretrained_cfg['input_size'][:1], *model.patch_embed.img_size)


def load_images(folder: str, model, limit: int) -> torch.Tensor:
    """Up to ``limit`` real images under ``folder``, preprocessed as the model's pretrained_cfg says."""
    from PIL import Image
    from timm.data import create_transform, resolve_data_config
    files = sorted(p for p in Path(folder).rglob('*') if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise FileNotFoundError(f'no images under {folder}')
    config = resolve_data_config({'input_size': (3, *model.patch_embed.img_size)}, model=model)
    transform = create_transform(**config)
    images = []
    for f in files[:limit]:
        try:
            images.append(transform(Image.open(f).convert('RGB')))
        except OSError as e:
            _logger.warning(f'skipped unreadable image {f}: {e}')
    if not images:
        raise RuntimeError(f'no readable images under {folder}')
    return torch.stack(images)


def mean_tokens(model, x: torch.Tensor) -> float:
    """Tokens after pooling per image (patch tokens for a plain ViT)."""
    with torch.no_grad():
        if isinstance(model, DripVisionTransformer):
            return model.forward_tokens(x).num_segments.float().mean().item()
        return float(model.patch_embed.num_patches)


def drip_overhead(model, x: torch.Tensor) -> Dict[str, float]:
    """Share (percent) of one inference forward spent in the boundary predictor and in the pooling,
    from the profiler's ``drip.predictor`` / ``drip.pool`` ranges."""
    from torch.profiler import ProfilerActivity, profile
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if x.is_cuda else [])
    model.eval()
    with torch.no_grad():
        model(x)  # warm up
        with profile(activities=activities) as prof:
            model(x)
    events = prof.key_averages()
    attr = 'device_time_total' if x.is_cuda else 'cpu_time_total'
    self_attr = 'self_device_time_total' if x.is_cuda else 'self_cpu_time_total'
    total = sum(getattr(e, self_attr) for e in events)
    share = {e.key: 100.0 * getattr(e, attr) / total for e in events if e.key in ('drip.predictor', 'drip.pool')}
    return {'predictor_pct': share.get('drip.predictor', 0.0), 'pool_pct': share.get('drip.pool', 0.0)}


def _sync(device):
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


class Runner:
    """One model's timed inference and training step on a fixed random batch."""

    def __init__(self, name, model, args, device):
        self.name, self.model, self.device = name, model, device
        self.x = torch.randn(input_shape(model, args.batch_size), device=device)
        self.y = torch.randint(0, max(model.num_classes, 1), (args.batch_size,), device=device)
        self.amp = torch.autocast(device.type, dtype=torch.bfloat16) if args.amp else nullcontext()
        self.optimizer = torch.optim.AdamW(model.parameters(), lr=1e-6)
        self.infer_s: List[float] = []
        self.train_s: List[float] = []

    def infer(self) -> float:
        self.model.eval()
        _sync(self.device)
        start = time.perf_counter()
        with torch.no_grad(), self.amp:
            self.model(self.x)
        _sync(self.device)
        return time.perf_counter() - start

    def train_step(self) -> float:
        self.model.train()
        _sync(self.device)
        start = time.perf_counter()
        with self.amp:
            loss = F.cross_entropy(self.model(self.x), self.y)
            if isinstance(self.model, DripVisionTransformer):
                loss = loss + self.model.boundary_loss
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        _sync(self.device)
        return time.perf_counter() - start


def peak_memory_mb(name: str, args) -> float:
    """Peak memory of one model's benchmark in a fresh process (so models do not share a peak)."""
    cmd = [sys.executable, '-m', 'drip_timm.benchmark', '--memory-probe', name, '--batch-size', str(args.batch_size),
           '--bench', args.bench, '--boundary-mode', args.boundary_mode, '--device', args.device]
    if args.img_size:
        cmd += ['--img-size', str(args.img_size)]
    if args.amp:
        cmd.append('--amp')
    if args.model_kwargs:
        cmd += ['--model-kwargs', *args.model_kwargs]
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f'memory probe for {name} failed: {out.stderr[-2000:]}')
    return float(out.stdout.strip().splitlines()[-1])


def memory_probe(name: str, args) -> float:
    from .engine import peak_memory_mb as process_peak, reset_peak_rss
    reset_peak_rss()
    device = torch.device(args.device)
    runner = Runner(name, create(name, args, device), args, device)
    if device.type == 'cuda':
        torch.cuda.reset_peak_memory_stats(device)
    if args.bench in ('infer', 'both'):
        runner.infer()
    if args.bench in ('train', 'both'):
        runner.train_step()
    return process_peak(device)


def run(args) -> List[Dict[str, Any]]:
    device = torch.device(args.device)
    if args.batch_size < 1:
        raise ValueError(f'--batch-size must be >= 1, got {args.batch_size}')
    for name in args.model:
        if not timm.is_model(name):
            raise ValueError(f'unknown model {name!r} (timm.list_models() lists the known ones)')
    torch.manual_seed(0)
    # Memory first, each model in a fresh process started while this one is still small.
    peaks = [None if args.no_memory else peak_memory_mb(n, args) for n in args.model]
    runners = [Runner(n, create(n, args, device), args, device) for n in args.model]
    rows = []
    for r in runners:
        m = r.model
        row = {'model': r.name, 'params_m': sum(p.numel() for p in m.parameters()) / 1e6,
               'gmacs': count_gmacs(m, mode='uniform' if isinstance(m, DripVisionTransformer) else None,
                                    input_size=input_shape(m, 1)[1:])}
        m.eval()
        if args.data:
            images = load_images(args.data, m, args.data_images).to(device)
            row['gmacs_data'] = count_gmacs(m, images, mode=None)
            row['tokens'] = mean_tokens(m, images)
        else:
            row['gmacs_data'] = None
            row['tokens'] = mean_tokens(m, r.x)
        rows.append(row)

    benches = [b for b in ('infer', 'train') if args.bench in (b, 'both')]
    for it in range(args.warmup + args.iters):
        for r in runners:  # interleaved: A B C A B C ...
            for b in benches:
                t = r.infer() if b == 'infer' else r.train_step()
                if it >= args.warmup:
                    (r.infer_s if b == 'infer' else r.train_s).append(t)
        _logger.info(f'round {it + 1}/{args.warmup + args.iters} done')
    for row, r, peak in zip(rows, runners, peaks):
        row['infer_img_s'] = args.batch_size / statistics.median(r.infer_s) if r.infer_s else None
        row['train_step_s'] = statistics.median(r.train_s) if r.train_s else None
        row['peak_mem_mb'] = peak
        if args.profile and isinstance(r.model, DripVisionTransformer):
            row.update(drip_overhead(r.model, r.x))
    first = rows[0]
    for row in rows:
        for f in FIGURES:
            row[f'{f}_ratio'] = row[f] / first[f] if row[f] is not None and first[f] else None
    return rows


def fmt(v) -> str:
    if v is None:
        return '-'
    if isinstance(v, float):
        return f'{v:.3f}' if abs(v) < 100 else f'{v:.1f}'
    return str(v)


def markdown(rows: List[Dict[str, Any]]) -> str:
    cols = ['model'] + [c for f in FIGURES for c in (f, f'{f}_ratio')]
    cols += [c for c in ('predictor_pct', 'pool_pct') if any(c in r for r in rows)]
    lines = ['| ' + ' | '.join(cols) + ' |', '|' + '---|' * len(cols)]
    lines += ['| ' + ' | '.join(fmt(r.get(c)) for c in cols) + ' |' for r in rows]
    return '\n'.join(lines)


def write_results(rows: List[Dict[str, Any]], path: str):
    suffix = Path(path).suffix.lower()
    if suffix == '.json':
        Path(path).write_text(json.dumps(rows, indent=2))
    elif suffix == '.csv':
        with open(path, 'w', newline='') as f:
            writer = csv.DictWriter(f, fieldnames=list(dict.fromkeys(k for r in rows for k in r)))
            writer.writeheader()
            writer.writerows(rows)
    elif suffix == '.md':
        Path(path).write_text(markdown(rows) + '\n')
    else:
        raise ValueError(f'--results-file must end in .json, .csv or .md, got {path!r}')


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--model', nargs='+', default=['vit_base_patch16_224', 'drip_b16_2x', 'drip_b16_4x', 'drip_b16_10x'],
                   help='timm model names; ratios are to the first')
    p.add_argument('--batch-size', '-b', type=int, default=32)
    p.add_argument('--img-size', type=int, default=None)
    p.add_argument('--bench', default='both', choices=['infer', 'train', 'both'])
    p.add_argument('--boundary-mode', default='uniform', choices=['uniform', 'learned'])
    p.add_argument('--model-kwargs', nargs='*', default=None, metavar='K=V',
                   help='keyword arguments for every DRIP model, e.g. predictor_hidden_ratio=1')
    p.add_argument('--data', default=None, help='folder of real images for the data-dependent GMACs and tokens')
    p.add_argument('--data-images', type=int, default=16)
    p.add_argument('--amp', action='store_true', help='bfloat16 autocast')
    p.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    p.add_argument('--warmup', type=int, default=1)
    p.add_argument('--iters', type=int, default=3)
    p.add_argument('--no-memory', action='store_true', help='skip the per-model memory processes')
    p.add_argument('--profile', action='store_true',
                   help="add each DRIP model's predictor and pooling share of its forward time (percent)")
    p.add_argument('--results-file', default=None, help='.json, .csv or .md')
    p.add_argument('--memory-probe', default=None, help=argparse.SUPPRESS)
    return p


def main(argv: Optional[List[str]] = None) -> int:
    setup_logging()
    args = build_parser().parse_args(argv)
    if args.memory_probe:
        print(memory_probe(args.memory_probe, args))
        return 0

    def bench():
        if args.results_file and Path(args.results_file).suffix.lower() not in ('.json', '.csv', '.md'):
            raise ValueError(f'--results-file must end in .json, .csv or .md, got {args.results_file!r}')
        rows = run(args)
        print(markdown(rows))
        if args.results_file:
            write_results(rows, args.results_file)

    return run_cli(bench, __name__)


if __name__ == '__main__':
    sys.exit(main())
