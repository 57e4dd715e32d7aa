import pytest
import torch

from inpdiff.model import InpDiffusion, sample
from inpdiff.model.diffusion import Schedule, step


def test_cosine_schedule_runs_from_signal_to_noise():
    ab = Schedule(1000, "cosine").alphas_cumprod
    assert ab[0] > 0.999 and ab[-1] < 1e-3
    assert torch.all(ab[1:] < ab[:-1])
    with pytest.raises(ValueError, match="unknown noise schedule"):
        Schedule(1000, "quadratic")


def test_signal_scale_shifts_every_steps_snr_by_its_square():
    snr = lambda ab: ab / (1 - ab)  # noqa: E731
    base, shifted = Schedule(1000).alphas_cumprod, Schedule(1000, signal_scale=0.5).alphas_cumprod
    assert torch.allclose(snr(shifted[:-1]), 0.25 * snr(base[:-1]), rtol=1e-9)
    with pytest.raises(ValueError, match="signal_scale must be positive"):
        Schedule(1000, signal_scale=0.0)


def test_sampling_times_span_the_schedule():
    times = Schedule(1000).sampling_times(10)
    assert times[0] == 999 and times[-1] == 0 and len(times) == 10
    assert torch.all(times[1:] < times[:-1])


@pytest.mark.parametrize("steps", [2, 10])
def test_ddim_step_with_the_true_x0_stays_on_the_forward_trajectory(steps):
    # With a perfect x0 prediction, deterministic DDIM maps q(x_t | x0, eps) to q(x_s | x0, eps).
    sched = Schedule(1000)
    times, coef = sched.sampling_times(steps), sched.step_coefficients(steps, eta=0.0)
    x0 = torch.where(torch.rand(1, 1, 8, 8) > 0.5, 1.0, -1.0)
    eps = torch.randn_like(x0)
    for i in range(steps - 1):
        x_t = sched.q_sample(x0, times[i].view(1), eps)
        x_s = step(x_t, x0, i, torch.randn_like(x0), coef)
        assert torch.allclose(x_s, sched.q_sample(x0, times[i + 1].view(1), eps), atol=1e-5)
    assert torch.equal(step(torch.randn_like(x0), x0, steps - 1, eps, coef), x0)  # last step returns x0


def test_eta_one_is_the_ddpm_posterior():
    sched = Schedule(50)
    coef = sched.step_coefficients(50, eta=1.0)
    ab = sched.alphas_cumprod
    for i, t in enumerate(sched.sampling_times(50)[:-1].tolist()):
        beta = 1 - ab[t] / ab[t - 1]
        posterior_var = (1 - ab[t - 1]) / (1 - ab[t]) * beta
        assert coef[i, 2] ** 2 == pytest.approx(float(posterior_var), rel=1e-4)
        # posterior mean coefficients (Ho et al. eq. 7)
        assert coef[i, 0] == pytest.approx(float(ab[t - 1].sqrt() * beta / (1 - ab[t])), rel=1e-4)
        assert coef[i, 1] == pytest.approx(float((1 - beta).sqrt() * (1 - ab[t - 1]) / (1 - ab[t])), rel=1e-4)


def test_step_is_pure():
    coef = Schedule(1000).step_coefficients(10, eta=1.0)
    x_t, x0, noise = torch.randn(2, 1, 4, 4), torch.rand(2, 1, 4, 4), torch.randn(2, 1, 4, 4)
    copies = [x_t.clone(), x0.clone(), noise.clone()]
    out = step(x_t, x0, torch.tensor(3), noise, coef)
    assert all(torch.equal(a, b) for a, b in zip((x_t, x0, noise), copies))
    assert torch.equal(out, step(x_t, x0, 3, noise, coef))


@pytest.mark.parametrize("eta", [0.0, 1.0])
def test_sampler_is_deterministic_under_a_seed(tiny_cfg, eta):
    model = InpDiffusion(tiny_cfg).eval()
    image = torch.rand(1, 3, 70, 50)
    run = lambda seed: sample(model, image, steps=4, samples=2, eta=eta, generator=torch.Generator().manual_seed(seed))
    a, b, c = run(0), run(0), run(1)
    assert a.prob.shape == a.uncertainty.shape == a.edge.shape == (1, 1, 70, 50)
    assert torch.equal(a.prob, b.prob) and torch.equal(a.uncertainty, b.uncertainty)
    assert not torch.equal(a.prob, c.prob)
    assert float(a.prob.min()) >= 0 and float(a.prob.max()) <= 1


def test_ensemble_uncertainty_is_the_std_across_samples(tiny_cfg):
    model = InpDiffusion(tiny_cfg).eval()
    image = torch.rand(1, 3, 64, 64)
    one = sample(model, image, steps=3, samples=1, generator=torch.Generator().manual_seed(0))
    assert torch.count_nonzero(one.uncertainty) == 0
    many = sample(model, image, steps=3, samples=4, generator=torch.Generator().manual_seed(0))
    assert float(many.uncertainty.max()) > 0
    assert float(many.uncertainty.max()) <= 0.5  # std of values in [0, 1]


def test_baseline_is_a_single_pass(tiny_cfg):
    tiny_cfg.model.diffusion = False
    model = InpDiffusion(tiny_cfg).eval()
    calls = []
    model.dn.register_forward_hook(lambda *a: calls.append(1))
    image = torch.rand(1, 3, 64, 64)
    a = sample(model, image, steps=10, generator=torch.Generator().manual_seed(0))
    b = sample(model, image, steps=10, generator=torch.Generator().manual_seed(1))
    assert len(calls) == 2 and torch.equal(a.prob, b.prob)


def test_p2_weights_move_the_loss_to_the_noisy_steps():
    s = Schedule(1000)
    assert torch.equal(s.p2_weights(0.0), torch.ones(1000))
    w = s.p2_weights(1.0)
    assert float(w.mean()) == pytest.approx(1.0, rel=1e-5)
    assert bool((w[1:] >= w[:-1]).all()) and float(w[0]) < 0.01 < 1.5 < float(w[-1])


def test_self_conditioned_sampler_feeds_each_step_the_previous_estimate(tiny_cfg):
    tiny_cfg.diffusion.self_condition = True
    model = InpDiffusion(tiny_cfg).eval()
    seen = []
    model.dn.register_forward_pre_hook(lambda m, args: seen.append(args[3]))
    image = torch.rand(1, 3, 64, 64)
    sample(model, image, steps=3, generator=torch.Generator().manual_seed(0))
    assert seen[0] is None and all(x is not None and x.shape == (1, 1, 64, 64) for x in seen[1:])
    assert float(seen[1].abs().max()) <= 1  # an x0 estimate: 2 * prob - 1
    # The estimate is an input: changing it changes the step's output.
    x_t, t = torch.randn(1, 1, 64, 64), torch.tensor([500])
    conds = model.conditions(image)
    with torch.no_grad():
        assert not torch.equal(model.denoise(x_t, t, conds)[0], model.denoise(x_t, t, conds, torch.ones_like(x_t))[0])
