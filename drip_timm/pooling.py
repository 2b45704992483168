"""Segment pooling: hard boundaries -> variable-length segments -> padded, masked segment means.

Pure tensor functions, no parameters. Tokens are in raster order; a boundary at position ``t``
closes the segment that ends at token ``t`` and the last token always closes the final segment,
so every token lies in exactly one segment and an image has ``boundaries.sum()`` segments.

Forward values are computed from the detached 0/1 boundaries only (so no floating-point drift of
straight-through values can move a token out of its segment); the straight-through gradient of
the boundaries is attached separately, as a zero-valued term, by one of the estimators below.
"""
import math
from typing import Optional, Tuple

import torch
import torch.nn.functional as F

GRAD_ESTIMATORS = ('local', 'cumsum', 'none')


def close_last_segment(hard: torch.Tensor) -> torch.Tensor:
    """Return a copy of ``hard`` [B, L] with the last position set to 1."""
    hard = hard.clone()
    hard[:, -1] = 1
    return hard


def uniform_boundaries(
        batch_size: int,
        num_tokens: int,
        compression: float,
        device=None,
        dtype=torch.float32,
) -> torch.Tensor:
    """``max(1, floor(L / compression))`` boundaries placed evenly; the last one at ``L - 1``."""
    k = max(1, math.floor(num_tokens / compression))
    ends = torch.div((torch.arange(1, k + 1) * num_tokens), k, rounding_mode='floor') - 1
    row = torch.zeros(num_tokens, dtype=dtype)
    row[ends] = 1
    return row.to(device).expand(batch_size, -1).contiguous()


def segment_ids(hard: torch.Tensor) -> torch.Tensor:
    """Segment index of every token [B, L] (long) from hard 0/1 boundaries with the last closed."""
    hard = hard.detach()
    return (torch.cumsum(hard, dim=1) - hard).long()


def segment_starts(hard: torch.Tensor) -> torch.Tensor:
    """Position of the first token of each token's segment [B, L] (long)."""
    hard = hard.detach()
    L = hard.shape[1]
    pos = torch.arange(L, device=hard.device).expand_as(hard)
    is_start = torch.ones_like(hard, dtype=torch.bool)
    is_start[:, 1:] = hard[:, :-1] > 0
    return torch.where(is_start, pos, torch.zeros_like(pos)).cummax(dim=1).values


def _exclusive_cumsum(x: torch.Tensor) -> torch.Tensor:
    return torch.cumsum(x, dim=1) - x


def assignment(
        hard: torch.Tensor,
        num_segments: int,
        boundary_grad: Optional[torch.Tensor] = None,
        estimator: str = 'local',
) -> torch.Tensor:
    """Token-to-segment weights [B, L, S]: exactly one-hot in value, straight-through in gradient.

    Args:
        hard: detached 0/1 boundaries [B, L], last position 1.
        num_segments: S, the padded segment count (>= the largest ``hard.sum(1)``).
        boundary_grad: a zero-valued tensor [B, L] carrying the boundaries' straight-through
            gradient (``soft - soft.detach()``), or None for a detached assignment.
        estimator: how that gradient reaches the weights.
            'local': each boundary only moves the tokens its flip would move, in the direction that
              flip can go: a 0 splits the rest of its segment off (their weight in the segment
              falls), a 1 merges its right segment into the left one. Later segments are untouched,
              since renumbering them changes nothing after pooling.
            'cumsum': Nawrot et al.'s dynamic pooling; the weight of a token in its own segment
              follows the cumulative boundary count before it.
            'none': no task gradient to the boundaries (the first implementation's behaviour).
    """
    if estimator not in GRAD_ESTIMATORS:
        raise ValueError(f"unknown boundary gradient estimator {estimator!r}; expected one of {GRAD_ESTIMATORS}")
    seg = segment_ids(hard)
    weights = F.one_hot(seg, num_segments).to(hard.dtype if hard.is_floating_point() else torch.float32)
    if boundary_grad is None or estimator == 'none':
        return weights
    if estimator == 'cumsum':
        return weights * (1 + _exclusive_cumsum(boundary_grad)).unsqueeze(-1)

    starts = segment_starts(hard)
    cum = _exclusive_cumsum(boundary_grad)
    # Boundaries strictly inside the token's segment, before it (all 0 now): a flip splits it off.
    inside = cum - cum.gather(1, starts)
    # The boundary that opened the token's segment (1 now): a flip merges into the previous segment.
    opener = boundary_grad.gather(1, (starts - 1).clamp(min=0)) * (starts > 0)
    previous = F.one_hot((seg - 1).clamp(min=0), num_segments).to(weights.dtype)
    return weights * (1 + opener - inside).unsqueeze(-1) - previous * opener.unsqueeze(-1)


def pool_segments(
        x: torch.Tensor,
        hard: torch.Tensor,
        boundary_grad: Optional[torch.Tensor] = None,
        estimator: str = 'local',
        num_segments: Optional[int] = None,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Mean of each segment's tokens, padded to the longest image.

    Args:
        x: tokens [B, L, D].
        hard: detached 0/1 boundaries [B, L] with the last position 1.
        boundary_grad, estimator: see :func:`assignment`.
        num_segments: padded length; default the batch maximum (one host sync).

    Returns:
        pooled [B, S, D] (padded rows are 0) and mask [B, S] (True = real segment).
    """
    counts = hard.detach().sum(dim=1).long()
    if num_segments is None:
        num_segments = int(counts.max()) if counts.numel() else 1
    weights = assignment(hard, num_segments, boundary_grad, estimator).to(x.dtype)
    sums = torch.bmm(weights.transpose(1, 2), x)
    sizes = weights.sum(dim=1)
    mask = torch.arange(num_segments, device=x.device) < counts.unsqueeze(1)
    # Padded segments have size 0: divide by 1 there so they stay exactly 0.
    pooled = sums / torch.where(mask, sizes, torch.ones_like(sizes)).unsqueeze(-1)
    return pooled, mask


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over dim 1 of ``x`` [B, S, D] counting only positions where ``mask`` [B, S] is True."""
    m = mask.to(x.dtype).unsqueeze(-1)
    return (x * m).sum(dim=1) / m.sum(dim=1).clamp(min=1)


def boundary_rate_loss(num_boundaries: torch.Tensor, num_tokens: int, prior: float) -> torch.Tensor:
    """``-log Binomial(k; L, p) / L`` averaged over the batch; ``k`` may carry a gradient."""
    if not 0.0 < prior < 1.0:
        raise ValueError(f'boundary prior must lie in (0, 1), got {prior}')
    k = num_boundaries.float()
    n = float(num_tokens)
    log_prob = (
        math.lgamma(n + 1) - torch.lgamma(k + 1) - torch.lgamma(n - k + 1)
        + k * math.log(prior) + (n - k) * math.log1p(-prior)
    )
    if log_prob.numel() == 0:
        return log_prob.sum()
    return (-log_prob / n).mean()
