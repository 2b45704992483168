"""Segment maps: where a DRIP model put its segments.

    python -m drip_timm.visualize --model drip_nano4_32_2x --checkpoint run/model_best.pth.tar img.png --out maps/

Each image is resized and cropped as the model's pretrained_cfg says, run through the model, and
drawn ``--scale`` times larger with every segment (raster-order runs of patches) in its own colour
and outlined, under a title with the segment count and the compression achieved.
"""
import argparse
import colorsys
import sys
from pathlib import Path
from typing import List, Optional

import numpy as np
import timm
import torch
from PIL import Image, ImageDraw

from .checkpoint import create_model_from_checkpoint, load_weights
from .cli import run_cli, setup_logging
from .drip_vit import DripVisionTransformer
from .pooling import segment_ids

TITLE_HEIGHT = 20


def segment_colors(n: int, seed: int = 0) -> np.ndarray:
    """``n`` distinct colours (uint8 [n, 3]); neighbouring segments get far-apart hues."""
    golden = 0.618033988749895
    hues = (np.arange(n) * golden + seed * 0.1) % 1.0
    return np.array([[int(c * 255) for c in colorsys.hsv_to_rgb(h, 0.65, 0.95)] for h in hues], dtype=np.uint8)


def segment_map(model: DripVisionTransformer, image: torch.Tensor) -> np.ndarray:
    """Segment index per patch [H/p, W/p] for one preprocessed image [C, H, W]."""
    model.eval()
    with torch.no_grad():
        boundaries = model.forward_tokens(image.unsqueeze(0)).boundaries
    gh, gw = model.patch_embed.grid_size
    return segment_ids(boundaries)[0].reshape(gh, gw).cpu().numpy()


def denormalize(image: torch.Tensor, mean, std) -> Image.Image:
    x = image.cpu() * torch.tensor(std).view(-1, 1, 1) + torch.tensor(mean).view(-1, 1, 1)
    x = (x.clamp(0, 1) * 255).byte().permute(1, 2, 0).numpy()
    return Image.fromarray(x if x.shape[-1] == 3 else x[..., 0], 'RGB' if x.shape[-1] == 3 else 'L').convert('RGB')


def draw(image: Image.Image, segments: np.ndarray, scale: int, alpha: float = 0.45) -> Image.Image:
    """The image ``scale`` times larger, segments coloured and outlined, with a title band on top."""
    gh, gw = segments.shape
    w, h = image.size
    big = image.resize((w * scale, h * scale), Image.NEAREST)
    colors = segment_colors(int(segments.max()) + 1)
    tint = Image.fromarray(colors[segments]).resize(big.size, Image.NEAREST)
    canvas = Image.blend(big, tint, alpha)
    pen = ImageDraw.Draw(canvas)
    ph, pw = h * scale / gh, w * scale / gw
    for i in range(gh):
        for j in range(gw):
            if j + 1 < gw and segments[i, j] != segments[i, j + 1]:
                pen.line([((j + 1) * pw, i * ph), ((j + 1) * pw, (i + 1) * ph)], fill=(0, 0, 0), width=1)
            if i + 1 < gh and segments[i, j] != segments[i + 1, j]:
                pen.line([(j * pw, (i + 1) * ph), ((j + 1) * pw, (i + 1) * ph)], fill=(0, 0, 0), width=1)
    n = int(segments.max()) + 1
    out = Image.new('RGB', (canvas.width, canvas.height + TITLE_HEIGHT), (255, 255, 255))
    out.paste(canvas, (0, TITLE_HEIGHT))
    ImageDraw.Draw(out).text((4, 4), f'{n} segments, {segments.size / n:.2f}x', fill=(0, 0, 0))
    return out


def load_model(name: Optional[str], checkpoint: Optional[str]) -> DripVisionTransformer:
    if checkpoint and not name:
        model = create_model_from_checkpoint(checkpoint)
    else:
        if not name or not timm.is_model(name):
            raise ValueError(f'unknown model {name!r} (timm.list_models("drip_*") lists the DRIP models)')
        model = timm.create_model(name)
        if checkpoint:
            load_weights(model, checkpoint)
    if not isinstance(model, DripVisionTransformer):
        raise ValueError(f'{type(model).__name__} has no segments to draw; give a DRIP model')
    return model.eval()


def visualize(model: DripVisionTransformer, paths: List[str], out_dir: str, scale: int = 4) -> List[Path]:
    from timm.data import create_transform, resolve_data_config
    config = resolve_data_config({}, model=model)
    transform = create_transform(**config)
    mode = 'L' if config['input_size'][0] == 1 else 'RGB'
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for path in paths:
        try:
            image = transform(Image.open(path).convert(mode))
        except (OSError, ValueError) as e:
            raise ValueError(f'cannot read image {path}: {e}') from e
        picture = draw(denormalize(image, config['mean'], config['std']), segment_map(model, image), scale)
        target = out / f'{Path(path).stem}_segments.png'
        picture.save(target)
        written.append(target)
    return written


def main(argv=None) -> int:
    setup_logging()
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('images', nargs='+')
    p.add_argument('--model', default=None, help='DRIP timm model (default: the one the checkpoint records)')
    p.add_argument('--checkpoint', default=None)
    p.add_argument('--out', required=True, help='output folder')
    p.add_argument('--scale', type=int, default=4)
    args = p.parse_args(argv)

    def run():
        for path in visualize(load_model(args.model, args.checkpoint), args.images, args.out, args.scale):
            print(path)

    return run_cli(run, __name__)


if __name__ == '__main__':
    sys.exit(main())
