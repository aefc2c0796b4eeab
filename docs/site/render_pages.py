#!/usr/bin/env python3
"""Open the built site in headless Chromium as a reader would, and check what loaded.

Serves the site from a local HTTP server (127.0.0.1, a free port), opens five pages --
the front page, lesson 01, lesson 01's capture walkthrough, and two concept pages: the
QP state machine (Graphviz) and the RDMA CM handshake (mscgen) -- and for each one
asserts that
  - the page's heading is the title of its markdown file (docs/site/pages.txt), and the
    browser tab's title names it too;
  - every <img> finished loading with a real size (naturalWidth > 0), every <object>
    and <iframe> (Doxygen shows large Graphviz SVGs in one) has a loaded SVG document
    with a size, every inline <svg> has a size;
  - the page shows at least as many images as its markdown references (a capture's
    ladder.svg) and, for the concept page, its diagrams;
  - the navigation line links to the concept pages and the glossary;
then saves a full-page screenshot to OUT/<page>.png.

  render_pages.py --site build/docs/html --manifest build/docs/site/manifest.json \\
                  --out build/docs/screenshots
Needs chromium, chromium-driver and python3-selenium (scripts/install-deps.sh).
"""
import argparse
import functools
import http.server
import json
import shutil
import sys
import threading
import time
from pathlib import Path

from selenium import webdriver
from selenium.webdriver.chrome.service import Service

PAGES = [  # (screenshot name, page in docs/site/pages.txt)
    ("front", "README.md"),
    ("lesson01", "lessons/01-verbs-send-recv/README.md"),
    ("walkthrough01", "captures/01-verbs-send-recv/walkthrough.md"),
    ("qp-state-machine", "docs/concepts/qp-state-machine.md"),
    ("rdma-cm-handshake", "docs/concepts/rdma-cm-handshake.md"),
]
CONCEPTS, GLOSSARY = "docs/concepts/README.md", "docs/glossary.md"
LOAD_TIMEOUT_S = 20

# What the page holds once loaded: run in the page by the browser.
INSPECT_JS = """
const content = document.querySelector('div.contents') || document.body;
const imgs = [...content.querySelectorAll('img')].map(i => ({
  src: i.getAttribute('src'), complete: i.complete, width: i.naturalWidth}));
const objects = [...content.querySelectorAll('object, iframe')].map(o => {
  let doc = null; try { doc = o.contentDocument; } catch (e) {}
  const root = doc && doc.documentElement;
  return {src: o.getAttribute('data') || o.getAttribute('src'),
          loaded: !!root && root.nodeName.toLowerCase() === 'svg',
          width: o.getBoundingClientRect().width};
});
const svgs = [...content.querySelectorAll('svg')].map(s => ({
  width: s.getBoundingClientRect().width}));
const heading = document.querySelector('div.headertitle .title');
const nav = [...document.querySelectorAll('div.sitenav a')].map(a => a.getAttribute('href'));
return {title: document.title, heading: heading ? heading.textContent.trim() : null,
        imgs, objects, svgs, nav,
        height: Math.max(document.documentElement.scrollHeight,
                         (document.getElementById('doc-content') || document.body).scrollHeight + 300),
        ready: document.readyState};
"""


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def serve(site):
    handler = functools.partial(QuietHandler, directory=str(site))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def browser():
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--hide-scrollbars", "--window-size=1400,1000", "--force-device-scale-factor=1"):
        options.add_argument(arg)
    service = Service(shutil.which("chromedriver") or "/usr/bin/chromedriver")
    driver = webdriver.Chrome(service=service, options=options)
    driver.set_page_load_timeout(LOAD_TIMEOUT_S)
    return driver


def inspect(driver, url):
    """Load url and wait until every image and object has finished loading."""
    driver.get(url)
    deadline = time.monotonic() + LOAD_TIMEOUT_S
    while True:
        state = driver.execute_script(INSPECT_JS)
        pending = [i for i in state["imgs"] if not i["complete"]] + \
                  [o for o in state["objects"] if not o["loaded"]]
        if state["ready"] == "complete" and not pending:
            return state
        if time.monotonic() > deadline:
            return state  # judged below: the pending ones fail
        time.sleep(0.2)


def check_page(name, page, state, by_path):
    errors = []
    title = " ".join(page["title"].split())
    if state["heading"] is None or " ".join(state["heading"].split()) != title:
        errors.append(f"heading is {state['heading']!r}, expected {title!r}")
    if title.split(":")[0] not in state["title"] and name != "front":
        errors.append(f"browser title {state['title']!r} does not name {title!r}")
    for i in state["imgs"]:
        if not i["complete"] or i["width"] <= 0:
            errors.append(f"image {i['src']} did not load (naturalWidth {i['width']})")
    for o in state["objects"]:
        if not o["loaded"] or o["width"] <= 0:
            errors.append(f"object/iframe {o['src']} did not load an SVG (width {o['width']})")
    for s in state["svgs"]:
        if s["width"] <= 0:
            errors.append("an inline <svg> has no size")
    shown = [i["src"] for i in state["imgs"]] + [o["src"] for o in state["objects"]]
    for image in page["images"]:
        if image not in shown:
            errors.append(f"the markdown's image {image} is not on the page")
    if page.get("diagrams", 0) > len(shown) - len(page["images"]):
        errors.append(f"{page['diagrams']} diagrams in the markdown, "
                      f"{len(shown) - len(page['images'])} on the page")
    for path in (CONCEPTS, GLOSSARY):
        if by_path[path]["html"] not in state["nav"] and page["path"] != path:
            errors.append(f"the navigation line has no link to {by_path[path]['html']}")
    return errors


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--site", required=True, type=Path)
    ap.add_argument("--manifest", required=True, type=Path)
    ap.add_argument("--out", required=True, type=Path)
    args = ap.parse_args()
    manifest = json.loads(args.manifest.read_text())
    by_path = {p["path"]: p for p in manifest["pages"]}
    args.out.mkdir(parents=True, exist_ok=True)
    server = serve(args.site)
    base = f"http://127.0.0.1:{server.server_address[1]}"
    failed = 0
    driver = browser()
    try:
        for name, path in PAGES:
            page = by_path[path]
            state = inspect(driver, f"{base}/{page['html']}")
            driver.set_window_size(1400, min(max(state["height"], 600), 12000))
            time.sleep(0.3)
            shot = args.out / f"{name}.png"
            driver.save_screenshot(str(shot))
            driver.set_window_size(1400, 1000)
            errors = check_page(name, page, state, by_path)
            loaded = len(state["imgs"]) + len(state["objects"]) + len(state["svgs"])
            if errors:
                failed += 1
                print(f"FAIL {name}: {page['html']} ({shot})")
                for e in errors:
                    print(f"     {e}")
            else:
                print(f"ok   {name}: {page['html']}: title {page['title']!r}, "
                      f"{loaded} images/diagrams loaded -> {shot}")
    finally:
        driver.quit()
        server.shutdown()
    print(f"render_pages: {len(PAGES) - failed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
