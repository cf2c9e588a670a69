"""Helpers shared by the benchmark scripts: model configs, random weights made on the device,
timing, environment facts and JSON output.

Nothing in ``vinf_jax`` imports this package; the scripts import ``vinf_jax`` like a user would.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
REFERENCE_JSON = REPO / "tests" / "data" / "videocrafter2_full.json"
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

# Full-size configs (diffusers form) and the reference forward cost (torch FlopCounterMode on the
# diffusers module, batch 1, 40x64 latents: TFLOP per frame count), from the repository's data file.
_REFERENCE = json.loads(REFERENCE_JSON.read_text())
FULL_UNET = _REFERENCE["unet"]
FULL_VAE = _REFERENCE["vae"]
REFERENCE_TFLOP_BATCH1 = {int(k): v for k, v in _REFERENCE["reference_tflop_batch1"].items()}

# Tiny configs of the same architecture (all four block types) for CPU smoke runs.
SMALL_UNET = {
    "in_channels": 4, "out_channels": 4,
    "down_block_types": ["CrossAttnDownBlock3D", "CrossAttnDownBlock3D", "CrossAttnDownBlock3D", "DownBlock3D"],
    "up_block_types": ["UpBlock3D", "CrossAttnUpBlock3D", "CrossAttnUpBlock3D", "CrossAttnUpBlock3D"],
    "block_out_channels": [32, 64, 64, 64], "layers_per_block": 1, "norm_num_groups": 8,
    "attention_head_dim": 8, "cross_attention_dim": 32, "num_attention_heads": None, "fps_cond": True,
}
SMALL_VAE = {
    "in_channels": 3, "out_channels": 3, "latent_channels": 4, "block_out_channels": [16, 16, 32, 32],
    "up_block_types": ["UpDecoderBlock2D"] * 4, "layers_per_block": 1, "norm_num_groups": 8,
    "scaling_factor": 0.18215,
}


def unet_dict(small: bool) -> dict:
    return dict(SMALL_UNET if small else FULL_UNET)


def vae_dict(small: bool) -> dict:
    return dict(SMALL_VAE if small else FULL_VAE)


def virtual_cpu_devices(n: int) -> None:
    """Run on ``n`` virtual CPU devices; must be called before jax is imported."""
    assert "jax" not in sys.modules, "virtual_cpu_devices must run before jax is imported"
    os.environ["XLA_FLAGS"] = " ".join(
        [f for f in os.environ.get("XLA_FLAGS", "").split() if "xla_force_host_platform_device_count" not in f]
        + [f"--xla_force_host_platform_device_count={n}"])
    os.environ["JAX_PLATFORMS"] = "cpu"


# --------------------------------------------------------------------------- random weights (JAX)
def random_params_on_device(abstract, dtype, seed: int = 0, sharding=None, host_limit: int = 50_000_000):
    """A random tree shaped like ``abstract`` (ShapeDtypeStructs), with ``vinf_jax.random_init``'s rule
    (norm scales ~ 1 + N(0, .1)), drawn on the device leaf by leaf: full-size trees never pass
    through host memory. One small jitted draw per distinct (shape, name): a single jit returning all
    ~1500 leaves takes minutes to compile on the CPU. Trees of at most ``host_limit`` elements (the
    small configs) are drawn with numpy on the host instead, which is faster still.
    """
    import functools

    import jax
    import jax.numpy as jnp
    import numpy as np

    from vinf_jax.random_init import random_params, scale_leaf

    total = sum(int(np.prod(leaf.shape)) for leaf in jax.tree.leaves(abstract))
    if total <= host_limit:  # small models: numpy on the host is faster than ~40 small compiles
        host = random_params(abstract, seed, scale_std=0.1)
        return jax.tree.map(lambda v: jax.device_put(v.astype(jnp.dtype(dtype)), sharding), host)

    paths_leaves, treedef = jax.tree_util.tree_flatten_with_path(abstract)
    kw = {} if sharding is None else {"out_shardings": sharding}

    @functools.partial(jax.jit, static_argnums=(2, 3), **kw)
    def draw(key, index, shape, name):
        z = jax.random.normal(jax.random.fold_in(key, index), shape, jnp.float32)
        return scale_leaf(name, shape, z, scale_std=0.1).astype(dtype)

    key = jax.random.key(seed, impl="rbg")  # RngBitGenerator: compiles far faster than threefry on the CPU
    out = []
    for i, (path, leaf) in enumerate(paths_leaves):
        last = path[-1]
        out.append(draw(key, i, tuple(leaf.shape), str(getattr(last, "key", getattr(last, "name", last)))))
    return jax.tree_util.tree_unflatten(treedef, out)


def tree_bytes(tree) -> int:
    import jax

    return int(sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(tree)))


# --------------------------------------------------------------------------- timing
def time_jax(fn, args, steps: int, warmup: int) -> dict:
    """Median wall time of ``fn(*args)`` over ``steps`` calls, each waited for with block_until_ready.

    Also ``ms_pipelined``: ``steps`` calls issued back to back and waited for once, per call, which
    hides the host's dispatch (flattening ~1,500 parameter leaves) behind the device's work, as
    the compiled denoising loop does.
    """
    import jax

    for _ in range(warmup):
        jax.block_until_ready(fn(*args))
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append((time.perf_counter() - t0) * 1e3)
    t0 = time.perf_counter()
    outs = [fn(*args) for _ in range(steps)]
    jax.block_until_ready(outs)
    pipelined = (time.perf_counter() - t0) * 1e3 / steps
    del outs
    return {**summarize(times), "ms_pipelined": pipelined}


def summarize(times_ms: list[float]) -> dict:
    return {"ms": statistics.median(times_ms), "ms_min": min(times_ms), "ms_max": max(times_ms),
            "n": len(times_ms), "all_ms": [round(t, 3) for t in times_ms]}


def cost_flops(compiled) -> float | None:
    """FLOPs of a compiled XLA program from its cost analysis (dict, or list of dicts in older jax)."""
    try:
        ca = compiled.cost_analysis()
    except Exception:  # noqa: BLE001 - some backends do not implement it
        return None
    if isinstance(ca, (list, tuple)):
        ca = ca[0] if ca else None
    if not ca or "flops" not in ca:
        return None
    return float(ca["flops"])


def memory_analysis(compiled) -> dict | None:
    """Bytes XLA assigned to a compiled program (arguments, outputs, temporaries)."""
    try:
        m = compiled.memory_analysis()
    except Exception:  # noqa: BLE001
        return None
    if m is None:
        return None
    keys = ("argument_size_in_bytes", "output_size_in_bytes", "temp_size_in_bytes",
            "alias_size_in_bytes", "generated_code_size_in_bytes")
    out = {k: int(getattr(m, k)) for k in keys if hasattr(m, k)}
    out["total_bytes"] = (out.get("argument_size_in_bytes", 0) + out.get("output_size_in_bytes", 0)
                          + out.get("temp_size_in_bytes", 0) - out.get("alias_size_in_bytes", 0))
    return out


def device_memory(device) -> dict:
    try:
        stats = device.memory_stats() or {}
    except Exception:  # noqa: BLE001
        stats = {}
    return {k: int(stats[k]) for k in ("peak_bytes_in_use", "bytes_in_use", "bytes_limit") if k in stats}


def matmul_peak_jax(n: int, reps: int = 20, dtype_name: str = "bfloat16") -> dict:
    """TFLOP/s of an n x n x n matmul in JAX on the default device (random operands), from the
    better of the median synchronised call and back-to-back calls (one matmul is ~1.5 ms on an
    H100: a per-call sync would cost a few percent)."""
    import jax
    import jax.numpy as jnp

    dtype = jnp.dtype(dtype_name)
    ka, kb = jax.random.split(jax.random.key(1))
    a = jax.random.normal(ka, (n, n), dtype)
    b = jax.random.normal(kb, (n, n), dtype)
    f = jax.jit(lambda x, y: x @ y)
    t = time_jax(f, (a, b), steps=reps, warmup=3)
    flops = 2.0 * n ** 3
    del a, b
    ms = min(t["ms"], t["ms_pipelined"])
    return {"n": n, "dtype": dtype_name, "ms": ms, "ms_synced_median": t["ms"], "ms_pipelined": t["ms_pipelined"],
            "tflops": flops / (ms * 1e-3) / 1e12}


# --------------------------------------------------------------------------- environment, output
def env_info() -> dict:
    info = {"date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "python": platform.python_version(), "host": platform.node(), "machine": platform.machine()}
    for mod in ("jax", "jaxlib", "flax", "torch", "diffusers", "numpy"):
        m = sys.modules.get(mod)
        if m is not None:
            info[mod] = getattr(m, "__version__", "?")
    try:
        import jax

        d = jax.devices()[0]
        info["jax_backend"] = jax.default_backend()
        info["jax_device"] = getattr(d, "device_kind", str(d))
        info["jax_device_count"] = jax.device_count()
    except Exception:  # noqa: BLE001
        pass
    return info


def repo_relative(path: str | os.PathLike) -> str:
    """``path`` relative to the repository when inside it, else as given: results carry no machine paths."""
    full = Path(path).resolve()
    return str(full.relative_to(REPO)) if full.is_relative_to(REPO) else str(path)


def write_json(path: str | os.PathLike | None, data: dict) -> None:
    """Write ``data`` atomically (``vinf_jax.output.jsonfile``); no path, no file."""
    if path:
        from vinf_jax.output.jsonfile import write_json as write

        write(path, data)


def fmt_bytes(n: float | None) -> str:
    if n is None:
        return "-"
    for unit, scale in (("GiB", 2 ** 30), ("MiB", 2 ** 20), ("KiB", 2 ** 10)):
        if abs(n) >= scale:
            return f"{n / scale:.2f} {unit}"
    return f"{int(n)} B"
