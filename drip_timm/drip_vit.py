"""DRIP vision transformers (arXiv 2510.25067) as timm models.

A timm ``VisionTransformer`` whose patch tokens, after ``pre_depth`` blocks, are pooled into
variable-length segments chosen by a learned boundary predictor; ``post_depth`` blocks then run
over the shorter, padded and masked sequence. ``model.blocks`` holds all blocks in order, so
timm's layer decay, grad checkpointing and ViT checkpoints address them as in any ViT.
"""
import logging
import math
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.profiler import record_function
from timm.data import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD
from timm.models import build_model_with_cfg, generate_default_cfgs, register_model
from timm.models._features import feature_take_indices
from timm.models._manipulate import checkpoint
from timm.models.vision_transformer import VisionTransformer, checkpoint_filter_fn as vit_checkpoint_filter_fn

from .aux_loss import attach_aux_loss
from .boundary import BoundaryPredictor
from .checkpoint import clip_image_tower, strip_prefix
from .pooling import GRAD_ESTIMATORS, boundary_rate_loss, masked_mean, pool_segments, uniform_boundaries

__all__ = ['DripVisionTransformer', 'DripTokens', 'checkpoint_filter_fn']

_logger = logging.getLogger(__name__)


@dataclass
class DripTokens:
    """The pooled sequence of a batch.

    tokens: [B, S, D] segment tokens after the last block and final norm (padding rows are 0).
    mask: [B, S] True where a segment is real.
    boundaries: [B, L] hard 0/1 boundary per patch token (raster order, last always 1).
    prefix_tokens: [B, P, D] class/register tokens, or None.
    """
    tokens: torch.Tensor
    mask: torch.Tensor
    boundaries: torch.Tensor
    prefix_tokens: Optional[torch.Tensor] = None

    @property
    def num_segments(self) -> torch.Tensor:
        return self.mask.sum(dim=1)


def _check_imitation_target(target: float) -> float:
    if not 0.5 < target <= 1.0:
        raise ValueError(f'boundary_imitation_target must lie in (0.5, 1], got {target}')
    return target


class DripVisionTransformer(VisionTransformer):
    """ViT with dynamic patch reduction by learned, interpretable segment pooling.

    Args (beyond timm's ``VisionTransformer``):
        pre_depth: blocks over all patch tokens before pooling.
        post_depth: blocks over the pooled sequence.
        compression: target patch-to-segment ratio; the rate prior is ``1 / compression``.
        boundary_mode: 'learned' or 'uniform' (evenly spaced boundaries at the target rate).
        boundary_temperature: Gumbel-sigmoid temperature in training.
        boundary_threshold: hard boundary where the (sampled) probability exceeds it.
        boundary_noise: scale of the logistic (Gumbel-difference) noise in training. 1 is the paper's
            Gumbel-sigmoid sample; the default 0 trains with the evaluation rule itself (no
            train/eval rate mismatch, see README "Training the boundary predictor").
        boundary_eval: 'threshold' or 'expected' (keep the expected count of top logits).
        boundary_grad: straight-through estimator through the pooling, see ``pooling.assignment``.
        boundary_grad_scale: multiplies the task gradient that reaches the boundaries. At 1 it can
            overwhelm the rate loss: after a uniform warm start the predictor's rate collapsed
            (README "Training the boundary predictor").
        boundary_loss_weight: weight of the boundary-rate loss; 0 disables it.
        boundary_init_logit: initial bias of the predictor's output (0: boundary probability 0.5).
        predictor_hidden_ratio: hidden width of the predictor MLP over ``embed_dim``.
        boundary_imitation_target: probability the uniform warm start teaches the predictor for a
            uniform boundary (1 minus it elsewhere). Below 1 its logits settle at
            ``+-logit(target)`` instead of growing without bound, so that the straight-through
            gradient can still move them once the predictor takes over.
    """

    def __init__(
            self,
            pre_depth: int = 2,
            post_depth: int = 10,
            compression: float = 2.0,
            boundary_mode: str = 'learned',
            boundary_temperature: float = 0.5,
            boundary_threshold: float = 0.5,
            boundary_noise: float = 0.0,
            boundary_eval: str = 'threshold',
            boundary_grad: str = 'local',
            boundary_grad_scale: float = 0.1,
            boundary_loss_weight: float = 1.0,
            boundary_init_logit: float = 0.0,
            predictor_hidden_ratio: float = 4.0,
            boundary_imitation_target: float = 1.0,
            global_pool: str = 'avg',
            class_token: bool = False,
            fc_norm: Optional[bool] = False,
            **kwargs,
    ):
        if 'depth' in kwargs:
            raise TypeError("DRIP models take 'pre_depth' and 'post_depth', not 'depth'")
        if pre_depth < 1 or post_depth < 0:
            raise ValueError(f'need pre_depth >= 1 and post_depth >= 0, got {pre_depth} and {post_depth}')
        if global_pool not in ('avg', 'max', 'avgmax', 'token', ''):
            raise ValueError(f"DRIP supports global_pool 'avg', 'max', 'avgmax', 'token' or '', got {global_pool!r}")
        if kwargs.get('dynamic_img_size'):
            raise ValueError('DRIP models take a fixed image size (dynamic_img_size is not supported)')
        if boundary_grad not in GRAD_ESTIMATORS:
            raise ValueError(f'unknown boundary_grad {boundary_grad!r}; expected one of {GRAD_ESTIMATORS}')
        if boundary_loss_weight < 0:
            raise ValueError(f'boundary_loss_weight must be >= 0, got {boundary_loss_weight}')
        _check_imitation_target(boundary_imitation_target)
        super().__init__(
            depth=pre_depth + post_depth,
            global_pool=global_pool,
            class_token=class_token,
            fc_norm=fc_norm,
            **kwargs,
        )
        dd = {'device': kwargs.get('device'), 'dtype': kwargs.get('dtype')}
        self.pre_depth = pre_depth
        self.post_depth = post_depth
        self.boundary_grad = boundary_grad
        self.boundary_grad_scale = boundary_grad_scale
        self.boundary_loss_weight = boundary_loss_weight
        # A stock training loop only backpropagates its task loss: the rate loss rides along.
        self.inject_boundary_loss = True
        # Set by the training scripts' uniform warm start and fade (see configure_boundaries).
        self.imitate_uniform = 0.0
        self.boundary_imitation_target = boundary_imitation_target
        self.pool_norm = nn.LayerNorm(self.embed_dim, **dd)
        self.boundary_predictor = BoundaryPredictor(
            self.embed_dim,
            int(self.embed_dim * predictor_hidden_ratio),
            compression=compression,
            temperature=boundary_temperature,
            threshold=boundary_threshold,
            noise=boundary_noise,
            mode=boundary_mode,
            eval_rule=boundary_eval,
            **dd,
        )
        self.boundary_predictor.init_bias(boundary_init_logit)
        self.boundary_loss: Optional[torch.Tensor] = None
        self.boundary_rate: Optional[torch.Tensor] = None

    @property
    def compression(self) -> float:
        return self.boundary_predictor.compression

    @property
    def boundary_mode(self) -> str:
        return self.boundary_predictor.mode

    def set_boundary_mode(self, mode: str):
        self.boundary_predictor.mode = mode

    def configure_boundaries(self, **kwargs):
        """Change boundary settings of a built model (e.g. an OpenCLIP tower), by their keyword names:
        boundary_mode, boundary_noise, boundary_eval, boundary_temperature, boundary_grad,
        boundary_grad_scale, boundary_loss_weight, boundary_imitation_target, and imitate_uniform: the
        weight of a loss that teaches the predictor uniform boundaries (the warm start, and its fade
        once boundary_mode is 'learned' again)."""
        predictor_attrs = {'boundary_mode': 'mode', 'boundary_noise': 'noise', 'boundary_eval': 'eval_rule',
                           'boundary_temperature': 'temperature'}
        for key, value in kwargs.items():
            if key in predictor_attrs:
                setattr(self.boundary_predictor, predictor_attrs[key], value)
            elif key == 'boundary_grad':
                if value not in GRAD_ESTIMATORS:
                    raise ValueError(f'unknown boundary_grad {value!r}; expected one of {GRAD_ESTIMATORS}')
                self.boundary_grad = value
            elif key in ('boundary_grad_scale', 'boundary_loss_weight'):
                setattr(self, key, float(value))
            elif key == 'boundary_imitation_target':
                self.boundary_imitation_target = _check_imitation_target(float(value))
            elif key == 'imitate_uniform':
                if float(value) < 0:
                    raise ValueError(f'imitate_uniform must be >= 0, got {value}')
                self.imitate_uniform = float(value)
            else:
                raise ValueError(f'unknown boundary setting {key!r}')

    @property
    def num_patches(self) -> int:
        return self.patch_embed.num_patches

    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False) -> Dict[str, Any]:
        return dict(
            stem=r'^cls_token|reg_token|pos_embed|patch_embed|norm_pre',
            blocks=[
                (r'^blocks\.(\d+)', None),
                (r'^pool_norm|^boundary_predictor', (self.pre_depth - 1, 0.5)),
                (r'^norm', (99999,)),
            ],
        )

    def _check_input(self, x: torch.Tensor):
        if x.ndim != 4:
            raise ValueError(f'expected a 4-D image batch [B, C, H, W], got a {x.ndim}-D tensor of shape {tuple(x.shape)}')
        if x.shape[1] != self.in_chans:
            raise ValueError(f'expected {self.in_chans} input channels, got {x.shape[1]} (shape {tuple(x.shape)})')
        expected = tuple(self.patch_embed.img_size)
        if tuple(x.shape[-2:]) != expected:
            raise ValueError(
                f'image size {tuple(x.shape[-2:])} does not fit this model\'s {expected} patch grid '
                f'(patch {tuple(self.patch_embed.patch_size)}); resize the input or create the model with img_size=')

    def _run_block(self, block: nn.Module, x: torch.Tensor, attn_mask: Optional[torch.Tensor] = None):
        if self.grad_checkpointing and not torch.jit.is_scripting() and torch.is_grad_enabled():
            return checkpoint(block, x, attn_mask=attn_mask) if attn_mask is not None else checkpoint(block, x)
        return block(x) if attn_mask is None else block(x, attn_mask=attn_mask)

    def _embed(self, x: torch.Tensor) -> torch.Tensor:
        self._check_input(x)
        x = self.patch_embed(x)
        x = self._pos_embed(x)
        x = self.patch_drop(x)
        return self.norm_pre(x)

    def _pool(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, Optional[torch.Tensor]]:
        """Pool the patch tokens of ``x`` [B, P + L, D]: sequence, mask, boundaries, and the attention
        mask of the blocks after pooling (None when no image is padded)."""
        P = self.num_prefix_tokens
        prefix, patches = x[:, :P], x[:, P:]
        with record_function('drip.predictor'):
            bounds = self.boundary_predictor(patches)
        counts = bounds.hard.sum(dim=1)
        # The one host sync: the padded length (and whether any image is padded at all).
        most, fewest = torch.stack([counts.max(), counts.min()]).long().tolist() if counts.numel() else (1, 1)
        grad = bounds.grad
        if grad is not None and self.boundary_grad_scale != 1.0:
            grad = grad * self.boundary_grad_scale
        with record_function('drip.pool'):
            pooled, seg_mask = pool_segments(
                self.pool_norm(patches), bounds.hard, grad, self.boundary_grad, num_segments=most)

        self.boundary_rate = (counts / patches.shape[1]).mean().detach() if counts.numel() else counts.sum()
        if bounds.grad is not None:
            counts = counts + bounds.grad.sum(dim=1)
        self.boundary_loss = self.boundary_loss_weight * boundary_rate_loss(
            counts, patches.shape[1], self.boundary_predictor.prior)
        if self.imitate_uniform > 0 and self.training:
            # Warm start (and its fade-out): the predictor learns to place uniform boundaries.
            uniform = bounds.hard if self.boundary_mode == 'uniform' else uniform_boundaries(
                *bounds.logits.shape, self.compression, device=bounds.logits.device)
            t = self.boundary_imitation_target
            imitation = F.binary_cross_entropy_with_logits(bounds.logits, uniform * (2 * t - 1) + (1 - t))
            self.boundary_loss = self.boundary_loss + self.imitate_uniform * imitation

        seq = torch.cat([prefix, pooled], dim=1)
        mask = torch.cat([seg_mask.new_ones(seg_mask.shape[0], P), seg_mask], dim=1)
        attn_mask = None if fewest == most else mask[:, None, None, :]
        return seq, mask, bounds.hard, attn_mask

    def _forward_pooled(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Embed, run all blocks with pooling in between, final norm: (sequence, mask, boundaries)."""
        x = self._embed(x)
        for blk in self.blocks[:self.pre_depth]:
            x = self._run_block(blk, x)
        x, mask, hard, attn_mask = self._pool(x)
        for blk in self.blocks[self.pre_depth:]:
            x = self._run_block(blk, x, attn_mask)
        x = self.norm(x)
        if self.training and self.inject_boundary_loss and (self.boundary_loss_weight > 0 or self.imitate_uniform):
            x = attach_aux_loss(x, self.boundary_loss)
        return x, mask, hard

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """[B, P + S, D] tokens; padded segment rows hold the mean of the image's real segments,
        so timm's plain 'avg' / 'max' pooling over them equals the masked one."""
        x, mask, _ = self._forward_pooled(x)
        P = self.num_prefix_tokens
        seg, seg_mask = x[:, P:], mask[:, P:]
        seg = torch.where(seg_mask.unsqueeze(-1), seg, masked_mean(seg, seg_mask).unsqueeze(1))
        return torch.cat([x[:, :P], seg], dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def forward_tokens(self, x: torch.Tensor) -> DripTokens:
        """The pooled sequence with its mask and boundaries, for towers and visualization."""
        x, mask, hard = self._forward_pooled(x)
        P = self.num_prefix_tokens
        seg_mask = mask[:, P:]
        tokens = x[:, P:] * seg_mask.unsqueeze(-1).to(x.dtype)
        return DripTokens(tokens, seg_mask, hard, x[:, :P] if P else None)

    def forward_intermediates(
            self,
            x: torch.Tensor,
            indices: Optional[Union[int, List[int]]] = None,
            return_prefix_tokens: bool = False,
            norm: bool = False,
            stop_early: bool = False,
            output_fmt: str = 'NLC',
            intermediates_only: bool = False,
    ):
        """Block outputs. Blocks before pooling give the full grid (NCHW or NLC); blocks after it
        give the padded segment sequence, NLC only (its mask: ``forward_tokens``)."""
        if output_fmt not in ('NCHW', 'NLC'):
            raise ValueError(f"output_fmt must be 'NCHW' or 'NLC', got {output_fmt!r}")
        take_indices, max_index = feature_take_indices(len(self.blocks), indices)
        if output_fmt == 'NCHW' and any(i >= self.pre_depth for i in take_indices):
            raise ValueError(
                f'NCHW intermediates exist only before pooling (blocks < {self.pre_depth}); use output_fmt="NLC"')
        B = x.shape[0]
        x = self._embed(x)
        P = self.num_prefix_tokens
        intermediates, attn_mask = [], None
        last = max_index if stop_early else len(self.blocks) - 1
        for i, blk in enumerate(self.blocks[:last + 1]):
            if i == self.pre_depth:
                x, _, _, attn_mask = self._pool(x)
            x = self._run_block(blk, x, attn_mask)
            if i in take_indices:
                intermediates.append(self.norm(x) if norm else x)
        prefix = [y[:, :P] for y in intermediates]
        intermediates = [y[:, P:] for y in intermediates]
        if output_fmt == 'NCHW':
            H, W = self.patch_embed.grid_size
            intermediates = [y.reshape(B, H, W, -1).permute(0, 3, 1, 2).contiguous() for y in intermediates]
        if return_prefix_tokens and P:
            intermediates = list(zip(intermediates, prefix))
        if intermediates_only:
            return intermediates
        if last < len(self.blocks) - 1:
            return None, intermediates
        return self.norm(x), intermediates

    def prune_intermediate_layers(self, indices: Union[int, List[int]] = 1, prune_norm: bool = False,
                                  prune_head: bool = True):
        take_indices, max_index = feature_take_indices(len(self.blocks), indices)
        self.blocks = self.blocks[:max_index + 1]
        self.post_depth = max(0, len(self.blocks) - self.pre_depth)
        if prune_norm:
            self.norm = nn.Identity()
        if prune_head:
            self.fc_norm = nn.Identity()
            self.reset_classifier(0, '')
        return take_indices


def checkpoint_filter_fn(state_dict: Dict[str, torch.Tensor], model: DripVisionTransformer) -> Dict[str, torch.Tensor]:
    """Adapt a DRIP, OpenCLIP-timm-tower or plain timm ViT checkpoint to ``model``.

    A plain ViT of the same width is an initialization, not trained DRIP weights: its blocks map in
    order, its class-token (and register) position rows are dropped when the model has none, and
    whatever the model has that the checkpoint lacks (the boundary predictor, extra blocks) stays
    freshly initialized; each such key is logged by name.
    """
    state_dict = state_dict.get('model', state_dict)
    state_dict = state_dict.get('state_dict', state_dict)
    state_dict = strip_prefix(strip_prefix(state_dict, 'module.'), '_orig_mod.')
    state_dict = clip_image_tower(state_dict) or state_dict
    is_drip = any(k.startswith('boundary_predictor.') for k in state_dict)

    if not is_drip and 'pos_embed' in state_dict and model.pos_embed is not None:
        ckpt_prefix = int('cls_token' in state_dict) + (
            state_dict['reg_token'].shape[1] if 'reg_token' in state_dict else 0)
        grid_rows = state_dict['pos_embed'].shape[1] - ckpt_prefix
        if ckpt_prefix and grid_rows == round(math.sqrt(grid_rows)) ** 2 and model.num_prefix_tokens == 0:
            state_dict['pos_embed'] = state_dict['pos_embed'][:, ckpt_prefix:]
            for k in ('cls_token', 'reg_token'):
                if state_dict.pop(k, None) is not None:
                    _logger.warning(f'ViT checkpoint: dropped {k} (the DRIP model has no prefix tokens)')
        if 'fc_norm.weight' in state_dict and 'norm.weight' not in state_dict:
            state_dict['norm.weight'] = state_dict.pop('fc_norm.weight')
            state_dict['norm.bias'] = state_dict.pop('fc_norm.bias')

    state_dict = vit_checkpoint_filter_fn(state_dict, model)
    if is_drip:
        return state_dict

    own = model.state_dict()
    out = {}
    for k, v in state_dict.items():
        if k not in own:
            _logger.warning(f'ViT checkpoint: {k} has no place in the DRIP model, dropped')
        elif own[k].shape != v.shape:
            _logger.warning(f'ViT checkpoint: {k} has shape {tuple(v.shape)}, the model {tuple(own[k].shape)}; kept fresh')
        else:
            out[k] = v
    fresh = [k for k in own if k not in out]
    if fresh:
        _logger.warning(f'ViT checkpoint initialization: {len(fresh)} tensors stay freshly initialized: {", ".join(fresh)}')
    return {**{k: own[k] for k in fresh}, **out}


def _create_drip(variant: str, pretrained: bool = False, **kwargs) -> DripVisionTransformer:
    return build_model_with_cfg(
        DripVisionTransformer,
        variant,
        pretrained,
        pretrained_filter_fn=checkpoint_filter_fn,
        feature_cfg=dict(out_indices=3, feature_cls='getter'),
        **kwargs,
    )


def _cfg(**kwargs) -> Dict[str, Any]:
    # No url / hf_hub_id: no trained DRIP weights are published; load your own with
    # pretrained=True, pretrained_cfg_overlay=dict(file=...) (or url=, hf_hub_id=).
    return {
        'num_classes': 1000,
        'input_size': (3, 224, 224),
        'pool_size': None,
        'crop_pct': 0.9,
        'interpolation': 'bicubic',
        'fixed_input_size': True,
        'mean': OPENAI_CLIP_MEAN,
        'std': OPENAI_CLIP_STD,
        'first_conv': 'patch_embed.proj',
        'classifier': 'head',
        'license': 'apache-2.0',
        'paper_ids': 'arXiv:2510.25067',
        **kwargs,
    }


def _digits_cfg(**kwargs) -> Dict[str, Any]:
    # CLIP normalization, as OpenCLIP applies it, so CLIP-pretrained towers fine-tune as they were trained.
    return _cfg(num_classes=10, input_size=(3, 32, 32), crop_pct=1.0, interpolation='bicubic', **kwargs)


# Architecture of every registered name: (width args, pre_depth, post_depth, compression).
_BASE = dict(embed_dim=768, num_heads=12)
_SMALL = dict(embed_dim=384, num_heads=6)
_TINY = dict(embed_dim=192, num_heads=3)
_NANO = dict(embed_dim=96, num_heads=3, patch_size=4, img_size=32, num_classes=10)

DRIP_ARCHS: Dict[str, Tuple[Dict[str, Any], int, int, float]] = {
    'drip_b32_2x': (dict(_BASE, patch_size=32), 2, 10, 2.0),
    'drip_b32_2x_2p11': (dict(_BASE, patch_size=32), 2, 11, 2.0),
    'drip_b32_2x_2p12': (dict(_BASE, patch_size=32), 2, 12, 2.0),
    'drip_b32_4x': (dict(_BASE, patch_size=32), 2, 10, 4.0),
    'drip_b32_4x_2p12': (dict(_BASE, patch_size=32), 2, 12, 4.0),
    'drip_b32_4x_2p16': (dict(_BASE, patch_size=32), 2, 16, 4.0),
    'drip_b32_4x_2p18': (dict(_BASE, patch_size=32), 2, 18, 4.0),
    'drip_b32_4x_2p20': (dict(_BASE, patch_size=32), 2, 20, 4.0),
    'drip_b32_10x': (dict(_BASE, patch_size=32), 2, 10, 10.0),
    'drip_b32_10x_2p24': (dict(_BASE, patch_size=32), 2, 24, 10.0),
    'drip_b16_2x': (dict(_BASE, patch_size=16), 2, 10, 2.0),
    'drip_b16_4x': (dict(_BASE, patch_size=16), 2, 10, 4.0),
    'drip_b16_4x_4p8': (dict(_BASE, patch_size=16), 4, 8, 4.0),
    'drip_b16_10x': (dict(_BASE, patch_size=16), 2, 10, 10.0),
    'drip_s16_2x': (dict(_SMALL, patch_size=16), 2, 10, 2.0),
    'drip_s16_4x': (dict(_SMALL, patch_size=16), 2, 10, 4.0),
    'drip_ti16_2x': (dict(_TINY, patch_size=16), 2, 10, 2.0),
    'drip_ti16_4x': (dict(_TINY, patch_size=16), 2, 10, 4.0),
    'drip_nano4_32_2x': (_NANO, 2, 4, 2.0),
    'drip_nano4_32_4x': (_NANO, 2, 4, 4.0),
}

default_cfgs = generate_default_cfgs({
    name: _digits_cfg() if name.startswith('drip_nano') else _cfg()
    for name in DRIP_ARCHS
})
default_cfgs.update(generate_default_cfgs({
    # The plain ViT of the nano DRIP models: same embedding, width and 6 blocks, no pooling.
    'vit_nano_patch4_32': _digits_cfg(),
}))


def _register(name: str):
    width_args, pre_depth, post_depth, compression = DRIP_ARCHS[name]

    def create(pretrained: bool = False, **kwargs) -> DripVisionTransformer:
        model_args = dict(width_args, pre_depth=pre_depth, post_depth=post_depth, compression=compression)
        return _create_drip(name, pretrained=pretrained, **dict(model_args, **kwargs))

    create.__name__ = name
    create.__qualname__ = name
    create.__doc__ = (f'DRIP {width_args["embed_dim"]}-wide, patch {width_args["patch_size"]}, '
                      f'{pre_depth} + {post_depth} blocks, {compression:g}x compression.')
    create.__module__ = __name__
    globals()[name] = register_model(create)


for _name in DRIP_ARCHS:
    _register(_name)


@register_model
def vit_nano_patch4_32(pretrained: bool = False, **kwargs) -> VisionTransformer:
    """The ViT baseline of the nano DRIP models (6 blocks, mean pooling, no class token)."""
    model_args = dict(_NANO, depth=6, global_pool='avg', class_token=False, fc_norm=False)
    return build_model_with_cfg(
        VisionTransformer, 'vit_nano_patch4_32', pretrained,
        pretrained_filter_fn=vit_checkpoint_filter_fn, **dict(model_args, **kwargs))
