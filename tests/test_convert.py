"""convert.videocrafter2 + vinf_jax.checkpoint: one CLI command turns a diffusers pipeline into one
checkpoint folder whose every component matches PyTorch, the same inputs give byte-identical
parameters, and every bad input fails with the file or key named (CLI: exit 2, nothing written)."""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from torch_refs import tiny_clip_text, tiny_tokenizer, tiny_vae
from unet_refs import TINY_CONFIGS, FpsUNet, randomize_, save_tiny_unet, torch_unet_out

REPO = Path(__file__).parents[1]
TOL = 1e-4  # max |diff| <= TOL * max |ref|, float32 on the CPU
# the two_blocks UNet, cross-attending to the tiny CLIP's 32-wide hidden states as in the real pipeline
UNET_CONFIG = {**TINY_CONFIGS["two_blocks"], "cross_attention_dim": 32}
SCHEDULER = {  # zeroscope_v2_576w's scheduler/scheduler_config.json
    "_class_name": "DDIMScheduler", "_diffusers_version": "0.17.0.dev0", "beta_end": 0.012,
    "beta_schedule": "scaled_linear", "beta_start": 0.00085, "clip_sample": False, "num_train_timesteps": 1000,
    "prediction_type": "epsilon", "set_alpha_to_one": False, "skip_prk_steps": True, "steps_offset": 1,
    "trained_betas": None,
}
# orbax bookkeeping: _CHECKPOINT_METADATA holds save timestamps, commit_success.txt the path written
# to; they are the only files under params/ that differ between two conversions of the same inputs
BOOKKEEPING = ("_CHECKPOINT_METADATA", "commit_success.txt")


def tiny_fps_unet(seed: int = 0) -> FpsUNet:
    from diffusers import UNet3DConditionModel

    torch.manual_seed(seed)
    model = FpsUNet(UNet3DConditionModel(**UNET_CONFIG))
    randomize_(model.unet, seed=seed)
    return model.eval()


def cli(*args) -> subprocess.CompletedProcess:
    """The converter run the way a user runs it."""
    return subprocess.run([sys.executable, "-m", "convert.videocrafter2", *map(str, args)],
                          cwd=REPO, capture_output=True, text=True, env=os.environ.copy())


def param_files(ckpt: Path, name: str) -> dict[str, bytes]:
    root = ckpt / name / "params"
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and p.name not in BOOKKEEPING}


def assert_same_params(a: Path, b: Path, names=("unet", "text_encoder", "vae")):
    for name in names:
        fa, fb = param_files(a, name), param_files(b, name)
        assert len(fa) > 3 and fa.keys() == fb.keys(), name
        assert [k for k in fa if fa[k] != fb[k]] == [], name  # byte-identical
        assert (a / name / "params.sha256.json").read_bytes() == (b / name / "params.sha256.json").read_bytes()


def assert_close(got, want):
    err, scale = float(np.abs(np.asarray(got) - want).max()), float(np.abs(want).max())
    assert err <= TOL * scale, (err, scale)


@pytest.fixture(scope="module")
def src(tmp_path_factory):
    """Random tiny torch models saved as the VideoCrafter2 UNet folder + a zeroscope-like pipeline."""
    root = tmp_path_factory.mktemp("src")
    unet = tiny_fps_unet()
    save_tiny_unet(unet, root / "vc2_unet")
    text, _ = tiny_clip_text()
    vae, _ = tiny_vae()
    pipe = root / "pipe"
    text.save_pretrained(pipe / "text_encoder")
    vae.save_pretrained(pipe / "vae")
    (pipe / "tokenizer").mkdir()
    tiny_tokenizer(pipe / "tokenizer")
    (pipe / "scheduler").mkdir()
    (pipe / "scheduler" / "scheduler_config.json").write_text(json.dumps(SCHEDULER))
    (pipe / "unet").mkdir()  # the pipeline's own UNet is not VideoCrafter2's: --unet overrides it
    (pipe / "unet" / "config.json").write_text("not the UNet to convert")
    merged = root / "merged"  # the single-folder layout: the pipeline with the VideoCrafter2 UNet inside
    shutil.copytree(pipe, merged, ignore=shutil.ignore_patterns("unet"))
    shutil.copytree(root / "vc2_unet", merged / "unet")
    return SimpleNamespace(unet=unet, text=text, vae=vae, unet_dir=root / "vc2_unet", pipe=pipe, merged=merged)


@pytest.fixture(scope="module")
def converted(src, tmp_path_factory):
    from vinf_jax.loading import UNetFunction, load_checkpoint

    out = tmp_path_factory.mktemp("ckpt") / "vc2"
    run = cli("--unet", src.unet_dir, "--base", src.pipe, "--out", out)
    assert run.returncode == 0, run.stderr
    ckpt = load_checkpoint(out)
    return SimpleNamespace(path=out, ckpt=ckpt, unet=UNetFunction(ckpt.unet, "float32"))


# ------------------------------------------------------------------------------- round trip


def unet_inputs(seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((1, 4, 3, 8, 8)).astype(np.float32), rng.standard_normal((1, 5, 32)).astype(np.float32)


def test_unet_matches_diffusers(src, converted):
    sample, ctx = unet_inputs()
    want = torch_unet_out(src.unet, sample, 500, ctx, 12)
    assert_close(converted.unet(sample, 500, ctx, fps=12), want)


def test_text_encoder_and_tokenizer_match_transformers(src, converted):
    from flax import nnx
    from transformers import CLIPTokenizer

    from vinf_jax.models.clip_text import tokenize

    prompts = ["the cat and the dog", "a cat on a thing"]
    ids = tokenize(converted.ckpt.tokenizer, prompts)
    np.testing.assert_array_equal(ids, tokenize(CLIPTokenizer.from_pretrained(str(src.pipe / "tokenizer")), prompts))
    with torch.no_grad():
        want = src.text(torch.from_numpy(ids.astype(np.int64))).last_hidden_state.numpy()
    got = nnx.jit(lambda m, x: m(x))(converted.ckpt.text_encoder.module(), ids)
    assert got.shape == (2, 77, 32)
    assert_close(got, want)


def test_vae_decode_matches_diffusers(src, converted):
    from flax import nnx

    latents = np.random.default_rng(1).normal(0, 1, (2, 6, 10, 4)).astype(np.float32) * 0.18215
    z = torch.from_numpy(latents).permute(0, 3, 1, 2) / src.vae.config.scaling_factor
    with torch.no_grad():
        want = src.vae.decode(z).sample.permute(0, 2, 3, 1).numpy()
    got = nnx.jit(lambda m, x: m.decode(x))(converted.ckpt.vae.module(), latents)
    assert got.shape == want.shape == (2, 12, 20, 3)
    assert_close(got, want)


def test_checkpoint_describes_itself(src, converted):
    from vinf_jax.checkpoint import FORMAT
    from vinf_jax.models.clip_text import CLIPTextConfig
    from vinf_jax.models.vae import VAEConfig

    ckpt, out = converted.ckpt, converted.path
    assert ckpt.path == out.absolute()
    assert ckpt.components == ("unet", "text_encoder", "vae", "tokenizer", "scheduler")
    assert ckpt.info["format"] == FORMAT and ckpt.info["source"]["unet"] == str(src.unet_dir.absolute())
    assert ckpt.scheduler_config == SCHEDULER
    assert (out / "scheduler" / "scheduler_config.json").read_bytes() == (src.pipe / "scheduler" / "scheduler_config.json").read_bytes()
    for f in (src.pipe / "tokenizer").iterdir():  # verbatim copies
        assert (out / "tokenizer" / f.name).read_bytes() == f.read_bytes()
    assert ckpt.text_encoder.config == CLIPTextConfig.from_dict(src.text.config.to_dict())
    assert ckpt.vae.config == VAEConfig.from_dict(dict(src.vae.config))
    assert ckpt.unet.config.fps_cond and ckpt.unet.config.cross_attention_dim == 32
    assert not list(out.parent.glob(".*partial*"))


def test_merged_pipeline_folder_gives_the_same_checkpoint(src, converted, tmp_path):
    from vinf_jax.convert.videocrafter2 import main

    from vinf_jax.loading import load_checkpoint
    from vinf_jax.sampling.auto import resolve

    assert main(["--base", str(src.merged), "--out", str(tmp_path / "out")]) == 0
    assert_same_params(converted.path, tmp_path / "out")
    merged = load_checkpoint(tmp_path / "out")  # scheduler auto on the merged folder: the released sampler
    assert resolve("auto", merged.scheduler_config, merged.unet.config)[0].kind == "sde-dpmsolver++"
    for f in ("scheduler/scheduler_config.json", "tokenizer/vocab.json", "tokenizer/merges.txt"):
        assert (tmp_path / "out" / f).read_bytes() == (converted.path / f).read_bytes()


def test_converting_twice_gives_byte_identical_parameters(src, converted, tmp_path):
    from vinf_jax.convert.mapping import flatten_pure
    from vinf_jax.convert.videocrafter2 import convert
    from vinf_jax.checkpoint import load_params

    convert(src.unet_dir, tmp_path / "again", base=src.pipe)  # in this process; the first ran in a subprocess
    assert_same_params(converted.path, tmp_path / "again")
    again = flatten_pure(load_params(tmp_path / "again" / "unet", converted.ckpt.unet.params, "unet"))
    first = flatten_pure(converted.ckpt.unet.params)
    assert again.keys() == first.keys() and all(np.array_equal(again[k], first[k]) for k in first)


# ------------------------------------------------------------------- other UNet weight files


def test_sharded_unet(src, converted, tmp_path):
    from vinf_jax.convert.videocrafter2 import main

    save_tiny_unet(src.unet, tmp_path / "unet", max_shard_size="50KB")
    assert (tmp_path / "unet" / "diffusion_pytorch_model.safetensors.index.json").is_file()
    assert len(list((tmp_path / "unet").glob("*.safetensors"))) > 3
    assert main(["--unet", str(tmp_path / "unet"), "--out", str(tmp_path / "out")]) == 0
    assert json.loads((tmp_path / "out" / "vinf_jax_checkpoint.json").read_text())["components"] == ["unet"]
    assert_same_params(converted.path, tmp_path / "out", names=("unet",))


def test_float16_unet(converted, tmp_path):
    import jax
    from safetensors import safe_open

    from vinf_jax.convert.mapping import flatten_pure, params_from_torch
    from vinf_jax.convert.videocrafter2 import main
    from vinf_jax.checkpoint import load_params
    from vinf_jax.convert.keymaps import unet_rename

    save_tiny_unet(tiny_fps_unet().half(), tmp_path / "unet")
    with safe_open(str(tmp_path / "unet" / "diffusion_pytorch_model.safetensors"), "pt") as f:
        assert f.get_tensor("conv_in.weight").dtype == torch.float16
    assert main(["--unet", str(tmp_path / "unet"), "--out", str(tmp_path / "out")]) == 0
    got = load_params(tmp_path / "out" / "unet", converted.ckpt.unet.params, "unet")
    rounded = tiny_fps_unet().half().float()  # the fp16 weights, in float32
    sd = {k: v.numpy() for k, v in rounded.unet.state_dict().items()}
    want = flatten_pure(params_from_torch(converted.ckpt.unet.params, sd, rename=unet_rename))
    flat = flatten_pure(got)
    assert flat.keys() == want.keys() and all(np.array_equal(flat[k], want[k]) for k in want)
    sample, ctx = unet_inputs(2)
    run, saved = converted.unet, converted.unet.params
    run.params = jax.tree.map(jax.numpy.asarray, got)  # same shapes: reuses the compiled UNet
    try:
        out = run(sample, 30, ctx, fps=8)
    finally:
        run.params = saved
    assert_close(out, torch_unet_out(rounded, sample, 30, ctx, 8))


def unet_as_pickle(src, tmp: Path) -> Path:
    shutil.copytree(src.unet_dir, tmp / "unet")
    (tmp / "unet" / "diffusion_pytorch_model.safetensors").unlink()
    torch.save(src.unet.unet.state_dict(), tmp / "unet" / "diffusion_pytorch_model.bin")
    return tmp / "unet"


def test_pickle_accepted_with_allow_pickle(src, converted, tmp_path):
    from vinf_jax.convert.videocrafter2 import main

    unet = unet_as_pickle(src, tmp_path)
    assert main(["--unet", str(unet), "--out", str(tmp_path / "out"), "--allow-pickle"]) == 0
    assert_same_params(converted.path, tmp_path / "out", names=("unet",))


def test_read_weights_keeps_float_dtypes_and_index_buffers(tmp_path):
    from safetensors.torch import save_file

    from vinf_jax.convert.safetensors_io import read_weights

    tensors = {"a": torch.randn(3, 2).bfloat16(), "b": torch.randn(4).half(), "c": torch.randn(2, 2).double(),
               "d": torch.randn(2, 3), "text_model.embeddings.position_ids": torch.arange(5)[None]}
    save_file(tensors, str(tmp_path / "model.safetensors"))
    got = read_weights(tmp_path, ("model", "pytorch_model"))
    assert got.keys() == tensors.keys()
    for k, v in tensors.items():
        assert got[k].shape == tuple(v.shape)
        np.testing.assert_array_equal(got[k].astype(np.float64), v.double().numpy())


# ------------------------------------------------------------------------------ bad inputs


def edit_safetensors(path: Path, edit) -> None:
    from safetensors.numpy import load_file, save_file

    tensors = {k: np.array(v) for k, v in load_file(str(path)).items()}
    edit(tensors)
    save_file(tensors, str(path))


def copy_unet(src, tmp):
    return shutil.copytree(src.unet_dir, tmp / "unet")


def copy_pipe(src, tmp):
    return shutil.copytree(src.pipe, tmp / "pipe")


def bad_keys(src, tmp):
    def edit(t):
        del t["conv_in.bias"]
        t["bogus.weight"] = np.zeros(3, np.float32)
        t["time_embedding.linear_1.weight"] = t["time_embedding.linear_1.weight"][:, :-1].copy()
    edit_safetensors(copy_unet(src, tmp) / "diffusion_pytorch_model.safetensors", edit)
    return ["--unet", tmp / "unet"]


def no_vae(src, tmp):
    shutil.rmtree(copy_pipe(src, tmp) / "vae")
    return ["--unet", src.unet_dir, "--base", tmp / "pipe"]


def no_config(src, tmp):
    (copy_unet(src, tmp) / "config.json").unlink()
    return ["--unet", tmp / "unet"]


def bad_json(src, tmp):
    (copy_pipe(src, tmp) / "text_encoder" / "config.json").write_text('{"hidden_size": 32,')
    return ["--unet", src.unet_dir, "--base", tmp / "pipe"]


def truncated(src, tmp):
    f = copy_pipe(src, tmp) / "vae" / "diffusion_pytorch_model.safetensors"
    data = f.read_bytes()
    f.write_bytes(data[: len(data) // 2])
    return ["--unet", src.unet_dir, "--base", tmp / "pipe"]


def missing_shard(src, tmp):
    save_tiny_unet(src.unet, tmp / "unet", max_shard_size="50KB")
    sorted((tmp / "unet").glob("*-00002-of-*.safetensors"))[0].unlink()
    return ["--unet", tmp / "unet"]


def pickle_only(src, tmp):
    return ["--unet", unet_as_pickle(src, tmp)]


def nan_weight(src, tmp):
    def edit(t):
        t["decoder.conv_out.weight"][0, 0, 0, 0] = np.nan
        t["decoder.conv_in.bias"][1] = np.inf
    edit_safetensors(copy_pipe(src, tmp) / "vae" / "diffusion_pytorch_model.safetensors", edit)
    return ["--unet", src.unet_dir, "--base", tmp / "pipe"]


def bad_dtype(src, tmp):
    def edit(t):
        t["encoder.layers.0.mlp.fc1.weight"] = (t["encoder.layers.0.mlp.fc1.weight"] * 100).astype(np.int8)
        t["encoder.attention_mask"] = np.ones(4, bool)
    edit_safetensors(copy_pipe(src, tmp) / "text_encoder" / "model.safetensors", edit)
    return ["--unet", src.unet_dir, "--base", tmp / "pipe"]


def no_unet_in_base(src, tmp):
    shutil.rmtree(copy_pipe(src, tmp) / "unet")
    return ["--base", tmp / "pipe"]


def out_exists(src, tmp):
    (tmp / "out").mkdir()
    (tmp / "out" / "keep.txt").write_text("mine")
    return ["--unet", src.unet_dir]


CLI_CASES = {  # name: (setup returning argv without --out, pattern the one error line must match)
    "missing+unexpected+shape": (bad_keys, r"1 missing key\(s\): conv_in\.bias; 1 unexpected key\(s\): bogus\.weight; "
                                           r"1 shape mismatch\(es\): time_embedding\.linear_1\.weight: checkpoint \(64, 15\)"),
    "missing vae folder": (no_vae, r"vae: folder \S+/pipe/vae does not exist"),
    "missing config.json": (no_config, r"unet: \S+/unet/config\.json is missing"),
    "invalid JSON config": (bad_json, r"text encoder: \S+/text_encoder/config\.json is not valid JSON"),
    "truncated safetensors": (truncated, r"\S+/vae/diffusion_pytorch_model\.safetensors is truncated: \d+ bytes, but \d+ are needed"),
    "missing shard": (missing_shard, r"shard\(s\) missing: \S+/diffusion_pytorch_model-00002-of-\d+\.safetensors"),
    "pickle refused": (pickle_only, r"only pickle weights found \(diffusion_pytorch_model\.bin\).*--allow-pickle"),
    "NaN/inf weight": (nan_weight, r"2 tensor\(s\) with NaN or inf: decoder\.conv_in\.bias, decoder\.conv_out\.weight"),
    "int8 and bool tensors": (bad_dtype, r"model\.safetensors: 2 tensor\(s\) of unsupported dtype: encoder\.attention_mask "
                                         r"\(bool\), encoder\.layers\.0\.mlp\.fc1\.weight \(int8\)"),
    "--base without unet/": (no_unet_in_base, r"--base \S+/pipe has no unet/ folder; pass --unet"),
    "--out exists": (out_exists, r"output folder \S+/out already exists"),
}


@pytest.mark.parametrize("case", CLI_CASES)
def test_cli_rejects_bad_input(case, src, tmp_path, capsys):
    from vinf_jax.convert.videocrafter2 import main

    setup, pattern = CLI_CASES[case]
    argv = [str(a) for a in setup(src, tmp_path)] + ["--out", str(tmp_path / "out")]
    existed = (tmp_path / "out").exists()
    capsys.readouterr()
    assert main(argv) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    assert re.search(pattern, lines[0]), lines[0]
    if existed:  # left alone
        assert [p.name for p in (tmp_path / "out").iterdir()] == ["keep.txt"]
    else:
        assert not (tmp_path / "out").exists()
    assert not list(tmp_path.glob(".out.partial-*"))


def test_cli_exit_status_as_a_process(src, tmp_path):
    run = cli("--unet", src.unet_dir, "--base", tmp_path / "nowhere", "--out", tmp_path / "out")
    assert run.returncode == 2 and run.stdout == ""
    assert run.stderr.strip().splitlines() == [f"error: --base: folder {tmp_path / 'nowhere'} does not exist"]
    assert not (tmp_path / "out").exists()


def first_file(ckpt: Path, name: str, part: str) -> Path:
    return ckpt / name / "params" / next(k for k in param_files(ckpt, name) if part in k and ".zarray" not in k)


def edit_json(path: Path, **changes) -> None:
    path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))


def garble(path: Path) -> None:
    data = bytearray(path.read_bytes())
    for i in range(len(data) // 2, len(data)):
        data[i] ^= 0x5A
    path.write_bytes(bytes(data))


LOAD_CASES = {  # name: (damage done to a copy of the checkpoint, pattern of the CheckpointError)
    "marker missing": (lambda c: (c / "vinf_jax_checkpoint.json").unlink(),
                       r"has no vinf_jax_checkpoint\.json, so it is not a \(complete\) vinf_jax checkpoint"),
    "component folder missing": (lambda c: shutil.rmtree(c / "vae"), r"vae: component folder \S+/vae is missing"),
    "config.json missing": (lambda c: (c / "text_encoder" / "config.json").unlink(),
                            r"text_encoder: \S+/text_encoder/config\.json is missing"),
    "params file deleted": (lambda c: first_file(c, "vae", "conv_in.kernel").unlink(),
                            r"vae: damaged parameter files .*vae/params/decoder\.conv_in\.kernel/\S+ is missing"),
    "params file truncated": (lambda c: os.truncate(first_file(c, "text_encoder", "fc1.kernel"), 7),
                              r"text_encoder: damaged .*fc1\.kernel/\S+ has 7 bytes, expected \d+ \(truncated\?\)"),
    "params file garbled": (lambda c: garble(first_file(c, "unet", "conv_in.kernel")),
                            r"unet: damaged .*conv_in\.kernel/\S+ is corrupt \(SHA-256"),
    "orbax metadata deleted": (lambda c: (c / "unet" / "params" / "_METADATA").unlink(),
                               r"unet: damaged .*unet/params/_METADATA is missing"),
    "another architecture": (lambda c: edit_json(c / "vae" / "config.json", block_out_channels=[32, 48]),
                             r"vae: parameters in \S+ do not fit \S+/vae/config\.json .*50 shape mismatch\(es\): .*decoder\.conv_in\.kernel: "
                             r"stored \(3, 3, 4, 64\), config expects \(3, 3, 4, 48\);.*\(40 more\)$"),
}


@pytest.mark.parametrize("case", LOAD_CASES)
def test_load_rejects_damaged_checkpoint(case, converted, tmp_path):
    from vinf_jax.errors import CheckpointError
    from vinf_jax.loading import load_checkpoint as load

    damage, pattern = LOAD_CASES[case]
    ckpt = shutil.copytree(converted.path, tmp_path / "ckpt")
    damage(ckpt)
    with pytest.raises(CheckpointError, match=pattern):
        load(ckpt)


def test_generate_cli_runs_on_a_converted_checkpoint(converted, tmp_path):
    """The user path: a converted folder as `model` of an original config gives an mp4."""
    from vinf_jax.output.video_io import read_mp4

    cfg = Path(__file__).resolve().parents[1] / "configs" / "single_gpu.json"
    sets = [f"model={converted.path}", f"base_path={tmp_path}/out", "pipe_configs.steps=2", "pipe_configs.height=32",
            "pipe_configs.width=32", "pipe_configs.num_frames=4", "plugin_configs.attn.padding=3"]
    cmd = [sys.executable, "-m", "vinf_jax.generate", "--config", str(cfg), "--quiet"] + sum((["--set", s] for s in sets), [])
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    run = subprocess.run(cmd, cwd=tmp_path, env={**env, "PYTHONPATH": str(Path(__file__).resolve().parents[1])},
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    (mp4,) = (tmp_path / "out").glob("*.mp4")
    assert read_mp4(mp4).shape == (4, 32, 32, 3)
    # scheduler auto: the base pipeline's config is a DDIMScheduler, the UNet the fps-conditioned port:
    # the released Video-Infinity code's sde-dpmsolver++ on that schedule (docs/method.md), recorded
    side = json.loads(mp4.with_suffix(".json").read_text())
    assert SCHEDULER["_class_name"] == "DDIMScheduler" and side["config"]["pipe_configs"]["scheduler"] == "auto"
    assert side["resolved"]["scheduler"]["kind"] == "sde-dpmsolver++"
