"""Image-classification training and validation on timm's utilities (the scripts parse, this runs)."""
import json
import logging
import math
import os
from datetime import datetime
from typing import Any, Dict, Optional, Tuple

import timm
import torch
import torch.nn as nn
from timm.data import Mixup, create_loader, resolve_data_config
from timm.loss import LabelSmoothingCrossEntropy, SoftTargetCrossEntropy
from timm.optim import create_optimizer_v2
from timm.scheduler import create_scheduler_v2
from timm.utils import ModelEmaV3, NativeScaler, get_outdir, init_distributed_device, random_seed, update_summary

from . import checkpoint as ckpt_io
from .cli import parse_kwargs
from .data import ensure_digits_folder, image_folder
from .engine import drip_module, evaluate, resolve_uniform_warmup, train_one_epoch, uniform_warmup

_logger = logging.getLogger('train')

DEFAULT_MODEL = 'drip_nano4_32_2x'
AMP_DTYPES = {'bfloat16': torch.bfloat16, 'float16': torch.float16}


def resolve_model(args) -> Tuple[str, Dict[str, Any], Optional[Dict[str, Any]]]:
    """Model name and keyword arguments from the flags, else from ``--initial-checkpoint`` (then
    also the checkpoint, read once)."""
    kwargs = parse_kwargs(args.model_kwargs)
    if args.model:
        return args.model, kwargs, None
    if args.initial_checkpoint:
        ckpt = ckpt_io.read_checkpoint(args.initial_checkpoint)
        name, recorded = ckpt_io.model_spec(ckpt)
        return name, {**recorded, **kwargs}, ckpt
    return DEFAULT_MODEL, kwargs, None


def create_model(args, num_classes: int) -> Tuple[nn.Module, str, Dict[str, Any]]:
    """The model, its timm name and the keyword arguments a checkpoint must record to rebuild it."""
    name, kwargs, init_ckpt = resolve_model(args)
    if not timm.is_model(name):
        raise ValueError(f'unknown model {name!r} (timm.list_models() lists the known ones)')
    kwargs['num_classes'] = num_classes
    if args.img_size is not None:
        kwargs['img_size'] = args.img_size
    if getattr(args, 'drop_path', None):
        kwargs['drop_path_rate'] = args.drop_path
    model = timm.create_model(name, pretrained=args.pretrained, **kwargs)
    if args.initial_checkpoint:
        missing, unexpected = ckpt_io.load_weights(model, args.initial_checkpoint, strict=False, ckpt=init_ckpt)
        if missing or unexpected:
            _logger.warning(f'initial checkpoint {args.initial_checkpoint}: fresh (missing) {missing or "none"}; '
                            f'unused {unexpected or "none"}')
    kwargs.pop('drop_path_rate', None)
    return model, name, kwargs


def data_root(args, is_primary: bool) -> str:
    if args.data_dir:
        for path, what in ((args.data_dir, 'data directory'), (os.path.join(args.data_dir, args.train_split), 'split folder')):
            if not os.path.isdir(path):
                raise FileNotFoundError(f'{what} not found: {path}')
        return args.data_dir
    root = ensure_digits_folder() if is_primary else None
    if torch.distributed.is_initialized():
        torch.distributed.barrier()
    return str(root or ensure_digits_folder())


def augmentation(args, embedded: bool) -> Dict[str, Any]:
    """timm's train-time augmentation; on the embedded digits, no flips and gentle crops."""
    digits = dict(hflip=0.0, scale=(0.85, 1.0), ratio=(0.9, 1.1), color_jitter=0.0)
    timm_default = dict(hflip=0.5, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3), color_jitter=0.4)
    base = digits if embedded else timm_default
    return {k: (getattr(args, k) if getattr(args, k) is not None else v) for k, v in base.items()}


def eval_loader(dataset, data_config, batch_size: int, workers: int, device, distributed: bool = False):
    """Deterministic evaluation batches, resized and cropped as ``data_config`` says."""
    return create_loader(
        dataset, input_size=data_config['input_size'], batch_size=batch_size, is_training=False,
        interpolation=data_config['interpolation'], mean=data_config['mean'], std=data_config['std'],
        crop_pct=data_config['crop_pct'], num_workers=workers, distributed=distributed, device=device,
        use_prefetcher=False, persistent_workers=False)


def build_loaders(args, model, root: str, device, distributed: bool):
    data_config = resolve_data_config(vars(args), model=model, verbose=False)
    mode = 'L' if data_config['input_size'][0] == 1 else 'RGB'
    train_set = image_folder(root, args.train_split, mode)
    val_set = image_folder(root, args.val_split, mode)
    if train_set.reader.class_to_idx != val_set.reader.class_to_idx:
        raise ValueError(f'{args.train_split} and {args.val_split} have different class folders')
    train_loader = create_loader(
        train_set, input_size=data_config['input_size'], batch_size=args.batch_size, is_training=True,
        interpolation=data_config['interpolation'], mean=data_config['mean'], std=data_config['std'],
        num_workers=args.workers, distributed=distributed, device=device, use_prefetcher=False,
        # Fresh workers each epoch, seeded from the main RNG: a resumed run draws the same augmentations.
        persistent_workers=False, **augmentation(args, embedded=not args.data_dir))
    val_loader = eval_loader(val_set, data_config, args.validation_batch_size or args.batch_size, args.workers,
                             device, distributed)
    return train_loader, val_loader, train_set, data_config


def freeze_backbone(model: nn.Module):
    """Only the classifier trains."""
    head = model.get_classifier()
    for p in model.parameters():
        p.requires_grad = False
    for p in head.parameters():
        p.requires_grad = True


def train(args) -> Dict[str, float]:
    """Run a whole training; returns the final evaluation metrics."""
    if args.device is None:
        args.device = 'cuda' if torch.cuda.is_available() else 'cpu'
    device = init_distributed_device(args)
    primary = args.rank == 0
    log = _logger.info if primary else (lambda *a, **k: None)
    random_seed(args.seed, args.rank)

    root = data_root(args, primary)
    num_classes = args.num_classes or len(
        [d for d in os.listdir(os.path.join(root, args.train_split))
         if os.path.isdir(os.path.join(root, args.train_split, d))])
    model, model_name, model_kwargs = create_model(args, num_classes)
    if args.grad_checkpointing:
        model.set_grad_checkpointing(True)
    if args.freeze_backbone:
        freeze_backbone(model)
    model.to(device)
    if args.channels_last:
        model.to(memory_format=torch.channels_last)
    log(f'model {model_name} {model_kwargs}: {sum(p.numel() for p in model.parameters()) / 1e6:.2f} M params')

    train_loader, val_loader, train_set, data_config = build_loaders(args, model, root, device, args.distributed)

    optimizer = create_optimizer_v2(
        model, opt=args.opt, lr=args.lr, weight_decay=args.weight_decay,
        layer_decay=args.layer_decay, momentum=args.momentum)
    amp_dtype = AMP_DTYPES[args.amp_dtype] if args.amp else None
    loss_scaler = NativeScaler(device=device.type) if amp_dtype == torch.float16 else None

    mixup_fn = None
    if args.mixup > 0 or args.cutmix > 0:
        mixup_fn = Mixup(mixup_alpha=args.mixup, cutmix_alpha=args.cutmix, label_smoothing=args.smoothing,
                         num_classes=num_classes)
        train_loss_fn = SoftTargetCrossEntropy()
    elif args.smoothing:
        train_loss_fn = LabelSmoothingCrossEntropy(smoothing=args.smoothing)
    else:
        train_loss_fn = nn.CrossEntropyLoss()

    model_ema = ModelEmaV3(model, decay=args.model_ema_decay, device=device) if args.model_ema else None

    drip = drip_module(model)
    args.uniform_warmup_epochs = resolve_uniform_warmup(
        args.uniform_warmup_epochs, drip, args.epochs, args.uniform_fade_epochs)
    train_model = model
    if args.distributed:
        unused = drip is not None and drip.boundary_mode == 'uniform'  # the predictor runs without a gradient
        train_model = nn.parallel.DistributedDataParallel(
            model, device_ids=[device] if device.type == 'cuda' else None, find_unused_parameters=unused)

    updates_per_epoch = max(1, math.ceil(len(train_loader) / args.grad_accum_steps))
    lr_scheduler, num_epochs = create_scheduler_v2(
        optimizer, sched=args.sched, num_epochs=args.epochs, warmup_epochs=args.warmup_epochs,
        warmup_lr=args.warmup_lr, min_lr=args.min_lr, updates_per_epoch=updates_per_epoch, step_on_epochs=False)

    exp_name = args.experiment or '-'.join([datetime.now().strftime('%Y%m%d-%H%M%S'), model_name])
    output_dir = get_outdir(args.output, exp_name) if primary else None
    if primary:
        with open(os.path.join(output_dir, 'args.json'), 'w') as f:
            json.dump(vars(args), f, indent=2, default=str)

    def extra_state():
        return {'scheduler': lr_scheduler.state_dict(), 'rng': ckpt_io.rng_state(),
                'args': json.loads(json.dumps(vars(args), default=str)), 'data_config': dict(data_config)}

    saver = None
    if primary:
        saver = ckpt_io.TrainingCheckpointSaver(
            model, optimizer, model_name=model_name, model_kwargs=model_kwargs, extra_state=extra_state,
            model_ema=model_ema, amp_scaler=loss_scaler, checkpoint_dir=output_dir, recovery_dir=output_dir,
            max_history=args.checkpoint_hist)

    start_epoch = 0
    if args.resume:
        state = ckpt_io.read_checkpoint(args.resume)
        ckpt_io.load_weights(model, args.resume, ckpt=state)
        optimizer.load_state_dict(state['optimizer'])
        lr_scheduler.load_state_dict(state['scheduler'])
        if model_ema is not None and 'state_dict_ema' in state:
            model_ema.module.load_state_dict(state['state_dict_ema'])
        if loss_scaler is not None and loss_scaler.state_dict_key in state:
            loss_scaler.load_state_dict(state[loss_scaler.state_dict_key])
        if saver is not None and 'saver' in state:
            saver.load_state_dict(state['saver'])
        start_epoch = state['epoch'] + 1
        ckpt_io.set_rng_state(state['rng'])
        log(f'resumed from {args.resume} at epoch {start_epoch}')
    if start_epoch > 0:
        lr_scheduler.step(start_epoch)

    eval_metrics: Dict[str, float] = {}
    num_updates = start_epoch * updates_per_epoch
    for epoch in range(start_epoch, num_epochs):
        if args.distributed and hasattr(train_loader.sampler, 'set_epoch'):
            train_loader.sampler.set_epoch(epoch)
        uniform_warmup(model, epoch, args.uniform_warmup_epochs, args.uniform_fade_epochs)
        skipped_before = train_set.skipped
        train_metrics = train_one_epoch(
            epoch, train_model, train_loader, optimizer, train_loss_fn, device, lr_scheduler=lr_scheduler,
            amp_dtype=amp_dtype, loss_scaler=loss_scaler, model_ema=model_ema, mixup_fn=mixup_fn,
            clip_grad=args.clip_grad, clip_mode=args.clip_mode, grad_accum_steps=args.grad_accum_steps,
            channels_last=args.channels_last, log_interval=args.log_interval, num_updates_start=num_updates,
            world_size=args.world_size, log=log)
        num_updates = int(train_metrics.pop('num_updates'))
        train_metrics['skipped_images'] = train_set.skipped - skipped_before
        if train_metrics['skipped_images']:
            log(f'epoch {epoch}: skipped {train_metrics["skipped_images"]} unreadable images')
        eval_metrics = evaluate(model, val_loader, device, amp_dtype=amp_dtype,
                                channels_last=args.channels_last, distributed=args.distributed)
        if model_ema is not None:
            ema_metrics = evaluate(model_ema.module, val_loader, device, amp_dtype=amp_dtype,
                                   channels_last=args.channels_last, distributed=args.distributed)
            eval_metrics.update({f'ema_{k}': v for k, v in ema_metrics.items()})
        lr_scheduler.step(epoch + 1, eval_metrics['top1'])
        tokens = f'  tokens {eval_metrics["tokens"]:.1f}' if 'tokens' in eval_metrics else ''
        log(f'Eval {epoch}: top1 {eval_metrics["top1"]:.2f}  top5 {eval_metrics["top5"]:.2f}{tokens}  '
            f'step {train_metrics["step_s"] * 1000:.1f} ms  peak mem {train_metrics["peak_mem_mb"]:.0f} MB')
        if primary:
            update_summary(epoch, train_metrics, eval_metrics, os.path.join(output_dir, 'summary.csv'),
                           lr=optimizer.param_groups[0]['lr'])
            saver.save_checkpoint(epoch, metric=eval_metrics['top1'])
    if primary and saver is not None and saver.best_metric is not None:
        log(f'best top1 {saver.best_metric:.2f} (epoch {saver.best_epoch}); checkpoints in {output_dir}')
    if args.distributed:
        torch.distributed.barrier()
    return eval_metrics


def validate(args) -> Dict[str, Any]:
    """Evaluate a model (or a checkpoint alone) on an ImageFolder split; timm validate.py's keys."""
    from .flops import count_gmacs
    device = torch.device(args.device or ('cuda' if torch.cuda.is_available() else 'cpu'))
    overrides = parse_kwargs(args.model_kwargs)
    if args.num_classes is not None:
        overrides['num_classes'] = args.num_classes
    if args.img_size is not None:
        overrides['img_size'] = args.img_size
    ckpt = ckpt_io.read_checkpoint(args.checkpoint) if args.checkpoint else None
    if ckpt is not None and not args.model:
        name, recorded = ckpt_io.model_spec(ckpt)
        overrides = {**recorded, **overrides}
    else:
        name = args.model or DEFAULT_MODEL
    if not timm.is_model(name):
        raise ValueError(f'unknown model {name!r} (timm.list_models() lists the known ones)')
    model = timm.create_model(name, pretrained=args.pretrained, **overrides)
    if ckpt is not None:
        ckpt_io.load_weights(model, args.checkpoint, use_ema=args.use_ema, ckpt=ckpt)
    model.to(device).eval()

    root = args.data_dir or str(ensure_digits_folder())
    data_config = resolve_data_config(vars(args), model=model, verbose=False)
    mode = 'L' if data_config['input_size'][0] == 1 else 'RGB'
    dataset = image_folder(root, args.split, mode)
    loader = eval_loader(dataset, data_config, args.batch_size, args.workers, device)
    amp_dtype = AMP_DTYPES[args.amp_dtype] if args.amp else None
    metrics = evaluate(model, loader, device, amp_dtype=amp_dtype)

    images = torch.stack([dataset[i][0] for i in range(min(args.gmacs_images, len(dataset)))]).to(device)
    results = {
        'model': name,
        'top1': round(metrics['top1'], 4), 'top1_err': round(100 - metrics['top1'], 4),
        'top5': round(metrics['top5'], 4), 'top5_err': round(100 - metrics['top5'], 4),
        'param_count': round(sum(p.numel() for p in model.parameters()) / 1e6, 4),
        'img_size': data_config['input_size'][-1],
        'crop_pct': data_config['crop_pct'],
        'interpolation': data_config['interpolation'],
        'infer_img_s': round(metrics['img_s'], 2),
        'gmacs': round(count_gmacs(model, images, mode=None), 6),
        'skipped_images': dataset.skipped,
    }
    if drip_module(model) is not None:
        results['tokens'] = round(metrics['tokens'], 3)
        results['boundary_rate'] = round(metrics['boundary_rate'], 5)
        results['gmacs_uniform'] = round(count_gmacs(model, images[:1], mode='uniform'), 6)
    return results


def write_results(results: Dict[str, Any], path: str, fmt: str = 'json'):
    import csv
    if fmt == 'csv':
        with open(path, 'w', newline='') as f:
            writer = csv.DictWriter(f, fieldnames=list(results))
            writer.writeheader()
            writer.writerow(results)
    else:
        with open(path, 'w') as f:
            json.dump(results, f, indent=2)
