"""The web server of ``objtrack app``: Python's own ``http.server`` (a thread per request), the page in
``static/`` (plain HTML, CSS and JavaScript shipped with the package; nothing is fetched from
elsewhere), and a small JSON API over :class:`~objtrack_jax.app.engine.Workspace`. One tracking
run at a time goes on in a background thread; the page polls its progress.

API (JSON unless noted)::

  GET  /                           the page
  GET  /static/<file>              its script and style
  GET  /api/info                   weights, validated settings, limits
  POST /api/open/upload?name=N     body: the file's bytes                   -> video
  POST /api/open/path              {"path": P}                              -> video
  POST /api/open/example                                                    -> video
  GET  /api/video/<id>/frame/<t>   frame t as a JPEG preview
  POST /api/run                    {"video", "points": [{"t", "x", "y"}], "baselines": ["lk", "dis"],
                                    "settings": {...}}                      -> {"job", "warnings"}
  GET  /api/job/<id>               {"state": "running"|"done"|"error"|"cancelled", "progress",
                                    "stage", "error", "result"}
  POST /api/job/<id>/cancel        stops the run at its next window or block of frames
                                                                            -> the job
  GET  /api/job/<id>/<file>        tracks.mp4 (byte ranges served), tracks.npz / .csv / .json

A cancel sets the job's flag; the run's progress callback, called at every window the tracker
reads and every block of frames drawn, sees it and stops the run there (nothing can stop a window
part-way), the run slot is freed and the job reports ``"cancelled"``.

Errors are ``{"error": message}``: status 400 (413 for an upload over the limit, 409 while a run
is going on or for a cancel of a finished run) for input the app refuses, with the message shown in the page as it is; 500 for a
failure of the app itself, whose detail and traceback go to the server log. Every POST must
carry the header ``X-Objtrack: 1`` (a page of another site cannot send it without a CORS
preflight, which this server never grants), and the ``Host`` header must name this server.
"""

from __future__ import annotations

import http.server
import json
import logging
import mimetypes
import os
import re
import shutil
import socket
import threading
import time
import traceback
import urllib.parse
import uuid
from typing import Optional

from objtrack_jax.app.engine import Workspace
from objtrack_jax.app.media import BASELINE_NAMES, PALETTE, AppError

log = logging.getLogger(__name__)

STATIC_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "static")
STATIC_FILES = {"index.html", "app.js", "app.css"}
RESULT_FILES = {"tracks.mp4": "video/mp4", "tracks.npz": "application/octet-stream",
                "tracks.csv": "text/csv", "tracks.json": "application/json"}
LOCAL_NAMES = {"localhost", "127.0.0.1", "::1"}
CHUNK = 1 << 20


class HttpError(Exception):
    """A refusal with its own status code."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


class RunCancelled(Exception):
    """Raised by a run's progress callback once its job was cancelled."""


class Job:
    """A tracking run: its state as the page sees it; ``cancel`` is set to stop it."""

    def __init__(self, video_name: str, out_dir: str):
        self.id = uuid.uuid4().hex[:12]
        self.video_name, self.out_dir = video_name, out_dir
        self.cancel = threading.Event()
        self.state, self.progress, self.stage = "running", 0.0, "starting"
        self.error: Optional[str] = None
        self.result: Optional[dict] = None
        self.started = time.time()

    def public(self) -> dict:
        out = {"id": self.id, "state": self.state, "progress": round(self.progress, 4),
               "stage": self.stage, "error": self.error,
               "elapsed": round(time.time() - self.started, 1)}
        if self.result is not None:
            stem = os.path.splitext(self.video_name)[0] or "video"
            out["result"] = {
                **{k: v for k, v in self.result.items() if k != "files"},
                "files": {kind: f"/api/job/{self.id}/{os.path.basename(path)}"
                          for kind, path in self.result["files"].items()},
                "download_stem": re.sub(r"[^A-Za-z0-9._-]+", "_", stem) + "_tracks"}
        return out


class AppServer(http.server.ThreadingHTTPServer):
    """The HTTP server with the workspace, the jobs and the upload limit."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, workspace: Optional[Workspace], host: str, port: int, max_upload_mb: int):
        self.address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
        super().__init__((host, port), Handler)
        self.workspace, self.max_upload = workspace, int(max_upload_mb) * 2 ** 20
        self.jobs: dict[str, Job] = {}
        self.busy = threading.Lock()
        self.any_host = host in ("0.0.0.0", "::", "")
        self.host_names = LOCAL_NAMES | {host}

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{'[' + host + ']' if ':' in host else host}:{port}/"

    def start_run(self, req) -> Job:
        """Starts ``req`` (a checked :class:`~objtrack_jax.app.engine.RunRequest`) in a thread."""
        if not self.busy.acquire(blocking=False):
            raise HttpError(409, "a tracking run is already going on; wait for it to finish")
        try:
            out_dir = os.path.join(self.workspace.root, "runs", uuid.uuid4().hex[:12])
            job = Job(req.video.name, out_dir)
            self.jobs[job.id] = job
            threading.Thread(target=self._run, args=(job, req), daemon=True,
                             name=f"objtrack-run-{job.id}").start()
        except BaseException:
            self.busy.release()
            raise
        return job

    def cancel_run(self, job: Job) -> Job:
        """Asks ``job`` to stop (:class:`RunCancelled` at its next progress report)."""
        if job.state != "running":
            raise HttpError(409, f"that run has already ended ({job.state})")
        job.cancel.set()
        job.stage = "cancelling (at the end of the current window)"
        return job

    def _run(self, job: Job, req) -> None:
        def report(fraction, stage):
            if job.cancel.is_set():
                raise RunCancelled()
            job.progress, job.stage = max(job.progress, float(fraction)), stage

        try:
            job.result = self.workspace.run(req, job.out_dir, report)
            job.state, job.stage = "done", "done"
        except RunCancelled:
            log.info("run %s on %s cancelled after %.1f s", job.id, job.video_name,
                     time.time() - job.started)
            job.state, job.stage = "cancelled", "cancelled"
            shutil.rmtree(job.out_dir, ignore_errors=True)
        except (AppError, MemoryError, ValueError, OSError, FloatingPointError) as e:
            log.warning("run %s on %s failed: %s\n%s", job.id, job.video_name, e,
                        traceback.format_exc())
            job.error, job.state = f"{e}", "error"
        except Exception as e:  # pylint: disable=broad-except
            log.error("run %s on %s failed with an internal error", job.id, job.video_name,
                      exc_info=True)
            job.error = (f"internal error ({type(e).__name__}: {e}); the server log has the "
                         "details")
            job.state = "error"
        finally:
            self.busy.release()


class Handler(http.server.BaseHTTPRequestHandler):
    server: AppServer
    protocol_version = "HTTP/1.1"
    server_version = "objtrack-app"

    def log_message(self, fmt, *args):  # requests at debug level; errors are logged where raised
        log.debug("%s " + fmt, self.address_string(), *args)

    # -- responses ---------------------------------------------------------------------------------

    def _send(self, status: int, body: bytes, ctype: str, headers: Optional[dict] = None):
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, obj, status: int = 200):
        self._send(status, json.dumps(obj).encode(), "application/json")

    def _file(self, path: str, ctype: str, download: Optional[str] = None):
        """A file, with one byte range when asked (the video element seeks with them)."""
        size = os.path.getsize(path)
        start, end, status = 0, size - 1, 200
        rng = self.headers.get("Range")
        m = re.fullmatch(r"bytes=(\d*)-(\d*)", rng.strip()) if rng else None
        if m and (m.group(1) or m.group(2)):
            if m.group(1):
                start = int(m.group(1))
                end = min(int(m.group(2)), size - 1) if m.group(2) else size - 1
            else:
                start = max(0, size - int(m.group(2)))
            if start > end or start >= size:
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{size}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            status = 206
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(end - start + 1))
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Cache-Control", "no-store")
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        if download:
            self.send_header("Content-Disposition", f'attachment; filename="{download}"')
        self.end_headers()
        if self.command == "HEAD":
            return
        with open(path, "rb") as f:
            f.seek(start)
            left = end - start + 1
            while left > 0:
                data = f.read(min(CHUNK, left))
                if not data:
                    break
                self.wfile.write(data)
                left -= len(data)

    # -- dispatch ----------------------------------------------------------------------------------

    def do_GET(self):
        self._handle(self._get)

    def do_HEAD(self):
        self._handle(self._get)

    def do_POST(self):
        self._handle(self._post)

    def _handle(self, route):
        url = urllib.parse.urlsplit(self.path)
        try:
            self._check_host()
            route(url.path, urllib.parse.parse_qs(url.query))
        except (BrokenPipeError, ConnectionResetError):
            log.debug("client went away during %s %s", self.command, url.path)
        except AppError as e:
            log.warning("%s %s refused: %s", self.command, url.path, e)
            self._json({"error": str(e)}, 400)
        except HttpError as e:
            log.warning("%s %s refused (%d): %s", self.command, url.path, e.status, e)
            self._json({"error": str(e)}, e.status)
        except Exception as e:  # pylint: disable=broad-except
            log.error("%s %s failed", self.command, url.path, exc_info=True)
            try:
                self._json({"error": f"internal error ({type(e).__name__}: {e}); the server "
                                     "log has the details"}, 500)
            except OSError:
                pass

    def _check_host(self):
        if self.server.any_host:
            return
        host = (self.headers.get("Host") or "").strip()
        name = host[1:host.index("]")] if host.startswith("[") and "]" in host else host.rsplit(":", 1)[0]
        if name not in self.server.host_names:
            raise HttpError(421, f"this server answers to {sorted(self.server.host_names)}, not "
                                 f"{host!r}")

    def _get(self, path: str, query: dict):
        ws = self.server.workspace
        if path in ("/", "/index.html"):
            return self._static("index.html")
        if path.startswith("/static/"):
            return self._static(path[len("/static/"):])
        if path == "/api/info":
            return self._json({"weights": ws.weights_name, "defaults": ws.defaults,
                               "max_upload_mb": self.server.max_upload // 2 ** 20,
                               "max_frames": ws.max_frames, "allow_paths": ws.allow_paths,
                               "baselines": BASELINE_NAMES, "palette": PALETTE,
                               "max_minutes": ws.max_minutes})
        m = re.fullmatch(r"/api/video/([0-9a-f]+)/frame/(\d+)", path)
        if m:
            return self._file(ws.preview_path(m.group(1), int(m.group(2))), "image/jpeg")
        m = re.fullmatch(r"/api/job/([0-9a-f]+)", path)
        if m:
            return self._json(self._job(m.group(1)).public())
        m = re.fullmatch(r"/api/job/([0-9a-f]+)/([a-z0-9.]+)", path)
        if m and m.group(2) in RESULT_FILES:
            job = self._job(m.group(1))
            if job.state != "done":
                raise HttpError(404, "that run has no results (yet)")
            stem = job.public()["result"]["download_stem"]
            ext = m.group(2).rsplit(".", 1)[1]
            return self._file(os.path.join(job.out_dir, m.group(2)), RESULT_FILES[m.group(2)],
                              None if ext == "mp4" else f"{stem}.{ext}")
        raise HttpError(404, f"no such page: {path}")

    def _job(self, job_id: str) -> Job:
        job = self.server.jobs.get(job_id)
        if job is None:
            raise HttpError(404, "no such run (the server was restarted?)")
        return job

    def _static(self, name: str):
        if name not in STATIC_FILES:
            raise HttpError(404, f"no such file: {name}")
        ctype = mimetypes.guess_type(name)[0] or "application/octet-stream"
        with open(os.path.join(STATIC_DIR, name), "rb") as f:
            self._send(200, f.read(), ctype + ("; charset=utf-8" if ctype.startswith("text/") or
                                                ctype.endswith("javascript") else ""))

    def _post(self, path: str, query: dict):
        if self.headers.get("X-Objtrack") != "1":
            raise HttpError(403, "requests to this API come from its own page (X-Objtrack header)")
        ws = self.server.workspace
        if path == "/api/open/upload":
            return self._upload((query.get("name") or ["upload"])[0])
        body = self._read_json()
        if path == "/api/open/path":
            return self._json(ws.open_path(body.get("path", "")).public())
        if path == "/api/open/example":
            return self._json(ws.open_example().public())
        m = re.fullmatch(r"/api/job/([0-9a-f]+)/cancel", path)
        if m:
            return self._json(self.server.cancel_run(self._job(m.group(1))).public())
        if path == "/api/run":
            req = ws.check_run(body.get("video", ""), body.get("points"), body.get("settings") or {},
                               body.get("baselines") or ())
            job = self.server.start_run(req)
            return self._json({"job": job.id, "warnings": req.warnings})
        raise HttpError(404, f"no such action: {path}")

    def _length(self) -> int:
        try:
            n = int(self.headers.get("Content-Length", ""))
        except ValueError:
            self.close_connection = True
            raise HttpError(411, "the request has no Content-Length") from None
        if n < 0:
            self.close_connection = True
            raise HttpError(400, "negative Content-Length")
        return n

    def _read_json(self) -> dict:
        n = self._length()
        if n > 2 ** 20:
            self.close_connection = True
            raise HttpError(413, "request too large")
        raw = self.rfile.read(n) if n else b"{}"
        try:
            body = json.loads(raw or b"{}")
        except (ValueError, UnicodeDecodeError):
            raise AppError("the request is not valid JSON") from None
        if not isinstance(body, dict):
            raise AppError("the request must be a JSON object")
        return body

    def _upload(self, name: str):
        n = self._length()
        limit = self.server.max_upload
        if n > limit:
            left = n if n <= 2 * limit else 0  # read and dropped, so that the client reads
            while left > 0:                      # the answer (a larger body: cut off)
                data = self.rfile.read(min(CHUNK, left))
                if not data:
                    break
                left -= len(data)
            self.close_connection = True
            raise HttpError(413, f"{os.path.basename(name)} is {n / 2 ** 20:,.0f} MB; uploads are "
                                 f"limited to {limit // 2 ** 20:,} MB (objtrack app "
                                 "--max-upload-mb), or open it by its path on this machine")
        ws = self.server.workspace
        stored = ws.new_upload_path(name)
        left = n
        try:
            with open(stored, "wb") as f:
                while left > 0:
                    data = self.rfile.read(min(CHUNK, left))
                    if not data:
                        raise AppError(f"{os.path.basename(name)}: the upload was cut off "
                                       f"({n - left:,} of {n:,} bytes arrived)")
                    f.write(data)
                    left -= len(data)
            video = ws.open_upload(name, stored)
        except BaseException:
            shutil.rmtree(os.path.dirname(stored), ignore_errors=True)
            raise
        log.info("upload %s: %d bytes", name, n)
        self._json(video.public())


def make_server(workspace: Optional[Workspace], host: str = "127.0.0.1", port: int = 7860,
                max_upload_mb: int = 2048) -> AppServer:
    """A bound (not yet serving) :class:`AppServer`; ``port`` 0 picks a free port (see ``.url``).
    ``workspace`` may be set later (``server.workspace = ...``), before serving."""
    try:
        return AppServer(workspace, host, port, max_upload_mb)
    except OSError as e:
        raise ValueError(f"cannot listen on {host}:{port} ({e.strerror or e}); pick another "
                         "--port (0: any free port) or --host") from None
