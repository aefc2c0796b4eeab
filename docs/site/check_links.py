#!/usr/bin/env python3
"""Every link, image and anchor of the built site resolves.

    docs/site/check_links.py SITE_HTML_DIR      check the site (exit 1 on a broken link)
    docs/site/check_links.py --self-test        show that each kind of break is caught

It reads every HTML page of the site (index.html and every page it links to, and every
other .html file in the directory: Doxygen's index pages are reached through its
JavaScript menu, which no crawler follows) and every stylesheet they link to. On each it
takes every href, src, xlink:href, data and srcset attribute (links, images,
stylesheets, scripts, embedded SVG diagrams) and every url(...) of a stylesheet, and
requires that
  - a local target exists as a file inside the site directory (a link to a directory
    needs its index.html);
  - a link is relative to its page: not from the top (/...), which read from disk
    (file://, as the README opens the site) or served under a sub-path means another
    place;
  - a #fragment names an element of the target page (an id, or an <a name=...>);
  - a link does not use file: (it would work on one machine only) or an unknown scheme.
Links that leave the site (http:, https:, mailto:, ...) are counted and not followed:
the check needs no network. Each file is read and parsed once: the whole site (some 530
pages and stylesheets, 29,000 links) takes seconds.
"""
import argparse
import html.parser
import os
import shutil
import re
import sys
import tempfile
import urllib.parse

# Attributes that name another resource, on any element.
LINK_ATTRS = {"href", "src", "data", "poster", "xlink:href"}
# Schemes that leave the site; anything else with a scheme (but file:) is a break too.
EXTERNAL_SCHEMES = {"http", "https", "mailto", "ftp", "tel", "javascript", "data"}
CSS_URL = re.compile(r"""url\(\s*(['"]?)([^'")]+)\1\s*\)""")


class Page(html.parser.HTMLParser):
    """One HTML file: the anchors it defines and the links it makes (with line numbers)."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.anchors = set()
        self.links = []  # (line, url)

    def handle_starttag(self, tag, attrs):
        for name, value in attrs:
            if value is None:
                continue
            if name == "id" or (name == "name" and tag == "a"):
                self.anchors.add(value)
            elif name in LINK_ATTRS:
                self.links.append((self.getpos()[0], value))
            elif name == "srcset":
                for item in value.split(","):
                    if item.strip():
                        self.links.append((self.getpos()[0], item.split()[0]))

    handle_startendtag = handle_starttag


class Site:
    def __init__(self, root):
        self.root = os.path.realpath(root)
        self.pages = {}  # path -> Page (parsed HTML), or None for other files
        self.broken = []  # (page, line, url, why)
        self.checked = 0
        self.external = 0

    def parse(self, path):
        if path not in self.pages:
            if path.endswith((".html", ".htm")):
                page = Page()
                with open(path, encoding="utf-8", errors="replace") as f:
                    page.feed(f.read())
                page.close()
                self.pages[path] = page
            elif path.endswith(".css"):
                page = Page()
                with open(path, encoding="utf-8", errors="replace") as f:
                    for n, line in enumerate(f, 1):
                        page.links += [(n, m.group(2)) for m in CSS_URL.finditer(line)]
                self.pages[path] = page
            else:
                self.pages[path] = None
        return self.pages[path]

    def resolve(self, page_path, url):
        """(target file, fragment) for a local url, or (None, reason) for a break,
        or None for a link that leaves the site."""
        parts = urllib.parse.urlsplit(url)
        if parts.scheme in EXTERNAL_SCHEMES:
            return None
        if parts.scheme == "file":
            return None, "a file: URL works on one machine only; link relative to the page"
        if parts.scheme:
            return None, f"unknown scheme '{parts.scheme}:'"
        if parts.netloc:  # //host/path: another site
            return None
        path = urllib.parse.unquote(parts.path)
        if not path:
            target = page_path
        elif path.startswith("/"):
            return None, "a link from the top (/...) leaves the site when it is read from disk; link relative to the page"
        else:
            target = os.path.join(os.path.dirname(page_path), path)
        target = os.path.realpath(target)
        if os.path.commonpath([target, self.root]) != self.root:
            return None, f"{target} is outside the site ({self.root}): it will not be published"
        if os.path.isdir(target):
            target = os.path.join(target, "index.html")
        if not os.path.isfile(target):
            return None, f"no such file {os.path.relpath(target, self.root)}"
        return target, urllib.parse.unquote(parts.fragment)

    def crawl(self, starts):
        todo = [os.path.realpath(p) for p in starts]
        seen = set(todo)
        while todo:
            page_path = todo.pop()
            page = self.parse(page_path)
            if page is None:
                continue
            for line, url in page.links:
                self.checked += 1
                found = self.resolve(page_path, url.strip())
                if found is None:
                    self.external += 1
                    continue
                target, fragment = found
                if target is None:
                    self.broken.append((page_path, line, url, fragment))
                    continue
                if fragment and target.endswith((".html", ".htm")):
                    if fragment not in self.parse(target).anchors:
                        self.broken.append((page_path, line, url,
                                            f"no anchor '{fragment}' in "
                                            f"{os.path.relpath(target, self.root)}"))
                if target not in seen and target.endswith((".html", ".htm", ".css")):
                    seen.add(target)
                    todo.append(target)

    def report(self, out):
        for page_path, line, url, why in sorted(self.broken):
            print(f"{os.path.relpath(page_path, self.root)}:{line}: {url}: {why}", file=out)


def check(site_dir, out=sys.stdout, err=sys.stderr):
    index = os.path.join(site_dir, "index.html")
    if not os.path.isfile(index):
        print(f"check_links: no {index}: build the site first "
              "(cmake --build build --target docs)", file=err)
        return 2
    site = Site(site_dir)
    pages = [index] + sorted(os.path.join(d, f) for d, _, files in os.walk(site.root)
                             for f in files if f.endswith((".html", ".htm")))
    site.crawl(pages)
    pages = sum(1 for p in site.pages.values() if p is not None)
    if site.broken:
        site.report(out)
        print(f"check_links: {len(site.broken)} broken of {site.checked} links "
              f"in {pages} pages and stylesheets", file=err)
        return 1
    print(f"check_links: no broken link, image or anchor: {site.checked} links "
          f"({site.external} leave the site, not followed) in {pages} pages and stylesheets",
          file=out)
    return 0


def self_test():
    """A small site with one break of each kind: each must be reported, and the same
    site repaired must pass."""
    good = {
        "index.html": '<link rel="stylesheet" href="style.css"><a href="a.html#sec">a</a>'
                      '<img src="img/pic.png" srcset="img/pic.png 1x, img/pic.png 2x">'
                      '<a href="https://example.org/">out</a><a href="//example.org/x">out</a>'
                      '<a href="sub/">sub</a><a href="#top" id="top">top</a>'
                      '<svg><a xlink:href="#top">t</a></svg><a href="a.html?x=1#old">q</a>',
        "a.html": '<h2 id="sec">s</h2><a name="old"></a><a href="index.html#top">back</a>'
                  '<a href="a.html#old">self</a><object data="d%20one.svg"></object>',
        "style.css": "body { background: url('img/pic.png'); }",
        "img/pic.png": "png", "d one.svg": "<svg/>", "sub/index.html": '<a href="../a.html">up</a>',
    }
    breaks = {  # file -> (new content with exactly one break, what the report must name)
        "a.html": (good["a.html"].replace("index.html#top", "index.html#gone"),
                   "no anchor 'gone'"),
        "sub/index.html": ('<img src="../img/missing.png">', "no such file img/missing.png"),
        "style.css": ("p { background: url(nothere.gif) }", "no such file nothere.gif"),
        "orphan.html": ('<a href="nopage.html">x</a>', "no such file nopage.html"),
        "img/set.html": ('<img srcset="pic.png 1x, big.png 2x">', "no such file img/big.png"),
        "up.html": ('<a href="../outside.html">x</a>', "outside the site"),
        "sub/top.html": ('<a href="/index.html">x</a>', "a link from the top"),
        "file.html": ('<a href="file:///etc/hostname">y</a>', "a file: URL"),
        "svg.html": ('<svg><a xlink:href="#nowhere">z</a></svg>', "no anchor 'nowhere'"),
        "scheme.html": ('<a href="c:x">x</a>', "unknown scheme 'c:'"),
    }
    failures = []
    with tempfile.TemporaryDirectory() as outer:
        tmp = os.path.join(outer, "site")  # ../outside.html lies in outer, outside the site
        os.makedirs(tmp)
        with open(os.path.join(outer, "outside.html"), "w") as f:
            f.write("<p>not published</p>")

        def write(files):
            for name, text in files.items():
                path = os.path.join(tmp, name)
                os.makedirs(os.path.dirname(path), exist_ok=True)
                with open(path, "w") as f:
                    f.write(text)

        class Sink:
            text = ""

            def write(self, s):
                Sink.text += s

        write(good)
        if check(tmp, Sink(), Sink()) != 0:
            failures.append(f"the good site failed:\n{Sink.text}")
        for name, (text, must_name) in breaks.items():
            Sink.text = ""
            shutil.rmtree(tmp)
            os.makedirs(tmp)
            write(good)
            write({name: text})
            if check(tmp, Sink(), Sink()) != 1:
                failures.append(f"a break in {name} ({must_name}) was not reported")
            lines = [l for l in Sink.text.splitlines() if not l.startswith("check_links:")]
            if len(lines) != 1 or must_name not in lines[0]:
                failures.append(f"a break in {name} ({must_name}): expected it as the only "
                                f"broken link, got:\n{Sink.text}")
    for f in failures:
        print(f"check_links self-test: {f}", file=sys.stderr)
    if not failures:
        print(f"check_links self-test: the good site passes; each of {len(breaks)} breaks "
              "(missing anchor, image, stylesheet url, page, srcset image, SVG anchor; a "
              "link out of the site, from the top, a file: URL, an unknown scheme) is "
              "reported, and only it")
    return 1 if failures else 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("site", nargs="?", help="the built site's html directory")
    ap.add_argument("--self-test", action="store_true",
                    help="check a small site with known breaks")
    args = ap.parse_args()
    if args.self_test:
        return self_test()
    if not args.site:
        ap.error("give the site's html directory (e.g. build/docs/html) or --self-test")
    return check(args.site)


if __name__ == "__main__":
    sys.exit(main())
