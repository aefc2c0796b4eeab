#!/usr/bin/env bash
# Every link and image of the built site resolves: Debian's linkchecker crawls the site
# from index.html through local files only (no network: links that leave the site are
# listed but not followed), anchors included (its AnchorCheck plugin), and fails on any
# broken link, missing image or missing anchor.
#   docs/site/check_links.sh SITE_HTML_DIR WORK_DIR
set -euo pipefail
site=${1:?usage: check_links.sh SITE_HTML_DIR WORK_DIR}
work=${2:?usage: check_links.sh SITE_HTML_DIR WORK_DIR}
[ -f "$site/index.html" ] || { echo "check_links: no $site/index.html: build the site first (cmake --build build --target docs)" >&2; exit 1; }
command -v linkchecker >/dev/null || { echo "check_links: linkchecker missing: run ./scripts/install-deps.sh" >&2; exit 1; }
mkdir -p "$work"
# linkchecker run as root drops to user nobody, who must be able to read the site and
# reach it: a build tree under a private directory (mktemp -d is mode 0700) cannot be
# reached, so as root it checks a readable copy in a directory of its own under /tmp.
if [ "$(id -u)" -eq 0 ]; then
  copy=$(mktemp -d /tmp/site-links.XXXXXX)
  trap 'rm -rf "$copy"' EXIT
  cp -r "$site" "$copy/html"
  chmod -R a+rX "$copy"
  site=$copy/html
fi
cat > "$work/linkcheckerrc" <<RC
[checking]
threads=4
[filtering]
checkextern=0
[AnchorCheck]
[output]
status=0
warnings=1
RC
set +e
linkchecker --config "$work/linkcheckerrc" --no-status --output text \
  "file://$(cd "$site" && pwd)/index.html" >"$work/report.txt" 2>&1
rc=$?
set -e
checked=$(grep -oE '[0-9]+ links? in [0-9]+ URLs? checked' "$work/report.txt" | tail -1) || checked=""
if [ $rc -ne 0 ]; then
  cat "$work/report.txt"
  echo "check_links: broken links in the site (report: $work/report.txt)" >&2
  exit 1
fi
echo "check_links: no broken link, image or anchor: ${checked:-see $work/report.txt}"
