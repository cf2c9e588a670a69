"""T2V-Turbo (v1 LoRA, v2 with and without motion guidance) on the clip-parallel UNet (method §12).

Tiny checkpoints in the published layouts are made here (``turbo_refs``): a VideoCrafter2 ``model.ckpt``
(lvdm_refs), ``unet_mg.pt`` / ``unet_no_mg.pt`` (bare UNet state dicts with the projections) and
``unet_lora.pt`` (a bare list [up, down, ...] in openaimodel3d's module order). Each is converted with the
CLI and compared number for number with T2V-Turbo's own formulas, transcribed in ``turbo_refs``:
eps <= 1e-4 (relative to the largest reference value), generation <= 1e-4, decoded frames <= 2e-3,
timesteps and the LoRA merge equal.
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import yaml

import lvdm_refs
import turbo_refs as tr

TOL = 1e-4


def assert_close(got, want, tol=TOL):
    err, scale = float(np.abs(np.asarray(got) - want).max()), float(np.abs(want).max())
    assert err <= tol * scale, (err, scale)


def convert(args, out: Path, capsys=None):
    from vinf_jax.convert.videocrafter2 import main

    rc = main([*map(str, args), "--out", str(out)])
    return rc


@pytest.fixture(scope="module")
def src(tmp_path_factory):
    root = tmp_path_factory.mktemp("turbo_src")
    unet, text, vae = lvdm_refs.tiny_unet(), lvdm_refs.tiny_text(), lvdm_refs.tiny_vae()
    sd = {**lvdm_refs.unet_to_lvdm(unet), **lvdm_refs.text_to_lvdm(text), **lvdm_refs.vae_to_lvdm(vae),
          **lvdm_refs.schedule_buffers(**lvdm_refs.SCHEDULE)}
    torch.save({"state_dict": sd}, root / "model.ckpt")
    (root / "inference.yaml").write_text(yaml.safe_dump(lvdm_refs.YAML))
    mg, no_mg = tr.TurboUNet(seed=1, motion=True).eval(), tr.TurboUNet(seed=2, motion=False).eval()
    torch.save(mg.state_dict_lvdm(), root / "unet_mg.pt")
    torch.save(no_mg.state_dict_lvdm(), root / "unet_no_mg.pt")
    # v1: their LoRA on VideoCrafter2's UNet with time_cond_proj (app.py: time_cond_proj_dim 256, no motion)
    skeleton = tr.Skeleton(time_cond=True)
    loras = tr.random_lora(skeleton, seed=3)
    torch.save(loras, root / "unet_lora.pt")
    return SimpleNamespace(root=root, sd=sd, vae=vae, mg=mg, no_mg=no_mg, loras=loras, ckpt=root / "model.ckpt",
                           yaml=root / "inference.yaml")


@pytest.fixture(scope="module")
def converted(src, tmp_path_factory):
    root = tmp_path_factory.mktemp("turbo_out")
    base = ["--lvdm", src.ckpt, "--lvdm-config", src.yaml]
    out = {}
    for name, extra in (("mg", ["--lvdm-unet", src.root / "unet_mg.pt"]),
                        ("no_mg", ["--lvdm-unet", src.root / "unet_no_mg.pt"]),
                        ("v1", ["--lora", src.root / "unet_lora.pt"])):
        assert convert(base + extra, root / name) == 0
        out[name] = root / name
    return SimpleNamespace(**out)


@pytest.fixture(scope="module")
def mg_pipe(converted):
    """The v2-mg checkpoint as a one-device float32 pipeline, shared by the tests below."""
    import jax

    from vinf_jax import VideoInfinityPipeline

    return VideoInfinityPipeline.from_pretrained(converted.mg, devices=jax.devices()[:1], dtype="float32")


def unet_fn(folder):
    from vinf_jax.loading import load_unet

    return load_unet(folder, "float32")


# ------------------------------------------------------------------------------------ sampler


@pytest.mark.parametrize("steps,origin", [(4, 50), (8, 200), (16, 200), (1, 50), (3, 50), (6, 200)])
def test_timesteps_equal_their_set_timesteps(steps, origin):
    from vinf_jax.sampling.schedulers import SchedulerSpec, make_solver
    from vinf_jax.convert.lvdm import model_from_params, scheduler_config

    solver = make_solver(SchedulerSpec("t2v-turbo", lcm_origin_steps=origin), scheduler_config(model_from_params(None)),
                         steps)
    np.testing.assert_array_equal(solver.timesteps, tr.set_timesteps(steps, origin))


def test_turbo_timesteps_bad_step_counts():
    from vinf_jax.errors import ConfigError
    from vinf_jax.sampling.schedulers import turbo_timesteps

    with pytest.raises(ConfigError, match="lcm_origin_steps=50"):
        turbo_timesteps(51, 50)
    assert turbo_timesteps(50, 50).tolist() == list(range(999, 0, -20))


@pytest.mark.parametrize("steps,origin", [(4, 50), (1, 50), (8, 200)])
def test_step_table_equals_their_scheduler_step(steps, origin):
    """Every column of the table against T2VTurboScheduler.step: the next sample (fresh noise to the next
    timestep) and, at the last step, the returned video (their ``denoised``)."""
    import jax.numpy as jnp

    from vinf_jax.convert.lvdm import model_from_params, scheduler_config
    from vinf_jax.sampling.schedulers import SchedulerSpec, make_solver

    solver = make_solver(SchedulerSpec("t2v-turbo", lcm_origin_steps=origin),
                         scheduler_config(model_from_params(None)), steps)
    rng = np.random.default_rng(0)
    for i in range(steps):
        x, eps, noise = (rng.standard_normal((2, 3, 4, 4)).astype(np.float32) for _ in range(3))
        prev, denoised = tr.scheduler_step(torch.from_numpy(eps), solver.timesteps, i, torch.from_numpy(x),
                                           torch.from_numpy(noise))
        got, _ = solver.step(solver.init_state(jnp.asarray(x)), i, jnp.asarray(eps), jnp.asarray(x),
                             jnp.asarray(noise) if solver.needs_noise else None)
        want = denoised if i == steps - 1 else prev
        assert_close(got, want.numpy(), 1e-5)


def test_guidance_embedding_matches_get_w_embedding():
    import jax.numpy as jnp

    from vinf_jax.models.layers import guidance_embedding

    w = np.array([0.0, 0.05, 2.0, 7.5, 14.0], np.float32)
    got = np.asarray(guidance_embedding(jnp.asarray(w), 256))
    want = tr.get_w_embedding(torch.from_numpy(w)).numpy()
    # 3 of torch's 128 float32 frequencies are 1 ulp off the correctly rounded ones we use; at w = 14 the
    # argument (14,000 x f) carries that as 3e-5 rad (measured 2.9e-5)
    np.testing.assert_allclose(got, want, atol=5e-5)
    np.testing.assert_allclose(got[:2], want[:2], atol=1e-6)


# ------------------------------------------------------------------------------------ UNet


def test_v2_mg_eps_matches_reference(src, converted):
    f = unet_fn(converted.mg)
    assert f.config.time_cond_proj_dim == 256 and f.config.motion_cond_proj_dim == 256
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 4, 3, 8, 8)).astype(np.float32)
    ctx = rng.standard_normal((2, 5, 32)).astype(np.float32)
    for t, w, m in ((999, 7.5, 0.05), (519, [5.0, 12.0], [0.0, 0.1]), (279, 7.5, None)):
        assert_close(f(x, t, ctx, fps=8, guidance=w, motion=m), src.mg.eps(x, t, ctx, 8, w, m))


def test_v2_no_mg_eps_matches_reference_and_refuses_motion(src, converted):
    from vinf_jax.errors import ConfigError

    f = unet_fn(converted.no_mg)
    assert f.config.time_cond_proj_dim == 256 and f.config.motion_cond_proj_dim is None
    rng = np.random.default_rng(2)
    x = rng.standard_normal((1, 4, 3, 8, 8)).astype(np.float32)
    ctx = rng.standard_normal((1, 5, 32)).astype(np.float32)
    assert_close(f(x, 759, ctx, fps=8, guidance=7.5), src.no_mg.eps(x, 759, ctx, 8, 7.5))
    with pytest.raises(ConfigError, match="motion"):
        f(x, 759, ctx, fps=8, guidance=7.5, motion=0.05)


def test_clip_parallel_predict_noise_takes_the_scales(src, mg_pipe):
    """VideoInfinityPipeline.predict_noise takes w and m: on one clip with P >= F - 1 and no global rows
    (the vanilla reduction, method §5.3) it equals T2V-Turbo's eps."""
    from vinf_jax import VideoInfinityConfig
    from vinf_jax.config.video_infinity import AttnConfig

    pipe = mg_pipe
    rng = np.random.default_rng(4)
    x = rng.standard_normal((1, 4, 4, 8, 8)).astype(np.float32)
    ctx = rng.standard_normal((1, 1, 77, 32)).astype(np.float32)
    vi = VideoInfinityConfig(attn=AttnConfig(padding=3, top_k=0))
    got = pipe.predict_noise(x, 519, ctx, fps=8, vi_config=vi, guidance=7.5, motion=0.05)
    assert_close(got, src.mg.eps(x, 519, ctx[:, 0], 8, 7.5, 0.05))


def test_parameter_counts_exact():
    """Plain VideoCrafter2 keeps 1,413,284,420 parameters; the turbo projections add 2·320·256 + 320·640."""
    import dataclasses

    import jax

    from vinf_jax.convert.lvdm import model_from_params
    from vinf_jax.loading import abstract_params

    cfg = model_from_params(None).unet
    count = lambda c: sum(int(np.prod(x.shape)) for x in jax.tree.leaves(abstract_params("unet", c)))
    assert cfg.time_cond_proj_dim is None and count(cfg) == 1_413_284_420
    assert count(dataclasses.replace(cfg, time_cond_proj_dim=256)) == 1_413_284_420 + 320 * 256
    assert count(dataclasses.replace(cfg, time_cond_proj_dim=256, motion_cond_proj_dim=256)) == \
        1_413_284_420 + 2 * 320 * 256 + 320 * 640


# ------------------------------------------------------------------------------------ generation


def test_one_step_generation_and_decoded_frames_match_reference(src, mg_pipe):
    """The pipeline (one clip, vanilla window) from given latents, one step: T2V-Turbo's eps with w and
    motion, their scheduler step, their ``denoised`` as the video; then the VAE decode."""
    from vinf_jax import VideoInfinityConfig
    from vinf_jax.config.video_infinity import AttnConfig

    pipe = mg_pipe
    vi = VideoInfinityConfig(attn=AttnConfig(padding=3, top_k=0))  # N = 1, P >= F - 1, K = 0: vanilla (§5.3)
    rng = np.random.default_rng(3)
    lat = rng.standard_normal((1, 4, 4, 8, 8)).astype(np.float32)
    out = pipe("a red fox", num_frames=4, num_clips=1, steps=1, guidance_scale=7.5, fps=8, height=16, width=16,
               latents=lat, vi_config=vi, output_type="latent", lcm_origin_steps=50)
    got = np.asarray(out)
    assert pipe.scheduler_used["timesteps"] == [999] and pipe.scheduler_used["kind"] == "t2v-turbo"
    ctx = pipe.encode_prompt(["a red fox"])
    m = tr.motion_for(999, 0.05, 0.5)
    eps = src.mg.eps(lat, 999, ctx, 8, 7.5, m)
    _, want = tr.scheduler_step(torch.from_numpy(eps), [999], 0, torch.from_numpy(lat))
    assert_close(got, want.numpy())
    frames = pipe.decode(got)
    with torch.no_grad():
        z = want[0].permute(1, 0, 2, 3) / src.vae.config.scaling_factor  # (T, C, h, w)
        ref = (src.vae.decode(z).sample / 2 + 0.5).clamp(0, 1).permute(0, 2, 3, 1).numpy()
    assert float(np.abs(frames - ref).max()) <= 2e-3


# ------------------------------------------------------------------------------------ LoRA (v1)


def test_lora_merge_equals_their_merge(src, converted, tmp_path):
    """Their collapse_lora on the openaimodel3d module tree, base time_cond_proj = nn.Linear's init from the
    documented seed; converted through --lvdm-unet, it gives the same parameters as our --lora conversion."""
    from vinf_jax.checkpoint import read_json
    from vinf_jax.convert import turbo
    from vinf_jax.convert.mapping import flatten_pure
    from vinf_jax.loading import load_checkpoint

    skeleton = tr.Skeleton(time_cond=True)
    base = {k[len(tr.PREFIX):]: v for k, v in src.sd.items() if k.startswith(tr.PREFIX)}
    base["time_cond_proj.weight"] = tr.v1_time_cond_proj(32, turbo.V1_INIT_SEED)
    skeleton.load_state_dict(base, strict=True)
    tr.collapse_lora(skeleton, src.loras)
    torch.save(skeleton.state_dict(), tmp_path / "merged.pt")
    assert convert(["--lvdm", src.ckpt, "--lvdm-config", src.yaml, "--lvdm-unet", tmp_path / "merged.pt"],
                   tmp_path / "theirs") == 0
    ours = flatten_pure(load_checkpoint(converted.v1).unet.params)
    theirs = flatten_pure(load_checkpoint(tmp_path / "theirs").unet.params)
    assert ours.keys() == theirs.keys()
    for k in ours:
        np.testing.assert_allclose(ours[k], theirs[k], rtol=1e-6, atol=1e-6, err_msg=k)
    sched = read_json(converted.v1 / "scheduler" / "scheduler_config.json", "scheduler")
    assert sched["t2v_turbo"] == {"kind": "v1", "lcm_origin_steps": 50}


def test_kinds_recorded_and_auto_picks_t2v_turbo(converted):
    from vinf_jax.checkpoint import MARKER, read_json
    from vinf_jax.sampling.auto import resolve

    blocks = {n: read_json(getattr(converted, n) / "scheduler" / "scheduler_config.json", "s")["t2v_turbo"]
              for n in ("mg", "no_mg", "v1")}
    assert blocks["mg"] == {"kind": "v2-mg", "lcm_origin_steps": 200, "motion_gs": 0.05, "motion_percentage": 0.5}
    assert blocks["no_mg"] == {"kind": "v2", "lcm_origin_steps": 200}
    for n in ("mg", "no_mg", "v1"):
        cfg = read_json(getattr(converted, n) / "scheduler" / "scheduler_config.json", "s")
        assert resolve("auto", cfg)[0].kind == "t2v-turbo"
        marker = read_json(getattr(converted, n) / MARKER, "marker")
        assert marker["source"]["t2v_turbo"] == blocks[n]["kind"]
    assert "time_cond_proj_init" in read_json(converted.v1 / MARKER, "marker")["source"]


def test_v1_warning_says_once_what_the_init_means(src, tmp_path, capsys):
    assert convert(["--lvdm", src.ckpt, "--lvdm-config", src.yaml, "--lora", src.root / "unet_lora.pt"],
                   tmp_path / "v1") == 0
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("warning:")]
    assert len(lines) == 1 and "never published" in lines[0] and "453645634" in lines[0]


# ------------------------------------------------------------------------------------ bad input


class _RunsCode:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):  # unpickling this would create the marker file
        return (Path.touch, (Path(self.marker),))


def _bad_inputs(src, tmp: Path) -> dict[str, tuple[list, str]]:
    sd = dict(torch.load(src.root / "unet_mg.pt", weights_only=True))
    missing = {k: v for k, v in sd.items() if k != "out.2.weight"}
    torch.save({**missing, "extra.weight": torch.zeros(3)}, tmp / "keys.pt")
    torch.save({**sd, "time_cond_proj.weight": torch.zeros(16, 256)}, tmp / "shape.pt")
    loras = list(src.loras)
    torch.save(loras[:-2], tmp / "short.pt")
    torch.save(loras[:4] + [loras[4].T.contiguous()] + loras[5:], tmp / "lshape.pt")
    with open(tmp / "evil.pt", "wb") as f:
        pickle.dump(_RunsCode(tmp / "pwned"), f)
    return {
        "unet keys": (["--lvdm-unet", tmp / "keys.pt"], "missing key(s): model.diffusion_model.out.2.weight"),
        "unet shape": (["--lvdm-unet", tmp / "shape.pt"], "time_cond_proj.weight"),
        "lora length": (["--lora", tmp / "short.pt"], "tensors, but this UNet has"),
        "lora shapes": (["--lora", tmp / "lshape.pt"], "pair(s) do not fit"),
        "pickle unet": (["--lvdm-unet", tmp / "evil.pt"], "without executing code"),
        "pickle lora": (["--lora", tmp / "evil.pt"], "without executing code"),
        "both": (["--lvdm-unet", src.root / "unet_mg.pt", "--lora", src.root / "unet_lora.pt"], "pass one"),
    }


@pytest.mark.parametrize("case", ["unet keys", "unet shape", "lora length", "lora shapes", "pickle unet",
                                  "pickle lora", "both"])
def test_bad_input_is_one_error_line_exit_2_nothing_written(src, tmp_path, capsys, case):
    args, needle = _bad_inputs(src, tmp_path)[case]
    out = tmp_path / "out"
    assert convert(["--lvdm", src.ckpt, "--lvdm-config", src.yaml, *args], out) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and needle in err[0], err
    assert not out.exists() and not (tmp_path / "pwned").exists()


# ------------------------------------------------------------------------------------ options


def test_options_warnings_and_errors():
    import dataclasses
    import warnings

    from vinf_jax import tiny
    from vinf_jax.errors import ConfigError
    from vinf_jax.sampling import turbo
    from vinf_jax.sampling.schedulers import SchedulerSpec

    plain, t2v = SchedulerSpec("sde-dpmsolver++"), SchedulerSpec("t2v-turbo")
    v1 = dataclasses.replace(tiny.UNET, time_cond_proj_dim=256)
    mg = dataclasses.replace(v1, motion_cond_proj_dim=256)
    with pytest.raises(ConfigError, match="pipe_configs.scheduler"):
        turbo.resolve(t2v, {}, tiny.UNET)
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        turbo.resolve(plain, {}, tiny.UNET, lcm_origin_steps=50, motion_gs=0.1)
        spec, motion = turbo.resolve(t2v, {"t2v_turbo": {"kind": "v1", "lcm_origin_steps": 50}}, v1, motion_gs=0.1,
                                     negative_prompt="blurry")
    assert [str(x.message).split(":")[0] for x in w] == [
        "pipe_configs.lcm_origin_steps, pipe_configs.motion_gs", "pipe_configs.negative_prompt",
        "pipe_configs.motion_gs"]
    assert spec.lcm_origin_steps == 50 and motion is None
    spec, motion = turbo.resolve(t2v, {"t2v_turbo": turbo.KIND_DEFAULTS["v2-mg"]}, mg, motion_percentage=0.3)
    assert spec.lcm_origin_steps == 200 and (motion.gs, motion.threshold) == (0.05, pytest.approx(700.0))


def test_motion_threshold_switches_where_theirs_does():
    """The loop feeds motion_gs while float32(t) >= float32(T·(1 − percentage)): the same steps as their
    torch comparison, including t = 700 at percentage 0.3 (700.0000000000001 in float64)."""
    import dataclasses

    from vinf_jax import tiny
    from vinf_jax.sampling import turbo
    from vinf_jax.sampling.schedulers import SchedulerSpec

    mg = dataclasses.replace(tiny.UNET, time_cond_proj_dim=256, motion_cond_proj_dim=256)
    t = np.arange(1000)
    for pct in (0.3, 0.5, 0.25, 0.7, 0.0, 1.0):
        _, motion = turbo.resolve(SchedulerSpec("t2v-turbo"), {}, mg, motion_percentage=pct)
        ours = np.where(t.astype(np.float32) >= np.float32(motion.threshold), motion.gs, 0.0)
        np.testing.assert_array_equal(ours, [tr.motion_for(int(i), motion.gs, pct) for i in t], err_msg=str(pct))


@pytest.mark.parametrize("sets,needle", [
    (["pipe_configs.motion_percentage=1.5"], "pipe_configs.motion_percentage"),
    (["pipe_configs.lcm_origin_steps=0"], "pipe_configs.lcm_origin_steps"),
    (["pipe_configs.scheduler=t2v-turbo", "model=tiny-random"], "pipe_configs.scheduler"),
])
def test_bad_turbo_config_is_one_error(sets, needle, tmp_path, capsys):
    from vinf_jax.generate import main

    root = Path(__file__).resolve().parents[1]
    args = ["--config", str(root / "configs" / "turbo.json"), "--set", f"base_path={tmp_path}", "--quiet"]
    for s in ["model=tiny-random", "pipe_configs.height=16", "pipe_configs.width=16", "num_clips=1",
              "pipe_configs.num_frames=4", "plugin_configs.attn.padding=3", *sets]:
        args += ["--set", s]
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error:") and needle in err[-1], err
    assert not any(tmp_path.glob("*.mp4"))


@pytest.mark.slow
def test_cli_turbo_json_same_frames_on_1_and_8_devices(converted, tmp_path):
    """configs/turbo.json as the README runs it (--set model=DIR), on the tiny v2-mg checkpoint at a CPU size:
    8 clips on 8 virtual devices and on one device give the same frames; the sidecar records the sampler and
    the timesteps it ran."""
    from test_cli import generate

    root = Path(__file__).resolve().parents[1]
    small = [f"model={converted.mg}", "pipe_configs.height=16", "pipe_configs.width=16", "pipe_configs.num_frames=4",
             "plugin_configs.attn.padding=3", "plugin_configs.attn.top_k=4", "save_frames=npy"]
    runs = {}
    for name, env in (("eight", {}), ("one", {"JAX_NUM_CPU_DEVICES": "1"})):
        r = generate(root / "configs" / "turbo.json", small + [f"base_path={tmp_path / name}"], tmp_path, env=env)
        assert r.returncode == 0, r.stderr[-3000:]
        (npy,) = (tmp_path / name).glob("*.npy")
        runs[name] = (np.load(npy), json.loads(npy.with_suffix(".json").read_text()))
    (eight, side8), (one, side1) = runs["eight"], runs["one"]
    assert len(side8["resolved"]["devices"]) == 8 and len(side1["resolved"]["devices"]) == 1
    cfg = json.loads((root / "configs" / "turbo.json").read_text())
    steps = cfg["pipe_configs"]["steps"]
    sched = side8["resolved"]["scheduler"]
    assert sched["kind"] == "t2v-turbo" and sched["timesteps"] == tr.set_timesteps(steps, 200).tolist()
    assert sched["motion_gs"] == 0.05 and sched["motion_percentage"] == 0.5
    assert eight.shape == (8 * 4, 16, 16, 3)
    np.testing.assert_allclose(one, eight, atol=1e-5)
