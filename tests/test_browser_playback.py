"""Output videos play in a real browser: headless Chromium loads the mp4 that ``objtrack track``'s
writer makes, reports its duration and decodes a frame whose colours are checked.

Needs Playwright (``pip install playwright``; no browser download: it drives the system Chromium)
and Chromium (``apt-get install chromium``; path from ``OBJTRACK_CHROMIUM``, default
``/usr/bin/chromium``). Skips, saying which is missing, only where neither can be installed.
"""

import json
import os
import shutil

import numpy as np
import pytest

from objtrack_jax import video_io

FPS, FRAMES, H, W = 6, 12, 64, 96  # 2.0 s
COLOURS = [(220, 30, 30), (30, 200, 40), (40, 60, 230)]  # frame i: COLOURS[i // 4], flat


def _chromium() -> str:
    path = os.environ.get("OBJTRACK_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    if not os.path.isfile(path):
        pytest.skip(f"no Chromium at {path} (apt-get install -y chromium, or set OBJTRACK_CHROMIUM)")
    return path


def _frames() -> np.ndarray:
    frames = np.zeros((FRAMES, H, W, 3), np.uint8)
    for i in range(FRAMES):
        frames[i] = COLOURS[i // 4]
        frames[i, 8:16, 8 + 6 * i:14 + 6 * i] = 255  # a moving white block
    return frames


PAGE = """<!doctype html><html><body>
<video id="v" src="%s" muted playsinline preload="auto"></video>
<canvas id="c" width="%d" height="%d"></canvas>
<script>
window.result = new Promise((resolve) => {
  const v = document.getElementById('v');
  const fail = (what) => resolve({error: what, code: v.error ? v.error.code : null,
                                  readyState: v.readyState});
  v.addEventListener('error', () => fail('error event'));
  setTimeout(() => fail('timeout'), 20000);
  v.addEventListener('loadeddata', () => {
    v.currentTime = %f;  // inside the third colour's frames
    v.addEventListener('seeked', () => {
      const c = document.getElementById('c').getContext('2d');
      c.drawImage(v, 0, 0);
      const px = c.getImageData(%d, %d, 1, 1).data;
      resolve({duration: v.duration, width: v.videoWidth, height: v.videoHeight,
               pixel: [px[0], px[1], px[2]]});
    }, {once: true});
  }, {once: true});
});
</script></body></html>"""


def _play(tmp_path, video_name: str) -> dict:
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed "
                                   "(pip install playwright; it drives the system Chromium)")
    exe = _chromium()
    page_file = tmp_path / f"{video_name}.html"
    t_seek = (FRAMES - 1.5) / FPS
    page_file.write_text(PAGE % (video_name, W, H, t_seek, W // 2, H - 8))
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=exe, headless=True,
                                    args=["--no-sandbox", "--disable-gpu",
                                          "--allow-file-access-from-files"])
        try:
            page = browser.new_page()
            page.goto(page_file.as_uri())
            return page.evaluate("window.result")
        finally:
            browser.close()


def test_h264_output_plays_in_chromium(tmp_path):
    if video_io.h264_encoder()[0] is None:
        pytest.fail(f"no H.264 encoder in this install: {video_io.h264_encoder()[1]}")
    with video_io.VideoWriter(str(tmp_path / "out.mp4"), fps=FPS) as writer:  # as objtrack track
        writer.append(_frames()[:5])
        writer.append(_frames()[5:])
    assert writer.codec == "h264"
    result = _play(tmp_path, "out.mp4")
    assert "error" not in result, f"Chromium could not play the H.264 mp4: {json.dumps(result)}"
    assert result["duration"] == pytest.approx(FRAMES / FPS, abs=0.2), result
    assert (result["width"], result["height"]) == (W, H), result
    # a decoded frame: the third colour (blue), not black or another frame's colour
    assert np.abs(np.array(result["pixel"]) - COLOURS[2]).max() < 40, result


def test_mpeg4_part2_fallback_does_not_play_in_chromium(tmp_path):
    """The reason for H.264: the same frames as MPEG-4 Part 2 ('mp4v', OpenCV's writer) are
    refused by the browser (this also shows that the check above can fail)."""
    path = video_io.write_video(str(tmp_path / "old.mp4"), _frames(), fps=FPS, fourcc="mp4v")
    assert path.endswith("old.mp4")
    result = _play(tmp_path, "old.mp4")
    assert "error" in result or result.get("width", 0) == 0, result
