"""CLIP pretraining with a DRIP image tower: a thin loop on OpenCLIP's model, loss, schedule and
zero-shot classifier, run by ``train_clip.py``. Layout as OpenCLIP's: ``<logs>/<name>/out.log``,
``results.jsonl``, ``checkpoints/epoch_<n>.pt`` and ``epoch_latest.pt``."""
import json
import logging
import math
import os
import time
from datetime import datetime
from typing import Any, Dict

import open_clip
import torch
import torch.nn as nn
from open_clip_train.scheduler import const_lr, cosine_lr
from timm.utils import AverageMeter, get_state_dict, init_distributed_device, random_seed

from . import checkpoint as ckpt_io
from .clip import DIGIT_TRAIN_TEMPLATES, zero_shot_eval, zero_shot_names
from .cli import parse_kwargs
from .clip_data import CaptionedDigits, CountingCsvDataset, map_loader, webdataset_loader
from .data import ensure_digits_folder, image_folder
from .engine import autocast_for, drip_module, peak_memory_mb, resolve_uniform_warmup, uniform_warmup

_logger = logging.getLogger('train_clip')

PRECISIONS = {'fp32': None, 'amp': torch.float16, 'amp_bf16': torch.bfloat16, 'amp_bfloat16': torch.bfloat16}


def _param_groups(model: nn.Module, wd: float):
    """OpenCLIP's split: no weight decay on gains, biases, embeddings and the logit scale."""
    def exclude(n, p):
        return p.ndim < 2 or 'bn' in n or 'ln' in n or 'bias' in n or 'logit_scale' in n or 'embed' in n or 'token' in n
    params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    return [
        {'params': [p for n, p in params if exclude(n, p)], 'weight_decay': 0.0},
        {'params': [p for n, p in params if not exclude(n, p)], 'weight_decay': wd},
    ]


def build_train_data(args, preprocess, tokenizer):
    if args.train_data is None:
        dataset = CaptionedDigits(preprocess, tokenizer, DIGIT_TRAIN_TEMPLATES)
        return map_loader(dataset, args.batch_size, args.workers, args.distributed)
    kind = args.dataset_type
    if kind == 'auto':
        kind = 'csv' if args.train_data.endswith(('.csv', '.tsv')) else 'webdataset'
    if kind == 'csv':
        dataset = CountingCsvDataset(args.train_data, preprocess, tokenizer, args.csv_img_key,
                                     args.csv_caption_key, args.csv_separator)
        return map_loader(dataset, args.batch_size, args.workers, args.distributed, dataset.skipped)
    if kind == 'webdataset':
        return webdataset_loader(args.train_data, preprocess, tokenizer, args.batch_size, args.train_num_samples,
                                 args.workers, args.world_size, args.seed, resampled=args.dataset_resampled)
    raise ValueError(f'unknown --dataset-type {args.dataset_type!r}')


def build_zero_shot_data(args, preprocess, primary: bool):
    """(loader, classnames, templates) for --imagenet-val, or the held-out digits by default;
    None on all but the primary process, which alone evaluates."""
    if not primary:
        return None
    root = args.imagenet_val or os.path.join(ensure_digits_folder(), 'val')
    dataset = image_folder(os.path.dirname(os.path.abspath(root)), os.path.basename(os.path.abspath(root)))
    dataset.transform = preprocess
    classes = sorted(dataset.reader.class_to_idx, key=dataset.reader.class_to_idx.get)
    classnames, templates = zero_shot_names(classes)
    loader = torch.utils.data.DataLoader(dataset, batch_size=args.batch_size, num_workers=args.workers)
    return loader, classnames, templates


def _checkpoint_state(args, epoch, model, optimizer, scaler, step) -> Dict[str, Any]:
    return {
        'epoch': epoch + 1,  # OpenCLIP's convention: the number of completed epochs
        'step': step,
        'name': args.name,
        'clip_model': args.model,
        'state_dict': get_state_dict(model),
        'optimizer': optimizer.state_dict(),
        'scaler': scaler.state_dict() if scaler is not None else None,
        'rng': ckpt_io.rng_state(),
        'args': json.loads(json.dumps(vars(args), default=str)),
    }


def train(args) -> Dict[str, float]:
    if args.device is None:
        args.device = 'cuda' if torch.cuda.is_available() else 'cpu'
    device = init_distributed_device(args)
    primary = args.rank == 0
    random_seed(args.seed, args.rank)
    if args.name is None:
        args.name = '-'.join([datetime.now().strftime('%Y_%m_%d-%H_%M_%S'), f'model_{args.model}',
                              f'lr_{args.lr}', f'b_{args.batch_size}', f'p_{args.precision}'])
    run_dir = os.path.join(args.logs, args.name)
    ckpt_dir = os.path.join(run_dir, 'checkpoints')
    for old in [h for h in _logger.handlers if isinstance(h, logging.FileHandler)]:  # a previous run's
        _logger.removeHandler(old)
        old.close()
    if primary:
        os.makedirs(ckpt_dir, exist_ok=True)
        handler = logging.FileHandler(os.path.join(run_dir, 'out.log'))
        handler.setFormatter(logging.Formatter('%(asctime)s | %(message)s'))
        _logger.addHandler(handler)
    log = _logger.info if primary else (lambda *a, **k: None)

    if args.model not in open_clip.list_models():
        raise ValueError(f'unknown CLIP model {args.model!r} (open_clip.list_models() lists the known ones)')
    model, preprocess_train, preprocess_val = open_clip.create_model_and_transforms(
        args.model, pretrained=args.pretrained, device=device, output_dict=True)
    tokenizer = open_clip.get_tokenizer(args.model)
    if args.grad_checkpointing:
        model.set_grad_checkpointing()
    drip = drip_module(model.visual)
    if args.drip_kwargs:
        if drip is None:
            raise ValueError(f'--drip-kwargs given, but {args.model} has no DRIP image tower')
        drip.configure_boundaries(**parse_kwargs(args.drip_kwargs))
    args.uniform_warmup_epochs = resolve_uniform_warmup(
        args.uniform_warmup_epochs, drip, args.epochs, args.uniform_fade_epochs)
    if drip is not None:
        drip.inject_boundary_loss = False  # added to the objective explicitly below
    log(f'CLIP model {args.model}: {sum(p.numel() for p in model.parameters()) / 1e6:.2f} M params')

    data = build_train_data(args, preprocess_train, tokenizer)
    zs = build_zero_shot_data(args, preprocess_val, primary)

    train_model = model
    if args.distributed:
        unused = drip is not None and drip.boundary_mode == 'uniform'
        train_model = nn.parallel.DistributedDataParallel(
            model, device_ids=[device] if device.type == 'cuda' else None, find_unused_parameters=unused)
    optimizer = torch.optim.AdamW(_param_groups(model, args.wd), lr=args.lr, betas=(args.beta1, args.beta2),
                                  eps=args.eps)
    amp_dtype = PRECISIONS[args.precision]
    scaler = torch.amp.GradScaler(device.type) if amp_dtype == torch.float16 else None
    total_steps = data.num_batches * args.epochs
    scheduler = (cosine_lr if args.lr_scheduler == 'cosine' else const_lr)(
        optimizer, args.lr, args.warmup, total_steps)
    loss_fn = open_clip.ClipLoss(local_loss=args.local_loss, gather_with_grad=args.gather_with_grad,
                                 cache_labels=True, rank=args.rank, world_size=args.world_size)

    start_epoch = 0
    if args.resume:
        path = os.path.join(ckpt_dir, 'epoch_latest.pt') if args.resume == 'latest' else args.resume
        state = ckpt_io.read_checkpoint(path)
        model.load_state_dict(ckpt_io.strip_prefix(state['state_dict'], 'module.'))
        optimizer.load_state_dict(state['optimizer'])
        if scaler is not None and state.get('scaler'):
            scaler.load_state_dict(state['scaler'])
        ckpt_io.set_rng_state(state['rng'])
        start_epoch = state['epoch']
        log(f'resumed from {path} after epoch {start_epoch}')

    metrics: Dict[str, float] = {}
    for epoch in range(start_epoch, args.epochs):
        data.set_epoch(epoch)
        uniform_warmup(model, epoch, args.uniform_warmup_epochs, args.uniform_fade_epochs)
        stats = train_one_epoch(args, train_model, drip, data, optimizer, scaler, scheduler, loss_fn, epoch,
                                device, amp_dtype, log)
        metrics = {'epoch': epoch + 1, **stats}
        completed = epoch + 1
        if zs is not None and (completed % args.zeroshot_frequency == 0 or completed == args.epochs):
            loader, classnames, templates = zs
            metrics.update(zero_shot_eval(model, tokenizer, loader, classnames, templates, device, amp_dtype))
        if primary:
            log(' '.join(f'{k}: {v:.4f}' if isinstance(v, float) else f'{k}: {v}' for k, v in metrics.items()))
            with open(os.path.join(run_dir, 'results.jsonl'), 'a+') as f:
                f.write(json.dumps(metrics) + '\n')
            state = _checkpoint_state(args, epoch, model, optimizer, scaler, completed * data.num_batches)
            if completed == args.epochs or (args.save_frequency > 0 and completed % args.save_frequency == 0):
                ckpt_io.atomic_save(state, os.path.join(ckpt_dir, f'epoch_{completed}.pt'))
            ckpt_io.atomic_save(state, os.path.join(ckpt_dir, 'epoch_latest.pt'))
    if args.distributed:
        torch.distributed.barrier()
    return metrics


def train_one_epoch(args, model, drip, data, optimizer, scaler, scheduler, loss_fn, epoch, device, amp_dtype,
                    log) -> Dict[str, float]:
    model.train()
    meters = {k: AverageMeter() for k in ('loss', 'clip_loss', 'boundary_loss', 'boundary_rate', 'tokens', 'step_s')}
    if device.type == 'cuda':
        torch.cuda.reset_peak_memory_stats(device)
    skipped_before = data.skipped.value
    start = last = time.perf_counter()
    num_batches = data.num_batches
    for i, (images, texts) in enumerate(data.loader):
        if i >= num_batches:
            break
        step = epoch * num_batches + i
        scheduler(step)
        images, texts = images.to(device), texts.to(device)
        with autocast_for(device, amp_dtype):
            out = model(images, texts)
            clip_loss = loss_fn(out['image_features'], out['text_features'], out['logit_scale'])
            loss = clip_loss + (drip.boundary_loss if drip is not None else 0.0)
        optimizer.zero_grad()
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
        else:
            loss.backward()
            optimizer.step()
        unwrapped = model.module if hasattr(model, 'module') else model
        with torch.no_grad():
            unwrapped.logit_scale.clamp_(0, math.log(100))
        if device.type == 'cuda':
            torch.cuda.synchronize(device)
        now = time.perf_counter()
        n = images.shape[0]
        meters['step_s'].update(now - last)
        last = now
        meters['loss'].update(loss.item(), n)
        meters['clip_loss'].update(clip_loss.item(), n)
        if drip is not None:
            meters['boundary_loss'].update(drip.boundary_loss.item(), n)
            meters['boundary_rate'].update(drip.boundary_rate.item(), n)
            meters['tokens'].update(drip.boundary_rate.item() * drip.num_patches, n)
        if (i + 1) % args.log_every_n_steps == 0 or i + 1 == num_batches:
            eta = (now - start) / (i + 1) * (num_batches - i - 1)
            rate = f' rate {meters["boundary_rate"].avg:.3f} tokens {meters["tokens"].avg:.1f}' if drip else ''
            log(f'Train Epoch: {epoch} [{i + 1}/{num_batches}] Loss: {meters["loss"].val:.4f} '
                f'({meters["loss"].avg:.4f}){rate} {n * args.world_size / meters["step_s"].val:.1f} samples/s '
                f'lr {optimizer.param_groups[0]["lr"]:.3g} eta {eta:.0f}s')
    stats = {f'train_{k}': m.avg for k, m in meters.items() if drip is not None or 'boundary' not in k and k != 'tokens'}
    stats['train_peak_mem_mb'] = peak_memory_mb(device)
    stats['train_skipped_samples'] = data.skipped.value - skipped_before
    return stats
