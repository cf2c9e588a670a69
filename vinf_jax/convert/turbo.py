"""T2V-Turbo's published UNets on top of VideoCrafter2's LVDM checkpoint (method §12.4).

    python -m convert.videocrafter2 --lvdm model.ckpt --lvdm-unet unet_mg.pt --out OUT     (T2V-Turbo-v2)
    python -m convert.videocrafter2 --lvdm model.ckpt --lora unet_lora.pt --out OUT        (T2V-Turbo v1, VC2)

- **v2** (``unet_mg.pt``, ``unet_no_mg.pt``): ``torch.save(UNetModel.state_dict())``: VideoCrafter2's UNet keys
  without the ``model.diffusion_model.`` prefix, plus ``time_cond_proj.weight`` [320, 256] and, for a UNet built
  with ``motion_cond_proj_dim``, ``motion_cond_proj.weight`` [320, 256] and ``combine_proj.weight`` [320, 640].
  It replaces the checkpoint's UNet; the VAE, text encoder and schedule stay VideoCrafter2's. The kind is read
  from the keys: with the motion projections ``v2-mg``, without ``v2``.
- **v1** (``unet_lora.pt``): a bare list ``[up, down, up, down, ...]``, one pair per ``nn.Linear``, ``nn.Conv2d``
  and ``nn.Conv3d`` of ``UNetModel.named_modules()`` (``time_cond_proj`` included), rank
  ``min(64, in, out)``; merged as ``W += up.flatten(1) @ down.flatten(1)`` (their ``collapse_lora``). Its
  base ``time_cond_proj`` was a random init never published: see :func:`time_cond_proj_init`.

Nothing here executes pickled code: both files are read with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Mapping

import numpy as np

from vinf_jax.errors import ConversionError, VinfWarning

PROJECTIONS = ("time_cond_proj", "motion_cond_proj", "combine_proj")
V1_COND_DIM = 256  # app.py / train_t2v_turbo_v1_lora.py: time_cond_proj_dim 256
# train_t2v_turbo_v1_lora.py's default --seed: the seed of the run whose random base the LoRA was trained on
V1_INIT_SEED = 453645634


class TurboWarning(VinfWarning):
    """A T2V-Turbo conversion caveat (v1's unpublished time_cond_proj base)."""


def load_weights_only(path: str | Path, what: str):
    """``torch.load(path, weights_only=True)``: tensors, lists and dicts only; anything else is refused unrun."""
    path = Path(path)
    if not path.is_file():
        raise ConversionError(f"{what}: {path} does not exist")
    try:
        import torch
    except ImportError:
        raise ConversionError(f"{what}: reading {path} needs torch (pip install torch)") from None
    try:
        return torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as e:  # weights_only refuses code-carrying pickles (UnpicklingError); corrupt files raise others
        raise ConversionError(f"{what}: cannot read {path} without executing code ({type(e).__name__}: "
                              f"{str(e).splitlines()[0] if str(e) else ''})") from None


def _numpy(t) -> np.ndarray:
    import torch

    return (t.float() if t.dtype == torch.bfloat16 else t).numpy()


def read_unet_state(path: str | Path) -> dict[str, np.ndarray]:
    """The bare UNet state dict of a T2V-Turbo-v2 ``unet_*.pt`` as numpy (no prefix)."""
    import torch

    state = load_weights_only(path, "--lvdm-unet")
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ConversionError(f"--lvdm-unet: {path} is not a UNet state dict (a dict of tensors), found "
                              f"{type(state).__name__}")
    return {str(k): _numpy(v) for k, v in state.items()}


def unet_kind(state: Mapping[str, np.ndarray]) -> str | None:
    """``v2-mg`` (guidance + motion projections), ``v2`` (guidance only) or None (a plain VideoCrafter2 UNet)."""
    has = {p for p in PROJECTIONS if f"{p}.weight" in state}
    if not has:
        return None
    if has == {"time_cond_proj"}:
        return "v2"
    if has == set(PROJECTIONS):
        return "v2-mg"
    raise ConversionError(f"--lvdm-unet: holds {', '.join(sorted(p + '.weight' for p in has))} but T2V-Turbo's "
                          "UNet has time_cond_proj alone or all three of time_cond_proj, motion_cond_proj and "
                          "combine_proj")


def cond_dims(state: Mapping[str, np.ndarray]) -> tuple[int | None, int | None]:
    """(time_cond_proj_dim, motion_cond_proj_dim) from the projections' input widths."""
    def width(name):
        w = state.get(f"{name}.weight")
        return None if w is None else (int(w.shape[1]) if np.ndim(w) == 2 else -1)

    t, m = width("time_cond_proj"), width("motion_cond_proj")
    bad = [f"{n}.weight {tuple(np.shape(state[n + '.weight']))}" for n, d in (("time_cond_proj", t),
                                                                              ("motion_cond_proj", m)) if d == -1]
    if bad:
        raise ConversionError(f"--lvdm-unet: {', '.join(bad)} must be 2-D Linear weights (out, in)")
    return t, m


def time_cond_proj_init(out_features: int, in_features: int = V1_COND_DIM, seed: int = V1_INIT_SEED) -> np.ndarray:
    """v1's missing base ``time_cond_proj.weight`` (out, in): ``nn.Linear``'s own init, the one their training
    code drew it from (``kaiming_uniform_(a=sqrt(5))``, i.e. U(−1/sqrt(in), 1/sqrt(in))), from
    ``torch.Generator().manual_seed(seed)`` with their training script's default seed. It cannot be their tensor
    (that draw depended on the whole process's RNG history and was never saved); it is a fixed, reproducible one."""
    import torch

    g = torch.Generator().manual_seed(seed)
    bound = 1.0 / math.sqrt(in_features)
    return torch.empty(out_features, in_features).uniform_(-bound, bound, generator=g).numpy()


# ------------------------------------------------------------------------------------ LoRA (v1)


def lora_targets(p: Mapping, *, time_cond: bool = False, motion_cond: bool = False) -> list[tuple[str, str]]:
    """(openaimodel3d module name, class) of every nn.Linear / nn.Conv2d / nn.Conv3d, in the order of
    ``UNetModel.named_modules()``: attributes in the order ``__init__`` registers them, depth first.

    ``p`` is the yaml's ``unet_config.params`` (with openaimodel3d's defaults). Registration order, from
    ``openaimodel3d.py`` / ``attention.py``: UNetModel: time_embed, fps_embedding, time_cond_proj,
    motion_cond_proj, combine_proj, input_blocks, init_attn, middle_block, output_blocks, out; ResBlock:
    in_layers, emb_layers, out_layers, skip_connection, temopral_conv (conv1..conv4); Spatial/TemporalTransformer:
    norm, proj_in, transformer_blocks, proj_out; BasicTransformerBlock: attn1, ff, attn2 (attn2 after ff).
    Conv1d projections (temporal transformers without ``use_linear``, and ``init_attn`` always) are not targets.
    """
    mc, nrb = int(p["model_channels"]), int(p["num_res_blocks"])
    mult = [int(m) for m in p["channel_mult"]]
    attn_res = {int(a) for a in p["attention_resolutions"]}
    linear = bool(p.get("use_linear", False))
    out: list[tuple[str, str]] = []

    def add(name, cls="Linear"):
        out.append((name, cls))

    def block(prefix):
        for a in ("attn1", "ff", "attn2"):
            if a == "ff":
                add(f"{prefix}.ff.net.0.proj")
                add(f"{prefix}.ff.net.2")
            else:
                for leaf in ("to_q", "to_k", "to_v", "to_out.0"):
                    add(f"{prefix}.{a}.{leaf}")

    def spatial(prefix):
        add(f"{prefix}.proj_in", "Linear" if linear else "Conv2d")
        block(f"{prefix}.transformer_blocks.0")
        add(f"{prefix}.proj_out", "Linear" if linear else "Conv2d")

    def temporal(prefix, use_linear):
        if use_linear:
            add(f"{prefix}.proj_in")
        block(f"{prefix}.transformer_blocks.0")
        if use_linear:
            add(f"{prefix}.proj_out")

    def resblock(prefix, cin, cout):
        add(f"{prefix}.in_layers.2", "Conv2d")
        add(f"{prefix}.emb_layers.1")
        add(f"{prefix}.out_layers.3", "Conv2d")
        if cin != cout:
            add(f"{prefix}.skip_connection", "Conv2d")
        for i in range(1, 5):
            add(f"{prefix}.temopral_conv.conv{i}.{2 if i == 1 else 3}", "Conv3d")

    add("time_embed.0")
    add("time_embed.2")
    if p.get("fps_cond"):
        add("fps_embedding.0")
        add("fps_embedding.2")
    if time_cond:
        add("time_cond_proj")
    if motion_cond:
        add("motion_cond_proj")
        add("combine_proj")
    add("input_blocks.0.0", "Conv2d")
    chans, ch, ds, n = [mc], mc, 1, 1
    for level, m in enumerate(mult):
        for _ in range(nrb):
            resblock(f"input_blocks.{n}.0", ch, m * mc)
            ch = m * mc
            if ds in attn_res:
                spatial(f"input_blocks.{n}.1")
                temporal(f"input_blocks.{n}.2", linear)
            chans.append(ch)
            n += 1
        if level != len(mult) - 1:
            add(f"input_blocks.{n}.0.op", "Conv2d")
            chans.append(ch)
            n, ds = n + 1, ds * 2
    temporal("init_attn.0", False)  # registered after input_blocks, whose later entries were appended
    resblock("middle_block.0", ch, ch)
    spatial("middle_block.1")
    temporal("middle_block.2", linear)
    resblock("middle_block.3", ch, ch)
    n = 0
    for level, m in list(enumerate(mult))[::-1]:
        for i in range(nrb + 1):
            ich = chans.pop()
            resblock(f"output_blocks.{n}.0", ch + ich, m * mc)
            ch = m * mc
            has_attn = ds in attn_res
            if has_attn:
                spatial(f"output_blocks.{n}.1")
                temporal(f"output_blocks.{n}.2", linear)
            if level and i == nrb:
                add(f"output_blocks.{n}.{3 if has_attn else 1}.conv", "Conv2d")
                ds //= 2
            n += 1
    add("out.2", "Conv2d")
    return out


def read_lora(path: str | Path) -> list[np.ndarray]:
    import torch

    loras = load_weights_only(path, "--lora")
    if not isinstance(loras, (list, tuple)) or not all(isinstance(t, torch.Tensor) for t in loras):
        raise ConversionError(f"--lora: {path} is not T2V-Turbo's LoRA file (a list of tensors [up, down, ...]), "
                              f"found {type(loras).__name__}")
    return [_numpy(t) for t in loras]


def merge_lora(unet: Mapping[str, np.ndarray], loras: list[np.ndarray], targets: list[tuple[str, str]],
               prefix: str = "") -> dict[str, np.ndarray]:
    """``unet`` (keys ``prefix + name + '.weight'``) with every pair merged; every problem in one error."""
    if len(loras) != 2 * len(targets):
        raise ConversionError(f"--lora: {len(loras)} tensors, but this UNet has {len(targets)} Linear/Conv2d/Conv3d "
                              f"modules, so T2V-Turbo's LoRA holds {2 * len(targets)} (an up and a down for each)")
    out, problems = dict(unet), []
    for j, (name, cls) in enumerate(targets):
        key = f"{prefix}{name}.weight"
        up, down = loras[2 * j], loras[2 * j + 1]
        if key not in out:
            problems.append(f"{key} (LoRA pair {j}) is not in the base UNet")
            continue
        w = np.asarray(out[key], np.float32)
        r = up.shape[1] if up.ndim >= 2 else -1
        want_up = (w.shape[0], r) + (1,) * (w.ndim - 2)
        want_down = (r, w.shape[1]) + w.shape[2:]
        if r < 1 or r > min(w.shape[0], w.shape[1]) or up.shape != want_up or down.shape != want_down:
            problems.append(f"pair {j} ({name}, {cls} {tuple(w.shape)}): up {tuple(up.shape)}, down "
                            f"{tuple(down.shape)}; expected up (out, r{', 1' * (w.ndim - 2)}) and down (r, in"
                            f"{''.join(f', {k}' for k in w.shape[2:])}) with r <= {min(w.shape[0], w.shape[1])}")
            continue
        delta = up.reshape(up.shape[0], -1).astype(np.float32) @ down.reshape(down.shape[0], -1).astype(np.float32)
        out[key] = w + delta.reshape(w.shape)
    if problems:
        raise ConversionError(f"--lora: {len(problems)} pair(s) do not fit the UNet: " + "; ".join(problems))
    return out


def warn_v1_init(seed: int = V1_INIT_SEED) -> None:
    warnings.warn(
        "T2V-Turbo v1: the base time_cond_proj the LoRA was trained on was never published (their app draws it "
        f"unseeded); it is initialised as nn.Linear does, U(-1/16, 1/16), from torch seed {seed}, and the LoRA is "
        "merged onto that. The guidance embedding therefore differs from the authors' training run, as it does in "
        "their own app; videos are plausible but not theirs (docs/method.md §12.4)", TurboWarning, stacklevel=3)
