"""Gradients of the grid: gradcheck in float64, fused against plain, reused buffers."""

import pytest
import torch

from radnerf.encoding import GridEncoder, grid_layout
from radnerf.encoding.grid_fused import grid_encode_fused, load_extension
from radnerf.encoding.grid_plain import grid_encode_plain


def _layout(dim, grid_type="hash", level_dim=2):
    # Coarse levels keep gradcheck's finite differences away from cell faces.
    return grid_layout(
        dim,
        num_levels=3,
        level_dim=level_dim,
        base_resolution=3,
        log2_hashmap_size=5,
        per_level_scale=2.0,
        grid_type=grid_type,
    )


def _inputs(layout, n=6, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    x = (0.05 + 0.9 * torch.rand(n, layout.input_dim, generator=g, dtype=dtype)).requires_grad_()
    p = (torch.rand(layout.n_params, generator=g, dtype=dtype) * 2 - 1).requires_grad_()
    return x, p


@pytest.mark.parametrize("grid_type", ["hash", "tiled"])
@pytest.mark.parametrize("dim", [2, 3])
def test_gradcheck_plain(dim, grid_type):
    layout = _layout(dim, grid_type)
    x, p = _inputs(layout)
    assert any(lv.hashed for lv in layout.levels) == (grid_type == "hash")
    # fast_mode: random projections; the plain path is slow per call and exact anyway.
    assert torch.autograd.gradcheck(
        lambda a, b: grid_encode_plain(a, b, layout), (x, p), fast_mode=True
    )


@pytest.mark.usefixtures("fused_ext")
@pytest.mark.parametrize("grid_type", ["hash", "tiled", "hash_ngp"])
@pytest.mark.parametrize("dim,level_dim", [(2, 2), (3, 2), (3, 1), (2, 4)])
def test_gradcheck_fused(dim, level_dim, grid_type):
    layout = _layout(dim, grid_type, level_dim)
    x, p = _inputs(layout, seed=1)
    assert torch.autograd.gradcheck(lambda a, b: grid_encode_fused(a, b, layout), (x, p))


@pytest.mark.usefixtures("fused_ext")
@pytest.mark.parametrize("grid_type", ["hash", "tiled"])
@pytest.mark.parametrize("dim", [2, 3])
def test_fused_equals_plain_float32(dim, grid_type):
    layout = grid_layout(dim, 8, 2, 8, 12, desired_resolution=600, grid_type=grid_type)
    g = torch.Generator().manual_seed(3)
    x = torch.rand(3000, dim, generator=g).requires_grad_()
    p = ((torch.rand(layout.n_params, generator=g) * 2 - 1) * 1e-2).requires_grad_()
    up = torch.randn(3000, layout.output_dim, generator=g)
    out_plain = grid_encode_plain(x, p, layout)
    gx_plain, gp_plain = torch.autograd.grad(out_plain, (x, p), up)
    out_fused = grid_encode_fused(x, p, layout)
    gx_fused, gp_fused = torch.autograd.grad(out_fused, (x, p), up)
    torch.testing.assert_close(out_fused, out_plain, rtol=0, atol=1e-7)
    torch.testing.assert_close(gp_fused, gp_plain, rtol=1e-5, atol=1e-5)
    # d/dx carries the level scale (up to 600) times table differences.
    torch.testing.assert_close(gx_fused, gx_plain, rtol=1e-3, atol=1e-3)
    assert gp_plain.abs().sum() > 0 and gx_plain.abs().sum() > 0


@pytest.mark.usefixtures("fused_ext")
@pytest.mark.parametrize("consumer", ["linear", "cat", "rows", "sum"])
def test_fused_gradients_in_every_layout_the_consumer_hands_back(consumer):
    # The fused forward returns a transposed view of a feature-major buffer; a
    # Linear layer's backward then hands back a feature-major gradient, a
    # torch.cat a column slice of a wider row-major one, .sum() an expanded
    # one. Every layout must give the plain path's gradients.
    layout = grid_layout(2, 6, 2, 8, 10, desired_resolution=300, grid_type="tiled")
    g = torch.Generator().manual_seed(5)
    n = 700
    x = torch.rand(n, 2, generator=g).requires_grad_()
    p = ((torch.rand(layout.n_params, generator=g) * 2 - 1) * 1e-2).requires_grad_()
    lin = torch.nn.Linear(layout.output_dim, 5)
    other = torch.randn(n, 3, generator=g)
    up_rows = torch.randn(n, layout.output_dim, generator=g)

    def loss(out):
        if consumer == "linear":
            return lin(out).square().sum()
        if consumer == "cat":
            return lin(torch.cat([out, other], dim=1)[:, : layout.output_dim]).square().sum()
        if consumer == "rows":
            return (out * up_rows).sum()
        return out.sum()

    out_fused = grid_encode_fused(x, p, layout)
    assert out_fused.shape == (n, layout.output_dim)
    assert out_fused.stride() == (1, n)  # feature-major memory, no transpose pass
    gx_fused, gp_fused = torch.autograd.grad(loss(out_fused), (x, p))
    gx_plain, gp_plain = torch.autograd.grad(loss(grid_encode_plain(x, p, layout)), (x, p))
    torch.testing.assert_close(gp_fused, gp_plain, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(gx_fused, gx_plain, rtol=1e-3, atol=1e-4)
    assert gp_plain.abs().sum() > 0


@pytest.mark.usefixtures("fused_ext")
def test_linear_backward_hands_the_feature_major_layout_back():
    # The claim behind reading the gradient in place: if torch ever changes
    # this, the backward still works (it transposes), it is only slower.
    layout = grid_layout(3, 4, 2, 8, 10, desired_resolution=64, grid_type="hash")
    x = torch.rand(50, 3)
    p = torch.zeros(layout.n_params, requires_grad=True)
    out = grid_encode_fused(x, p, layout)
    seen = []
    out.register_hook(lambda grad: seen.append(grad.stride()))
    torch.nn.Linear(layout.output_dim, 4)(out).sum().backward()
    assert seen == [(1, 50)]


@pytest.mark.usefixtures("fused_ext")
def test_fused_without_input_grad_and_out_of_bounds_zero():
    layout = _layout(3, "tiled")
    x = torch.tensor([[0.2, 0.3, 0.4], [1.5, 0.3, 0.4]], dtype=torch.float64)
    p = torch.rand(layout.n_params, dtype=torch.float64, requires_grad=True)
    out = grid_encode_fused(x, p, layout)
    assert torch.all(out[1] == 0)
    (gp,) = torch.autograd.grad(out[1].sum(), (p,))
    assert torch.all(gp == 0)


@pytest.mark.usefixtures("fused_ext")
def test_reused_gradient_buffer_is_never_clobbered():
    layout = grid_layout(3, 4, 2, 4, 10, per_level_scale=2.0)
    enc = GridEncoder(layout, path="fused")
    x = torch.rand(500, 3) - 0.5
    up = torch.randn(500, layout.output_dim)

    def step():
        (enc(x) * up).sum().backward()

    step()
    single = enc.params.grad.clone()
    first = enc.params.grad
    step()  # accumulates into the kept .grad: the buffer it came from must not be reused
    torch.testing.assert_close(enc.params.grad, 2 * single)
    assert enc.params.grad is first
    enc.params.grad = None
    step()  # now the buffer is free again and gets adopted as .grad
    torch.testing.assert_close(enc.params.grad, single)
    kept = enc.params.grad
    enc.params.grad = None
    step()  # a user still holds the previous gradient: it must survive
    torch.testing.assert_close(kept, single)
    torch.testing.assert_close(enc.params.grad, single)


def test_input_gradient_flows_to_a_learned_coordinate():
    # RAD-NeRF's audio coordinate comes out of a network: the 2D grid must pass
    # gradients back to it on every path.
    layout = grid_layout(2, 4, 2, 4, 8, per_level_scale=2.0, grid_type="tiled")
    for path in ["plain"] + (["fused"] if load_extension() is not None else []):
        enc = GridEncoder(layout, bound=1.0, path=path)
        with torch.no_grad():
            enc.params.uniform_(-1, 1)
        w = torch.nn.Parameter(torch.tensor([[0.3, -0.2]]))
        out = enc(torch.tanh(w * torch.ones(10, 1)))
        out.square().sum().backward()
        assert w.grad is not None and w.grad.abs().sum() > 0, path


@pytest.mark.usefixtures("fused_ext")
@pytest.mark.parametrize("dtype,level_dim", [(torch.float32, 2), (torch.float64, 1)])
@pytest.mark.parametrize("n", [13, 64])
def test_fused_row_major_gradient_with_vector_transpose_and_tail(dtype, level_dim, n):
    # 8-byte entries and 8 levels take the vectorised 8 x 8 transpose of a
    # row-major gradient; 13 points leave a tail of 5 for the scalar copy.
    layout = grid_layout(3, 8, level_dim, 4, 10, desired_resolution=100, grid_type="hash")
    g = torch.Generator().manual_seed(7)
    x = torch.rand(n, 3, generator=g, dtype=dtype).requires_grad_()
    p = (torch.rand(layout.n_params, generator=g, dtype=dtype) * 2 - 1).requires_grad_()
    up = torch.randn(n, layout.output_dim, generator=g, dtype=dtype)
    gx_f, gp_f = torch.autograd.grad(grid_encode_fused(x, p, layout), (x, p), up)
    gx_p, gp_p = torch.autograd.grad(grid_encode_plain(x, p, layout), (x, p), up)
    torch.testing.assert_close(gp_f, gp_p, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(gx_f, gx_p, rtol=1e-3, atol=1e-3)
