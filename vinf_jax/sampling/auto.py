"""``scheduler: "auto"``: the sampler the model's own code samples with.

- an LVDM checkpoint (VideoCrafter's ``model.ckpt``; its scheduler config carries a ``videocrafter``
  block written by the converter): VideoCrafter's own DDIM with the block's eta and x0 rescaling;
- a diffusers-layout VideoCrafter2 UNet (fps-conditioned: the port, merged pipeline folders): what the
  released Video-Infinity code samples with, whatever scheduler config came with the base pipeline.
  It builds ``DPMSolverMultistepScheduler.from_config(pipe.scheduler.config, use_karras=True,
  algorithm_type="sde-dpmsolver++")``: ``sde-dpmsolver++`` on the checkpoint's schedule (betas,
  prediction type); ``use_karras`` is not a diffusers key, so Karras sigmas stay as the config says,
  and what the file does not set (a DDIM config's ``timestep_spacing``) takes the DPM solver's
  default, as diffusers' ``from_config`` does;
- any other UNet (ModelScope / zeroscope: no fps embedding, never run by the released code): the
  sampler its scheduler config names: ``DPMSolverMultistepScheduler`` with its ``algorithm_type`` and
  ``use_karras_sigmas``, ``DDIMScheduler`` as DDIM with eta 0 (diffusers pipelines' default), every
  other class Video-Infinity's ``sde-dpmsolver++`` on the same schedule.
- a T2V-Turbo checkpoint (its scheduler config carries a ``t2v_turbo`` block written by the converter):
  its own few-step sampler ``t2v-turbo``.

Spacing, offset, schedule and prediction type are read from the config by `make_solver` as for an
explicit name. Whatever the config asks for that we cannot honour (another class or algorithm,
thresholding, a third solver order, ...) is replaced by the nearest thing we do and listed in one
warning; an explicit scheduler name keeps the strict behaviour (an error).
"""

from __future__ import annotations

import warnings

from vinf_jax.sampling.schedulers import SchedulerSpec

# value we fall back to for each option the solvers refuse; None = key only validated
_FALLBACK = {
    "thresholding": False, "use_exponential_sigmas": False, "use_beta_sigmas": False, "use_lu_lambdas": False,
    "use_flow_sigmas": False, "use_dynamic_shifting": False, "variance_type": None,
}
_ALLOWED = {"solver_order": (1, 2), "solver_type": ("midpoint", "heun"), "final_sigmas_type": ("zero", "sigma_min"),
            "timestep_spacing": ("linspace", "leading", "trailing")}


class SchedulerWarning(UserWarning):
    """The checkpoint's scheduler config asks for something the samplers here do not do."""


def resolve(name: str, scheduler_config: dict, unet_config=None) -> tuple[SchedulerSpec, dict, list[str]]:
    """(spec, config to build it from, notes on what could not be honoured) for ``name`` ("auto" or a kind).

    ``unet_config`` (the UNet's ``UNetConfig``) tells which model's code "auto" follows; without it,
    the scheduler config alone decides (the rule for UNets without an fps embedding)."""
    if name != "auto":
        return SchedulerSpec.parse(name), scheduler_config, []
    cfg, notes = dict(scheduler_config), []
    cls = cfg.get("_class_name")
    if isinstance(cfg.get("t2v_turbo"), dict):  # a T2V-Turbo checkpoint: its own few-step sampler
        return SchedulerSpec("t2v-turbo"), cfg, notes
    if cls == "DDIMScheduler" and isinstance(cfg.get("videocrafter"), dict):
        spec = SchedulerSpec("videocrafter-ddim", eta=float(cfg["videocrafter"].get("eta", 1.0)))
    elif getattr(unet_config, "fps_cond", False):  # the released Video-Infinity code's sampler
        # diffusers' from_config gives keys the file only held as its class's defaults the new class's defaults
        defaults_only = set(cfg.pop("_use_default_values", ()) or ())
        cfg = {k: v for k, v in cfg.items() if k not in defaults_only}
        spec = SchedulerSpec("sde-dpmsolver++", use_karras_sigmas=bool(cfg.get("use_karras_sigmas", False)))
    elif cls == "DDIMScheduler":
        spec = SchedulerSpec("ddim")
    elif cls == "DPMSolverMultistepScheduler":
        algo = cfg.get("algorithm_type", "dpmsolver++")
        if algo not in ("dpmsolver++", "sde-dpmsolver++"):
            notes.append(f"algorithm_type={algo!r} -> {'sde-dpmsolver++' if 'sde' in algo else 'dpmsolver++'}")
            algo = "sde-dpmsolver++" if "sde" in str(algo) else "dpmsolver++"
        spec = SchedulerSpec(algo, use_karras_sigmas=bool(cfg.get("use_karras_sigmas", False)))
    else:
        notes.append(f"_class_name={cls!r} is not implemented -> sde-dpmsolver++ (Video-Infinity's sampler)")
        spec = SchedulerSpec("sde-dpmsolver++")
    for key, value in _FALLBACK.items():
        if key in cfg and cfg[key] != value:
            notes.append(f"{key}={cfg[key]!r} -> {value!r}")
            cfg[key] = value
    for key, allowed in _ALLOWED.items():
        if key in cfg and cfg[key] not in allowed:
            default = {"solver_order": 2, "solver_type": "midpoint", "final_sigmas_type": "zero",
                       "timestep_spacing": "leading" if spec.kind == "ddim" else "linspace"}[key]
            notes.append(f"{key}={cfg[key]!r} -> {default!r}")
            cfg[key] = default
    return spec, cfg, notes


def describe(spec: SchedulerSpec) -> dict:
    """What ran, for the sidecar."""
    out = {"kind": spec.kind}
    if spec.use_karras_sigmas:
        out["use_karras_sigmas"] = True
    if spec.kind in ("ddim", "videocrafter-ddim"):
        out["eta"] = spec.eta
    if spec.lcm_origin_steps is not None:
        out["lcm_origin_steps"] = spec.lcm_origin_steps
    return out


def warn_notes(notes: list[str], stacklevel: int = 3) -> None:
    if notes:
        warnings.warn("scheduler auto: the checkpoint's scheduler config cannot be followed exactly: "
                      + "; ".join(notes), SchedulerWarning, stacklevel=stacklevel)
