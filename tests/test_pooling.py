"""The pure pooling core: segments, assignment gradients, rate loss."""
import math

import pytest
import torch

from drip_timm.pooling import (
    assignment, boundary_rate_loss, close_last_segment, masked_mean, pool_segments, segment_ids,
    uniform_boundaries,
)


def random_hard(B, L, p, seed=0):
    g = torch.Generator().manual_seed(seed)
    return close_last_segment((torch.rand(B, L, generator=g) < p).float())


@pytest.mark.parametrize('p', [0.0, 0.1, 0.5, 1.0])
def test_every_token_in_exactly_one_segment(p):
    hard = random_hard(6, 37, p)
    S = int(hard.sum(1).max())
    w = assignment(hard, S)
    assert torch.equal(w.sum(-1), torch.ones(6, 37))
    # n boundaries among 0..L-2 -> n + 1 segments, each non-empty.
    n = hard[:, :-1].sum(1)
    sizes = w.sum(1)
    for b in range(6):
        assert int((sizes[b] > 0).sum()) == int(n[b]) + 1
    assert torch.equal(segment_ids(hard)[:, -1], n.long())


def test_all_zero_and_all_one_boundaries():
    x = torch.randn(2, 9, 4)
    zeros = close_last_segment(torch.zeros(2, 9))
    pooled, mask = pool_segments(x, zeros)
    assert pooled.shape == (2, 1, 4) and mask.all()
    torch.testing.assert_close(pooled[:, 0], x.mean(1))
    ones = torch.ones(2, 9)
    pooled, mask = pool_segments(x, ones)
    torch.testing.assert_close(pooled, x)
    assert mask.all()


def test_pooling_is_segment_means_with_zero_padding():
    x = torch.arange(12, dtype=torch.float32).view(2, 6, 1)
    hard = torch.tensor([[0, 1, 0, 0, 1, 1], [0, 0, 0, 0, 0, 1]], dtype=torch.float32)
    pooled, mask = pool_segments(x, hard)
    assert mask.tolist() == [[True, True, True], [True, False, False]]
    assert pooled[0, :, 0].tolist() == [0.5, 3.0, 5.0]
    assert pooled[1, :, 0].tolist() == [8.5, 0.0, 0.0]


def test_uniform_boundaries_count_and_spacing():
    for L, c in [(196, 4.0), (196, 2.0), (49, 10.0), (64, 2.0), (3, 10.0)]:
        hard = uniform_boundaries(3, L, c)
        k = max(1, math.floor(L / c))
        assert torch.equal(hard.sum(1), torch.full((3,), float(k)))
        assert hard[0, -1] == 1
        sizes = assignment(hard, k).sum(1)[0]
        assert sizes.max() - sizes.min() <= 1


@pytest.mark.parametrize('estimator', ['local', 'cumsum'])
def test_straight_through_values_are_exact_and_gradient_reaches_boundaries(estimator):
    torch.manual_seed(0)
    logits = torch.randn(3, 20, requires_grad=True)
    soft = torch.sigmoid(logits)
    hard = close_last_segment((soft > 0.5).float())
    grad = soft - soft.detach()
    x = torch.randn(3, 20, 8)
    S = int(hard.sum(1).max())
    w = assignment(hard, S, grad, estimator)
    assert torch.equal(w.detach(), assignment(hard, S))
    pooled, _ = pool_segments(x, hard, grad, estimator)
    pooled_ref, _ = pool_segments(x, hard)
    assert torch.equal(pooled.detach(), pooled_ref)
    (pooled ** 2).sum().backward()
    assert logits.grad.abs().sum() > 0


def test_no_gradient_with_detached_estimator():
    logits = torch.randn(2, 10, requires_grad=True)
    soft = torch.sigmoid(logits)
    hard = close_last_segment((soft > 0.5).float())
    pooled, _ = pool_segments(torch.randn(2, 10, 4), hard, soft - soft.detach(), 'none')
    assert not pooled.requires_grad


def test_local_estimator_matches_a_split_and_a_merge():
    """The local gradient is the first-order change of the pooled means under the flip it models."""
    torch.manual_seed(1)
    x = torch.randn(1, 6, 3)
    hard = torch.tensor([[0., 0., 1., 0., 0., 1.]])
    g = torch.zeros(1, 6, requires_grad=True)
    pooled, _ = pool_segments(x, hard, g, 'local')
    upstream = torch.randn_like(pooled)
    (pooled * upstream).sum().backward()
    # Split at position 0: tokens 1, 2 leave segment 0 -> d mean0 = -sum_{t in 1,2} (x_t - mean0) / 3.
    mean0 = x[0, :3].mean(0)
    split = -((x[0, 1:3] - mean0).sum(0) / 3 * upstream[0, 0]).sum()
    torch.testing.assert_close(g.grad[0, 0], split)
    # Merge at position 2: segment 1 joins segment 0 -> d mean0 = -(3 * (mean1 - mean0)) / 3 per unit.
    mean1 = x[0, 3:].mean(0)
    merge = -((mean1 - mean0) * upstream[0, 0]).sum()
    torch.testing.assert_close(g.grad[0, 2], merge)
    # A flip inside segment 1 does not touch segment 0.
    assert g.grad[0, 5] == 0


def test_unknown_estimator_is_named():
    with pytest.raises(ValueError, match='estimator'):
        assignment(torch.ones(1, 3), 3, torch.zeros(1, 3), 'bogus')


def test_masked_mean_ignores_padding():
    x = torch.tensor([[[1.0], [3.0], [100.0]]])
    assert masked_mean(x, torch.tensor([[True, True, False]])).item() == 2.0


def test_rate_loss_is_binomial_nll_and_minimal_at_prior():
    L, p = 64, 0.25
    ks = torch.arange(0, L + 1).float()
    losses = torch.stack([boundary_rate_loss(k.view(1), L, p) for k in ks])
    assert int(losses.argmin()) == 16
    expected = -torch.distributions.Binomial(L, probs=torch.tensor(p)).log_prob(torch.tensor(10.0)) / L
    torch.testing.assert_close(boundary_rate_loss(torch.tensor([10.0]), L, p), expected)
    k = torch.tensor([30.0], requires_grad=True)
    boundary_rate_loss(k, L, p).backward()
    assert k.grad.item() > 0  # too many boundaries -> gradient pushes the count down
    with pytest.raises(ValueError, match='prior'):
        boundary_rate_loss(k, L, 1.0)
