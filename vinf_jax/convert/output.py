"""What every converter checks and records before writing a checkpoint: the components fit together,
and which library versions made it."""

from __future__ import annotations

from vinf_jax.errors import ConversionError


def check_compatible(unet_cfg, text_cfg, vae_cfg) -> None:
    problems = []
    if text_cfg.hidden_size != unet_cfg.cross_attention_dim:
        problems.append(f"text encoder hidden_size={text_cfg.hidden_size} but unet "
                        f"cross_attention_dim={unet_cfg.cross_attention_dim}")
    if not vae_cfg.latent_channels == unet_cfg.in_channels == unet_cfg.out_channels:
        problems.append(f"vae latent_channels={vae_cfg.latent_channels} but unet in/out_channels="
                        f"{unet_cfg.in_channels}/{unet_cfg.out_channels}")
    if problems:
        raise ConversionError("the components do not fit together: " + "; ".join(problems))


def versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for pkg in ("vinf-jax", "jax", "flax", "orbax-checkpoint", "safetensors", "numpy", "transformers"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            pass
    return out
