"""The web app's rules without a browser (vinf_jax.app.session): page values -> the CLI's config and
its messages, launch limits checked before anything runs, nothing from the page is a path, the
independent-clips comparison, and out of device memory leaving the app serving."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vinf_jax.app.session import FIELDS, AppSession, Limits, clip_prompts
from vinf_jax.config import load_config
from vinf_jax.errors import ConfigError, OutOfMemoryError

ROOT = Path(__file__).resolve().parents[1]
SMALL = ["model=tiny-random", "num_clips=4", "pipe_configs.steps=2", "pipe_configs.height=32",
         "pipe_configs.width=32", "pipe_configs.num_frames=4", "plugin_configs.attn.padding=3",
         "plugin_configs.conv_layer.padding=3"]


@pytest.fixture(scope="module")
def session(tmp_path_factory):
    base = tmp_path_factory.mktemp("app")
    return AppSession(load_config(ROOT / "configs/tiny.json", SMALL + [f"base_path={base}"]), Limits(64, 48 * 48))


def values(session, **changes):
    """The page's values (FIELDS order), starting from the launch config's."""
    out = session.defaults()
    for key, v in changes.items():
        out[[f.key for f in FIELDS].index(key.replace("__", "."))] = v
    return out


def test_no_page_value_is_a_path_and_the_defaults_give_the_launch_config(session):
    assert not {f.key for f in FIELDS} & {"model", "base_path", "pipe_configs.file_name", "devices", "distributed"}
    cfg = session.config(session.defaults())
    assert cfg.pipe == session.launch.pipe and cfg.video_infinity == session.launch.video_infinity
    assert cfg.model == "tiny-random" and cfg.base_path == session.launch.base_path and cfg.seed == session.launch.seed


def test_page_values_give_the_clis_messages(session):
    """The same text load_config gives the CLI for the same value (the page shows it after 'error:')."""
    with pytest.raises(ConfigError) as page:
        session.config(values(session, pipe_configs__height=60))
    with pytest.raises(ConfigError) as cli:
        load_config(ROOT / "configs/tiny.json", SMALL + ["pipe_configs.height=60"])
    assert str(page.value) == str(cli.value) and "pipe_configs.height" in str(page.value)
    with pytest.raises(ConfigError, match="plugin_configs.attn.padding"):
        session.config(values(session, plugin_configs__attn__padding=9))  # more than the 4 frames of a clip
    with pytest.raises(ConfigError, match="edge_mode"):
        session.config(values(session, edge_mode="wrap"))
    cfg = session.config(values(session, pipe_configs__prompts=" a red circle moving right \n\n a blue square \n"))
    assert cfg.pipe.prompts == ("a red circle moving right", "a blue square")


def test_launch_limits_are_checked_before_anything_runs(session):
    with pytest.raises(ConfigError, match=r"= 80 frames: this app allows at most 64 \(--max-frames\)"):
        session.config(values(session, num_clips=5, pipe_configs__num_frames=16))
    with pytest.raises(ConfigError, match=r"= 56x48 = 2688 pixels: this app allows at most 2304 \(--max-pixels\)"):
        session.config(values(session, pipe_configs__height=56, pipe_configs__width=48))
    assert not any(Path(session.launch.base_path).iterdir())


def test_which_clips_each_prompt_drives():
    assert clip_prompts(["a", "b"], 8) == [(0, 3, "a"), (4, 7, "b")]
    assert clip_prompts(["a", "b", "c"], 4) == [(0, 1, "a"), (2, 2, "b"), (3, 3, "c")]
    assert clip_prompts(["a", "b", "c"], 2) == [(0, 0, "a"), (1, 1, "b")]  # clip c uses prompt (c * 3) // 2: c drives none


class Heard:
    def __init__(self):
        self.lines = []

    def __getattr__(self, name):
        return lambda *a: self.lines.append((name,) + a)


def test_compare_renders_independent_clips_and_out_of_memory_leaves_the_app_serving(session, monkeypatch):
    """Compare: two videos from the same seed, the second with no context between clips (its sidecar
    says so). Out of device memory: the CLI's message as an OutOfMemoryError, no file; the next run works."""
    import jax

    from vinf_jax.sampling.loop import DenoiseLoop

    cfg = session.config(values(session, seed=5))
    vi, alone = session.run(cfg, Heard(), compare=True)
    side = json.loads(alone.sidecar.read_text())["config"]["plugin_configs"]
    assert side["attn"]["padding"] == 0 and side["attn"]["top_k"] == 0 and side["conv_layer"]["padding"] == 0
    assert json.loads(vi.sidecar.read_text())["config"]["plugin_configs"]["attn"]["padding"] == 3
    assert len(vi.seams["seams"]) == len(alone.seams["seams"]) == 3

    def exhausted(*args):  # the runtime's error where the compiled loop is called
        raise jax.errors.JaxRuntimeError("RESOURCE_EXHAUSTED: Out of memory while trying to allocate 9.5GiB.")

    build = DenoiseLoop.build
    files = sorted(Path(session.launch.base_path).iterdir())
    monkeypatch.setattr(DenoiseLoop, "build", lambda self: (exhausted, *build(self)[1:]))
    with pytest.raises(OutOfMemoryError, match=r"^out of device memory: 1 clip\(s\) x 3 frames = 3 frames per device at 32x32"):
        session.run(session.config(values(session, pipe_configs__num_frames=3, plugin_configs__attn__padding=2,
                                          plugin_configs__conv_layer__padding=2)), Heard())
    assert sorted(Path(session.launch.base_path).iterdir()) == files
    monkeypatch.setattr(DenoiseLoop, "build", build)
    (again,) = session.run(session.config(values(session, seed=6)), Heard())
    assert again.path.is_file() and again.summary["compile_cache"]["misses"] == 0  # shapes seen before: nothing compiled


def test_bad_launch_values_are_one_error_line_and_exit_2(tmp_path, monkeypatch, capsys):
    """Before any device starts or any page is served: a missing config, a bad limit, a multi-host job."""
    from vinf_jax.app.__main__ import main

    assert main(["--config", str(tmp_path / "missing.json")]) == 2
    assert capsys.readouterr().err.startswith("error: ")
    tiny = str(ROOT / "configs/tiny.json")
    assert main(["--config", tiny, "--base-path", str(tmp_path / "out"), "--max-frames", "0"]) == 2
    assert capsys.readouterr().err.strip() == "error: --max-frames 0: a positive integer"
    for k, v in {"JAX_COORDINATOR_ADDRESS": "127.0.0.1:1", "JAX_NUM_PROCESSES": "2", "JAX_PROCESS_ID": "0"}.items():
        monkeypatch.setenv(k, v)
    assert main(["--config", tiny, "--base-path", str(tmp_path / "out")]) == 2
    assert capsys.readouterr().err.strip() == ("error: distributed: the app runs on one host; multi-host jobs use "
                                               "the CLI (python -m vinf_jax.generate)")
    assert not (tmp_path / "out").exists()


def test_the_page_hears_steps_then_frames():
    """What the page shows while a run goes: each denoising step, then the frames written so far."""
    import queue

    from vinf_jax.app.page import PageObserver

    events = queue.Queue()
    seen = PageObserver(events)
    seen.denoise_started(2)
    for i in range(2):
        seen.denoise_step(i)
    seen.decode_started(16)
    seen.frames_written(8)
    seen.frames_written(8)
    seen.status("independent clips (same seed, no context between clips) ...")
    seen.denoise_started(2)
    seen.denoise_step(0)
    assert [events.get_nowait() for _ in range(7)] == [
        "Video-Infinity: denoising, step 1 of 2", "Video-Infinity: denoising, step 2 of 2",
        "Video-Infinity: decoding and writing, 0 of 16 frames", "Video-Infinity: decoding and writing, 8 of 16 frames",
        "Video-Infinity: decoding and writing, 16 of 16 frames",
        "independent clips (same seed, no context between clips) ...",
        "independent clips: denoising, step 1 of 2"]
