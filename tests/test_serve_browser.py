"""The page of `ferkit serve` in a real browser: headless Chromium (Debian's chromium and chromium-driver) driven
by Selenium against a real server on a loopback port. A photo is uploaded and drawn with its boxes, labels and
bar charts, explained, and photographed; a bad file shows a readable message; the webcam mode, fed by Chromium's
fake camera from a clip made of the sample photo, draws a box; the video mode shows the timeline plot.

Set FERKIT_SCREENSHOT_DIR to keep the screenshots (docs/images/serve-page.png comes from here)."""
from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import numpy as np
import pytest

CHROMIUM = os.environ.get("FERKIT_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("FERKIT_CHROMEDRIVER", "/usr/bin/chromedriver")
if not (Path(CHROMIUM).is_file() and Path(CHROMEDRIVER).is_file()):
    pytest.skip(f"needs {CHROMIUM} and {CHROMEDRIVER} (apt-get install chromium chromium-driver)",
                allow_module_level=True)
pytest.importorskip("selenium", reason="needs selenium (pip install selenium)")
pytest.importorskip("fastapi", reason="the serve extra (fastapi, uvicorn, python-multipart) is not installed")

from selenium import webdriver  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

from ferkit.assets import sample_image_path  # noqa: E402
from test_serve_cli import http, running_server  # noqa: E402


def write_y4m(path: Path, image_bgr: np.ndarray, frames: int = 10, size: tuple[int, int] = (640, 480)) -> Path:
    """A YUV4MPEG2 clip (what Chromium's fake camera reads) of the photo centred on grey, moving slightly."""
    import cv2

    w, h = size
    scale = min(w / image_bgr.shape[1], h / image_bgr.shape[0]) * 0.9
    small = cv2.resize(image_bgr, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    with open(path, "wb") as f:
        f.write(f"YUV4MPEG2 W{w} H{h} F10:1 Ip A1:1 C420jpeg\n".encode())
        for k in range(frames):
            canvas = np.full((h, w, 3), 128, np.uint8)
            y0, x0 = (h - small.shape[0]) // 2, (w - small.shape[1]) // 2 + (k % 4) * 2
            canvas[y0:y0 + small.shape[0], x0:x0 + small.shape[1]] = small
            f.write(b"FRAME\n" + cv2.cvtColor(canvas, cv2.COLOR_BGR2YUV_I420).tobytes())
    return path


@pytest.fixture(scope="module")
def server():
    with running_server("--detector", "haar") as (base, seconds):
        print(f"ferkit serve: first /health after {seconds:.2f} s")
        yield base


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    import cv2

    clip = write_y4m(tmp_path_factory.mktemp("camera") / "hopper.y4m", cv2.imread(str(sample_image_path())))
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                 "--window-size=1280,1000", "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
                 f"--use-file-for-fake-video-capture={clip}", "--disable-extensions", "--no-first-run"):
        opts.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


def wait(driver, condition, timeout: float = 30):
    return WebDriverWait(driver, timeout, poll_frequency=0.05).until(lambda d: condition(d))


def body_data(driver, key: str) -> str | None:
    return driver.execute_script(f"return document.body.dataset[{key!r}] || null;")


def keep_screenshot(driver, tmp_path: Path, name: str) -> Path:
    path = tmp_path / name
    assert driver.save_screenshot(str(path))
    if os.environ.get("FERKIT_SCREENSHOT_DIR"):
        target = Path(os.environ["FERKIT_SCREENSHOT_DIR"])
        target.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, target / name)
    return path


def upload_photo(driver, base: str, photo: Path) -> float:
    """Open the page, pick ``photo``; the seconds from picking it to the drawn result."""
    driver.get(base + "/")
    wait(driver, lambda d: "model default" in d.find_element(By.ID, "model-info").text)
    t0 = time.perf_counter()
    driver.find_element(By.ID, "file-input").send_keys(str(photo))
    wait(driver, lambda d: body_data(d, "state") in ("done", "error"))
    assert body_data(driver, "state") == "done", driver.find_element(By.ID, "error").text
    return time.perf_counter() - t0


def test_a_photo_is_drawn_with_boxes_labels_and_bars_then_explained(server, browser, tmp_path):
    photo = sample_image_path()
    expected = http("POST", f"{server}/api/v1/predict", photo.read_bytes())[1]["faces"]
    seconds = upload_photo(browser, server, photo)
    first_ms = float(body_data(browser, "firstResultMs"))
    print(f"page: result drawn {seconds * 1000:.0f} ms after picking the photo, "
          f"{first_ms:.0f} ms after navigation start")
    boxes = browser.find_elements(By.CSS_SELECTOR, "#photo-stage .face-box")
    labels = [e.text for e in browser.find_elements(By.CSS_SELECTOR, "#photo-stage .face-label")]
    assert len(boxes) == len(labels) == len(expected) == 1
    top = expected[0]["emotion"]
    assert labels[0] == f"1. {top} {round(expected[0]['probs'][top] * 100)}%"
    cards = browser.find_elements(By.CSS_SELECTOR, "#faces .face-card")
    assert len(cards) == 1 and len(cards[0].find_elements(By.CSS_SELECTOR, ".bar")) == 7
    # The box sits where the API says, in the displayed image's coordinates.
    img = browser.find_element(By.ID, "photo-img")
    scale = img.size["width"] / 512
    assert abs(boxes[0].location["x"] - img.location["x"] - expected[0]["box"][0] * scale) <= 4

    pytest.importorskip("torch", reason="explanations need PyTorch in the server")
    browser.find_element(By.ID, "explain-button").click()
    wait(browser, lambda d: body_data(d, "explain") in ("done", "error"), timeout=60)
    assert body_data(browser, "explain") == "done", browser.find_element(By.ID, "error").text
    overlays = browser.find_elements(By.CSS_SELECTOR, "#faces .overlay-img")
    assert len(overlays) == 1
    assert wait(browser, lambda d: d.execute_script("return arguments[0].naturalWidth;", overlays[0])) >= 40
    shot = keep_screenshot(browser, tmp_path, "serve-page.png")
    assert shot.stat().st_size > 20_000


def test_a_photo_from_the_shared_media_gets_one_box_per_face(server, browser, media_dir):
    photo = media_dir / "photos" / "multi_face.jpg"
    expected = http("POST", f"{server}/api/v1/predict", photo.read_bytes())[1]["faces"]
    upload_photo(browser, server, photo)
    assert len(browser.find_elements(By.CSS_SELECTOR, "#photo-stage .face-box")) == len(expected) >= 2
    assert len(browser.find_elements(By.CSS_SELECTOR, "#faces .face-card")) == len(expected)


def test_a_file_that_is_no_image_shows_the_servers_message(server, browser, tmp_path):
    notes = tmp_path / "notes.jpg"
    notes.write_text("this is text, not a picture\n")
    browser.get(server + "/")
    browser.find_element(By.ID, "file-input").send_keys(str(notes))
    wait(browser, lambda d: body_data(d, "state") == "error")
    error = browser.find_element(By.ID, "error")
    assert error.is_displayed()
    assert error.text.startswith("notes.jpg: not a JPEG, PNG, WebP, BMP, GIF or TIFF image (text)")
    assert "Traceback" not in error.text


def test_the_webcam_mode_draws_a_box_on_the_live_picture(server, browser, tmp_path):
    browser.get(server + "/")
    browser.find_element(By.ID, "tab-webcam").click()
    browser.find_element(By.ID, "webcam-button").click()
    wait(browser, lambda d: int(body_data(d, "webcamFaces") or 0) >= 1, timeout=30)
    assert len(browser.find_elements(By.CSS_SELECTOR, "#webcam-stage .face-box")) >= 1
    keep_screenshot(browser, tmp_path, "serve-webcam.png")
    browser.find_element(By.ID, "webcam-button").click()
    assert body_data(browser, "webcam") == "stopped"


def test_the_video_mode_shows_progress_then_the_timeline_plot(server, browser, tmp_path):
    import cv2

    if not http("GET", f"{server}/api/v1/health")[1]["video"]:
        pytest.skip("this build has no video analysis (ferkit.video)")
    frame = cv2.imread(str(sample_image_path()))
    clip = tmp_path / "hopper.mp4"
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"mp4v"), 10, (frame.shape[1], frame.shape[0]))
    for k in range(6):
        writer.write(np.roll(frame, 2 * k, axis=1))
    writer.release()
    browser.get(server + "/")
    browser.find_element(By.ID, "tab-video").click()
    browser.find_element(By.ID, "video-input").send_keys(str(clip))
    wait(browser, lambda d: body_data(d, "video") in ("done", "error"), timeout=60)
    assert body_data(browser, "video") == "done", browser.find_element(By.ID, "error").text
    plot = browser.find_element(By.ID, "video-plot")
    assert wait(browser, lambda d: d.execute_script("return arguments[0].naturalWidth;", plot)) > 200
    assert len(browser.find_elements(By.CSS_SELECTOR, "#video-summary tr")) == 2  # header + one track
    keep_screenshot(browser, tmp_path, "serve-video.png")
