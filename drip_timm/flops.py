"""Multiply-accumulate counting (fvcore) that counts every matrix product.

fvcore skips ``aten::scaled_dot_product_attention`` (timm's fused attention) and
``aten::_native_multi_head_attention`` (OpenCLIP's towers, projections included) unless told;
we count them. The boundary predictor and the pooling ``bmm`` are
ordinary linear/bmm ops. Counts are per image, in GMACs, as the paper's "GFLOPs".
"""
import contextlib
from typing import Optional, Sequence

import torch
import torch.nn as nn
from fvcore.nn import FlopCountAnalysis
from fvcore.nn.jit_handles import get_shape

from .drip_vit import DripVisionTransformer


def sdpa_flop_jit(inputs, outputs) -> int:
    """MACs of ``softmax(Q K^T) V``: B·H·N·M·(d + dv)."""
    q, k, v = (get_shape(x) for x in inputs[:3])
    *batch, n, d = q
    m, dv = k[-2], v[-1]
    b = 1
    for s in batch:
        b *= s
    return b * n * m * (d + dv)


def native_mha_flop_jit(inputs, outputs) -> int:
    """MACs of ``nn.MultiheadAttention``'s fused path (OpenCLIP's towers): qkv and output
    projections plus both attention products, B·(4·N·D² + 2·N·M·D) for self-attention."""
    q, k = get_shape(inputs[0]), get_shape(inputs[1])
    *batch, n, d = q
    m = k[-2]
    b = 1
    for s in batch:
        b *= s
    return b * (n * d * d + 2 * m * d * d + 2 * n * m * d + n * d * d)


def flop_analysis(model: nn.Module, inputs: torch.Tensor) -> FlopCountAnalysis:
    """fvcore's analysis with handles for the fused attention ops it skips by default."""
    analysis = FlopCountAnalysis(model, inputs)
    analysis.set_op_handle('aten::scaled_dot_product_attention', sdpa_flop_jit)
    analysis.set_op_handle('aten::_native_multi_head_attention', native_mha_flop_jit)
    analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False).tracer_warnings('none')
    return analysis


@contextlib.contextmanager
def boundary_mode(model: nn.Module, mode: Optional[str]):
    """Temporarily set a DRIP model's boundary mode (no-op for other models or ``mode=None``)."""
    if mode is None or not isinstance(model, DripVisionTransformer):
        yield model
        return
    old = model.boundary_mode
    model.set_boundary_mode(mode)
    try:
        yield model
    finally:
        model.set_boundary_mode(old)


@torch.no_grad()
def count_gmacs(model: nn.Module, images: Optional[torch.Tensor] = None, mode: Optional[str] = 'uniform',
                input_size: Optional[Sequence[int]] = None) -> float:
    """Mean GMACs per image. Without ``images``, one zero image of ``input_size`` (default: the
    model's pretrained_cfg). Each image is traced alone, so each is counted with its own segments."""
    was_training = model.training
    model.eval()
    if images is None:
        size = tuple(input_size or model.pretrained_cfg['input_size'])
        p = next(model.parameters())
        images = torch.zeros((1, *size), device=p.device, dtype=p.dtype)
    try:
        with boundary_mode(model, mode):
            total = sum(flop_analysis(model, images[i:i + 1]).total() for i in range(images.shape[0]))
    finally:
        model.train(was_training)
    return total / images.shape[0] / 1e9


def block_macs(tokens: float, dim: int, mlp_ratio: float = 4.0) -> float:
    """MACs of one pre-norm transformer block: qkv + proj + MLP + attention products."""
    return (4 + 2 * mlp_ratio) * tokens * dim ** 2 + 2 * tokens ** 2 * dim


def analytic_gmacs(num_patches: int, dim: int, pre_depth: int, post_depth: int, num_segments: float,
                   hidden_ratio: float = 4.0, mlp_ratio: float = 4.0, prefix_tokens: int = 0,
                   patch_size: int = 0, in_chans: int = 3, num_classes: int = 0) -> float:
    """SPEC's formula: blocks before and after pooling, the predictor ``N(Dh + h)``, pooling ``L·S·D``;
    plus the patch embedding and the head when ``patch_size`` / ``num_classes`` are given."""
    hidden = dim * hidden_ratio
    n_pre = num_patches + prefix_tokens
    n_post = num_segments + prefix_tokens
    macs = pre_depth * block_macs(n_pre, dim, mlp_ratio) + post_depth * block_macs(n_post, dim, mlp_ratio)
    macs += num_patches * (dim * hidden + hidden) + num_patches * num_segments * dim
    macs += num_patches * dim * in_chans * patch_size ** 2 + dim * num_classes
    return macs / 1e9


def vit_gmacs(num_patches: int, dim: int, depth: int, patch_size: int, in_chans: int = 3, prefix_tokens: int = 1,
              num_classes: int = 0) -> float:
    """The same count for a plain ViT: ``depth`` blocks over all tokens, patch embedding, head."""
    n = num_patches + prefix_tokens
    return (depth * block_macs(n, dim) + num_patches * dim * in_chans * patch_size ** 2 + dim * num_classes) / 1e9
