"""scheduler "auto": the sampler a checkpoint's scheduler config names, step by step equal to what
diffusers builds from that config; VideoCrafter's own DDIM (eta, x0 rescaling) against a float64
numpy transcription of ``lvdm/models/samplers/ddim.py``."""

import warnings

import diffusers
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from test_schedulers import SHAPE, ZEROSCOPE, _scan_runner, compare_steps
from vinf_jax.errors import ConfigError
from vinf_jax.models.unet3d import UNetConfig
from vinf_jax.sampling import SchedulerSpec, make_solver
from vinf_jax.sampling.auto import SchedulerWarning, resolve

DPM = {**ZEROSCOPE, "_class_name": "DPMSolverMultistepScheduler", "algorithm_type": "sde-dpmsolver++",
       "solver_order": 2, "solver_type": "midpoint", "lower_order_final": True}
CONFIGS = {  # name: (scheduler config, kind auto must pick)
    "zeroscope DDIM": (ZEROSCOPE, "ddim"),
    "DDIM trailing": ({**ZEROSCOPE, "timestep_spacing": "trailing", "steps_offset": 0}, "ddim"),
    "DPM sde": (DPM, "sde-dpmsolver++"),
    "DPM ode": ({**DPM, "algorithm_type": "dpmsolver++"}, "dpmsolver++"),
    "DPM karras": ({**DPM, "algorithm_type": "dpmsolver++", "use_karras_sigmas": True}, "dpmsolver++"),
    "DPM sde karras heun": ({**DPM, "use_karras_sigmas": True, "solver_type": "heun"}, "sde-dpmsolver++"),
    "DPM leading offset": ({**DPM, "timestep_spacing": "leading", "steps_offset": 1}, "sde-dpmsolver++"),
    "DPM trailing first order": ({**DPM, "timestep_spacing": "trailing", "solver_order": 1}, "sde-dpmsolver++"),
}


@pytest.mark.parametrize("num_steps", [10, 25])
@pytest.mark.parametrize("name", list(CONFIGS))
def test_auto_matches_diffusers_built_from_the_config(name, num_steps):
    cfg, kind = CONFIGS[name]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        spec, used, notes = resolve("auto", cfg)
    assert spec.kind == kind and notes == [] and spec.eta == 0
    solver = make_solver(spec, used, num_steps)
    ref = getattr(diffusers, cfg["_class_name"]).from_config(cfg)  # what the config itself builds
    ref.set_timesteps(num_steps)
    np.testing.assert_array_equal(solver.timesteps, ref.timesteps.numpy())
    compare_steps(solver, ref, num_steps, seed=num_steps)  # the scheduler's own eta (0): step() default


NOT_HONOURED = {
    "another class": ({**ZEROSCOPE, "_class_name": "EulerDiscreteScheduler"}, "sde-dpmsolver++",
                      ["_class_name='EulerDiscreteScheduler' is not implemented"]),
    "dpmsolver (not ++), thresholding, order 3": (
        {**DPM, "algorithm_type": "sde-dpmsolver", "thresholding": True, "solver_order": 3}, "sde-dpmsolver++",
        ["algorithm_type='sde-dpmsolver' -> sde-dpmsolver++", "thresholding=True -> False", "solver_order=3 -> 2"]),
}


@pytest.mark.parametrize("name", list(NOT_HONOURED))
def test_what_auto_cannot_honour_is_one_warning(name):
    cfg, kind, parts = NOT_HONOURED[name]
    spec, used, notes = resolve("auto", cfg)
    assert spec.kind == kind and all(any(p in n for n in notes) for p in parts), notes
    make_solver(spec, used, 10)  # runs on the substitutes
    with pytest.raises(ConfigError):  # the same config with an explicit name stays strict
        make_solver(SchedulerSpec(kind), cfg, 10) if "thresholding" in cfg else SchedulerSpec.parse("euler")
    from vinf_jax.sampling.auto import warn_notes

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        warn_notes(notes)
    assert len(caught) == 1 and caught[0].category is SchedulerWarning


def released_scheduler(file_config: dict):
    """What the released Video-Infinity code samples with (``src/video_crafter.py``): the base pipeline's
    scheduler loaded from its config file, then ``DPMSolverMultistepScheduler.from_config(
    pipe.scheduler.config, use_karras=True, algorithm_type="sde-dpmsolver++")``."""
    loaded = getattr(diffusers, file_config["_class_name"]).from_config(file_config)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # diffusers: use_karras is not an expected key (ignored)
        return diffusers.DPMSolverMultistepScheduler.from_config(loaded.config, use_karras=True,
                                                                 algorithm_type="sde-dpmsolver++")


FPS_UNET, PLAIN_UNET = UNetConfig(fps_cond=True), UNetConfig(fps_cond=False)


@pytest.mark.parametrize("name", ["zeroscope DDIM", "DDIM trailing", "DPM ode", "DPM karras", "DPM leading offset"])
def test_auto_on_a_videocrafter2_port_is_the_released_sampler(name):
    """An fps-conditioned diffusers-layout UNet samples as the released code does, whatever the base
    pipeline's scheduler config names; a UNet without the fps embedding keeps the config's sampler."""
    cfg, kind = CONFIGS[name]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        spec, used, notes = resolve("auto", cfg, FPS_UNET)
    assert spec.kind == "sde-dpmsolver++" and notes == []
    assert resolve("auto", cfg, PLAIN_UNET)[0].kind == kind and resolve("auto", cfg)[0].kind == kind
    ref = released_scheduler(cfg)
    for num_steps in (10, 30):
        solver = make_solver(spec, used, num_steps)
        ref.set_timesteps(num_steps)
        np.testing.assert_array_equal(solver.timesteps, ref.timesteps.numpy())
        compare_steps(solver, ref, num_steps, seed=num_steps)


def test_explicit_names_override_auto():
    lvdm = {**ZEROSCOPE, "timestep_spacing": "leading", "videocrafter": {"use_scale": True, "scale_b": 0.7}}
    assert resolve("auto", lvdm)[0] == SchedulerSpec("videocrafter-ddim", eta=1.0)
    assert resolve("auto", lvdm, FPS_UNET)[0] == SchedulerSpec("videocrafter-ddim", eta=1.0)  # LVDM: its own DDIM
    assert resolve("ddim", ZEROSCOPE, FPS_UNET)[0] == SchedulerSpec("ddim")
    assert resolve("ddim", lvdm)[0] == SchedulerSpec("ddim")  # the diffusers port's sampler: no rescaling
    assert resolve("sde-dpmsolver++", ZEROSCOPE)[0] == SchedulerSpec("sde-dpmsolver++")
    assert SchedulerSpec.parse("videocrafter-ddim").eta == 1.0


# ----------------------------------------------------------------- VideoCrafter's DDIM sampler


def videocrafter_ddim(num_steps, eta, use_scale, scale_b, x_T, eps, noise, linear_start=0.00085,
                      linear_end=0.012, T=1000, mid_step=400):
    """lvdm/models/samplers/ddim.py (make_schedule + ddim_sampling + p_sample_ddim) in float64 numpy,
    with the model's outputs given per step. Returns (timesteps fed to the model, samples)."""
    betas = np.linspace(linear_start ** 0.5, linear_end ** 0.5, T, dtype=np.float64) ** 2  # make_beta_schedule
    alphas_cumprod = np.cumprod(1.0 - betas).astype(np.float32)  # LatentDiffusion's float32 buffer
    scale_arr = np.concatenate((np.linspace(1.0, scale_b, mid_step), np.full(T, scale_b))).astype(np.float32)
    c = T // num_steps
    ddim_timesteps = np.asarray(list(range(0, T, c))) + 1  # make_ddim_timesteps('uniform')
    ddim_alphas = alphas_cumprod[ddim_timesteps].astype(np.float64)
    ddim_alphas_prev = np.asarray([alphas_cumprod[0]] + alphas_cumprod[ddim_timesteps[:-1]].tolist())
    ddim_sigmas = eta * np.sqrt((1 - ddim_alphas_prev) / (1 - ddim_alphas) * (1 - ddim_alphas / ddim_alphas_prev))
    ddim_scale_arr = scale_arr[ddim_timesteps].astype(np.float64)
    ddim_scale_arr_prev = np.asarray([scale_arr[0]] + scale_arr[ddim_timesteps[:-1]].tolist())
    x, steps, xs = np.asarray(x_T, np.float64), [], []
    total = ddim_timesteps.shape[0]
    for i, step in enumerate(np.flip(ddim_timesteps)):
        index = total - i - 1
        e_t = eps[i]
        a_t, a_prev, sigma_t = ddim_alphas[index], ddim_alphas_prev[index], ddim_sigmas[index]
        pred_x0 = (x - np.sqrt(1.0 - a_t) * e_t) / np.sqrt(a_t)
        dir_xt = np.sqrt(1.0 - a_prev - sigma_t ** 2) * e_t
        n = sigma_t * noise[i]
        if use_scale:
            pred_x0 = pred_x0 / ddim_scale_arr[index]
            x = np.sqrt(a_prev) * ddim_scale_arr_prev[index] * pred_x0 + dir_xt + n
        else:
            x = np.sqrt(a_prev) * pred_x0 + dir_xt + n
        steps.append(int(step))
        xs.append(x)
    return np.asarray(steps), np.stack(xs)


@pytest.mark.parametrize("num_steps,eta,use_scale", [(25, 1.0, True), (30, 1.0, True), (50, 0.0, True),
                                                     (25, 0.5, False)])
def test_videocrafter_ddim_matches_its_transcription(num_steps, eta, use_scale):
    cfg = {**ZEROSCOPE, "videocrafter": {"beta_schedule": "linear", "num_train_timesteps": 1000,
                                         "linear_start": 0.00085, "linear_end": 0.012, "use_scale": use_scale,
                                         "scale_a": 1.0, "scale_b": 0.7, "mid_step": 400, "eta": eta}}
    spec, used, _ = resolve("auto", cfg)
    assert spec == SchedulerSpec("videocrafter-ddim", eta=eta)
    solver = make_solver(spec, used, num_steps)
    n = solver.num_steps  # 30 requested steps run 31 (range(0, 1000, 33)), as VideoCrafter does
    rng = np.random.default_rng(num_steps)
    x_T = rng.standard_normal(SHAPE)
    eps, noise = rng.standard_normal((n, *SHAPE)), rng.standard_normal((n, *SHAPE))
    want_t, want = videocrafter_ddim(num_steps, eta, use_scale, 0.7, x_T, eps, noise)
    np.testing.assert_array_equal(solver.timesteps, want_t)
    assert n == (31 if num_steps == 30 else num_steps) and solver.needs_noise == (eta > 0)
    with jax.enable_x64(True):
        got = np.asarray(_scan_runner(solver)(jnp.asarray(x_T), jnp.asarray(eps), jnp.asarray(noise)))
    err = np.abs(got - want).max(axis=tuple(range(1, want.ndim))) / np.abs(want).max(axis=tuple(range(1, want.ndim)))
    assert err.max() <= 1e-6, err


def test_videocrafter_ddim_on_a_diffusers_config_uses_videocrafter2_values():
    """The diffusers port (scheduler config without the block) can still sample as VideoCrafter2 did."""
    solver = make_solver(SchedulerSpec.parse("videocrafter-ddim"), ZEROSCOPE, 25)
    lvdm = {**ZEROSCOPE, "videocrafter": {"use_scale": True, "scale_b": 0.7, "eta": 1.0}}
    np.testing.assert_array_equal(solver.coefs, make_solver(SchedulerSpec("videocrafter-ddim", eta=1.0), lvdm, 25).coefs)
    with pytest.raises(ConfigError, match=r"steps=3: VideoCrafter's DDIM timesteps .* reach 1000"):
        make_solver(SchedulerSpec.parse("videocrafter-ddim"), ZEROSCOPE, 3)
