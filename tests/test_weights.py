"""Weights through timm's pretrained machinery, ViT initialization, torch.hub, checkpoint safety."""
import importlib.util
import pickle
from pathlib import Path

import pytest
import timm
import torch
from safetensors.torch import save_file

import drip_timm

from drip_timm.checkpoint import atomic_save, load_weights, read_checkpoint, save_safetensors

REPO = Path(__file__).resolve().parents[1]
TINY = dict(img_size=32, patch_size=4, embed_dim=48, num_heads=2, num_classes=5)


def trained_like(name='drip_ti16_2x', **kwargs):
    torch.manual_seed(0)
    model = timm.create_model(name, **dict(TINY, **kwargs))
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.01)
    return model.eval()


def same_outputs(a, b):
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(a.eval()(x), b.eval()(x))


def test_pretrained_from_local_safetensors_file(tmp_path):
    src = trained_like()
    path = tmp_path / 'weights.safetensors'
    save_file(src.state_dict(), str(path))
    model = timm.create_model('drip_ti16_2x', pretrained=True, **TINY,
                              pretrained_cfg_overlay=dict(file=str(path), num_classes=5))
    same_outputs(src, model)


def test_pretrained_from_file_url(tmp_path, monkeypatch):
    monkeypatch.setenv('TORCH_HOME', str(tmp_path / 'torch_home'))
    src = trained_like()
    path = tmp_path / 'weights.pth'
    torch.save(src.state_dict(), path)
    model = timm.create_model('drip_ti16_2x', pretrained=True,
                              pretrained_cfg_overlay=dict(url=path.as_uri(), num_classes=5), **TINY)
    same_outputs(src, model)


def test_pretrained_from_local_hub_folder(tmp_path):
    src = trained_like()
    timm.models.save_for_hf(src, tmp_path / 'hub', model_args=TINY, safe_serialization=True)
    assert (tmp_path / 'hub' / 'model.safetensors').exists()
    model = timm.create_model(f'local-dir:{tmp_path / "hub"}', pretrained=True)
    assert model.pretrained_cfg['architecture'] == 'drip_ti16_2x'
    same_outputs(src, model)


def test_plain_vit_checkpoint_initializes_drip(tmp_path, caplog):
    vit = timm.create_model('vit_tiny_patch16_224', **TINY, depth=4)  # class token, 65 position rows
    path = tmp_path / 'vit.safetensors'
    save_file(vit.state_dict(), str(path))
    with caplog.at_level('WARNING'):
        drip = timm.create_model('drip_ti16_2x', pretrained=True, pretrained_cfg_overlay=dict(file=str(path)),
                                 pre_depth=2, post_depth=3, **TINY)
    assert torch.equal(drip.pos_embed, vit.pos_embed[:, 1:])
    for i in range(4):
        assert torch.equal(drip.blocks[i].attn.qkv.weight, vit.blocks[i].attn.qkv.weight)
    assert torch.equal(drip.patch_embed.proj.weight, vit.patch_embed.proj.weight)
    assert torch.equal(drip.norm.weight, vit.norm.weight)
    log = caplog.text
    assert 'cls_token' in log and 'boundary_predictor.mlp.fc1.weight' in log and 'blocks.4.' in log


def test_weights_only_refuses_arbitrary_pickles(tmp_path):
    path = tmp_path / 'evil.pth'
    with open(path, 'wb') as f:
        pickle.dump({'state_dict': {}, 'payload': Path('/etc/passwd')}, f)
    with pytest.raises(RuntimeError, match='cannot read checkpoint'):
        read_checkpoint(path)


def test_atomic_save_leaves_no_partial_file(tmp_path):
    target = tmp_path / 'ckpt.pth'
    atomic_save({'state_dict': {'w': torch.ones(2)}}, target)

    class Unpicklable:
        def __reduce__(self):
            raise RuntimeError('boom')

    with pytest.raises(RuntimeError, match='boom'):
        atomic_save({'state_dict': {}, 'bad': Unpicklable()}, target)
    assert torch.equal(read_checkpoint(target)['state_dict']['w'], torch.ones(2))
    assert [p.name for p in tmp_path.iterdir()] == ['ckpt.pth']


def test_load_weights_reports_mismatches_by_name(tmp_path):
    src = trained_like()
    path = tmp_path / 'w.safetensors'
    save_safetensors(src.state_dict(), path, metadata={'arch': 'drip_ti16_2x'})
    other = timm.create_model('drip_ti16_2x', **dict(TINY, embed_dim=64))
    with pytest.raises(RuntimeError, match='pos_embed'):
        load_weights(other, path)
    deeper = timm.create_model('drip_ti16_2x', **dict(TINY, post_depth=11))
    with pytest.raises(RuntimeError, match='missing.*blocks.12'):
        load_weights(deeper, path)


def test_torch_hub_entrypoints(tmp_path):
    spec = importlib.util.spec_from_file_location('hubconf', REPO / 'hubconf.py')
    hubconf = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hubconf)
    names = {n for n in dir(hubconf) if callable(getattr(hubconf, n)) and not n.startswith('_')}
    assert set(drip_timm.DRIP_MODELS) <= names
    assert {'drip_b16_2x', 'drip_b32_4x_2p16', 'drip_b16_4x_4p8', 'drip_nano4_32_2x'} <= set(names)
    src = trained_like()
    path = tmp_path / 'run.pth.tar'
    atomic_save({'arch': 'drip_ti16_2x', 'model_kwargs': TINY, 'state_dict': src.state_dict()}, path)
    model = torch.hub.load(str(REPO), 'drip_ti16_2x', source='local', pretrained=False,
                           checkpoint_path=str(path), **TINY)
    same_outputs(src, model)
