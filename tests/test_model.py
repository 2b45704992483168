"""DRIP as a timm model: registration, timm contracts, semantics from SPEC §1, bad input."""
import math

import pytest
import timm
import timm.optim
import torch
import torch.nn.functional as F

from drip_timm import DRIP_MODELS

TINY = dict(img_size=32, patch_size=4, embed_dim=48, num_heads=2, in_chans=3, num_classes=7)
PAPER_VARIANTS = [
    'drip_b32_2x', 'drip_b32_2x_2p11', 'drip_b32_2x_2p12', 'drip_b32_4x', 'drip_b32_4x_2p12',
    'drip_b32_4x_2p16', 'drip_b32_4x_2p18', 'drip_b32_4x_2p20', 'drip_b32_10x', 'drip_b32_10x_2p24',
    'drip_b16_2x', 'drip_b16_4x', 'drip_b16_10x', 'drip_b16_4x_4p8',
]


def tiny(**kwargs):
    return timm.create_model('drip_ti16_2x', **dict(TINY, **kwargs))


def test_every_paper_variant_is_registered_with_its_architecture():
    for name in PAPER_VARIANTS:
        assert name in timm.list_models('drip_*')
        assert name in DRIP_MODELS
        cfg = timm.get_pretrained_cfg(name)
        assert cfg.input_size == (3, 224, 224) and cfg.first_conv == 'patch_embed.proj' and cfg.classifier == 'head'
        assert not cfg.has_weights  # no tag may claim weights that do not exist
    model = timm.create_model('drip_b32_4x_2p16', pretrained=False)
    assert (model.pre_depth, model.post_depth, model.compression) == (2, 16, 4.0)
    assert model.embed_dim == 768 and model.patch_embed.patch_size == (32, 32)
    model = timm.create_model('drip_b16_4x_4p8')
    assert (model.pre_depth, model.post_depth, len(model.blocks)) == (4, 8, 12)
    assert model.pretrained_cfg['architecture'] == 'drip_b16_4x_4p8'


def test_b16_forward_shape():
    model = timm.create_model('drip_b16_2x').eval()
    with torch.no_grad():
        out = model(torch.randn(1, 3, 224, 224))
    assert out.shape == (1, 1000)


def test_keyword_overrides_and_unknown_names():
    model = timm.create_model('drip_ti16_4x', pre_depth=4, post_depth=8, compression=4.0,
                              boundary_temperature=0.3, boundary_loss_weight=0.5, boundary_mode='uniform')
    assert (model.pre_depth, model.post_depth) == (4, 8)
    assert model.boundary_predictor.temperature == 0.3 and model.boundary_loss_weight == 0.5
    assert model.boundary_mode == 'uniform'
    with pytest.raises(RuntimeError, match='Unknown model'):
        timm.create_model('drip_b16_3x')
    with pytest.raises(TypeError, match='bogus_kwarg'):
        timm.create_model('drip_ti16_2x', bogus_kwarg=1)
    with pytest.raises(ValueError, match='boundary_mode'):
        timm.create_model('drip_ti16_2x', boundary_mode='random')
    with pytest.raises(ValueError, match='compression'):
        timm.create_model('drip_ti16_2x', compression=1.0)


def test_pretrained_without_a_source_fails_clearly():
    with pytest.raises(RuntimeError, match='No pretrained weights'):
        timm.create_model('drip_ti16_2x', pretrained=True)


def test_bad_input_is_named():
    model = tiny().eval()
    with pytest.raises(ValueError, match='4-D'):
        model(torch.randn(3, 32, 32))
    with pytest.raises(ValueError, match='channels'):
        model(torch.randn(1, 1, 32, 32))
    with pytest.raises(ValueError, match='image size'):
        model(torch.randn(1, 3, 30, 30))


def test_empty_batch_gives_empty_output():
    model = tiny().eval()
    with torch.no_grad():
        assert model(torch.randn(0, 3, 32, 32)).shape == (0, 7)
    model.train()
    assert model(torch.randn(0, 3, 32, 32)).shape == (0, 7)


def test_eval_is_deterministic_and_batch_independent():
    torch.manual_seed(0)
    model = tiny(boundary_init_logit=0.0).eval()
    x = torch.randn(6, 3, 32, 32)
    with torch.no_grad():
        out = model(x)
        again = model(x)
        counts = model.forward_tokens(x).num_segments
        alone = torch.cat([model(x[i:i + 1]) for i in range(6)])
    assert torch.equal(out, again)
    assert len(set(counts.tolist())) > 1, 'the test needs images of different segment counts'
    torch.testing.assert_close(out, alone, rtol=1e-4, atol=1e-5)


def test_forward_tokens_contract():
    model = tiny().eval()
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        t = model.forward_tokens(x)
    L = model.num_patches
    S = int(t.mask.sum(1).max())
    assert t.tokens.shape == (4, S, 48) and t.mask.shape == (4, S) and t.boundaries.shape == (4, L)
    assert set(t.boundaries.unique().tolist()) <= {0.0, 1.0}
    assert torch.equal(t.mask.sum(1), t.boundaries.sum(1).long())
    assert torch.all(t.tokens[~t.mask] == 0)
    # forward_head over forward_features equals the masked mean of the pooled tokens.
    with torch.no_grad():
        pre = model.forward_head(model.forward_features(x), pre_logits=True)
    masked = (t.tokens.sum(1) / t.mask.sum(1, keepdim=True))
    torch.testing.assert_close(pre, masked, rtol=1e-5, atol=1e-5)


def test_uniform_mode_boundary_count():
    model = tiny(compression=3.0, boundary_mode='uniform').eval()
    with torch.no_grad():
        t = model.forward_tokens(torch.randn(3, 3, 32, 32))
    k = max(1, math.floor(64 / 3.0))
    assert torch.equal(t.boundaries.sum(1), torch.full((3,), float(k)))


def test_timm_contracts():
    model = tiny()
    assert model.no_weight_decay() >= {'pos_embed'}
    matcher = model.group_matcher()
    assert 'blocks' in matcher
    optimizer = timm.optim.create_optimizer_v2(model, 'adamw', lr=1e-3, weight_decay=0.05, layer_decay=0.75)
    scales = sorted({g['lr_scale'] for g in optimizer.param_groups})
    assert len(scales) > 3 and max(scales) == 1.0
    named = {id(p): n for n, p in model.named_parameters()}
    in_groups = {named[id(p)] for g in optimizer.param_groups for p in g['params']}
    assert in_groups == set(named.values())

    model.reset_classifier(3)
    assert model.get_classifier().out_features == 3
    model.eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert model(x).shape == (2, 3)
        assert model.forward_head(model.forward_features(x), pre_logits=True).shape == (2, 48)
    headless = tiny(num_classes=0, global_pool='').eval()
    with torch.no_grad():
        assert headless(x).ndim == 3


def test_prefix_tokens_pass_through_untouched():
    model = tiny(class_token=True, reg_tokens=2, global_pool='token').eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        t = model.forward_tokens(x)
        feats = model.forward_features(x)
    assert t.prefix_tokens.shape == (2, 3, 48)
    assert feats.shape[1] == 3 + t.mask.shape[1]
    assert model(x).shape == (2, 7)


def test_grad_checkpointing_same_outputs_and_grads():
    torch.manual_seed(0)
    model = tiny(boundary_noise=0.0)
    x = torch.randn(3, 3, 32, 32)
    ref = model(x)
    ref.sum().backward()
    ref_grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    model.set_grad_checkpointing(True)
    out = model(x)
    out.sum().backward()
    torch.testing.assert_close(out, ref)
    for n, p in model.named_parameters():
        torch.testing.assert_close(p.grad, ref_grads[n], rtol=1e-4, atol=1e-6, msg=n)


def test_task_loss_alone_reaches_predictor_and_every_parameter_gets_a_gradient():
    torch.manual_seed(0)
    model = tiny(boundary_loss_weight=0.0).train()
    x, y = torch.randn(8, 3, 32, 32), torch.randint(0, 7, (8,))
    F.cross_entropy(model(x), y).backward()
    grad = model.boundary_predictor.mlp.fc1.weight.grad
    assert grad is not None and grad.abs().sum() > 0

    model = tiny().train()
    F.cross_entropy(model(x), y).backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert missing == []


def test_injected_rate_loss_equals_explicit_rate_loss():
    """The stock-loop gradient equals task + boundary_loss added explicitly, once per forward."""
    torch.manual_seed(0)
    x, y = torch.randn(8, 3, 32, 32), torch.randint(0, 7, (8,))
    model = tiny(boundary_noise=0.0).train()
    F.cross_entropy(model(x), y).backward()
    injected = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    model.inject_boundary_loss = False
    (F.cross_entropy(model(x), y) + model.boundary_loss).backward()
    for n, p in model.named_parameters():
        torch.testing.assert_close(p.grad, injected[n], rtol=1e-4, atol=1e-7, msg=n)
    # Off with weight 0: the predictor's gradient then comes from the task alone.
    model.zero_grad()
    model.inject_boundary_loss = True
    model.boundary_loss_weight = 0.0
    F.cross_entropy(model(x), y).backward()
    task_only = model.boundary_predictor.mlp.fc2.bias.grad.clone()
    assert not torch.allclose(task_only, injected['boundary_predictor.mlp.fc2.bias'])


def test_stock_loop_trains_the_rate_to_the_prior():
    """A few hundred steps backpropagating only the task loss end near the 4x prior (0.25)."""
    torch.manual_seed(0)
    model = timm.create_model('drip_nano4_32_4x', embed_dim=48, num_heads=2, post_depth=1).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3)
    x = torch.randn(64, 3, 32, 32)
    y = (x.mean((1, 2, 3)) > 0).long()
    for step in range(300):
        idx = torch.randint(0, 64, (32,))
        loss = F.cross_entropy(model(x[idx]), y[idx])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    with torch.no_grad():
        rate = model.forward_tokens(x).boundaries.mean().item()
    assert abs(rate - 0.25) <= 0.05, rate


def test_torch_compile_same_outputs():
    torch.manual_seed(0)
    model = tiny().eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        ref = model(x)
        compiled = torch.compile(model, backend='aot_eager')
        torch.testing.assert_close(compiled(x), ref, rtol=1e-5, atol=1e-5)


def test_forward_intermediates():
    model = tiny().eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        final, inter = model.forward_intermediates(x, indices=[0, 1, 5], output_fmt='NLC')
        assert inter[0].shape == (2, 64, 48) and inter[2].shape[1] == final.shape[1]
        grid = model.forward_intermediates(x, indices=[0, 1], output_fmt='NCHW', intermediates_only=True)
        assert grid[1].shape == (2, 48, 8, 8)
        with pytest.raises(ValueError, match='NCHW'):
            model.forward_intermediates(x, indices=[5], output_fmt='NCHW')
        feats = timm.create_model('drip_ti16_2x', features_only=True, out_indices=(0, 1), **TINY).eval()
        assert [f.shape for f in feats(x)] == [(2, 48, 8, 8)] * 2


def test_injection_under_grad_accumulation_and_fp16_loss_scaling():
    """SPEC §5: what a foreign loop must know. Accumulating N micro-batches with the task loss
    divided by N injects the rate gradient N times at full weight (weight / N restores the
    objective); an fp16 GradScaler scales the task gradient but not the injected one."""
    torch.manual_seed(0)
    x, y = torch.randn(8, 3, 32, 32), torch.randint(0, 7, (8,))
    halves = [(x[:4], y[:4]), (x[4:], y[4:])]
    model = tiny(boundary_noise=0.0).train()

    def grads():
        g = {n: p.grad.clone() if p.grad is not None else torch.zeros_like(p) for n, p in model.named_parameters()}
        model.zero_grad()
        return g

    model.inject_boundary_loss = False
    for xb, yb in halves:
        ((F.cross_entropy(model(xb), yb) + model.boundary_loss) / 2).backward()
    explicit = grads()
    model.inject_boundary_loss = True
    model.boundary_loss_weight = 0.5
    for xb, yb in halves:
        (F.cross_entropy(model(xb), yb) / 2).backward()
    injected = grads()
    for n in explicit:
        torch.testing.assert_close(injected[n], explicit[n], rtol=1e-4, atol=1e-7, msg=n)

    model.boundary_loss_weight = 1.0
    model.inject_boundary_loss = False
    F.cross_entropy(model(x), y).backward(retain_graph=True)
    task = grads()['boundary_predictor.mlp.fc2.bias']
    model.boundary_loss.backward()
    rate = grads()['boundary_predictor.mlp.fc2.bias']
    model.inject_boundary_loss = True
    scale = 1024.0
    (F.cross_entropy(model(x), y) * scale).backward()
    unscaled = grads()['boundary_predictor.mlp.fc2.bias'] / scale
    torch.testing.assert_close(unscaled, task + rate / scale, rtol=1e-4, atol=1e-8)


def test_configure_boundaries_on_a_built_model():
    model = tiny()
    model.configure_boundaries(boundary_mode='uniform', boundary_noise=1.0, boundary_grad='none',
                               boundary_loss_weight=0.5, boundary_eval='expected')
    assert model.boundary_mode == 'uniform' and model.boundary_predictor.noise == 1.0
    assert model.boundary_grad == 'none' and model.boundary_loss_weight == 0.5
    assert model.boundary_predictor.eval_rule == 'expected'
    with pytest.raises(ValueError, match='boundary_grad'):
        model.configure_boundaries(boundary_grad='bogus')
    with pytest.raises(ValueError, match="unknown boundary setting 'depth'"):
        model.configure_boundaries(depth=3)


@pytest.mark.parametrize('target', [1.0, 0.9])
def test_uniform_warm_start_teaches_the_predictor_uniform_boundaries(target):
    torch.manual_seed(0)
    model = timm.create_model('drip_nano4_32_2x', embed_dim=48, num_heads=2, post_depth=1,
                              boundary_imitation_target=target).train()
    model.configure_boundaries(boundary_mode='uniform', imitate_uniform=True)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    x = torch.randn(32, 3, 32, 32)
    for _ in range(150):
        model(x).sum().mul(0).backward()  # no task signal: only the injected imitation (and rate) loss
        optimizer.step()
        optimizer.zero_grad()
    uniform = model.eval().forward_tokens(x).boundaries
    model.configure_boundaries(boundary_mode='learned', imitate_uniform=False)
    seen = []
    model.boundary_predictor.mlp.register_forward_hook(lambda module, args, out: seen.append(out.abs()))
    with torch.no_grad():
        learned = model.forward_tokens(x).boundaries
    logits = seen[-1]
    assert (learned == uniform).float().mean() > 0.95
    if target < 1:  # the logits settle at +-logit(target), where the straight-through gradient lives
        assert logits.median().item() == pytest.approx(math.log(target / (1 - target)), rel=0.25)
    else:
        assert logits.median().item() > 20.0  # hard targets: the logits grow without bound


def test_fading_pull_towards_uniform_boundaries_in_learned_mode():
    from drip_timm.engine import uniform_warmup
    from drip_timm.pooling import uniform_boundaries
    torch.manual_seed(0)
    model = timm.create_model('drip_nano4_32_2x', boundary_imitation_target=0.9).train()
    schedule = []
    for epoch in range(6):
        uniform_warmup(model, epoch, warmup_epochs=2, fade_epochs=3)
        schedule.append((model.boundary_mode, model.imitate_uniform))
    assert schedule == [('uniform', 1.0), ('uniform', 1.0), ('learned', 0.75), ('learned', 0.5),
                        ('learned', 0.25), ('learned', 0.0)]

    x = torch.randn(4, 3, 32, 32)
    seen = []
    model.boundary_predictor.mlp.register_forward_hook(lambda module, args, out: seen.append(out.squeeze(-1)))
    losses = []
    for pull in (0.0, 0.5):
        model.configure_boundaries(imitate_uniform=pull)
        with torch.no_grad():
            model(x)
        losses.append(model.boundary_loss)
    target = uniform_boundaries(4, 64, 2.0) * 0.8 + 0.1
    expected = 0.5 * F.binary_cross_entropy_with_logits(seen[-1], target)
    assert torch.allclose(seen[0], seen[1])
    assert (losses[1] - losses[0]).item() == pytest.approx(expected.item(), rel=1e-5)


def test_imitation_target_is_checked():
    with pytest.raises(ValueError, match='boundary_imitation_target must lie in'):
        timm.create_model('drip_nano4_32_2x', boundary_imitation_target=0.4)
