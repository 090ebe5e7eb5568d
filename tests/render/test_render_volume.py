"""Volume rendering (Eq. 1) over packed samples: closed forms, a plain reference, gradients."""

from __future__ import annotations

import math

import pytest
import torch

from radnerf.render import (
    accumulate_along_rays,
    composite_background,
    composite_padded,
    exclusive_sum_along_rays,
    render_transmittance_from_density,
    render_weight_from_density,
)


def _reference_render(t_starts, t_ends, sigmas, colours, counts, min_transmittance=0.0):
    """Eq. 1 one ray at a time with a running product, as RAD-NeRF's composite loop."""
    out_rgb, out_acc, out_depth, weights = [], [], [], []
    start = 0
    for n in counts:
        trans, rgb, acc, depth = 1.0, torch.zeros(3, dtype=sigmas.dtype), 0.0, 0.0
        for i in range(start, start + n):
            alpha = 1.0 - math.exp(-float(sigmas[i]) * float(t_ends[i] - t_starts[i]))
            w = trans * alpha if trans >= min_transmittance else 0.0
            weights.append(w)
            rgb = rgb + w * colours[i]
            acc += w
            depth += w * float(t_starts[i])
            trans *= 1.0 - alpha
        out_rgb.append(rgb)
        out_acc.append(acc)
        out_depth.append(depth)
        start += n
    return (
        torch.stack(out_rgb),
        torch.tensor(out_acc, dtype=sigmas.dtype),
        torch.tensor(out_depth, dtype=sigmas.dtype),
        torch.tensor(weights, dtype=sigmas.dtype),
    )


def _random_packed(counts, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    ray_indices = torch.repeat_interleave(torch.arange(len(counts)), torch.tensor(counts))
    m = int(sum(counts))
    deltas = 0.02 + 0.05 * torch.rand(m, generator=g, dtype=dtype)
    t_starts = torch.zeros(m, dtype=dtype)
    start = 0
    for n in counts:
        t_starts[start : start + n] = (
            1.0 + torch.cumsum(deltas[start : start + n], 0) - deltas[start : start + n]
        )
        start += n
    t_ends = t_starts + deltas
    sigmas = 30.0 * torch.rand(m, generator=g, dtype=dtype)
    colours = torch.rand(m, 3, generator=g, dtype=dtype)
    return ray_indices, t_starts, t_ends, sigmas, colours


def test_constant_density_slab_closed_form():
    # A slab of density s and thickness L sampled in n equal steps: the opacity
    # is exactly 1 - exp(-s L) and T before step i is exp(-s L i / n).
    s, thickness, n = 3.0, 0.8, 16
    edges = torch.linspace(0.0, thickness, n + 1, dtype=torch.float64)
    ray = torch.zeros(n, dtype=torch.int64)
    sig = torch.full((n,), s, dtype=torch.float64)
    weights, trans, alphas = render_weight_from_density(edges[:-1], edges[1:], sig, ray, 1)
    torch.testing.assert_close(trans, torch.exp(-s * edges[:-1]))
    torch.testing.assert_close(
        alphas, torch.full((n,), 1.0 - math.exp(-s * thickness / n), dtype=torch.float64)
    )
    opacity = accumulate_along_rays(weights, None, ray, 1)
    torch.testing.assert_close(
        opacity, torch.tensor([1.0 - math.exp(-s * thickness)], dtype=torch.float64)
    )
    # Constant colour c through the slab renders c * opacity.
    colour = torch.tensor([0.2, 0.5, 0.9], dtype=torch.float64)
    rgb = accumulate_along_rays(weights, colour.expand(n, 3), ray, 1)
    torch.testing.assert_close(rgb[0], colour * (1.0 - math.exp(-s * thickness)))


def test_weights_sum_to_one_minus_final_transmittance():
    counts = [5, 0, 3, 9, 1]
    ray, t0, t1, sig, _ = _random_packed(counts)
    weights, _, alphas = render_weight_from_density(t0, t1, sig, ray, len(counts))
    acc = accumulate_along_rays(weights, None, ray, len(counts))
    final = torch.stack([(1.0 - alphas[ray == r]).prod() for r in range(len(counts))])
    torch.testing.assert_close(acc, 1.0 - final)
    assert acc[1] == 0.0  # a ray without samples


def test_matches_plain_per_ray_loop_with_early_termination():
    counts = [7, 4, 0, 12, 2]
    ray, t0, t1, sig, col = _random_packed(counts, seed=3)
    for thresh in (0.0, 1e-4, 0.05):
        ref_rgb, ref_acc, ref_depth, ref_w = _reference_render(t0, t1, sig, col, counts, thresh)
        w, _, _ = render_weight_from_density(
            t0, t1, sig, ray, len(counts), min_transmittance=thresh
        )
        torch.testing.assert_close(w, ref_w)
        torch.testing.assert_close(accumulate_along_rays(w, col, ray, len(counts)), ref_rgb)
        torch.testing.assert_close(accumulate_along_rays(w, None, ray, len(counts)), ref_acc)
        torch.testing.assert_close(accumulate_along_rays(w, t0, ray, len(counts)), ref_depth)


def test_early_termination_zeroes_late_weights():
    # Density 50 over steps of 0.1: T drops by e^-5 per step, so it is still
    # above 1e-4 before the second sample and under it before the third: only
    # the first two samples carry weight.
    n = 6
    edges = torch.arange(n + 1, dtype=torch.float64) * 0.1
    ray = torch.zeros(n, dtype=torch.int64)
    w, trans, _ = render_weight_from_density(
        edges[:-1], edges[1:], torch.full((n,), 50.0, dtype=torch.float64), ray, 1, 1e-4
    )
    assert (w[:2] > 0).all() and (w[2:] == 0).all()
    assert trans[2] < 1e-4 <= trans[1]


def test_opaque_plane_depth():
    # Samples every 0.01 from t = 1; a plane at t = 1.537 behind which the
    # density is huge: depth lands within one step after the plane.
    t = 1.0 + 0.01 * torch.arange(100, dtype=torch.float64)
    sig = torch.where(t >= 1.537, 1e4, 0.0).to(torch.float64)
    ray = torch.zeros(100, dtype=torch.int64)
    w, _, _ = render_weight_from_density(t, t + 0.01, sig, ray, 1, 1e-4)
    depth = accumulate_along_rays(w, t, ray, 1)[0]
    assert 1.537 <= float(depth) < 1.547
    torch.testing.assert_close(w.sum(), torch.tensor(1.0, dtype=torch.float64))


def test_exclusive_sum_matches_loop_and_checks_order():
    counts = [3, 0, 4, 1]
    ray = torch.repeat_interleave(torch.arange(4), torch.tensor(counts))
    values = torch.arange(1.0, 9.0)
    got = exclusive_sum_along_rays(values, ray, 4)
    assert got.tolist() == [0.0, 1.0, 3.0, 0.0, 4.0, 9.0, 15.0, 0.0]
    with pytest.raises(ValueError):
        exclusive_sum_along_rays(values, ray.flip(0), 4)


def _ranks(counts):
    return torch.cat([torch.arange(n) for n in counts])


def test_given_ranks_match_recounted_layout_values_and_gradients():
    # The renderer passes the marcher's ranks and max_steps instead of letting
    # the function recount them; padding wider than the longest ray must not
    # change a value or a gradient.
    counts = [7, 0, 3, 12, 1]
    ray, t0, t1, sig, _ = _random_packed(counts, seed=5)
    ranks = _ranks(counts)
    upstream = torch.rand(len(ray), generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    results = []
    for kwargs in ({}, {"ranks": ranks, "width": 12}, {"ranks": ranks, "width": 16}):
        s = sig.clone().requires_grad_(True)
        w, trans, alphas = render_weight_from_density(t0, t1, s, ray, len(counts), 1e-3, **kwargs)
        (w * upstream).sum().backward()
        results.append((w.detach(), trans.detach(), alphas.detach(), s.grad))
    for other in results[1:]:
        for a, b in zip(results[0], other):
            torch.testing.assert_close(a, b)
    with pytest.raises(ValueError, match="width"):
        render_weight_from_density(t0, t1, sig, ray, len(counts), ranks=ranks)


def test_composite_padded_in_blocks_equals_one_pass():
    # The inference loop composites a few steps at a time, carrying the
    # transmittance left; that must give the weights of a single pass.
    g = torch.Generator().manual_seed(2)
    tau = 0.4 * torch.rand(6, 10, generator=g, dtype=torch.float64)
    tau[2, 7:] = 0.0  # a ray with padding at its end
    for thresh in (0.0, 1e-2):
        whole, trans, alphas = composite_padded(tau, thresh)
        start = torch.ones(6, dtype=torch.float64)
        blocks = []
        for first in range(0, 10, 4):
            block = tau[:, first : first + 4]
            w, before, _ = composite_padded(block, thresh, start)
            blocks.append(w)
            start = before[:, -1] * torch.exp(-block[:, -1])
        torch.testing.assert_close(torch.cat(blocks, dim=1), whole)
        torch.testing.assert_close(trans[:, 0], torch.ones(6, dtype=torch.float64))
        torch.testing.assert_close(alphas, 1.0 - torch.exp(-tau))
        assert (whole[2, 7:] == 0).all()


def test_accumulate_shapes_follow_values_and_out_adds_in_place():
    ray = torch.tensor([0, 0, 2, 2, 2])
    w = torch.tensor([0.5, 0.25, 1.0, 0.5, 0.25])
    assert accumulate_along_rays(w, None, ray, 3).tolist() == [0.75, 0.0, 1.75]
    t = torch.tensor([1.0, 2.0, 1.0, 2.0, 4.0])
    assert accumulate_along_rays(w, t, ray, 3).tolist() == [1.0, 0.0, 3.0]
    feats = torch.arange(30.0).view(5, 2, 3)
    got = accumulate_along_rays(w, feats, ray, 3)
    assert got.shape == (3, 2, 3)
    torch.testing.assert_close(got[2], 1.0 * feats[2] + 0.5 * feats[3] + 0.25 * feats[4])
    out = torch.ones(3)
    assert accumulate_along_rays(w, None, ray, 3, out=out) is out
    assert out.tolist() == [1.75, 1.0, 2.75]


def test_gradcheck_rendering_equation():
    counts = [4, 0, 3, 6]
    ray, t0, t1, sig, col = _random_packed(counts, seed=7)
    sig = (sig / 10.0).requires_grad_(True)
    col = col.requires_grad_(True)

    def render(sigmas, colours):
        w, _, _ = render_weight_from_density(t0, t1, sigmas, ray, len(counts))
        rgb = accumulate_along_rays(w, colours, ray, len(counts))
        acc = accumulate_along_rays(w, None, ray, len(counts))
        depth = accumulate_along_rays(w, t0, ray, len(counts))
        return torch.cat([rgb, acc[:, None], depth[:, None]], dim=1)

    assert torch.autograd.gradcheck(render, (sig, col), eps=1e-6, atol=1e-6)


def test_gradcheck_transmittance():
    counts = [5, 2]
    ray, t0, t1, sig, _ = _random_packed(counts, seed=11)
    sig = (sig / 10.0).requires_grad_(True)
    assert torch.autograd.gradcheck(
        lambda s: render_transmittance_from_density(t0, t1, s, ray, 2), (sig,), eps=1e-6, atol=1e-6
    )


def test_composite_background_variants():
    rgb = torch.tensor([[0.2, 0.2, 0.2], [0.0, 0.0, 0.0]])
    opacity = torch.tensor([0.5, 0.0])
    torch.testing.assert_close(
        composite_background(rgb, opacity, 1.0), torch.tensor([[0.7] * 3, [1.0] * 3])
    )
    bg = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    torch.testing.assert_close(
        composite_background(rgb, opacity[:, None], bg),
        torch.tensor([[0.7, 0.2, 0.2], [0.0, 0.0, 1.0]]),
    )
    torch.testing.assert_close(
        composite_background(rgb, opacity, torch.tensor([0.0, 1.0, 0.0])),
        torch.tensor([[0.2, 0.7, 0.2], [0.0, 1.0, 0.0]]),
    )
    assert composite_background(rgb, opacity, None) is rgb
