"""vinf_jax.sampling.schedulers against diffusers: same timesteps, sigmas and every intermediate sample.

Both sides get the same start sample, the same fresh random model output per step and the same injected
noise per step; ours runs as one jitted `lax.scan` with the step index traced.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from diffusers import DDIMScheduler, DPMSolverMultistepScheduler

from vinf_jax.errors import ConfigError
from vinf_jax.sampling import SCHEDULER_KINDS, SchedulerSpec, SolverState, make_solver

# zeroscope / VideoCrafter2 scheduler_config.json (DDIM; no timestep_spacing -> each class's default)
ZEROSCOPE = {
    "_class_name": "DDIMScheduler",
    "_diffusers_version": "0.15.0",
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "beta_start": 0.00085,
    "clip_sample": False,
    "num_train_timesteps": 1000,
    "prediction_type": "epsilon",
    "set_alpha_to_one": False,
    "skip_prk_steps": True,
    "steps_offset": 1,
    "trained_betas": None,
}
SHAPE = (1, 4, 3, 8, 8)  # (b, c, frames, h, w) latent, small
TOL = 1e-5  # relative L2 error per step, float32


def _reference(spec, cfg):
    if spec.kind == "ddim":
        return DDIMScheduler.from_config(cfg)
    return DPMSolverMultistepScheduler.from_config(
        cfg, algorithm_type=spec.kind, use_karras_sigmas=spec.use_karras_sigmas
    )


@functools.lru_cache(maxsize=None)
def _scan_runner(solver):
    """All intermediate samples of the full loop, as one program with i traced."""

    @jax.jit
    def run(x, model_outputs, noises):
        def body(carry, inp):
            x, state = carry
            i, m, z = inp
            x, state = solver.step(state, i, m, x, z)
            return (x, state), x

        idx = jnp.arange(model_outputs.shape[0], dtype=jnp.int32)
        _, xs = jax.lax.scan(body, (x, solver.init_state(x)), (idx, model_outputs, noises))
        return xs

    return run


def _compare(spec, cfg, num_steps, seed=0):
    """Run both loops; return the worst per-step relative error (asserting schedules match on the way)."""
    solver = make_solver(spec, cfg, num_steps)
    ref = _reference(spec, cfg)
    ref.set_timesteps(num_steps)
    np.testing.assert_array_equal(solver.timesteps, ref.timesteps.numpy())
    assert solver.timesteps.shape == (num_steps,)
    assert solver.init_noise_sigma == ref.init_noise_sigma
    if spec.kind == "ddim":
        assert solver.sigmas is None
    else:
        np.testing.assert_allclose(solver.sigmas, ref.sigmas.numpy(), rtol=1e-6, atol=0)
    assert solver.needs_noise == (spec.kind == "sde-dpmsolver++" or spec.eta > 0)
    return compare_steps(solver, ref, num_steps, seed, eta=spec.eta if spec.kind == "ddim" else None)


def compare_steps(solver, ref, num_steps, seed, eta=None):
    """Our solver and the diffusers scheduler ``ref`` (timesteps set) on the same random model outputs
    and noise; asserts every step within TOL (relative L2) and returns the worst error."""
    rng = np.random.default_rng(seed)
    x0 = rng.standard_normal(SHAPE, dtype=np.float32)
    outs = rng.standard_normal((num_steps, *SHAPE), dtype=np.float32)
    noises = rng.standard_normal((num_steps, *SHAPE), dtype=np.float32)

    ours = np.asarray(_scan_runner(solver)(jnp.asarray(x0), jnp.asarray(outs), jnp.asarray(noises)))

    x = torch.from_numpy(x0)
    worst = 0.0
    for i, t in enumerate(ref.timesteps):
        kw = {"variance_noise": torch.from_numpy(noises[i])}
        if eta is not None:
            kw["eta"] = eta
        x = ref.step(torch.from_numpy(outs[i]), t, x, **kw).prev_sample
        want = x.numpy()
        err = float(np.linalg.norm(ours[i] - want) / np.linalg.norm(want))
        assert err <= TOL, f"step {i} (t={int(t)}): relative error {err:.2e}"
        worst = max(worst, err)
    return worst


def _cfg(**overrides):
    return {**ZEROSCOPE, **overrides}


VARIANTS = {
    "sde-dpmsolver++": (SchedulerSpec("sde-dpmsolver++"), _cfg()),
    "dpmsolver++": (SchedulerSpec("dpmsolver++"), _cfg()),
    "dpmsolver++-karras": (SchedulerSpec("dpmsolver++", use_karras_sigmas=True), _cfg()),
    "sde-dpmsolver++-karras": (SchedulerSpec("sde-dpmsolver++", use_karras_sigmas=True), _cfg()),
    "sde-dpmsolver++-trailing": (SchedulerSpec("sde-dpmsolver++"), _cfg(timestep_spacing="trailing")),
    "dpmsolver++-leading": (SchedulerSpec("dpmsolver++"), _cfg(timestep_spacing="leading")),
    "ddim": (SchedulerSpec("ddim"), _cfg()),
    "ddim-eta1": (SchedulerSpec("ddim", eta=1.0), _cfg()),
    "ddim-eta1-trailing": (SchedulerSpec("ddim", eta=1.0), _cfg(timestep_spacing="trailing")),
    "ddim-linspace": (SchedulerSpec("ddim", eta=0.5), _cfg(timestep_spacing="linspace")),
}


@pytest.mark.parametrize("num_steps", [10, 25, 30])
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_matches_diffusers(variant, num_steps):
    spec, cfg = VARIANTS[variant]
    _compare(spec, cfg, num_steps)


# Less common config options, one step count each (exercise the other coefficient paths).
EXTRAS = {
    "dpm-v-prediction": (SchedulerSpec("dpmsolver++"), _cfg(prediction_type="v_prediction")),
    "sde-sample-prediction": (SchedulerSpec("sde-dpmsolver++"), _cfg(prediction_type="sample")),
    "dpm-heun-sigma-min": (
        SchedulerSpec("dpmsolver++"),
        _cfg(solver_type="heun", final_sigmas_type="sigma_min", beta_schedule="linear", beta_start=1e-4, beta_end=0.02),
    ),
    "sde-heun-euler-final": (SchedulerSpec("sde-dpmsolver++"), _cfg(solver_type="heun", euler_at_final=True)),
    # lambda_min_clipped is what diffusers recommends for the cosine schedule (its sigma reaches ~2e4 at t=999).
    # Not with Karras sigmas: those give several leading steps the same integer timestep, and diffusers then
    # starts at index 1 and runs past its sigmas.
    "dpm-cosine-clipped": (
        SchedulerSpec("sde-dpmsolver++"),
        _cfg(beta_schedule="squaredcos_cap_v2", lambda_min_clipped=-5.1),
    ),
    "ddim-v-alpha-one-clip": (
        SchedulerSpec("ddim", eta=1.0),
        _cfg(prediction_type="v_prediction", set_alpha_to_one=True, clip_sample=True, clip_sample_range=2.0),
    ),
    "ddim-sample-prediction": (SchedulerSpec("ddim"), _cfg(prediction_type="sample")),
    # zero terminal SNR (Lin et al. 2023): alpha-bar 0 at t = 999, which trailing spacing visits
    "ddim-zero-snr-v-trailing": (
        SchedulerSpec("ddim"), _cfg(prediction_type="v_prediction", rescale_betas_zero_snr=True, timestep_spacing="trailing")),
    "dpm-zero-snr-v": (SchedulerSpec("dpmsolver++"), _cfg(prediction_type="v_prediction", rescale_betas_zero_snr=True)),
    "sde-dpm-zero-snr-v-karras": (SchedulerSpec("sde-dpmsolver++", use_karras_sigmas=True),
                                  _cfg(prediction_type="v_prediction", rescale_betas_zero_snr=True)),
    "ddim-zero-snr-sample": (SchedulerSpec("ddim", eta=1.0), _cfg(prediction_type="sample", rescale_betas_zero_snr=True)),
}


@pytest.mark.parametrize("variant", list(EXTRAS))
def test_matches_diffusers_extra_configs(variant):
    spec, cfg = EXTRAS[variant]
    _compare(spec, cfg, 12)


def test_sigma_min_second_order_final_step_beyond_15():
    # With final_sigmas_type="sigma_min" and >= 15 steps diffusers keeps second order on the last step.
    _compare(SchedulerSpec("sde-dpmsolver++"), _cfg(final_sigmas_type="sigma_min"), 16)


def test_config_from_diffusers_object_uses_target_class_defaults():
    # A pipeline's scheduler.config lists defaulted keys in _use_default_values; from_config drops them, so
    # the DDIM default "leading" spacing must not leak into DPM-Solver.
    ddim_cfg = dict(DDIMScheduler.from_config(ZEROSCOPE).config)
    assert ddim_cfg["timestep_spacing"] == "leading" and "timestep_spacing" in ddim_cfg["_use_default_values"]
    solver = make_solver(SchedulerSpec("sde-dpmsolver++"), ddim_cfg, 25)
    ref = DPMSolverMultistepScheduler.from_config(ddim_cfg, algorithm_type="sde-dpmsolver++")
    ref.set_timesteps(25)
    np.testing.assert_array_equal(solver.timesteps, ref.timesteps.numpy())


def test_zeroscope_default_schedule():
    # Pin the schedule the default sampler feeds the UNet (diffusers 0.42, linspace spacing, final sigma 0).
    solver = make_solver(SchedulerSpec.parse("sde-dpmsolver++"), ZEROSCOPE, 10)
    assert solver.timesteps.tolist() == [999, 899, 799, 699, 599, 500, 400, 300, 200, 100]
    assert solver.sigmas[-1] == 0.0 and solver.sigmas.dtype == np.float32
    ddim = make_solver(SchedulerSpec.parse("ddim"), ZEROSCOPE, 10)
    assert ddim.timesteps.tolist() == [901, 801, 701, 601, 501, 401, 301, 201, 101, 1]


def test_fori_loop_with_python_and_traced_index_agree():
    spec, cfg = VARIANTS["sde-dpmsolver++"]
    solver = make_solver(spec, cfg, 10)
    rng = np.random.default_rng(1)
    x = jnp.asarray(rng.standard_normal(SHAPE, dtype=np.float32))
    outs = jnp.asarray(rng.standard_normal((10, *SHAPE), dtype=np.float32))
    noises = jnp.asarray(rng.standard_normal((10, *SHAPE), dtype=np.float32))

    @jax.jit
    def loop(x):
        def body(i, carry):
            x, state = carry
            return solver.step(state, i, outs[i], x, noises[i])

        return jax.lax.fori_loop(0, 10, body, (x, solver.init_state(x)))[0]

    y, state = x, solver.init_state(x)
    for i in range(10):  # eager, python int index
        y, state = solver.step(state, i, outs[i], y, noises[i])
    got, want = np.asarray(loop(x)), np.asarray(y)
    # not bitwise: XLA fuses the jitted loop differently from eager op-by-op execution
    assert np.linalg.norm(got - want) / np.linalg.norm(want) < 1e-6


def test_dtype_and_state():
    solver = make_solver(SchedulerSpec("dpmsolver++"), ZEROSCOPE, 10)
    x = jnp.ones(SHAPE, jnp.bfloat16)
    state = solver.init_state(x)
    assert isinstance(state, SolverState) and state.prev_x0.dtype == jnp.float32
    y, state2 = solver.step(state, jnp.int32(3), x, x, None)  # noise unused by the ODE solver
    assert y.dtype == jnp.bfloat16 and y.shape == SHAPE
    assert state2.prev_x0.dtype == jnp.float32
    sde = make_solver(SchedulerSpec("sde-dpmsolver++"), ZEROSCOPE, 10)
    with pytest.raises(ValueError, match="noise"):
        sde.step(sde.init_state(x), 0, x, x, None)


def test_spec_parse_and_validation():
    for kind in SCHEDULER_KINDS:
        assert SchedulerSpec.parse(kind) == SchedulerSpec(kind=kind)
    assert SchedulerSpec().kind == "sde-dpmsolver++"
    with pytest.raises(ValueError, match="sde-dpmsolver\\+\\+, dpmsolver\\+\\+, ddim"):
        SchedulerSpec.parse("euler")
    with pytest.raises(ValueError):
        SchedulerSpec("ddim", use_karras_sigmas=True)
    with pytest.raises(ValueError):
        SchedulerSpec("dpmsolver++", eta=1.0)
    with pytest.raises(ValueError):
        SchedulerSpec("ddim", eta=-1.0)
    hash(SchedulerSpec("ddim", eta=0.5))  # static jit argument


@pytest.mark.parametrize(
    "spec, cfg, steps",
    [
        # diffusers' trailing spacing gives 62 timesteps ending in -1 for 61 steps
        (SchedulerSpec("sde-dpmsolver++"), _cfg(timestep_spacing="trailing"), 61),
        (SchedulerSpec("ddim"), _cfg(timestep_spacing="trailing"), 61),
        (SchedulerSpec("dpmsolver++"), _cfg(timestep_spacing="bogus"), 10),
        (SchedulerSpec("dpmsolver++"), _cfg(thresholding=True), 10),
        (SchedulerSpec("dpmsolver++"), _cfg(solver_order=3), 10),
        (SchedulerSpec("ddim"), _cfg(prediction_type="flow_prediction"), 10),
        (SchedulerSpec("ddim"), _cfg(beta_schedule="cubic"), 10),
        (SchedulerSpec("ddim"), _cfg(), 0),
        (SchedulerSpec("dpmsolver++"), _cfg(rescale_betas_zero_snr=True), 10),  # epsilon at zero SNR
        (SchedulerSpec("videocrafter-ddim"), _cfg(rescale_betas_zero_snr=True), 10),  # LDM has no zero-SNR schedule
        (SchedulerSpec("videocrafter-ddim"), _cfg(rescale_betas_zero_snr=True, videocrafter={}), 10),
    ],
)
def test_rejects_unsupported(spec, cfg, steps):
    with pytest.raises(ConfigError):
        make_solver(spec, cfg, steps)
