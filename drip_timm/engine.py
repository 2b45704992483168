"""One training epoch and one evaluation pass for classification, with DRIP's figures beside timm's."""
import logging
import math
import resource
import time
from contextlib import nullcontext
from typing import Callable, Dict, Optional

import torch
import torch.nn as nn
from timm.utils import AverageMeter, accuracy, dispatch_clip_grad, reduce_tensor, unwrap_model

from .drip_vit import DripVisionTransformer

_logger = logging.getLogger(__name__)


def drip_module(model: nn.Module) -> Optional[DripVisionTransformer]:
    """The DRIP model inside ``model`` (DDP, EMA, compile or CLIP wrappers), or None."""
    model = unwrap_model(model)
    if isinstance(model, DripVisionTransformer):
        return model
    for m in model.modules():
        if isinstance(m, DripVisionTransformer):
            return m
    return None


def add_uniform_warmup_args(parser):
    """The warm-start flags both training scripts share (read by ``resolve_uniform_warmup``)."""
    parser.add_argument('--uniform-warmup-epochs', type=int, default=None,
                        help='DRIP warm start: uniform boundaries (the predictor learning to reproduce them) for '
                             'the first N epochs (default: a third of --epochs for learned boundaries, else 0)')
    parser.add_argument('--uniform-fade-epochs', type=int, default=0,
                        help='after the warm start, pull the predictor towards uniform boundaries with a weight '
                             'fading linearly to 0 over N epochs')


def resolve_uniform_warmup(requested: Optional[int], drip: Optional[DripVisionTransformer], epochs: int,
                           fade_epochs: int = 0) -> int:
    """Warm-up epochs: by default a third of the run for a DRIP model with learned boundaries,
    none for any other model; asking for a warm start or a fade without such a model is an error."""
    learned = drip is not None and drip.boundary_mode == 'learned'
    if fade_epochs < 0 or (requested or 0) < 0:
        raise ValueError('--uniform-warmup-epochs and --uniform-fade-epochs must be >= 0')
    if fade_epochs > 0 and not learned:
        raise ValueError('--uniform-fade-epochs needs a DRIP model with learned boundaries')
    if requested is None:
        return epochs // 3 if learned else 0
    if requested > 0 and not learned:
        raise ValueError('--uniform-warmup-epochs needs a DRIP model with learned boundaries')
    return requested


def uniform_warmup(model: nn.Module, epoch: int, warmup_epochs: int, fade_epochs: int = 0):
    """Warm start for learned boundaries: for the first ``warmup_epochs`` the blocks train on
    uniform boundaries while the predictor learns to reproduce them; then the predictor places the
    boundaries, its pull towards uniform ones fading linearly to nothing over ``fade_epochs``."""
    drip = drip_module(model)
    if drip is None or warmup_epochs + fade_epochs <= 0:
        return
    if epoch < warmup_epochs:
        drip.configure_boundaries(boundary_mode='uniform', imitate_uniform=1.0)
    else:
        pull = max(0.0, 1.0 - (epoch - warmup_epochs + 1) / (fade_epochs + 1))
        drip.configure_boundaries(boundary_mode='learned', imitate_uniform=pull)


def peak_memory_mb(device: torch.device) -> float:
    """Peak memory of this process: CUDA allocator peak on GPU, peak RSS on CPU."""
    if device.type == 'cuda':
        return torch.cuda.max_memory_allocated(device) / 2 ** 20
    try:  # Linux: the high-water mark that reset_peak_rss() can reset
        with open('/proc/self/status') as f:
            for line in f:
                if line.startswith('VmHWM:'):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def reset_peak_rss():
    """Reset this process's peak-RSS mark where Linux allows it (a forked child starts with its
    parent's)."""
    try:
        with open('/proc/self/clear_refs', 'w') as f:
            f.write('5')
    except OSError:
        pass


def autocast_for(device: torch.device, amp_dtype: Optional[torch.dtype]):
    if amp_dtype is None:
        return nullcontext()
    return torch.autocast(device_type=device.type, dtype=amp_dtype)


def _sync(device: torch.device):
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def train_one_epoch(
        epoch: int,
        model: nn.Module,
        loader,
        optimizer: torch.optim.Optimizer,
        loss_fn: Callable,
        device: torch.device,
        lr_scheduler=None,
        amp_dtype: Optional[torch.dtype] = None,
        loss_scaler=None,
        model_ema=None,
        mixup_fn=None,
        clip_grad: Optional[float] = None,
        clip_mode: str = 'norm',
        grad_accum_steps: int = 1,
        channels_last: bool = False,
        log_interval: int = 50,
        num_updates_start: int = 0,
        world_size: int = 1,
        log: Callable[[str], None] = _logger.info,
) -> Dict[str, float]:
    """Train one epoch; the DRIP rate loss is added to the task loss explicitly.

    Returns timm's ``loss`` plus ``boundary_loss``, ``boundary_rate``, ``tokens`` (segments kept per
    image), ``step_s`` (mean seconds per optimizer step: forward, backward and update) and
    ``peak_mem_mb``.
    """
    drip = drip_module(model)
    if drip is not None:
        drip.inject_boundary_loss = False
    meters = {k: AverageMeter() for k in ('loss', 'boundary_loss', 'boundary_rate', 'tokens', 'step_s')}
    model.train()
    if device.type == 'cuda':
        torch.cuda.reset_peak_memory_stats(device)
    num_batches = len(loader)
    num_updates_per_epoch = max(1, math.ceil(num_batches / grad_accum_steps))
    num_updates = num_updates_start
    optimizer.zero_grad()
    step_start = time.perf_counter()
    epoch_start = step_start
    for batch_idx, (x, target) in enumerate(loader):
        last_batch = batch_idx == num_batches - 1
        need_update = last_batch or (batch_idx + 1) % grad_accum_steps == 0
        accum = grad_accum_steps if not last_batch or num_batches % grad_accum_steps == 0 \
            else num_batches % grad_accum_steps
        x, target = x.to(device), target.to(device)
        if mixup_fn is not None:
            x, target = mixup_fn(x, target)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)

        no_sync = getattr(model, 'no_sync', None)
        with (no_sync() if no_sync is not None and not need_update else nullcontext()):
            with autocast_for(device, amp_dtype):
                output = model(x)
                task_loss = loss_fn(output, target)
                loss = task_loss
                if drip is not None:
                    loss = loss + drip.boundary_loss
            if loss_scaler is not None:
                loss_scaler(loss / accum, optimizer, clip_grad=clip_grad, clip_mode=clip_mode,
                            parameters=model.parameters(), need_update=need_update)
            else:
                (loss / accum).backward()
                if need_update:
                    if clip_grad is not None:
                        dispatch_clip_grad(model.parameters(), clip_grad, mode=clip_mode)
                    optimizer.step()

        n = x.shape[0]
        meters['loss'].update(task_loss.item(), n)
        if drip is not None:
            meters['boundary_loss'].update(drip.boundary_loss.item(), n)
            meters['boundary_rate'].update(drip.boundary_rate.item(), n)
            meters['tokens'].update(drip.boundary_rate.item() * drip.num_patches, n)
        if not need_update:
            continue
        optimizer.zero_grad()
        if model_ema is not None:
            model_ema.update(model, step=num_updates)
        num_updates += 1
        _sync(device)
        now = time.perf_counter()
        meters['step_s'].update(now - step_start)
        step_start = now
        if lr_scheduler is not None:
            lr_scheduler.step_update(num_updates=num_updates, metric=meters['loss'].avg)
        update_idx = num_updates - num_updates_start
        if update_idx % log_interval == 0 or last_batch:
            lr = optimizer.param_groups[0]['lr']
            elapsed = now - epoch_start
            eta = elapsed / update_idx * (num_updates_per_epoch - update_idx)
            rate = f'  rate {meters["boundary_rate"].avg:.3f}  tokens {meters["tokens"].avg:.1f}' if drip else ''
            log(f'Train {epoch} [{update_idx:>4d}/{num_updates_per_epoch}]  loss {meters["loss"].val:.4f} '
                f'({meters["loss"].avg:.4f}){rate}  {n * world_size / meters["step_s"].val:.1f} img/s  '
                f'lr {lr:.3g}  eta {eta:.0f}s')

    metrics = {k: m.avg for k, m in meters.items()}
    if drip is None:
        for k in ('boundary_loss', 'boundary_rate', 'tokens'):
            metrics.pop(k)
    metrics['peak_mem_mb'] = peak_memory_mb(device)
    metrics['num_updates'] = num_updates
    return metrics


@torch.no_grad()
def evaluate(
        model: nn.Module,
        loader,
        device: torch.device,
        loss_fn: Callable = nn.CrossEntropyLoss(),
        amp_dtype: Optional[torch.dtype] = None,
        channels_last: bool = False,
        distributed: bool = False,
) -> Dict[str, float]:
    """top1, top5 (percent), loss, images/s and, for DRIP, mean boundary rate and tokens kept."""
    drip = drip_module(model)
    model.eval()
    sums = torch.zeros(5, dtype=torch.float64)  # loss, top1, top5, tokens, count
    start = time.perf_counter()
    for x, target in loader:
        x, target = x.to(device), target.to(device)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with autocast_for(device, amp_dtype):
            output = model(x)
        output = output.float()
        n = x.shape[0]
        k = min(5, output.shape[-1])
        top1, top5 = accuracy(output, target, topk=(1, k))
        tokens = drip.boundary_rate.item() * drip.num_patches if drip is not None else 0.0
        sums += torch.tensor([loss_fn(output, target).item() * n, top1.item() * n, top5.item() * n, tokens * n, n],
                             dtype=torch.float64)
    _sync(device)
    elapsed = time.perf_counter() - start
    if distributed:
        sums = reduce_tensor(sums.to(device), 1).cpu()
    count = max(sums[4].item(), 1)
    metrics = {
        'loss': sums[0].item() / count,
        'top1': sums[1].item() / count,
        'top5': sums[2].item() / count,
        'img_s': count / elapsed,
    }
    if drip is not None:
        metrics['tokens'] = sums[3].item() / count
        metrics['boundary_rate'] = metrics['tokens'] / drip.num_patches
    return metrics
