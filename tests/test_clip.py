"""CLIP with DRIP towers: OpenCLIP configs, train_clip.py on real shards/CSV, zero-shot, resume, DDP."""
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import open_clip
import pytest
import torch
import webdataset as wds
from PIL import Image

import train_clip
import train_imagenet
from drip_timm.checkpoint import create_model_from_checkpoint, read_checkpoint
from drip_timm.data import DIGIT_NAMES, digits_split

REPO = Path(__file__).resolve().parents[1]
FAST = ['--batch-size', '8', '--workers', '0', '--log-every-n-steps', '1', '--warmup', '2']


def png_bytes(img):
    buf = io.BytesIO()
    Image.fromarray(img).convert('RGB').save(buf, format='PNG')
    return buf.getvalue()


@pytest.fixture(scope='module')
def shards(tmp_path_factory):
    """Two real webdataset shards of captioned digits; the first holds one corrupt image."""
    root = tmp_path_factory.mktemp('shards')
    train, _ = digits_split()
    for s in range(2):
        with wds.TarWriter(str(root / f'shard-{s:05d}.tar')) as sink:
            for i, (img, label) in enumerate(train[s * 20:(s + 1) * 20]):
                sink.write({'__key__': f'{s}_{i:04d}', 'png': png_bytes(img),
                            'txt': f'a handwritten {DIGIT_NAMES[label]}.'})
            if s == 0:
                sink.write({'__key__': 'broken', 'png': b'\x89PNG\r\n\x1a\n not an image', 'txt': 'broken'})
    return root


@pytest.fixture(scope='module')
def csv_file(tmp_path_factory):
    """16 captioned digits as image files and an OpenCLIP-style tab-separated CSV."""
    root = tmp_path_factory.mktemp('csv')
    train, _ = digits_split()
    rows = ['filepath\ttitle']
    for i, (img, label) in enumerate(train[:16]):
        Image.fromarray(img).save(root / f'{i}.png')
        rows.append(f'{i}.png\tthe digit {DIGIT_NAMES[label]}.')
    (root / 'train.csv').write_text('\n'.join(rows) + '\n')
    return root / 'train.csv'


def results(run_dir):
    return [json.loads(line) for line in (run_dir / 'results.jsonl').read_text().splitlines()]


def test_configs_register_on_import():
    names = open_clip.list_models()
    for n in ['DRIP-2X-32', 'DRIP-4X-32', 'DRIP-10X-32', 'DRIP-2X-16', 'DRIP-4X-16', 'DRIP-10X-16',
              'DRIP-4X-32-2p16', 'DRIP-4X-16-4p8', 'DRIP-2X-nano4-32', 'ViT-nano4-32']:
        assert n in names
    assert open_clip.get_model_config('DRIP-4X-32-2p16')['vision_cfg']['timm_model_name'] == 'drip_b32_4x_2p16'
    assert open_clip.get_tokenizer('DRIP-2X-16')(['a photo']).shape == (1, 77)


def test_b16_clip_tower_forward():
    model = open_clip.create_model('DRIP-2X-16').eval()
    with torch.no_grad():
        feats = model.encode_image(torch.randn(1, 3, 224, 224))
    assert feats.shape == (1, 512)


def test_drip_clip_loss_includes_the_boundary_term():
    torch.manual_seed(0)
    model = open_clip.create_model('DRIP-2X-nano4-32', output_dict=True).train()
    tokenizer = open_clip.get_tokenizer('DRIP-2X-nano4-32')
    drip = model.visual.trunk
    drip.inject_boundary_loss = False
    out = model(torch.randn(6, 3, 32, 32), tokenizer([f'a handwritten {n}.' for n in DIGIT_NAMES[:6]]))
    clip_loss = open_clip.ClipLoss()(out['image_features'], out['text_features'], out['logit_scale'])
    loss = clip_loss + drip.boundary_loss
    assert drip.boundary_loss.item() > 0 and loss.item() > clip_loss.item()
    loss.backward()
    assert drip.boundary_predictor.mlp.fc1.weight.grad.abs().sum() > 0
    assert model.text.token_embedding.weight.grad.abs().sum() > 0 if hasattr(model, 'text') else \
        model.token_embedding.weight.grad.abs().sum() > 0


def test_train_on_webdataset_shards_with_a_corrupt_sample(shards, tiny_folder, tmp_path):
    args = ['--train-data', str(shards / 'shard-{00000..00001}.tar'), '--train-num-samples', '40',
            '--epochs', '1', '--logs', str(tmp_path), '--name', 'wds', '--imagenet-val', str(tiny_folder / 'val'),
            *FAST]
    assert train_clip.main(args) == 0
    [row] = results(tmp_path / 'wds')
    assert row['train_skipped_samples'] >= 1
    assert 0 < row['train_boundary_rate'] <= 1 and row['train_step_s'] > 0 and row['train_peak_mem_mb'] > 0
    assert 0 <= row['zeroshot-top1'] <= 100 and row['zeroshot-top5'] == 100.0  # 3 classes: top-5 is all
    ckpt = read_checkpoint(tmp_path / 'wds' / 'checkpoints' / 'epoch_1.pt')
    assert ckpt['clip_model'] == 'DRIP-2X-nano4-32' and ckpt['epoch'] == 1


def test_train_on_csv(csv_file, tmp_path):
    args = ['--train-data', str(csv_file), '--epochs', '1', '--logs', str(tmp_path),
            '--name', 'csv', '--zeroshot-frequency', '5', *FAST]
    assert train_clip.main(args) == 0
    [row] = results(tmp_path / 'csv')
    assert 'zeroshot-top1' in row  # the last epoch always evaluates (held-out digits by default)
    assert row['train_skipped_samples'] == 0


def test_resume_continues_the_run(csv_file, tmp_path):
    common = ['--epochs', '2', '--train-data', str(csv_file), *FAST]
    full = ['--logs', str(tmp_path), '--name', 'full', '--zeroshot-frequency', '5', *common]
    assert train_clip.main(full) == 0
    ckpt_dir = tmp_path / 'full' / 'checkpoints'
    first = read_checkpoint(ckpt_dir / 'epoch_latest.pt')
    assert first['epoch'] == 2
    # A run stopped after epoch 1: rebuild its checkpoint by training one epoch of a 2-epoch schedule.
    part = ['--logs', str(tmp_path), '--name', 'part', '--zeroshot-frequency', '5', '--save-frequency', '1', *common]
    assert train_clip.main(part) == 0
    resumed = ['--logs', str(tmp_path), '--name', 'resumed', '--zeroshot-frequency', '5',
               '--resume', str(tmp_path / 'part' / 'checkpoints' / 'epoch_1.pt'), *common]
    assert train_clip.main(resumed) == 0
    a = read_checkpoint(ckpt_dir / 'epoch_latest.pt')['state_dict']
    b = read_checkpoint(tmp_path / 'resumed' / 'checkpoints' / 'epoch_latest.pt')['state_dict']
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert [r['epoch'] for r in results(tmp_path / 'resumed')] == [2]


def test_clip_checkpoint_fine_tunes_as_a_timm_backbone(csv_file, tmp_path, tiny_folder):
    assert train_clip.main(['--epochs', '1', '--logs', str(tmp_path), '--name', 'clip', '--zeroshot-frequency', '5',
                            '--train-data', str(csv_file), *FAST]) == 0
    ckpt = tmp_path / 'clip' / 'checkpoints' / 'epoch_1.pt'
    tower = create_model_from_checkpoint(ckpt, num_classes=3)
    assert type(tower).__name__ == 'DripVisionTransformer' and tower.num_classes == 3
    clip_sd = read_checkpoint(ckpt)['state_dict']
    assert torch.equal(tower.pos_embed, clip_sd['visual.trunk.pos_embed'])
    for extra in ([], ['--freeze-backbone']):
        name = 'ft' + ''.join(extra)
        args = ['--data-dir', str(tiny_folder), '--initial-checkpoint', str(ckpt), '--epochs', '1', '-b', '8',
                '--workers', '0', '--output', str(tmp_path), '--experiment', name, *extra]
        assert train_imagenet.main(args) == 0
        out = read_checkpoint(tmp_path / name / 'last.pth.tar')
        assert out['arch'] == 'drip_nano4_32_2x'
        frozen = torch.equal(out['state_dict']['blocks.0.attn.qkv.weight'], clip_sd['visual.trunk.blocks.0.attn.qkv.weight'])
        assert frozen == bool(extra)
    hub = torch.hub.load(str(REPO), 'drip_nano4_32_2x', source='local', checkpoint_path=str(ckpt))
    assert torch.equal(hub.blocks[0].attn.qkv.weight, clip_sd['visual.trunk.blocks.0.attn.qkv.weight'])


def test_clear_errors(tmp_path, shards, caplog):
    assert train_clip.main(['--model', 'DRIP-3X-16', '--logs', str(tmp_path)]) == 2
    assert "unknown CLIP model 'DRIP-3X-16'" in caplog.text
    assert train_clip.main(['--train-data', str(tmp_path / 'missing-{0..1}.tar'), '--train-num-samples', '8',
                            '--logs', str(tmp_path), *FAST]) == 2
    assert 'shard not found' in caplog.text
    with wds.TarWriter(str(tmp_path / 'empty.tar')):
        pass
    assert train_clip.main(['--train-data', str(tmp_path / 'empty.tar'), '--train-num-samples', '8',
                            '--logs', str(tmp_path), *FAST]) == 2
    assert 'empty webdataset shard' in caplog.text
    assert train_clip.main(['--train-data', str(shards / 'shard-00000.tar'), '--logs', str(tmp_path), *FAST]) == 2
    assert '--train-num-samples is required' in caplog.text


def test_torchrun_two_processes(shards, tmp_path, free_port):
    cmd = [sys.executable, '-m', 'torch.distributed.run', '--nproc_per_node=2', f'--master_port={free_port}',
           str(REPO / 'train_clip.py'), '--train-data', str(shards / 'shard-{00000..00001}.tar'),
           '--train-num-samples', '32', '--epochs', '1', '--logs-dir', str(tmp_path), '--name', 'ddp',
           '--device', 'cpu', '--zeroshot-frequency', '5', *FAST]
    env = dict(os.environ, OMP_NUM_THREADS='1')
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    [row] = results(tmp_path / 'ddp')
    assert row['epoch'] == 1 and 'zeroshot-top1' in row


def test_openclip_training_entry_point_trains_drip_towers(tmp_path):
    code = 'import drip_timm, sys; from open_clip_train.main import main; main(sys.argv[1:])'
    cmd = [sys.executable, '-c', code, '--model', 'DRIP-2X-nano4-32', '--dataset-type', 'synthetic',
           '--train-data', 'synthetic', '--train-num-samples', '16', '--batch-size', '8', '--epochs', '1',
           '--workers', '0', '--lr', '1e-3', '--warmup', '1', '--logs', str(tmp_path), '--name', 'oc',
           '--device', 'cpu']
    proc = subprocess.run(cmd, cwd=tmp_path, env=dict(os.environ, OMP_NUM_THREADS='1'), capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ckpt = tmp_path / 'oc' / 'checkpoints' / 'epoch_1.pt'
    assert 'Train Epoch: 0 [16/16' in (tmp_path / 'oc' / 'out.log').read_text()
    tower = create_model_from_checkpoint(ckpt, model_name='drip_nano4_32_2x')  # strict: every key fits
    sd = read_checkpoint(ckpt)['state_dict']
    assert torch.equal(tower.boundary_predictor.mlp.fc1.weight, sd['visual.trunk.boundary_predictor.mlp.fc1.weight'])
