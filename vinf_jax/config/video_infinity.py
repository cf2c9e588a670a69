"""What the clip-parallel UNet needs to know: the plugins of the original file (attention context,
phase biases, conv halos, group-norm sync), the edge mode and the clip count. See docs/method.md.

All configs are frozen, hashable dataclasses so they can be static arguments of `jax.jit`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from vinf_jax.config.schema import SCHEMA, check_keys, section
from vinf_jax.config.values import as_bool, as_int, as_number, choice, fail, is_number, set_field, warn_once
from vinf_jax.errors import ConfigError

EDGE_MODES = ("exact", "zeros")
EXCHANGES = ("kv", "inputs")  # what temporal attention sends between devices
# `--set` overrides that turn Video-Infinity off: no local padding, no global rows, no conv halos.
# Every clip is then denoised on its own from the same noise (the baseline the seams compare against).
INDEPENDENT_CLIPS = ("plugin_configs.attn.padding=0", "plugin_configs.attn.top_k=0", "plugin_configs.conv_layer.padding=0")



def clip_prompt_index(num_clips: int, num_prompts: int) -> list[int]:
    """Clip c uses prompts[(c * len(prompts)) // N] (docs/method.md §1)."""
    return [(c * num_prompts) // num_clips for c in range(num_clips)]

@dataclass(frozen=True)
class Phase:
    """Logit biases for the local window and the global columns, by timestep (docs/method.md §5.3).

    `local_phase` applies when `t < Phase.t`, `global_phase` when `t >= Phase.t`. Values are
    validated by the `AttnConfig` that holds the phase (which knows its key path).
    """

    t: int
    local_biase: float
    global_biase: float

    def __post_init__(self):
        for name in ("local_biase", "global_biase"):
            value = getattr(self, name)
            if is_number(value):
                set_field(self, name, float(value))


@dataclass(frozen=True)
class AttnConfig:
    """`plugin_configs.attn`: the dual-scope temporal attention. Defaults are the shipped example."""

    padding: int = 8
    top_k: int = 16
    attn_scale: float = 1.0
    token_num_scale: bool = False
    dynamic_scale: bool = True
    local_phase: Phase | None = Phase(800, 10.0, 0.0)
    global_phase: Phase | None = Phase(800, 0.0, 10.0)
    # vinf_jax's own key: "kv" sends the halo and global rows of k and v (the projections are
    # computed once, on the sender), "inputs" sends the attention's input rows instead (half the
    # bytes; the receiver projects 2P + G extra rows). Same values up to float rounding.
    exchange: str = "kv"

    PATH: ClassVar[str] = "plugin_configs.attn"

    def __post_init__(self):
        p = self.PATH
        set_field(self, "padding", as_int(self.padding, f"{p}.padding", lo=0))
        set_field(self, "top_k", as_int(self.top_k, f"{p}.top_k", lo=0))
        set_field(self, "attn_scale", as_number(self.attn_scale, f"{p}.attn_scale"))
        as_bool(self.token_num_scale, f"{p}.token_num_scale")
        as_bool(self.dynamic_scale, f"{p}.dynamic_scale")
        choice(self.exchange, f"{p}.exchange", EXCHANGES)
        for name in ("local_phase", "global_phase"):
            phase = getattr(self, name)
            if phase is None:
                continue
            if not isinstance(phase, Phase):
                raise fail(f"{p}.{name}", "an object {t, local_biase, global_biase} or null", phase)
            as_int(phase.t, f"{p}.{name}.t", lo=0)
            as_number(phase.local_biase, f"{p}.{name}.local_biase")
            as_number(phase.global_biase, f"{p}.{name}.global_biase")


@dataclass(frozen=True)
class ConvLayerConfig:
    """`plugin_configs.conv_layer`: halo frames of the temporal conv layers (4 = receptive field)."""

    padding: int = 4

    def __post_init__(self):
        set_field(self, "padding", as_int(self.padding, "plugin_configs.conv_layer.padding", lo=0))


@dataclass(frozen=True)
class GroupNormConfig:
    """`plugin_configs.group_norm`: pool temporal GroupNorm statistics over all clips (paper §ResNet sync)."""

    sync: bool = False

    def __post_init__(self):
        as_bool(self.sync, "plugin_configs.group_norm.sync")


@dataclass(frozen=True)
class VideoInfinityConfig:
    """What the clip-parallel UNet needs: the plugins, the edge mode and the clip count N."""

    attn: AttnConfig = AttnConfig()
    conv_layer: ConvLayerConfig = ConvLayerConfig()
    group_norm: GroupNormConfig = GroupNormConfig()
    edge_mode: str = "exact"  # "exact" (vinf_jax) or "zeros" (released code)
    num_clips: int | None = None  # None: one clip per device

    def __post_init__(self):
        for name, cls in (("attn", AttnConfig), ("conv_layer", ConvLayerConfig), ("group_norm", GroupNormConfig)):
            if not isinstance(getattr(self, name), cls):
                raise fail(f"plugin_configs.{name}", f"a {cls.__name__}", getattr(self, name))
        choice(self.edge_mode, "edge_mode", EDGE_MODES)
        if self.num_clips is not None:
            set_field(self, "num_clips", as_int(self.num_clips, "num_clips", lo=1, what=" or null (one clip per device)"))

    def with_num_clips(self, n: int | None) -> VideoInfinityConfig:
        """A copy with `num_clips = n` (validated)."""
        return dataclasses.replace(self, num_clips=n)

    @classmethod
    def from_plugin_configs(
        cls,
        plugin_dict: Mapping[str, Any] | None,
        edge_mode: str = "exact",
        num_clips: int | None = None,
        *,
        num_frames: int | None = None,
    ) -> VideoInfinityConfig:
        """Build from the original `plugin_configs` object; with `num_frames`, also check paddings <= F."""
        plugins = section(plugin_dict, "plugin_configs")
        check_keys(plugins, SCHEMA["plugin_configs"], "plugin_configs")
        attn = dict(section(plugins.get("attn"), "plugin_configs.attn"))
        if "top_k_chunk_size" in attn:
            attn.pop("top_k_chunk_size")
            warn_once("plugin_configs.attn.top_k_chunk_size",
                       "plugin_configs.attn.top_k_chunk_size is accepted for compatibility but has no effect")
        conv_3d = section(plugins.get("conv_3d"), "plugin_configs.conv_3d")
        if "padding" in conv_3d:
            warn_once("plugin_configs.conv_3d.padding",
                       "plugin_configs.conv_3d.padding is accepted for compatibility but has no effect "
                       "(the original conv_3d plugin is never mounted; see conv_layer.padding)")
        for name in ("local_phase", "global_phase"):
            phase = attn.get(name)
            if isinstance(phase, Mapping):
                # No defaults inside a phase: the released code reads all three keys, and a silently
                # filled-in t would change when the phase applies.
                missing = [k for k in ("t", "local_biase", "global_biase") if k not in phase]
                if missing:
                    raise ConfigError(f"plugin_configs.attn.{name}.{missing[0]}: missing required key; a phase "
                                      f"object needs t, local_biase and global_biase (missing: {', '.join(missing)})")
                attn[name] = Phase(**phase)
        vi = cls(
            attn=AttnConfig(**attn),
            conv_layer=ConvLayerConfig(**section(plugins.get("conv_layer"), "plugin_configs.conv_layer")),
            group_norm=GroupNormConfig(**section(plugins.get("group_norm"), "plugin_configs.group_norm")),
            edge_mode=edge_mode,
            num_clips=num_clips,
        )
        if num_frames is not None:
            vi.check_num_frames(num_frames)
        return vi

    def to_plugin_configs(self) -> dict[str, Any]:
        """The inverse of `from_plugin_configs` (ignored original keys are left out)."""
        attn = dataclasses.asdict(self.attn)
        return {
            "attn": attn,
            "conv_layer": dataclasses.asdict(self.conv_layer),
            "group_norm": dataclasses.asdict(self.group_norm),
        }

    def check_num_frames(self, num_frames: int) -> None:
        """Halo / local-window paddings take frames from one neighbour clip, so they must be <= F."""
        for path, value in (("plugin_configs.attn.padding", self.attn.padding),
                            ("plugin_configs.conv_layer.padding", self.conv_layer.padding)):
            if value > num_frames:
                raise fail(path, f"an integer in 0..{num_frames} (pipe_configs.num_frames, the frames of "
                            "one clip: padding frames come from one neighbour clip)", value)

    def shared_frames(self, num_frames: int, num_clips: int) -> tuple[int, ...]:
        """Local indices of the frames each clip shares as global context (docs/method.md §5.1, uniform striding).

        S = top_k // N frames per clip; if S > 0, every `max(F // S, 1)`-th frame from 0 (this can
        be more than S frames), else frame 0 alone.
        """
        assert num_frames >= 1 and num_clips >= 1, (num_frames, num_clips)
        per_clip = self.attn.top_k // num_clips
        if per_clip == 0:
            return (0,)
        return tuple(range(0, num_frames, max(num_frames // per_clip, 1)))

    def global_rows(self, num_frames: int, num_clips: int) -> int:
        """G: shared rows of all clips in clip order, cut to the first top_k."""
        return min(self.attn.top_k, num_clips * len(self.shared_frames(num_frames, num_clips)))

