"""vinf_jax.config: the original JSON loads unchanged, overrides, validation messages, clip striding."""

import ast
import copy
import json
import os
import re
import warnings
from pathlib import Path

import pytest

from vinf_jax import config as config_module
from vinf_jax.config import values as config_values
from vinf_jax.parallel.devices import plan_devices
from vinf_jax.config import (
    AttnConfig,
    ConfigWarning,
    ConvLayerConfig,
    DistributedConfig,
    GroupNormConfig,
    Phase,
    PipeConfig,
    VideoInfinityConfig,
    load_config,
    normalize_dtype,
    to_dict,
)
from vinf_jax.errors import ConfigError

ORIGINAL = Path(__file__).resolve().parents[1] / "configs"  # the released example configs, unchanged
TINY = ["model=tiny-random"]
BEAGLE = ("A beagle wearing diving goggles swimming in the ocean while the camera is moving, "
          "coral reefs in the background.")


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch, tmp_path):
    for var in ("JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.chdir(tmp_path)  # base_path "./exp" is checked relative to the cwd


def _original(name):
    return json.loads((ORIGINAL / f"{name}.json").read_text())


def _minimal(**top):
    return {"model": "tiny-random", "pipe_configs": {"prompts": ["a cat"]}, **top}


# ----------------------------------------------------------------------------- original configs

@pytest.mark.parametrize("name", ["config", "multi_prompts", "single_gpu"])
def test_original_configs_load_unchanged(name, tmp_path):
    cfg = load_config(ORIGINAL / f"{name}.json", TINY)
    assert not (tmp_path / "exp").exists()  # the writability check creates nothing
    assert cfg.model == "tiny-random"
    assert cfg.source == str(ORIGINAL / f"{name}.json")
    assert cfg.dtype == "float16"
    assert (cfg.seed, cfg.master_port, cfg.base_path, cfg.save_frames) == (123, 29516, "./exp", None)
    p = cfg.pipe
    assert (p.steps, p.guidance_scale, p.fps, p.num_frames) == (30, 12.0, 24, 24)
    assert (p.height, p.width, p.export_fps, p.file_name) == (320, 512, 8, None)
    assert (p.scheduler, p.negative_prompt) == ("auto", "")
    vi = cfg.video_infinity
    assert (vi.edge_mode, vi.num_clips) == ("exact", None)
    a = vi.attn
    assert (a.padding, a.top_k, a.attn_scale, a.token_num_scale, a.dynamic_scale) == (8, 16, 1.0, False, True)
    assert vi.conv_layer == ConvLayerConfig(4)
    assert vi.group_norm == GroupNormConfig(False)
    assert cfg.distributed == DistributedConfig()


def test_original_values_come_through():
    multi = load_config(ORIGINAL / "multi_prompts.json", TINY)
    assert len(multi.pipe.prompts) == 8
    assert multi.pipe.prompts[0].startswith("[Ukiyo-e style] A black Akita puppy stands alone")
    assert multi.devices == tuple(range(8))
    assert multi.video_infinity.attn.local_phase == Phase(850, 10.0, 0.0)
    assert multi.video_infinity.attn.global_phase == Phase(850, 0.0, 10.0)
    single = load_config(ORIGINAL / "single_gpu.json", TINY)
    assert single.devices == (0,)
    four = load_config(ORIGINAL / "config.json", TINY)
    assert four.devices == (0, 1, 2, 3)
    assert four.pipe.prompts == (BEAGLE,)
    assert four.video_infinity.attn.local_phase == Phase(800, 10.0, 0.0)
    assert isinstance(four.video_infinity.attn.local_phase.local_biase, float)
    assert isinstance(four.pipe.guidance_scale, float)
    # Apart from the ignored keys, the shipped example equals the defaults.
    assert four.video_infinity == VideoInfinityConfig()


def test_ignored_keys_warn_once_each():
    config_values.WARNED.clear()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        load_config(ORIGINAL / "config.json", TINY)
        load_config(ORIGINAL / "multi_prompts.json", TINY)
    messages = sorted(str(w.message) for w in caught if issubclass(w.category, ConfigWarning))
    assert len(messages) == 2
    assert messages[0].startswith("plugin_configs.attn.top_k_chunk_size is accepted")
    assert messages[1].startswith("plugin_configs.conv_3d.padding is accepted")


def test_model_missing_is_an_error_with_a_hint():
    with pytest.raises(ConfigError, match=r"^model: missing required key.*--set model=tiny-random.*convert\.videocrafter2"):
        load_config(ORIGINAL / "config.json")


# ----------------------------------------------------------------------------- defaults, hashing

def test_defaults():
    assert AttnConfig() == AttnConfig(8, 16, 1.0, False, True, Phase(800, 10.0, 0.0), Phase(800, 0.0, 10.0))
    assert ConvLayerConfig().padding == 4
    assert GroupNormConfig().sync is False
    vi = VideoInfinityConfig()
    assert (vi.edge_mode, vi.num_clips) == ("exact", None)
    assert vi.with_num_clips(8).num_clips == 8 and vi.num_clips is None
    cfg = load_config(_minimal(), check_paths=False)
    assert cfg.pipe == PipeConfig(prompts=("a cat",))
    assert cfg.pipe.prompts == ("a cat",)
    assert (cfg.pipe.steps, cfg.pipe.guidance_scale, cfg.pipe.fps, cfg.pipe.num_frames) == (30, 12.0, 24, 24)
    assert (cfg.pipe.height, cfg.pipe.width, cfg.pipe.export_fps) == (320, 512, 8)
    assert (cfg.pipe.file_name, cfg.pipe.negative_prompt, cfg.pipe.scheduler) == (None, "", "auto")
    assert cfg.video_infinity == vi
    assert (cfg.dtype, cfg.devices, cfg.seed, cfg.base_path) == ("auto", None, 123, "./exp")
    assert (cfg.save_frames, cfg.master_port, cfg.source) == (None, None, None)
    assert cfg.distributed == DistributedConfig(None, None, None)


@pytest.mark.parametrize("phase", ["local_phase", "global_phase"])
@pytest.mark.parametrize("missing", ["t", "local_biase", "global_biase"])
def test_phase_object_missing_a_key_is_an_error(phase, missing):
    """The released code reads all three keys of a phase; a silent default (t=800) would be a guess."""
    full = {"t": 700, "local_biase": 10, "global_biase": 0}
    del full[missing]
    with pytest.raises(ConfigError, match=rf"^plugin_configs\.attn\.{phase}\.{missing}: missing required key"):
        load_config(_minimal(plugin_configs={"attn": {phase: full}}), check_paths=False)


def test_null_phase_disables_it():
    cfg = load_config(_minimal(plugin_configs={"attn": {"global_phase": None}}), check_paths=False)
    assert cfg.video_infinity.attn.local_phase == Phase(800, 10.0, 0.0)
    assert cfg.video_infinity.attn.global_phase is None


def test_configs_are_hashable_static_jit_arguments():
    import jax
    import jax.numpy as jnp

    a = load_config(ORIGINAL / "config.json", TINY)
    b = load_config(_original("config"), TINY, check_paths=False)
    assert a == b and hash(a) == hash(b)  # source and raw do not take part
    assert a != load_config(_original("config"), TINY + ["seed=7"], check_paths=False)
    f = jax.jit(lambda x, cfg: x * cfg.video_infinity.global_rows(cfg.pipe.num_frames, 4), static_argnums=1)
    assert float(f(jnp.float32(2.0), a)) == 32.0


def test_to_dict_round_trips_and_is_the_sidecar():
    cfg = load_config(ORIGINAL / "multi_prompts.json",
                      TINY + ["num_clips=16", "edge_mode=zeros", "plugin_configs.group_norm.sync=true"])
    d = to_dict(cfg)
    assert cfg.raw == d
    assert d["dtype"] == "float16" and d["devices"] == list(range(8))
    assert d["plugin_configs"]["attn"]["local_phase"] == {"t": 850, "local_biase": 10.0, "global_biase": 0.0}
    assert "top_k_chunk_size" not in d["plugin_configs"]["attn"] and "conv_3d" not in d["plugin_configs"]
    again = load_config(json.loads(json.dumps(d)), check_paths=False)
    assert again == cfg and to_dict(again) == d


def test_dtype_spellings():
    for spelling, expected in [("torch.float16", "float16"), ("fp16", "float16"), ("float16", "float16"),
                               ("torch.bfloat16", "bfloat16"), ("bf16", "bfloat16"), ("bfloat16", "bfloat16"),
                               ("torch.float32", "float32"), ("fp32", "float32"), ("float32", "float32"),
                               ("auto", "auto"), (" Float32 ", "float32")]:
        assert normalize_dtype(spelling) == expected
        assert load_config(_minimal(dtype=spelling), check_paths=False).dtype == expected


def test_dtype_objects_and_the_one_vocabulary_everywhere():
    """numpy / jax dtype objects and scalar types name the same dtypes as the strings; the CLI
    config, from_pretrained and load_unet share normalize_dtype, so they accept the same set."""
    import jax.numpy as jnp
    import ml_dtypes
    import numpy as np

    from vinf_jax.config import compute_dtype

    for obj, expected in [(np.float32, "float32"), (np.dtype("float32"), "float32"), (jnp.float32, "float32"),
                          (jnp.dtype("float32"), "float32"), (np.float16, "float16"), (jnp.float16, "float16"),
                          (np.dtype("float16"), "float16"), (jnp.bfloat16, "bfloat16"),
                          (jnp.dtype(jnp.bfloat16), "bfloat16"), (ml_dtypes.bfloat16, "bfloat16")]:
        assert normalize_dtype(obj) == expected, obj
    for bad in [np.float64, np.dtype("int8"), jnp.int32, 16, None, True, "float64", object()]:
        with pytest.raises(ConfigError, match="^dtype: expected one of"):
            normalize_dtype(bad)



# every spelling of the vocabulary, and what it computes on each platform (config/dtypes.py): a name is
# honoured everywhere; auto is the released code's float16 on GPUs, bfloat16 on TPUs, float32 on CPUs
SPELLINGS = {"auto": "auto", "torch.float16": "float16", "fp16": "float16", "float16": "float16", "half": "float16",
             "torch.bfloat16": "bfloat16", "bf16": "bfloat16", "bfloat16": "bfloat16", "torch.float32": "float32",
             "fp32": "float32", "float32": "float32", "float": "float32", " Torch.Float16 ": "float16"}
AUTO = {"cpu": "float32", "gpu": "float16", "cuda": "float16", "rocm": "float16", "tpu": "bfloat16"}


@pytest.mark.parametrize("platform", list(AUTO))
def test_every_dtype_spelling_computes_as_documented(platform):
    import warnings

    from vinf_jax.config import compute_dtype

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "computing in ... instead" warning any more: what is named runs
        for spelling, name in SPELLINGS.items():
            assert compute_dtype(spelling, platform) == (AUTO[platform] if name == "auto" else name), spelling


def test_config_package_does_not_import_jax():
    """The CLI validates a config before any device work: no module of the config layer (nor the
    device planner) imports jax, flax, numpy or torch."""
    files = sorted(Path(config_module.__file__).parent.glob("*.py"))
    files.append(Path(config_module.__file__).parents[1] / "parallel" / "devices.py")
    imported = set()
    for file in files:
        for node in ast.walk(ast.parse(file.read_text())):
            if isinstance(node, ast.Import):
                imported |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom):
                imported.add((node.module or "").split(".")[0])
    assert len(files) >= 7
    assert not imported & {"jax", "jaxlib", "flax", "numpy", "torch"}, imported


# ----------------------------------------------------------------------------- overrides

def test_overrides():
    cfg = load_config(ORIGINAL / "config.json", [
        "model=tiny-random", "pipe_configs.steps=2", "plugin_configs.attn.top_k=4", "num_clips=8",
        "plugin_configs.attn.local_phase.t=900", 'pipe_configs.prompts=["x", "y"]', "pipe_configs.file_name=out",
        "base_path=./other", "devices=2", "dtype=bf16", "pipe_configs.guidance_scale=7.5", "save_frames=npy",
        "distributed.num_processes=2", "plugin_configs.conv_layer.padding=0",
    ])
    assert cfg.pipe.steps == 2 and cfg.video_infinity.attn.top_k == 4 and cfg.video_infinity.num_clips == 8
    assert cfg.video_infinity.attn.local_phase == Phase(900, 10.0, 0.0)
    assert cfg.pipe.prompts == ("x", "y") and cfg.pipe.file_name == "out" and cfg.base_path == "./other"
    assert (cfg.devices, cfg.dtype, cfg.pipe.guidance_scale, cfg.save_frames) == (2, "bfloat16", 7.5, "npy")
    assert cfg.distributed.num_processes == 2 and cfg.video_infinity.conv_layer.padding == 0
    # A section override replaces the section; null resets a value to "auto".
    cfg = load_config(_minimal(num_clips=4), ["plugin_configs.attn={\"top_k\": 0}", "num_clips=null"],
                      check_paths=False)
    assert cfg.video_infinity.attn == AttnConfig(top_k=0) and cfg.video_infinity.num_clips is None


@pytest.mark.parametrize("item, path, hint", [
    ("pipe_configs.stepz=2", "pipe_configs.stepz", "pipe_configs.steps"),
    ("steps=2", "steps", "pipe_configs.steps"),
    ("plugin_configs.attn.topk=4", "plugin_configs.attn.topk", "plugin_configs.attn.top_k"),
    ("modle=tiny-random", "modle", "model"),
])
def test_unknown_override_keys_fail(item, path, hint):
    with pytest.raises(ConfigError, match=re.escape(f"unknown key {path}") + ".*did you mean.*" + re.escape(hint)):
        load_config(ORIGINAL / "config.json", TINY + [item])


def test_override_without_equals_fails():
    with pytest.raises(ConfigError, match="pipe_configs.steps"):
        load_config(ORIGINAL / "config.json", TINY + ["pipe_configs.steps"])


# ----------------------------------------------------------------------------- clip striding (docs/method.md §5.1)

@pytest.mark.parametrize("frames, clips, top_k, indices, rows", [
    (24, 8, 16, (0, 12), 16),
    (24, 3, 16, (0, 4, 8, 12, 16, 20), 16),
    (24, 4, 2, (0,), 2),
    (24, 1, 16, tuple(range(24)), 16),
    (24, 4, 0, (0,), 0),
    (4, 2, 16, (0, 1, 2, 3), 8),  # stride clamps to 1; G is cut by what exists
])
def test_shared_frames_and_global_rows(frames, clips, top_k, indices, rows):
    vi = VideoInfinityConfig(attn=AttnConfig(top_k=top_k))
    assert vi.shared_frames(frames, clips) == indices
    assert vi.global_rows(frames, clips) == rows


# ----------------------------------------------------------------------------- devices

@pytest.mark.parametrize("overrides, available, expected", [
    ([], 8, 4),                         # devices [0,1,2,3]
    (["num_clips=8"], 4, 4),            # two clips per device
    (["devices=null"], 8, 8),           # num_clips unset: all available, one clip each
    (["devices=2", "num_clips=6"], 2, 2),
    (["devices=[5]", "num_clips=3"], 6, 1),
    # devices unset: the most available devices that divide the clips evenly
    (["devices=null", "num_clips=8"], 8, 8),
    (["devices=null", "num_clips=8"], 3, 2),
    (["devices=null", "num_clips=8"], 1, 1),
    (["devices=null", "num_clips=6"], 8, 6),
    (["devices=null", "num_clips=2"], 8, 2),
    (["devices=null", "num_clips=7"], 4, 1),
    (["devices=null", "num_clips=12"], 8, 6),
])
def test_plan_devices(overrides, available, expected):
    cfg = load_config(ORIGINAL / "config.json", TINY + overrides)
    plan = plan_devices(cfg.devices, cfg.video_infinity.num_clips, available)
    assert plan.count == expected
    assert str(expected) in plan.reason


def test_plan_devices_says_why_it_uses_fewer():
    plan = plan_devices(None, 8, 3)
    assert plan.reason == "2 of 3 devices: the most that divide 8 clips evenly (4 clip(s) each)"


@pytest.mark.parametrize("overrides, available, pattern", [
    ([], 2, r"devices: GPU ids \[2, 3\] do not exist; 2 devices"),
    (["devices=16"], 8, r"devices: 16 devices requested but only 8 exist"),
    ([], 0, r"devices: no accelerator devices"),
    (["num_clips=6"], 8, r"num_clips: 6 clips .* D=4 .*num_clips in \[4, 8, 12\].*D in \[1, 2, 3, 6\]"),
    (["num_clips=2", "devices=8"], 8, r"num_clips: 2 clips .* D=8 .*\[8, 16, 24\].*D in \[1, 2\]"),
])
def test_plan_devices_errors(overrides, available, pattern):
    cfg = load_config(ORIGINAL / "config.json", TINY + overrides)
    with pytest.raises(ConfigError, match=pattern):
        plan_devices(cfg.devices, cfg.video_infinity.num_clips, available)


# ----------------------------------------------------------------------------- distributed

def test_distributed_from_environment(monkeypatch):
    monkeypatch.setenv("JAX_COORDINATOR_ADDRESS", "10.0.0.1:1234")
    monkeypatch.setenv("JAX_NUM_PROCESSES", "2")
    monkeypatch.setenv("JAX_PROCESS_ID", "1")
    assert load_config(_minimal(), check_paths=False).distributed == DistributedConfig("10.0.0.1:1234", 2, 1)
    cfg = load_config(_minimal(distributed={"num_processes": 4, "process_id": 3}), check_paths=False)
    assert cfg.distributed == DistributedConfig("10.0.0.1:1234", 4, 3)  # the file wins over the environment
    monkeypatch.setenv("JAX_NUM_PROCESSES", "two")
    with pytest.raises(ConfigError, match="distributed.num_processes: environment variable JAX_NUM_PROCESSES"):
        load_config(_minimal(), check_paths=False)


# ----------------------------------------------------------------------------- files and paths

def test_file_errors(tmp_path):
    with pytest.raises(ConfigError, match="nope.json: config file not found"):
        load_config(tmp_path / "nope.json")
    bad = tmp_path / "bad.json"
    bad.write_text('{\n  "model": "tiny-random",\n  "seed": 1,,\n}\n')
    with pytest.raises(ConfigError, match=r"bad\.json: invalid JSON at line 3"):
        load_config(bad)
    bad.write_text("[1, 2]")
    with pytest.raises(ConfigError, match=r"bad\.json: expected a JSON object"):
        load_config(bad)
    bad.write_text('{"seed": 1, "seed": 2}')
    with pytest.raises(ConfigError, match=r"bad\.json: key 'seed' appears twice"):
        load_config(bad)


def test_model_folder_check(tmp_path):
    folder = tmp_path / "ckpt"
    with pytest.raises(ConfigError, match=r"model: .*ckpt.* does not exist.*convert\.videocrafter2 --unet"):
        load_config(_minimal(model=str(folder)))
    folder.mkdir()
    with pytest.raises(ConfigError, match=r"model: folder .*ckpt.* has no vinf_jax_checkpoint\.json.*--out"):
        load_config(_minimal(model=str(folder)))
    (folder / "vinf_jax_checkpoint.json").write_text("{}")
    assert load_config(_minimal(model=str(folder))).model == str(folder)
    assert load_config(_minimal(model=str(tmp_path / "x")), check_paths=False).model == str(tmp_path / "x")


def test_base_path_check(tmp_path):
    (tmp_path / "afile").write_text("")
    with pytest.raises(ConfigError, match=r"base_path: .*afile/out.*afile exists and is not a folder"):
        load_config(_minimal(base_path=str(tmp_path / "afile" / "out")))
    assert load_config(_minimal(base_path=str(tmp_path / "new" / "deeper"))).base_path.endswith("deeper")
    assert not (tmp_path / "new").exists()
    if os.geteuid() != 0:
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
    else:  # root may write to any mode-0500 folder, but not into a process's /proc entry
        locked = Path("/proc/1")
        assert locked.is_dir() and not os.access(locked, os.W_OK)
    with pytest.raises(ConfigError, match=r"base_path: .*(locked|proc/1).* is not writable"):
        load_config(_minimal(base_path=str(locked / "out")))


# ----------------------------------------------------------------------------- bad values

def _set_path(data, dotted, value):
    node = data
    *parents, last = dotted.split(".")
    for part in parents:
        node = node.setdefault(part, {})
    node[last] = value


BAD = [  # (key path set in the original config.json, bad value, path the message must name)
    ("pipe_configs.height", 321, "pipe_configs.height"),
    ("pipe_configs.width", 0, "pipe_configs.width"),
    ("pipe_configs.width", 512.0, "pipe_configs.width"),
    ("pipe_configs.num_frames", 0, "pipe_configs.num_frames"),
    ("pipe_configs.steps", 0, "pipe_configs.steps"),
    ("pipe_configs.steps", True, "pipe_configs.steps"),  # bool is not an int
    ("pipe_configs.fps", 0, "pipe_configs.fps"),
    ("pipe_configs.export_fps", -8, "pipe_configs.export_fps"),
    ("pipe_configs.guidance_scale", "high", "pipe_configs.guidance_scale"),
    ("pipe_configs.guidance_scale", float("nan"), "pipe_configs.guidance_scale"),
    ("pipe_configs.prompts", [], "pipe_configs.prompts"),
    ("pipe_configs.prompts", "a cat", "pipe_configs.prompts"),
    ("pipe_configs.prompts", ["a cat", 7], "pipe_configs.prompts[1]"),
    ("pipe_configs.scheduler", "euler", "pipe_configs.scheduler"),
    ("pipe_configs.file_name", "", "pipe_configs.file_name"),
    ("pipe_configs.stepz", 2, "pipe_configs.stepz"),
    ("pipe_configs", "x", "pipe_configs"),
    ("plugin_configs.attn.padding", 25, "plugin_configs.attn.padding"),  # > num_frames
    ("plugin_configs.attn.padding", -1, "plugin_configs.attn.padding"),
    ("plugin_configs.attn.top_k", -1, "plugin_configs.attn.top_k"),
    ("plugin_configs.attn.topk", 16, "plugin_configs.attn.topk"),
    ("plugin_configs.attn.attn_scale", None, "plugin_configs.attn.attn_scale"),
    ("plugin_configs.attn.token_num_scale", 1, "plugin_configs.attn.token_num_scale"),
    ("plugin_configs.attn.dynamic_scale", "true", "plugin_configs.attn.dynamic_scale"),
    ("plugin_configs.attn.local_phase", 5, "plugin_configs.attn.local_phase"),
    ("plugin_configs.attn.local_phase.t", -5, "plugin_configs.attn.local_phase.t"),
    ("plugin_configs.attn.global_phase.t", 800.5, "plugin_configs.attn.global_phase.t"),
    ("plugin_configs.attn.global_phase.local_biase", "x", "plugin_configs.attn.global_phase.local_biase"),
    ("plugin_configs.attn.global_phase.extra", 1, "plugin_configs.attn.global_phase.extra"),
    ("plugin_configs.conv_layer.padding", 30, "plugin_configs.conv_layer.padding"),  # > num_frames
    ("plugin_configs.conv_layer.padding", -1, "plugin_configs.conv_layer.padding"),
    ("plugin_configs.conv_3d.paddin", 1, "plugin_configs.conv_3d.paddin"),
    ("plugin_configs.group_norm.sync", "yes", "plugin_configs.group_norm.sync"),
    ("plugin_configs.resnet", {}, "plugin_configs.resnet"),
    ("num_clips", 0, "num_clips"),
    ("num_clips", 2.0, "num_clips"),
    ("edge_mode", "reflect", "edge_mode"),
    ("dtype", "torch.float64", "dtype"),
    ("dtype", 16, "dtype"),
    ("save_frames", "png", "save_frames"),
    ("devices", [0, 0], "devices"),
    ("devices", 0, "devices"),
    ("devices", [], "devices"),
    ("devices", [-1], "devices[0]"),
    ("devices", "0,1", "devices"),
    ("seed", -1, "seed"),
    ("seed", "123", "seed"),
    ("master_port", "29516", "master_port"),
    ("base_path", "", "base_path"),
    ("model", "", "model"),
    ("model", None, "model"),
    ("distributed.num_processes", 0, "distributed.num_processes"),
    ("distributed.process_id", "1", "distributed.process_id"),
    ("distributed.coordinator_address", 1234, "distributed.coordinator_address"),
    ("distributed.port", 1, "distributed.port"),
    ("gpus", [0], "gpus"),
]


@pytest.mark.parametrize("key, value, path", BAD, ids=[f"{k}={v!r}" for k, v, _ in BAD])
def test_bad_values_name_the_key(key, value, path):
    data = copy.deepcopy(_original("config"))
    data["model"] = "tiny-random"
    _set_path(data, key, value)
    with pytest.raises(ConfigError) as info:
        load_config(data, check_paths=False)
    message = str(info.value)
    assert message.startswith(path + ":"), message
    assert "unknown key" in message or "expected" in message, message


def test_unknown_key_messages_suggest_the_right_key():
    data = _minimal()
    data["pipe_configs"]["guidance"] = 3
    with pytest.raises(ConfigError, match=r"did you mean pipe_configs\.guidance_scale\?"):
        load_config(data, check_paths=False)


def test_cross_field_messages_say_what_is_allowed():
    with pytest.raises(ConfigError, match=r"plugin_configs\.attn\.padding: expected an integer in 0\.\.4 .*got 8"):
        load_config(ORIGINAL / "config.json", TINY + ["pipe_configs.num_frames=4"])
    with pytest.raises(ConfigError, match=r"distributed\.process_id: expected an integer in 0\.\.1"):
        load_config(_minimal(distributed={"num_processes": 2, "process_id": 2}), check_paths=False)
    with pytest.raises(ConfigError, match=r"num_clips: expected an integer >= 1"):
        VideoInfinityConfig().with_num_clips(0)


def test_from_plugin_configs():
    vi = VideoInfinityConfig.from_plugin_configs(_original("single_gpu")["plugin_configs"], edge_mode="zeros",
                                                 num_clips=4)
    assert vi == VideoInfinityConfig(edge_mode="zeros", num_clips=4)
    assert VideoInfinityConfig.from_plugin_configs(None) == VideoInfinityConfig()
    with pytest.raises(ConfigError, match=r"^plugin_configs\.conv_layer\.padding: expected an integer in 0\.\.2"):
        VideoInfinityConfig.from_plugin_configs({"attn": {"padding": 2}, "conv_layer": {"padding": 3}}, num_frames=2)
