"""train_imagenet.py and validate.py end to end on a tiny real ImageFolder."""
import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import timm
import torch

import train_imagenet
import validate
from drip_timm.checkpoint import atomic_save, read_checkpoint

REPO = Path(__file__).resolve().parents[1]
SMALL = ['--model', 'drip_nano4_32_2x', '--model-kwargs', 'embed_dim=32', 'num_heads=2', 'post_depth=1',
         '-b', '8', '--workers', '0', '--warmup-epochs', '0', '--log-interval', '2']


def run(tiny_folder, out, *extra, epochs=2):
    args = ['--data-dir', str(tiny_folder), '--output', str(out), '--experiment', 'run', '--epochs', str(epochs),
            *SMALL, *extra]
    assert train_imagenet.main(args) == 0
    return out / 'run'


def summary(run_dir):
    with open(run_dir / 'summary.csv') as f:
        return list(csv.DictReader(f))


def test_train_end_to_end_with_drip_columns_and_corrupt_image(tiny_folder, tmp_path):
    run_dir = run(tiny_folder, tmp_path)
    rows = summary(run_dir)
    assert [int(r['epoch']) for r in rows] == [0, 1]
    for r in rows:
        assert 0 < float(r['train_boundary_rate']) <= 1
        assert float(r['train_tokens']) > 0 and float(r['eval_tokens']) > 0
        assert float(r['train_step_s']) > 0 and float(r['train_peak_mem_mb']) > 0
        assert int(r['train_skipped_images']) == 1  # the corrupt file, once per epoch
        assert 0 <= float(r['eval_top1']) <= 100
    ckpt = read_checkpoint(run_dir / 'last.pth.tar')
    assert ckpt['arch'] == 'drip_nano4_32_2x'
    assert ckpt['model_kwargs'] == {'embed_dim': 32, 'num_heads': 2, 'post_depth': 1, 'num_classes': 3}
    assert {'model_best.pth.tar', 'checkpoint-0.pth.tar', 'checkpoint-1.pth.tar'} <= set(os.listdir(run_dir))
    assert not [f for f in os.listdir(run_dir) if 'tmp' in f]


def test_resume_ends_with_the_same_weights(tiny_folder, tmp_path):
    full = run(tiny_folder, tmp_path / 'full', '--workers', '2', '--checkpoint-hist', '3', epochs=3)
    resumed = run(tiny_folder, tmp_path / 'resumed', '--workers', '2', '--resume',
                  str(full / 'checkpoint-1.pth.tar'), epochs=3)
    a = read_checkpoint(full / 'last.pth.tar')
    b = read_checkpoint(resumed / 'last.pth.tar')
    assert b['epoch'] == 2
    for k, v in a['state_dict'].items():
        assert torch.equal(v, b['state_dict'][k]), k
    assert summary(resumed)[-1]['eval_top1'] == summary(full)[-1]['eval_top1']


def test_validate_reproduces_the_final_evaluation(tiny_folder, tmp_path):
    run_dir = run(tiny_folder, tmp_path)
    results_file = tmp_path / 'results.json'
    assert validate.main(['--checkpoint', str(run_dir / 'last.pth.tar'), '--data-dir', str(tiny_folder),
                          '--workers', '0', '--results-file', str(results_file), '--results-format', 'json',
                          '--gmacs-images', '2']) == 0
    results = json.loads(results_file.read_text())
    final = summary(run_dir)[-1]
    assert results['model'] == 'drip_nano4_32_2x'
    assert results['top1'] == pytest.approx(float(final['eval_top1']), abs=1e-4)  # rounded to 4 places
    assert results['tokens'] == pytest.approx(float(final['eval_tokens']), abs=1e-3)
    assert results['gmacs'] > 0 and results['gmacs_uniform'] > 0 and results['param_count'] > 0
    csv_file = tmp_path / 'results.csv'
    assert validate.main(['--checkpoint', str(run_dir / 'last.pth.tar'), '--data-dir', str(tiny_folder),
                          '--workers', '0', '--results-file', str(csv_file), '--gmacs-images', '1']) == 0
    assert next(csv.DictReader(open(csv_file)))['top1'] == str(results['top1'])


def test_any_timm_model_trains_and_validates(tiny_folder, tmp_path):
    args = ['--data-dir', str(tiny_folder), '--output', str(tmp_path), '--experiment', 'vit', '--epochs', '1',
            '--model', 'vit_nano_patch4_32', '--model-kwargs', 'embed_dim=32', 'num_heads=2', 'depth=2',
            '-b', '8', '--workers', '0']
    assert train_imagenet.main(args) == 0
    assert 'train_boundary_rate' not in summary(tmp_path / 'vit')[0]
    assert validate.main(['--checkpoint', str(tmp_path / 'vit' / 'last.pth.tar'), '--data-dir', str(tiny_folder),
                          '--workers', '0', '--gmacs-images', '1']) == 0


def test_frozen_backbone_only_trains_the_head(tiny_folder, tmp_path):
    init = timm.create_model('drip_nano4_32_2x', embed_dim=32, num_heads=2, post_depth=1, num_classes=3)
    atomic_save({'arch': 'drip_nano4_32_2x', 'model_kwargs': {'embed_dim': 32, 'num_heads': 2, 'post_depth': 1},
                 'state_dict': init.state_dict()}, tmp_path / 'init.pth')
    args = ['--data-dir', str(tiny_folder), '--output', str(tmp_path), '--experiment', 'frozen', '--epochs', '1',
            '--initial-checkpoint', str(tmp_path / 'init.pth'), '--freeze-backbone', '-b', '8', '--workers', '0']
    assert train_imagenet.main(args) == 0
    after = read_checkpoint(tmp_path / 'frozen' / 'last.pth.tar')
    assert after['arch'] == 'drip_nano4_32_2x'  # taken from the initial checkpoint
    for k, v in init.state_dict().items():
        if k.startswith('head.'):
            assert not torch.equal(v, after['state_dict'][k]), k
        else:
            assert torch.equal(v, after['state_dict'][k]), k


def test_clear_errors(tiny_folder, tmp_path, caplog):
    assert train_imagenet.main(['--data-dir', str(tmp_path / 'nowhere'), '--output', str(tmp_path)]) == 2
    assert 'data directory not found' in caplog.text
    assert train_imagenet.main(['--data-dir', str(tiny_folder), '--model', 'drip_b16_7x',
                                '--output', str(tmp_path)]) == 2
    assert "unknown model 'drip_b16_7x'" in caplog.text
    other = timm.create_model('vit_nano_patch4_32', embed_dim=64, num_heads=2, num_classes=3)
    atomic_save({'arch': 'vit_nano_patch4_32', 'model_kwargs': {}, 'state_dict': other.state_dict()},
                tmp_path / 'other.pth')
    assert validate.main(['--model', 'drip_nano4_32_2x', '--checkpoint', str(tmp_path / 'other.pth'),
                          '--data-dir', str(tiny_folder), '--workers', '0']) == 2
    assert 'does not fit this model' in caplog.text and 'pos_embed' in caplog.text


def test_torchrun_two_processes(tiny_folder, tmp_path, free_port):
    cmd = [sys.executable, '-m', 'torch.distributed.run', '--nproc_per_node=2', f'--master_port={free_port}',
           str(REPO / 'train_imagenet.py'), '--data-dir', str(tiny_folder), '--output', str(tmp_path),
           '--experiment', 'ddp', '--epochs', '1', '--device', 'cpu', *SMALL]
    env = dict(os.environ, OMP_NUM_THREADS='1')
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = summary(tmp_path / 'ddp')
    assert len(rows) == 1 and float(rows[0]['eval_top1']) >= 0
    assert 'DistributedDataParallel' not in str(read_checkpoint(tmp_path / 'ddp' / 'last.pth.tar')['state_dict'].keys())


def test_uniform_warmup_epochs(tiny_folder, tmp_path, caplog):
    run_dir = run(tiny_folder, tmp_path, '--uniform-warmup-epochs', '1')
    rows = summary(run_dir)
    assert float(rows[0]['train_boundary_rate']) == 0.5 and float(rows[0]['eval_tokens']) == 32
    assert len(rows) == 2
    assert train_imagenet.main(['--data-dir', str(tiny_folder), '--output', str(tmp_path), '--model',
                                'vit_nano_patch4_32', '--uniform-warmup-epochs', '1', '--epochs', '1']) == 2
    assert '--uniform-warmup-epochs needs a DRIP model' in caplog.text
    assert train_imagenet.main(['--data-dir', str(tiny_folder), '--output', str(tmp_path), '--model',
                                'vit_nano_patch4_32', '--uniform-fade-epochs', '2', '--epochs', '1']) == 2
    assert '--uniform-fade-epochs needs a DRIP model' in caplog.text


def test_embedded_digits_dev_split_is_carved_from_train(digits_root):
    def files(split):
        return {p.relative_to(digits_root / split): p.read_bytes() for p in (digits_root / split).rglob('*.png')}

    train, val, train_dev, dev = files('train'), files('val'), files('train_dev'), files('dev')
    assert (len(train), len(val), len(train_dev), len(dev)) == (1501, 296, 1204, 297)
    assert not set(train_dev) & set(dev) and set(train_dev) | set(dev) == set(train)
    assert all(train[name] == data for name, data in {**train_dev, **dev}.items())  # the same images
    assert {name.parts[0] for name in dev} == {str(d) for d in range(10)}  # every class is in dev
