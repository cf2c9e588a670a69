"""VideoCrafter's own DDIM sampler (``lvdm/models/samplers/ddim.py``), as a `Solver` coefficient table.

What differs from diffusers' ``DDIMScheduler``:

- the schedule is LatentDiffusion's: betas and their cumulative product in float64 (LDM's "linear" is
  ``linspace(sqrt(start), sqrt(end))**2``), stored as float32 buffers;
- timesteps are ``range(0, T, T // steps) + 1``: for step counts that do not divide T this gives
  one step more than asked (30 steps on 1,000 timesteps run 31), as VideoCrafter does;
- the default eta is 1.0 (VideoCrafter's inference scripts);
- with ``use_scale`` the predicted x0 is divided by ``scale_arr[t]`` and re-scaled by the previous
  step's scale: ``x_prev = sqrt(a_prev) * scale_prev * x0 / scale_t + dir_xt + noise``, where
  ``scale_arr = concat(linspace(scale_a, scale_b, mid_step), full(.., scale_b))`` is indexed at the DDIM
  timesteps and ``scale_prev`` at the previous (smaller) DDIM timestep, ``scale_arr[0]`` for the last.

All of it is linear in (sample, model output, noise) per step, so it is one column of the same
``(10, num_steps)`` table the other samplers use, and the same jitted step runs it.
"""

from __future__ import annotations

import numpy as np

from vinf_jax.errors import ConfigError

# VideoCrafter2's LatentDiffusion options (configs/inference_t2v_512_v2.0.yaml), used when a scheduler
# config does not carry its own "videocrafter" block (e.g. the diffusers port of the same weights)
VIDEOCRAFTER2_SCHEDULE = {"num_train_timesteps": 1000, "beta_schedule": "linear", "linear_start": 0.00085,
                          "linear_end": 0.012, "parameterization": "eps", "use_scale": True, "scale_a": 1.0,
                          "scale_b": 0.7, "mid_step": 400, "fix_scale_bug": False, "eta": 1.0}


def ldm_alphas_cumprod(s: dict) -> np.ndarray:
    """LatentDiffusion's ``alphas_cumprod`` in float64 (its buffer is this rounded to float32)."""
    n = int(s["num_train_timesteps"])
    if s["beta_schedule"] == "linear":
        betas = np.linspace(s["linear_start"] ** 0.5, s["linear_end"] ** 0.5, n, dtype=np.float64) ** 2
    elif s["beta_schedule"] == "sqrt_linear":
        betas = np.linspace(s["linear_start"], s["linear_end"], n, dtype=np.float64)
    else:
        raise ConfigError(f"videocrafter beta_schedule={s['beta_schedule']!r}: allowed 'linear', 'sqrt_linear'")
    return np.cumprod(1.0 - betas)


def ldm_scale_arr(s: dict) -> np.ndarray:
    """LatentDiffusion's ``scale_arr`` (use_scale) in float64; longer than T unless fix_scale_bug, as there."""
    n, mid = int(s["num_train_timesteps"]), int(s["mid_step"])
    tail = n - mid if s.get("fix_scale_bug") else n
    return np.concatenate([np.linspace(s["scale_a"], s["scale_b"], mid), np.full(tail, s["scale_b"])])


def videocrafter_schedule(scheduler_config: dict) -> dict:
    """The ``videocrafter`` block of a scheduler config, or VideoCrafter2's values on its diffusers keys."""
    if scheduler_config.get("rescale_betas_zero_snr"):  # LatentDiffusion has no such option: refuse, never ignore
        raise ConfigError("scheduler 'videocrafter-ddim' has no zero-terminal-SNR schedule, and the checkpoint's "
                          "scheduler config sets rescale_betas_zero_snr: choose 'ddim' or 'dpmsolver++'")
    block = scheduler_config.get("videocrafter")
    if isinstance(block, dict):
        return {**VIDEOCRAFTER2_SCHEDULE, **block}
    out = dict(VIDEOCRAFTER2_SCHEDULE)
    kind = scheduler_config.get("beta_schedule", "scaled_linear")
    if kind not in ("scaled_linear", "linear"):
        raise ConfigError(f"scheduler 'videocrafter-ddim' needs a linear beta schedule; the checkpoint's is {kind!r}")
    pred = scheduler_config.get("prediction_type", "epsilon")
    if pred != "epsilon":
        raise ConfigError(f"scheduler 'videocrafter-ddim' needs epsilon prediction; the checkpoint's is {pred!r}")
    out.update(beta_schedule="linear" if kind == "scaled_linear" else "sqrt_linear",
               num_train_timesteps=int(scheduler_config.get("num_train_timesteps", 1000)),
               linear_start=float(scheduler_config.get("beta_start", 0.00085)),
               linear_end=float(scheduler_config.get("beta_end", 0.012)))
    return out


def videocrafter_coefs(s: dict, num_steps: int, eta: float) -> tuple[np.ndarray, np.ndarray]:
    """(timesteps in sampling order, (10, steps) coefficient table) of VideoCrafter's DDIM."""
    if s.get("parameterization", "eps") != "eps":
        raise ConfigError("scheduler 'videocrafter-ddim': VideoCrafter's DDIM sampler assumes eps prediction")
    n = int(s["num_train_timesteps"])
    ddim = np.arange(0, n, n // num_steps) + 1  # ascending; index i <-> ddim[i]
    if ddim[-1] >= n:  # VideoCrafter itself fails here (index T of a T-long schedule)
        raise ConfigError(f"pipe_configs.steps={num_steps}: VideoCrafter's DDIM timesteps range(0, {n}, {n // num_steps}) + 1 "
                          f"reach {ddim[-1]}, past the {n}-step schedule; choose another number of steps")
    ac = ldm_alphas_cumprod(s).astype(np.float32).astype(np.float64)  # the float32 buffer
    a_t = ac[ddim]
    a_prev = np.concatenate([[ac[0]], ac[ddim[:-1]]])
    sigma = eta * np.sqrt((1 - a_prev) / (1 - a_t) * (1 - a_t / a_prev))
    if s["use_scale"]:
        arr = ldm_scale_arr(s).astype(np.float32).astype(np.float64)
        scale_t, scale_prev = arr[ddim], np.concatenate([[arr[0]], arr[ddim[:-1]]])
    else:
        scale_t = scale_prev = np.ones_like(a_t)
    one, zero = np.ones_like(a_t), np.zeros_like(a_t)
    # rows: x0 = (P_S x - P_M m) / P_DIV; eps = E_S x + E_M m; next = A x + B x0 + C dx0 + D eps + N noise
    coefs = np.stack([one, np.sqrt(1 - a_t), np.sqrt(a_t) * scale_t, zero, one, zero,
                      np.sqrt(a_prev) * scale_prev, zero, np.sqrt(np.maximum(1 - a_prev - sigma**2, 0.0)), sigma])
    return ddim[::-1].copy(), coefs[:, ::-1].copy()
