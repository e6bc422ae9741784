"""``objtrack app``: the checks behind the page, the HTTP API's refusals, and the whole app driven by a
real headless Chromium (Debian's ``chromium`` through Playwright; skipped with the reason when
either is missing)."""

import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
import urllib.error
import urllib.request

import cv2
import numpy as np
import pytest

from objtrack_jax.app import engine
from objtrack_jax.app.engine import AppError, OpenedVideo, Workspace

T, H, W = 12, 128, 160


def _write_clip(path, frames=T, size=(H, W)):
    """A short textured video that slides right and down (mp4v, read back by OpenCV)."""
    h, w = size
    rng = np.random.default_rng(0)
    texture = cv2.GaussianBlur((rng.random((h + 2 * frames, w + 2 * frames, 3)) * 255).astype(np.uint8),
                               (7, 7), 2)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 12, (w, h))
    assert writer.isOpened()
    for t in range(frames):
        writer.write(np.ascontiguousarray(texture[t:t + h, 2 * t:2 * t + w]))
    writer.release()
    return str(path)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """A workspace whose model is never run (no parameters): the checks need only its shape."""
    from conftest import SMALL_TRACKER
    from objtrack_jax.models.tracker import tracker_from_config

    info = {"inference": {"window": 8, "iters": 4, "short_side": 128}}
    ws = Workspace(tracker_from_config(SMALL_TRACKER), None, info, str(tmp_path_factory.mktemp("app")))
    yield ws
    ws.close()


def _fake_video(ws, frames=T, height=H, width=W):
    video = OpenedVideo("0123456789ab", "clip.mp4", "/nonexistent", frames, height, width, 12.0,
                        "/nonexistent")
    ws.videos[video.id] = video
    return video


# --------------------------------------------------------------------------------------------------
# The checks behind the page (no server, no browser)
# --------------------------------------------------------------------------------------------------


def test_check_run_accepts_queries_at_several_frames(workspace):
    video = _fake_video(workspace)
    req = workspace.check_run(video.id, [{"t": 0, "x": 10.25, "y": 20}, {"t": 5, "x": -0.5, "y": 127.5}],
                              {"iters": "2", "refine_scale": "0", "window": ""}, ["lk"])
    np.testing.assert_array_equal(req.queries, np.float32([[0, 20, 10.25], [5, 127.5, -0.5]]))
    assert req.settings.iters == 2 and req.settings.window == 8  # empty field: the validated value
    assert req.settings.refine_scale is None and req.baselines == ("lk",)
    assert req.resolution == (128, 160)


@pytest.mark.parametrize("points, form, baselines, message", [
    ([], {}, (), "click at least one point"),
    ([{"t": 0, "x": 160, "y": 3}], {}, (), r"point 1 \(x 160, y 3\) is outside the 160x128 frame"),
    ([{"t": 0, "x": 3, "y": -0.6}], {}, (), "outside the 160x128 frame"),
    ([{"t": 12, "x": 3, "y": 3}], {}, (), r"frame 12 is not a frame of this video \(0 to 11\)"),
    ([{"t": 1.5, "x": 3, "y": 3}], {}, (), "frame 1.5 is not a frame"),
    ([{"t": 0, "x": "a", "y": 3}], {}, (), "point 1: x must be a number"),
    ([{"t": 0, "x": 3, "y": 3}], {"window": 1}, (), "window: 1 is not allowed: must be >= 2"),
    ([{"t": 0, "x": 3, "y": 3}], {"iters": "many"}, (), "iterations: expected an integer"),
    ([{"t": 0, "x": 3, "y": 3}], {"refine_scale": 9}, (), "second pass scale: .*between 1 and 8"),
    ([{"t": 0, "x": 3, "y": 3}], {"short_side": 100}, (), "short side: 100 is not allowed"),
    ([{"t": 0, "x": 3, "y": 3}], {"max_memory_mb": 32}, (), r"memory budget \(MB\): 32 is not allowed"),
    ([{"t": 0, "x": 3, "y": 3}], {"colour": 1}, (), "unknown setting 'colour'"),
    ([{"t": 0, "x": 3, "y": 3}], {}, ("sift",), "unknown comparison 'sift'"),
])
def test_check_run_refuses_bad_input_with_a_message(workspace, points, form, baselines, message):
    video = _fake_video(workspace)
    with pytest.raises(AppError, match=message):
        workspace.check_run(video.id, points, form, baselines)


def test_check_run_refuses_a_run_over_the_memory_budget(workspace):
    video = _fake_video(workspace, frames=2000, height=480, width=640)
    point = [{"t": 0, "x": 3, "y": 3}]
    workspace.check_run(video.id, point, {"max_memory_mb": 64})  # tracking alone streams frames
    need = (2000 * 480 * 640 * 4 + 480 * 640 * 8) / 2 ** 20  # frames, grey and a flow field
    with pytest.raises(AppError, match=rf"too large for the memory budget: .*2000 frames of "
                                       rf"640x480 with Lucas-Kanade needs an estimated {need:,.0f} "
                                       r"MB but the budget is 64 MB"):
        workspace.check_run(video.id, point, {"max_memory_mb": 64}, ["lk"])


def test_check_run_refuses_an_unknown_video(workspace):
    with pytest.raises(AppError, match="no longer open"):
        workspace.check_run("feedbeef", [{"t": 0, "x": 1, "y": 1}])


def test_open_upload_reads_a_video_and_refuses_a_text_file(workspace, tmp_path):
    stored = workspace.new_upload_path("my clip.mp4")
    shutil.copy(_write_clip(tmp_path / "clip.mp4"), stored)
    video = workspace.open_upload("my clip.mp4", stored)
    assert (video.num_frames, video.height, video.width, video.fps) == (T, H, W, 12.0)
    previews = sorted(os.listdir(video.previews))
    assert previews == [f"{t:06d}.jpg" for t in range(T)]
    assert cv2.imread(workspace.preview_path(video.id, T - 1)).shape == (H, W, 3)
    with pytest.raises(AppError, match="frame 12 outside"):
        workspace.preview_path(video.id, T)

    stored = workspace.new_upload_path("notes.txt")
    with open(stored, "w") as f:
        f.write("not a video\n" * 20)
    with pytest.raises(AppError, match=r"^notes.txt: not a readable video"):
        workspace.open_upload("notes.txt", stored)
    stored = workspace.new_upload_path("empty.mp4")
    open(stored, "wb").close()
    with pytest.raises(AppError, match=r"empty.mp4: empty file \(0 bytes\)"):
        workspace.open_upload("empty.mp4", stored)


def test_open_path_refuses_what_is_not_there_or_not_allowed(workspace, tmp_path):
    with pytest.raises(AppError, match="no such file or folder"):
        workspace.open_path(str(tmp_path / "missing.mp4"))
    with pytest.raises(AppError, match="type the path"):
        workspace.open_path("  ")
    workspace.allow_paths = False
    try:
        with pytest.raises(AppError, match="opening paths on the server is off"):
            workspace.open_path(str(tmp_path))
    finally:
        workspace.allow_paths = True


def test_write_tracks_formats(tmp_path):
    video = OpenedVideo("v", "clip.mp4", "/x", 3, H, W, 12.0, "/x")
    queries = np.float32([[0, 20, 10.5], [2, 30, 40]])
    tracks = np.arange(12, dtype=np.float32).reshape(2, 3, 2)
    visible = np.array([[1, 0, 1], [1, 1, 1]], bool)
    lk = tracks + 1
    paths = engine.write_tracks(str(tmp_path), video, queries,
                                [("objtrack_jax", tracks, visible), ("dis", lk, None)],
                                np.zeros((2, 3), np.float32), {"window": 8}, (128, 160), "w")
    d = np.load(paths["npz"], allow_pickle=False)
    np.testing.assert_array_equal(d["query_points"], queries)
    np.testing.assert_array_equal(d["tracks"], tracks)
    np.testing.assert_array_equal(d["visible"], visible)
    np.testing.assert_array_equal(d["tracks_dis"], lk)
    assert "visible_dis" not in d.files and d["vis_logits"].shape == (2, 3)
    assert json.loads(str(d["info_json"]))["settings"]["resolution"] == [128, 160]
    with open(paths["csv"]) as f:
        rows = [line.rstrip("\n").split(",") for line in f]
    assert tuple(rows[0]) == engine.CSV_COLUMNS and len(rows) == 1 + 2 * 2 * 3
    assert rows[1] == ["objtrack_jax", "0", "0", "0.000", "1.000", "1", "0"]
    assert rows[2][5] == "0" and rows[4 + 2][6] == "2"
    assert rows[-1] == ["dis", "1", "2", "11.000", "12.000", "", "2"]
    with open(paths["json"]) as f:
        doc = json.load(f)
    assert doc["queries"][1] == {"point": 1, "frame": 2, "x": 40.0, "y": 30.0}
    assert doc["methods"]["objtrack_jax"]["tracks"][1][2] == [10.0, 11.0]
    assert doc["methods"]["dis"]["visible"] is None and doc["num_frames"] == 3


# --------------------------------------------------------------------------------------------------
# The HTTP API's refusals (a server in this process, no browser)
# --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def api(workspace):
    from objtrack_jax.app.server import make_server

    server = make_server(workspace, "127.0.0.1", 0, max_upload_mb=1)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def _call(server, method, path, body=None, headers=None):
    h = {"X-Objtrack": "1", "Content-Type": "application/json"}
    h.update(headers or {})
    data = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
    req = urllib.request.Request(server.url.rstrip("/") + path, data=data, method=method,
                                 headers={k: v for k, v in h.items() if v is not None})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, r.read(), dict(r.headers)
    except urllib.error.HTTPError as e:
        return e.code, e.read(), dict(e.headers)


def test_api_refusals_are_json_messages(api):
    status, body, _ = _call(api, "POST", "/api/open/example", {}, {"X-Objtrack": None})
    assert status == 403 and "X-Objtrack" in json.loads(body)["error"]
    status, body, _ = _call(api, "GET", "/api/info", headers={"Host": "evil.example:80"})
    assert status == 421 and "evil.example" in json.loads(body)["error"]
    status, body, _ = _call(api, "GET", "/api/nothing")
    assert status == 404 and json.loads(body)["error"] == "no such page: /api/nothing"
    status, body, _ = _call(api, "GET", "/static/../engine.py")
    assert status == 404
    status, body, _ = _call(api, "POST", "/api/open/upload?name=big.mp4", b"x" * (2 ** 20 + 1),
                            {"Content-Type": "application/octet-stream"})
    assert status == 413 and "limited to 1 MB" in json.loads(body)["error"]
    status, body, _ = _call(api, "POST", "/api/run", b"{not json")
    assert status == 400 and json.loads(body)["error"] == "the request is not valid JSON"
    status, body, _ = _call(api, "GET", "/api/job/abcdef")
    assert status == 404 and "no such run" in json.loads(body)["error"]
    status, body, _ = _call(api, "GET", "/api/info")
    info = json.loads(body)
    assert status == 200 and info["defaults"]["window"] == 8 and info["defaults"]["short_side"] == 128


def test_api_upload_then_frames_with_byte_ranges(api, tmp_path):
    clip = _write_clip(tmp_path / "clip.mp4")
    with open(clip, "rb") as f:
        status, body, _ = _call(api, "POST", "/api/open/upload?name=clip.mp4", f.read(),
                                {"Content-Type": "application/octet-stream"})
    video = json.loads(body)
    assert status == 200 and video["num_frames"] == T and (video["height"], video["width"]) == (H, W)
    status, whole, headers = _call(api, "GET", f"/api/video/{video['id']}/frame/3")
    assert status == 200 and headers["Content-Type"] == "image/jpeg"
    assert cv2.imdecode(np.frombuffer(whole, np.uint8), cv2.IMREAD_COLOR).shape == (H, W, 3)
    status, part, headers = _call(api, "GET", f"/api/video/{video['id']}/frame/3",
                                  headers={"Range": "bytes=10-19"})
    assert status == 206 and part == whole[10:20]
    assert headers["Content-Range"] == f"bytes 10-19/{len(whole)}"
    status, body, _ = _call(api, "GET", f"/api/video/{video['id']}/frame/{T}")
    assert status == 400 and "outside the video's 12 frames" in json.loads(body)["error"]


# --------------------------------------------------------------------------------------------------
# The whole app in a real browser
# --------------------------------------------------------------------------------------------------

CHROMIUM = os.environ.get("OBJTRACK_CHROMIUM") or shutil.which("chromium") or shutil.which(
    "chromium-browser")


def _browser():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("playwright is not installed (pip install playwright; .ci/run installs it)")
    if CHROMIUM is None:
        pytest.skip("no chromium binary (apt-get install chromium; .ci/run installs it; or set "
                    "OBJTRACK_CHROMIUM)")
    return sync_playwright


@pytest.fixture()
def app_server(tmp_path, cache_dir):
    """``objtrack app --port 0`` in a subprocess; yields ``(url, log lines)``."""
    env = dict(os.environ, OBJTRACK_COMPILATION_CACHE=cache_dir, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen([sys.executable, "-m", "objtrack_jax.cli", "app", "--port", "0",
                             "--workdir", str(tmp_path / "work")],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    lines: "queue.Queue[str]" = queue.Queue()
    log = []

    def pump():
        for line in proc.stdout:
            log.append(line)
            lines.put(line)
    threading.Thread(target=pump, daemon=True).start()
    url = None
    try:
        while url is None:
            line = lines.get(timeout=180)
            if "serving on " in line:
                url = line.split("serving on ")[1].split()[0]
        yield url, log
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            code = proc.wait()
    assert code == 0, "".join(log[-30:])
    assert not os.path.exists(tmp_path / "work" / "app"), "the scratch folder was not removed"


def test_click_to_track_in_chromium(app_server, tmp_path):
    sync_playwright = _browser()
    url, server_log = app_server
    clip = _write_clip(tmp_path / "clip.mp4")
    notes = tmp_path / "notes.txt"
    notes.write_text("these are notes, not a video\n" * 10)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 1400}, accept_downloads=True)
            page_errors = []
            page.on("pageerror", lambda e: page_errors.append(str(e)))
            page.goto(url)
            page.wait_for_function("window.objtrackApp && window.objtrackApp.info !== null")

            page.set_input_files("#file-input", clip)
            page.wait_for_selector("#viewer:not([hidden])", timeout=30000)
            page.wait_for_function("document.getElementById('frame-label').textContent"
                                   ".startsWith('frame 0 of 0-11')")
            canvas = page.locator("#frame-canvas")
            clicks = [(0, 0.25, 0.3), (0, 0.7, 0.6), (5, 0.5, 0.75)]  # (frame, x, y) fractions
            for t, fx, fy in clicks:
                if t != int(page.evaluate("window.objtrackApp.frame")):
                    page.locator("#frame-slider").fill(str(t))  # scrub
                    page.wait_for_function(f"window.objtrackApp.frame === {t}")
                box = canvas.bounding_box()
                page.mouse.click(box["x"] + fx * box["width"], box["y"] + fy * box["height"])
            points = page.evaluate("window.objtrackApp.points")
            assert [p["t"] for p in points] == [0, 0, 5]
            for p_, (_, fx, fy) in zip(points, clicks):  # where the clicks were, in video pixels
                assert abs(p_["x"] - (fx * W - 0.5)) < 0.6 and abs(p_["y"] - (fy * H - 0.5)) < 0.6
            assert page.locator("#points tbody tr").count() == 3

            box = page.locator("#stage").bounding_box()  # the stage's margin: outside the frame
            page.mouse.click(box["x"] + 4, box["y"] + 4)
            assert "outside the frame" in page.locator("#message").inner_text()
            assert len(page.evaluate("window.objtrackApp.points")) == 3

            page.locator("#advanced summary").click()  # tiny settings for a fast test
            page.fill("#set-short_side", "128")
            page.fill("#set-iters", "2")
            page.fill("#set-refine_scale", "0")
            page.check("#cmp-lk")
            page.click("#run-button")
            page.wait_for_function("window.objtrackApp.job && window.objtrackApp.job.state !== "
                                   "'running'", timeout=300000)
            job = page.evaluate("window.objtrackApp.job")
            assert job["state"] == "done", job
            page.wait_for_selector("#result:not([hidden])")

            # the result video plays: a duration, time goes on, a decoded frame with content
            page.wait_for_function("document.getElementById('result-video').readyState >= 2",
                                   timeout=30000)
            page.wait_for_function("document.getElementById('result-video').currentTime > 0",
                                   timeout=30000)
            video = page.evaluate("""() => new Promise((done) => {
                const v = document.getElementById('result-video');
                v.pause();
                v.addEventListener('seeked', () => {
                    const c = document.createElement('canvas');
                    c.width = v.videoWidth; c.height = v.videoHeight;
                    const ctx = c.getContext('2d');
                    ctx.drawImage(v, 0, 0);
                    const px = Array.from(ctx.getImageData(0, 0, c.width, c.height).data);
                    done({duration: v.duration, width: v.videoWidth, height: v.videoHeight,
                          pixels: px});
                }, {once: true});
                v.currentTime = 0;
            })""")
            assert video["duration"] > 0, {k: v for k, v in video.items() if k != "pixels"}
            # two panels (model | LK), each enlarged 3x to engine.PANEL_MIN_WIDTH = 480 px
            assert (video["width"], video["height"]) == (2 * 3 * W + engine.PANEL_GAP, 3 * H)
            frame0 = np.asarray(video["pixels"], np.uint8).reshape(3 * H, -1, 4)[..., :3]
            assert frame0.std() > 5
            points = page.evaluate("window.objtrackApp.points")
            for i, p_ in enumerate(points[:2]):  # frame 0: each query's marker in its colour
                x, y = (round((p_[k] + 0.5) * 3 - 0.5) for k in ("x", "y"))
                want = np.array([int(engine.PALETTE[i][k:k + 2], 16) for k in (1, 3, 5)])
                got = frame0[y - 1:y + 2, x - 1:x + 2].reshape(-1, 3).astype(int)
                assert np.abs(got - want).sum(-1).min() < 90, (i, got, want)

            with page.expect_download() as download:
                page.click("#dl-npz")
            assert download.value.suggested_filename == "clip_tracks.npz"
            npz_path = tmp_path / "tracks.npz"
            download.value.save_as(npz_path)
            d = np.load(npz_path, allow_pickle=False)
            want = np.float32([[p_["t"], p_["y"], p_["x"]] for p_ in points])
            np.testing.assert_array_equal(d["query_points"], want)  # exactly the clicks
            assert d["tracks"].shape == (3, T, 2) and d["visible"].shape == (3, T)
            assert d["tracks_lk"].shape == (3, T, 2)
            for i, (t, y, x) in enumerate(want):
                np.testing.assert_array_equal(d["tracks"][i, int(t)], [x, y])
            assert np.all(np.isfinite(d["tracks"]))
            assert json.loads(str(d["info_json"]))["settings"]["iters"] == 2

            # a text file: a message in the page, the video stays open
            page.set_input_files("#file-input", str(notes))
            page.wait_for_function("document.getElementById('message').textContent"
                                   ".includes('not a readable video')", timeout=30000)
            message = page.locator("#message").inner_text()
            assert message.startswith("notes.txt: not a readable video"), message
            assert "Traceback" not in page.content()
            assert page.evaluate("window.objtrackApp.video.name") == "clip.mp4"
            page.screenshot(path=str(tmp_path / "app.png"), full_page=True)
            assert not page_errors, page_errors
        finally:
            browser.close()
    assert any("refused: notes.txt: not a readable video" in line for line in server_log), \
        "".join(server_log[-20:])


def test_app_without_an_h264_encoder_is_one_line(tmp_path):
    code = ("import sys; sys.modules['imageio_ffmpeg'] = None; from objtrack_jax.cli import main; "
            "sys.exit(main(['app', '--port', '0']))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          cwd=tmp_path)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, proc.stderr
    assert len(lines) == 1 and lines[0].startswith("objtrack app: error: objtrack app writes its "
                                                   "result videos as H.264, which needs "
                                                   "imageio-ffmpeg"), lines


def test_example_scene_without_the_data_extra_names_it(workspace, monkeypatch):
    from objtrack_jax.data_pipelines import real_scenes
    from objtrack_jax.extras import require

    def no_photos(*args, **kwargs):
        return require("skimage.not_installed", "the real-photo scenes")

    monkeypatch.setattr(real_scenes, "generate_sequence", no_photos)
    with pytest.raises(AppError, match=r"^the example scene: .*'data' extra.*pip install "
                                       r"'objtrack_jax\[data\]'.*or open a video of your own$"):
        workspace.open_example()


def test_example_scene_opens(workspace):
    video = workspace.open_example()
    assert (video.num_frames, video.height, video.width) == (engine.EXAMPLE_FRAMES,) + engine.EXAMPLE_SIZE
    assert video.fps == engine.EXAMPLE_FPS and video.name.startswith("example scene ")
    assert len(os.listdir(video.previews)) == engine.EXAMPLE_FRAMES


def test_app_on_a_busy_port_is_one_line(tmp_path):
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        proc = subprocess.run([sys.executable, "-m", "objtrack_jax.cli", "app", "--port", str(port)],
                              capture_output=True, text=True, timeout=300, cwd=tmp_path)
    lines = [line for line in proc.stderr.strip().splitlines() if line.startswith("objtrack")]
    assert proc.returncode == 2, proc.stderr
    assert lines == [f"objtrack app: error: cannot listen on 127.0.0.1:{port} (Address already in "
                     "use); pick another --port (0: any free port) or --host"], proc.stderr


# --------------------------------------------------------------------------------------------------
# Bounded runs, request types, truncated uploads and the cancel
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("form, baselines, message", [
    ({"iters": "1000000"}, (), r"^iterations 1000000 iterations per window; the limit is 64 "
                              r"\(limits.MAX_ITERS\)"),
    ({"window": 10 ** 9}, (), r"^window 1000000000 frames; the limit is 256 \(limits.MAX_WINDOW\)"),
    ({"short_side": "8192"}, (), r"limits.MAX_SIDE"),
    ([{"iters": 2}], (), r"^settings: expected an object of \{field: value\}, got list"),
    ({}, 3, r"^baselines: expected a list of comparison names \(lk, dis\), got int 3"),
    ({}, [1], r"^baselines: expected a list of comparison names \(lk, dis\), got \[1\]"),
])
def test_check_run_refuses_runs_over_the_limits_and_fields_of_another_type(workspace, form,
                                                                           baselines, message):
    video = _fake_video(workspace)
    with pytest.raises(AppError, match=message):
        workspace.check_run(video.id, [{"t": 0, "x": 3, "y": 3}], form, baselines)


def test_check_run_refuses_a_run_over_the_time_budget(workspace, monkeypatch):
    video = _fake_video(workspace, frames=600, height=480, width=640)
    point = [{"t": 0, "x": 3, "y": 3}]
    workspace.check_run(video.id, point)
    monkeypatch.setattr(workspace, "max_minutes", 0.01)
    with pytest.raises(AppError, match=r"^tracking 1 point through 600 frames of 640x480 is "
                                       r"estimated at about .* over the time budget of 0.01 min "
                                       r"\(objtrack app --max-minutes\)"):
        workspace.check_run(video.id, point)


def _upload(api, path, name="clip.mp4"):
    with open(path, "rb") as f:
        status, body, _ = _call(api, "POST", f"/api/open/upload?name={name}", f.read(),
                                {"Content-Type": "application/octet-stream"})
    return status, json.loads(body)


def test_api_fields_of_another_type_are_400_naming_the_field(api, tmp_path):
    status, video = _upload(api, _write_clip(tmp_path / "clip.mp4"))
    assert status == 200
    point = [{"t": 0, "x": 3, "y": 3}]
    for body, needle in [({"video": video["id"], "points": point, "settings": [1, 2]},
                          "settings: expected an object of {field: value}, got list"),
                         ({"video": video["id"], "points": point, "baselines": 7},
                          "baselines: expected a list of comparison names (lk, dis), got int 7"),
                         ({"video": video["id"], "points": {"t": 0}},
                          "points: expected a list of points {t, x, y}, got dict"),
                         ({"video": [video["id"]], "points": point},
                          "video: expected the id of an open video (a string)"),
                         ({"video": video["id"], "points": point, "settings": {"iters": 10 ** 6}},
                          "the limit is 64 (limits.MAX_ITERS)")]:
        status, answer, _ = _call(api, "POST", "/api/run", body)
        assert status == 400 and needle in json.loads(answer)["error"], (body, answer)


def test_api_truncated_upload_opens_with_a_message(api, tmp_path):
    from objtrack_jax.video_io import write_video

    frames = np.random.default_rng(1).integers(0, 255, (24, H, W, 3), dtype=np.uint8)
    path = write_video(str(tmp_path / "whole.mp4"), frames, 12)  # H.264, index at the front
    data = open(path, "rb").read()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[:int(len(data) * 0.6)])
    status, video = _upload(api, cut, "cut.mp4")
    assert status == 200 and 0 < video["num_frames"] < 24, video
    assert video["note"] == (f"cut.mp4: only {video['num_frames']} of the 24 frames its "
                             "header reports could be decoded (the file is truncated or damaged, "
                             f"e.g. an upload cut off); the {video['num_frames']} frames are used")
    status, whole = _upload(api, path, "whole.mp4")
    assert status == 200 and whole["num_frames"] == 24 and whole["note"] == ""


def _wait_for(api, job_id, seconds=30):
    import time

    deadline = time.time() + seconds
    while time.time() < deadline:
        job = json.loads(_call(api, "GET", f"/api/job/{job_id}")[1])
        if job["state"] != "running":
            return job
        time.sleep(0.05)
    raise AssertionError(f"run {job_id} still running after {seconds} s")


def test_api_cancel_stops_a_run_and_frees_the_slot(api, tmp_path, monkeypatch):
    import time

    reads = []

    def slow_tracker(model, params, source, queries, s):  # a run that would take 100 s
        for _ in range(10_000):
            source.read(0, 1)  # each read reports progress: where the cancel is seen
            reads.append(1)
            time.sleep(0.01)
        raise AssertionError("the run was not cancelled")

    monkeypatch.setattr(engine, "track_points", slow_tracker)
    status, video = _upload(api, _write_clip(tmp_path / "clip.mp4"))
    body = {"video": video["id"], "points": [{"t": 0, "x": 3, "y": 3}]}
    status, started, _ = _call(api, "POST", "/api/run", body)
    job_id = json.loads(started)["job"]
    while not reads:
        time.sleep(0.01)
    status, busy, _ = _call(api, "POST", "/api/run", body)
    assert status == 409 and "already going on" in json.loads(busy)["error"]
    t0 = time.time()
    status, answer, _ = _call(api, "POST", f"/api/job/{job_id}/cancel", {})
    assert status == 200 and json.loads(answer)["stage"].startswith("cancelling")
    job = _wait_for(api, job_id)
    assert job["state"] == "cancelled" and job["stage"] == "cancelled" and job["error"] is None
    assert time.time() - t0 < 5 and len(reads) < 10_000
    status, answer, _ = _call(api, "POST", f"/api/job/{job_id}/cancel", {})
    assert status == 409 and "already ended (cancelled)" in json.loads(answer)["error"]
    status, started, _ = _call(api, "POST", "/api/run", body)  # the slot is free again
    assert status == 200
    second = json.loads(started)["job"]
    assert _call(api, "POST", f"/api/job/{second}/cancel", {})[0] == 200
    assert _wait_for(api, second)["state"] == "cancelled"
    status, answer, _ = _call(api, "POST", "/api/job/abcdef/cancel", {})
    assert status == 404


def test_cancel_button_in_chromium(api, tmp_path, monkeypatch):
    """The page's Cancel button stops a run (the in-process server, a run that would take 100 s)."""
    import time

    sync_playwright = _browser()

    def slow_tracker(model, params, source, queries, s):
        for _ in range(10_000):
            source.read(0, 1)
            time.sleep(0.01)
        raise AssertionError("the run was not cancelled")

    monkeypatch.setattr(engine, "track_points", slow_tracker)
    clip = _write_clip(tmp_path / "clip.mp4")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 1200})
            page_errors = []
            page.on("pageerror", lambda e: page_errors.append(str(e)))
            page.goto(api.url)
            page.wait_for_function("window.objtrackApp && window.objtrackApp.info !== null")
            page.set_input_files("#file-input", clip)
            page.wait_for_selector("#viewer:not([hidden])", timeout=30000)
            box = page.locator("#frame-canvas").bounding_box()
            page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
            assert page.locator("#cancel-button").is_hidden()
            page.click("#run-button")
            page.wait_for_selector("#cancel-button:not([hidden])", timeout=10000)
            page.wait_for_function("window.objtrackApp.job && window.objtrackApp.job.progress >= 0"
                                   " && window.objtrackApp.job.elapsed !== undefined")
            page.click("#cancel-button")
            page.wait_for_function("window.objtrackApp.job.state === 'cancelled'", timeout=10000)
            assert "The run was cancelled" in page.locator("#message").inner_text()
            assert page.locator("#cancel-button").is_hidden()
            assert page.locator("#stage-label").inner_text().startswith("cancelled after")
            assert page.locator("#run-button").is_enabled()
            assert not page_errors, page_errors
        finally:
            browser.close()
