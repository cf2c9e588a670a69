"""Convert VideoCrafter2 (diffusers layout) into one vinf_jax checkpoint folder.

    python -m convert.videocrafter2 --unet UNET_DIR --out OUT_DIR

UNET_DIR holds ``config.json`` and ``diffusion_pytorch_model.safetensors`` (or its sharded index).
Every problem (missing keys, unexpected keys, shape mismatches, NaN/inf) is reported at once in a
``ConversionError`` and nothing is written; on success the folder appears atomically.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from convert.mapping import params_from_torch
from convert.safetensors_io import read_weights
from vinf_jax.checkpoint import FORMAT, MARKER, atomic_folder, save_params, write_json
from vinf_jax.errors import ConversionError, VinfError


def _read_config(folder: Path, name: str, what: str) -> dict:
    path = folder / name
    if not path.is_file():
        raise ConversionError(f"{what}: {path} is missing")
    try:
        return json.loads(path.read_text())
    except ValueError as e:
        raise ConversionError(f"{what}: {path} is not valid JSON: {e}") from None


def convert_unet(unet_dir: str | Path, *, allow_pickle: bool = False):
    """(UNetConfig, params) from a diffusers-layout UNet folder (numpy only)."""
    from vinf_jax.loading import unet_from_config
    from vinf_jax.models.unet3d import UNetConfig, unet_rename

    unet_dir = Path(unet_dir)
    if not unet_dir.is_dir():
        raise ConversionError(f"unet: folder {unet_dir} does not exist")
    raw = _read_config(unet_dir, "config.json", "unet")
    tensors = read_weights(unet_dir, "diffusion_pytorch_model", allow_pickle=allow_pickle)
    fps_cond = raw.get("fps_cond")
    if fps_cond is None:  # the VideoCrafter2 port's config may not say; its weights do
        fps_cond = any(k.startswith("fps_embedding.") for k in tensors)
    cfg = UNetConfig.from_dict(raw, fps_cond=bool(fps_cond))
    _, abstract = unet_from_config(cfg)
    params = params_from_torch(abstract, tensors, rename=unet_rename, what=f"unet ({unet_dir})")
    return cfg, params


def _versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for pkg in ("vinf-jax", "jax", "flax", "orbax-checkpoint", "safetensors", "numpy"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            pass
    return out


def convert(unet: str | Path, out: str | Path, *, allow_pickle: bool = False) -> Path:
    """Convert and write; returns the checkpoint folder."""
    cfg, params = convert_unet(unet, allow_pickle=allow_pickle)  # every check before anything is written
    with atomic_folder(out) as tmp:
        (tmp / "unet").mkdir()
        write_json(tmp / "unet" / "config.json", cfg.to_dict())
        save_params(tmp / "unet", params)
        write_json(tmp / MARKER, {"format": FORMAT, "components": ["unet"],
                                  "source": {"unet": str(Path(unet).absolute())}, "versions": _versions()})
    return Path(out)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m convert.videocrafter2", description=__doc__.split("\n\n")[0])
    ap.add_argument("--unet", required=True, help="diffusers-layout VideoCrafter2 UNet folder")
    ap.add_argument("--out", required=True, help="new vinf_jax checkpoint folder (must not exist)")
    ap.add_argument("--allow-pickle", action="store_true",
                    help="accept .bin/.ckpt/.pt weights, loaded with torch.load(weights_only=True)")
    args = ap.parse_args(argv)
    try:
        path = convert(args.unet, args.out, allow_pickle=args.allow_pickle)
    except VinfError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
