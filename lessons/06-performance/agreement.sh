#!/usr/bin/env bash
# agreement.sh - does lesson 06 measure what perftest measures? One run, two numbers.
#
# Usage:
#   lessons/06-performance/agreement.sh [--port P] [--out DIR] [--strict] [-n ITERS]
#   lessons/06-performance/agreement.sh --help
#
# Runs, on the userspace RoCE runtime (every process through scripts/userspace-roce.sh:
# its own 127.0.0.x, device uroce0, GID index 0), lesson 06's client next to perftest
# (Debian's, unmodified), each pair with the same settings:
#   latency    lesson 06  client --run pingpong -s 64 -n ITERS --signal-every 1
#              perftest   ib_send_lat -s 64 -n ITERS
#              compared:  the fastest one-way time (round trip / 2; perftest's t_min),
#                         and, for information, the typical (median) one
#   bandwidth  lesson 06  client --run write -s 65536 -n 5000 --window 128 --signal-every 1 --chain 1
#              perftest   ib_write_bw -s 65536 -n 5000
#              compared:  the average bandwidth in MiB/s (perftest's "MB/sec" is 2^20 bytes/s)
# Those are perftest 4.5-0.17's own settings (src/perftest_parameters.c): no inline data
# on a device it does not know (uroce0); ib_send_lat has a TX depth of 1 (DEF_TX_LAT) and
# so a CQ moderation of 1 (cq_mod is cut to tx_depth): every SEND is signaled;
# ib_write_bw has a TX depth of 128 (DEF_TX_BW), a post list of 1, and a CQ moderation
# of 1 at 64 KiB (above 8 KiB, MSG_SIZE_CQ_MOD_LIMIT, perftest turns its default of 100
# off unless -Q asks for it): every WRITE is signaled. perftest prints its TX depth, CQ
# moderation and inline size; this script reads them back and warns if they differ.
# A machine with 2 CPUs shared with other work is noisy, so the pairs alternate, three
# rounds of (lesson 06 ping-pong, ib_send_lat, lesson 06 write, ib_write_bw). The table
# shows the medians of the three; the verdicts judge the median of the rounds' own
# ratios (each lesson 06 run against the perftest run made right after it, under the
# same load: a CI run with two CPUs busy saw ping-pongs of 19, 11 and 9 us one way in
# three rounds, whose medians alone compared 0.49 where the rounds' ratios were 0.83,
# 0.49 and 1.01). Every client starts once `ss` shows its server
# listening (checked every 50 ms, at most 30 s), never after a fixed sleep.
# The ping-pong is judged on its fastest round trip, not its median: on the runtime a
# large minority of round trips are several times slower than the rest (ib_send_lat's
# average 23-27 us against a median of 8-9 us on a quiet 2-CPU machine), so the median
# of one run can land in either group (a CI run saw ib_send_lat's median at 26.3, 8.0
# and 21.0 us in three rounds, while lesson 06's stayed at 7.7-8.1 in the same rounds;
# a difference that shows only under load is printed, not judged). The fastest round
# trip does not flip: 6.1-7.4 us in quiet runs on that machine, 6.4-6.7 us in six under
# `stress-ng --cpu 2`. It varies by up to about 20 % between runs, more than the median
# does on a quiet machine, but never by the factor of 3 the median showed; and a scale
# error, such as a round trip against half of one, is in every sample, so in the
# fastest too.
#
# Prints: measure, lesson 06, perftest, ratio (of the medians, lesson 06 / perftest) and
# "agree (within ±15 %)" or "differ", then every run's number and, for the fastest
# latency and the bandwidth, the rounds' own ratios. Exit status:
#   0  every run succeeded, whatever the ratios (this is a benchmark);
#   1  a run failed (named, with its logs' tails); or the median of the rounds' ratios of
#      the fastest latency is outside 0.67 .. 1.5, or of the bandwidth outside 0.5 .. 2:
#      that is not noise but a method error, one of the two measuring something else (a
#      round trip against half of one, bits against bytes); or, with --strict, one of
#      those medians is outside 0.85 .. 1.15 (the fastest round trip varies by up to
#      about 20 % between runs, so --strict may fail on noise);
#   2  bad usage.
#
# Options:
#   --port P    TCP ports P (lesson 06's server), P+1 (ib_send_lat), P+2 (ib_write_bw);
#               default 18607 (perftest's own default, 18515, is never used)
#   --out DIR   where the logs go (default: a new /tmp/lesson06-agreement.XXXXXX)
#   --strict    exit 1 also when one of those medians is outside 0.85 .. 1.15
#   -n ITERS    round trips of the latency runs (default 10000)
#
# Environment:
#   BUILD_DIR        the CMake build tree (default <repo>/build): lesson 06's programs in
#                    $BUILD_DIR/lessons/06-performance/, the runtime in userspace-roce/lib
#   AGREEMENT_GUARD  seconds after which a stuck process is killed (default 300)
set -euo pipefail

LESSON_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$LESSON_DIR/../.." && pwd)
: "${BUILD_DIR:=$ROOT/build}"
export BUILD_DIR   # scripts/userspace-roce.sh finds the runtime there
BIN_DIR="$BUILD_DIR/lessons/06-performance"
PREFIX=("$ROOT/scripts/userspace-roce.sh" --)   # every process on the userspace runtime
ME=agreement.sh
HOST=127.0.0.1
GUARD=${AGREEMENT_GUARD:-300}
ROUNDS=3
LISTEN_WAIT_S=30   # how long a server may take to listen
EXIT_WAIT_S=30     # how long a server may take to exit once its client is done

# Units. perftest's "MB/sec" is 2^20 bytes per second: report_bw() divides by
# format_factor = 0x100000 (src/perftest_parameters.c), so it is a MiB/s. Lesson 06's
# result line says mib_per_s, 2^20 bytes per second too: the two compare as they are.

# The settings both sides of each pair use (see the header for where perftest's come from).
LAT_SIZE=64 BW_SIZE=65536 BW_ITERS=5000
LAT_TX_DEPTH=1 LAT_SIGNAL_EVERY=1
BW_TX_DEPTH=128 BW_SIGNAL_EVERY=1 BW_CHAIN=1
INLINE_BYTES=0
AGREE_LO=0.85 AGREE_HI=1.15    # "agree": within ±15 %
# Outside these: a method error, not noise. The fastest round trip varies by up to about
# 20 % between runs, so a factor of 1.5 is beyond noise and catches a factor of 2 (a
# round trip against half of one) with room; a bandwidth under load varies more.
LAT_GROSS_LO=0.67 LAT_GROSS_HI=1.5
BW_GROSS_LO=0.5 BW_GROSS_HI=2

usage() { sed -n '2,/^set -euo pipefail/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"; }
die_usage() {
  printf 'agreement.sh: %s\n' "$*" >&2
  echo "Run 'agreement.sh --help' for the options." >&2
  exit 2
}
die() { printf 'agreement.sh: ERROR: %s\n' "$*" >&2; exit 1; }

# --- arguments -----------------------------------------------------------------------
PORT=18607 OUT="" STRICT=0 LAT_ITERS=10000
while [ $# -gt 0 ]; do
  case "$1" in
    -h|--help) usage; exit 0 ;;
    --strict) STRICT=1; shift ;;
    --port|--out|-n)
      [ $# -ge 2 ] || die_usage "$1 needs a value"
      case "$1" in
        --port) PORT=$2 ;;
        --out) OUT=$2 ;;
        -n) LAT_ITERS=$2 ;;
      esac
      shift 2 ;;
    *) die_usage "unknown argument '$1'" ;;
  esac
done
if ! [[ $PORT =~ ^[1-9][0-9]*$ ]] || [ "$PORT" -gt 65533 ]; then
  die_usage "--port must be a TCP port up to 65533 (the runs use P .. P+2), not '$PORT'"
fi
if [ "$PORT" -le 18515 ] && [ $((PORT + 2)) -ge 18515 ]; then
  die_usage "--port $PORT would use 18515, perftest's default port (a stray perftest may be there): choose another"
fi
if ! [[ $LAT_ITERS =~ ^[1-9][0-9]*$ ]] || [ "$LAT_ITERS" -lt 100 ]; then
  die_usage "-n must be a whole number of round trips, at least 100, not '$LAT_ITERS'"
fi
[[ $GUARD =~ ^[1-9][0-9]*$ ]] || die "AGREEMENT_GUARD must be a whole number of seconds, not '$GUARD'"

# --- prerequisites ---------------------------------------------------------------------
for prog in server client; do
  [ -x "$BIN_DIR/$prog" ] || die "$BIN_DIR/$prog is not built: build it with" \
    "cmake -S $ROOT -B $BUILD_DIR && cmake --build $BUILD_DIR --target lesson06_server lesson06_client" \
    "(or point BUILD_DIR at the build tree)"
done
[ -e "$BUILD_DIR/userspace-roce/lib/libibverbs.so.1" ] || die "the userspace RoCE runtime is not built in" \
  "$BUILD_DIR: build it with cmake --build $BUILD_DIR --target uroce_verbs"
for tool in ib_send_lat ib_write_bw ss timeout; do
  command -v "$tool" >/dev/null || die "no $tool here: install perftest, iproute2 and coreutils with scripts/install-deps.sh"
done
for p in "$PORT" $((PORT + 1)) $((PORT + 2)); do
  if [ -n "$(ss -Hltn "sport = :$p")" ]; then
    die "something already listens on TCP port $p (ss -ltnp shows what): stop it or choose another --port"
  fi
done
if [ -z "$OUT" ]; then OUT=$(mktemp -d /tmp/lesson06-agreement.XXXXXX); fi
mkdir -p "$OUT" || die "cannot create the output directory '$OUT'"

# --- one run: a server and its client (run_pair.sh) ---------------------------------------
source "$LESSON_DIR/run_pair.sh"

# lesson_value LOG KEY: KEY's value in the client's "result: ..." line.
lesson_value() { sed -n "s/^result:.* $2=\([^ ]*\).*/\1/p" "$1" | tail -n 1; }
# perftest_row LOG SIZE: perftest's result row for SIZE (the line under "#bytes").
perftest_row() { awk -v size="$2" '/#bytes/ { t = 1; next } t && $1 == size { print; exit }' "$1"; }
# perftest_setting LOG NAME: a " NAME : VALUE" line of perftest's header, e.g. "TX depth".
perftest_setting() { sed -n "s/^ $2 *: *\([^ \t]*\).*/\1/p" "$1" | head -n 1; }
# is_number TEXT
is_number() { [[ $1 =~ ^[0-9]+([.][0-9]+)?([eE][+-]?[0-9]+)?$ ]]; }

# Each run's number, by measure: MIN_OURS, MIN_PT (the fastest, µs one way), BW_OURS,
# BW_PT (MiB/s), and the typical latencies, p99s and message rates for information.
MIN_OURS=() MIN_PT=() LAT_OURS=() LAT_PT=() BW_OURS=() BW_PT=() P99_OURS=() P99_PT=() MR_OURS=() MR_PT=()
SETTINGS_SEEN=()

# lesson_take NAME LOG KEY: sets VAL to KEY's number in the lesson client's result line;
# without one, the run failed after all: says so, names it in FAILED, returns 1.
lesson_take() {
  VAL=$(lesson_value "$2" "$3")
  is_number "$VAL" && return 0
  echo "FAILED (exit 0, but its 'result:' line has no number $3, saw '${VAL:-no result line}'; log: $2)"
  FAILED+=("$1")
  return 1
}

echo "agreement.sh: lesson 06 against perftest $(dpkg-query -W -f '${Version}' perftest 2>/dev/null || echo '(version unknown)')" \
  "on the userspace runtime; logs in $OUT"
DEV_LESSON=(-d uroce0 -g 0)
DEV_PT=(-d uroce0 -x 0)
for round in $(seq 1 "$ROUNDS"); do
  # 1. lesson 06 ping-pong
  name="lesson06-pingpong-$round"
  if run_pair "$name" "$PORT" "$BIN_DIR/server" -p "$PORT" "${DEV_LESSON[@]}" -- \
       "$BIN_DIR/client" "$HOST" -p "$PORT" "${DEV_LESSON[@]}" --run pingpong -s "$LAT_SIZE" -n "$LAT_ITERS" \
       --signal-every "$LAT_SIGNAL_EVERY"; then
    log="$OUT/$name-client.log"
    if lesson_take "$name" "$log" lat_min_us; then
      fastest=$VAL
      if lesson_take "$name" "$log" lat_typical_us; then
        lat=$VAL
        if lesson_take "$name" "$log" lat_p99_us; then
          MIN_OURS+=("$fastest") LAT_OURS+=("$lat") P99_OURS+=("$VAL")
          echo "ok: $fastest us one way (fastest), $lat us (typical), p99 $VAL us"
        fi
      fi
    fi
  fi

  # 2. ib_send_lat
  name="ib_send_lat-$round"
  p=$((PORT + 1))
  if run_pair "$name" "$p" ib_send_lat -s "$LAT_SIZE" -n "$LAT_ITERS" "${DEV_PT[@]}" -p "$p" -- \
       ib_send_lat -s "$LAT_SIZE" -n "$LAT_ITERS" "${DEV_PT[@]}" -p "$p" "$HOST"; then
    log="$OUT/$name-client.log"
    # #bytes #iterations t_min t_max t_typical t_avg t_stdev 99% 99.9% (usec; one way)
    read -r -a row <<<"$(perftest_row "$log" "$LAT_SIZE")"
    if [ ${#row[@]} -ge 9 ] && is_number "${row[2]}" && is_number "${row[4]}" && is_number "${row[7]}"; then
      MIN_PT+=("${row[2]}") LAT_PT+=("${row[4]}") P99_PT+=("${row[7]}")
      echo "ok: ${row[2]} us one way (t_min), ${row[4]} us (t_typical), p99 ${row[7]} us"
      SETTINGS_SEEN+=("ib_send_lat: TX depth $(perftest_setting "$log" "TX depth"), Max inline data $(perftest_setting "$log" "Max inline data")")
    else
      echo "FAILED (exit 0, but no $LAT_SIZE B row of 9 columns in its table; log: $log)"
      FAILED+=("$name")
    fi
  fi

  # 3. lesson 06 write stream
  name="lesson06-write-$round"
  if run_pair "$name" "$PORT" "$BIN_DIR/server" -p "$PORT" "${DEV_LESSON[@]}" -- \
       "$BIN_DIR/client" "$HOST" -p "$PORT" "${DEV_LESSON[@]}" --run write -s "$BW_SIZE" -n "$BW_ITERS" \
       --window "$BW_TX_DEPTH" --signal-every "$BW_SIGNAL_EVERY" --chain "$BW_CHAIN"; then
    log="$OUT/$name-client.log"
    if lesson_take "$name" "$log" mib_per_s; then
      mib=$(awk -v v="$VAL" 'BEGIN { printf "%.2f", v }')
      if lesson_take "$name" "$log" mmsg_per_s; then
        BW_OURS+=("$mib") MR_OURS+=("$VAL")
        echo "ok: $mib MiB/s (mib_per_s), $VAL Mmsg/s"
      fi
    fi
  fi

  # 4. ib_write_bw
  name="ib_write_bw-$round"
  p=$((PORT + 2))
  if run_pair "$name" "$p" ib_write_bw -s "$BW_SIZE" -n "$BW_ITERS" "${DEV_PT[@]}" -p "$p" -- \
       ib_write_bw -s "$BW_SIZE" -n "$BW_ITERS" "${DEV_PT[@]}" -p "$p" "$HOST"; then
    log="$OUT/$name-client.log"
    # #bytes #iterations BW_peak BW_average (MB/sec, 2^20) MsgRate (Mpps)
    read -r -a row <<<"$(perftest_row "$log" "$BW_SIZE")"
    if [ ${#row[@]} -ge 5 ] && is_number "${row[3]}" && is_number "${row[4]}"; then
      BW_PT+=("${row[3]}") MR_PT+=("${row[4]}"); echo "ok: ${row[3]} MiB/s (its BW average[MB/sec]), ${row[4]} Mmsg/s"
      SETTINGS_SEEN+=("ib_write_bw: TX depth $(perftest_setting "$log" "TX depth"), CQ Moderation $(perftest_setting "$log" "CQ Moderation"), Max inline data $(perftest_setting "$log" "Max inline data")")
    else
      echo "FAILED (exit 0, but no $BW_SIZE B row of 5 columns in its table; log: $log)"
      FAILED+=("$name")
    fi
  fi
done

# --- perftest's own account of its settings --------------------------------------------
EXPECTED_LAT="ib_send_lat: TX depth $LAT_TX_DEPTH, Max inline data ${INLINE_BYTES}[B]"
EXPECTED_BW="ib_write_bw: TX depth $BW_TX_DEPTH, CQ Moderation $BW_SIGNAL_EVERY, Max inline data ${INLINE_BYTES}[B]"
if [ ${#SETTINGS_SEEN[@]} -gt 0 ]; then
  while IFS= read -r seen; do
    case "$seen" in
      "$EXPECTED_LAT"|"$EXPECTED_BW") echo "agreement.sh: perftest's own header: $seen (as lesson 06 ran)" ;;
      *) echo "agreement.sh: warning: perftest said '$seen', but lesson 06 ran with" \
              "'$EXPECTED_LAT' / '$EXPECTED_BW' (perftest's defaults changed? update the settings at the top of this script)" >&2 ;;
    esac
  done < <(printf '%s\n' "${SETTINGS_SEEN[@]}" | sort -u)
fi

# --- the table -----------------------------------------------------------------------------
# median VALUES...: the median (of an odd count; the lower middle of an even one).
median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { if (NR) print v[int((NR + 1) / 2)] }'; }
GROSS=() OFF=() ROUND_RATIOS=()
FMT='  %-36s %16s %16s %7s  %s\n'
# row LABEL UNIT JUDGED GROSS_LO GROSS_HI OURS... -- PERFTEST...: the medians, their ratio
# and the verdict, which judges, for a JUDGED measure, the median of the rounds' own ratios
# (OURS[i] / PERFTEST[i]; the ratio of the medians when a run failed), appending them to ROUND_RATIOS, against GROSS_LO .. GROSS_HI; for the
# others, the ratio of the medians (and the gross bounds are not used: give "-").
row() {
  local label=$1 unit=$2 judged=$3 glo=$4 ghi=$5; shift 5
  local -a ours=() pt=()
  while [ "$1" != -- ]; do ours+=("$1"); shift; done
  shift
  pt=("$@")
  local mo mp rr="" i
  mo=$(median "${ours[@]}") mp=$(median "${pt[@]}")
  # After a failed run the lists need not pair by round (ours may miss round 1 and
  # perftest's round 2): then no rounds' ratios, and the run has failed anyway.
  if [ "$judged" = 1 ] && [ ${#FAILED[@]} -eq 0 ] && [ ${#ours[@]} -gt 0 ] && [ ${#ours[@]} -eq ${#pt[@]} ]; then
    local -a rounds=()
    for i in "${!ours[@]}"; do
      rounds+=("$(awk -v o="${ours[$i]}" -v p="${pt[$i]}" 'BEGIN { printf "%.2f", (p + 0 > 0) ? o / p : 0 }')")
    done
    rr=$(median "${rounds[@]}")
    ROUND_RATIOS+=("$label: ${rounds[*]} (median $rr)")
  fi
  if [ -z "$mo" ] || [ -z "$mp" ]; then
    # shellcheck disable=SC2059  # FMT is this script's own format
    printf "$FMT" "$label" "${mo:--}${mo:+ $unit}" "${mp:--}${mp:+ $unit}" "-" "no ratio: a side has no successful run"
    return 0
  fi
  # awk prints the table row, then on a line of its own the class: ok, off (outside
  # ±15 %) or gross (outside GROSS_LO .. GROSS_HI; a measure not judged is always ok).
  local out class
  out=$(awk -v fmt="$FMT" -v label="$label" -v u="$unit" -v o="$mo" -v p="$mp" -v judged="$judged" \
      -v alo="$AGREE_LO" -v ahi="$AGREE_HI" -v glo="$glo" -v ghi="$ghi" -v rr="$rr" 'BEGIN {
    if (p + 0 <= 0) { printf fmt, label, o " " u, p " " u, "-", "no ratio (perftest said 0)"; print "gross"; exit }
    r = o / p
    q = (rr != "") ? rr + 0 : r
    v = (q >= alo && q <= ahi) ? "agree (within ±15 %)" : "differ"
    if (!judged) v = v " (for information)"
    printf fmt, label, o " " u, p " " u, sprintf("%.2f", r), v
    if (!judged) print "ok"
    else print (q < glo || q > ghi) ? "gross" : (q < alo || q > ahi) ? "off" : "ok"
  }') || die "awk failed computing the ratio for $label"
  printf '%s\n' "$out" | sed '$d'
  class=$(printf '%s\n' "$out" | tail -n 1)
  if [ "$judged" = 1 ]; then
    case "$class" in
      gross) GROSS+=("$label: outside $glo .. $ghi") ;;
      off) OFF+=("$label") ;;
    esac
  fi
}

echo
echo "lesson 06 against perftest on the userspace runtime, medians of $ROUNDS alternating rounds, on $(hostname) ($(nproc) CPUs)"
# shellcheck disable=SC2059
printf "$FMT" "measure" "lesson 06" "perftest" "ratio" "verdict"
row "64 B ping-pong, one way, fastest" us 1 "$LAT_GROSS_LO" "$LAT_GROSS_HI" "${MIN_OURS[@]}" -- "${MIN_PT[@]}"
row "64 KiB WRITE bandwidth, average" "MiB/s" 1 "$BW_GROSS_LO" "$BW_GROSS_HI" "${BW_OURS[@]}" -- "${BW_PT[@]}"
row "64 B ping-pong, one way, typical" us 0 - - "${LAT_OURS[@]}" -- "${LAT_PT[@]}"
row "64 B ping-pong, one way, p99" us 0 - - "${P99_OURS[@]}" -- "${P99_PT[@]}"
row "64 KiB WRITE message rate" "Mmsg/s" 0 - - "${MR_OURS[@]}" -- "${MR_PT[@]}"
echo "  (MiB = 2^20 bytes: perftest's \"MB/sec\" is MiB/s (format_factor 0x100000), lesson 06's mib_per_s too;"
echo "  ratio = lesson 06 / perftest; the runs, in order:"
echo "    lesson 06 ping-pong fastest us: ${MIN_OURS[*]:--}   ib_send_lat t_min us: ${MIN_PT[*]:--}"
echo "    lesson 06 ping-pong typical us: ${LAT_OURS[*]:--}   ib_send_lat t_typical us: ${LAT_PT[*]:--}"
echo "    lesson 06 write MiB/s: ${BW_OURS[*]:--}   ib_write_bw BW average MiB/s: ${BW_PT[*]:--})"
echo "  the rounds' own ratios, whose medians the first two verdicts judge:"
if [ ${#ROUND_RATIOS[@]} -gt 0 ]; then printf '    %s\n' "${ROUND_RATIOS[@]}"; else echo "    - (a run failed)"; fi

status=0
if [ ${#FAILED[@]} -gt 0 ]; then
  echo "agreement.sh: ${#FAILED[@]} run(s) failed: ${FAILED[*]} (logs in $OUT)" >&2
  status=1
fi
# joined ITEMS...: the items separated by "; " (the labels have commas of their own).
joined() { local IFS=';'; printf '%s' "$*" | sed 's/;/; /g'; }
if [ ${#GROSS[@]} -gt 0 ]; then
  echo "agreement.sh: $(joined "${GROSS[@]}"): lesson 06 and perftest are too far apart." \
       "That is not noise: one of the two measures something else (a round trip against half" \
       "of one, bits against bytes, a different queue depth or signaling); compare the methods." >&2
  status=1
fi
if [ "$STRICT" = 1 ] && [ ${#OFF[@]} -gt 0 ]; then
  echo "agreement.sh: --strict: $(joined "${OFF[@]}"): outside $AGREE_LO .. $AGREE_HI" >&2
  status=1
fi
exit "$status"
