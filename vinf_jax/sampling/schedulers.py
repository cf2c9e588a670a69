"""Diffusion samplers (DPM-Solver++ multistep, its SDE variant, DDIM) as pure, jittable step functions.

Video-Infinity samples VideoCrafter2 with diffusers' `DPMSolverMultistepScheduler` built from the model's
DDIM `scheduler_config.json`; results are only comparable with the reference if the timesteps fed to the
UNet and the update rule are the same. So the schedule set-up below follows diffusers' arithmetic (float32
betas and cumulative products, numpy interpolation, the same rounding of timesteps): timesteps are identical,
sigmas agree to the last float32 bit or one (torch's vectorised float32 sqrt is not correctly rounded), and
`tests/test_schedulers.py` checks timesteps, sigmas and every intermediate sample against diffusers itself.

Design: both samplers are, per step, linear in a handful of tensors (current sample, predicted x0, the change
of x0 since the previous step, predicted noise, injected noise) with scalar weights that depend only on the
step index. All weights are precomputed on the host in float64 numpy into one `(k, num_steps)` table; the step
gathers column `i`, so a single compiled program serves every step with `i` traced (e.g. inside
`lax.fori_loop`), and there is no python-side step counter as in diffusers. Which step is first or second
order is encoded in the table (a zero weight on the x0 change), not in control flow.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from vinf_jax.errors import ConfigError

SCHEDULER_KINDS: tuple[str, ...] = ("sde-dpmsolver++", "dpmsolver++", "ddim", "videocrafter-ddim", "t2v-turbo")
_DPM_KINDS = ("sde-dpmsolver++", "dpmsolver++")
_DDIM_KINDS = ("ddim", "videocrafter-ddim")


@dataclasses.dataclass(frozen=True)
class SchedulerSpec:
    """What the user chose: sampler kind and its options (hashable, so usable as a static jit argument)."""

    kind: str = "sde-dpmsolver++"
    use_karras_sigmas: bool = False  # DPM-Solver kinds only
    eta: float | None = None  # DDIM kinds only; 0 = deterministic DDIM, 1 = DDPM-like noise; None = the
    # kind's default: 1.0 for videocrafter-ddim (VideoCrafter's scripts), 0.0 otherwise
    lcm_origin_steps: int | None = None  # t2v-turbo only: the skeleton its timesteps are taken from; None =
    # the checkpoint's (its scheduler config's "t2v_turbo" block, else 50)

    def __post_init__(self):
        if self.eta is None:
            object.__setattr__(self, "eta", 1.0 if self.kind == "videocrafter-ddim" else 0.0)
        if self.kind not in SCHEDULER_KINDS:
            raise ConfigError(f"scheduler {self.kind!r} is not supported; allowed: {', '.join(SCHEDULER_KINDS)}")
        if self.use_karras_sigmas and self.kind not in _DPM_KINDS:
            raise ConfigError(f"use_karras_sigmas applies only to {', '.join(_DPM_KINDS)}, not {self.kind!r}")
        if not (isinstance(self.eta, (int, float)) and math.isfinite(self.eta) and self.eta >= 0):
            raise ConfigError(f"eta must be a finite number >= 0, got {self.eta!r}")
        if self.eta != 0 and self.kind not in _DDIM_KINDS:
            raise ConfigError(f"eta applies only to {', '.join(_DDIM_KINDS)}, not {self.kind!r}")
        if self.lcm_origin_steps is not None:
            if self.kind != "t2v-turbo":
                raise ConfigError(f"lcm_origin_steps applies only to t2v-turbo, not {self.kind!r}")
            if isinstance(self.lcm_origin_steps, bool) or not isinstance(self.lcm_origin_steps, int) \
                    or self.lcm_origin_steps < 1:
                raise ConfigError(f"pipe_configs.lcm_origin_steps: expected an integer >= 1, got {self.lcm_origin_steps!r}")

    @classmethod
    def parse(cls, name: str) -> "SchedulerSpec":
        """Spec with default options for a kind name (one of `SCHEDULER_KINDS`)."""
        if name not in SCHEDULER_KINDS:
            raise ConfigError(f"scheduler {name!r} is not supported; allowed: {', '.join(SCHEDULER_KINDS)}")
        return cls(kind=name)


class SolverState(NamedTuple):
    """Carry between steps: the previous step's x0 prediction (what the second-order update differences)."""

    prev_x0: jax.Array


# Rows of Solver.coefs. Per step i (all tensors in the compute dtype):
#   x0   = (P_S * sample - P_M * model_output) / P_DIV        [then clipped if clip_sample]
#   eps  = E_S * sample + E_M * model_output
#   next = A * sample + B * x0 + C * (x0 - prev_x0) + D * eps + N * noise
_P_S, _P_M, _P_DIV, _E_S, _E_M, _A, _B, _C, _D, _N = range(10)


@dataclasses.dataclass(frozen=True, eq=False)  # eq=False: identity hash, so it can be a static jit argument
class Solver:
    """A sampler bound to one config and step count. Arrays are host constants; `step` is pure and jittable."""

    kind: str
    timesteps: np.ndarray  # int64 (num_steps,): what to feed the UNet at step i; equals diffusers' timesteps
    sigmas: np.ndarray | None  # DPM: float32 (num_steps + 1,) as diffusers' scheduler.sigmas; DDIM: None
    init_noise_sigma: float
    needs_noise: bool
    coefs: np.ndarray  # float64 (10, num_steps), rows as laid out above
    clip_sample_range: float | None = None  # DDIM clip_sample; None = no clipping

    @property
    def num_steps(self) -> int:
        return int(self.timesteps.shape[0])

    def init_state(self, sample: jax.Array) -> SolverState:
        return SolverState(prev_x0=jnp.zeros(sample.shape, _compute_dtype(sample.dtype)))

    def step(
        self,
        state: SolverState,
        i: jax.Array | int,
        model_output: jax.Array,
        sample: jax.Array,
        noise: jax.Array | None = None,
    ) -> tuple[jax.Array, SolverState]:
        """One update from timestep `timesteps[i]` to the next; returns (next sample in sample's dtype, state).

        `model_output` is the (guided) prediction of the configured `prediction_type`; `noise` is a standard
        normal draw of sample's shape, used only when `needs_noise`.
        """
        dt = _compute_dtype(sample.dtype)
        x = sample.astype(dt)
        m = model_output.astype(dt)
        c = jnp.asarray(self.coefs, dt)[:, i]
        x0 = (c[_P_S] * x - c[_P_M] * m) / c[_P_DIV]
        if self.clip_sample_range is not None:
            x0 = jnp.clip(x0, -self.clip_sample_range, self.clip_sample_range)
        out = c[_A] * x + c[_B] * x0
        # Rows that are zero for every step are skipped statically: each term is a full pass over a video latent.
        if self.coefs[_C].any():
            out = out + c[_C] * (x0 - state.prev_x0)
        if self.coefs[_D].any():
            out = out + c[_D] * (c[_E_S] * x + c[_E_M] * m)
        if self.needs_noise:
            if noise is None:
                raise ValueError(f"{self.kind} step needs `noise` (a standard normal array of the sample's shape)")
            out = out + c[_N] * noise.astype(dt)
        return out.astype(sample.dtype), SolverState(prev_x0=x0)


def _compute_dtype(dtype) -> Any:
    # diffusers upcasts the DPM update to float32 (bf16 latents included); float64 (x64 mode) stays float64.
    return jnp.promote_types(dtype, jnp.float32)


# ---------------------------------------------------------------------------------------------------------
# Config handling

_COMMON_DEFAULTS = dict(
    num_train_timesteps=1000,
    beta_start=0.0001,
    beta_end=0.02,
    beta_schedule="linear",
    trained_betas=None,
    prediction_type="epsilon",
    thresholding=False,
    steps_offset=0,
    rescale_betas_zero_snr=False,
)
# Class defaults differ (notably timestep_spacing), and a config lacking a key gets the *target* class's default.
_DPM_DEFAULTS = dict(
    _COMMON_DEFAULTS,
    solver_order=2,
    solver_type="midpoint",
    lower_order_final=True,
    euler_at_final=False,
    use_exponential_sigmas=False,
    use_beta_sigmas=False,
    use_lu_lambdas=False,
    use_flow_sigmas=False,
    use_dynamic_shifting=False,
    final_sigmas_type="zero",
    lambda_min_clipped=-float("inf"),
    variance_type=None,
    timestep_spacing="linspace",
)
_DDIM_DEFAULTS = dict(
    _COMMON_DEFAULTS,
    clip_sample=True,
    set_alpha_to_one=True,
    clip_sample_range=1.0,
    timestep_spacing="leading",
)


def _resolve_config(config: dict, defaults: dict) -> dict:
    """Mimic diffusers' from_config: keys the saving scheduler only defaulted and private keys are dropped."""
    defaulted = set(config.get("_use_default_values", ()))
    out = dict(defaults)
    for k, v in config.items():
        if k in defaults and k not in defaulted and not k.startswith("_"):
            out[k] = v
    return out


def _unsupported(cfg: dict, key: str, ok) -> None:
    if cfg[key] not in ok:
        raise ConfigError(f"scheduler config {key}={cfg[key]!r} is not supported (allowed: {', '.join(map(repr, ok))})")


# ---------------------------------------------------------------------------------------------------------
# Noise schedule (float32, as diffusers computes it with torch)


def _linspace_f32(start: float, end: float, n: int) -> np.ndarray:
    """torch.linspace(start, end, n, dtype=float32) bit for bit on CPU.

    torch fills each element as one fused multiply-add in float32 from the nearer end; numpy's float64
    linspace rounded to float32 differs in the last bit for about a third of the betas.
    """
    s, e = np.float32(start), np.float32(end)
    if n == 1:
        return np.array([s], np.float32)
    step = np.float64(np.float32((e - s) / np.float32(n - 1)))
    idx = np.arange(n, dtype=np.float64)
    # float64 holds step*idx exactly (24 + ~11 bits), so one rounding to float32 is what an FMA gives.
    lo = np.float64(s) + step * idx
    hi = np.float64(e) - step * (n - 1 - idx)
    return np.where(np.arange(n) < n // 2, lo, hi).astype(np.float32)


def _betas(cfg: dict) -> np.ndarray:
    n = int(cfg["num_train_timesteps"])
    if cfg["trained_betas"] is not None:
        return np.asarray(cfg["trained_betas"], np.float32)
    kind = cfg["beta_schedule"]
    if kind == "linear":
        return _linspace_f32(cfg["beta_start"], cfg["beta_end"], n)
    if kind == "scaled_linear":
        return np.square(_linspace_f32(cfg["beta_start"] ** 0.5, cfg["beta_end"] ** 0.5, n))
    if kind == "squaredcos_cap_v2":

        def alpha_bar(t):
            return math.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2

        return np.array([min(1 - alpha_bar((i + 1) / n) / alpha_bar(i / n), 0.999) for i in range(n)], np.float32)
    raise ConfigError(
        f"scheduler config beta_schedule={kind!r} is not supported "
        "(allowed: 'linear', 'scaled_linear', 'squaredcos_cap_v2')"
    )


def _cumprod_f32(x: np.ndarray) -> np.ndarray:
    # torch's CPU cumprod accumulates float32 in double and rounds each output.
    return np.cumprod(x.astype(np.float64)).astype(np.float32)


def zero_terminal_snr(abar: np.ndarray) -> np.ndarray:
    """A schedule's alpha-bar rescaled to end at 0 (zero terminal SNR; Lin et al. 2023, Algorithm 1):
    sqrt(alpha-bar) shifted so the last is 0 and scaled so the first is unchanged; in abar's dtype."""
    root = np.sqrt(abar)
    first, last = root[0], root[-1]
    return np.square((root - last) * (first / (first - last)))


def _alphas_cumprod(cfg: dict) -> np.ndarray:
    """alpha-bar per training timestep. With ``rescale_betas_zero_snr`` the last is 0 (the sample at t = T is
    pure noise)."""
    _unsupported(cfg, "rescale_betas_zero_snr", (False, True))
    if cfg["rescale_betas_zero_snr"] and cfg["prediction_type"] == "epsilon":
        # at alpha-bar 0 the sample is the noise: predicting it says nothing about the clean sample
        raise ConfigError("scheduler config rescale_betas_zero_snr=True needs prediction_type 'v_prediction' or "
                          "'sample' (with 'epsilon' the clean sample at the last timestep is undefined)")
    betas = _betas(cfg)
    if cfg["rescale_betas_zero_snr"]:  # as diffusers: back to betas, then the cumulative product again (rounding)
        abar = zero_terminal_snr(_cumprod_f32(np.float32(1.0) - betas))
        betas = np.float32(1.0) - np.concatenate([abar[:1], abar[1:] / abar[:-1]])
    return _cumprod_f32(np.float32(1.0) - betas)


def _check_timesteps(timesteps: np.ndarray, num_steps: int, num_train: int, spacing: str) -> np.ndarray:
    # diffusers' "trailing" spacing yields num_steps + 1 timesteps ending in -1 for some counts (e.g. 61):
    # refuse rather than feed t=-1 to the UNet.
    if timesteps.shape != (num_steps,) or timesteps.min() < 0 or timesteps.max() >= num_train:
        raise ConfigError(
            f"timestep_spacing={spacing!r} with {num_steps} steps gives an invalid schedule in diffusers "
            f"({timesteps.tolist()}); choose another number of steps or spacing"
        )
    return timesteps


def _prediction_rows(pred: str, alpha: np.ndarray, sigma: np.ndarray) -> tuple[np.ndarray, ...]:
    """(P_S, P_M, P_DIV, E_S, E_M) for x0 and eps from the model output, given VP alpha_t, sigma_t per step."""
    one, zero = np.ones_like(alpha), np.zeros_like(alpha)
    if pred == "epsilon":  # x0 = (x - sigma eps) / alpha, written as diffusers does for identical rounding
        return one, sigma, alpha, zero, one
    if pred == "v_prediction":  # x0 = alpha x - sigma v ; eps = sigma x + alpha v
        return alpha, sigma, one, sigma, alpha
    if pred == "sample":  # x0 = m ; eps = (x - alpha m) / sigma
        return zero, -one, one, 1 / sigma, -alpha / sigma
    raise ConfigError(
        f"scheduler config prediction_type={pred!r} is not supported (allowed: 'epsilon', 'v_prediction', 'sample')"
    )


# ---------------------------------------------------------------------------------------------------------
# DPM-Solver++ (diffusers DPMSolverMultistepScheduler, algorithm_type dpmsolver++ / sde-dpmsolver++)


def _dpm_timesteps(cfg: dict, ac: np.ndarray, num_steps: int) -> np.ndarray:
    n_train = int(cfg["num_train_timesteps"])
    lam = (np.log(np.sqrt(ac)) - np.log(np.sqrt(np.float32(1) - ac))).astype(np.float32)
    clipped = int(np.searchsorted(lam[::-1], np.float32(cfg["lambda_min_clipped"]), side="left"))
    last = n_train - clipped
    _unsupported(cfg, "timestep_spacing", ("linspace", "leading", "trailing"))
    spacing = cfg["timestep_spacing"]
    if spacing == "linspace":
        ts = np.linspace(0, last - 1, num_steps + 1).round()[::-1][:-1].astype(np.int64)
    elif spacing == "leading":
        ratio = last // (num_steps + 1)
        ts = (np.arange(0, num_steps + 1) * ratio).round()[::-1][:-1].astype(np.int64) + int(cfg["steps_offset"])
    else:  # trailing
        ts = np.arange(last, 0, -n_train / num_steps).round().astype(np.int64) - 1
    return ts


def _sigma_to_t(sigma: np.ndarray, log_sigmas: np.ndarray) -> np.ndarray:
    """Fractional training timestep whose log-sigma linearly interpolates to log(sigma) (diffusers' rule)."""
    log_sigma = np.log(np.maximum(sigma, 1e-10))
    low = np.clip(np.searchsorted(log_sigmas.astype(np.float64), log_sigma, side="right") - 1, 0, len(log_sigmas) - 2)
    w = np.clip((log_sigmas[low] - log_sigma) / (log_sigmas[low] - log_sigmas[low + 1]), 0, 1)
    return (1 - w) * low + w * (low + 1)


def _make_dpm(spec: SchedulerSpec, cfg: dict, num_steps: int) -> Solver:
    for key in (
        "thresholding",
        "use_exponential_sigmas",
        "use_beta_sigmas",
        "use_lu_lambdas",
        "use_flow_sigmas",
        "use_dynamic_shifting",
    ):
        _unsupported(cfg, key, (False,))
    _unsupported(cfg, "variance_type", (None,))
    _unsupported(cfg, "solver_order", (1, 2))
    _unsupported(cfg, "solver_type", ("midpoint", "heun"))
    _unsupported(cfg, "final_sigmas_type", ("zero", "sigma_min"))

    ac = _alphas_cumprod(cfg)
    if cfg["rescale_betas_zero_snr"]:  # steps are in log-SNR, which must stay finite at t = T: diffusers' value
        ac[-1] = 2.0**-24
    n_train = int(cfg["num_train_timesteps"])
    train_sigmas = np.sqrt((np.float32(1) - ac) / ac)  # float32, VE-style sigma per training timestep
    timesteps = _dpm_timesteps(cfg, ac, num_steps)  # with Karras sigmas only validated, as in diffusers
    if spec.use_karras_sigmas:
        # Karras et al. rho=7 spacing between the extreme training sigmas; timesteps are then read back off
        # the training schedule and rounded, so near t=0 several steps can share one integer timestep.
        lo, hi = float(train_sigmas[0]), float(train_sigmas[-1])
        ramp = np.linspace(0, 1, num_steps)
        sig = (hi ** (1 / 7) + ramp * (lo ** (1 / 7) - hi ** (1 / 7))) ** 7
        t = _sigma_to_t(sig, np.log(train_sigmas))
        timesteps = (t if cfg["beta_schedule"] == "squaredcos_cap_v2" else t.round()).astype(np.int64)
    else:
        timesteps = _check_timesteps(timesteps, num_steps, n_train, cfg["timestep_spacing"])
        sig = np.interp(timesteps, np.arange(n_train), train_sigmas)
    last = train_sigmas[0] if cfg["final_sigmas_type"] == "sigma_min" else 0.0
    sigmas = np.concatenate([sig, [last]]).astype(np.float32)

    # VP parametrisation x_t = alpha_t x0 + sigma_t eps, from diffusers' float32 sigmas, in float64.
    s = sigmas.astype(np.float64)
    alpha = 1 / np.sqrt(s**2 + 1)
    sigma = s * alpha
    with np.errstate(divide="ignore"):
        lam = np.log(alpha) - np.log(sigma)  # +inf at a final sigma of zero
    cur, nxt = slice(0, num_steps), slice(1, num_steps + 1)
    h = lam[nxt] - lam[cur]
    alpha_t, sigma_t, sigma_s = alpha[nxt], sigma[nxt], sigma[cur]

    # diffusers: first step is first order (no history); the last is first order when the final sigma is 0
    # (always, by default), with euler_at_final, or with lower_order_final below 15 steps.
    idx = np.arange(num_steps)
    first_order = idx == 0
    if cfg["solver_order"] == 1:
        first_order[:] = True
    if cfg["final_sigmas_type"] == "zero" or cfg["euler_at_final"] or (cfg["lower_order_final"] and num_steps < 15):
        first_order[-1] = True

    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        if spec.kind == "dpmsolver++":
            a = sigma_t / sigma_s
            b = -alpha_t * np.expm1(-h)
            heun = alpha_t * (np.expm1(-h) / h + 1.0)
            n = np.zeros(num_steps)
        else:  # sde-dpmsolver++: the exp(-h) damping of x plus fresh noise replaces the ODE's deterministic path
            a = sigma_t / sigma_s * np.exp(-h)
            b = -alpha_t * np.expm1(-2.0 * h)
            heun = alpha_t * (np.expm1(-2.0 * h) / (2.0 * h) + 1.0)
            n = sigma_t * np.sqrt(-np.expm1(-2.0 * h))
        # Second order differences x0 against the previous step's x0, scaled by 1/r0 = h / h_prev.
        h_prev = np.concatenate([[np.nan], lam[1:num_steps] - lam[: num_steps - 1]])
        d1 = 0.5 * b if cfg["solver_type"] == "midpoint" else heun
        c = np.where(first_order, 0.0, d1 * h / h_prev)

    p_s, p_m, p_div, _, _ = _prediction_rows(cfg["prediction_type"], alpha[cur], sigma[cur])
    zeros = np.zeros(num_steps)
    coefs = np.stack([p_s, p_m, p_div, zeros, zeros, a, b, c, zeros, n])
    if not np.isfinite(coefs).all():  # e.g. 1000 steps: spacing repeats a timestep, so a step size is 0
        raise ConfigError(f"pipe_configs.steps={num_steps}: this schedule repeats a timestep at that many "
                          f"steps ({spec.kind}); use fewer steps")
    return Solver(
        kind=spec.kind,
        timesteps=timesteps,
        sigmas=sigmas,
        init_noise_sigma=1.0,
        needs_noise=spec.kind == "sde-dpmsolver++",
        coefs=coefs,
    )


# ---------------------------------------------------------------------------------------------------------
# DDIM (diffusers DDIMScheduler)


def _make_ddim(spec: SchedulerSpec, cfg: dict, num_steps: int) -> Solver:
    _unsupported(cfg, "thresholding", (False,))
    ac = _alphas_cumprod(cfg).astype(np.float64)
    n_train = int(cfg["num_train_timesteps"])
    _unsupported(cfg, "timestep_spacing", ("linspace", "leading", "trailing"))
    spacing = cfg["timestep_spacing"]
    if spacing == "linspace":
        ts = np.linspace(0, n_train - 1, num_steps).round()[::-1].astype(np.int64)
    elif spacing == "leading":
        ts = (np.arange(0, num_steps) * (n_train // num_steps))[::-1] + int(cfg["steps_offset"])
    else:  # trailing
        ts = np.round(np.arange(n_train, 0, -n_train / num_steps)).astype(np.int64) - 1
    ts = _check_timesteps(ts.astype(np.int64), num_steps, n_train, spacing)

    # diffusers steps to t - n_train // num_steps whatever the spacing (so with "linspace" the target is not the
    # next timestep), and past t=0 to alphas_cumprod[0] unless set_alpha_to_one.
    final = 1.0 if cfg["set_alpha_to_one"] else ac[0]
    prev = ts - n_train // num_steps
    a_t = ac[ts]
    a_prev = np.where(prev >= 0, ac[np.maximum(prev, 0)], final)
    var = (1 - a_prev) / (1 - a_t) * (1 - a_t / a_prev)
    std = spec.eta * np.sqrt(var)

    p_s, p_m, p_div, e_s, e_m = _prediction_rows(cfg["prediction_type"], np.sqrt(a_t), np.sqrt(1 - a_t))
    zeros = np.zeros(num_steps)
    direction = np.sqrt(np.maximum(1 - a_prev - std**2, 0.0))
    coefs = np.stack([p_s, p_m, p_div, e_s, e_m, zeros, np.sqrt(a_prev), zeros, direction, std])
    if not np.isfinite(coefs).all():  # e.g. 1000 steps: spacing repeats a timestep, so a step size is 0
        raise ConfigError(f"pipe_configs.steps={num_steps}: this schedule repeats a timestep at that many "
                          f"steps ({spec.kind}); use fewer steps")
    return Solver(
        kind="ddim",
        timesteps=ts,
        sigmas=None,
        init_noise_sigma=1.0,
        needs_noise=spec.eta > 0,
        coefs=coefs,
        clip_sample_range=float(cfg["clip_sample_range"]) if cfg["clip_sample"] else None,
    )


def _make_videocrafter_ddim(spec: SchedulerSpec, scheduler_config: dict, num_steps: int) -> Solver:
    from vinf_jax.sampling.videocrafter import videocrafter_coefs, videocrafter_schedule

    timesteps, coefs = videocrafter_coefs(videocrafter_schedule(scheduler_config), num_steps, spec.eta)
    if not np.isfinite(coefs).all():
        raise ConfigError(f"pipe_configs.steps={num_steps}: VideoCrafter's DDIM schedule is degenerate at that many steps")
    return Solver(kind=spec.kind, timesteps=timesteps.astype(np.int64), sigmas=None, init_noise_sigma=1.0,
                  needs_noise=spec.eta > 0, coefs=coefs)


# ---------------------------------------------------------------------------------------------------------
# T2V-Turbo (scheduler/t2v_turbo_scheduler.py of Ji4chenLi/t2v-turbo; method §12.2)

TURBO_ORIGIN_STEPS = 50  # LCM's default skeleton, T2V-Turbo v1's training grid (num_ddim_timesteps 50)


def turbo_timesteps(num_steps: int, lcm_origin_steps: int, num_train: int = 1000) -> np.ndarray:
    """Every ``skip``-th timestep of the ``lcm_origin_steps``-point grid ``c·k − 1`` from the top, ``skip =
    lcm_origin_steps // num_steps``: (4, 50) -> 999, 759, 519, 279."""
    if lcm_origin_steps > num_train:
        raise ConfigError(f"pipe_configs.lcm_origin_steps={lcm_origin_steps}: at most num_train_timesteps={num_train}")
    if num_steps > lcm_origin_steps:
        raise ConfigError(f"pipe_configs.steps={num_steps}: t2v-turbo takes its steps from a grid of "
                          f"pipe_configs.lcm_origin_steps={lcm_origin_steps} timesteps; use at most that many steps")
    c = num_train // lcm_origin_steps
    grid = np.arange(1, lcm_origin_steps + 1, dtype=np.int64) * c - 1
    return grid[::-(lcm_origin_steps // num_steps)][:num_steps].copy()


def _make_turbo(spec: SchedulerSpec, scheduler_config: dict, num_steps: int) -> Solver:
    """A consistency model's multistep sampling as one linear step per column of the table:

        x0 = (x − sqrt(1 − a_t) eps) / sqrt(a_t);  denoised = c_out x0 + c_skip x
        next = sqrt(a_prev) denoised + sqrt(1 − a_prev) noise       (a_prev at the next timestep)

    with c_skip = σ²/((t/0.1)² + σ²), c_out = (t/0.1)/sqrt((t/0.1)² + σ²), σ = 0.5. The video is the last
    step's ``denoised``, so the last column holds (c_skip, c_out) and no noise.
    """
    cfg = _resolve_config(scheduler_config, _DDIM_DEFAULTS)
    block = scheduler_config.get("t2v_turbo") if isinstance(scheduler_config.get("t2v_turbo"), dict) else {}
    origin = spec.lcm_origin_steps or int(block.get("lcm_origin_steps", TURBO_ORIGIN_STEPS))
    n_train = int(cfg["num_train_timesteps"])
    ts = turbo_timesteps(num_steps, origin, n_train)
    ac = _alphas_cumprod(cfg).astype(np.float64)  # T2V-Turbo's scheduler: float32 scaled_linear, as diffusers
    a_t = ac[ts]
    a_prev = ac[np.concatenate([ts[1:], ts[-1:]])]
    scaled = ts.astype(np.float64) / 0.1
    c_skip = 0.25 / (scaled**2 + 0.25)
    c_out = scaled / np.sqrt(scaled**2 + 0.25)
    last = np.arange(num_steps) == num_steps - 1
    keep = np.where(last, 1.0, np.sqrt(a_prev))  # the last step returns denoised itself
    p_s, p_m, p_div, _, _ = _prediction_rows(cfg["prediction_type"], np.sqrt(a_t), np.sqrt(1 - a_t))
    zeros = np.zeros(num_steps)
    coefs = np.stack([p_s, p_m, p_div, zeros, zeros, keep * c_skip, keep * c_out, zeros, zeros,
                      np.where(last, 0.0, np.sqrt(1 - a_prev))])
    return Solver(kind=spec.kind, timesteps=ts, sigmas=None, init_noise_sigma=1.0, needs_noise=num_steps > 1,
                  coefs=coefs)


def make_solver(spec: SchedulerSpec, scheduler_config: dict, num_steps: int) -> Solver:
    """Solver for `spec` on a diffusers scheduler config (any scheduler class's; the keys it shares are used).

    Matches `DPMSolverMultistepScheduler.from_config(cfg, algorithm_type=spec.kind,
    use_karras_sigmas=spec.use_karras_sigmas)` resp. `DDIMScheduler.from_config(cfg)` with step(eta=spec.eta)
    after `set_timesteps(num_steps)`. The spec, not the config, decides algorithm and Karras sigmas.
    """
    if isinstance(num_steps, bool) or not isinstance(num_steps, (int, np.integer)) or num_steps < 1:
        raise ConfigError(f"number of sampling steps must be a positive integer, got {num_steps!r}")
    num_steps = int(num_steps)
    train_steps = int(scheduler_config.get("num_train_timesteps", 1000))
    if num_steps > train_steps:  # diffusers refuses this too: timesteps would repeat
        raise ConfigError(f"pipe_configs.steps={num_steps}: at most num_train_timesteps={train_steps} "
                          "sampling steps")
    if spec.kind == "videocrafter-ddim":
        return _make_videocrafter_ddim(spec, scheduler_config, num_steps)
    if spec.kind == "t2v-turbo":
        return _make_turbo(spec, scheduler_config, num_steps)
    if spec.kind == "ddim":
        return _make_ddim(spec, _resolve_config(scheduler_config, _DDIM_DEFAULTS), num_steps)
    return _make_dpm(spec, _resolve_config(scheduler_config, _DPM_DEFAULTS), num_steps)
