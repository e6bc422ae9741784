"""``objtrack app``: click points on a video in the browser and watch them tracked.

A local web app (docs/app.md): open a video (upload, a path on this machine, or a generated
real-photo scene), scrub to any frame, click points there (queries at any frames), run with a
progress bar, watch the annotated video (H.264, optionally beside Lucas-Kanade and DIS on the same
points) and download the tracks as ``.npz``, ``.csv`` or ``.json``.

:mod:`objtrack_jax.app.engine` does the work (usable without a server), :mod:`.server` serves the
page in ``static/`` and its JSON API with Python's own ``http.server``. Nothing beyond the core
install is needed (the H.264 encoder is the core's imageio-ffmpeg), so the ``[app]`` extra is
empty.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import signal
import tempfile
import threading
from typing import Optional, Sequence

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 7860


def app_parser() -> argparse.ArgumentParser:
    from objtrack_jax.cli_args import add_checkpoint_arg, at_least
    from objtrack_jax.limits import DEFAULT_MAX_MINUTES, positive_minutes

    p = argparse.ArgumentParser(
        prog="objtrack app",
        description="Start a local web app: open a video, click points on any frames, track them "
                    "and download the tracks (docs/app.md).")
    p.add_argument("--host", default=DEFAULT_HOST,
                   help=f"address to listen on (default {DEFAULT_HOST}: this machine only; "
                        "0.0.0.0: every network interface, anyone who reaches it can use the app)")
    p.add_argument("--port", type=at_least(0), default=DEFAULT_PORT,
                   help=f"port (default {DEFAULT_PORT}; 0: any free port, printed at start)")
    add_checkpoint_arg(p)
    p.add_argument("--max-frames", type=at_least(2), default=600,
                   help="frames read from a video (the rest is ignored; default 600)")
    p.add_argument("--max-upload-mb", type=at_least(1), default=2048,
                   help="largest upload accepted, in MB (default 2048)")
    p.add_argument("--max-minutes", type=positive_minutes, default=DEFAULT_MAX_MINUTES,
                   metavar="MIN",
                   help="refuse a run whose estimated time is over MIN minutes (default "
                        f"{DEFAULT_MAX_MINUTES:g}; objtrack_jax.limits; a run going on can be "
                        "cancelled in the page)")
    p.add_argument("--allow-paths", action="store_true",
                   help="let the page open files by their path on this machine also when "
                        "--host is not a loopback address (always allowed on 127.0.0.1)")
    p.add_argument("--workdir", default=None,
                   help="scratch folder for uploads and results (default: a temporary folder, "
                        "removed on exit)")
    return p


def app_main(argv: Optional[Sequence[str]] = None) -> int:
    """Runs ``objtrack app`` until interrupted (Ctrl+C); returns 0."""
    from objtrack_jax.app import engine, media
    from objtrack_jax.app.server import LOCAL_NAMES, make_server
    from objtrack_jax.cli_args import load_model_or_exit

    parser = app_parser()
    args = parser.parse_args(argv)
    media.require_h264()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    server = make_server(None, args.host, args.port, args.max_upload_mb)  # a busy port: say so now
    try:
        model, params, info = load_model_or_exit(parser, args.checkpoint)
        root = args.workdir or tempfile.mkdtemp(prefix="objtrack-app-")
        workspace = engine.Workspace(model, params, info, os.path.join(root, "app"),
                                     max_frames=args.max_frames, max_minutes=args.max_minutes,
                                     allow_paths=args.allow_paths or args.host in LOCAL_NAMES)
        server.workspace = workspace
        if threading.current_thread() is threading.main_thread():  # SIGTERM stops as Ctrl+C does
            signal.signal(signal.SIGTERM, _interrupt)
        print(f"objtrack app: weights {workspace.weights_name}; serving on {server.url} "
              "(Ctrl+C stops)", flush=True)
        try:
            server.serve_forever(poll_interval=0.25)
        except KeyboardInterrupt:
            if threading.current_thread() is threading.main_thread():  # a second SIGTERM: no
                signal.signal(signal.SIGTERM, signal.SIG_IGN)            # interrupted clean-up
            print("objtrack app: stopped", flush=True)
        finally:
            workspace.close()
            if args.workdir is None:
                shutil.rmtree(root, ignore_errors=True)
    finally:
        server.server_close()
    return 0


def _interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")
