#!/usr/bin/python3
"""An independent checker for captures of RoCEv2 traffic (InfiniBand transport over UDP
port 4791), such as the userspace runtime sends on the loopback interface.

Usage:
  /usr/bin/python3 tests/tools/roce_wire_check.py PCAP [--min-packets N]
        [--expect NAME ...] [--expect-retransmissions | --no-retransmissions]
        [--expect-retransmissions-from IP ...] [--expect-cm-retransmission NAME ...]
        [--allow-bad-icrc] [--expect-bad-icrc-from IP ...] [--json FILE]
  /usr/bin/python3 tests/tools/roce_wire_check.py --self-test [PCAP ...]

Use /usr/bin/python3: Debian's python3-scapy is only visible to it
(apt-get install -y tshark python3-scapy).

A frame is a RoCE packet when it carries an IPv4 or IPv6 packet whose UDP source or
destination port is 4791. Every other frame (TCP, TLS, ARP, ICMP, even ICMP errors that
quote a RoCE packet) is counted and otherwise ignored. For every RoCE packet:

  1. tshark (Wireshark's decoder, run once with -T fields) must decode it as
     RRoCE/InfiniBand with a BTH whose opcode is the one read here, and must find it
     neither malformed (_ws.malformed) nor carrying an expert message of severity
     warning or error. The rpcordma dissector is disabled, as in roce_capture.py:
     Wireshark 4.0 hands every SEND payload to its RPC-over-RDMA heuristic, which
     labels a valid empty SEND a malformed RPC-over-RDMA packet.
  2. Its ICRC (the invariant CRC in the last 4 bytes of the UDP payload) must be right.
     It is computed here by hand (zlib.crc32 with the masks of IBA Annex A17, as in
     the kernel's drivers/infiniband/sw/rxe/rxe_icrc.c; see icrc()) and, as an
     independent oracle, by scapy.contrib.roce on the first packet of every name and
     on the first 20 packets the hand-written check rejects (IPv4 only: scapy has no
     IPv6 ICRC). The two must agree. IPv6 ICRCs follow rxe's masks, but no oracle has
     checked this script's IPv6 code.
  3. Its opcode must be a defined BTH opcode, and an AETH syndrome must not be reserved.
  4. A UD SEND_ONLY to QP 1 carries a MAD (the RDMA CM's connection protocol): its DETH
     must have the GSI's Q_Key 0x80010000 and source QP 1, the MAD must be 256 bytes of
     base version 1; a CM MAD (class 0x07) must be of class version 2, method Send and a
     defined attribute, and tshark must decode it as the same CM message (attribute ID
     and transaction ID) and name it in its Info column ("CM: ConnectRequest").

Then it prints a summary: frames, RoCE packets, counts per opcode name, CM messages by
Wireshark's names (ConnectRequest, ConnectReply, ReadyToUse, ConnectReject,
DisconnectRequest, DisconnectReply, MsgRcptAck ...), and retransmissions. Names are those of scapy.contrib.roce without the RC_ prefix
(SEND_ONLY, RDMA_WRITE_FIRST, ACKNOWLEDGE, RDMA_READ_RESPONSE_ONLY; UC_, RD_, UD_ and
XRC_ opcodes keep their prefix: a CM MAD is a UD_SEND_ONLY; CNP). An Acknowledge
packet whose AETH carries a NAK is counted under the NAK's name instead of
ACKNOWLEDGE: "RNR NAK", "NAK PSN sequence error", "NAK invalid request",
"NAK remote access error", "NAK remote operational error".

A retransmission is a request packet (not an Acknowledge, atomic Acknowledge or RDMA
READ response, which only echo the PSNs of requests) whose (source IP, destination IP,
destination QP, PSN, opcode) was already seen earlier in the capture; for UD packets the DETH's source
QP is part of the key too, since several UD QPs of one host may send to one QP. A packet
sent three times counts as two retransmissions. A CM retransmission is a CM message whose
(source IP, attribute ID, transaction ID) was already seen: the CM resends a message
whose answer did not come, with its transaction ID; a MAD is never a retransmission of
the kind above (its PSN is its QP 1's next, whatever it carries).

Options:
  --min-packets N            fail if there are fewer than N RoCE packets (default 1:
                             a capture without RoCE is a failure)
  --expect NAME              fail if no packet has that name (repeatable, or a comma
                             list). Case, spaces, "-" and "_" do not matter, and an
                             RC_ prefix and ACK for ACKNOWLEDGE are accepted:
                             --expect rnr_nak, --expect "NAK remote access error",
                             --expect RC_SEND_ONLY, --expect ConnectRequest (a CM
                             message). An unknown name is a usage error.
  --expect-retransmissions   fail if there is no retransmission
  --no-retransmissions       fail if there is any
  --expect-retransmissions-from IP
                             fail if no retransmission has this source address
                             (repeatable, or a comma list): with both ends named, both
                             sides of a connection must have resent something
  --allow-bad-icrc           a packet whose ICRC is wrong (corrupted on the way, e.g. by
                             netem corrupt) is counted, not a failure, and so is anything
                             else wrong with that packet, and with a packet whose IPv4
                             header checksum is wrong, whose UDP length does not fit, or
                             whose source or destination MAC is one bit off the MAC its
                             IP address has in a clear majority of frames; every other
                             packet must be right
  --expect-bad-icrc-from IP  fail unless some packet from this source address has a wrong
                             ICRC (repeatable, or a comma list; implies --allow-bad-icrc)
  --expect-cm-retransmission NAME
                             fail unless a CM message of that name (ConnectRequest,
                             ConnectReply, ReadyToUse, DisconnectRequest ...) was sent
                             twice with one transaction ID (repeatable, or a comma list)
  --json FILE                also write the summary as JSON (also when a check fails)
  --self-test                check the ICRC code first: the CNP captured from a
                             ConnectX-4 Lx in scapy's roce.uts (ICRC 82fd002a), agreement
                             with scapy on packets of many kinds, every mask, the link
                             types, the capture readers, retransmissions and CM MADs.
                             PCAP is optional with it.

Link types: Ethernet (DLT_EN10MB, including tcpdump -i lo's zero MACs and 802.1Q
tags), Linux cooked SLL and SLL2 (tcpdump -i any), BSD loopback (NULL, LOOP) and raw IP
(RAW, IPV4, IPV6); pcap (microsecond or nanosecond, either byte order) or pcapng.

Output: one "FAIL frame N: ..." line per offending packet (ICRC values are shown in
wire byte order, as scapy and Wireshark show them), then the summary, then one
"FAIL: ..." line per failed option check, and a last line "result: OK" or
"result: FAIL (N failures)".
Exit status: 0 when every check passes, 1 when one fails, 2 on a usage error, an
unreadable or unsupported capture, or when tshark or scapy is missing.
"""
import argparse
import collections
import importlib
import ipaddress
import json
import os
import struct
import subprocess
import sys
import tempfile
import zlib

ROCE_PORT = 4791

# --- BTH opcodes ------------------------------------------------------------------------
# The opcode's top 3 bits are the transport, its low 5 bits the operation.
OPERATIONS = {
    0x00: "SEND_FIRST", 0x01: "SEND_MIDDLE", 0x02: "SEND_LAST", 0x03: "SEND_LAST_WITH_IMMEDIATE",
    0x04: "SEND_ONLY", 0x05: "SEND_ONLY_WITH_IMMEDIATE", 0x06: "RDMA_WRITE_FIRST",
    0x07: "RDMA_WRITE_MIDDLE", 0x08: "RDMA_WRITE_LAST", 0x09: "RDMA_WRITE_LAST_WITH_IMMEDIATE",
    0x0A: "RDMA_WRITE_ONLY", 0x0B: "RDMA_WRITE_ONLY_WITH_IMMEDIATE", 0x0C: "RDMA_READ_REQUEST",
    0x0D: "RDMA_READ_RESPONSE_FIRST", 0x0E: "RDMA_READ_RESPONSE_MIDDLE",
    0x0F: "RDMA_READ_RESPONSE_LAST", 0x10: "RDMA_READ_RESPONSE_ONLY", 0x11: "ACKNOWLEDGE",
    0x12: "ATOMIC_ACKNOWLEDGE", 0x13: "COMPARE_SWAP", 0x14: "FETCH_ADD", 0x15: "RESYNC",
    0x16: "SEND_LAST_WITH_INVALIDATE", 0x17: "SEND_ONLY_WITH_INVALIDATE",
}
RC_OPS = set(range(0x00, 0x15)) | {0x16, 0x17}
# transport bits -> (name prefix, operations defined for that transport)
TRANSPORTS = {
    0x00: ("", RC_OPS),                                # Reliable Connection
    0x20: ("UC_", set(range(0x00, 0x0C))),             # Unreliable Connection
    0x40: ("RD_", set(range(0x00, 0x16))),             # Reliable Datagram
    0x60: ("UD_", {0x04, 0x05}),                       # Unreliable Datagram (with DETH)
    0xA0: ("XRC_", RC_OPS),                            # Extended Reliable Connection
}
CNP = 0x81  # RoCEv2 Congestion Notification Packet
OPCODE_NAMES = {t | op: prefix + OPERATIONS[op]
                for t, (prefix, ops) in TRANSPORTS.items() for op in ops}
OPCODE_NAMES[CNP] = "CNP"
# Responses echo the PSN of the request they answer, so they are never retransmissions.
RESPONSE_OPS = {0x0D, 0x0E, 0x0F, 0x10, 0x11, 0x12}
ACKNOWLEDGE = 0x11
UD = 0x60
RD = 0x40

# AETH syndrome: top bit reserved, next two say ACK (00), RNR NAK (01) or NAK (11); for a
# NAK the low 5 bits are the error code (the ACK's credit count and the RNR NAK's timer
# vary from packet to packet and are not part of the name).
NAK_CODES = {0: "NAK PSN sequence error", 1: "NAK invalid request", 2: "NAK remote access error",
             3: "NAK remote operational error", 4: "NAK invalid RD request"}


def acknowledge_name(syndrome, prefix=""):
    """The name of an Acknowledge packet by its AETH syndrome; None when reserved."""
    kind = syndrome >> 5
    if kind == 0:
        return prefix + "ACKNOWLEDGE"
    if kind == 1:
        return "RNR NAK"
    if kind == 3 and (syndrome & 0x1F) in NAK_CODES:
        return NAK_CODES[syndrome & 0x1F]
    return None


# --- Communication Management MADs (IBA vol. 1, chapters 13.4 and 12.6) ------------------
# The RDMA CM's connection protocol travels as MADs: UD SEND_ONLY packets to QP 1 (the
# GSI), with a DETH (Q_Key 0x80010000, source QP 1) and a 256-byte MAD: base version 1,
# management class 0x07 (CM), class version 2, method 0x03 (Send), a transaction ID that
# every message of one exchange shares (the REP and RTU carry the REQ's, the DREP the
# DREQ's), and the attribute ID that says which message it is. Names as Wireshark's.
GSI_QP = 1
GSI_QKEY = 0x80010000
MAD_BYTES = 256
DETH_BYTES = 8
MGMT_CLASS_CM = 0x07
CM_ATTRIBUTES = {0x0010: "ConnectRequest", 0x0011: "MsgRcptAck", 0x0012: "ConnectReject",
                 0x0013: "ConnectReply", 0x0014: "ReadyToUse", 0x0015: "DisconnectRequest",
                 0x0016: "DisconnectReply", 0x0017: "ServiceIDResReq", 0x0018: "ServiceIDResReqResp",
                 0x0019: "LoadAlternatePath", 0x001A: "AlternatePathResponse", 0x00B0: "ClassPortInfo"}
MAD_STRUCT = struct.Struct("!BBBBHHQHHI")  # base version ... attribute modifier: 24 bytes


def parse_cm_mad(frame, udp, end, padcount):
    """The CM message in a UD SEND_ONLY packet to QP 1 whose UDP header is at udp and whose
    datagram ends (after the ICRC) at end: (name, transaction ID, attribute ID, problems).
    The name is None when the MAD is not of the CM class."""
    problems = []
    deth = udp + UDP_HEADER + BTH_BYTES
    mad = deth + DETH_BYTES
    payload = end - ICRC_BYTES - padcount - mad
    if payload < MAD_STRUCT.size:
        return None, None, None, [f"a UD packet to QP 1 with {max(payload, 0)} bytes after its DETH: no MAD header"]
    qkey, src_qp = struct.unpack_from("!II", frame, deth)
    src_qp &= 0xFFFFFF
    base, mgmt_class, class_version, method, _status, _cs, tid, attr, _res, _mod = \
        MAD_STRUCT.unpack_from(frame, mad)
    if qkey != GSI_QKEY:
        problems.append(f"MAD to QP 1 with DETH Q_Key 0x{qkey:08x}, not the GSI's 0x{GSI_QKEY:08x}")
    if src_qp != GSI_QP:
        problems.append(f"MAD to QP 1 from source QP 0x{src_qp:06x} (DETH), not QP 1")
    if payload != MAD_BYTES:
        problems.append(f"MAD of {payload} bytes, not {MAD_BYTES}")
    if base != 1:
        problems.append(f"MAD base version {base}, not 1")
    if mgmt_class != MGMT_CLASS_CM:
        return None, tid, attr, problems
    name = CM_ATTRIBUTES.get(attr)
    if name is None:
        problems.append(f"CM MAD with attribute ID 0x{attr:04x}, which the CM does not define")
        name = f"CM_ATTRIBUTE_0x{attr:04x}"
    if class_version != 2:
        problems.append(f"CM MAD ({name}) of class version {class_version}, not 2")
    if method != 0x03 and attr != 0x00B0:
        problems.append(f"CM MAD ({name}) with method 0x{method:02x}, not Send (0x03)")
    return name, tid, attr, problems


ALL_NAMES = set(OPCODE_NAMES.values()) | {"RNR NAK"} | set(NAK_CODES.values())
CM_NAMES = set(CM_ATTRIBUTES.values())


def normal_name(name):
    """The form --expect compares: case, spaces, '-' and '_' do not matter."""
    n = name.strip().upper().replace(" ", "_").replace("-", "_")
    if n.startswith("RC_"):
        n = n[3:]
    return {"ACK": "ACKNOWLEDGE", "ACK_NAK_PSN_SEQUENCE_ERROR": "NAK_PSN_SEQUENCE_ERROR"}.get(n, n)


NORMAL_NAMES = {normal_name(n): n for n in ALL_NAMES | CM_NAMES}


# --- ICRC ---------------------------------------------------------------------------------
# The ICRC is a CRC-32 (the IEEE/Ethernet polynomial, reflected: exactly zlib.crc32, whose
# initial value 0xFFFFFFFF and final inversion are the ones IBA specifies) over the packet
# from the start of the IP header to the end of the payload and pad, with the fields that
# may legitimately change between the two endpoints (the "variant" fields) replaced by 1
# bits. It follows the pad, least significant byte first (struct.pack("<I")); like
# Wireshark and scapy, this script shows those 4 bytes in wire order (82fd002a).
#
# InfiniBand computes it over the LRH too, with its variant fields masked. RoCEv2 has no
# LRH; Annex A17 has 8 bytes of 0xFF stand in for it, so that the CRC is the same that
# an InfiniBand engine computes. LRH_CRC is zlib's CRC of those 8 bytes, from which
# zlib.crc32(..., LRH_CRC) continues. (zlib returns the inverted register: 0x2144df1c is
# ~0xdebb20e3, the seed rxe_icrc.c starts from for the same reason.)
LRH_CRC = zlib.crc32(b"\xff" * 8)
UDP_HEADER = 8
BTH_BYTES = 12
ICRC_BYTES = 4


def icrc(data, ip, udp, end):
    """The ICRC a packet should carry, as the 4 bytes on the wire. data holds an IPv4 or
    IPv6 packet at offset ip whose UDP header is at offset udp and whose UDP datagram
    (with the BTH at udp+8 and the ICRC in its last 4 bytes) ends at offset end."""
    masked = bytearray(data[ip:udp + UDP_HEADER + BTH_BYTES])
    u = udp - ip
    if masked[0] >> 4 == 4:
        # IPv4. TOS (DSCP and ECN): routers may re-mark DSCP and set ECN's Congestion
        # Experienced codepoint. TTL: decremented at every hop. Header checksum: changes
        # whenever those two do. The Identification field is NOT masked: this checker sees
        # it in the capture; a receiver that cannot (a plain UDP socket, like the userspace
        # runtime's) must solve for it (userspace-roce/README.md, "Receiving from rxe").
        # (IP options, which no RoCE sender uses, are covered like the rest.)
        masked[1] = 0xFF
        masked[8] = 0xFF
        masked[10:12] = b"\xff\xff"
    else:
        # IPv6. Traffic class (DSCP and ECN, the low nibble of byte 0 and the high nibble
        # of byte 1) and flow label (may be set or rewritten along the path): the kernel
        # sets priority = 0xF and flow_lbl[0..2] = 0xFF. Hop limit: decremented per hop.
        masked[0] |= 0x0F
        masked[1:4] = b"\xff\xff\xff"
        masked[7] = 0xFF
    # UDP checksum: optional over IPv4 (RoCE senders put 0), and not end-to-end
    # invariant where tunnels or NAT recompute it.
    masked[u + 6:u + 8] = b"\xff\xff"
    # BTH byte 4: FECN and BECN (switches set them to signal congestion) and 6 reserved
    # bits (receivers ignore them). The kernel does bth->qpn |= ~BTH_QPN_MASK.
    masked[u + UDP_HEADER + 4] = 0xFF
    crc = zlib.crc32(masked, LRH_CRC)
    # The rest of the transport headers (RETH, AETH, DETH, ImmDt ...), payload and pad.
    crc = zlib.crc32(memoryview(data)[udp + UDP_HEADER + BTH_BYTES:end - ICRC_BYTES], crc)
    return crc.to_bytes(4, "little")


def scapy_icrc(ip_packet):
    """The ICRC scapy.contrib.roce computes for an IPv4 RoCE packet (bytes), as wire bytes.
    scapy binds its BTH to UDP destination port 4791 only, so a packet sent from 4791 to
    another port gets its BTH attached by hand."""
    from scapy.layers.inet import IP, UDP
    from scapy.contrib.roce import BTH
    pkt = IP(bytes(ip_packet))
    if BTH not in pkt:
        udp = pkt[UDP]
        rest = bytes(udp.payload)
        udp.remove_payload()
        udp.add_payload(BTH(rest))
    return bytes(pkt[BTH].compute_icrc(b""))


# --- Capture files ------------------------------------------------------------------------
class CaptureError(Exception):
    """The capture cannot be read (exit status 2)."""


LINKTYPE_NULL, LINKTYPE_EN10MB, LINKTYPE_RAW, LINKTYPE_LOOP = 0, 1, 101, 108
LINKTYPE_LINUX_SLL, LINKTYPE_IPV4, LINKTYPE_IPV6, LINKTYPE_LINUX_SLL2 = 113, 228, 229, 276
# Some systems write DLT_RAW's own value (12 or 14) instead of LINKTYPE_RAW.
RAW_IP_LINKTYPES = {LINKTYPE_RAW, 12, 14, LINKTYPE_IPV4, LINKTYPE_IPV6}
ETHERTYPE_IPV4, ETHERTYPE_IPV6 = 0x0800, 0x86DD
VLAN_ETHERTYPES = {0x8100, 0x88A8, 0x9100}


def read_frames(path):
    """Yield (link type, frame bytes) for every frame of a pcap or pcapng file, in file
    order (tshark's frame numbers count the same frames from 1)."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise CaptureError(f"cannot read {path}: {e.strerror}")
    if len(data) < 4:
        raise CaptureError(f"{path} is not a pcap or pcapng file (too short)")
    magic = data[:4]
    if magic == b"\x0a\x0d\x0d\x0a":
        yield from read_pcapng(path, data)
        return
    endian = {b"\xd4\xc3\xb2\xa1": "<", b"\xa1\xb2\xc3\xd4": ">",      # microseconds
              b"\x4d\x3c\xb2\xa1": "<", b"\xa1\xb2\x3c\x4d": ">"}.get(magic)  # nanoseconds
    if endian is None:
        raise CaptureError(f"{path} is not a pcap or pcapng file (magic {magic.hex()})")
    if len(data) < 24:
        raise CaptureError(f"{path}: pcap file header cut short")
    linktype = struct.unpack_from(endian + "I", data, 20)[0] & 0x0FFFFFFF  # high bits: FCS info
    record = struct.Struct(endian + "IIII")
    off, n = 24, 0
    while off < len(data):
        n += 1
        if off + 16 > len(data):
            raise CaptureError(f"{path}: cut short in the record header of frame {n}")
        _sec, _frac, caplen, _wirelen = record.unpack_from(data, off)
        if off + 16 + caplen > len(data):
            raise CaptureError(f"{path}: cut short in the middle of frame {n}")
        yield linktype, data[off + 16:off + 16 + caplen]
        off += 16 + caplen


def read_pcapng(path, data):
    """The pcapng blocks that hold packets: Enhanced (6), Simple (3) and the obsolete
    Packet block (2); each takes its link type from its Interface Description (1)."""
    off, n, endian, interfaces = 0, 0, "<", []
    while off < len(data):
        if off + 12 > len(data):
            raise CaptureError(f"{path}: pcapng block header cut short")
        if data[off:off + 4] == b"\x0a\x0d\x0d\x0a":  # Section Header: byte order, new interfaces
            bom = data[off + 8:off + 12]
            endian = {b"\x4d\x3c\x2b\x1a": "<", b"\x1a\x2b\x3c\x4d": ">"}.get(bom)
            if endian is None:
                raise CaptureError(f"{path}: bad pcapng byte-order magic {bom.hex()}")
            interfaces = []
        btype, blen = struct.unpack_from(endian + "II", data, off)
        if blen < 12 or blen % 4 or off + blen > len(data):
            raise CaptureError(f"{path}: bad or cut short pcapng block at offset {off}")
        if btype == 1:
            linktype, _res, snaplen = struct.unpack_from(endian + "HHI", data, off + 8)
            interfaces.append((linktype, snaplen))
        elif btype in (2, 3, 6):
            n += 1
            if btype == 6:
                iface, _hi, _lo, caplen, _wire = struct.unpack_from(endian + "IIIII", data, off + 8)
                start = off + 28
            elif btype == 2:
                iface, _drops, _hi, _lo, caplen, _wire = struct.unpack_from(endian + "HHIIII", data, off + 8)
                start = off + 28
            else:
                iface, start = 0, off + 12
                wire = struct.unpack_from(endian + "I", data, off + 8)[0]
                caplen = min(wire, blen - 16)
                if interfaces and interfaces[0][1]:
                    caplen = min(caplen, interfaces[0][1])
            if iface >= len(interfaces):
                raise CaptureError(f"{path}: frame {n} names interface {iface}, which is not described")
            if start + caplen > off + blen:
                raise CaptureError(f"{path}: frame {n} is longer than its block")
            yield interfaces[iface][0], data[start:start + caplen]
        off += blen


def ip_offset(linktype, frame):
    """Offset of the IP header in a frame, or None when it carries no IPv4/IPv6."""
    if linktype == LINKTYPE_EN10MB:
        off = 12
        while len(frame) >= off + 2 and (frame[off] << 8 | frame[off + 1]) in VLAN_ETHERTYPES:
            off += 4  # 802.1Q / 802.1ad tag: TPID, TCI
        if len(frame) < off + 2 or (frame[off] << 8 | frame[off + 1]) not in (ETHERTYPE_IPV4, ETHERTYPE_IPV6):
            return None
        return off + 2
    if linktype == LINKTYPE_LINUX_SLL:  # packet type, ARPHRD, addr len, 8 addr bytes, protocol
        proto_at, header = 14, 16
    elif linktype == LINKTYPE_LINUX_SLL2:  # protocol first, then ifindex, ARPHRD, type, addr
        proto_at, header = 0, 20
    elif linktype in (LINKTYPE_NULL, LINKTYPE_LOOP):  # 4-byte address family
        return 4 if len(frame) > 4 and frame[4] >> 4 in (4, 6) else None
    elif linktype in RAW_IP_LINKTYPES:
        return 0 if frame and frame[0] >> 4 in (4, 6) else None
    else:
        raise CaptureError(f"link type {linktype} is not supported (Ethernet, Linux SLL/SLL2, "
                           "NULL/LOOP and raw IP are)")
    if len(frame) < header or (frame[proto_at] << 8 | frame[proto_at + 1]) not in (ETHERTYPE_IPV4, ETHERTYPE_IPV6):
        return None
    return header


def ipv4_header_sum(frame, ip, end):
    """The ones'-complement sum of the IPv4 header at [ip, end) with its checksum: 0xFFFF
    when the header checksum is right."""
    total = 0
    for i in range(ip, min(end, len(frame)) - 1, 2):
        total += frame[i] << 8 | frame[i + 1]
    while total > 0xFFFF:
        total = (total & 0xFFFF) + (total >> 16)
    return total


def udp_offsets(frame, ip):
    """(UDP header offset, end of the IP packet, fragmented?) when the IP packet at offset
    ip carries a UDP header in this frame, else None (not UDP, a later fragment, which has
    no UDP header, or a header too broken or cut short to find the ports)."""
    version = frame[ip] >> 4
    if version == 4:
        if len(frame) < ip + 20:
            return None
        ihl = (frame[ip] & 0x0F) * 4
        total, frag = struct.unpack_from("!H2xH", frame, ip + 2)
        if frame[ip + 9] != 17 or frag & 0x1FFF or ihl < 20 or len(frame) < ip + ihl + UDP_HEADER:
            return None
        return ip + ihl, ip + total, bool(frag & 0x2000)  # More Fragments
    if version == 6:
        if len(frame) < ip + 40 + UDP_HEADER or frame[ip + 6] != 17:  # extension headers are not followed
            return None
        return ip + 40, ip + 40 + struct.unpack_from("!H", frame, ip + 4)[0], False
    return None


# --- Reading the RoCE packets of a capture --------------------------------------------------
BTH_STRUCT = struct.Struct("!BBHII")


class Scan:
    """What one pass over the capture finds."""

    def __init__(self):
        self.frames = 0
        self.roce = {}  # frame number -> opcode, for every RoCE packet
        self.ipv4 = self.ipv6 = 0
        self.icrc_ok = 0
        self.icrc_unchecked = 0  # cut short by the snap length
        self.icrc_bad = []  # dicts: frame, expected, found
        # Frames damaged below the ICRC's reach: a wrong IPv4 header checksum, or a UDP
        # length that does not fit the IP packet (only --allow-bad-icrc looks at them).
        self.header_bad = {}  # frame -> source address as text
        # Ethernet frames: frame -> (source IP, source MAC, destination IP, destination MAC),
        # for ethernet_damaged(), which finds the MACs a flipped bit changed.
        self.ether = {}
        self.opcodes = collections.Counter()
        self.first_of_name = {}  # name -> frame number
        self.problems = []  # (frame, text)
        self.seen_requests = {}  # retransmission key -> first frame
        self.retransmissions = []  # dicts
        self.retransmission_count = 0
        self.retransmissions_by_source = collections.Counter()  # source IP text -> count
        self.ip_packets = {}  # frame -> IPv4 packet bytes kept for the scapy cross-check
        self.cm = {}  # frame -> (CM message name, transaction ID, attribute ID)
        self.cm_counts = collections.Counter()
        self.seen_cm = {}  # (source IP, attribute ID, transaction ID) -> first frame
        self.cm_retransmissions = []  # dicts, every one

    def problem(self, frame, text):
        self.problems.append((frame, text))


def scan_capture(path, keep_for_scapy=True):
    """One pass over the capture: find the RoCE packets, check their ICRCs, name and count
    them, find retransmissions."""
    s = Scan()
    for n, (linktype, frame) in enumerate(read_frames(path), 1):
        s.frames = n
        try:
            ip = ip_offset(linktype, frame)
        except CaptureError as e:
            raise CaptureError(f"{path}: frame {n}: {e}")
        if ip is None or len(frame) <= ip:
            continue
        offsets = udp_offsets(frame, ip)
        if offsets is None:
            continue
        udp, ip_end, fragmented = offsets
        sport, dport, ulen = struct.unpack_from("!HHH", frame, udp)
        if ROCE_PORT not in (sport, dport):
            continue
        s.roce[n] = None
        version = frame[ip] >> 4
        if linktype == LINKTYPE_EN10MB:
            addrs = (ip + 12, ip + 16, ip + 20) if version == 4 else (ip + 8, ip + 24, ip + 40)
            if len(frame) >= addrs[2]:
                s.ether[n] = (bytes(frame[addrs[0]:addrs[1]]), bytes(frame[6:12]),
                              bytes(frame[addrs[1]:addrs[2]]), bytes(frame[0:6]))
        if version == 4:
            s.ipv4 += 1
            if ipv4_header_sum(frame, ip, udp) != 0xFFFF:
                s.header_bad[n] = str(ipaddress.ip_address(bytes(frame[ip + 12:ip + 16])))
        else:
            s.ipv6 += 1
        end = udp + ulen
        if fragmented:
            s.problem(n, "IP fragment (More Fragments set): RoCE packets must not be fragmented")
            continue
        if ulen < UDP_HEADER + BTH_BYTES + ICRC_BYTES or end > ip_end:
            s.problem(n, f"UDP length {ulen} leaves no room for a BTH and an ICRC"
                      if ulen < UDP_HEADER + BTH_BYTES + ICRC_BYTES
                      else f"UDP length {ulen} reaches past the end of the IP packet")
            src_at = (ip + 12, ip + 16) if version == 4 else (ip + 8, ip + 24)
            s.header_bad[n] = str(ipaddress.ip_address(bytes(frame[src_at[0]:src_at[1]])))
            continue
        # A capture with a small snap length keeps only the start of each packet: what is
        # there is still named and counted, but its ICRC cannot be checked.
        captured = min(end, len(frame))
        if captured < udp + UDP_HEADER + BTH_BYTES:
            s.problem(n, f"cut short in the capture before the end of the BTH ({len(frame)} of {end} bytes)")
            continue
        opcode, flags, _pkey, word1, word2 = BTH_STRUCT.unpack_from(frame, udp + UDP_HEADER)
        s.roce[n] = opcode
        dest_qp, psn = word1 & 0xFFFFFF, word2 & 0xFFFFFF

        # ICRC: the hand-written computation; scapy re-checks a sample later.
        expected = found = None
        if end > len(frame):
            s.icrc_unchecked += 1
            s.problem(n, f"cut short in the capture ({len(frame)} of {end} bytes; snap length too "
                         "small?): ICRC not checkable")
        else:
            expected, found = icrc(frame, ip, udp, end), bytes(frame[end - 4:end])
            if expected == found:
                s.icrc_ok += 1
            else:
                bad_src = bytes(frame[ip + 12:ip + 16]) if version == 4 else bytes(frame[ip + 8:ip + 24])
                s.icrc_bad.append({"frame": n, "expected": expected.hex(), "found": found.hex(),
                                   "src": str(ipaddress.ip_address(bad_src))})

        # Name.
        name = OPCODE_NAMES.get(opcode)
        transport, op = opcode & 0xE0, opcode & 0x1F
        if name is None:
            name = f"OPCODE_0x{opcode:02x}"
            s.problem(n, f"BTH opcode 0x{opcode:02x} is not defined")
        elif op == ACKNOWLEDGE:
            aeth = udp + UDP_HEADER + BTH_BYTES + (4 if transport == RD else 0)  # RD: RDETH first
            if aeth + 4 > end - ICRC_BYTES:
                s.problem(n, "Acknowledge without room for an AETH")
            elif aeth < captured:
                syndrome = frame[aeth]
                ack = acknowledge_name(syndrome, TRANSPORTS[transport][0])
                if ack is None:
                    s.problem(n, f"AETH syndrome 0x{syndrome:02x} is reserved")
                else:
                    name = ack
        elif opcode == UD | 0x04 and dest_qp == GSI_QP and end <= len(frame):
            padcount = (flags >> 4) & 0x3
            cm_name, tid, attr, mad_problems = parse_cm_mad(frame, udp, end, padcount)
            for text in mad_problems:
                s.problem(n, text)
            if cm_name is not None:
                s.cm[n] = (cm_name, tid, attr)
                s.cm_counts[cm_name] += 1
                src = bytes(frame[ip + 12:ip + 16]) if version == 4 else bytes(frame[ip + 8:ip + 24])
                first = s.seen_cm.get((src, attr, tid))
                if first is None:
                    s.seen_cm[(src, attr, tid)] = n
                else:
                    s.cm_retransmissions.append({"frame": n, "first_frame": first, "name": cm_name,
                                                 "src": str(ipaddress.ip_address(src)),
                                                 "transaction_id": f"0x{tid:016x}"})
        s.opcodes[name] += 1
        s.first_of_name.setdefault(name, n)
        if keep_for_scapy and version == 4 and expected is not None and (
                s.first_of_name[name] == n or (expected != found and len(s.icrc_bad) <= 20)):
            s.ip_packets[n] = bytes(frame[ip:ip_end])

        # Retransmission: a request whose key was seen before. Not a MAD: a CM message is
        # resent with a new PSN and known by its transaction ID (above), and two processes
        # of the userspace runtime (two hosts) may each start their QP 1 at PSN 0.
        if opcode != CNP and name in ALL_NAMES and op not in RESPONSE_OPS and n not in s.cm:
            src = bytes(frame[ip + 12:ip + 16]) if version == 4 else bytes(frame[ip + 8:ip + 24])
            dst = bytes(frame[ip + 16:ip + 20]) if version == 4 else bytes(frame[ip + 24:ip + 40])
            src_qp = None
            if transport == UD and udp + UDP_HEADER + BTH_BYTES + 8 <= min(end - ICRC_BYTES, captured):
                # DETH: Q_Key, then 8 reserved bits and the 24-bit source QP.
                src_qp = struct.unpack_from("!I", frame, udp + UDP_HEADER + BTH_BYTES + 4)[0] & 0xFFFFFF
            key = (src, dst, dest_qp, psn, opcode, src_qp)
            first = s.seen_requests.get(key)
            if first is None:
                s.seen_requests[key] = n
            else:
                s.retransmission_count += 1
                s.retransmissions_by_source[str(ipaddress.ip_address(src))] += 1
                if len(s.retransmissions) < 20:
                    s.retransmissions.append({"frame": n, "first_frame": first, "name": name,
                                              "src": str(ipaddress.ip_address(src)),
                                              "dst": str(ipaddress.ip_address(dst)),
                                              "dest_qp": dest_qp, "psn": psn, "src_qp": src_qp})
    return s


def cross_check_with_scapy(s):
    """scapy's own ICRC for the first IPv4 packet of every name and the first 20 rejected ones:
    it must agree with the hand-written result. Returns (number checked, problems)."""
    problems, checked = [], 0
    bad = {b["frame"]: b for b in s.icrc_bad}
    for n, packet in sorted(s.ip_packets.items()):
        ihl = (packet[0] & 0x0F) * 4
        ulen = struct.unpack_from("!H", packet, ihl + 4)[0]
        hand = icrc(packet, 0, ihl, ihl + ulen)
        theirs = scapy_icrc(packet)
        checked += 1
        if hand != theirs:
            problems.append((n, f"the hand-written ICRC ({hand.hex()}) and scapy's ({theirs.hex()}) "
                                "disagree: this checker is broken"))
        elif n in bad:
            bad[n]["scapy_agrees"] = True
    return checked, problems


# --- tshark -----------------------------------------------------------------------------------
TSHARK_FIELDS = ["frame.number", "frame.protocols", "udp.srcport", "udp.dstport",
                 "infiniband.bth.opcode", "_ws.malformed", "_ws.expert.severity", "_ws.expert.message",
                 "infiniband.mad.mgmtclass", "infiniband.mad.attributeid", "infiniband.mad.transactionid",
                 "_ws.col.Info"]
SEVERITY_WARNING = 0x00600000  # _ws.expert.severity: chat 0x200000, note 0x400000, warn, error 0x800000
SEVERITY_NAMES = {0x00600000: "warning", 0x00800000: "error"}
AGGREGATOR = "\x1f"  # between the occurrences of one field; expert messages may contain commas


def start_tshark(path, out, err):
    """Start tshark on the capture, writing to files (it runs while Python reads the capture).
    Only frames with UDP port 4791 somewhere, or malformed ones, are printed."""
    cmd = ["tshark", "-r", path, "-n", "--disable-protocol", "rpcordma",
           "-Y", f"udp.port == {ROCE_PORT} || _ws.malformed",
           "-T", "fields", "-E", "separator=\t", "-E", "occurrence=a", "-E", f"aggregator={AGGREGATOR}"]
    for f in TSHARK_FIELDS:
        cmd += ["-e", f]
    try:
        return subprocess.Popen(cmd, stdout=out, stderr=err, stdin=subprocess.DEVNULL)
    except FileNotFoundError:
        raise CaptureError("tshark is not installed (apt-get install -y tshark)")


def tshark_rows(proc, out, err, path):
    """frame number -> {field: raw value} from tshark's output (several occurrences of a
    field are joined by AGGREGATOR; see values())."""
    proc.wait()
    out.seek(0)
    err.seek(0)
    if proc.returncode != 0:
        why = " ".join(line.strip() for line in err.read().decode(errors="replace").splitlines()
                       if line.strip() and not line.startswith("Running as"))
        raise CaptureError(f"tshark cannot read {path}: {why or f'exit status {proc.returncode}'}")
    rows = {}
    for line in out.read().decode(errors="replace").splitlines():
        vals = line.split("\t")
        vals += [""] * (len(TSHARK_FIELDS) - len(vals))
        rows[int(vals[0])] = dict(zip(TSHARK_FIELDS, vals))
    return rows


def values(raw):
    """The occurrences of a field in a tshark row, outermost first."""
    return raw.split(AGGREGATOR) if raw else []


def outer_udp_roce(row):
    """Does tshark see UDP port 4791 as the transport of the frame's first IP header (and
    not, say, inside an ICMP error that quotes a RoCE packet)?"""
    protocols = row["frame.protocols"].split(":")
    first_ip = next((i for i, p in enumerate(protocols) if p in ("ip", "ipv6")), None)
    if first_ip is None or first_ip + 1 >= len(protocols) or protocols[first_ip + 1] != "udp":
        return False
    ports = values(row["udp.srcport"])[:1] + values(row["udp.dstport"])[:1]
    return str(ROCE_PORT) in ports


def tshark_problems(s, rows):
    """Per-frame problems tshark shows in the RoCE packets, and the frames tshark sees as
    RoCE where the wire parser saw none."""
    problems = []
    for n, opcode in s.roce.items():
        row = rows.get(n)
        if row is None:
            problems.append((n, "tshark does not see a UDP port 4791 packet here"))
            continue
        tshark_opcode = values(row["infiniband.bth.opcode"])[:1]
        if not tshark_opcode:
            problems.append((n, "tshark does not decode it as RRoCE/InfiniBand (no BTH; protocols "
                                f"{row['frame.protocols'] or '?'})"))
        elif opcode is not None and int(tshark_opcode[0], 0) != opcode:
            problems.append((n, f"tshark reads BTH opcode {tshark_opcode[0]}, the wire parser 0x{opcode:02x}"))
        if n in s.cm:
            # A CM message: tshark must decode its MAD as the same message of the same
            # exchange, and name it in its Info column as Wireshark's users see it.
            cm_name, tid, attr = s.cm[n]
            t_class = values(row["infiniband.mad.mgmtclass"])[:1]
            t_attr = values(row["infiniband.mad.attributeid"])[:1]
            t_tid = values(row["infiniband.mad.transactionid"])[:1]
            if not t_class or int(t_class[0], 0) != MGMT_CLASS_CM:
                problems.append((n, f"tshark does not decode the {cm_name} as a CM MAD "
                                    f"(management class {t_class[0] if t_class else 'none'})"))
            elif not t_attr or int(t_attr[0], 0) != attr or not t_tid or int(t_tid[0], 0) != tid:
                problems.append((n, f"tshark reads attribute ID {t_attr[0] if t_attr else 'none'} and transaction "
                                    f"ID {t_tid[0] if t_tid else 'none'}, the wire parser 0x{attr:04x} and "
                                    f"0x{tid:016x} ({cm_name})"))
            elif cm_name in CM_NAMES and f"CM: {cm_name}" not in row["_ws.col.Info"]:
                problems.append((n, f"tshark's Info column says '{row['_ws.col.Info']}', not 'CM: {cm_name}'"))
        if row["_ws.malformed"]:
            # Its value is the label, e.g. "[Malformed Packet: IB]", or just the field name.
            label = next((v for v in values(row["_ws.malformed"]) if v.startswith("[")), "")
            problems.append((n, f"tshark: malformed packet {label}".rstrip()))
        if row["_ws.expert.severity"]:
            messages = values(row["_ws.expert.message"])
            for i, sev in enumerate(values(row["_ws.expert.severity"])):
                sev = int(sev, 0)
                msg = messages[i] if i < len(messages) else "?"
                if sev >= SEVERITY_WARNING and not msg.startswith("Malformed Packet"):  # said above
                    problems.append((n, f"tshark expert {SEVERITY_NAMES.get(sev, hex(sev))}: {msg}"))
    for n, row in rows.items():
        if n not in s.roce and row["infiniband.bth.opcode"] and outer_udp_roce(row):
            problems.append((n, "tshark decodes a RoCE packet here, but the wire parser does not see "
                                "a whole UDP port 4791 packet (IP fragment? IPv6 extension header?)"))
    return problems


def ethernet_damaged(s):
    """Frames whose Ethernet header a flipped bit changed (netem corrupt flips one bit
    anywhere in the frame): a source or destination MAC one bit away from the MAC its IP
    address has in most frames of the capture (a clear majority: no tie). The ICRC does
    not cover the Ethernet header, so such a frame's ICRC is still right. Returns frame ->
    source address as text."""
    votes = collections.defaultdict(collections.Counter)  # IP -> MAC -> frames
    for src_ip, src_mac, dst_ip, dst_mac in s.ether.values():
        votes[src_ip][src_mac] += 1
        votes[dst_ip][dst_mac] += 1
    usual = {}
    for ip, counts in votes.items():
        top = counts.most_common(2)
        if len(top) == 1 or top[0][1] > top[1][1]:
            usual[ip] = top[0][0]

    def one_bit_off(mac, ip):
        if ip not in usual:
            return False
        diff = int.from_bytes(mac, "big") ^ int.from_bytes(usual[ip], "big")
        return diff != 0 and diff & (diff - 1) == 0

    return {n: str(ipaddress.ip_address(src_ip))
            for n, (src_ip, src_mac, dst_ip, dst_mac) in s.ether.items()
            if one_bit_off(src_mac, src_ip) or one_bit_off(dst_mac, dst_ip)}


def plural(n, what):
    return f"{n} {what}{'' if n == 1 else 's'}"


# --- Checking one capture ---------------------------------------------------------------------
def check_capture(path, args):
    """Run every check on one capture; print the report. Returns the exit status."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = start_tshark(path, out, err)
        try:
            s = scan_capture(path)
        except CaptureError:
            proc.kill()
            proc.wait()
            raise
        rows = tshark_rows(proc, out, err, path)
    checked, scapy_problems = cross_check_with_scapy(s)
    from_tshark = tshark_problems(s, rows)
    problems = s.problems + from_tshark + scapy_problems
    for b in s.icrc_bad:
        agree = " (scapy.contrib.roce computes the same)" if b.get("scapy_agrees") else ""
        problems.append((b["frame"], f"ICRC wrong: expected 0x{b['expected']}, found 0x{b['found']}{agree}"))
    problems.sort(key=lambda p: p[0])
    corrupted = collections.Counter(b["src"] for b in s.icrc_bad)
    if args.allow_bad_icrc:
        # A packet corrupted on the way (netem corrupt): whatever else is wrong with it
        # (a flipped opcode bit, a length tshark no longer likes) follows from that. So
        # does a packet damaged below the ICRC's reach: a wrong IPv4 header checksum (any
        # receiver's IP layer drops it), a UDP length that does not fit the IP packet, and
        # one whose Ethernet addresses a flipped bit changed (e.g. into a group address).
        s.header_bad.update({n: src for n, src in ethernet_damaged(s).items() if n not in s.header_bad})
        bad_frames = {b["frame"] for b in s.icrc_bad} | set(s.header_bad)
        problems = [p for p in problems if p[0] not in bad_frames]
    for n, text in problems:
        print(f"FAIL frame {n}: {text}")

    roce = len(s.roce)
    tshark_bad = {n for n, _ in from_tshark}
    print(f"capture: {path}: {s.frames} frames, {roce} RoCE packets (UDP port {ROCE_PORT}; "
          f"{s.ipv4} IPv4, {s.ipv6} IPv6), {s.frames - roce} other frames ignored")
    print(f"tshark: {roce - len(tshark_bad & set(s.roce))} of {roce} RoCE packets decode as "
          "RRoCE/InfiniBand, not malformed, without expert warnings or errors")
    unchecked = f", {s.icrc_unchecked} not checkable (cut short)" if s.icrc_unchecked else ""
    print(f"ICRC: {s.icrc_ok} of {roce} correct, {len(s.icrc_bad)} wrong{unchecked} "
          f"(scapy.contrib.roce cross-checked {plural(checked, 'IPv4 packet')}"
          f"{', all agree' if checked and not scapy_problems else ''})")
    if args.allow_bad_icrc:
        by_source = ", ".join(f"{k} from {a}" for a, k in sorted(corrupted.items())) or "none"
        print(f"corrupted (ICRC wrong, allowed by --allow-bad-icrc): {len(s.icrc_bad)} ({by_source})")
        headers = len(set(s.header_bad) - {b["frame"] for b in s.icrc_bad})
        print(f"corrupted below the ICRC (IPv4 header checksum, UDP length or an Ethernet address wrong, allowed too): {headers}")
    print("opcodes:")
    # By opcode; NAKs next to ACKNOWLEDGE, undefined opcodes last.
    order = {name: (op, name) for op, name in OPCODE_NAMES.items()}
    order.update({name: (ACKNOWLEDGE, name) for name in ALL_NAMES if "NAK" in name})
    for name in sorted(s.opcodes, key=lambda x: order.get(x, (256, x))):
        print(f"  {s.opcodes[name]:8d}  {name}")
    if s.cm:
        print("CM messages (MADs to QP 1):")
        for name in sorted(s.cm_counts, key=lambda x: next((a for a, v in CM_ATTRIBUTES.items() if v == x), 0x10000)):
            print(f"  {s.cm_counts[name]:8d}  {name}")
        print(f"CM retransmissions (the same message and transaction ID sent again): {len(s.cm_retransmissions)}")
        for r in s.cm_retransmissions[:20]:
            print(f"  frame {r['frame']}: {r['name']} transaction ID {r['transaction_id']} from {r['src']}, "
                  f"first sent in frame {r['first_frame']}")
    by_source = ", ".join(f"{n} from {a}" for a, n in sorted(s.retransmissions_by_source.items()))
    print(f"retransmissions: {s.retransmission_count}" + (f" ({by_source})" if by_source else ""))
    if s.retransmissions:
        print(f"retransmitted PSNs (first {len(s.retransmissions)}):")
        for r in s.retransmissions:
            ud = f", source QP 0x{r['src_qp']:06x}" if r["src_qp"] is not None else ""
            print(f"  frame {r['frame']}: {r['name']} PSN {r['psn']} (0x{r['psn']:06x}) from {r['src']} "
                  f"to QP 0x{r['dest_qp']:06x} at {r['dst']}{ud}, first sent in frame {r['first_frame']}")

    failures = [f"frame {n}: {text}" for n, text in problems]
    option_failures = []
    if roce < args.min_packets:
        option_failures.append(f"{roce} RoCE packets, fewer than --min-packets {args.min_packets}")
    seen = {normal_name(n) for n in s.opcodes} | {normal_name(n) for n in s.cm_counts}
    for want in args.expect:
        if normal_name(want) not in seen:
            option_failures.append(f"--expect {want}: no {NORMAL_NAMES[normal_name(want)]} packet in the capture")
    resent = {normal_name(r["name"]) for r in s.cm_retransmissions}
    for want in args.expect_cm_retransmission:
        if normal_name(want) not in resent:
            option_failures.append(f"--expect-cm-retransmission {want}: no {NORMAL_NAMES[normal_name(want)]} "
                                   "sent twice with one transaction ID")
    for want in [a.strip() for v in args.expect_bad_icrc_from for a in v.split(",") if a.strip()]:
        if not corrupted.get(want):
            option_failures.append(f"--expect-bad-icrc-from {want}: no packet from {want} with a wrong ICRC")
    for want in [a.strip() for v in args.expect_retransmissions_from for a in v.split(",") if a.strip()]:
        if not s.retransmissions_by_source.get(want):
            option_failures.append(f"--expect-retransmissions-from {want}: no retransmission from {want}")
    if args.expect_retransmissions and not s.retransmission_count:
        option_failures.append("--expect-retransmissions: no retransmission in the capture")
    if args.no_retransmissions and s.retransmission_count:
        r = s.retransmissions[0]
        option_failures.append(f"--no-retransmissions: {s.retransmission_count} "
                               f"retransmission{'s' if s.retransmission_count > 1 else ''} "
                               f"(first: frame {r['frame']}, {r['name']} PSN {r['psn']}, first sent in "
                               f"frame {r['first_frame']})")
    for f in option_failures:
        print(f"FAIL: {f}")
    failures += option_failures
    print("result: OK" if not failures else
          f"result: FAIL ({len(failures)} failure{'s' if len(failures) > 1 else ''})")

    if args.json:
        summary = {
            "pcap": path, "ok": not failures, "frames": s.frames, "roce_packets": roce,
            "other_frames": s.frames - roce, "ipv4": s.ipv4, "ipv6": s.ipv6,
            "icrc_ok": s.icrc_ok, "icrc_bad": s.icrc_bad, "icrc_not_checkable": s.icrc_unchecked,
            "scapy_cross_checked": checked,
            "opcodes": dict(s.opcodes), "retransmissions": s.retransmission_count,
            "retransmissions_by_source": dict(s.retransmissions_by_source),
            "retransmitted": s.retransmissions, "cm_messages": dict(s.cm_counts),
            "cm_retransmissions": s.cm_retransmissions, "failures": failures,
        }
        try:
            with open(args.json, "w") as f:
                json.dump(summary, f, indent=2)
                f.write("\n")
        except OSError as e:
            raise CaptureError(f"cannot write {args.json}: {e.strerror}")
    return 0 if not failures else 1


# --- Self-test --------------------------------------------------------------------------------
# The CNP that scapy's test/contrib/roce.uts carries, captured from a ConnectX-4 Lx NIC:
# Ethernet, IPv4 10.0.17.1 -> 10.0.18.1 (TOS 0xc2: DSCP 48 with ECN bits), UDP 0 -> 4791,
# BTH opcode 0x81 (CNP), BECN set, dest QP 0x000118, 16 reserved bytes, ICRC 82 fd 00 2a.
HARDWARE_CNP = bytes.fromhex(
    "e41d2dab2bc27cfe90643b32080045c2003c718c4000401191610a0011010a001201"
    "000012b7002800008100ffff4000011800000000000000000000000000000000"
    "0000000082fd002a")


def self_test():
    """Returns the number of failed self-test checks (0 = pass)."""
    from scapy.layers.inet import IP, UDP
    from scapy.layers.l2 import Ether
    from scapy.packet import Raw
    from scapy.contrib.roce import BTH, AETH
    from scapy.utils import wrpcap
    import random
    failed = []

    def expect(cond, what):
        print(f"self-test: {'ok  ' if cond else 'FAIL'} {what}")
        if not cond:
            failed.append(what)

    def hand(ip_packet):
        ihl = (ip_packet[0] & 0x0F) * 4 if ip_packet[0] >> 4 == 4 else 40
        ulen = struct.unpack_from("!H", ip_packet, ihl + 4)[0]
        return icrc(ip_packet, 0, ihl, ihl + ulen)

    # 1. Hardware: the ConnectX-4 Lx CNP, through the Ethernet parser and both ICRC codes.
    ip = ip_offset(LINKTYPE_EN10MB, HARDWARE_CNP)
    udp, end, _ = udp_offsets(HARDWARE_CNP, ip)
    expect((ip, udp, end) == (14, 34, len(HARDWARE_CNP)), "parser finds the CNP's IPv4 and UDP headers "
           "and its end (the ICRC is the frame's last 4 bytes)")
    expect(icrc(HARDWARE_CNP, ip, udp, end) == HARDWARE_CNP[-4:] == bytes.fromhex("82fd002a"),
           f"hand-written ICRC of the ConnectX-4 Lx CNP is 82fd002a (got {icrc(HARDWARE_CNP, ip, udp, end).hex()})")
    expect(scapy_icrc(HARDWARE_CNP[ip:end]) == bytes.fromhex("82fd002a"),
           "scapy's ICRC of the ConnectX-4 Lx CNP is 82fd002a")

    # 2. roce.uts's UC SEND_ONLY example (ICRC 0x78f353f3 there, computed by scapy).
    uc = (IP(version=4, ihl=5, tos=0x1, id=1144, flags="DF", frag=0, ttl=64, src="192.168.0.7",
             dst="192.168.0.7", len=64) / UDP(sport=49152, dport=4791, len=44) /
          BTH(opcode="UC_SEND_ONLY", migreq=1, padcount=2, pkey=0xffff, dqpn=211, psn=13571856) /
          Raw(b"F0\x81\x8b\xe2\x895\xd9\x0e\x9a\x95PT\x01\xbe\x88^P\x00\x00"))
    uc_bytes = bytes(uc)
    expect(uc_bytes[-4:] == bytes.fromhex("78f353f3") == hand(uc_bytes),
           "roce.uts UC SEND_ONLY example: scapy and hand-written ICRC are 78f353f3")

    # 3. Packets of many kinds built by scapy, with random variant and invariant fields:
    # scapy's ICRC (computed while building) must equal the hand-written one.
    rng = random.Random(4791)
    kinds = [
        ("SEND_ONLY, 13 B payload + 3 pad", "RC_SEND_ONLY", 3, b"hello, world!" + b"\0" * 3),
        ("SEND_ONLY, empty", "RC_SEND_ONLY", 0, b""),
        ("ACKNOWLEDGE (AETH)", "RC_ACKNOWLEDGE", 0, None),
        ("RNR NAK (AETH)", "RC_ACKNOWLEDGE", 0, None),
        ("RDMA_WRITE_FIRST (RETH) 1024 B", "RC_RDMA_WRITE_FIRST", 0,
         struct.pack("!QII", 0x7F0012345000, 0x1234, 4096) + bytes(rng.randrange(256) for _ in range(1024))),
        ("RDMA_READ_REQUEST (RETH)", "RC_RDMA_READ_REQUEST", 0, struct.pack("!QII", 0x1000, 0x99, 100)),
        ("RDMA_READ_RESPONSE_ONLY (AETH) 100 B", "RC_RDMA_READ_RESPONSE_ONLY", 0,
         struct.pack("!I", 0x1F000005) + bytes(100)),
        ("RDMA_WRITE_ONLY_WITH_IMMEDIATE (RETH, ImmDt)", "RC_RDMA_WRITE_ONLY_WITH_IMMEDIATE", 2,
         struct.pack("!QIII", 0x2000, 7, 2, 0xCAFE) + b"hi\0\0"),
        ("UD SEND_ONLY (DETH) CM MAD", "UD_SEND_ONLY", 0,
         struct.pack("!II", 0x80010000, 1) + bytes([1, 7, 2, 3]) + bytes(252)),
    ]
    for what, opname, pad, payload in kinds:
        for _ in range(3):
            bth = BTH(opcode=opname, padcount=pad, dqpn=rng.randrange(1 << 24), psn=rng.randrange(1 << 24),
                      ackreq=rng.randrange(2), fecn=rng.randrange(2), becn=rng.randrange(2),
                      solicited=rng.randrange(2))
            if payload is None:
                syndrome = 0x1F if what.startswith("ACK") else 0x20 | rng.randrange(32)
                body = AETH(syndrome=syndrome, msn=rng.randrange(1 << 24))
            else:
                body = Raw(payload)
            pkt = (IP(src=f"127.0.0.{rng.randrange(2, 250)}", dst=f"10.{rng.randrange(256)}.0.1",
                      tos=rng.randrange(256), ttl=rng.randrange(1, 256), id=rng.choice([0, rng.randrange(65536)]),
                      flags="DF") /
                   UDP(sport=rng.choice([4791, rng.randrange(49152, 65536)]), dport=4791,
                       chksum=rng.choice([0, rng.randrange(65536)])) / bth / body)
            built = bytes(pkt)
            if hand(built) != built[-4:]:
                expect(False, f"scapy-built {what}: hand-written ICRC {hand(built).hex()} != scapy's {built[-4:].hex()}")
                break
        else:
            expect(True, f"scapy-built {what}: hand-written ICRC == scapy's (3 random packets)")

    # 4. The masks: changing any masked byte keeps the ICRC, changing any other byte of the
    # IP, UDP and transport headers or payload changes it.
    base = bytearray(bytes(IP(src="127.0.0.2", dst="127.0.0.3", id=0, flags="DF") /
                           UDP(sport=4791, dport=4791, chksum=0) /
                           BTH(opcode="RC_SEND_ONLY", dqpn=0x11, psn=0x123456) / Raw(b"abcdefgh")))
    good = icrc(base, 0, 20, len(base))
    masked_at = {1, 8, 10, 11, 20 + 6, 20 + 7, 28 + 4}  # TOS, TTL, IP checksum, UDP checksum, BTH byte 4
    wrong = []
    for i in range(len(base) - 4):
        for bit in range(8):
            mutated = bytearray(base)
            mutated[i] ^= 1 << bit
            # Offsets fixed: a changed length or IHL must change the CRC, not the parsing.
            if (icrc(mutated, 0, 20, len(base)) == good) != (i in masked_at):
                wrong.append(f"byte {i} bit {bit}")
    expect(not wrong, "masks: exactly TOS, TTL, IP checksum, UDP checksum and BTH byte 4 (FECN, BECN, "
                      f"reserved) are masked; every other bit counts{' (wrong: ' + ', '.join(wrong[:5]) + ')' if wrong else ''}")

    # 5. Link types: the same IP packet behind each header is found.
    ip_packet = HARDWARE_CNP[ip:end]
    frames = {
        "Ethernet (lo, zero MACs)": (LINKTYPE_EN10MB, bytes(12) + b"\x08\x00" + ip_packet),
        "Ethernet + 802.1Q tag": (LINKTYPE_EN10MB, bytes(12) + b"\x81\x00\x00\x05\x08\x00" + ip_packet),
        "Linux cooked SLL": (LINKTYPE_LINUX_SLL, struct.pack("!HHH8sH", 0, 772, 6, bytes(8), 0x0800) + ip_packet),
        "Linux cooked SLL2": (LINKTYPE_LINUX_SLL2, struct.pack("!HHIHBB8s", 0x0800, 0, 1, 772, 0, 6, bytes(8)) + ip_packet),
        "BSD loopback (NULL)": (LINKTYPE_NULL, struct.pack("<I", 2) + ip_packet),
        "raw IP": (LINKTYPE_RAW, ip_packet),
    }
    for what, (lt, frame) in frames.items():
        o = ip_offset(lt, frame)
        ok = o is not None and bytes(frame[o:]) == ip_packet
        if ok:
            u, e, _ = udp_offsets(frame, o)
            ok = icrc(frame, o, u, e) == frame[e - 4:e]
        expect(ok, f"link type {lt} ({what}): IP packet found, ICRC verifies")

    # 6. The capture readers: a pcap (SLL2) and a pcapng (Ethernet) with a good CNP, an ARP
    # frame and a CNP with one payload byte changed: only the last one may be reported.
    bad_packet = bytearray(ip_packet)
    bad_packet[-8] ^= 0x01
    with tempfile.TemporaryDirectory() as d:
        pcap = os.path.join(d, "t.pcap")
        with open(pcap, "wb") as f:
            f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, LINKTYPE_LINUX_SLL2))
            for p, proto in ((ip_packet, 0x0800), (bytes(28), 0x0806), (bytes(bad_packet), 0x0800)):
                frame = struct.pack("!HHIHBB8s", proto, 0, 1, 772, 0, 6, bytes(8)) + p
                f.write(struct.pack("<IIII", 1, 0, len(frame), len(frame)) + frame)
        pcapng = os.path.join(d, "t.pcapng")
        with open(pcapng, "wb") as f:
            def block(btype, body):
                body += bytes(-len(body) % 4)
                return struct.pack("<II", btype, len(body) + 12) + body + struct.pack("<I", len(body) + 12)
            f.write(block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1)))
            f.write(block(1, struct.pack("<HHI", LINKTYPE_EN10MB, 0, 0)))
            for p, etype in ((ip_packet, b"\x08\x00"), (bytes(28), b"\x08\x06"), (bytes(bad_packet), b"\x08\x00")):
                frame = bytes(12) + etype + p
                f.write(block(6, struct.pack("<IIIII", 0, 0, 0, len(frame), len(frame)) + frame))
        for path in (pcap, pcapng):
            s = scan_capture(path)
            expect(s.frames == 3 and list(s.roce) == [1, 3] and s.icrc_ok == 1
                   and [b["frame"] for b in s.icrc_bad] == [3] and s.opcodes == {"CNP": 2},
                   f"{os.path.splitext(path)[1][1:]} reader: 3 frames, 2 RoCE, only frame 3's ICRC wrong")

    # 7. Retransmission keys: frames 5 and 8 repeat frame 1; the others differ in source
    # IP, QP, PSN, opcode or (UD) DETH source QP, or are responses.
    def rc(psn, op="RC_SEND_ONLY", src="127.0.0.2", qp=0x11, body=bytes(8)):
        return Ether() / IP(src=src, dst="127.0.0.3", flags="DF") / UDP(sport=4791, dport=4791, chksum=0) / \
            BTH(opcode=op, dqpn=qp, psn=psn) / Raw(body)
    deth = struct.pack("!II", 0x80010000, 2)
    deth_other = struct.pack("!II", 0x80010000, 3)
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "r.pcap")
        wrpcap(path, [rc(5), rc(5, src="127.0.0.4"), rc(5, qp=0x12), rc(6), rc(5),
                      rc(5, "RC_ACKNOWLEDGE"), rc(5, "RC_ACKNOWLEDGE"), rc(5), rc(5, "RC_SEND_FIRST"),
                      rc(9, "UD_SEND_ONLY", body=deth), rc(9, "UD_SEND_ONLY", body=deth_other)])
        s = scan_capture(path)
        expect(s.retransmission_count == 2 and [r["frame"] for r in s.retransmissions] == [5, 8]
               and s.retransmissions[0]["first_frame"] == 1,
               "retransmissions: repeated (source IP, QP, PSN, opcode, DETH source QP) of requests "
               "only, frames 5 and 8")

    # 8. CM MADs: a REQ sent twice with one transaction ID is a CM retransmission, the REP
    # answering it (same ID, another attribute) is not; a MAD with the wrong Q_Key, one
    # cut to 200 bytes and one with an undefined CM attribute are reported.
    def mad(attr, tid, qkey=GSI_QKEY, length=MAD_BYTES, src="127.0.0.2", psn=0):
        body = struct.pack("!II", qkey, GSI_QP) + MAD_STRUCT.pack(1, MGMT_CLASS_CM, 2, 3, 0, 0, tid, attr, 0, 0)
        body += bytes(length - MAD_STRUCT.size)
        return Ether() / IP(src=src, dst="127.0.0.3", flags="DF") / UDP(sport=4791, dport=4791, chksum=0) / \
            BTH(opcode="UD_SEND_ONLY", dqpn=GSI_QP, psn=psn) / Raw(body)
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "cm.pcap")
        wrpcap(path, [mad(0x10, 7), mad(0x13, 7, src="127.0.0.3"), mad(0x10, 7, psn=1), mad(0x10, 8, psn=2),
                      mad(0x14, 7, qkey=0x1234), mad(0x15, 9, length=200), mad(0x33, 9)])
        s = scan_capture(path)
        expect(s.cm_counts == {"ConnectRequest": 3, "ConnectReply": 1, "ReadyToUse": 1, "DisconnectRequest": 1,
                               "CM_ATTRIBUTE_0x0033": 1}
               and [(r["frame"], r["first_frame"], r["name"]) for r in s.cm_retransmissions]
               == [(3, 1, "ConnectRequest")],
               "CM MADs: named by attribute ID; one REQ sent again with its transaction ID (frame 3) is the only "
               "CM retransmission")
        texts = {n: t for n, t in s.problems}
        expect(sorted(texts) == [5, 6, 7] and "Q_Key 0x00001234" in texts[5] and "200 bytes" in texts[6]
               and "attribute ID 0x0033" in texts[7],
               "CM MADs: the wrong Q_Key, the short MAD and the undefined attribute are reported, nothing else")
    # 9. Ethernet damage: a flipped bit made frame 3's source MAC a group address and frame
    # 5's destination MAC another; the ICRC cannot see either. Only those two are reported,
    # with their source addresses: not frame 7's source MAC, more than one bit away (a
    # second interface, not a flipped bit), nor anything of 10.0.0.3, whose two frames tie.
    a, b = "02:00:00:00:00:01", "02:00:00:00:00:02"
    def eth(src_mac, dst_mac, src="10.0.0.1", dst="10.0.0.2"):
        return Ether(src=src_mac, dst=dst_mac) / IP(src=src, dst=dst, flags="DF") / \
            UDP(sport=4791, dport=4791, chksum=0) / BTH(opcode="RC_SEND_ONLY", dqpn=0x11, psn=1) / Raw(bytes(8))
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "eth.pcap")
        wrpcap(path, [eth(a, b), eth(b, a, "10.0.0.2", "10.0.0.1"), eth("03:00:00:00:00:01", b),
                      eth(a, b), eth(a, "02:00:00:00:00:06"), eth(b, a, "10.0.0.2", "10.0.0.1"),
                      eth("02:00:00:00:00:f0", b), eth("02:00:00:00:00:03", b, "10.0.0.3"),
                      eth("02:00:00:00:00:07", b, "10.0.0.3")])
        s = scan_capture(path)
        expect(ethernet_damaged(s) == {3: "10.0.0.1", 5: "10.0.0.1"} and s.icrc_ok == 9,
               "Ethernet damage: the group source MAC (frame 3) and the wrong destination MAC (frame 5) "
               "are found, their ICRCs are right")
    print(f"self-test: {'PASS' if not failed else f'FAIL ({len(failed)} checks)'}")
    return len(failed)


# --- Command line -----------------------------------------------------------------------------
def main():
    ap = argparse.ArgumentParser(prog="roce_wire_check.py", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("pcap", nargs="*", help="capture file (pcap or pcapng)")
    ap.add_argument("--min-packets", type=int, default=1, metavar="N",
                    help="fail if fewer RoCE packets (default 1)")
    ap.add_argument("--expect", action="append", default=[], metavar="NAME",
                    help="fail if no packet of this opcode or NAK name (repeatable; comma list)")
    g = ap.add_mutually_exclusive_group()
    g.add_argument("--expect-retransmissions", action="store_true", help="fail if no retransmission")
    g.add_argument("--no-retransmissions", action="store_true", help="fail if any retransmission")
    ap.add_argument("--allow-bad-icrc", action="store_true",
                    help="a packet with a wrong ICRC (corrupted on the way) is counted, not a failure, "
                         "and so is whatever else is wrong with it")
    ap.add_argument("--expect-bad-icrc-from", action="append", default=[], metavar="IP",
                    help="fail unless a packet from this source address has a wrong ICRC (repeatable; "
                         "comma list; implies --allow-bad-icrc)")
    ap.add_argument("--expect-retransmissions-from", action="append", default=[], metavar="IP",
                    help="fail if no retransmission comes from this source address (repeatable; comma list)")
    ap.add_argument("--expect-cm-retransmission", action="append", default=[], metavar="NAME",
                    help="fail unless a CM message of this name (ConnectRequest ...) is sent twice with "
                         "one transaction ID (repeatable; comma list)")
    ap.add_argument("--json", metavar="FILE", help="write the summary as JSON")
    ap.add_argument("--self-test", action="store_true", help="check the ICRC code (against a hardware packet and scapy)")
    args = ap.parse_args()
    if args.expect_bad_icrc_from:
        args.allow_bad_icrc = True
    if not args.pcap and not args.self_test:
        ap.error("a PCAP (or --self-test) is required")
    if len(args.pcap) > 1 and args.json:
        ap.error("--json takes one PCAP")
    if args.min_packets < 0:
        ap.error("--min-packets must be >= 0")
    args.expect = [n.strip() for e in args.expect for n in e.split(",") if n.strip()]
    args.expect_cm_retransmission = [n.strip() for e in args.expect_cm_retransmission
                                     for n in e.split(",") if n.strip()]
    bad_cm = [n for n in args.expect_cm_retransmission if NORMAL_NAMES.get(normal_name(n)) not in CM_NAMES]
    if bad_cm:
        ap.error(f"--expect-cm-retransmission takes CM message names ({', '.join(sorted(CM_NAMES))}), "
                 f"not {', '.join(bad_cm)}")
    unknown = [n for n in args.expect if normal_name(n) not in NORMAL_NAMES]
    if unknown:
        rc_names = sorted(n for n in ALL_NAMES if not n.startswith(("UC_", "RD_", "UD_", "XRC_")))
        ap.error(f"unknown --expect name(s): {', '.join(unknown)} (known: {', '.join(rc_names)}, "
                 "the UC_, RD_, UD_ and XRC_ forms of the opcodes those transports define, and the "
                 f"CM messages {', '.join(sorted(CM_NAMES))})")

    try:
        importlib.import_module("scapy.contrib.roce")  # the ICRC oracle: fail early without it
    except ImportError as e:
        print(f"roce_wire_check: scapy is not available ({e}): apt-get install -y python3-scapy, "
              "and run this with /usr/bin/python3", file=sys.stderr)
        return 2
    status = 0
    if args.self_test and self_test():
        status = 1
    for path in args.pcap:
        try:
            status = max(status, check_capture(path, args))
        except CaptureError as e:
            sys.stdout.flush()
            print(f"roce_wire_check: {e}", file=sys.stderr)
            return 2
    return status


if __name__ == "__main__":
    sys.exit(main())
