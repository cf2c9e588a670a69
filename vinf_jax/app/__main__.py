"""python -m vinf_jax.app [--model tiny-demo] [--config configs/demo.json] [--base-path exp]
[--host 127.0.0.1] [--port 7860] [--max-frames N] [--max-pixels N]

A web page for long videos on one host (Gradio, ``pip install -e '.[app]'``). The model, the output
folder and the limits are fixed here; the page sets prompts and settings only. Bad launch values:
one ``error:`` line, exit status 2.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from pathlib import Path

from vinf_jax.errors import ConfigError, VinfError


def _parse(argv):
    ap = argparse.ArgumentParser(prog="python -m vinf_jax.app", description=__doc__.split("\n\n")[1].split(".")[0])
    ap.add_argument("--config", default="configs/demo.json", help="the config the page starts from")
    ap.add_argument("--model", help="override the config's model (a converted folder, tiny-demo or tiny-random)")
    ap.add_argument("--base-path", help="override the config's base_path: where videos are written")
    ap.add_argument("--host", default="127.0.0.1", help="address to listen on (loopback unless you name another)")
    ap.add_argument("--port", type=int, default=7860)
    ap.add_argument("--max-frames", type=int, default=256, help="most frames (clips x frames per clip) a page may ask")
    ap.add_argument("--max-pixels", type=int, default=320 * 512, help="most pixels per frame (height x width)")
    return ap.parse_args(argv)


def main(argv=None) -> int:
    args = _parse(argv)
    from vinf_jax.generate import _python_showwarning, _show_warning

    warnings.showwarning = _show_warning
    try:
        from vinf_jax.app.session import AppSession, Limits
        from vinf_jax.config import load_config
        from vinf_jax.launchers import detect_job

        sets = [f"model={args.model}"] * bool(args.model) + [f"base_path={args.base_path}"] * bool(args.base_path)
        launch = load_config(args.config, sets)
        if detect_job(launch.distributed).multi_process:
            raise ConfigError("distributed: the app runs on one host; multi-host jobs use the CLI "
                              "(python -m vinf_jax.generate)")
        for name, value in (("--max-frames", args.max_frames), ("--max-pixels", args.max_pixels)):
            if value < 1:
                raise ConfigError(f"{name} {value}: a positive integer")
        try:
            from vinf_jax.app.page import THEME, build_page
        except ImportError as e:
            raise ConfigError(f"the app needs Gradio ({e}): pip install -e '.[app]'") from None
        session = AppSession(launch, Limits(args.max_frames, args.max_pixels))
        print(f"loading {launch.model} ...", file=sys.stderr, flush=True)
        session.preload()
    except VinfError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    finally:
        warnings.showwarning = _python_showwarning
    base = Path(launch.base_path).resolve()
    base.mkdir(parents=True, exist_ok=True)  # the links to the files are served from here alone
    page = build_page(session)
    page.queue(default_concurrency_limit=1).launch(server_name=args.host, server_port=args.port,
                                                   allowed_paths=[str(base)], show_error=True, quiet=False,
                                                   theme=THEME)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # nothing leaves the machine
    sys.exit(main())
