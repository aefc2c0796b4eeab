#!/usr/bin/env bash
# plot.sh - lesson 06's measurements as two SVG plots and markdown tables.
#
# Usage:
#   lessons/06-performance/plot.sh [--mtu BYTES] CSV OUTDIR
#   lessons/06-performance/plot.sh --help
#
# Reads the CSV that `client --csv FILE` writes (one row per measurement; the header
# names the columns, see client --help) and writes three files into OUTDIR:
#   latency.svg    lat_typical_us against the message size, log-log, one curve per
#                  technique among the rows of kind "latency" or "both" (ping-pong rows:
#                  one way, the round trip / 2; the others: post to completion)
#   bandwidth.svg  the bandwidth (column mib_per_s, or mb_per_s) against the message
#                  size, log x, one curve per technique among the rows of kind
#                  "bandwidth" or "both"
#   tables.md      one markdown table per step (technique, size, iterations, MiB/s,
#                  Mmsg/s, typical and p99 latency, client CPU), for the README to embed
# Curves and table rows come in the order of the step and then of the CSV, points in the
# order of size. The same CSV gives byte-identical files (gnuplot's SVG terminal writes
# no date), so committed plots can be made again and compared.
#
# A dashed vertical line marks the path MTU: --mtu BYTES, or else the CSV's own column
# "path_mtu" (or "mtu") when it has one and every row agrees. Without either, no line.
#
# Needs gnuplot (Debian's gnuplot-nox; scripts/install-deps.sh installs it). Exit status:
# 0 the three files were written, 1 the CSV could not be read or gnuplot failed (the
# message says which row or what gnuplot said), 2 bad usage.
set -euo pipefail

# The bandwidth's unit, by the CSV's column name: its symbol and what it is. Lesson 06's
# client writes mib_per_s (2^20 bytes per second, the unit perftest prints as "MB/sec").
declare -A BW_UNIT=([mib_per_s]="MiB/s|1 MiB = 2²⁰ bytes" [mb_per_s]="MB/s|1 MB = 10⁶ bytes")

usage() { sed -n '2,/^set -euo pipefail/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"; }
die_usage() {
  printf 'plot.sh: %s\n' "$*" >&2
  echo "Run 'plot.sh --help' for the usage." >&2
  exit 2
}
die() { printf 'plot.sh: ERROR: %s\n' "$*" >&2; exit 1; }

# --- arguments -----------------------------------------------------------------------
MTU="" ARGS=()
while [ $# -gt 0 ]; do
  case "$1" in
    -h|--help) usage; exit 0 ;;
    --mtu)
      [ $# -ge 2 ] || die_usage "--mtu needs a size in bytes (e.g. --mtu 4096)"
      MTU=$2; shift 2 ;;
    --) shift; ARGS+=("$@"); break ;;
    -*) die_usage "unknown option '$1'" ;;
    *) ARGS+=("$1"); shift ;;
  esac
done
[ ${#ARGS[@]} -eq 2 ] || die_usage "expected CSV and OUTDIR, got ${#ARGS[@]} argument(s): ${ARGS[*]:-none}"
CSV=${ARGS[0]} OUTDIR=${ARGS[1]}
if [ -n "$MTU" ] && ! [[ $MTU =~ ^[1-9][0-9]*$ ]]; then
  die_usage "--mtu must be a size in bytes (a positive whole number, e.g. 4096), not '$MTU'"
fi
[ -f "$CSV" ] || die "no CSV file '$CSV' (make one with lesson 06's client --csv FILE, or lessons/06-performance/bench.sh)"
command -v gnuplot >/dev/null \
  || die "gnuplot is not installed: install it with scripts/install-deps.sh (Debian package gnuplot-nox)"
mkdir -p "$OUTDIR" || die "cannot create the output directory '$OUTDIR'"

# --- the CSV, read once --------------------------------------------------------------
# One awk pass checks the CSV and writes, into a scratch directory:
#   lat.gp, bw.gp  gnuplot datablocks and plot commands (one curve per technique)
#   ticks.gp       the x axis: its range and the tick marks
#   bwcol          the bandwidth column it found (mib_per_s or mb_per_s)
#   techniques     how many techniques (one line style each)
#   mtu            the path MTU the CSV names, if any
#   tables.md      the markdown tables
SCRATCH=$(mktemp -d /tmp/lesson06-plot.XXXXXX)
trap 'rm -rf "$SCRATCH"' EXIT

awk -F, -v scratch="$SCRATCH" -v csv="$CSV" -v csvname="$(basename "$CSV")" '
function bad(msg) { printf "plot.sh: ERROR: %s: %s\n", csv, msg > "/dev/stderr"; failed = 1; exit 1 }
function num(v) { return v ~ /^[+-]?([0-9]+[.]?[0-9]*|[.][0-9]+)([eE][+-]?[0-9]+)?$/ }
function cell(v, fmt) { return num(v) ? sprintf(fmt, v) : "-" }
# sig(v): a rate with three significant digits or so, never in e-notation.
function sig(v) { if (!num(v)) return "-"; v += 0; return sprintf(v >= 100 ? "%.0f" : v >= 10 ? "%.1f" : v >= 1 ? "%.2f" : v >= 0.1 ? "%.3f" : v >= 0.01 ? "%.4f" : "%.5f", v) }
# human(bytes): "64", "1K", "64K", "1M" for the axis; unit(bytes): "64 B", "1 KiB" for tables.
function human(b) { return b >= 1048576 && b % 1048576 == 0 ? b / 1048576 "M" : b >= 1024 && b % 1024 == 0 ? b / 1024 "K" : b "" }
function unit(b) { return b >= 1048576 && b % 1048576 == 0 ? b / 1048576 " MiB" : b >= 1024 && b % 1024 == 0 ? b / 1024 " KiB" : b " B" }
function esc(s) { gsub(/"/, "\x27", s); return s }

NR == 1 {
  sub(/\r$/, "")
  ncols = NF
  for (i = 1; i <= NF; i++) col[$i] = i
  split("step technique kind size iters mmsg_per_s lat_typical_us lat_p99_us cpu_percent", need, " ")
  for (i = 1; i in need; i++)
    if (!(need[i] in col)) bad("the header has no column \"" need[i] "\" (header: " $0 "); is this the CSV of lesson 06 client --csv?")
  bwcol = ("mib_per_s" in col) ? "mib_per_s" : ("mb_per_s" in col) ? "mb_per_s" : ""
  if (bwcol == "") bad("the header has no bandwidth column, mib_per_s or mb_per_s (header: " $0 ")")
  print bwcol > (scratch "/bwcol")
  mtucol = ("path_mtu" in col) ? col["path_mtu"] : ("mtu" in col) ? col["mtu"] : 0
  next
}
/^[ \t\r]*$/ { next }
{
  sub(/\r$/, "")
  if (NF != ncols) bad("line " NR " has " NF " fields, the header " ncols)
  step = $col["step"]; tech = $col["technique"]; kind = $col["kind"]; size = $col["size"]
  if (step !~ /^[0-9]+$/) bad("line " NR ": step \"" step "\" is not a whole number")
  if (size !~ /^[1-9][0-9]*$/) bad("line " NR ": size \"" size "\" is not a positive whole number of bytes")
  if (tech == "") bad("line " NR ": empty technique")
  if (kind != "latency" && kind != "bandwidth" && kind != "both")
    bad("line " NR ": kind \"" kind "\" is none of latency, bandwidth, both")
  if (mtucol && num($mtucol)) {
    if (mtu != "" && mtu != $mtucol + 0) bad("line " NR ": path MTU " $mtucol " differs from the " mtu " of an earlier row")
    mtu = $mtucol + 0
  }
  n++
  r_step[n] = step; r_tech[n] = tech; r_kind[n] = kind; r_size[n] = size + 0
  r_iters[n] = $col["iters"]; r_mb[n] = $col[bwcol]; r_mmsg[n] = $col["mmsg_per_s"]
  r_lat[n] = $col["lat_typical_us"]; r_p99[n] = $col["lat_p99_us"]; r_cpu[n] = $col["cpu_percent"]
  # The techniques, each once, ordered by step and then by first appearance.
  key = step SUBSEP tech
  if (!(key in t_index)) { nt++; t_index[key] = nt; t_step[nt] = step + 0; t_name[nt] = tech; t_first[nt] = n }
  if (size + 0 < smin || smin == "") smin = size + 0
  if (size + 0 > smax) smax = size + 0
}
END {
  if (failed) exit 1
  if (n == 0) bad("no measurements (only a header, or empty)")
  # techniques sorted by (step, first row): insertion sort, stable, small n
  for (i = 1; i <= nt; i++) order[i] = i
  for (i = 2; i <= nt; i++) {
    v = order[i]
    for (j = i - 1; j >= 1 && (t_step[order[j]] > t_step[v] || (t_step[order[j]] == t_step[v] && t_first[order[j]] > t_first[v])); j--)
      order[j + 1] = order[j]
    order[j + 1] = v
  }
  # rows sorted by (technique order, size, CSV order)
  for (k = 1; k <= nt; k++) rank[t_step[order[k]] SUBSEP t_name[order[k]]] = k
  for (i = 1; i <= n; i++) { rows[i] = i; r_rank[i] = rank[r_step[i] SUBSEP r_tech[i]] }
  for (i = 2; i <= n; i++) {
    v = rows[i]
    for (j = i - 1; j >= 1 && (r_rank[rows[j]] > r_rank[v] || (r_rank[rows[j]] == r_rank[v] && r_size[rows[j]] > r_size[v])); j--)
      rows[j + 1] = rows[j]
    rows[j + 1] = v
  }

  # --- plots: a datablock per technique and plot, then one plot command
  split("lat bw", plots, " ")
  for (p = 1; p <= 2; p++) {
    name = plots[p]; out = scratch "/" name ".gp"; curves = 0; cmd = ""
    for (k = 1; k <= nt; k++) {
      t = order[k]; pts = 0; block = ""
      for (i = 1; i <= n; i++) {
        r = rows[i]
        if (r_rank[r] != k) continue
        if (name == "lat" && r_kind[r] == "bandwidth") continue
        if (name == "bw" && r_kind[r] == "latency") continue
        y = (name == "lat") ? r_lat[r] : r_mb[r]
        if (!num(y) || y + 0 <= 0) {
          printf "plot.sh: warning: %s: %s at %s B has no positive %s (\"%s\"); that point is left out\n", \
            csv, t_name[t], r_size[r], name == "lat" ? "lat_typical_us" : bwcol, y > "/dev/stderr"
          continue
        }
        block = block r_size[r] " " y "\n"; pts++
      }
      if (pts == 0) continue
      curves++
      printf "$%s%d << EOD\n%sEOD\n", name, curves, block > out
      # Line style k belongs to technique k: one colour per technique in both plots.
      cmd = cmd (curves > 1 ? ", \\\n     " : "plot ") sprintf("$%s%d using 1:2 with linespoints ls %d title \"%d: %s\" noenhanced", name, curves, k, t_step[t], esc(t_name[t]))
    }
    if (curves == 0) bad("no row of kind " (name == "lat" ? "latency or both with a lat_typical_us" : "bandwidth or both with a " bwcol) " to plot")
    print cmd > out
    close(out)
  }

  # --- the x axis: powers of two from the smallest to the largest size; with more
  # than 12 of them only every other one is labelled (always 64, 1K, 64K, 1M), the
  # rest are minor ticks.
  lo = 1; while (lo * 2 <= smin) lo *= 2
  hi = lo; while (hi < smax) hi *= 2
  if (hi == lo) { lo = lo > 1 ? lo / 2 : lo; hi = hi * 2 }
  count = 0; for (s = lo; s <= hi; s *= 2) count++
  e = 0; for (s = 1; s < lo; s *= 2) e++
  ticks = ""
  for (s = lo; s <= hi; s *= 2) {
    label = (count <= 12 || e % 2 == 0 || s == lo) ? human(s) : ""
    ticks = ticks (ticks == "" ? "" : ", ") sprintf("\"%s\" %d %d", label, s, label == "" ? 1 : 0)
    e++
  }
  # The range a hair wider than the ticks: a tick exactly on the end of a log axis may be
  # rounded off it and lose its label.
  printf "set xrange [%.4f:%.4f]\nset xtics (%s)\n", lo * 0.999, hi * 1.001, ticks > (scratch "/ticks.gp")
  if (mtu != "") print mtu > (scratch "/mtu")
  print nt > (scratch "/techniques")

  # --- tables.md: one table per step
  out = scratch "/tables.md"
  printf "<!-- written by lessons/06-performance/plot.sh from %s; do not edit by hand -->\n", csvname > out
  bwsym = bwcol == "mib_per_s" ? "MiB/s" : "MB/s"
  printf "%s: %s bytes per second; latency: typical (median) and 99th percentile, one way for ping-pong rows (round trip / 2), post to completion for the others; CPU: the client process.\n", bwsym, bwcol == "mib_per_s" ? "2²⁰" : "10⁶" > out
  laststep = ""
  for (i = 1; i <= n; i++) {
    r = rows[i]
    if (r_step[r] != laststep) {
      laststep = r_step[r]
      techs = ""; delete seen
      for (k = 1; k <= nt; k++) if (t_step[order[k]] == laststep + 0 && !(t_name[order[k]] in seen)) {
        seen[t_name[order[k]]] = 1; techs = techs (techs == "" ? "" : ", ") t_name[order[k]]
      }
      printf "\n### Step %s: %s\n\n", laststep, techs > out
      print "| step | technique | size | iters | " bwsym " | Mmsg/s | lat typ µs | lat p99 µs | CPU % |" > out
      print "|---:|---|---:|---:|---:|---:|---:|---:|---:|" > out
    }
    printf "| %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", r_step[r], r_tech[r], unit(r_size[r]), \
      cell(r_iters[r], "%d"), sig(r_mb[r]), sig(r_mmsg[r]), cell(r_lat[r], "%.2f"), \
      cell(r_p99[r], "%.2f"), cell(r_cpu[r], "%.0f") > out
  }
  close(out)
}' "$CSV" || die "could not read $CSV (see the message above)"

if [ -z "$MTU" ] && [ -s "$SCRATCH/mtu" ]; then MTU=$(cat "$SCRATCH/mtu"); fi

# --- gnuplot ---------------------------------------------------------------------------
# common_style TITLE YLABEL: the settings both plots share, as gnuplot commands.
common_style() {
  cat <<EOF
set encoding utf8
set terminal svg size 960,600 dynamic enhanced font "sans,12" background "white"
set title "$1" noenhanced
set xlabel "message size (bytes)"
set ylabel "$2" noenhanced
set logscale x 2
set grid xtics ytics mxtics mytics lc rgb "#dddddd" lw 1
set key outside right top vertical Left reverse samplen 2 spacing 1.1
set rmargin 30
set tics out nomirror
set border 3
EOF
  cat "$SCRATCH/ticks.gp"
  if [ -n "$MTU" ]; then
    echo "set arrow from $MTU, graph 0 to $MTU, graph 1 nohead dt 2 lw 1.5 lc rgb \"#555555\" front"
    echo "set label \"path MTU $MTU B\" at $MTU, graph 1 offset 0.5,-1 left textcolor rgb \"#555555\" font \",10\" front"
  fi
  # Fourteen distinct colours (one per technique lesson 06 measures); then the same
  # colours dashed. One style per technique.
  local colors=("#1f77b4" "#d62728" "#2ca02c" "#ff7f0e" "#9467bd" "#8c564b" "#e377c2"
                "#17becf" "#7f7f7f" "#bcbd22" "#000080" "#800000" "#008000" "#ff1493")
  local i
  for i in $(seq 1 "$(cat "$SCRATCH/techniques")"); do
    echo "set style line $i lc rgb \"${colors[$(((i - 1) % 14))]}\" lw 1.5 pt $((((i - 1) % 13) + 1)) ps 0.7 dt $(((i - 1) / 14 + 1))"
  done
}

# draw OUT TITLE YLABEL EXTRA DATA: one SVG.
draw() {
  local out=$1 title=$2 ylabel=$3 extra=$4 data=$5 log="$SCRATCH/gnuplot.log"
  if ! { common_style "$title" "$ylabel"; printf '%s\n' "$extra"; echo "set output \"$out.tmp\""; cat "$data"; echo "unset output"; } \
       | gnuplot >"$log" 2>&1; then
    sed 's/^/    | /' "$log" >&2
    die "gnuplot failed drawing $out (its messages above)"
  fi
  if [ -s "$log" ]; then sed 's/^/plot.sh: gnuplot: /' "$log" >&2; fi
  mv "$out.tmp" "$out"
}

BW_WORD=${BW_UNIT[$(cat "$SCRATCH/bwcol")]}
draw "$OUTDIR/latency.svg" \
  "Latency by message size (ping-pong: one way = round trip / 2; others: post to completion)" \
  "typical latency (µs, median)" \
  "set logscale y 10
set format y \"%g\"" "$SCRATCH/lat.gp"
draw "$OUTDIR/bandwidth.svg" \
  "Bandwidth by message size" \
  "bandwidth (${BW_WORD%%|*}, ${BW_WORD#*|})" \
  "set yrange [0:*]
set format y \"%g\"" "$SCRATCH/bw.gp"
cp "$SCRATCH/tables.md" "$OUTDIR/tables.md"
echo "plot.sh: wrote $OUTDIR/latency.svg, $OUTDIR/bandwidth.svg and $OUTDIR/tables.md${MTU:+ (path MTU $MTU B marked)}"
