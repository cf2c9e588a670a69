"""The Gradio page: prompts and settings in; live progress; the mp4 playing, its contact sheet, the
seam value at every clip boundary, the summary line and links to the files out.

Generate runs the shared flow (``vinf_jax.flow``) in a worker thread and streams what its observer
hears to the page. Gradio's queue runs one generation at a time (others see their place in it).
"""

from __future__ import annotations

import math
import queue
import threading
import warnings
from pathlib import Path

import gradio as gr
import pandas as pd

from vinf_jax.app.session import FIELDS, AppSession, clip_prompts
from vinf_jax.errors import VinfError, VinfWarning
from vinf_jax.flow import GenerationResult, Observer
from vinf_jax.output.seams import summary_line

# system fonts: the page needs nothing from the internet
THEME = gr.themes.Default(font=["ui-sans-serif", "system-ui", "sans-serif"], font_mono=["ui-monospace", "monospace"])


class PageObserver(Observer):
    """Turns the flow's events into progress lines for the page (through a queue: another thread)."""

    def __init__(self, events: queue.Queue):
        self.events, self.label = events, "Video-Infinity"
        self.steps = self.frames = self.done = 0

    def status(self, message):
        if message.startswith("independent clips"):  # the comparison run begins (AppSession.run)
            self.label = "independent clips"
            self.events.put(message)
        else:
            self.events.put(f"{self.label}: {message}")

    def denoise_started(self, steps):
        self.steps = steps

    def denoise_step(self, step):
        self.events.put(f"{self.label}: denoising, step {step + 1} of {self.steps}")

    def decode_started(self, frames):
        self.frames, self.done = frames, 0
        self.events.put(f"{self.label}: decoding and writing, 0 of {frames} frames")

    def frames_written(self, count):
        self.done += count
        self.events.put(f"{self.label}: decoding and writing, {self.done} of {self.frames} frames")


def file_link(path: Path, text: str) -> str:
    return f"[{text}](/gradio_api/file={path})"  # served from base_path (launch's allowed_paths)


def describe(label: str, res: GenerationResult) -> str:
    return (f"**{label}**: wrote `{res.path.name}` ({res.describe()}). {summary_line(res.seams)}.  \n"
            f"{file_link(res.path, 'mp4')} · {file_link(res.sidecar, 'JSON sidecar')} · "
            f"{file_link(res.contact_sheet, 'contact sheet')}")


def seam_table(results: list[GenerationResult]) -> pd.DataFrame:
    """Seam value at each clip boundary (1 = like a step inside a clip), one series per video."""
    rows = []
    for label, res in zip(("Video-Infinity", "independent clips"), results):
        w = len(str(len(res.seams["seams"])))  # zero-padded names sort in clip order on the nominal axis
        for k, v in enumerate(res.seams["seams"]):
            rows.append({"boundary": f"{k:0{w}d}|{k + 1:0{w}d}", "seam": v if v is not None and math.isfinite(v) else None,
                         "video": label})
    return pd.DataFrame(rows, columns=["boundary", "seam", "video"])


def clip_map(prompts: str, num_clips) -> str:
    lines = [ln.strip() for ln in str(prompts or "").splitlines() if ln.strip()]
    try:
        n = int(num_clips)
    except (TypeError, ValueError):
        return ""
    if not lines or n < 1:
        return ""
    used = clip_prompts(lines, n)
    idle = [p for p in lines if p not in {u[2] for u in used}]
    return " · ".join([f"clips {a}–{b}: {p}" if a != b else f"clip {a}: {p}" for a, b, p in used]
                      + [f"no clip: {p} (more prompts than clips)" for p in idle])


def _input(f, value):
    if f.kind == "text":
        return gr.Textbox(value=value, label=f.label, lines=3, elem_id="prompts")
    if f.kind == "bool":
        return gr.Checkbox(value=bool(value), label=f.label)
    if f.kind == "choice":
        return gr.Dropdown(choices=list(f.choices), value=value, label=f.label)
    elem = f.key.split(".")[-1] if f.key.startswith("pipe_configs.") or "." not in f.key else None
    return gr.Number(value=value, label=f.label, precision=0 if f.kind == "int" else None, elem_id=elem)


def build_page(session: AppSession) -> gr.Blocks:
    launch, limits = session.launch, session.limits
    # Gradio serves copies of the videos from its cache: drop those older than an hour, hourly (the
    # files in base_path stay); no usage statistics leave the machine
    with gr.Blocks(title="vinf_jax: long videos", delete_cache=(3600, 3600), analytics_enabled=False) as page:
        gr.Markdown(f"## Video-Infinity: long videos from prompts\nModel `{launch.model}`; videos go to "
                    f"`{Path(launch.base_path).resolve()}` (both fixed at launch). At most {limits.max_frames} frames "
                    f"and {limits.max_pixels} pixels per frame. One generation runs at a time; others wait in line.")
        values = session.defaults()
        with gr.Row():
            with gr.Column(scale=2):
                boxes = {}  # config key -> component
                for f, v in zip(FIELDS, values):
                    if not f.advanced:
                        boxes[f.key] = _input(f, v)
                clips_md = gr.Markdown(clip_map(values[0], values[1]), elem_id="clip-map")
                with gr.Accordion("Video-Infinity settings", open=False):
                    for f, v in zip(FIELDS, values):
                        if f.advanced:
                            boxes[f.key] = _input(f, v)
                compare = gr.Checkbox(value=False, label="Compare with independent clips (same seed, no context)",
                                      elem_id="compare")
                button = gr.Button("Generate", variant="primary", elem_id="generate")
            with gr.Column(scale=3):
                status = gr.Markdown("", elem_id="status")
                with gr.Row():
                    video = gr.Video(label="Video-Infinity", elem_id="video", interactive=False, autoplay=True, loop=True)
                    alone = gr.Video(label="Independent clips", elem_id="video-independent", interactive=False,
                                     autoplay=True, loop=True, visible=False)
                sheet = gr.Image(label="Contact sheet (red bars: clip boundaries)", type="filepath", interactive=False,
                                 elem_id="contact-sheet")
                sheet_alone = gr.Image(label="Contact sheet, independent clips", type="filepath", interactive=False,
                                       visible=False)
                plot = gr.LinePlot(x="boundary", y="seam", color="video", label="Seam at each clip boundary "
                                   "(frame change across it / median change inside clips; 1 = no seam)",
                                   x_title="clips either side of the boundary", y_title="seam", elem_id="seam-plot")
                summary = gr.Markdown("", elem_id="summary")
        outputs = [status, video, alone, sheet, sheet_alone, plot, summary]
        ordered = [boxes[f.key] for f in FIELDS]
        for box in (ordered[0], ordered[1]):
            box.change(clip_map, [ordered[0], ordered[1]], clips_md, queue=False)

        def on_generate(*args):
            *vals, want_compare = args
            cleared = {video: None, alone: gr.update(value=None, visible=bool(want_compare)), sheet: None,
                       sheet_alone: gr.update(value=None, visible=bool(want_compare)), plot: None, summary: ""}
            try:
                cfg = session.config(vals)
            except VinfError as e:  # the CLI's message; nothing ran, nothing written
                yield {status: f"error: {e}", **cleared}
                return
            events: queue.Queue = queue.Queue()
            box: dict = {}

            def work():
                try:
                    with warnings.catch_warnings(record=True) as caught:
                        warnings.simplefilter("always", VinfWarning)
                        box["results"] = session.run(cfg, PageObserver(events), bool(want_compare))
                    box["warnings"] = [f"warning: {w.message}" for w in caught if issubclass(w.category, VinfWarning)]
                except VinfError as e:  # bad input found late, out of device memory, a full disk
                    box["error"] = f"error: {e}"
                except Exception as e:  # noqa: BLE001 - shown on the page; the app keeps serving
                    box["error"] = f"error: {type(e).__name__}: {e}"
                finally:
                    events.put(None)

            threading.Thread(target=work, name="vinf-app-generate", daemon=True).start()
            yield {status: "waiting for the devices ...", **cleared}
            while (line := events.get()) is not None:
                yield {status: line}
            if "error" in box:
                yield {status: box["error"]}
                return
            results = box["results"]
            text = [describe(label, r) for label, r in zip(("Video-Infinity", "independent clips"), results)]
            yield {status: "\n\n".join(["done"] + box["warnings"]), video: str(results[0].path),
                   sheet: str(results[0].contact_sheet), plot: seam_table(results), summary: "\n\n".join(text),
                   alone: gr.update(value=str(results[1].path) if len(results) > 1 else None, visible=len(results) > 1),
                   sheet_alone: gr.update(value=str(results[1].contact_sheet) if len(results) > 1 else None,
                                          visible=len(results) > 1)}

        button.click(on_generate, ordered + [compare], outputs, concurrency_limit=1, concurrency_id="mesh")
    return page
