"""The benchmark scripts run end to end on tiny models and report sane numbers (CPU, < 60 s).

``benchmarks/unet_step.py --small`` (JAX, and diffusers on the CPU when installed) and
``benchmarks/comm.py --small`` (8 virtual CPU devices, HLO lowered, no weights) run as
subprocesses, as a user runs them; their JSON is checked here.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from benchmarks import common  # noqa: E402


def _env() -> dict:
    """A clean JAX environment: the scripts choose their own device counts."""
    env = dict(os.environ)
    flags = [f for f in env.get("XLA_FLAGS", "").split() if "xla_force_host_platform_device_count" not in f]
    env["XLA_FLAGS"] = " ".join(flags)
    env["JAX_PLATFORMS"] = "cpu"
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def _run(args: list[str], timeout: float) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, *args], cwd=REPO, env=_env(), capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{args} exited {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


def _small_layer_counts() -> tuple[int, int]:
    """Temporal convs and temporal transformers of the small config, counted from diffusers' layout:
    each resnet has a temporal conv; each cross-attention block layer a temporal transformer;
    the mid block 2 convs + 1 transformer; up blocks have layers_per_block + 1 layers; plus transformer_in."""
    cfg = common.SMALL_UNET
    lpb = cfg["layers_per_block"]
    down_cross = sum(t == "CrossAttnDownBlock3D" for t in cfg["down_block_types"])
    up_cross = sum(t == "CrossAttnUpBlock3D" for t in cfg["up_block_types"])
    blocks = len(cfg["block_out_channels"])
    convs = blocks * lpb + 2 + blocks * (lpb + 1)
    transformers = 1 + down_cross * lpb + 1 + up_cross * (lpb + 1)
    return convs, transformers


def test_unet_step_small(tmp_path):
    out = tmp_path / "unet_step.json"
    with_torch = importlib.util.find_spec("torch") is not None and importlib.util.find_spec("diffusers") is not None
    args = ["benchmarks/unet_step.py", "--small", "--steps", "3", "--warmup", "1", "--out", str(out)]
    _run(args if with_torch else args + ["--no-torch"], timeout=600)  # a safety net, not a speed check
    r = json.loads(out.read_text())
    assert r["setup"]["small"] and r["setup"]["video"] == [64, 64]
    (run,) = r["runs"]
    jx = run["jax"]
    assert run["frames"] == 8 and jx["n"] == 3 and jx["finite"]
    assert 0 < jx["ms_min"] <= jx["ms"] <= jx["ms_max"]
    assert jx["frames_per_s"] == pytest.approx(8 / (jx["ms"] * 1e-3))
    assert jx["flops"] > 0 and jx["tflops_per_s"] > 0 and jx["utilisation"] > 0
    assert r["matmul_peak"]["tflops"] > 0
    if with_torch:
        th = run["torch"]
        assert th["ms"] > 0 and th["finite"] and run["ratio_torch_over_jax"] == pytest.approx(th["ms"] / jx["ms"])
        # both columns time the same network: diffusers' UNet3DConditionModel + fps embedding
        assert r["torch"]["params"]["count"] == r["jax_params"]["count"]
        # XLA's count includes elementwise work; torch's counter only matmuls, convs and attention
        assert 0.8 < jx["flops"] / th["flops_torch_counter"] < 1.5


def test_comm_small(tmp_path):
    out = tmp_path / "comm.json"
    _run(["benchmarks/comm.py", "--small", "--step-ms", "100", "--out", str(out)], timeout=600)
    r = json.loads(out.read_text())
    assert r["match"] is True
    m, a = r["measured"], r["analytic"]
    assert m["total"] == a["total"] > 0 and m["dtypes"] == ["bf16"]
    for kind in ("collective-permute", "all-gather", "all-reduce"):
        assert m["bytes"][kind] == a["bytes"][kind]
    convs, transformers = _small_layer_counts()
    assert (a["temporal_convs"], a["temporal_transformers"]) == (convs, transformers)
    # per temporal conv 2 halo ppermutes; per temporal attention (2 per transformer) k and v packed
    # to both neighbours (2) and one all_gather; shipped settings: no group-norm collectives
    assert m["counts"]["collective-permute"] == 2 * convs + 2 * transformers * 2
    assert m["counts"]["all-gather"] == 2 * transformers
    assert m["counts"]["all-reduce"] == 0
    # exchange "inputs": the same collectives; attention sends one row per frame instead of two
    kv, inp = r["schemes"]["kv"], r["schemes"]["inputs"]
    assert inp["match"] is True and inp["measured"]["counts"] == kv["measured"]["counts"]
    conv_bytes = sum(layer["collective-permute"] for layer in r["analytic_layers"] if layer["kind"] == "conv")
    assert kv["bytes_per_step"] - conv_bytes == 2 * (inp["bytes_per_step"] - conv_bytes)
    # 8 clips of 8 frames at 16x16 latents, batch 2, bf16: one conv halo at 16x16x32 is 2*4*256*32*2 bytes
    first_conv = next(layer for layer in r["analytic_layers"] if layer["kind"] == "conv")
    assert first_conv["collective-permute"] == 2 * (2 * 4 * 16 * 16 * 32 * 2)
    nv = r["projection"][0]
    assert nv["comm_ms"] == pytest.approx(m["total"] / 900e9 * 1e3) and nv["fraction_of_step"] == pytest.approx(nv["comm_ms"] / 100)



def test_half_precision_small(tmp_path):
    """float16 vs bfloat16 on the same random weights (the GPU check's dtype question): every dtype
    runs and is timed, and float16 (11 significand bits) is closer to float32 than bfloat16 (8 bits)
    on the UNet's noise prediction and on the decoded frames."""
    out = tmp_path / "half_precision.json"
    _run(["benchmarks/half_precision.py", "--small", "--steps", "1", "--warmup", "0", "--out", str(out)], timeout=600)
    r = json.loads(out.read_text())
    for name in ("float32", "float16", "bfloat16"):
        assert r[name]["finite"] and r[name]["unet"]["ms"] > 0 and r[name]["vae"]["ms"] > 0, r[name]
    for key in ("eps_rel_err", "frames_rel_err"):
        assert 0 < r["float16"][key] < r["bfloat16"][key] < 0.1, (key, r["float16"][key], r["bfloat16"][key])
