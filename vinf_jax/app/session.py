"""What the web app does, without the page: the launch config and limits, the page's values turned
into a validated config (the CLI's messages), and one generation at a time on a pipeline kept loaded.

No value from the page is a path: the model, ``base_path`` and the config file are fixed at launch,
``file_name`` is always null (outputs take the next free index in ``base_path``).
"""

from __future__ import annotations

import copy
import dataclasses
import threading
from typing import Any

from vinf_jax.config import GenerateConfig, load_config, to_dict
from vinf_jax.config.video_infinity import INDEPENDENT_CLIPS, clip_prompt_index
from vinf_jax.errors import ConfigError
from vinf_jax.flow import GenerationResult, Observer, Pipelines, generate


@dataclasses.dataclass(frozen=True)
class Field:
    """One input of the page and the config key it sets."""

    key: str             # config path, as in --set
    label: str
    kind: str            # "text" (prompts, one per line), "int", "number", "bool", or "choice"
    advanced: bool = False
    choices: tuple = ()


FIELDS = (
    Field("pipe_configs.prompts", "Prompts (one per line)", "text"),
    Field("num_clips", "Clips", "int"),
    Field("pipe_configs.num_frames", "Frames per clip", "int"),
    Field("pipe_configs.height", "Height", "int"),
    Field("pipe_configs.width", "Width", "int"),
    Field("pipe_configs.steps", "Steps", "int"),
    Field("pipe_configs.guidance_scale", "Guidance", "number"),
    Field("pipe_configs.fps", "fps the model is conditioned on (motion per frame)", "int"),
    Field("pipe_configs.export_fps", "Playback fps of the mp4", "number"),
    Field("seed", "Seed", "int"),
    Field("plugin_configs.attn.padding", "Local padding (frames of each neighbour clip)", "int", True),
    Field("plugin_configs.attn.top_k", "top_k (global context rows)", "int", True),
    Field("plugin_configs.attn.local_phase.t", "Local phase: until timestep t", "int", True),
    Field("plugin_configs.attn.local_phase.local_biase", "Local phase: local bias", "number", True),
    Field("plugin_configs.attn.local_phase.global_biase", "Local phase: global bias", "number", True),
    Field("plugin_configs.attn.global_phase.t", "Global phase: from timestep t", "int", True),
    Field("plugin_configs.attn.global_phase.local_biase", "Global phase: local bias", "number", True),
    Field("plugin_configs.attn.global_phase.global_biase", "Global phase: global bias", "number", True),
    Field("edge_mode", "Edge mode", "choice", True, ("exact", "zeros")),
    Field("plugin_configs.conv_layer.padding", "Conv padding (frames)", "int", True),
    Field("plugin_configs.group_norm.sync", "Group-norm sync across clips", "bool", True),
)


def _get(data: dict, key: str):
    for part in key.split("."):
        data = data.get(part) if isinstance(data, dict) else None
    return data


def _set(data: dict, key: str, value) -> None:
    *parents, last = key.split(".")
    for part in parents:
        data = data.setdefault(part, {})
    data[last] = value


def clip_prompts(prompts: list[str], num_clips: int) -> list[tuple[int, int, str]]:
    """(first clip, last clip, prompt) for each prompt, as the pipeline assigns them (method §1)."""
    index = clip_prompt_index(num_clips, len(prompts))
    return [(index.index(p), len(index) - 1 - index[::-1].index(p), prompts[p]) for p in sorted(set(index))]


@dataclasses.dataclass(frozen=True)
class Limits:
    """Set at launch, checked before anything runs."""

    max_frames: int   # num_clips x num_frames
    max_pixels: int   # height x width


class AppSession:
    """The app's state between page visits: launch config, limits, the loaded pipeline, one run at a time."""

    def __init__(self, launch: GenerateConfig, limits: Limits):
        if launch.pipe.file_name:
            raise ConfigError("pipe_configs.file_name: the app names its videos by index; set it to null")
        self.launch, self.limits = launch, limits
        self._base = to_dict(launch)
        self.pipelines = Pipelines()
        self._lock = threading.Lock()  # one generation on the device mesh at a time

    def defaults(self) -> list[Any]:
        """The page's starting values, in FIELDS order: the launch config's."""
        out = []
        for f in FIELDS:
            v = _get(self._base, f.key)
            out.append("\n".join(v) if f.kind == "text" else v)
        return out

    def config(self, values: list[Any]) -> GenerateConfig:
        """The page's values (FIELDS order) -> a validated config; ConfigError with the CLI's message
        (the key, the value, what is allowed), or naming the launch limit that was passed."""
        data = copy.deepcopy(self._base)
        for f, v in zip(FIELDS, values, strict=True):
            if f.kind == "text":
                v = [line.strip() for line in str(v or "").splitlines() if line.strip()]
            elif f.kind == "int" and isinstance(v, float) and v.is_integer():
                v = int(v)
            _set(data, f.key, v)
        # fixed at launch: never from the page
        data.update(model=self.launch.model, base_path=self.launch.base_path)
        data["pipe_configs"]["file_name"] = None
        cfg = load_config(data)
        frames = (cfg.video_infinity.num_clips or 1) * cfg.pipe.num_frames
        if cfg.video_infinity.num_clips is None:
            raise ConfigError("num_clips: the app needs a number of clips (an integer >= 1)")
        if frames > self.limits.max_frames:
            raise ConfigError(f"num_clips x pipe_configs.num_frames = {frames} frames: this app allows at most "
                              f"{self.limits.max_frames} (--max-frames)")
        pixels = cfg.pipe.height * cfg.pipe.width
        if pixels > self.limits.max_pixels:
            raise ConfigError(f"pipe_configs.height x pipe_configs.width = {cfg.pipe.height}x{cfg.pipe.width} = "
                              f"{pixels} pixels: this app allows at most {self.limits.max_pixels} (--max-pixels)")
        return cfg

    def preload(self) -> None:
        """Load the launch config's pipeline now, so a bad model fails at launch and the first run is quicker."""
        from vinf_jax.flow import select_devices, start_jax

        devices, _ = select_devices(start_jax(self.launch), self.launch)
        self.pipelines.get(self.launch.model, devices, self.launch.dtype, Observer())

    def run(self, cfg: GenerateConfig, observer: Observer, compare: bool = False) -> list[GenerationResult]:
        """Generate ``cfg`` (and with ``compare`` the same seed with independent clips); waits for the mesh."""
        with self._lock:
            results = [generate(cfg, observer, pipelines=self.pipelines)]
            if compare:
                observer.status("independent clips (same seed, no context between clips) ...")
                alone = load_config(to_dict(cfg), INDEPENDENT_CLIPS)
                results.append(generate(alone, observer, pipelines=self.pipelines))
        return results
