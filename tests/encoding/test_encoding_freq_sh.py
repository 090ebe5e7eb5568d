"""Frequency and spherical-harmonics encoders against their references' formulas."""

import math

import pytest
import torch

from radnerf.encoding import FrequencyEncoder, SHEncoder
from radnerf.errors import ConfigError


def test_frequency_tcnn_layout():
    enc = FrequencyEncoder(2, 2, convention="tcnn")
    x = torch.tensor([[0.25, 0.5]], dtype=torch.float64)
    s, c = math.sin, math.cos
    pi = math.pi
    expected = [
        s(pi / 4),
        c(pi / 4),
        s(pi / 2),
        c(pi / 2),  # dim 0: freq 1, 2
        s(pi / 2),
        c(pi / 2),
        s(pi),
        c(pi),
    ]  # dim 1
    torch.testing.assert_close(enc(x), torch.tensor([expected], dtype=torch.float64))
    assert enc.output_dim == 8


def test_frequency_ngp_layout_and_radnerf_sizes():
    enc = FrequencyEncoder(2, 2, convention="ngp")
    x = torch.tensor([[0.3, -0.7]], dtype=torch.float64)
    a, b = 0.3, -0.7
    expected = [
        a,
        b,
        math.sin(a),
        math.sin(b),
        math.cos(a),
        math.cos(b),
        math.sin(2 * a),
        math.sin(2 * b),
        math.cos(2 * a),
        math.cos(2 * b),
    ]
    torch.testing.assert_close(enc(x), torch.tensor([expected], dtype=torch.float64))
    # RAD-NeRF's torso: get_encoder('frequency', input_dim=2, multires=10) and (6, 4).
    assert FrequencyEncoder(2, 10, convention="ngp").output_dim == 42
    assert FrequencyEncoder(6, 4, convention="ngp").output_dim == 54
    with pytest.raises(ConfigError):
        FrequencyEncoder(2, 2, convention="nerf")


def test_sh_values_on_the_pole():
    out = SHEncoder(4)(torch.tensor([[0.0, 0.0, 1.0]], dtype=torch.float64))[0]
    expected = torch.zeros(16, dtype=torch.float64)
    expected[0] = 1 / (2 * math.sqrt(math.pi))
    expected[2] = math.sqrt(3) / (2 * math.sqrt(math.pi))
    expected[6] = math.sqrt(5) * 2 / (4 * math.sqrt(math.pi))
    expected[12] = math.sqrt(7) * 2 / (4 * math.sqrt(math.pi))
    torch.testing.assert_close(out, expected)


def test_sh_signs_follow_tcnn():
    # tcnn: out[1] = -c*y, out[3] = -c*x, out[4] = +c*xy, out[5] = -c*yz.
    d = torch.tensor([[0.6, 0.8, 0.0]], dtype=torch.float64)
    out = SHEncoder(3)(d)[0]
    assert out[1] < 0 and out[3] < 0 and out[4] > 0 and out[5] == 0
    assert SHEncoder(3).output_dim == 9


@pytest.mark.parametrize("degree", [1, 2, 3, 4])
def test_sh_is_orthonormal_on_the_sphere(degree):
    # Midpoint quadrature in (theta, phi); an orthonormal basis integrates to identity.
    nt, np_ = 200, 400
    theta = (torch.arange(nt, dtype=torch.float64) + 0.5) * math.pi / nt
    phi = (torch.arange(np_, dtype=torch.float64) + 0.5) * 2 * math.pi / np_
    t, p = torch.meshgrid(theta, phi, indexing="ij")
    d = torch.stack([t.sin() * p.cos(), t.sin() * p.sin(), t.cos()], -1).reshape(-1, 3)
    w = (t.sin() * (math.pi / nt) * (2 * math.pi / np_)).reshape(-1, 1)
    y = SHEncoder(degree)(d)
    gram = (y * w).T @ y
    torch.testing.assert_close(gram, torch.eye(degree**2, dtype=torch.float64), atol=1e-3, rtol=0)


def test_sh_rejects_degree_5():
    with pytest.raises(ConfigError):
        SHEncoder(5)
