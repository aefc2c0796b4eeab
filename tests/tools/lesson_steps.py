#!/usr/bin/env python3
"""Which numbered step of its lesson each frame of a capture belongs to.

A lesson's server.cpp and client.cpp read as numbered steps, and the same numbers appear
in their logs, the lesson README and the capture walkthrough. captures/LESSON/steps maps
the frames of the committed capture onto those numbers, one rule per line; it is the one
source of the margin of the ladder diagram (roce_ladder.py) and of the packet comments
of the annotated capture (LESSON.pcapng, written here with editcap).

The steps file
--------------
Blank lines and lines starting with # are ignored. Two kinds of lines:

  step N = TITLE
      What step N of the lesson does, in a few words (the ladder's key of steps).

  [DIR:]LABEL[#K[-L]] [len=N] [reason=N] [conn=N] [refused] -> STEP | MEANING
      A rule. LABEL is an event name as roce_capture.py knows it: a RoCE opcode
      (SEND_ONLY, RDMA_WRITE_FIRST, RDMA_READ_REQUEST, ACK ...), a NAK (RNR_NAK,
      NAK_REMOTE_ACCESS_ERROR ...), a CM message (ConnectRequest, ConnectReply,
      ReadyToUse, ConnectReject, DisconnectRequest, DisconnectReply, MRA), an exchange
      message (HELLO, READY, DONE ...) or a TLS record (ClientHello, ServerHello,
      ChangeCipherSpec, ApplicationData ...). DIR (c>s or s>c) limits the rule to one
      direction. #K-L limits it to the K-th to L-th event of that label and direction
      within its connection (#K alone: only the K-th; #K-: from the K-th on), where a
      connection is a TCP connection on the lesson's port (exchange messages, TLS
      records), a QP pair (RoCE packets) or the ConnectRequest a CM message follows.
      len=N: the payload size the frame table shows (RoCE payload, exchange message or
      TLS record length); reason=N: a ConnectReject's reason; conn=N: the event belongs
      to the N-th connection of the capture (1-based, in the order they started; lesson
      06 runs one technique per connection); refused: a connect refused
      before the server listened (a ConnectRequest and the reject with reason 8 that
      answered it, see roce_capture.mark_refused).
      STEP is the step's number, or `req` for a response (ACK, NAK, RNR NAK, READ
      response): the step of the request it answers (the latest earlier request of its
      connection, sent the other way, whose PSN it covers).
      MEANING is one line; the packet comment of a frame is "step STEP: MEANING". The
      ladder names an encrypted TLS record (ApplicationData) by the part of MEANING
      before its first colon ("the client's QP_INFO", "READY").
  Rules are tried in order and the first that matches an event wins. Every event must
  match a rule, and every rule must match at least one event (a rule that matches
  nothing is a sign that the capture and the file no longer agree), except a rule with
  `refused`: whether a client connects before the server listens is timing.

Every frame of the capture belongs to a step: the events it carries (a TLS frame may
carry several records) by the rules; a TCP segment that carries no message by what it
belongs to: the handshake (what precedes its connection's first message) by that
message, a connect refused before the server listened (its SYN and the RST) by the first
message of the connection that follows (the retry), a pure ACK, FIN or RST by the latest
earlier frame that carries a message (see Capture.tcp_neighbour_step); a CM message
resent with the same transaction ID (roce_capture.collapse_resends keeps only the first)
by its first sending.

Subcommands:

  check PCAP --steps FILE [--port P]
      Print each frame's step and comment; exit 1 naming every frame or event without
      a step and every rule that matches nothing.
  annotate PCAP --steps FILE -o OUT.pcapng [--port P]
      Write the frames of PCAP, unchanged, to OUT.pcapng with the comment "step N:
      MEANING" on each (editcap -a; tshark shows it as frame.comment, Wireshark in the
      packet details and as a column).
  verify PCAP ANNOTATED.pcapng --steps FILE [--port P]
      ANNOTATED holds exactly the frames of PCAP (bytes and timestamps) and each carries
      the comment the steps file gives it now, and every RoCE and CM frame has one;
      exit 1 otherwise. (A byte comparison would also compare the Wireshark version
      editcap writes into the file's header.)
"""
import argparse
import os
import re
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import roce_capture as rc  # noqa: E402  (beside this file)

RULE = re.compile(r"^(?:(c>s|s>c):)?([A-Za-z_][A-Za-z0-9_]*)(?:#([1-9][0-9]*)(-([1-9][0-9]*)?)?)?$")
TITLE = re.compile(r"^step\s+([0-9]+)\s*=\s*(\S.*)$")
FRAME_FIELDS = ["frame.number", "ip.src", "ip.dst", "tcp.srcport", "tcp.dstport", "tcp.len",
                "tcp.flags.syn", "tcp.flags.ack", "tcp.flags.fin", "tcp.flags.reset", "udp.dstport",
                "infiniband.aeth.msn"]
RESPONSE_NAMES = ("req",)


class StepsError(Exception):
    """A steps file that cannot be read, or a capture it does not cover."""


def parse_steps(path):
    """The rules and step titles of a steps file (module doc)."""
    rules, titles = [], {}
    try:
        text = open(path, encoding="utf-8").read()
    except OSError as e:
        raise StepsError(f"cannot read the steps file {path}: {e.strerror}; write one (format: "
                         f"tests/tools/lesson_steps.py --help)")
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        where = f"{path}:{number}"
        m = TITLE.match(line)
        if m:
            titles[int(m[1])] = m[2].strip()
            continue
        match, arrow, rest = line.partition("->")
        step, bar, meaning = rest.partition("|")
        if not arrow or not bar or not meaning.strip():
            raise StepsError(f"{where}: '{line}' is neither 'step N = TITLE' nor "
                             f"'[DIR:]LABEL[#K[-L]] [len=N] [reason=N] [conn=N] [refused] -> STEP | MEANING'")
        tokens = match.split()
        if not tokens:
            raise StepsError(f"{where}: no label before '->'")
        m = RULE.match(tokens[0])
        if not m:
            raise StepsError(f"{where}: '{tokens[0]}' is not [DIR:]LABEL[#K[-L]] (e.g. s>c:ApplicationData#1-4)")
        first = int(m[3]) if m[3] else None
        last = first if m[4] is None else (int(m[5]) if m[5] else None)
        if first is not None and last is not None and last < first:
            raise StepsError(f"{where}: range #{first}-{last} is empty")
        rule = {"line": number, "where": where, "dir": m[1], "label": m[2], "first": first, "last": last,
                "len": None, "reason": None, "conn": None, "refused": False, "meaning": meaning.strip(),
                "used": 0}
        for token in tokens[1:]:
            key, eq, value = token.partition("=")
            if token == "refused":
                rule["refused"] = True
            elif eq and key in ("len", "reason", "conn") and value.isdigit():
                rule[key] = int(value)
            else:
                raise StepsError(f"{where}: unknown condition '{token}' (want len=N, reason=N, conn=N or refused)")
        step = step.strip()
        if step.isdigit():
            rule["step"] = int(step)
        elif step in RESPONSE_NAMES:
            rule["step"] = step
        else:
            raise StepsError(f"{where}: step '{step}' is neither a number nor 'req'")
        rules.append(rule)
    if not rules:
        raise StepsError(f"{path} has no rules")
    return rules, titles


def tshark_frames(pcap):
    """One dict per frame of the capture (every frame, not only the lesson's)."""
    cmd = ["tshark", "-r", pcap, "-n", *rc.QUIET_HEURISTIC, "-T", "fields", "-E", "separator=\t",
           "-E", "occurrence=f"]
    for f in FRAME_FIELDS:
        cmd += ["-e", f]
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        raise StepsError(f"tshark cannot read {pcap}: {rc.tshark_error(res.stderr)}")
    rows = []
    for line in res.stdout.splitlines():
        vals = line.split("\t")
        rows.append(dict(zip(FRAME_FIELDS, vals + [""] * (len(FRAME_FIELDS) - len(vals)))))
    retrans = subprocess.run(["tshark", "-r", pcap, "-n", "-Y", "tcp.analysis.retransmission", "-T", "fields",
                              "-e", "frame.number"], capture_output=True, text=True).stdout.split()
    for r in rows:
        r["tcp_resent"] = r["frame.number"] in retrans
    return rows


def tcp_flags(row):
    names = [name for name, field in (("SYN", "tcp.flags.syn"), ("FIN", "tcp.flags.fin"),
                                       ("RST", "tcp.flags.reset"), ("ACK", "tcp.flags.ack"))
             if row[field] in ("1", "True")]
    return ", ".join(names)


def event_size(ev):
    """The size the frame table shows: RoCE payload, exchange message, TLS record length."""
    return {"roce": ev.get("payload"), "tcp": ev.get("bytes"), "tls": ev.get("length")}.get(ev["kind"])


def in_range(rule, k):
    if rule["first"] is None:
        return True
    return k >= rule["first"] and (rule["last"] is None or k <= rule["last"])


def matches(rule, ev, k, conn=None):
    """Does RULE match EV, the K-th of its label and direction in its connection, which
    is the capture's connection number CONN (1-based)?"""
    return (rc.label(ev) == rule["label"] and (rule["dir"] is None or ev["dir"] == rule["dir"])
            and in_range(rule, k) and (rule["len"] is None or event_size(ev) == rule["len"])
            and (rule["reason"] is None or ev.get("reason") == rule["reason"])
            and (rule["conn"] is None or conn == rule["conn"])
            and (not rule["refused"] or ev.get("refused")))


def answered_request(ev, events, run_list):
    """The request a response answers: the latest earlier request of its connection, in
    the other direction, whose PSN it covers (an ACK or NAK names the PSN of the last
    packet it answers; READ responses count on from the READ request's PSN)."""
    i = rc.run_index(ev, run_list)
    found = None
    for e in events:
        if e["frame"] >= ev["frame"]:
            break
        if (e["kind"] == "roce" and e["decoded"] and e["op"] in rc.REQUEST_OPS and e["dir"] != ev["dir"]
                and rc.run_index(e, run_list) == i and (ev["psn"] - e["psn"]) & 0xFFFFFF < 0x800000):
            found = e
    return found


class Capture:
    """Every frame of a lesson's capture with its events, marks and step (module doc)."""

    def __init__(self, pcap, port, steps_path):
        self.pcap, self.port, self.steps_path = pcap, port, steps_path
        self.rules, self.titles = parse_steps(steps_path)
        self.events = rc.story(pcap, port)
        self.run_list = rc.runs(self.events)
        rows = rc.tshark_rows(pcap, port)
        self.server_ips = rc.server_addresses(rows, port)
        self.cm_rows = {int(r["frame.number"]): r for r in rows if r["udp.dstport"] == "4791" and rc.is_cm(r)}
        self.problems = []
        self.frames = self.build_frames()
        self.assign_events()
        self.assign_frames()
        for rule in self.rules:
            if not rule["used"] and not rule["refused"]:
                self.problems.append(f"{rule['where']}: the rule for {rule['label']} matches no event of {pcap}")

    # -- frames ----------------------------------------------------------------------
    def build_frames(self):
        by_frame = {}
        for ev in self.events:
            by_frame.setdefault(ev["frame"], []).append(ev)
        frames = []
        for row in tshark_frames(self.pcap):
            n = int(row["frame.number"])
            f = {"number": n, "src": row["ip.src"], "dst": row["ip.dst"], "events": by_frame.get(n, []),
                 "resent": row["tcp_resent"], "refused": False, "steps": [], "msn": rc.number(row["infiniband.aeth.msn"])}
            if row["tcp.srcport"]:
                to_server = row["tcp.dstport"] == str(self.port)
                f["dir"] = "c>s" if to_server else "s>c"
                f["conn"] = row["tcp.srcport"] if to_server else row["tcp.dstport"]
                f["kind"] = f["events"][0]["kind"] if f["events"] else "tcp-bare"
                f["flags"] = tcp_flags(row)
                f["tcp_len"] = int(row["tcp.len"] or 0)
            elif row["udp.dstport"] == "4791":
                f["dir"] = "c>s" if row["ip.dst"] in self.server_ips else "s>c"
                if f["events"]:
                    f["kind"] = f["events"][0]["kind"]
                elif n in self.cm_rows:
                    # A resend collapse_resends dropped: the same message again.
                    f["kind"] = "cm"
                    f["resent"] = True
                    f["events"] = [dict(rc.cm_event(self.cm_rows[n], n, f["dir"]), resend_of=True)]
                else:
                    f["kind"] = "other"
            else:
                f["dir"] = "c>s" if row["ip.dst"] in self.server_ips else "s>c"
                f["kind"] = "other"
            frames.append(f)
        self.mark_resent_requests(frames)
        self.mark_refused(frames)
        return frames

    def mark_resent_requests(self, frames):
        """A RoCE request whose PSN an earlier request of its connection, in the same
        direction, already carried: the requester sent it again (after an RNR NAK, a
        timeout or a sequence NAK)."""
        first = {}
        for f in frames:
            for ev in f["events"]:
                if ev["kind"] == "roce" and ev["decoded"] and ev["op"] in rc.REQUEST_OPS:
                    key = (rc.run_index(ev, self.run_list), ev["dir"], ev["psn"])
                    if key in first:
                        f["resent"] = True
                        ev["resend_of_frame"] = first[key]
                    first.setdefault(key, f["number"])

    def mark_refused(self, frames):
        """A CM connect refused before the server listened (roce_capture.mark_refused), or
        a TCP connection the server's kernel reset before any message crossed it."""
        messages = {f["conn"] for f in frames if f.get("conn") and f["events"]}
        reset = {f["conn"] for f in frames if f.get("conn") and "RST" in f.get("flags", "")}
        for f in frames:
            if any(ev.get("refused") for ev in f["events"]):
                f["refused"] = True
            if f.get("conn") in reset and f["conn"] not in messages:
                f["refused"] = True

    # -- steps -----------------------------------------------------------------------
    def connection_of(self, ev):
        if ev["kind"] in ("tcp", "tls"):
            return ("tcp", ev["conn"])
        if ev["kind"] == "roce":
            return ("qp", rc.run_index(ev, self.run_list))
        requests = [e["frame"] for e in self.events if e["kind"] == "cm" and e["attr"] == 0x10
                    and e["frame"] <= ev["frame"]]
        return ("cm", requests[-1] if requests else None)

    def assign_events(self):
        counts = {}
        pending = []
        for f in self.frames:
            for ev in f["events"]:
                if ev.get("resend_of"):
                    continue
                name = rc.label(ev)
                if name is None:
                    self.problems.append(f"frame {f['number']}: UDP 4791 but not decoded as RoCE, so no rule can name it")
                    continue
                key = (self.connection_of(ev), ev["dir"], name)
                counts[key] = counts.get(key, 0) + 1
                i = rc.run_of(ev, self.run_list)
                conn = None if i is None else i + 1
                rule = next((r for r in self.rules if matches(r, ev, counts[key], conn)), None)
                if rule is None:
                    self.problems.append(
                        f"frame {f['number']}: {ev['dir']}:{name}#{counts[key]} (#{counts[key]} of its connection"
                        f"{f', len={event_size(ev)}' if event_size(ev) is not None else ''}"
                        f"{f', conn={conn}' if conn is not None else ''}) matches no rule in "
                        f"{self.steps_path}: add one")
                    continue
                rule["used"] += 1
                ev["meaning"] = rule["meaning"]
                ev["step"] = rule["step"]
                if rule["step"] in RESPONSE_NAMES:
                    pending.append((f, ev))
        for f, ev in pending:
            if ev["kind"] != "roce" or ev["op"] not in rc.RESPONSE_OPS:
                self.problems.append(f"frame {f['number']}: 'req' is for responses (ACK, NAK, READ response); "
                                     f"{rc.label(ev)} is not one")
                ev["step"] = None
                continue
            req = answered_request(ev, self.events, self.run_list)
            if req is None or not isinstance(req.get("step"), int):
                self.problems.append(f"frame {f['number']}: {rc.label(ev)} PSN 0x{ev['psn']:06x} answers no "
                                     f"request with a numbered step")
                ev["step"] = None
            else:
                ev["step"] = req["step"]
                ev["answers"] = req["frame"]

    def assign_frames(self):
        for f in self.frames:
            if f["events"] and not f["events"][0].get("resend_of"):
                f["steps"] = [(ev["step"], ev["meaning"] + (f" (sent again: the PSN of frame {ev['resend_of_frame']})"
                                                          if ev.get("resend_of_frame") else ""))
                              for ev in f["events"] if ev.get("step") is not None]
        originals = {(ev["tid"], ev["attr"], ev["dir"]): ev for ev in self.events if ev["kind"] == "cm"}
        for f in self.frames:
            if f["events"] and f["events"][0].get("resend_of"):
                ev = f["events"][0]
                first = originals.get((ev["tid"], ev["attr"], ev["dir"]))
                if first and first.get("step") is not None:
                    f["steps"] = [(first["step"], first["meaning"] + f" (sent again, first in frame {first['frame']})")]
        for i, f in enumerate(self.frames):
            if f["kind"] == "tcp-bare":
                step = self.tcp_neighbour_step(i)
                if step is not None:
                    f["steps"] = [(step, self.bare_tcp_meaning(f))]
        for f in self.frames:
            if not f["steps"]:
                self.problems.append(f"frame {f['number']} ({f['kind']}) belongs to no step")

    def tcp_neighbour_step(self, i):
        """A TCP segment without a message. The handshake (any segment before the
        connection's first message) and a refused connect belong to what the connection
        is for: its first message, or for a connection
        refused before the server listened, the first message of the next connection
        (the retry). Any other (an ACK, FIN, RST) answers or ends what came just before
        it: the step of the latest earlier frame that carries a message, of whatever kind
        (a FIN may follow the NAK that ended a session)."""
        me = self.frames[i]

        def step_of(f):
            return next((s for s, _ in f["steps"] if s is not None), None) if f["events"] else None
        opened = any(f.get("conn") == me["conn"] and step_of(f) is not None for f in self.frames[:i])
        if not opened or me["refused"]:
            later = self.frames[i + 1:]
            own = [f for f in later if f.get("conn") == me["conn"] and step_of(f) is not None]
            other = [f for f in later if f.get("conn") and f["conn"] != me["conn"] and step_of(f) is not None]
            first = (own or other or [None])[0]
            return step_of(first) if first else None
        return next((step_of(f) for f in reversed(self.frames[:i]) if step_of(f) is not None), None)

    def bare_tcp_meaning(self, f):
        if f["refused"]:
            if "RST" in f["flags"]:
                return "TCP RST: nobody listens on the port yet, the connect is refused; the client tries again"
            return f"TCP {f['flags']}: a connect the server's kernel will refuse (nobody listens yet)"
        if f["resent"]:
            return f"TCP {f['flags']}, {f['tcp_len']} bytes sent again (retransmission)"
        if f["tcp_len"]:
            return f"TCP {f['tcp_len']} bytes, part of a message the next segment completes"
        if "SYN" in f["flags"] or not any(g.get("conn") == f["conn"] and g["events"] for g in self.frames[:f["number"] - 1]):
            if "SYN" not in f["flags"]:
                return "TCP handshake (ACK): the connection is open"
            who = "the client connects" if f["dir"] == "c>s" else "the server's kernel accepts"
            return f"TCP handshake ({f['flags']}): {who}"
        if "FIN" in f["flags"]:
            return f"TCP {f['flags']}: this side closes the connection"
        if "RST" in f["flags"]:
            return f"TCP {f['flags']}: the connection is reset"
        return f"TCP {f['flags']}: acknowledges the other side's bytes (no payload)"

    # -- output ----------------------------------------------------------------------
    def comment(self, f):
        """"step N: MEANING" (several records of one frame: "step N: A; B")."""
        parts, by_step = [], {}
        for step, meaning in f["steps"]:
            if step not in by_step:
                by_step[step] = []
                parts.append(step)
            if meaning not in by_step[step]:
                by_step[step].append(meaning)
        return "; ".join(f"step {s}: {'; '.join(by_step[s])}" for s in parts)

    def require_complete(self):
        if self.problems:
            raise StepsError(f"{self.pcap} and {self.steps_path} do not agree:\n  " + "\n  ".join(self.problems))


def cmd_check(a):
    cap = Capture(a.pcap, a.port, a.steps)
    for f in cap.frames:
        print(f"{f['number']:>4}  {f['dir']}  {cap.comment(f)}")
    cap.require_complete()
    print(f"steps: every frame of {a.pcap} belongs to a step of {a.steps}")
    return 0


def annotate(cap, out):
    """Write cap's frames with their comments to OUT (pcapng) with editcap."""
    cap.require_complete()
    args = []
    for f in cap.frames:
        args += ["-a", f"{f['number']}:{cap.comment(f)}"]
    res = subprocess.run(["editcap", "-F", "pcapng", *args, cap.pcap, out], capture_output=True, text=True)
    if res.returncode != 0:
        raise StepsError(f"editcap could not write {out}: {rc.tshark_error(res.stderr)} "
                         f"(editcap comes with Wireshark: apt-get install tshark)")


def cmd_annotate(a):
    annotate(Capture(a.pcap, a.port, a.steps), a.output)
    print(f"steps: wrote {a.output}")
    return 0


def read_comments(path):
    """frame number -> comment (tshark 4.0's field frame.comment), from a pcapng."""
    res = subprocess.run(["tshark", "-r", path, "-n", "-T", "fields", "-E", "occurrence=a", "-E", "aggregator=;",
                          "-e", "frame.number", "-e", "frame.comment"], capture_output=True, text=True)
    if res.returncode != 0:
        raise StepsError(f"tshark cannot read {path}: {rc.tshark_error(res.stderr)}")
    return dict((line.split("\t") + [""])[:2] for line in res.stdout.splitlines())


def cmd_verify(a):
    cap = Capture(a.pcap, a.port, a.steps)
    cap.require_complete()
    wc = rc.wire_check_module()
    problems = []
    frames = [frame for _, frame in wc.read_frames(a.pcap)]
    annotated = [frame for _, frame in wc.read_frames(a.annotated)]
    if frames != annotated:
        problems.append(f"{a.annotated} has {len(annotated)} frames, not the {len(frames)} frames of {a.pcap} byte for byte")
    times = [subprocess.run(["tshark", "-r", p, "-T", "fields", "-e", "frame.time_epoch"], capture_output=True,
                            text=True).stdout for p in (a.pcap, a.annotated)]
    if times[0] != times[1]:
        problems.append(f"the timestamps of {a.annotated} are not those of {a.pcap}")
    got = read_comments(a.annotated)
    for f in cap.frames:
        want = cap.comment(f)
        have = got.get(str(f["number"]), "")
        if have != want:
            problems.append(f"frame {f['number']}: comment '{have}', the steps file says '{want}'")
        if f["kind"] in ("roce", "cm") and not have.startswith("step "):
            problems.append(f"frame {f['number']} ({f['kind']}) has no 'step N: ...' comment")
    for p in problems[:20]:
        print(f"steps: FAIL {p}")
    if problems:
        return 1
    print(f"steps: {a.annotated} holds the frames of {a.pcap}, each with its step")
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("check"); c.add_argument("pcap")
    n = sub.add_parser("annotate"); n.add_argument("pcap"); n.add_argument("-o", "--output", required=True)
    v = sub.add_parser("verify"); v.add_argument("pcap"); v.add_argument("annotated")
    for p in (c, n, v):
        p.add_argument("--steps", required=True, help="the capture's steps file (captures/LESSON/steps)")
        p.add_argument("--port", type=int, required=True, help="TCP port of the exchange (PORT in scenario.sh)")
    a = ap.parse_args()
    try:
        return {"check": cmd_check, "annotate": cmd_annotate, "verify": cmd_verify}[a.cmd](a)
    except StepsError as e:
        print(f"steps: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
