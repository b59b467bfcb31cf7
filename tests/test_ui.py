"""The results browser, ``gitstore ui`` (issue 17), tested as a person would use it: the demo's
store, a real server process, pages opened in headless Chromium (selenium driving Debian's
``chromium`` through ``chromium-driver``); HTTP-level checks with urllib against the same
server."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_graph import svg_nodes
from typer.testing import CliRunner

from components import Typed

from gitstore import GitDataStore, key_of
from gitstore_cli.main import app

# screenshots go to a temporary folder; GITSTORE_UI_SCREENSHOTS=docs refreshes the README's
SHOTS = os.environ.get("GITSTORE_UI_SCREENSHOTS")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
needs_browser = pytest.mark.skipif(
    CHROMIUM is None or CHROMEDRIVER is None,
    reason="headless Chromium tests need Debian's chromium and chromium-driver "
           "(apt-get install chromium chromium-driver; .ci/run installs them)")
HOSTILE = '<script>alert(1)</script><img src=x onerror=alert(2)>'
SWEEP_TYPE = "gitstore_cli.demo.rate_analysis"


class Hostile:
    """A component whose parameter names and values carry markup."""

    full_type = "evil.<b>Thing</b>"
    version = "v<i>1</i>"

    def __init__(self) -> None:
        self.parameters = {"note": HOSTILE, HOSTILE: 1}
        self.input = None


def console_script() -> str:
    found = shutil.which("gitstore", path=os.path.dirname(sys.executable))
    assert found, "the gitstore console script is not installed next to this python"
    return found


def snapshot(path: Path) -> dict[str, str]:
    """Every file of a store with its content's digest."""
    return {str(p.relative_to(path)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(path.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The demo's store (``gitstore demo``), plus one entry with markup in its values."""
    where = tmp_path_factory.mktemp("demo")
    env = {k: v for k, v in os.environ.items() if not k.startswith("GITSTORE")}
    done = subprocess.run([console_script(), "demo"], cwd=where, env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    store = where / ".gitstore"
    code = where / "code"  # a code repository for the code-revision filter
    code.mkdir()
    (code / "model.py").write_text("x = 1\n")
    for args in (["init", "-q"], ["add", "model.py"], ["commit", "-qm", "model"]):
        subprocess.run(["git", *args], cwd=code, check=True, capture_output=True)
    with GitDataStore(store) as s:
        s.store(Hostile(), "note", HOSTILE)
        s.store(Hostile(), HOSTILE.replace("/", "|").replace("<", "‹")[:60], [1, 2, 3])
        import numpy as np

        grid = np.outer(np.sin(np.linspace(0, 6, 90)), np.cos(np.linspace(0, 3, 120)))
        s.store(Typed("lab.Map", {"size": [90, 120]}), "field", grid)
        s.store(Typed("lab.Map", {"size": [90, 120]}), "blob", b"\x00" * 1000)
        keys = {e.type: e.key.rpartition(":")[2] for e in s.entries()}
        sweep = sorted(e.key.rpartition(":")[2] for e in s.entries(type=SWEEP_TYPE))
    return {"store": store, "code": code, "keys": keys, "sweep": sweep,
            "hostile": key_of(Hostile()).rpartition(":")[2], "files": snapshot(store)}


@pytest.fixture(scope="module")
def server(demo: dict[str, Any]) -> Iterator[str]:
    """``gitstore ui --port 0`` on the demo's store, a real process; yields its URL."""
    with subprocess.Popen([console_script(), "--store", str(demo["store"]), "ui", "--port",
                           "0", "--code-repo", str(demo["code"])], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE,
                          text=True) as proc:
        try:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            found = re.search(r"(http://127\.0\.0\.1:\d+/)", line)
            assert found, f"no URL in {line!r}"
            yield found.group(1)
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
        assert proc.stderr is not None
        errors = proc.stderr.read()
    # the server logged no error (an exception behind an error page would be here)
    assert "Traceback" not in errors, errors


def fetch(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=60) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    where = Path(SHOTS) if SHOTS else tmp_path_factory.mktemp("screenshots")
    where.mkdir(parents=True, exist_ok=True)
    return where


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if CHROMIUM is None or CHROMEDRIVER is None:
        pytest.skip("headless Chromium tests need Debian's chromium and chromium-driver")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1280,900", "--hide-scrollbars", "--force-device-scale-factor=1"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(120)
    try:
        yield driver
    finally:
        driver.quit()


def loaded(driver: Any, css: str) -> list[int]:
    """The natural widths of the images matching ``css`` once they have loaded (0: broken)."""
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, 60).until(lambda d: d.execute_script(
        "return [...document.querySelectorAll(arguments[0])].every(i => i.complete)", css))
    widths: list[int] = driver.execute_script(
        "return [...document.querySelectorAll(arguments[0])].map(i => i.naturalWidth)", css)
    return widths


def no_injection(driver: Any) -> None:
    assert driver.execute_script("return document.querySelectorAll('script').length") == 0
    assert driver.execute_script("return document.querySelectorAll('img[src=x], b, i').length"
                                 ) == 0


def test_listens_on_loopback_only(server: str) -> None:
    port = int(server.rsplit(":", 1)[1].strip("/"))
    listening = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        if os.path.exists(table):
            for line in Path(table).read_text().splitlines()[1:]:
                local, state = line.split()[1], line.split()[3]
                if state == "0A" and int(local.rsplit(":", 1)[1], 16) == port:
                    listening.append(local.rsplit(":", 1)[0])
    assert listening == ["0100007F"]  # 127.0.0.1, nothing else
    # a page reached through another name (DNS rebinding) is refused
    status, _, _ = fetch(server, headers={"Host": f"evil.example:{port}"})
    assert status == 400


@needs_browser
def test_sweep_table_renders_and_sorts(server: str, demo: dict[str, Any], browser: Any, shots: Path
                                       ) -> None:
    from selenium.webdriver.common.by import By

    browser.get(f"{server}sweep?type={SWEEP_TYPE}")
    rows = browser.find_elements(By.CSS_SELECTOR, "#sweep tbody tr")
    assert sorted(r.find_element(By.CSS_SELECTOR, "td.key").text for r in rows) == \
        [k[:12] for k in demo["sweep"]]
    headers = [h.text for h in browser.find_elements(By.CSS_SELECTOR, "#sweep thead th")]
    assert headers[:2] == ["key", "bin_ms"]  # the parameter that varies, then results
    assert {"result.peak_rate_hz", "result.mean_rate_hz"} <= set(headers)
    assert "n_neurons" not in headers and "n = 4000" in browser.find_element(
        By.CSS_SELECTOR, ".fixed").text  # what is the same in every row stands above

    def column(name: str) -> list[float]:
        i = [h.text.rstrip(" ▲▼") for h in browser.find_elements(
            By.CSS_SELECTOR, "#sweep thead th")].index(name)
        return [float(r.find_elements(By.TAG_NAME, "td")[i].text)
                for r in browser.find_elements(By.CSS_SELECTOR, "#sweep tbody tr")]

    browser.find_element(By.CSS_SELECTOR, "a[data-column='p:bin_ms']").click()
    assert column("bin_ms") == [10.0, 20.0, 50.0, 100.0]
    browser.find_element(By.CSS_SELECTOR, "a[data-column='r:result.peak_rate_hz']").click()
    peaks = column("result.peak_rate_hz")
    assert peaks == sorted(peaks) and len(set(peaks)) == 4
    browser.find_element(By.CSS_SELECTOR, "a[data-column='r:result.peak_rate_hz']").click()
    assert column("result.peak_rate_hz") == sorted(peaks, reverse=True)
    assert browser.find_element(By.TAG_NAME, "main").screenshot(str(shots / "ui-sweep.png"))
    # a parameter query narrows the sweep
    browser.get(f"{server}sweep?type={SWEEP_TYPE}&where=bin_ms%20%3D%3D%2020.0")
    assert len(browser.find_elements(By.CSS_SELECTOR, "#sweep tbody tr")) == 1


@needs_browser
def test_entry_pages_show_plots(server: str, demo: dict[str, Any], browser: Any, shots: Path
                                ) -> None:
    from selenium.webdriver.common.by import By

    keys = demo["keys"]
    browser.get(f"{server}entry/{keys['gitstore_cli.demo.stimulus'][:8]}")
    assert loaded(browser, "img.plot") and all(loaded(browser, "img.plot"))
    assert "array float64 shape (20000,)" in browser.find_element(By.CSS_SELECTOR,
                                                                  ".summary").text
    browser.get(f"{server}entry/{keys['gitstore_cli.demo.population']}")
    assert "line" not in browser.find_element(By.TAG_NAME, "figcaption").text
    assert all(loaded(browser, "img.plot"))  # the spike raster, every spike a dot
    browser.get(f"{server}entry/{keys['lab.Map']}")  # a 2-D array as an image
    assert loaded(browser, "img.plot") == [120]
    assert [f.text for f in browser.find_elements(By.TAG_NAME, "figcaption")] == ["image"]
    assert "not previewed (only its size is shown)" in browser.find_element(
        By.CSS_SELECTOR, ".attribute .summary").text  # the bytes attribute: its size only
    browser.get(f"{server}entry/{keys[SWEEP_TYPE]}")
    widths = loaded(browser, "img.plot")
    assert len(widths) == 1 and widths[0] > 0  # rates_hz of the analysis, a line
    assert '"mean_rate_hz"' in browser.find_element(By.CSS_SELECTOR, "pre.preview").text
    yaml_text = browser.find_element(By.ID, "component-yaml").text
    assert f"type: {SWEEP_TYPE}" in yaml_text and "input: [k1-sha256:" in yaml_text
    browser.execute_script("window.scrollTo(0, 0)")
    browser.set_window_size(1280, 1300)
    assert browser.find_element(By.TAG_NAME, "main").screenshot(str(shots / "ui-entry.png"))
    browser.set_window_size(1280, 900)
    # the download link gives the stored file's bytes
    link = browser.find_element(By.CSS_SELECTOR, ".attribute a[download]").get_attribute("href")
    status, headers, body = fetch(link)
    with GitDataStore(demo["store"], create=False) as s:
        assert body == s.read(keys[SWEEP_TYPE], "result", raw=True)
    assert status == 200 and 'filename="result.json"' in headers["content-disposition"]


@needs_browser
def test_lineage_picture_of_the_three_stage_pipeline(server: str, demo: dict[str, Any],
                                                     browser: Any, shots: Path) -> None:
    from selenium.webdriver.common.by import By

    key = demo["keys"][SWEEP_TYPE]  # the analysis at bin_ms 50: population, stimulus upstream
    browser.get(f"{server}entry/{key}")
    assert loaded(browser, "#lineage")[0] > 0
    src = browser.find_element(By.ID, "lineage").get_attribute("src")
    status, headers, svg = fetch(src)
    assert status == 200 and headers["content-type"] == "image/svg+xml"
    nodes = svg_nodes(svg)
    assert len(nodes) == 3
    for stage in ("stimulus", "population", "rate_analysis"):
        assert sum(f"gitstore_cli.demo.{stage}" in n for n in nodes) == 1
    links = [a.text for a in browser.find_elements(By.CSS_SELECTOR, ".nodes a")]
    assert links == [demo["keys"]["gitstore_cli.demo.population"][:12],
                     demo["keys"]["gitstore_cli.demo.stimulus"][:12]]
    assert browser.find_element(By.ID, "lineage").screenshot(str(shots / "ui-lineage.png"))


@needs_browser
def test_listing_history_and_diff(server: str, demo: dict[str, Any], browser: Any) -> None:
    from selenium.webdriver.common.by import By

    browser.get(server)
    assert len(browser.find_elements(By.CSS_SELECTOR, "#entries tbody tr")) == 8
    boxes = browser.find_elements(By.CSS_SELECTOR, "#entries input[type=checkbox]")
    ticked = sorted(demo["sweep"][:2])
    for box in boxes:
        if box.get_attribute("value") in {k[:12] for k in ticked}:
            box.click()
    browser.find_element(By.XPATH, "//button[text()='compare the two ticked']").click()
    differences = browser.find_element(By.ID, "differences").text
    assert "parameter bin_ms" in differences and "result.peak_rate_hz" in differences
    browser.get(f"{server}?type={SWEEP_TYPE}&where=bin_ms%20%3D%3D%20100.0")
    assert len(browser.find_elements(By.CSS_SELECTOR, "#entries tbody tr")) == 1
    # the demo's results are of version "1", valid for no code revision by their content
    browser.get(f"{server}?rev=HEAD")
    assert browser.find_element(By.CSS_SELECTOR, ".count").text.startswith("0 entries")
    browser.get(f"{server}?rev=no-such-branch")
    assert "'no-such-branch' names no commit" in browser.find_element(By.ID, "message").text
    browser.get(f"{server}history?version=1")
    assert len(browser.find_elements(By.CSS_SELECTOR, "#history tbody tr")) == 6


@needs_browser
def test_bad_input_gets_an_escaped_error_page(server: str, demo: dict[str, Any], browser: Any
                                              ) -> None:
    from selenium.webdriver.common.by import By

    cases = {
        "entry/0123456789abcdef": (404, "no entry with a key starting"),
        "entry/%3Cimg%20src%3Dx%20onerror%3Dalert(1)%3E": (404, "is not a key"),
        f"entry/{demo['hostile']}/file?attribute=..%2F..%2F..%2Fetc%2Fpasswd": (400, "holds '/'"),
        f"entry/{demo['hostile']}/file?attribute=passwd": (404, "has no attribute 'passwd'"),
        "plot?key=abcd&attribute=%3Cb%3Ex%3C%2Fb%3E": (404, "no entry with a key starting"),
        f"sweep?type={SWEEP_TYPE}&where=%3Cscript%3E": (400, "parameter name"),
        "history?version=%3Cscript%3Ealert(1)%3C%2Fscript%3E": (404, "no version"),
        "diff?a=1c80": (400, "compare takes two entries"),
        "static/..%2F..%2F..%2Fetc%2Fpasswd": (404, "no such page"),
        "entry/4": (400, "It could be"),  # 4433... and 4d4d... of the sweep
    }
    for path, (status, text) in cases.items():
        code, headers, body = fetch(server + path)
        assert code == status, (path, body[:300])
        assert "Traceback" not in body.decode() and "root:" not in body.decode()
        assert "default-src 'none'" in headers["content-security-policy"]
        browser.get(server + path)
        assert text in browser.find_element(By.TAG_NAME, "main").text, path
        no_injection(browser)
    # an entry whose type, version, parameter names and values hold markup shows it as text
    browser.get(f"{server}entry/{demo['hostile']}")
    assert HOSTILE in browser.find_element(By.ID, "component-yaml").text
    assert HOSTILE in browser.find_element(By.CSS_SELECTOR, "pre.preview").text
    assert "evil.<b>Thing</b>" in browser.find_element(By.TAG_NAME, "h1").text
    no_injection(browser)
    assert loaded(browser, "#lineage")[0] > 0
    for page in ("", "sweep?type=evil.%3Cb%3EThing%3C%2Fb%3E",
                 "history?version=v%3Ci%3E1%3C%2Fi%3E"):
        browser.get(server + page)
        assert "<b>Thing</b>" in browser.find_element(By.TAG_NAME, "main").text or \
            "v<i>1</i>" in browser.find_element(By.TAG_NAME, "main").text
        no_injection(browser)


def test_ui_without_a_store_is_one_line(tmp_path: Path) -> None:
    done = CliRunner().invoke(app, ["--store", str(tmp_path / "none"), "ui"])
    assert done.exit_code == 1 and done.output.startswith("gitstore: error: no store at")


def test_without_the_ui_extra_a_typed_error() -> None:
    code = ("import sys; sys.modules['starlette'] = None\n"
            "from gitstore.errors import MissingDependencyError\n"
            "from gitstore.ui import create_app\n"
            "try:\n    create_app('.')\nexcept MissingDependencyError as e:\n"
            "    print(e.extra, e)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60)
    assert done.stdout.startswith("ui gitstore ui needs the 'ui' extra (missing starlette)")


def test_entry_repr_html_escapes(tmp_path: Path) -> None:
    with GitDataStore(tmp_path / "s.git") as s:
        s.store(Hostile(), "note", "x")
        html = s.find(key_of(Hostile())[:20])._repr_html_()
    assert "<script>" not in html and "&lt;script&gt;" in html and "<img" not in html
    assert "evil.&lt;b&gt;Thing&lt;/b&gt;" in html


def test_store_unchanged_by_browsing(server: str, demo: dict[str, Any]) -> None:
    """Last: everything above was served without a byte of the store changing."""
    fetch(server)
    assert snapshot(demo["store"]) == demo["files"]


def test_plots_have_bounded_sizes_whatever_the_data() -> None:
    import struct
    import xml.etree.ElementTree as ET

    import numpy as np

    from gitstore.ui import plots

    def png_size(data: bytes) -> tuple[int, int]:
        assert data.startswith(b"\x89PNG\r\n\x1a\n") and data[12:16] == b"IHDR"
        width, height = struct.unpack(">II", data[16:24])
        return width, height

    for series in (np.arange(2.0), np.full(5, np.nan), np.ones(7),
                   np.sin(np.arange(1_000_000.0)), [1, 2.5, -3]):
        svg = plots.line_svg(series, "<b>title</b>")
        root = ET.fromstring(svg)  # well-formed, the title escaped
        points = root.find("{http://www.w3.org/2000/svg}polyline").get("points").split()
        assert 1 <= len(points) <= 2 * plots.WIDTH
    assert png_size(plots.image_png(np.ones((1, 1)))) == (64, 64)
    assert png_size(plots.image_png(np.random.default_rng(0).random((3000, 1000)))) == (143, 429)
    assert png_size(plots.image_png(np.full((4, 4), np.inf))) == (64, 64)
    assert png_size(plots.scatter_png(np.arange(10**6), np.arange(10**6) % 7)) == \
        (plots.WIDTH, plots.HEIGHT)
