"""The boundary predictor: one logit per patch token -> hard 0/1 segment boundaries."""
from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn as nn
from timm.layers import Mlp

from .pooling import close_last_segment, uniform_boundaries

BOUNDARY_MODES = ('learned', 'uniform')
EVAL_RULES = ('threshold', 'expected')


@dataclass
class Boundaries:
    """Hard boundaries [B, L] (last position 1, detached), their straight-through gradient carrier
    [B, L] (zero-valued, or None) and the predictor's logits [B, L]."""
    hard: torch.Tensor
    grad: Optional[torch.Tensor]
    logits: torch.Tensor


class BoundaryPredictor(nn.Module):
    """MLP ``D -> hidden -> 1`` that places segment boundaries.

    Training samples a relaxed Bernoulli (Gumbel-sigmoid, temperature ``temperature``; the noise
    scaled by ``noise``, 0 disables it) and thresholds it; the straight-through gradient is that of
    the soft sample. Evaluation is deterministic: ``'threshold'`` keeps ``sigmoid(logit) >
    threshold``, ``'expected'`` keeps, per image, the ``round(sum(sigmoid))`` highest logits, the
    boundary count that training sees in expectation. ``mode='uniform'`` still runs the MLP (so its
    cost is counted) but places ``max(1, floor(L / compression))`` evenly spaced boundaries.
    """

    def __init__(
            self,
            dim: int,
            hidden_dim: int,
            compression: float,
            temperature: float = 0.5,
            threshold: float = 0.5,
            noise: float = 0.0,
            mode: str = 'learned',
            eval_rule: str = 'threshold',
            act_layer=nn.GELU,
            device=None,
            dtype=None,
    ):
        super().__init__()
        if compression <= 1:
            raise ValueError(f'compression must be > 1 (1 is the plain ViT), got {compression}')
        if temperature <= 0:
            raise ValueError(f'boundary_temperature must be > 0, got {temperature}')
        if not 0 < threshold < 1:
            raise ValueError(f'boundary_threshold must lie in (0, 1), got {threshold}')
        if noise < 0:
            raise ValueError(f'boundary_noise must be >= 0, got {noise}')
        self.compression = float(compression)
        self.temperature = temperature
        self.threshold = threshold
        self.noise = noise
        self.mode = mode
        self.eval_rule = eval_rule
        self.mlp = Mlp(dim, hidden_dim, out_features=1, act_layer=act_layer, device=device, dtype=dtype)

    @property
    def mode(self) -> str:
        return self._mode

    @mode.setter
    def mode(self, mode: str):
        if mode not in BOUNDARY_MODES:
            raise ValueError(f'unknown boundary_mode {mode!r}; expected one of {BOUNDARY_MODES}')
        self._mode = mode

    @property
    def eval_rule(self) -> str:
        return self._eval_rule

    @eval_rule.setter
    def eval_rule(self, rule: str):
        if rule not in EVAL_RULES:
            raise ValueError(f'unknown boundary_eval {rule!r}; expected one of {EVAL_RULES}')
        self._eval_rule = rule

    @property
    def prior(self) -> float:
        return 1.0 / self.compression

    def init_bias(self, logit: float):
        """Start every token at the same boundary logit (e.g. 0, or the prior's)."""
        nn.init.constant_(self.mlp.fc2.bias, logit)

    def forward(self, x: torch.Tensor) -> Boundaries:
        logits = self.mlp(x).squeeze(-1).float()
        B, L = logits.shape
        if self.mode == 'uniform':
            hard = uniform_boundaries(B, L, self.compression, device=logits.device)
            return Boundaries(hard, None, logits)

        if self.training:
            z = logits
            if self.noise > 0:
                u = torch.rand_like(logits).clamp(1e-6, 1 - 1e-6)
                z = z + self.noise * (torch.log(u) - torch.log1p(-u))
            soft = torch.sigmoid(z / self.temperature)
            hard = close_last_segment((soft > self.threshold).float())
            # The last position is forced, so it carries no gradient.
            grad = soft - soft.detach()
            grad = torch.cat([grad[:, :-1], torch.zeros_like(grad[:, -1:])], dim=1)
            return Boundaries(hard, grad if torch.is_grad_enabled() else None, logits)

        probs = torch.sigmoid(logits)
        if self.eval_rule == 'threshold':
            hard = (probs > self.threshold).float()
        else:
            inner = probs[:, :-1]
            k = inner.sum(dim=1).round().long()
            rank = inner.argsort(dim=1, descending=True).argsort(dim=1)
            hard = torch.cat([(rank < k.unsqueeze(1)).float(), probs[:, -1:]], dim=1)
        return Boundaries(close_last_segment(hard), None, logits)
