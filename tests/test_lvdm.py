"""convert.lvdm: VideoCrafter's own checkpoint (LVDM layout) -> one vinf_jax checkpoint.

A tiny LVDM ``model.ckpt`` is assembled from reference models (``lvdm_refs``): each converted
component is compared with its reference in float32 (max |diff| <= 1e-4 * max |ref|), the tokenizer
with ``open_clip.tokenize``, and every bad input fails with the keys named and nothing written.
"""

import re
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import yaml

import lvdm_refs
import openclip_ref
from unet_refs import torch_unet_out

TOL = 1e-4


def assert_close(got, want):
    err, scale = float(np.abs(np.asarray(got) - want).max()), float(np.abs(want).max())
    assert err <= TOL * scale, (err, scale)


@pytest.fixture(scope="module")
def src(tmp_path_factory):
    root = tmp_path_factory.mktemp("lvdm")
    unet, text, vae = lvdm_refs.tiny_unet(), lvdm_refs.tiny_text(), lvdm_refs.tiny_vae()
    sd = {**lvdm_refs.unet_to_lvdm(unet), **lvdm_refs.text_to_lvdm(text), **lvdm_refs.vae_to_lvdm(vae),
          **lvdm_refs.schedule_buffers(**{k: v for k, v in lvdm_refs.SCHEDULE.items()})}
    torch.save({"state_dict": sd, "global_step": 1}, root / "model.ckpt")
    (root / "inference.yaml").write_text(yaml.safe_dump(lvdm_refs.YAML))
    return SimpleNamespace(root=root, unet=unet, text=text, vae=vae, sd=sd, ckpt=root / "model.ckpt",
                           yaml=root / "inference.yaml")


@pytest.fixture(scope="module")
def converted(src, tmp_path_factory):
    from vinf_jax.convert.videocrafter2 import main
    from vinf_jax.loading import UNetFunction, load_checkpoint

    out = tmp_path_factory.mktemp("ckpt") / "vc"
    assert main(["--lvdm", str(src.ckpt), "--lvdm-config", str(src.yaml), "--out", str(out)]) == 0
    ckpt = load_checkpoint(out)
    return SimpleNamespace(path=out, ckpt=ckpt, unet=UNetFunction(ckpt.unet, "float32"))


def test_unet_matches_diffusers(src, converted):
    rng = np.random.default_rng(0)
    sample = rng.standard_normal((1, 4, 3, 8, 8)).astype(np.float32)
    ctx = rng.standard_normal((1, 5, 32)).astype(np.float32)
    assert_close(converted.unet(sample, 500, ctx, fps=12), torch_unet_out(src.unet, sample, 500, ctx, 12))


PROMPTS = ["", "!!", "RAIN!!", "A Cat, surfing... on a WAVE?! (4K) #nice", "don't STOP   me\tnow\n",
           "café &amp; naïve — 3.14 🙂", "word " * 90]


def test_tokenizer_and_penultimate_text_tower_match_open_clip(src, converted):
    from flax import nnx

    from vinf_jax.models.clip_text import tokenize

    want_ids = openclip_ref.tokenizer_module().tokenize(PROMPTS).numpy()
    ids = tokenize(converted.ckpt.tokenizer, PROMPTS)
    np.testing.assert_array_equal(ids, want_ids)
    assert ids[0, 2] == 0 and ids[-1, -1] == 49407  # zero padding; the end token kept on over-long prompts
    want = lvdm_refs.penultimate(src.text, torch.from_numpy(want_ids))
    enc = converted.ckpt.text_encoder
    assert enc.config.num_hidden_layers == lvdm_refs.TEXT["layers"] - 1 and enc.config.hidden_act == "gelu"
    got = nnx.jit(lambda m, x: m(x))(enc.module(), ids)
    assert got.shape == (len(PROMPTS), 77, 32)
    assert_close(got, want)


def test_vae_decoder_matches_diffusers_ldm_conversion(src, converted):
    from diffusers import AutoencoderKL
    from diffusers.loaders.single_file_utils import convert_ldm_vae_checkpoint
    from flax import nnx

    # the test's LDM names are diffusers' own: its single-file conversion gives back the original weights
    ldm = {k: v for k, v in src.sd.items() if k.startswith("first_stage_model.")}
    back = convert_ldm_vae_checkpoint(ldm, dict(src.vae.config))
    orig = src.vae.state_dict()
    assert back.keys() == orig.keys() and all(torch.equal(back[k].reshape(orig[k].shape), orig[k]) for k in orig)
    ref = AutoencoderKL(**lvdm_refs.VAE).eval()
    ref.load_state_dict({k: back[k].reshape(orig[k].shape) for k in orig})
    latents = np.random.default_rng(1).normal(0, 1, (2, 6, 10, 4)).astype(np.float32) * 0.18215
    with torch.no_grad():
        want = ref.decode(torch.from_numpy(latents).permute(0, 3, 1, 2) / 0.18215).sample.permute(0, 2, 3, 1).numpy()
    got = nnx.jit(lambda m, x: m.decode(x))(converted.ckpt.vae.module(), latents)
    assert got.shape == want.shape == (2, 12, 20, 3)
    assert_close(got, want)


def test_checkpoint_describes_itself(src, converted):
    ck = converted.ckpt
    assert ck.components == ("unet", "text_encoder", "vae", "tokenizer", "scheduler")
    assert ck.info["source"]["lvdm"] == str(src.ckpt.absolute()) and ck.info["source"]["text_layer"] == "penultimate"
    s = ck.scheduler_config
    assert (s["_class_name"], s["beta_schedule"], s["beta_start"], s["beta_end"], s["num_train_timesteps"],
            s["prediction_type"]) == ("DDIMScheduler", "scaled_linear", 0.00085, 0.012, 1000, "epsilon")
    assert s["videocrafter"]["use_scale"] is True and s["videocrafter"]["scale_b"] == 0.7
    assert s["videocrafter"]["eta"] == 1.0
    assert ck.vae.config.scaling_factor == 0.18215 and ck.unet.config.fps_cond
    assert (converted.path / "tokenizer" / "bpe_simple_vocab_16e6.txt.gz").read_bytes() == \
        openclip_ref.vocab_file().read_bytes()


def param_bytes(ckpt: Path) -> dict:
    return {p.relative_to(ckpt).as_posix(): p.read_bytes() for p in sorted(ckpt.rglob("params/**/*"))
            if p.is_file() and p.name not in ("_CHECKPOINT_METADATA", "commit_success.txt")}


def test_safetensors_and_conv_projections_give_the_same_checkpoint(src, converted, tmp_path):
    """The same keys as .safetensors need no torch to read; VideoCrafter configs without use_linear store
    the transformers' projections as 1x1 convs, which convert to the same parameters."""
    from safetensors.torch import save_file

    from vinf_jax.convert.lvdm import convert_lvdm

    sd = {**src.sd, **lvdm_refs.unet_to_lvdm(src.unet, use_linear=False)}
    assert sd["model.diffusion_model.input_blocks.1.1.proj_in.weight"].ndim == 4
    assert sd["model.diffusion_model.input_blocks.1.2.proj_in.weight"].ndim == 3
    save_file({k: v.contiguous() for k, v in sd.items()}, str(tmp_path / "model.safetensors"))
    cfg = yaml.safe_load(src.yaml.read_text())
    cfg["model"]["params"]["unet_config"]["params"]["use_linear"] = False
    (tmp_path / "conv.yaml").write_text(yaml.safe_dump(cfg))
    convert_lvdm(tmp_path / "model.safetensors", tmp_path / "out", config=tmp_path / "conv.yaml")
    assert param_bytes(tmp_path / "out") == param_bytes(converted.path)


def test_full_size_mapping_from_videocrafter2_config():
    """VideoCrafter2's UNet, built abstractly from its config: every parameter has one LVDM name."""
    from vinf_jax.convert.lvdm import model_from_params, unet_names
    from vinf_jax.convert.mapping import flatten_pure
    from vinf_jax.loading import abstract_params

    model = model_from_params(None)
    names = unet_names(model.unet)
    shapes = flatten_pure(abstract_params("unet", model.unet))
    assert len(names) == len(set(names.values())) == 1484
    assert sum(int(np.prod(s.shape)) for s in shapes.values()) == 1_413_284_420
    grammar = re.compile(
        r"model\.diffusion_model\.(time_embed\.[02]|fps_embedding\.[02]|out\.[02]|input_blocks\.0\.0|init_attn\.0\..+"
        r"|input_blocks\.(3|6|9)\.0\.op|output_blocks\.(2|5|8)\.(1|3)\.conv"
        r"|(input_blocks\.(1|2|4|5|7|8|10|11)|middle_block|output_blocks\.\d+)\.[0-3]\..+)\.(weight|bias)")
    assert [n for n in names.values() if not grammar.fullmatch(n)] == []
    assert model.text.num_hidden_layers == 23 and model.text.num_attention_heads == 16
    assert model.vae.block_out_channels == (128, 256, 512, 512)


# --------------------------------------------------------------------------------- bad inputs


def damaged(src, tmp: Path) -> Path:
    sd = dict(src.sd)
    del sd["model.diffusion_model.out.2.bias"]
    sd["first_stage_model.decoder.bogus.weight"] = torch.zeros(3)
    key = "cond_stage_model.model.transformer.resblocks.0.mlp.c_fc.weight"
    sd[key] = sd[key][:, :-1].clone()
    torch.save({"state_dict": sd}, tmp / "bad.ckpt")
    return tmp / "bad.ckpt"


def wrong_schedule(src, tmp: Path) -> Path:
    cfg = yaml.safe_load(src.yaml.read_text())
    cfg["model"]["params"]["scale_b"] = 0.5
    (tmp / "wrong.yaml").write_text(yaml.safe_dump(cfg))
    return tmp / "wrong.yaml"


CASES = {
    "every bad tensor at once": (
        lambda s, t: ["--lvdm", damaged(s, t), "--lvdm-config", s.yaml],
        r"unet \(model\.diffusion_model\.\*\): 1 missing key\(s\): model\.diffusion_model\.out\.2\.bias; "
        r"text \(cond_stage_model\.model\.\*\): 1 shape mismatch\(es\): cond_stage_model\.model\.transformer\.resblocks\.0"
        r"\.mlp\.c_fc\.weight: checkpoint \(128, 31\).*; vae \(first_stage_model\.\*\): 1 unexpected key\(s\): "
        r"first_stage_model\.decoder\.bogus\.weight"),
    "yaml disagrees with the buffers": (
        lambda s, t: ["--lvdm", s.ckpt, "--lvdm-config", wrong_schedule(s, t)],
        r"buffer scale_arr \(1400,\) does not follow the schedule of \S+wrong\.yaml .*scale_b=0\.5"),
    "not VideoCrafter2's UNet": (
        lambda s, t: ["--lvdm", s.ckpt, "--lvdm-config", edit_yaml(s, t, use_relative_position=True)],
        r"unet_config\.params: this UNet is not VideoCrafter2's architecture: use_relative_position=True"),
    "no such file": (lambda s, t: ["--lvdm", t / "nope.ckpt", "--lvdm-config", s.yaml], r"--lvdm: \S+nope\.ckpt does not exist"),
    "not a pickle of tensors": (
        lambda s, t: ["--lvdm", garbage(t), "--lvdm-config", s.yaml], r"cannot read \S+garbage\.ckpt: UnpicklingError"),
    "with --unet": (lambda s, t: ["--lvdm", s.ckpt, "--unet", t], r"do not combine it with --unet or --base"),
}


def edit_yaml(src, tmp, **unet_params):
    cfg = yaml.safe_load(src.yaml.read_text())
    cfg["model"]["params"]["unet_config"]["params"].update(unet_params)
    (tmp / "edited.yaml").write_text(yaml.safe_dump(cfg))
    return tmp / "edited.yaml"


def garbage(tmp):
    import pickle

    class Evil:  # pickled code would run under a plain torch.load; weights_only refuses it
        def __reduce__(self):
            return (print, ("pwned",))

    (tmp / "garbage.ckpt").write_bytes(pickle.dumps({"state_dict": Evil()}))
    return tmp / "garbage.ckpt"


@pytest.mark.parametrize("case", CASES)
def test_cli_rejects_bad_input(case, src, tmp_path, capsys):
    from vinf_jax.convert.videocrafter2 import main

    setup, pattern = CASES[case]
    argv = [str(a) for a in setup(src, tmp_path)] + ["--out", str(tmp_path / "out")]
    capsys.readouterr()
    assert main(argv) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    assert re.search(pattern, lines[0]), lines[0]
    assert "pwned" not in captured.out
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out.partial-*"))


def test_auto_scheduler_of_an_lvdm_checkpoint_is_videocrafters_ddim(converted):
    """What the pipeline's default ``scheduler="auto"`` builds from this checkpoint, without warnings."""
    from vinf_jax.sampling import make_solver
    from vinf_jax.sampling.auto import resolve

    assert converted.ckpt.unet.config.fps_cond  # fps-conditioned like the port, yet its own sampler
    spec, cfg, notes = resolve("auto", converted.ckpt.scheduler_config, converted.ckpt.unet.config)
    assert (spec.kind, spec.eta, notes) == ("videocrafter-ddim", 1.0, [])
    solver = make_solver(spec, cfg, 25)
    assert solver.timesteps.tolist() == list(range(961, 0, -40)) and solver.needs_noise
