"""The one generation flow (vinf_jax.flow) that the CLI and the app share: what an observer hears,
a pipeline kept between runs, and a full disk while the video is written."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from vinf_jax.config import load_config

ROOT = Path(__file__).resolve().parents[1]
SMALL = ["model=tiny-random", "pipe_configs.steps=2", "pipe_configs.height=32", "pipe_configs.width=32",
         "pipe_configs.num_frames=4", "plugin_configs.attn.padding=3"]


class Recorder:
    """An observer that writes down what it hears."""

    def __init__(self):
        self.events = []

    def status(self, message):
        self.events.append(("status", message.split(":")[0].split(" ")[0]))

    def denoise_started(self, steps):
        self.events.append(("denoise", steps))

    def denoise_step(self, step):
        self.events.append(("step", step))

    def decode_started(self, frames):
        self.events.append(("decode", frames))

    def frames_written(self, count):
        self.events.append(("frames", count))


def test_observer_hears_the_run_and_a_kept_pipeline_compiles_nothing_the_second_time(tmp_path):
    """Events in order (devices, loading, compiling; every step; decode; frames adding up to the
    video); a second run with the same shapes on the same Pipelines loads nothing and reports
    0 compile-cache misses (nothing compiled: the programs live on the pipeline)."""
    from vinf_jax.flow import Pipelines, generate

    pipes = Pipelines()
    cfg = load_config(ROOT / "configs/tiny.json", SMALL + [f"base_path={tmp_path}"])
    rec = Recorder()
    first = generate(cfg, rec, pipelines=pipes)
    kinds = [e[0] for e in rec.events]
    assert rec.events[:4] == [("status", "devices"), ("status", "loading"), ("status", "compiling"), ("denoise", 2)]
    assert [e for e in rec.events if e[0] == "step"] == [("step", 0), ("step", 1)]
    assert kinds.index("decode") > kinds.index("step") and ("decode", 32) in rec.events
    assert sum(e[1] for e in rec.events if e[0] == "frames") == 32 == first.frames
    assert first.path.is_file() and first.sidecar.is_file() and first.contact_sheet.is_file()
    assert json.loads(first.sidecar.read_text())["seams"]["seams"] == pytest.approx(first.seams["seams"])
    assert len(first.seams["seams"]) == 7  # 8 clips

    rec2 = Recorder()
    second = generate(load_config(ROOT / "configs/tiny.json", SMALL + [f"base_path={tmp_path}", "seed=7"]), rec2,
                      pipelines=pipes)
    assert ("status", "loading") not in rec2.events and second.summary["load_s"] == 0
    assert second.summary["compile_cache"]["misses"] == 0 and second.summary["compile_s"] == 0
    assert second.path != first.path and second.path.name.startswith("1_")


def failing_mp4(after: int):
    """``video_io.open_mp4`` whose writer raises ENOSPC once ``after`` chunks went to ffmpeg."""
    from vinf_jax.output import video_io

    real_open = video_io.open_mp4

    def open_mp4(path, width, height, fps):
        real = real_open(path, width, height, fps)

        def writer():
            sent = 0
            try:
                while True:
                    frames = yield
                    if sent == after:
                        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
                    real.send(frames)
                    sent += 1
            finally:
                real.close()

        w = writer()
        w.send(None)
        return w

    return open_mp4


def test_disk_full_while_writing_is_one_error_line_exit_2_and_no_file(tmp_path, monkeypatch, capsys):
    """A write that raises ENOSPC as the mp4 is written: the CLI prints one ``error:`` line naming
    the folder, exits 2, and leaves no file (not even a temporary) behind."""
    from vinf_jax import generate as cli
    from vinf_jax.output import video_io

    monkeypatch.setattr(video_io, "open_mp4", failing_mp4(after=0))
    out = tmp_path / "out"
    code = cli.main(["--config", str(ROOT / "configs/tiny.json"), "--quiet", "--set", f"base_path={out}",
                     "--set", "save_frames=npy", *sum((["--set", s] for s in SMALL), [])])
    err = capsys.readouterr().err
    assert code == 2, err
    assert [ln for ln in err.splitlines() if ln.startswith("error:")] == [
        f"error: no space left on the device holding {out} while writing the video; nothing was written: "
        "free some space there or set base_path to another folder"], err
    assert "Traceback" not in err
    assert not out.exists() or list(out.iterdir()) == []


def can_mount_tmpfs(where: Path) -> bool:
    if os.geteuid() != 0:
        return False
    where.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(where)], capture_output=True)
    return r.returncode == 0


def test_a_real_full_disk_in_the_cli(tmp_path):
    """The same on a real full filesystem: a 64 KiB tmpfs (mounted here; needs root) nearly filled,
    so ffmpeg cannot finish the mp4 (it exits quietly: the writer checks the file)."""
    disk = tmp_path / "disk"
    if not can_mount_tmpfs(disk):
        pytest.skip("needs root and permission to mount a tmpfs")
    try:
        filler = disk / "filler"
        filler.write_bytes(b"\0" * (56 << 10))
        before = sorted(p.name for p in disk.iterdir())
        env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "JAX_NUM_CPU_DEVICES")}
        r = subprocess.run([sys.executable, "-m", "vinf_jax.generate", "--config", str(ROOT / "configs/tiny.json"),
                            "--quiet", *sum((["--set", s] for s in SMALL + [f"base_path={disk}"]), [])],
                           cwd=tmp_path, env={**env, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True,
                           timeout=600)
        assert r.returncode == 2, r.stderr
        errors = [ln for ln in r.stderr.splitlines() if ln.startswith("error:")]
        assert errors == [f"error: no space left on the device holding {disk} while writing the video; nothing was "
                          "written: free some space there or set base_path to another folder"], r.stderr
        assert "Traceback" not in r.stderr
        assert sorted(p.name for p in disk.iterdir()) == before  # no partial file, no temporary
    finally:
        subprocess.run(["umount", str(disk)], check=False)


def test_mp4_complete_sees_a_cut_file(tmp_path):
    """The writer's check: a whole mp4 passes; the same bytes cut short, or without a moov box, do not."""
    from vinf_jax.output.video_io import mp4_complete, write_mp4

    path = tmp_path / "v.mp4"
    write_mp4(path, np.random.default_rng(0).random((8, 16, 16, 3)), 8)
    assert mp4_complete(path)
    data = path.read_bytes()
    (tmp_path / "cut.mp4").write_bytes(data[:-100])
    assert not mp4_complete(tmp_path / "cut.mp4")
    (tmp_path / "empty.mp4").write_bytes(b"")
    assert not mp4_complete(tmp_path / "empty.mp4")
