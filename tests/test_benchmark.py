"""Counting, the benchmark command, segment maps and the FLOP plot."""
import csv
import json

import pytest
import timm
import torch
from PIL import Image

from drip_timm import benchmark, visualize
from drip_timm.data import digits_split
from drip_timm.flop_analysis import plot, tower_analytic, tower_gmacs
from drip_timm.flops import analytic_gmacs, count_gmacs

NANO = ['vit_nano_patch4_32', 'drip_nano4_32_2x']


def test_vit_b16_counts_attention():
    assert count_gmacs(timm.create_model('vit_base_patch16_224')) == pytest.approx(17.58, abs=0.05)


def test_drip_uniform_matches_the_analytic_count():
    model = timm.create_model('drip_b16_4x')
    counted = count_gmacs(model)
    expected = analytic_gmacs(196, 768, 2, 10, 49, patch_size=16, num_classes=1000)
    assert counted == pytest.approx(expected, rel=0.01)
    assert counted == pytest.approx(6.99, abs=0.02)  # SPEC's figure (layer norms aside)
    small = timm.create_model('drip_nano4_32_4x', pre_depth=3, post_depth=2)
    assert count_gmacs(small) == pytest.approx(analytic_gmacs(64, 96, 3, 2, 16, patch_size=4, num_classes=10), rel=0.01)


def test_learned_count_follows_the_images_segments():
    torch.manual_seed(0)
    model = timm.create_model('drip_nano4_32_2x').eval()
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        segments = model.forward_tokens(x).num_segments.float()
    per_image = [count_gmacs(model, x[i:i + 1], mode=None) for i in range(3)]
    assert count_gmacs(model, x, mode=None) == pytest.approx(sum(per_image) / 3)
    order = segments.argsort().tolist()
    assert [per_image[i] for i in order] == sorted(per_image)


def test_paper_baselines_skipped_the_fused_attention():
    assert tower_gmacs('ViT-B-32', skip_fused_attention=True) == pytest.approx(2.95, abs=0.01)
    assert tower_gmacs('ViT-B-32') == pytest.approx(tower_analytic('ViT-B-32'), rel=0.01)
    assert tower_gmacs('DRIP-4X-32') == pytest.approx(tower_analytic('DRIP-4X-32'), rel=0.01)


@pytest.mark.parametrize('suffix', ['.json', '.csv', '.md'])
def test_benchmark_writes_results(tmp_path, digits_root, suffix):
    out = tmp_path / f'bench{suffix}'
    args = ['--model', *NANO, '-b', '4', '--warmup', '0', '--iters', '2', '--results-file', str(out),
            '--data', str(digits_root / 'val' / '3'), '--data-images', '2', '--boundary-mode', 'learned']
    args.append('--profile' if suffix == '.json' else '--no-memory')
    assert benchmark.main(args) == 0
    if suffix == '.json':
        rows = json.loads(out.read_text())
        assert [r['model'] for r in rows] == NANO
        for r in rows:
            for key in ('params_m', 'gmacs', 'gmacs_data', 'tokens', 'infer_img_s', 'train_step_s', 'peak_mem_mb'):
                assert r[key] > 0, key
        assert rows[0]['gmacs_ratio'] == 1.0 and rows[1]['gmacs_ratio'] < 1.0
        assert rows[0]['tokens'] == 64 and 1 <= rows[1]['tokens'] <= 64
        assert 0 < rows[1]['predictor_pct'] < 100 and 0 < rows[1]['pool_pct'] < 100
        assert 'predictor_pct' not in rows[0]
    elif suffix == '.csv':
        rows = list(csv.DictReader(open(out)))
        assert [r['model'] for r in rows] == NANO and float(rows[1]['train_step_s']) > 0
    else:
        lines = out.read_text().splitlines()
        assert lines[0].startswith('| model |') and len(lines) == 4


def test_benchmark_model_kwargs_reach_drip_models_only(tmp_path):
    def rows(*extra):
        out = tmp_path / 'bench.json'
        args = ['--model', *NANO, '-b', '2', '--warmup', '0', '--iters', '1', '--bench', 'infer',
                '--results-file', str(out), *extra]
        assert benchmark.main(args) == 0
        return json.loads(out.read_text())

    paper, narrow = rows('--no-memory'), rows('--model-kwargs', 'predictor_hidden_ratio=1')
    assert narrow[0]['params_m'] == paper[0]['params_m']  # the ViT baseline is untouched
    dim = 96  # nano width: the predictor shrinks from D*4D + 4D + 4D + 1 to D*D + D + D + 1 parameters
    assert (paper[1]['params_m'] - narrow[1]['params_m']) * 1e6 == pytest.approx(3 * dim * dim + 6 * dim, abs=0.5)
    assert narrow[1]['gmacs'] < paper[1]['gmacs'] and narrow[1]['peak_mem_mb'] > 0


def test_benchmark_bad_arguments(tmp_path, caplog):
    assert benchmark.main(['--model', 'drip_b16_3x', '--no-memory']) == 2
    assert "unknown model 'drip_b16_3x'" in caplog.text
    assert benchmark.main(['--model', *NANO, '-b', '0', '--no-memory']) == 2
    assert '--batch-size must be >= 1' in caplog.text
    assert benchmark.main(['--model', *NANO, '--results-file', str(tmp_path / 'x.txt')]) == 2
    assert '.json, .csv or .md' in caplog.text
    assert benchmark.main(['--model', *NANO, '--data', str(tmp_path), '--no-memory']) == 2
    assert 'no images under' in caplog.text


def test_visualize_writes_a_segment_map(tmp_path, caplog):
    img, _ = digits_split()[1][0]
    path = tmp_path / 'digit.png'
    Image.fromarray(img).save(path)
    assert visualize.main(['--model', 'drip_nano4_32_2x', str(path), '--out', str(tmp_path / 'maps'),
                           '--scale', '4']) == 0
    picture = Image.open(tmp_path / 'maps' / 'digit_segments.png')
    assert picture.size == (32 * 4, 32 * 4 + visualize.TITLE_HEIGHT)
    (tmp_path / 'bad.png').write_bytes(b'not an image')
    assert visualize.main(['--model', 'drip_nano4_32_2x', str(tmp_path / 'bad.png'), '--out', str(tmp_path)]) == 2
    assert 'cannot read image' in caplog.text
    assert visualize.main(['--model', 'vit_nano_patch4_32', str(path), '--out', str(tmp_path)]) == 2
    assert 'no segments to draw' in caplog.text


def test_segment_map_is_raster_runs():
    model = timm.create_model('drip_nano4_32_4x', boundary_mode='uniform')
    seg = visualize.segment_map(model, torch.randn(3, 32, 32))
    assert seg.shape == (8, 8)
    assert (seg.reshape(-1) == torch.arange(64).div(4, rounding_mode='floor').numpy()).all()


def test_flop_plot(tmp_path):
    plot(str(tmp_path / 'flops.png'))
    assert Image.open(tmp_path / 'flops.png').size[0] > 500
