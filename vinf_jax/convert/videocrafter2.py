"""Convert VideoCrafter2 (diffusers layout) into one vinf_jax checkpoint folder.

    python -m convert.videocrafter2 --unet UNET_DIR --base PIPELINE_DIR --out OUT_DIR
    python -m convert.videocrafter2 --base MERGED_PIPELINE_DIR --out OUT_DIR    (unet/ inside)
    python -m convert.videocrafter2 --unet UNET_DIR --out OUT_DIR               (UNet only)
    python -m convert.videocrafter2 --lvdm model.ckpt [--lvdm-config inference.yaml] --out OUT_DIR
                                                          (VideoCrafter's own checkpoint; see convert/lvdm.py)
    python -m convert.videocrafter2 --lvdm model.ckpt --lvdm-unet unet_mg.pt --out OUT_DIR   (T2V-Turbo-v2)
    python -m convert.videocrafter2 --lvdm model.ckpt --lora unet_lora.pt --out OUT_DIR      (T2V-Turbo v1)
                                                          (see convert/turbo.py)

UNET_DIR holds ``config.json`` and ``diffusion_pytorch_model.safetensors`` (or its sharded index).
PIPELINE_DIR is a diffusers text-to-video pipeline folder (e.g. zeroscope_v2_576w): the CLIP text
encoder, tokenizer, VAE and scheduler config come from it; its own ``unet/`` is used only when
``--unet`` is not given. Every input is read and checked before anything is written; problems
within one set of weights (missing keys, unexpected keys, shape mismatches, NaN/inf) are reported
together in one ``ConversionError``. On success the folder appears atomically; the CLI prints one
``error: ...`` line and exits 2 otherwise. See ``vinf_jax/checkpoint.py`` for the layout.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import sys
import warnings
from pathlib import Path

from vinf_jax.convert.mapping import params_from_torch
from vinf_jax.convert.safetensors_io import read_weights
from vinf_jax.checkpoint import FORMAT, MARKER, atomic_folder, config_to_dict, read_json, save_params, write_json
from vinf_jax.convert.output import check_compatible, versions
from vinf_jax.errors import ConversionError, VinfError, VinfWarning

_DIFFUSERS_STEMS = ("diffusion_pytorch_model",)
_TRANSFORMERS_STEMS = ("model", "pytorch_model")


def _read_config(folder: Path, name: str, what: str) -> dict:
    return read_json(folder / name, what, error=ConversionError)


def _folder(path: Path, what: str) -> Path:
    if not path.is_dir():
        raise ConversionError(f"{what}: folder {path} does not exist")
    return path


def convert_unet(unet_dir: str | Path, *, allow_pickle: bool = False):
    """(UNetConfig, params) from a diffusers-layout UNet folder (numpy only)."""
    from vinf_jax.convert.keymaps import unet_rename
    from vinf_jax.loading import abstract_params  # cached per config: the trace is paid once
    from vinf_jax.models.unet3d import UNetConfig

    unet_dir = _folder(Path(unet_dir), "unet")
    raw = _read_config(unet_dir, "config.json", "unet")
    tensors = read_weights(unet_dir, _DIFFUSERS_STEMS, allow_pickle=allow_pickle)
    fps_cond = raw.get("fps_cond")
    if fps_cond is None:  # the VideoCrafter2 port's config may not say; its weights do
        fps_cond = any(k.startswith("fps_embedding.") for k in tensors)
    cfg = UNetConfig.from_dict(raw, fps_cond=bool(fps_cond))
    params = params_from_torch(abstract_params("unet", cfg), tensors, rename=unet_rename, what=f"unet ({unet_dir})")
    return cfg, params


def _convert_part(folder: Path, what: str, stems, convert_fn, allow_pickle: bool):
    raw = _read_config(folder, "config.json", what)
    tensors = read_weights(folder, stems, allow_pickle=allow_pickle)
    try:
        return convert_fn(raw, tensors)
    except ConversionError as e:
        raise ConversionError(f"{e} (from {folder})") from None
    except VinfError as e:  # a ConfigError from the config dataclass
        raise ConversionError(f"{what}: {folder / 'config.json'}: {e}") from None


def _check_tokenizer(folder: Path, vocab_size: int) -> list[Path]:
    """The tokenizer's files, after checking transformers can load them and the ids fit the encoder."""
    from transformers import CLIPTokenizer

    try:
        n = len(CLIPTokenizer.from_pretrained(str(folder)))
    except Exception as e:  # transformers raises OSError, ValueError, TypeError... for bad files
        raise ConversionError(f"tokenizer: cannot load {folder}: {type(e).__name__}: {e}") from None
    if n > vocab_size:
        raise ConversionError(f"tokenizer: {folder} has {n} tokens but the text encoder's vocab_size is {vocab_size}")
    return sorted(p for p in folder.iterdir() if p.is_file())


def _sources(unet: Path | None, base: Path | None) -> tuple[Path, Path | None]:
    """(unet folder, pipeline folder or None), checking that every needed folder exists."""
    if base is not None:
        _folder(base, "--base")
        if unet is None and not (base / "unet").is_dir():
            raise ConversionError(f"--base {base} has no unet/ folder; pass --unet UNET_DIR as well")
        for name in ("text_encoder", "tokenizer", "vae", "scheduler"):
            _folder(base / name, f"--base {base}: {name}")
    if unet is None and base is None:
        raise ConversionError("nothing to convert: pass --unet UNET_DIR and/or --base PIPELINE_DIR")
    return _folder(unet if unet is not None else base / "unet", "unet"), base


def convert(unet: str | Path | None, out: str | Path, *, base: str | Path | None = None,
            allow_pickle: bool = False) -> Path:
    """Convert and write; returns the checkpoint folder. Nothing is written unless every check passes."""
    out = Path(out)
    if out.exists():  # fail before minutes of conversion; atomic_folder checks again
        raise ConversionError(f"output folder {out.absolute()} already exists; choose a new --out")
    unet_dir, base = _sources(Path(unet) if unet else None, Path(base) if base else None)
    if base is not None:  # the small parts first: their problems show before the UNet's minutes of work
        scheduler = base / "scheduler" / "scheduler_config.json"
        _read_config(scheduler.parent, scheduler.name, "scheduler")
        from vinf_jax.convert.keymaps import convert_text_encoder, convert_vae  # jax loads past the cheap checks

        text_encoder = _convert_part(base / "text_encoder", "text encoder", _TRANSFORMERS_STEMS,
                                     convert_text_encoder, allow_pickle)
        tokenizer_files = _check_tokenizer(base / "tokenizer", text_encoder[0].vocab_size)
        vae = _convert_part(base / "vae", "vae", _DIFFUSERS_STEMS, convert_vae, allow_pickle)
    parts = {"unet": convert_unet(unet_dir, allow_pickle=allow_pickle)}
    if base is not None:
        check_compatible(parts["unet"][0], text_encoder[0], vae[0])
        parts.update(text_encoder=text_encoder, vae=vae)
    with atomic_folder(out) as tmp:
        for name, (cfg, params) in parts.items():
            (tmp / name).mkdir()
            write_json(tmp / name / "config.json", config_to_dict(cfg))
            save_params(tmp / name, params)
        source = {"unet": str(unet_dir.absolute())}
        if base is not None:
            (tmp / "tokenizer").mkdir()
            for f in tokenizer_files:
                shutil.copyfile(f, tmp / "tokenizer" / f.name)
            (tmp / "scheduler").mkdir()
            shutil.copyfile(scheduler, tmp / "scheduler" / scheduler.name)
            source["base"] = str(base.absolute())
        components = list(parts) + (["tokenizer", "scheduler"] if base is not None else [])
        write_json(tmp / MARKER, {"format": FORMAT, "components": components, "source": source,
                                  "versions": versions()})
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="vinf-convert", description=__doc__.split("\n\n")[0])
    ap.add_argument("--unet", help="diffusers-layout VideoCrafter2 UNet folder")
    ap.add_argument("--base", help="diffusers text-to-video pipeline folder (text_encoder/, tokenizer/, vae/, "
                                   "scheduler/, and unet/ if --unet is not given)")
    ap.add_argument("--lvdm", help="VideoCrafter's own checkpoint (model.ckpt, LVDM layout; or a .safetensors "
                                   "with its keys). Read with torch.load(weights_only=True): no --allow-pickle needed")
    ap.add_argument("--lvdm-config", help="VideoCrafter inference yaml of --lvdm (default: VideoCrafter2's values)")
    ap.add_argument("--openclip-vocab", help="OpenCLIP's bpe_simple_vocab_16e6.txt.gz for the --lvdm tokenizer "
                                             "(default: the installed open_clip_torch's)")
    ap.add_argument("--lvdm-unet", help="with --lvdm: a UNet state dict replacing the checkpoint's (T2V-Turbo-v2's "
                                        "unet_mg.pt / unet_no_mg.pt), read with torch.load(weights_only=True)")
    ap.add_argument("--lora", help="with --lvdm: T2V-Turbo v1's unet_lora.pt, merged into the checkpoint's UNet")
    ap.add_argument("--out", required=True, help="new vinf_jax checkpoint folder (must not exist)")
    ap.add_argument("--allow-pickle", action="store_true",
                    help="accept .bin/.ckpt/.pt weights, loaded with torch.load(weights_only=True)")
    args = ap.parse_args(argv)
    logging.getLogger("absl").setLevel(logging.ERROR)  # orbax logs routine notes as warnings
    try:
        if args.lvdm:
            if args.unet or args.base:
                raise ConversionError("--lvdm converts a whole model: do not combine it with --unet or --base")
            from vinf_jax.convert.lvdm import convert_lvdm

            with warnings.catch_warnings(record=True) as caught:  # printed once the folder is written
                warnings.simplefilter("always", VinfWarning)
                path = convert_lvdm(args.lvdm, args.out, config=args.lvdm_config, vocab=args.openclip_vocab,
                                    lvdm_unet=args.lvdm_unet, lora=args.lora)
            for w in caught:
                if issubclass(w.category, VinfWarning):
                    print(f"warning: {w.message}", file=sys.stderr)
                else:
                    warnings.showwarning(w.message, w.category, w.filename, w.lineno)
        elif args.lvdm_config or args.openclip_vocab or args.lvdm_unet or args.lora:
            raise ConversionError("--lvdm-config, --openclip-vocab, --lvdm-unet and --lora apply only with --lvdm")
        else:
            path = convert(args.unet, args.out, base=args.base, allow_pickle=args.allow_pickle)
    except VinfError as e:
        first, *rest = str(e).splitlines()  # one line, however many problems were listed
        print(" ".join(["error:", first, "; ".join(r.strip() for r in rest)]).strip(), file=sys.stderr)
        return 2
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
