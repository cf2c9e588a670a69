"""The streaming output stage: export_video against today's decode + write_mp4, bounded host memory
by design, nothing half-written, and output names claimed at publication (two runs racing for one
index both keep their videos)."""

from __future__ import annotations

import json
import threading

import numpy as np
import pytest

from vinf_jax.output import video_io
from vinf_jax.output.video_sink import VideoSink

T, H, W = 128, 32, 32  # 16 frames per device on 8 devices: chunk=2 gives 8 chunks


@pytest.fixture(scope="module")
def pipe():
    from vinf_jax.pipeline import VideoInfinityPipeline

    return VideoInfinityPipeline.tiny_random(devices=8)


@pytest.fixture(scope="module")
def latents(pipe):
    s = pipe.vae_scale_factor
    return np.random.default_rng(0).standard_normal((1, 4, T, H // s, W // s)).astype(np.float32)


def test_frames_equal_todays_path(pipe, latents, tmp_path):
    """uint8 frames, npy and mp4 equal decode -> float -> uint8 -> write_mp4, from host latents and
    from latents on the mesh, over several chunks."""
    import jax

    from vinf_jax.output.export import frame_chunks
    from vinf_jax.parallel.mesh import clip_sharding

    today = pipe.decode(latents, chunk=2)  # same frames per decode batch as the chunks below
    assert today.std() > 1e-2  # not a flat picture
    video_io.write_mp4(tmp_path / "today.mp4", today, 8)

    plan, chunks = frame_chunks(pipe, latents, chunk=2)
    assert plan.num_chunks == 8 and plan.per_chunk == 2
    u8 = np.concatenate([c[0] for c in chunks])
    np.testing.assert_array_equal(u8, video_io.to_uint8(today))

    on_mesh = jax.device_put(latents, clip_sharding(pipe.mesh, 5, 2))
    res = pipe.export_video(on_mesh, tmp_path / "new.mp4", fps=8, save_frames="npy", chunk=2,
                            sidecar=lambda r: {"frames": r.frames})
    assert res.path == tmp_path / "new.mp4" and res.chunks == 8
    np.testing.assert_array_equal(np.load(tmp_path / "new.npy"), today)
    np.testing.assert_array_equal(video_io.read_mp4(tmp_path / "new.mp4"), video_io.read_mp4(tmp_path / "today.mp4"))
    assert json.loads((tmp_path / "new.json").read_text()) == {"frames": T}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["new.json", "new.mp4", "new.npy", "today.mp4"]


def test_host_holds_a_few_chunks_by_design(pipe, latents, tmp_path):
    """Each frame crosses to the host once, as uint8, one chunk at a time; at most depth + 2 chunks
    (queue, the writer's, the one being handed over) are on the host at once, for any length."""
    from vinf_jax.parallel.stream import TRANSFERS

    before = dict(TRANSFERS)
    res = pipe.export_video(latents, tmp_path / "v.mp4", chunk=2)
    assert TRANSFERS["chunks"] - before["chunks"] == 8
    assert res.bytes_to_host == TRANSFERS["bytes"] - before["bytes"] == T * H * W * 3
    assert 1 <= res.max_chunks_held <= 4, res


def test_error_or_interrupt_mid_export_leaves_no_file(pipe, latents, tmp_path, monkeypatch):
    import vinf_jax.output.export as export

    def failing_progress(n, seen=[]):
        seen.append(n)
        if len(seen) == 3:
            raise OSError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        pipe.export_video(latents, tmp_path / "a" / "v.mp4", save_frames="npy", chunk=2, progress=failing_progress)
    assert list((tmp_path / "a").iterdir()) == []

    real, calls = export.fetch_chunk, []

    def interrupted(plan, outs):  # Ctrl-C while waiting for the devices
        calls.append(1)
        if len(calls) == 4:
            raise KeyboardInterrupt
        return real(plan, outs)

    monkeypatch.setattr(export, "fetch_chunk", interrupted)
    with pytest.raises(KeyboardInterrupt):
        pipe.export_video(latents, tmp_path / "b" / "v.mp4", save_frames="npy", chunk=2, sidecar={"x": 1})
    assert list((tmp_path / "b").iterdir()) == []


def test_bad_latents_are_refused_before_any_file(pipe, tmp_path):
    from vinf_jax.errors import ConfigError

    with pytest.raises(ConfigError, match="latents: expected shape"):
        pipe.export_video(np.zeros((1, 3, 8, 4, 4), np.float32), tmp_path / "o" / "v.mp4")
    with pytest.raises(ConfigError, match="do not split over 8 devices"):
        pipe.export_video(np.zeros((1, 4, 12, 4, 4), np.float32), tmp_path / "o" / "v.mp4")
    assert not (tmp_path / "o").exists()


# ---------------------------------------------------------------------------------------------------
# names are claimed at publication

def _video(folder, value, name, sidecar):
    """A 4-frame video of one grey level through the sink; returns the published stem."""
    with VideoSink(folder, 4, 16, 16, 8) as sink:
        sink.put(np.full((4, 16, 16, 3), value, np.uint8))
        return sink.publish(name, sidecar)


def test_two_runs_racing_for_one_index_both_keep_their_videos(tmp_path):
    """Run A starts when index 0 is free; run B finishes first and takes it; A gets index 1."""
    name = video_io.OutputName.indexed(tmp_path, 4, 2, 24)
    assert name.first() == tmp_path / "0_4_2_24"  # what A would have been named at its start
    with VideoSink(tmp_path, 4, 16, 16, 8) as a:
        a.put(np.full((4, 16, 16, 3), 40, np.uint8))
        assert _video(tmp_path, 200, name, {"run": "B"}) == tmp_path / "0_4_2_24"
        assert a.publish(name, {"run": "A"}) == tmp_path / "1_4_2_24"
    for stem, run, grey in [("0_4_2_24", "B", 200), ("1_4_2_24", "A", 40)]:
        assert json.loads((tmp_path / f"{stem}.json").read_text()) == {"run": run}
        assert abs(video_io.read_mp4(tmp_path / f"{stem}.mp4").mean() - grey) < 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["0_4_2_24.json", "0_4_2_24.mp4", "1_4_2_24.json",
                                                          "1_4_2_24.mp4"]


def test_concurrent_publications_get_distinct_indices(tmp_path):
    """Four runs publishing at the same moment (same and different frame counts): four indices."""
    names = [video_io.OutputName.indexed(tmp_path, f, 2, 24) for f in (4, 4, 8, 8)]
    sinks = [VideoSink(tmp_path, 4, 16, 16, 8).__enter__() for _ in names]
    for i, s in enumerate(sinks):
        s.put(np.full((4, 16, 16, 3), 50 * i, np.uint8))
        s.finish()
    gate, stems = threading.Barrier(len(sinks)), [None] * len(sinks)

    def publish(i):
        gate.wait()
        stems[i] = sinks[i].publish(names[i], {"run": i})

    threads = [threading.Thread(target=publish, args=(i,)) for i in range(len(sinks))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(int(s.name.split("_")[0]) for s in stems) == [0, 1, 2, 3]
    for i, s in enumerate(stems):
        assert json.loads(s.with_suffix(".json").read_text()) == {"run": i}
    assert len(list(tmp_path.glob("*.mp4"))) == 4 and not list(tmp_path.glob(".*"))


def test_explicit_name_taken_meanwhile_gets_a_suffix(tmp_path):
    name = video_io.OutputName.explicit(tmp_path / "clip.mp4")
    assert _video(tmp_path, 10, name, None) == tmp_path / "clip"
    assert _video(tmp_path, 20, name, None) == tmp_path / "clip_1"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.mp4", "clip_1.mp4"]


def test_stray_companion_file_skips_the_index(tmp_path):
    """A leftover 0_4_2_24.json (no mp4) is never overwritten: the video takes index 1."""
    (tmp_path / "0_4_2_24.json").write_text("{}")
    assert _video(tmp_path, 10, video_io.OutputName.indexed(tmp_path, 4, 2, 24), {"a": 1}) == tmp_path / "1_4_2_24"
    assert (tmp_path / "0_4_2_24.json").read_text() == "{}"


def test_temporaries_of_killed_runs_are_swept_and_nobody_elses(tmp_path):
    """A run killed outright (SIGKILL) leaves its hidden temporary; the next run removes it once it is
    an hour old, but never a file of a live process, of another machine, or a recent one."""
    import os
    import re
    import subprocess
    import sys
    import time
    from pathlib import Path

    killed = subprocess.run([sys.executable, "-c", (
        "import os, signal, sys; from pathlib import Path; from vinf_jax.output import video_io\n"
        "p = video_io.temp_path(Path(sys.argv[1]), '.mp4'); p.write_bytes(b'half a video'); print(p, flush=True)\n"
        "os.kill(os.getpid(), signal.SIGKILL)"), str(tmp_path)], capture_output=True, text=True)
    assert killed.returncode == -9
    left = Path(killed.stdout.strip())
    assert left.exists() and left.parent == tmp_path
    fresh = tmp_path / re.sub(r"-[0-9a-f]{8}\.partial", "-00000000.partial", left.name)  # same dead process, recent
    fresh.write_bytes(b"")
    live = video_io.temp_path(tmp_path, ".npy")  # this process: alive
    other = tmp_path / left.name.replace(f".vinf-{video_io._HOST}-", ".vinf-elsewhere-")
    unrelated = tmp_path / ".vinf-notes.partial.txt"
    for p in (live, other, unrelated):
        p.write_bytes(b"")
    hour_ago = time.time() - 3700
    for p in (left, live, other, unrelated):
        os.utime(p, (hour_ago, hour_ago))
    assert fresh.name != left.name and video_io._TEMP.match(fresh.name)
    assert video_io.sweep_stale_temps(tmp_path) == [left]
    assert not left.exists() and all(p.exists() for p in (fresh, live, other, unrelated))
    assert video_io.sweep_stale_temps(tmp_path / "absent") == []
