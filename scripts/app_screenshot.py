"""The README's screenshot of ``objtrack app`` after a run: docs/app.png.

Starts ``objtrack app`` on a free port, opens the built-in example scene in headless Chromium
(Debian's ``chromium`` through Playwright), clicks points on frames 0 and 12, runs with the
weights' validated settings beside Lucas-Kanade and DIS, pauses the result video at its middle and
saves a screenshot of the page.

    python scripts/app_screenshot.py [--out docs/app.png] [--chromium /usr/bin/chromium]
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile

# (frame, x, y) as fractions of the frame's width and height
CLICKS = [(0, 0.18, 0.30), (0, 0.42, 0.22), (0, 0.66, 0.35), (0, 0.30, 0.62), (0, 0.55, 0.70),
          (0, 0.82, 0.66), (12, 0.25, 0.85), (12, 0.75, 0.15)]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default=os.path.join("docs", "app.png"))
    p.add_argument("--chromium", default=shutil.which("chromium") or "/usr/bin/chromium")
    p.add_argument("--timeout", type=float, default=900, help="seconds to wait for the run")
    args = p.parse_args(argv)
    from playwright.sync_api import sync_playwright

    work = tempfile.mkdtemp(prefix="objtrack-shot-")
    proc = subprocess.Popen([sys.executable, "-m", "objtrack_jax.cli", "app", "--port", "0",
                             "--workdir", work], stdout=subprocess.PIPE, text=True)
    try:
        url = None
        for line in proc.stdout:
            print(line, end="")
            if "serving on " in line:
                url = line.split("serving on ")[1].split()[0]
                break
        if url is None:
            raise SystemExit("objtrack app did not start")
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=args.chromium, args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1180, "height": 900})
            page.goto(url)
            page.wait_for_function("window.objtrackApp && window.objtrackApp.info !== null")
            page.click("#example-button")
            page.wait_for_selector("#viewer:not([hidden])", timeout=120000)
            canvas = page.locator("#frame-canvas")
            for t, fx, fy in CLICKS:
                page.locator("#frame-slider").fill(str(t))
                page.wait_for_function(f"window.objtrackApp.frame === {t}")
                box = canvas.bounding_box()
                page.mouse.click(box["x"] + fx * box["width"], box["y"] + fy * box["height"])
            page.check("#cmp-lk")
            page.check("#cmp-dis")
            page.click("#run-button")
            page.wait_for_function("window.objtrackApp.job && window.objtrackApp.job.state !== "
                                   "'running'", timeout=args.timeout * 1000)
            job = page.evaluate("window.objtrackApp.job")
            if job["state"] != "done":
                raise SystemExit(f"the run failed: {job['error']}")
            page.locator("#frame-slider").fill("0")  # the clicked frame beside the result
            page.wait_for_function("document.getElementById('result-video').readyState >= 2")
            page.evaluate("""() => new Promise((done) => {
                const v = document.getElementById('result-video');
                v.pause();
                v.addEventListener('seeked', done, {once: true});
                v.currentTime = v.duration / 2;
            })""")
            os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
            page.screenshot(path=args.out, full_page=True)
            browser.close()
        print(f"wrote {args.out} (run: {job['elapsed']} s)")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
