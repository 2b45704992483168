"""The paper's GFLOPs, recounted: every matrix product, ViT baselines included.

    python -m drip_timm.flop_analysis --table docs/flop_table.md --plot docs/flop_analysis.png \
        --model-table docs/model_table.md

The table puts each paper row beside our fvcore count of the same CLIP image tower (uniform
boundaries at the target rate, as the paper counts DRIP) and SPEC's analytic formula; the ViT
baselines are also counted the way the paper did (fvcore skipping OpenCLIP's fused attention).
The plot shows GMACs against compression and post-pooling depth for patch 32 and 16.
"""
import argparse
import sys
from pathlib import Path
from typing import Dict, List

import torch

from .flops import analytic_gmacs, boundary_mode, flop_analysis, vit_gmacs

# (CLIP config, paper GFLOPs or None where the paper's tables give no figure)
PAPER_ROWS = [
    ('ViT-B-32', 2.95), ('DRIP-2X-32', 2.69), ('DRIP-2X-32-2p11', None), ('DRIP-2X-32-2p12', None),
    ('DRIP-4X-32', 1.83), ('DRIP-4X-32-2p12', None), ('DRIP-4X-32-2p16', None), ('DRIP-4X-32-2p18', None),
    ('DRIP-4X-32-2p20', None), ('DRIP-10X-32', 1.26), ('DRIP-10X-32-2p24', None),
    ('ViT-B-16', 11.33), ('DRIP-2X-16', 10.22), ('DRIP-4X-16', 6.62), ('DRIP-4X-16-4p8', None),
    ('DRIP-10X-16', 4.53),
]
COMPRESSIONS = (1, 2, 4, 10)
POST_DEPTHS = (8, 10, 12, 16, 20, 24)


@torch.no_grad()
def tower_gmacs(clip_model: str, skip_fused_attention: bool = False) -> float:
    """GMACs of a CLIP config's image tower at 224 px, batch 1; DRIP towers in uniform mode."""
    import open_clip
    from fvcore.nn import FlopCountAnalysis
    from .engine import drip_module
    visual = open_clip.create_model(clip_model).visual.eval()
    x = torch.zeros(1, 3, 224, 224)
    if skip_fused_attention:
        analysis = FlopCountAnalysis(visual, x)
        analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False).tracer_warnings('none')
        return analysis.total() / 1e9
    drip = drip_module(visual)
    with boundary_mode(drip, 'uniform'):
        return flop_analysis(visual, x).total() / 1e9


def tower_analytic(clip_model: str) -> float:
    """SPEC's formula for the tower (blocks, predictor, pooling, patch embedding, projection)."""
    import math
    import open_clip
    cfg = open_clip.get_model_config(clip_model)
    if 'timm_model_name' not in cfg['vision_cfg']:
        v = cfg['vision_cfg']
        return vit_gmacs((224 // v['patch_size']) ** 2, v['width'], v['layers'], v['patch_size'],
                         num_classes=cfg['embed_dim'])
    from .drip_vit import DRIP_ARCHS
    width_args, pre, post, compression = DRIP_ARCHS[cfg['vision_cfg']['timm_model_name']]
    patch = width_args['patch_size']
    L = (224 // patch) ** 2
    S = max(1, math.floor(L / compression))
    return analytic_gmacs(L, width_args['embed_dim'], pre, post, S, patch_size=patch) \
        + width_args['embed_dim'] * cfg['embed_dim'] / 1e9


def table_rows() -> List[Dict[str, object]]:
    rows = []
    for name, paper in PAPER_ROWS:
        row = {'model': name, 'paper': paper, 'ours': tower_gmacs(name), 'analytic': tower_analytic(name)}
        row['as_paper_counted'] = tower_gmacs(name, skip_fused_attention=True) if name.startswith('ViT') else None
        rows.append(row)
    return rows


def markdown(rows) -> str:
    def f(v):
        return '-' if v is None else f'{v:.2f}'
    lines = ['| CLIP image tower | paper GFLOPs | ours, every matmul (fvcore) | analytic (SPEC) | '
             'ours, fused attention skipped as in the paper |', '|---|---|---|---|---|']
    lines += [f"| {r['model']} | {f(r['paper'])} | {f(r['ours'])} | {f(r['analytic'])} | {f(r['as_paper_counted'])} |"
              for r in rows]
    return '\n'.join(lines)


def model_table() -> str:
    """Every registered DRIP model and the ViT baselines: params, GMACs (fvcore, uniform
    boundaries), patch tokens before and after pooling."""
    import math
    import timm
    from .drip_vit import DRIP_ARCHS
    from .flops import count_gmacs
    lines = ['| model | blocks (pre + post) | params (M) | GMACs | patch tokens -> segments |', '|---|---|---|---|---|']
    baselines = {'vit_base_patch32_224': 'drip_b32_2x', 'vit_base_patch16_224': 'drip_b16_2x',
                 'vit_nano_patch4_32': 'drip_nano4_32_2x'}
    for name, (_, pre, post, compression) in DRIP_ARCHS.items():
        for vit, first in baselines.items():
            if name == first:
                model = timm.create_model(vit)
                lines.append(f'| {vit} (baseline) | {len(model.blocks)} | '
                             f'{sum(p.numel() for p in model.parameters()) / 1e6:.1f} | '
                             f'{count_gmacs(model):.3g} | {model.patch_embed.num_patches} |')
        model = timm.create_model(name)
        L = model.num_patches
        params = sum(p.numel() for p in model.parameters()) / 1e6
        lines.append(f'| {name} | {pre} + {post} | {params:.1f} | {count_gmacs(model):.3g} | '
                     f'{L} -> {max(1, math.floor(L / compression))} |')
    return '\n'.join(lines)


def plot(path: str):
    import math
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for ax, patch in zip(axes, (32, 16)):
        L = (224 // patch) ** 2
        vit = vit_gmacs(L, 768, 12, patch)
        for post in POST_DEPTHS:
            ys = [analytic_gmacs(L, 768, 2, post, max(1, math.floor(L / c)), patch_size=patch) for c in COMPRESSIONS[1:]]
            ax.plot(COMPRESSIONS[1:], ys, marker='o', label=f'DRIP 2+{post}')
        ax.axhline(vit, color='k', linestyle='--', label=f'ViT-B/{patch} (1x, 12 blocks)')
        ax.plot([1], [vit], marker='*', color='k', markersize=12)
        ax.set_xscale('log')
        ax.set_xticks(COMPRESSIONS, [f'{c}x' for c in COMPRESSIONS])
        ax.set_xlabel('compression (patch tokens per segment)')
        ax.set_ylabel('GMACs per image, 224 px')
        ax.set_title(f'patch {patch}: {L} tokens')
        ax.grid(alpha=0.3)
    axes[1].legend(fontsize=8)
    fig.suptitle('DRIP cost against compression and post-pooling depth (every matmul counted)')
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--table', default=None, help='write the reconciliation table (Markdown) here too')
    p.add_argument('--plot', default=None, help='write the FLOP-analysis plot (PNG) here')
    p.add_argument('--model-table', default=None, help='write the table of registered DRIP models here')
    args = p.parse_args(argv)
    import drip_timm  # noqa: F401  registers the CLIP configs
    if args.model_table:
        text = model_table()
        print(text)
        Path(args.model_table).parent.mkdir(parents=True, exist_ok=True)
        Path(args.model_table).write_text(text + '\n')
    text = markdown(table_rows())
    print(text)
    if args.table:
        Path(args.table).parent.mkdir(parents=True, exist_ok=True)
        Path(args.table).write_text(text + '\n')
    if args.plot:
        plot(args.plot)
        print(f'wrote {args.plot}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
