#!/usr/bin/env python
"""One guided UNet step (batch 2: classifier-free guidance) of VideoCrafter2, vinf_jax (bf16) next
to diffusers' ``UNet3DConditionModel`` (fp16, SDPA attention), timed in the same run on the same device.

    python benchmarks/unet_step.py --frames 24 48 --out unet_step.json      # full size, GPU
    python benchmarks/unet_step.py --frames 24 --parallel                   # + clip-parallel path on 1 device
    python benchmarks/unet_step.py --small --no-torch                       # tiny UNet, CPU, seconds
    python benchmarks/unet_step.py --parallel --exchange kv inputs --torch-compile   # everything the GPU check times

Weights are random (the speed of a network does not depend on its values): JAX draws them on
the device inside one jit, torch keeps diffusers' own initialisation. Each framework runs in its
own subprocess, one after the other, so neither holds device memory while the other is timed.

Reported per frame count: median ms per step over ``--steps`` timed calls after ``--warmup``,
frames per second (frames denoised by one step per second), XLA's FLOP count of the compiled
step, achieved TFLOP/s and its fraction of a bf16 matmul peak measured in the same run, and peak
device memory (JAX: ``peak_bytes_in_use``, cumulative over the process, frame counts run in
increasing order; torch: ``max_memory_allocated`` reset per frame count).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks import common  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--small", action="store_true", help="tiny UNet at 64x64, 8 frames (CPU smoke run)")
    p.add_argument("--frames", type=int, nargs="+", default=None, help="frame counts (default 24; 8 with --small)")
    p.add_argument("--height", type=int, default=None, help="video height in pixels (default 320; 64 with --small)")
    p.add_argument("--width", type=int, default=None, help="video width in pixels (default 512; 64 with --small)")
    p.add_argument("--steps", type=int, default=10, help="timed steps per measurement (median reported)")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    p.add_argument("--dtype", default="bfloat16", help="JAX compute and parameter dtype (default bfloat16)")
    p.add_argument("--torch-dtype", default=None, help="torch dtype (default float16 on CUDA, float32 on CPU)")
    p.add_argument("--no-torch", action="store_true", help="skip the diffusers column")
    p.add_argument("--parallel", action="store_true",
                   help="also time the clip-parallel UNet on one device (shipped attn settings: padding 8, top_k 16)")
    p.add_argument("--parallel-frames", type=int, nargs="+", default=None,
                   help="with --parallel: only these frame counts (default: all of --frames)")
    p.add_argument("--exchange", nargs="+", choices=("kv", "inputs"), default=["kv"],
                   help="with --parallel: plugin_configs.attn.exchange schemes to time (default kv); kv is "
                        "reported as jax_parallel, inputs as jax_parallel_inputs")
    p.add_argument("--torch-compile", action="store_true",
                   help="also time diffusers' UNet under torch.compile (reported as torch_compile)")
    p.add_argument("--torch-share", type=float, default=None,
                   help="fraction of --budget-s for the torch subprocess (default 1/3; 1/2 with --torch-compile)")
    p.add_argument("--clip-frames", type=int, default=None,
                   help="F of one clip for --parallel (default 24; 8 with --small); frames/F clips when divisible")
    p.add_argument("--flops-only", action="store_true",
                   help="compile from abstract shapes (no weights, nothing run; fine on a CPU for the full model) "
                        "and report XLA's FLOP count and memory analysis only")
    p.add_argument("--matmul-n", type=int, default=None, help="size of the peak-rate matmul (default 8192; 1024 with --small)")
    p.add_argument("--budget-s", type=float, default=1800,
                   help="wall seconds for both subprocesses together: torch (run first, it is quick) gets at "
                        "most a third, JAX the rest; a subprocess past its share is stopped and what it had "
                        "measured is kept")
    p.add_argument("--out", default=None, help="write the merged results as JSON here")
    p.add_argument("--worker", choices=("jax", "torch"), default=None, help=argparse.SUPPRESS)
    p.add_argument("--worker-out", default=None, help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    a.frames = sorted(a.frames or ([8] if a.small else [24]))
    a.height = a.height or (64 if a.small else 320)
    a.width = a.width or (64 if a.small else 512)
    a.clip_frames = a.clip_frames or (8 if a.small else 24)
    a.matmul_n = a.matmul_n or (1024 if a.small else 8192)
    return a


# --------------------------------------------------------------------------- JAX worker
def jax_worker(args) -> None:
    import jax
    import jax.numpy as jnp
    from vinf_jax.config import AttnConfig, VideoInfinityConfig
    from vinf_jax.loading import Model, abstract_params
    from vinf_jax.models.unet3d import UNetConfig
    from vinf_jax.parallel.apply import sharded_unet
    from vinf_jax.parallel.mesh import clip_mesh

    out = {"env": common.env_info(), "runs": {}}
    dev = jax.devices()[0]
    dtype = jnp.dtype(args.dtype)
    cfg = UNetConfig.from_dict(common.unet_dict(args.small))
    if args.flops_only:
        flops_only(args, cfg, dtype, out)
        return
    t0 = time.perf_counter()
    abstract = abstract_params("unet", cfg)
    model = Model("unet", cfg, abstract)
    params = common.random_params_on_device(abstract, dtype, seed=0)
    jax.block_until_ready(params)
    out["params"] = {"count": int(sum(a.size for a in jax.tree.leaves(abstract))), "bytes": common.tree_bytes(params),
                     "build_s": time.perf_counter() - t0}
    out["matmul"] = common.matmul_peak_jax(args.matmul_n)
    common.write_json(args.worker_out, out)

    lh, lw = args.height // 8, args.width // 8
    key = jax.random.key(1)
    ctx1 = jax.random.normal(key, (2, 77, cfg.cross_attention_dim), dtype)
    t = jnp.asarray(500, jnp.int32)
    fps = jnp.full((2,), 24.0, jnp.float32)
    vanilla = jax.jit(lambda p, x, t, c, f: model.module(p)(x, t, c, f))

    def measure(fn, call_args):
        t0 = time.perf_counter()
        lowered = fn.lower(*call_args)
        compiled = lowered.compile()
        compile_s = time.perf_counter() - t0
        y = compiled(*call_args)
        finite = bool(jnp.isfinite(y.astype(jnp.float32)).all())
        del y
        timing = common.time_jax(compiled, call_args, args.steps, args.warmup)
        # The optimised GPU program hides convolutions and attention in cuDNN custom calls that its
        # cost analysis does not count (0.76 of 37.3 TFLOP on an H200): count the lowered program.
        flops = common.cost_flops(lowered) or common.cost_flops(compiled)
        res = {**timing, "compile_s": compile_s, "flops": flops, "flops_compiled": common.cost_flops(compiled),
               "finite": finite,
               "memory_analysis": common.memory_analysis(compiled), **common.device_memory(dev)}
        if flops:
            res["tflops_per_s"] = flops / (timing["ms"] * 1e-3) / 1e12
            res["utilisation"] = res["tflops_per_s"] / out["matmul"]["tflops"]
        return res

    # every vanilla step first (the JAX vs torch comparison), then the clip-parallel ones
    for frames in args.frames:
        x = jax.random.normal(jax.random.fold_in(key, frames), (2, frames, lh, lw, cfg.in_channels), dtype)
        run = {"frames": frames}
        try:
            run["jax"] = measure(vanilla, (params, x, t, ctx1, fps))
            run["jax"]["frames_per_s"] = frames / (run["jax"]["ms"] * 1e-3)
        except Exception as e:  # noqa: BLE001 - an OOM at one size must not lose the others
            run["jax"] = {"error": f"{type(e).__name__}: {str(e)[:400]}"}
        out["runs"][str(frames)] = run
        common.write_json(args.worker_out, out)
        del x
    for frames in args.frames if args.parallel else ():
        if args.parallel_frames is not None and frames not in args.parallel_frames:
            continue
        run = out["runs"][str(frames)]
        x = jax.random.normal(jax.random.fold_in(key, frames), (2, frames, lh, lw, cfg.in_channels), dtype)
        n = frames // args.clip_frames if frames % args.clip_frames == 0 else 1
        mesh = clip_mesh(1)
        ctx = jnp.broadcast_to(ctx1[:, None], (2, n) + ctx1.shape[1:])
        for exchange in args.exchange:
            name = "jax_parallel" if exchange == "kv" else f"jax_parallel_{exchange}"
            # shipped plugin settings: padding 8, top_k 16, conv padding 4
            vi = VideoInfinityConfig(attn=AttnConfig(exchange=exchange), num_clips=n)
            try:
                par = measure(jax.jit(sharded_unet(model, vi, n, mesh)), (params, x, t, ctx, fps))
                par.update(frames_per_s=frames / (par["ms"] * 1e-3), clips=n, clip_frames=frames // n,
                           attn_padding=vi.attn.padding, top_k=vi.attn.top_k, conv_padding=vi.conv_layer.padding,
                           exchange=exchange)
                if run.get("jax", {}).get("ms"):
                    par["ratio_over_vanilla"] = par["ms"] / run["jax"]["ms"]
                run[name] = par
            except Exception as e:  # noqa: BLE001
                run[name] = {"error": f"{type(e).__name__}: {str(e)[:400]}"}
            common.write_json(args.worker_out, out)
        del x


def flops_only(args, cfg, dtype, out) -> None:
    """XLA's FLOPs and bytes of the compiled guided step, from ShapeDtypeStructs alone."""
    import jax
    import jax.numpy as jnp

    from vinf_jax.config import VideoInfinityConfig
    from vinf_jax.loading import Model, abstract_params
    from vinf_jax.parallel.apply import sharded_unet
    from vinf_jax.parallel.mesh import clip_mesh

    abstract = abstract_params("unet", cfg)
    model = Model("unet", cfg, abstract)
    params = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, dtype), abstract)
    out["params"] = {"count": int(sum(a.size for a in jax.tree.leaves(abstract))),
                     "bytes": int(sum(a.size for a in jax.tree.leaves(abstract))) * dtype.itemsize}
    lh, lw = args.height // 8, args.width // 8
    sds = jax.ShapeDtypeStruct
    t, fps = sds((), jnp.int32), sds((2,), jnp.float32)
    vanilla = jax.jit(lambda p, x, t, c, f: model.module(p)(x, t, c, f))
    for frames in args.frames:
        x = sds((2, frames, lh, lw, cfg.in_channels), dtype)
        run = {"frames": frames}
        variants = [("jax", vanilla, sds((2, 77, cfg.cross_attention_dim), dtype))]
        if args.parallel and (args.parallel_frames is None or frames in args.parallel_frames):
            n = frames // args.clip_frames if frames % args.clip_frames == 0 else 1
            variants.append(("jax_parallel", jax.jit(sharded_unet(model, VideoInfinityConfig(num_clips=n), n, clip_mesh(1))),
                             sds((2, n, 77, cfg.cross_attention_dim), dtype)))
        for name, fn, ctx in variants:
            t0 = time.perf_counter()
            compiled = fn.lower(params, x, t, ctx, fps).compile()
            run[name] = {"compile_s": time.perf_counter() - t0, "flops": common.cost_flops(compiled),
                         "memory_analysis": common.memory_analysis(compiled)}
        out["runs"][str(frames)] = run
        common.write_json(args.worker_out, out)


# --------------------------------------------------------------------------- torch worker
def build_torch_unet(unet_cfg: dict, device, dtype):
    """diffusers UNet3DConditionModel + VideoCrafter2's fps conditioning, built directly on ``device``."""
    import inspect

    import torch
    from diffusers import UNet3DConditionModel

    sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests"))
    from unet_refs import FpsUNet  # the same fps hook the parity tests check against diffusers

    accepted = inspect.signature(UNet3DConditionModel.__init__).parameters
    kw = {k: (tuple(v) if isinstance(v, list) else v) for k, v in unet_cfg.items() if k in accepted}

    with torch.device(device):
        model = FpsUNet(UNet3DConditionModel(**kw))
    return model.to(dtype).eval()


def torch_worker(args) -> None:
    out = {"runs": {}}
    try:
        import torch
        import diffusers  # noqa: F401
    except Exception as e:  # noqa: BLE001
        out["skipped"] = f"torch/diffusers unavailable: {type(e).__name__}: {e}"
        common.write_json(args.worker_out, out)
        return
    from torch.utils.flop_counter import FlopCounterMode

    cuda = torch.cuda.is_available()
    device = torch.device("cuda" if cuda else "cpu")
    dtype = getattr(torch, args.torch_dtype or ("float16" if cuda else "float32"))
    out["env"] = common.env_info()
    out["env"].update(torch_device=torch.cuda.get_device_name(0) if cuda else "cpu", torch_dtype=str(dtype),
                      cuda=torch.version.cuda if cuda else None,
                      sdp={k: getattr(torch.backends.cuda, f"{k}_sdp_enabled")() for k in ("flash", "mem_efficient", "math")}
                      if cuda else None)
    torch.manual_seed(0)
    unet_cfg = common.unet_dict(args.small)
    t0 = time.perf_counter()
    model = build_torch_unet(unet_cfg, device, dtype)
    out["params"] = {"count": sum(p.numel() for p in model.parameters()), "build_s": time.perf_counter() - t0}
    try:
        proc = type(model.unet.down_blocks[0].attentions[0].transformer_blocks[0].attn1.processor).__name__
        out["attn_processor"] = proc
    except Exception:  # noqa: BLE001
        pass
    common.write_json(args.worker_out, out)

    lh, lw = args.height // 8, args.width // 8
    ctx = torch.randn(2, 77, unet_cfg["cross_attention_dim"], device=device, dtype=dtype)
    t = torch.tensor(500, device=device)
    fps = torch.tensor([24.0], device=device)

    def sync():
        if cuda:
            torch.cuda.synchronize()

    def timed(fn, x, count_flops: bool) -> dict:
        run = {}
        if cuda:
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
        with torch.inference_mode():
            t0 = time.perf_counter()
            y = fn(x, t, ctx, fps)
            sync()
            run["first_call_s"] = time.perf_counter() - t0  # torch.compile: includes the compile
            run["finite"] = bool(torch.isfinite(y).all())
            del y
            for _ in range(args.warmup):
                fn(x, t, ctx, fps)
            sync()
            times = []
            for _ in range(args.steps):
                if cuda:
                    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                    start.record()
                    fn(x, t, ctx, fps)
                    end.record()
                    end.synchronize()
                    times.append(start.elapsed_time(end))
                else:
                    t0 = time.perf_counter()
                    fn(x, t, ctx, fps)
                    times.append((time.perf_counter() - t0) * 1e3)
            run.update(common.summarize(times))
            t0 = time.perf_counter()  # back to back, one sync: hides the host's launch overhead
            for _ in range(args.steps):
                fn(x, t, ctx, fps)
            sync()
            run["ms_pipelined"] = (time.perf_counter() - t0) * 1e3 / args.steps
            run["frames_per_s"] = x.shape[2] / (run["ms"] * 1e-3)
            if cuda:
                run["peak_bytes_in_use"] = int(torch.cuda.max_memory_allocated())
            if count_flops:
                counter = FlopCounterMode(display=False)
                with counter:
                    fn(x, t, ctx, fps)
                run["flops_torch_counter"] = float(counter.get_total_flops())
        return run

    # eager first for every frame count (the baseline), then torch.compile (its compile can be long)
    variants = [("runs", model, True)]
    if args.torch_compile:
        variants.append(("runs_compile", torch.compile(model), False))
        out["runs_compile"] = {}
    for key, fn, count_flops in variants:
        for frames in args.frames:
            try:
                x = torch.randn(2, unet_cfg["in_channels"], frames, lh, lw, device=device, dtype=dtype)
                run = timed(fn, x, count_flops)
                del x
            except Exception as e:  # noqa: BLE001
                run = {"error": f"{type(e).__name__}: {str(e)[:400]}"}
            out[key][str(frames)] = run
            common.write_json(args.worker_out, out)


# --------------------------------------------------------------------------- parent
def run_worker(kind: str, args, argv: list[str], timeout: float) -> dict:
    fd, path = tempfile.mkstemp(prefix=f"unet_step_{kind}_", suffix=".json")
    os.close(fd)
    cmd = [sys.executable, os.path.abspath(__file__), *argv, "--worker", kind, "--worker-out", path]
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, timeout=timeout)
        status = "ok" if proc.returncode == 0 else f"exit {proc.returncode}"
    except subprocess.TimeoutExpired:
        status = f"stopped after {timeout:.0f} s (--budget-s); partial results kept"
    try:
        with open(path) as fh:
            data = json.load(fh)
    except (OSError, json.JSONDecodeError):
        data = {}
    os.unlink(path)
    data["status"] = status
    data["wall_s"] = time.perf_counter() - t0
    return data


def merge(args, jx: dict, th: dict | None) -> dict:
    matmul = jx.get("matmul", {})
    result = {"benchmark": "unet_step", "command": " ".join(["python"] + [os.path.relpath(sys.argv[0])] + sys.argv[1:]),
              "env": jx.get("env", common.env_info()),
              "setup": {"small": args.small, "video": [args.height, args.width], "latent": [args.height // 8, args.width // 8],
                        "batch": 2, "context": [2, 77, common.unet_dict(args.small)["cross_attention_dim"]],
                        "jax_dtype": args.dtype, "steps": args.steps, "warmup": args.warmup},
              "matmul_peak": matmul, "jax_params": jx.get("params"), "jax_status": jx.get("status"),
              "torch": None if th is None else {k: th.get(k) for k in ("env", "params", "attn_processor", "skipped", "status")},
              "runs": []}
    for frames in args.frames:
        run = dict(jx.get("runs", {}).get(str(frames), {"frames": frames}))
        run["frames"] = frames
        if th is not None and str(frames) in th.get("runs", {}):
            trun = dict(th["runs"][str(frames)])
            flops = run.get("jax", {}).get("flops")
            if flops and trun.get("ms"):
                trun["tflops_per_s_xla_count"] = flops / (trun["ms"] * 1e-3) / 1e12
                if matmul.get("tflops"):
                    trun["utilisation"] = trun["tflops_per_s_xla_count"] / matmul["tflops"]
            run["torch"] = trun
            if trun.get("ms") and run.get("jax", {}).get("ms"):
                run["ratio_torch_over_jax"] = trun["ms"] / run["jax"]["ms"]
        if th is not None and str(frames) in th.get("runs_compile", {}):
            crun = dict(th["runs_compile"][str(frames)])
            run["torch_compile"] = crun
            if crun.get("ms") and run.get("jax", {}).get("ms"):
                run["ratio_torch_compile_over_jax"] = crun["ms"] / run["jax"]["ms"]
        ref = common.REFERENCE_TFLOP_BATCH1.get(frames)
        if ref and not args.small and (args.height, args.width) == (320, 512):
            run["reference_tflop_guided"] = 2 * ref
        result["runs"].append(run)
    return result


def print_table(r: dict) -> None:
    env = r["env"]
    mm = r.get("matmul_peak") or {}
    tenv = (r.get("torch") or {}).get("env") or {}
    print(f"\nUNet step, batch 2 (CFG), {r['setup']['video'][0]}x{r['setup']['video'][1]}; "
          f"JAX {env.get('jax')} on {env.get('jax_device')} ({r['setup']['jax_dtype']})"
          + (f"; torch {tenv.get('torch')} diffusers {tenv.get('diffusers')} on {tenv.get('torch_device')} "
             f"({tenv.get('torch_dtype')})" if tenv else ""))
    if mm:
        print(f"bf16 matmul peak ({mm['n']}^3, JAX): {mm['tflops']:.1f} TFLOP/s")
    skipped = (r.get("torch") or {}).get("skipped")
    if skipped:
        print(f"torch column skipped: {skipped}")
    head = f"{'frames':>6} {'path':<13}{'ms/step':>10}{'piped':>8}{'frames/s':>10}{'TFLOP':>8}{'TFLOP/s':>9}{'util':>7}{'peak mem':>12}{'compile s':>10}"
    print(head)
    for run in r["runs"]:
        for name in ("jax", "jax_parallel", "jax_parallel_inputs", "torch", "torch_compile"):
            m = run.get(name)
            if not m:
                continue
            if "error" in m:
                print(f"{run['frames']:>6} {name:<13}  error: {m['error'][:90]}")
                continue
            if "ms" not in m:  # --flops-only
                ma = m.get("memory_analysis") or {}
                print(f"{run['frames']:>6} {name:<13}{'-':>10}{'-':>8}{'-':>10}{(m.get('flops') or 0) / 1e12:>8.4g}"
                      f"{'':>9}{'':>7}{common.fmt_bytes(ma.get('total_bytes')):>12}{m['compile_s']:>10.1f}"
                      f"   (XLA memory_analysis: args+out+temp)")
                continue
            flops = m.get("flops") or (run.get("jax", {}).get("flops") if name.startswith("torch") else None)
            tfs = m.get("tflops_per_s") or m.get("tflops_per_s_xla_count")
            util = m.get("utilisation")
            print(f"{run['frames']:>6} {name:<13}{m['ms']:>10.2f}{m.get('ms_pipelined', float('nan')):>8.1f}{m['frames_per_s']:>10.1f}"
                  f"{(flops or 0) / 1e12:>8.3g}{(tfs or 0):>9.3g}{(100 * util if util else 0):>6.1f}%"
                  f"{common.fmt_bytes(m.get('peak_bytes_in_use')):>12}"
                  f"{(m.get('compile_s') or m.get('first_call_s') or 0):>10.1f}")
        if run.get("ratio_torch_over_jax"):
            print(f"{'':>6} torch/jax = {run['ratio_torch_over_jax']:.2f}"
                  + (f", torch.compile/jax = {run['ratio_torch_compile_over_jax']:.2f}" if run.get("ratio_torch_compile_over_jax") else "")
                  + (f"; reference count {run['reference_tflop_guided']:.2f} TFLOP" if run.get("reference_tflop_guided") else ""))
        for name in ("jax_parallel", "jax_parallel_inputs"):
            if (run.get(name) or {}).get("ratio_over_vanilla"):
                print(f"{'':>6} {name}/jax = {run[name]['ratio_over_vanilla']:.3f}")


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    if args.worker == "jax":
        jax_worker(args)
        return 0
    if args.worker == "torch":
        torch_worker(args)
        return 0
    pass_on = argv  # the workers ignore --out and write to their own --worker-out
    t0 = time.perf_counter()
    share = args.torch_share or (0.5 if args.torch_compile else 1 / 3)
    th = None if (args.no_torch or args.flops_only) else run_worker("torch", args, pass_on, args.budget_s * share)
    jx = run_worker("jax", args, pass_on, max(args.budget_s - (time.perf_counter() - t0), 10))
    result = merge(args, jx, th)
    common.write_json(args.out, result)
    print_table(result)
    key = "flops" if args.flops_only else "ms"
    ok = all(key in run.get("jax", {}) for run in result["runs"])
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
