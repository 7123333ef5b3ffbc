"""The diffusion process's identities and the DDIM sampler's exactness."""

from __future__ import annotations

import math

import pytest
import torch

from vidpose.models.diffusion import (
    GaussianDiffusion,
    NoiseSource,
    cosine_betas,
    ddim_sample,
    ddim_sigma,
    ddim_step,
    ddim_timesteps,
    linear_betas,
)


@pytest.mark.parametrize("schedule", ["linear", "cosine"])
@pytest.mark.parametrize("timesteps", [10, 1000])
def test_alpha_bar_decreases_from_about_one_to_about_zero(schedule, timesteps):
    process = GaussianDiffusion(timesteps=timesteps, schedule=schedule, signal_scale=1.0)
    alpha_bar = process.alphas_cumprod.double()
    assert alpha_bar.shape == (timesteps,)
    assert torch.all(alpha_bar[1:] < alpha_bar[:-1])
    assert torch.all((alpha_bar > 0) & (alpha_bar < 1))
    assert torch.all((process.betas > 0) & (process.betas <= 0.999))
    if timesteps == 1000:
        assert alpha_bar[0] > 0.999
        assert alpha_bar[-1] < 1e-4


def test_cosine_schedule_follows_nichol_dhariwal_eq_17():
    steps = 1000
    alpha_bar = torch.cumprod(1 - cosine_betas(steps), 0)

    def f(t: float) -> float:
        return math.cos((t / steps + 0.008) / 1.008 * math.pi / 2) ** 2

    for t in (0, 1, 250, 500, 900, 998):  # index t holds alpha_bar(t + 1); last one clipped
        assert alpha_bar[t].item() == pytest.approx(f(t + 1) / f(0), rel=1e-9, abs=1e-12)


def test_linear_schedule_endpoints_of_ddpm():
    betas = linear_betas(1000)
    assert betas[0].item() == pytest.approx(1e-4)
    assert betas[-1].item() == pytest.approx(0.02)


@pytest.mark.parametrize("schedule", ["linear", "cosine"])
def test_q_sample_then_x0_from_eps_recovers_x0(schedule, generator):
    process = GaussianDiffusion(timesteps=1000, schedule=schedule, signal_scale=2.0)
    x0 = process.to_signal(torch.rand(6, 17, 8, 6, generator=generator))
    eps = torch.randn(x0.shape, generator=generator)
    t = torch.tensor([0, 1, 100, 500, 900, 998])
    x_t = process.q_sample(x0, t, eps)
    torch.testing.assert_close(process.x0_from_eps(x_t, t, eps), x0, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(process.eps_from_x0(x_t, t, x0), eps, atol=1e-3, rtol=1e-3)


def test_signal_range_maps_heatmaps_to_plus_minus_scale():
    process = GaussianDiffusion(timesteps=10, schedule="cosine", signal_scale=1.5)
    heatmaps = torch.tensor([0.0, 0.5, 1.0])
    torch.testing.assert_close(process.to_signal(heatmaps), torch.tensor([-1.5, 0.0, 1.5]))
    torch.testing.assert_close(process.from_signal(process.to_signal(heatmaps)), heatmaps)


def test_schedule_buffers_are_not_checkpointed():
    process = GaussianDiffusion(timesteps=10, schedule="linear", signal_scale=1.0)
    assert process.state_dict() == {}


def test_ddim_timesteps_spacing():
    assert ddim_timesteps(999, 3) == [(999, 665), (665, 332), (332, -1)]
    assert ddim_timesteps(999, 1) == [(999, -1)]
    assert ddim_timesteps(4, 5) == [(4, 3), (3, 2), (2, 1), (1, 0), (0, -1)]
    for start in (0, 1, 7, 499, 999):
        for steps in range(1, min(start + 1, 40) + 1):
            pairs = ddim_timesteps(start, steps)
            times = [pairs[0][0]] + [prev for _, prev in pairs]
            assert len(pairs) == steps
            assert times[0] == start and times[-1] == -1
            assert all(a > b for a, b in zip(times[:-1], times[1:], strict=True))
    with pytest.raises(ValueError, match="do not fit"):
        ddim_timesteps(9, 11)
    with pytest.raises(ValueError):
        ddim_timesteps(9, 0)


def test_ddim_step_with_the_true_x0_moves_along_the_same_eps(generator):
    alpha_bar = GaussianDiffusion(timesteps=100, schedule="cosine", signal_scale=1.0).alphas_cumprod
    x0 = torch.randn(2, 3, 4, 4, generator=generator)
    eps = torch.randn(x0.shape, generator=generator)
    t, t_prev = 80, 30
    x_t = alpha_bar[t].sqrt() * x0 + (1 - alpha_bar[t]).sqrt() * eps
    expected = alpha_bar[t_prev].sqrt() * x0 + (1 - alpha_bar[t_prev]).sqrt() * eps
    torch.testing.assert_close(ddim_step(x_t, x0, t, t_prev, alpha_bar, 0.0, None), expected)


@pytest.mark.parametrize("eta", [0.0, 0.5, 1.0])
def test_ddim_last_step_lands_exactly_on_x0(eta, generator):
    alpha_bar = GaussianDiffusion(timesteps=100, schedule="linear", signal_scale=1.0).alphas_cumprod
    x_t = torch.randn(2, 3, 4, 4, generator=generator)
    x0 = torch.randn(x_t.shape, generator=generator)
    assert torch.equal(ddim_step(x_t, x0, 40, -1, alpha_bar, eta, None), x0)


def test_ddim_sigma_eta_one_is_the_ddpm_posterior_std():
    process = GaussianDiffusion(timesteps=100, schedule="cosine", signal_scale=1.0)
    alpha_bar, betas = process.alphas_cumprod.double(), process.betas.double()
    for t in (1, 50, 99):
        # DDPM eq. 7: beta_tilde = (1 - abar_{t-1}) / (1 - abar_t) * beta_t
        posterior = (1 - alpha_bar[t - 1]) / (1 - alpha_bar[t]) * betas[t]
        sigma = ddim_sigma(alpha_bar[t], alpha_bar[t - 1], 1.0)
        assert sigma.item() == pytest.approx(posterior.sqrt().item(), rel=1e-5)
    assert ddim_sigma(alpha_bar[50], alpha_bar[20], 0.0).item() == 0.0


def test_ddim_step_needs_noise_when_eta_is_positive():
    alpha_bar = GaussianDiffusion(timesteps=10, schedule="linear", signal_scale=1.0).alphas_cumprod
    x = torch.zeros(1, 1, 2, 2)
    with pytest.raises(ValueError, match="noise"):
        ddim_step(x, x, 5, 2, alpha_bar, 0.5, None)
    with pytest.raises(ValueError):
        ddim_step(x, x, 5, 5, alpha_bar, 0.0, None)


@pytest.mark.parametrize("steps", [1, 2, 3, 7])
@pytest.mark.parametrize("eta", [0.0, 1.0])
def test_sampler_with_an_oracle_returns_x0_in_exactly_s_calls(steps, eta, generator):
    process = GaussianDiffusion(timesteps=1000, schedule="cosine", signal_scale=1.0)
    x0 = process.to_signal(torch.rand(5, 17, 8, 6, generator=generator))
    x_start = torch.randn(x0.shape, generator=generator)
    calls = []

    def oracle(x_t, t):
        calls.append((t, x_t.shape[0]))
        return x0, {}

    timesteps = ddim_timesteps(999, steps)
    final, records = ddim_sample(
        oracle,
        x_start,
        timesteps=timesteps,
        alphas_cumprod=process.alphas_cumprod,
        eta=eta,
        draw_noise=lambda: torch.randn(x0.shape, generator=generator),
    )
    assert torch.equal(final, x0)
    assert calls == [(t, 5) for t, _ in timesteps]
    assert [(r["t"], r["t_prev"]) for r in records] == timesteps
    assert torch.equal(records[0]["x_t"], x_start)
    if eta == 0.0:
        # deterministic DDIM with the true x0 keeps the starting noise: every x_t is
        # q_sample(x0, t, eps_start)
        eps = process.eps_from_x0(x_start, torch.full((5,), 999), x0)
        for record in records:
            t = torch.full((5,), record["t"])
            torch.testing.assert_close(
                record["x_t"], process.q_sample(x0, t, eps), atol=1e-4, rtol=1e-4
            )


def test_noise_source_per_sample_seeds_do_not_depend_on_the_batch():
    batched = NoiseSource(batch_size=3, device="cpu", sample_seeds=torch.tensor([5, 7, 9]))
    t_batched, noise_batched = batched.integers(1000), batched.normal((2, 4))
    for index, seed in enumerate((5, 7, 9)):
        alone = NoiseSource(batch_size=1, device="cpu", sample_seeds=[seed])
        assert torch.equal(alone.integers(1000)[0], t_batched[index])
        assert torch.equal(alone.normal((2, 4))[0], noise_batched[index])


def test_noise_source_arguments():
    with pytest.raises(ValueError, match="not both"):
        NoiseSource(batch_size=1, device="cpu", generator=torch.Generator(), sample_seeds=[1])
    with pytest.raises(ValueError, match="seeds"):
        NoiseSource(batch_size=2, device="cpu", sample_seeds=[1])
    first = NoiseSource(batch_size=2, device="cpu", generator=torch.Generator().manual_seed(3))
    second = NoiseSource(batch_size=2, device="cpu", generator=torch.Generator().manual_seed(3))
    assert torch.equal(first.normal((3,)), second.normal((3,)))
