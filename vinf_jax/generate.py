"""python -m vinf_jax.generate --config FILE [--set key.path=value ...]

Reads an original Video-Infinity JSON config (plus vinf_jax keys), generates the long video as one
SPMD program over the device mesh, and writes ``base_path/<index>_<frames>_<steps>_<fps>.mp4`` and
its JSON sidecar (only process 0 writes). Bad input: one ``error:`` line, exit status 2, no file.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings

from vinf_jax.config import GenerateConfig, load_config
from vinf_jax.errors import VinfError, VinfWarning
from vinf_jax.flow import Observer, generate


def _parse(argv):
    ap = argparse.ArgumentParser(prog="python -m vinf_jax.generate", description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", required=True, help="JSON config (original Video-Infinity format)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="override a config key, e.g. --set pipe_configs.steps=10 (repeatable)")
    ap.add_argument("--quiet", action="store_true", help="no progress bar")
    ap.add_argument("--latents", metavar="FILE.latents.npy",
                    help="decode latents an earlier run of the same config kept (it ran out of device memory "
                         "while decoding) instead of denoising again")
    return ap.parse_args(argv)


class TerminalObserver(Observer):
    """Status lines on stderr and tqdm bars (denoising steps, then decoded frames); silent with ``quiet``."""

    def __init__(self, quiet: bool):
        self.quiet, self.bar = quiet, None

    def status(self, message):
        if not self.quiet:
            print(message, file=sys.stderr, flush=True)

    def _bar(self, total, desc, unit):
        self.close()
        if not self.quiet:
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc=desc, unit=unit, file=sys.stderr)

    def denoise_started(self, steps):
        self._bar(steps, "denoise", "step")

    def denoise_step(self, step):
        if self.bar is not None:
            self.bar.update(1)

    def decode_started(self, frames):
        self._bar(frames, "decode+write", "frame")

    def frames_written(self, count):
        if self.bar is not None:
            self.bar.update(count)

    def close(self):
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def run(cfg: GenerateConfig, quiet: bool = False, latents_file: str | None = None) -> dict:
    """One generation (``flow.generate``) with the terminal's status lines, bars and summary; the timings."""
    from vinf_jax.output.seams import summary_line

    shown = TerminalObserver(quiet)
    try:
        res = generate(cfg, shown, latents_file=latents_file)
    finally:
        shown.close()
    if res.path is not None:  # process 0
        print(f"wrote {res.path}  ({res.describe()})")
        print(f"{summary_line(res.seams)}; contact sheet {res.contact_sheet}")
    return res.summary


def _show_warning(message, category, filename, lineno, file=None, line=None):
    """Our warnings as one readable line (no source line echoed); others as Python prints them."""
    if issubclass(category, VinfWarning):
        print(f"warning: {message}", file=file or sys.stderr, flush=True)
    else:
        _python_showwarning(message, category, filename, lineno, file, line)


_python_showwarning = warnings.showwarning


def main(argv=None) -> int:
    args = _parse(argv)
    warnings.showwarning = _show_warning
    try:
        cfg = load_config(args.config, args.set)
        run(cfg, quiet=args.quiet, latents_file=args.latents)
    except VinfError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        # Output files only ever exist under temporary names, removed on the way out (video_io).
        # Exit now: a compiled loop may still be running on the devices, and waiting for it at
        # interpreter shutdown would make Ctrl-C take as long as the generation.
        print("interrupted: no output written", file=sys.stderr, flush=True)
        sys.stdout.flush()
        os._exit(130)
    finally:
        warnings.showwarning = _python_showwarning
    return 0


if __name__ == "__main__":
    sys.exit(main())
