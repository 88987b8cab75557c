"""2-D mode coverage: the VEEGAN/PacGAN protocol on exact and degenerate samplers."""

import math

import pytest
import torch

from fastgan import metrics as M


def test_protocol_modes():
    ring, grid = M.ring_modes(), M.grid_modes()
    assert ring.shape == (8, 2) and grid.shape == (25, 2)
    assert torch.allclose(ring.norm(dim=1), torch.ones(8, dtype=torch.float64))
    assert sorted(set(grid[:, 0].tolist())) == [-4.0, -2.0, 0.0, 2.0, 4.0]


@pytest.mark.parametrize("modes, score", [(M.ring_modes(), M.ring_coverage), (M.grid_modes(), M.grid_coverage)])
def test_samples_exactly_on_the_modes_cover_all(modes, score):
    samples = modes.repeat(M.PROTOCOL_SAMPLES // len(modes), 1)
    result = score(samples)
    assert result.modes_covered == len(modes)
    assert result.high_quality == 1.0
    assert result.reverse_kl == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("modes, score", [(M.ring_modes(), M.ring_coverage), (M.grid_modes(), M.grid_coverage)])
def test_all_samples_on_one_mode_cover_one(modes, score):
    result = score(modes[3].expand(M.PROTOCOL_SAMPLES, 2))
    assert result.modes_covered == 1
    assert result.high_quality == 1.0
    assert result.reverse_kl == pytest.approx(math.log(len(modes)))  # KL(one-hot || uniform)
    assert result.counts[3] == M.PROTOCOL_SAMPLES


def test_the_true_mixture_scores_the_gaussian_3_sigma_mass():
    # A perfect sampler: the 2-D Gaussian mass within 3 sigma is 1 - exp(-9/2) = .9889.
    g = torch.Generator().manual_seed(0)
    modes = M.grid_modes()
    n = 20000
    samples = modes[torch.randint(0, 25, (n,), generator=g)] + M.GRID_SIGMA * torch.randn(n, 2, generator=g, dtype=torch.float64)
    result = M.grid_coverage(samples)
    assert result.modes_covered == 25
    assert result.high_quality == pytest.approx(1 - math.exp(-4.5), abs=0.003)
    assert result.reverse_kl < 0.01


def test_points_between_modes_are_low_quality():
    # Midpoints between neighbouring grid modes are 1 away from both: 20 sigma.
    midpoints = torch.tensor([[1.0, 0.0], [-1.0, 2.0], [3.0, 3.0]]).repeat(100, 1)
    result = M.grid_coverage(midpoints)
    assert result.modes_covered == 0 and result.high_quality == 0.0 and result.reverse_kl == math.inf
    # Half on a mode, half far off: high quality 1/2, one mode covered.
    half = torch.cat([torch.zeros(50, 2), torch.full((50, 2), 1.0)])
    result = M.grid_coverage(half)
    assert result.high_quality == 0.5 and result.modes_covered == 1


def test_bad_input():
    with pytest.raises(ValueError, match="samples must have 2 features"):
        M.ring_coverage(torch.zeros(10, 3))
    with pytest.raises(ValueError, match="sigma must be a positive number"):
        M.mode_coverage(torch.zeros(10, 2), M.ring_modes(), 0.0)
