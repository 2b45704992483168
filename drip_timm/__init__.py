"""DRIP vision transformers as a timm model-zoo plugin.

``import drip_timm`` registers the DRIP models with timm and their CLIP configs with OpenCLIP.
"""
from .aux_loss import attach_aux_loss
from .boundary import BoundaryPredictor
from .drip_vit import DRIP_ARCHS, DripTokens, DripVisionTransformer, checkpoint_filter_fn
from .pooling import boundary_rate_loss, pool_segments, segment_ids, uniform_boundaries
from .clip import register_clip_configs

__version__ = '0.1.0'

__all__ = [
    'DRIP_MODELS', 'BoundaryPredictor', 'DripTokens', 'DripVisionTransformer', 'attach_aux_loss',
    'boundary_rate_loss', 'checkpoint_filter_fn', 'pool_segments', 'segment_ids', 'uniform_boundaries',
]

DRIP_MODELS = tuple(DRIP_ARCHS)

register_clip_configs()
