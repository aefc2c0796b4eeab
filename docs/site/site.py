#!/usr/bin/env python3
"""Turn the project's markdown files into one Doxygen site, and finish it afterwards.

The markdown files are written for GitHub: relative links between them
(`lessons/01-verbs-send-recv/README.md`, `#the-steps`), images beside them
(`ladder.svg`), diagrams as fenced ```dot and ```msc blocks. Doxygen 1.9 resolves none
of that the same way, so `prepare` writes a Doxygen copy of every page listed in
docs/site/pages.txt into the build tree, and `finish` completes the HTML Doxygen wrote.

  site.py prepare --root SRC --out DIR   before Doxygen: DIR/pages/<page id>.md, DIR/images/
  site.py finish  --root SRC --out DIR --html HTML
                                          after Doxygen: links to source files, copied
                                          images and files, DIR/manifest.json for the tests

What `prepare` does to each page (the source files stay as they are):
  - the first heading gets the page's id ({#lessons_01_verbs_send_recv_README}), every
    other heading an id made of the page id and GitHub's anchor for that heading, so a
    link to `README.md#the-steps` finds the same section here as on GitHub;
  - a link to a listed page (with or without #anchor) becomes a Doxygen \\ref; a link to
    an unlisted markdown file, a missing file, or an anchor the target page does not have
    stops the build with the page and the link named;
  - a link to a C++ file of common/ or lessons/ (also a `code span` that names one, as
    the lessons do: `common/qp_state.cpp`) lands on that file's Doxygen page; a link to
    any other file of the repository on a copy of it under html/repo/ (a text file
    without a suffix a browser shows gets .txt);
  - an image (markdown or <img>) is copied to DIR/images/ under a name made of its path
    (captures/01-verbs-send-recv/ladder.svg -> captures_01-verbs-send-recv_ladder.svg),
    because every page's ladder.svg has the same file name;
  - ```dot and ```msc blocks become Doxygen's \\dot and \\msc diagrams (rendered by
    Graphviz and Doxygen's built-in mscgen at build time);
  - each page gets its subpages (the indented lines of pages.txt) and a navigation line:
    previous, next, Concepts, Glossary, API.
"""
import argparse
import html
import json
import os
import re
import shutil
import sys
from pathlib import Path

CONCEPTS = "docs/concepts/README.md"
GLOSSARY = "docs/glossary.md"
API = "docs/mainpage.md"
DOXYGEN_SOURCE_DIRS = ("common/", "lessons/")
DOXYGEN_SOURCE_EXTS = (".hpp", ".cpp")

LINK_RE = re.compile(r'(!?)\[((?:[^\[\]]|\[[^\]]*\])*)\]\(([^()\s]+)(?:\s+"[^"]*")?\)')
IMG_TAG_RE = re.compile(r'(<img\b[^>]*\bsrc=")([^"]+)(")', re.IGNORECASE)
CODE_SPAN_RE = re.compile(r'(`+)((?:(?!\1).)+?)\1', re.DOTALL)
HEADING_RE = re.compile(r'^(#{1,6})\s+(.*?)\s*(\{#[^}]*\})?\s*$')
FENCE_RE = re.compile(r'^\s*(```|~~~)\s*(\w*)')


class SiteError(Exception):
    pass


def read_pages(root):
    """pages.txt -> [(path, parent path or None)] in reading order."""
    pages, parent = [], None
    for n, line in enumerate((root / "docs/site/pages.txt").read_text().splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        path = line.strip()
        if not (root / path).is_file():
            raise SiteError(f"docs/site/pages.txt:{n}: {path} does not exist")
        if line.startswith("  "):
            if parent is None:
                raise SiteError(f"docs/site/pages.txt:{n}: a subpage needs a page above it")
            pages.append((path, parent))
        else:
            pages.append((path, None))
            parent = path
    return pages


def page_id(path, front):
    if path == front:
        return "index"
    return re.sub(r"[^A-Za-z0-9]", "_", path[:-3] if path.endswith(".md") else path)


def github_slug(heading):
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces -> '-'."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link's text only
    text = re.sub(r"<[^>]+>", "", text).strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def label_for(pid, slug):
    return f"{pid}__{re.sub(r'[^A-Za-z0-9]', '_', slug)}"


def headings(text):
    """[(line index, level, heading text, github slug)] outside code fences."""
    out, seen, fence = [], {}, None
    for i, line in enumerate(text.splitlines()):
        m = FENCE_RE.match(line)
        if m:
            fence = None if fence == m.group(1) else (fence or m.group(1))
            continue
        if fence:
            continue
        h = HEADING_RE.match(line)
        if h:
            slug = github_slug(h.group(2))
            n = seen.get(slug, 0)
            seen[slug] = n + 1
            out.append((i, len(h.group(1)), h.group(2), slug if n == 0 else f"{slug}-{n}"))
    return out


def code_to_html(text):
    """Markdown code spans in a link's text -> <code>, for links written as HTML."""
    return CODE_SPAN_RE.sub(lambda c: f"<code>{html.escape(c.group(2))}</code>", text)


def plain_title(heading):
    t = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading).replace("`", "")
    return t.replace('"', "'").replace("\\", "")


class Site:
    def __init__(self, root, out):
        self.root, self.out = root, out
        self.pages = read_pages(root)
        self.front = self.pages[0][0]
        self.order = [p for p, _ in self.pages]
        self.ids = {p: page_id(p, self.front) for p in self.order}
        self.texts = {p: (root / p).read_text() for p in self.order}
        self.heads = {p: headings(t) for p, t in self.texts.items()}
        self.titles = {p: plain_title(self.heads[p][0][2]) if self.heads[p] else p
                       for p in self.order}
        self.copied_files = set()   # repository files linked to: copied under html/repo/
        self.source_links = set()   # C++ files linked to: resolved after Doxygen
        self.images = {}            # page -> [image names in the site]
        self.diagrams = {}          # page -> number of ```dot and ```msc blocks

    # ---- resolving one link target -------------------------------------------------
    def resolve(self, cur, target, context):
        """A link target in page `cur` -> ('ref', label) | ('href', url) | ('ext', url)."""
        if re.match(r"^[A-Za-z][A-Za-z0-9+.-]*:", target) or target.startswith("//"):
            return ("ext", target)
        path, _, frag = target.partition("#")
        if not path:
            dest = cur
        else:
            dest = os.path.normpath(os.path.join(os.path.dirname(cur), path))
            if dest.startswith(".."):
                raise SiteError(f"{cur}: {context}: {target} leaves the repository")
            full = self.root / dest
            if full.is_dir():
                readme = os.path.normpath(os.path.join(dest, "README.md"))
                if readme in self.ids:
                    dest = readme
                else:
                    raise SiteError(f"{cur}: {context}: {target} is a folder with no page")
            elif not full.exists():
                raise SiteError(f"{cur}: {context}: {target} does not exist ({dest})")
        if dest in self.ids:
            if frag:
                slugs = {s for _, _, _, s in self.heads[dest]}
                if frag not in slugs:
                    raise SiteError(f"{cur}: {context}: {dest} has no heading #{frag}")
                return ("ref", label_for(self.ids[dest], frag))
            return ("ref", self.ids[dest])
        if dest.endswith(".md"):
            raise SiteError(f"{cur}: {context}: {dest} is not on the site (docs/site/pages.txt)")
        if frag:
            raise SiteError(f"{cur}: {context}: an anchor into {dest}, which is not a page")
        if dest.startswith(DOXYGEN_SOURCE_DIRS) and dest.endswith(DOXYGEN_SOURCE_EXTS):
            self.source_links.add(dest)
            return ("href", f"srcmap/{dest}")
        self.copied_files.add(dest)
        return ("href", f"repo/{copied_name(dest)}")

    def href(self, label):
        """The HTML address Doxygen gives a page id or a section label."""
        pid = label.split("__")[0]
        return f"{pid}.html" if pid == label else f"{pid}.html#{label}"

    def image(self, cur, src):
        if re.match(r"^[A-Za-z][A-Za-z0-9+.-]*:", src):
            raise SiteError(f"{cur}: image {src}: the site keeps images local; commit it")
        dest = os.path.normpath(os.path.join(os.path.dirname(cur), src))
        if not (self.root / dest).is_file():
            raise SiteError(f"{cur}: image {src} does not exist ({dest})")
        name = dest.replace("/", "_")
        (self.out / "images").mkdir(parents=True, exist_ok=True)
        shutil.copyfile(self.root / dest, self.out / "images" / name)
        self.images.setdefault(cur, []).append(name)
        return name

    # ---- rewriting one line ---------------------------------------------------------
    def code_span_link(self, cur, code):
        """A code span naming a page or a C++ file of ours -> a link, else None."""
        candidate = code.strip()
        if not re.fullmatch(r"[\w./-]+", candidate) or "/" not in candidate and \
                not candidate.endswith(DOXYGEN_SOURCE_EXTS + (".md",)):
            return None
        for base in (os.path.dirname(cur), ""):
            dest = os.path.normpath(os.path.join(base, candidate))
            if dest.startswith(".."):
                continue
            if (self.root / dest).is_dir():
                dest = os.path.join(dest, "README.md")
            if dest in self.ids:
                return (f'<a class="el" href="{self.href(self.ids[dest])}">'
                        f"<code>{html.escape(candidate)}</code></a>")
            if dest.startswith(DOXYGEN_SOURCE_DIRS) and dest.endswith(DOXYGEN_SOURCE_EXTS) \
                    and (self.root / dest).is_file():
                self.source_links.add(dest)
                return f'<a href="srcmap/{dest}"><code>{html.escape(candidate)}</code></a>'
        return None

    def rewrite_line(self, cur, line, heading):
        spans = [(m.start(), m.end()) for m in CODE_SPAN_RE.finditer(line)]

        def in_span(pos):
            return any(s <= pos < e for s, e in spans)

        out, pos = [], 0
        for m in LINK_RE.finditer(line):
            if in_span(m.start()):
                continue
            out.append(self.rewrite_spans(cur, line[pos:m.start()], heading))
            bang, text, target = m.group(1), m.group(2), m.group(3)
            # Doxygen's \ref text must stay on one line
            text = re.sub(r"\s*\n\s*", " ", text)
            if bang:
                out.append(f"![{text}]({self.image(cur, target)})")
            else:
                kind, where = self.resolve(cur, target, f"link [{text}]({target})")
                if kind == "ref" and "`" in text:
                    # Doxygen shows a \ref's text as plain text, backticks and all: an
                    # HTML link to the same place (the site's links are checked anyway)
                    out.append(f'<a class="el" href="{self.href(where)}">{code_to_html(text)}</a>')
                elif kind == "ref":
                    out.append(f"[{text}](@ref {where})")
                elif kind == "ext":
                    out.append(m.group(0))
                else:
                    out.append(f'<a href="{where}">{code_to_html(text)}</a>')
            pos = m.end()
        out.append(self.rewrite_spans(cur, line[pos:], heading))
        return IMG_TAG_RE.sub(lambda t: t.group(1) + self.image(cur, t.group(2)) + t.group(3),
                              "".join(out))

    def rewrite_spans(self, cur, text, heading):
        if heading:
            return text

        def one(m):
            link = self.code_span_link(cur, m.group(2))
            if link:
                return link
            # Doxygen reads "::ffff" even in a code span as a link to a symbol "ffff";
            # "::%ffff" is shown as "::ffff" and links nothing
            return m.group(1) + re.sub(r"(?<![\w:])::(?=[A-Za-z_])", "::%", m.group(2)) + m.group(1)
        return CODE_SPAN_RE.sub(one, text)

    # ---- one page ----------------------------------------------------------------------
    def nav_line(self, cur):
        i = self.order.index(cur)
        parts = []
        if i > 0:
            prev = self.order[i - 1]
            parts.append(f'Previous: \\ref {self.ids[prev]} "{self.titles[prev]}"')
        if i + 1 < len(self.order):
            nxt = self.order[i + 1]
            parts.append(f'Next: \\ref {self.ids[nxt]} "{self.titles[nxt]}"')
        for name, path in (("Concepts", CONCEPTS), ("Glossary", GLOSSARY), ("API", API)):
            if path != cur:
                parts.append(f'\\ref {self.ids[path]} "{name}"')
        return " &nbsp;|&nbsp; ".join(parts)

    def convert(self, cur):
        pid = self.ids[cur]
        lines = self.texts[cur].splitlines()
        head_at = {i: (level, text, slug) for i, level, text, slug in self.heads[cur]}
        first_heading = self.heads[cur][0][0] if self.heads[cur] else None
        out, fence, diagram, para = [], None, None, []

        def flush():
            # a paragraph at once: a link's text may run over a line break
            if para:
                out.append(self.rewrite_line(cur, "\n".join(para), heading=False))
                para.clear()
        for i, line in enumerate(lines):
            m = FENCE_RE.match(line)
            if m and (fence is None or m.group(1) == fence):
                flush()
                if fence is None:
                    fence = m.group(1)
                    lang = m.group(2).lower()
                    if lang in ("dot", "msc"):
                        diagram = lang
                        self.diagrams[cur] = self.diagrams.get(cur, 0) + 1
                        out.append("\\dot" if lang == "dot" else "\\msc")
                        continue
                else:
                    fence = None
                    if diagram:
                        out.append("\\enddot" if diagram == "dot" else "\\endmsc")
                        diagram = None
                        continue
                out.append(line)
                continue
            if fence:
                out.append(line)
                continue
            if i in head_at:
                flush()
                level, text, slug = head_at[i]
                text = self.rewrite_line(cur, text, heading=True)
                if i == first_heading:
                    label = "" if pid == "index" else f" {{#{pid}}}"
                    out.append(f"# {text}{label}")
                    out.append("")
                    out.append(f'<div class="sitenav">{self.nav_line(cur)}</div>')
                else:
                    out.append(f"{level * '#'} {text} {{#{label_for(pid, slug)}}}")
                continue
            if not line.strip():
                flush()
                out.append(line)
                continue
            para.append(line)
        flush()
        children = [p for p, parent in self.pages if parent == cur]
        if cur == self.front:
            children = [p for p, parent in self.pages if parent is None and p != cur]
        if children:
            title = "The pages of this site" if cur == self.front else "Pages in this part"
            out += ["", f"## {title} {{#{pid}__site_subpages}}", ""]
            # the front page only lists them: Doxygen 1.9.4's tree shows no subpages of
            # a markdown main page, so the others are top-level pages, in file order
            command = "\\ref" if cur == self.front else "\\subpage"
            out += [f"- {command} {self.ids[c]}" for c in children]
        out += ["", f'<div class="sitenav sitenav-bottom">{self.nav_line(cur)}</div>', ""]
        return "\n".join(out)

    def prepare(self):
        pages_dir = self.out / "pages"
        if pages_dir.exists():
            shutil.rmtree(pages_dir)
        if (self.out / "images").exists():
            shutil.rmtree(self.out / "images")
        pages_dir.mkdir(parents=True)
        (self.out / "images").mkdir(parents=True)
        for n, cur in enumerate(self.order):
            # Doxygen reads the files in name order: that order puts the pages in the tree
            name = "index.md" if cur == self.front else f"{n:02d}_{self.ids[cur]}.md"
            (pages_dir / name).write_text(self.convert(cur))
        manifest = {
            "pages": [{"path": p, "id": self.ids[p], "title": self.titles[p],
                       "html": f"{self.ids[p]}.html", "images": self.images.get(p, []),
                       "diagrams": self.diagrams.get(p, 0)}
                      for p in self.order],
            "source_links": sorted(self.source_links),
            "copied_files": sorted(self.copied_files),
        }
        (self.out / "prepared.json").write_text(json.dumps(manifest, indent=1))


def copied_name(rel):
    """Where a linked repository file lands under html/repo/: a text file without a
    suffix a browser shows (a script, a log, a step list) gets .txt, so that it opens as
    text instead of being downloaded."""
    shown = (".html", ".svg", ".png", ".jpg", ".txt", ".pcap", ".pcapng", ".json")
    return rel if rel.endswith(shown) else rel + ".txt"


def source_pages(html_dir):
    """Repository path of every C++ file -> the Doxygen page to land on.

    A header lands on its documentation page when it has one, a .cpp on its source.
    Doxygen names pages after the shortest unique path, so the path is read back from
    each source page's navigation bar (its folders) and title (its name)."""
    found = {}
    for page in html_dir.glob("*_source.html"):
        text = page.read_text(errors="replace")
        title = re.search(r'<div class="title">([^<]+)</div>', text)
        dirs = re.findall(r'<li class="navelem"><a class="el" href="dir_[^"]+">([^<]+)</a>', text)
        if not title:
            continue
        path = "/".join(dirs + [title.group(1).strip()])
        doc = page.with_name(page.name.replace("_source.html", ".html"))
        found[path] = doc.name if path.endswith(".hpp") and doc.exists() else page.name
    return found


def finish(root, out, html_dir):
    prepared = json.loads((out / "prepared.json").read_text())
    srcmap = source_pages(html_dir)
    missing = [p for p in prepared["source_links"] if p not in srcmap]
    if missing:
        raise SiteError("no Doxygen page for linked source files: " + ", ".join(missing))
    for page in html_dir.glob("*.html"):
        text = page.read_text(errors="replace")
        if "srcmap/" in text:
            text = re.sub(r'href="srcmap/([^"]+)"',
                          lambda m: f'href="{srcmap[m.group(1)]}"', text)
            page.write_text(text)
    for name in os.listdir(out / "images"):
        shutil.copyfile(out / "images" / name, html_dir / name)
    for rel in prepared["copied_files"]:
        dest = html_dir / "repo" / copied_name(rel)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(root / rel, dest)
    for page in prepared["pages"]:
        if not (html_dir / page["html"]).is_file():
            raise SiteError(f"Doxygen wrote no {page['html']} for {page['path']}")
    (out / "manifest.json").write_text(json.dumps(prepared, indent=1))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("step", choices=("prepare", "finish"))
    ap.add_argument("--root", required=True, type=Path)
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--html", type=Path)
    args = ap.parse_args()
    try:
        if args.step == "prepare":
            Site(args.root.resolve(), args.out).prepare()
        else:
            finish(args.root.resolve(), args.out, args.html)
    except SiteError as e:
        print(f"site.py {args.step}: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
