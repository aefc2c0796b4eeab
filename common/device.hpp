/**
 * @file device.hpp
 * @brief Finding the RDMA device, choosing the GID, and the limits that trip beginners.
 *
 * On RoCE the "address" of a port is a GID table entry: each IP address on the netdev
 * appears once per RoCE version. On Soft-RoCE (rxe) over an interface with one IPv4
 * address the table is
 * @code
 *   GID[0]  fe80::...            RoCE v2 (IPv6 link-local)
 *   GID[1]  ::ffff:10.0.0.1      RoCE v2 (the IPv4 address, IPv4-mapped)
 * @endcode
 * Index 0 is what most examples hard-code. Both sides must use the same kind: two IPv4
 * entries (RoCE v2 over IPv4) or two IPv6 ones (RoCE v2 over IPv6). With one of each,
 * ibv_modify_qp(INIT->RTR) fails with EINVAL on both sides: the kernel resolves the
 * peer's MAC address from our GID and the peer's, and refuses a source and destination
 * of different address families (lesson 01's smoke test shows it). choose_gid() picks
 * the RoCE v2 IPv4 entry and logs why.
 */
#pragma once

#include <infiniband/verbs.h>

#include <cstddef>
#include <cstdint>
#include <string>

#include "common/verbs_owners.hpp"

namespace common {

/**
 * Pick a device from the array ibv_get_device_list() returned.
 * @param list   the array (NULL when ibv_get_device_list failed; errno says why)
 * @param count  its length
 * @param name   the device wanted (-d), or empty for the first one
 * @throws Error when there is no device at all (with the remedy: scripts/softroce-setup.sh
 *         or the lab VMs) or no device of that name (listing the ones there are).
 */
ibv_device* find_device(ibv_device** list, int count, const std::string& name);

/// The GID a QP will use as its source address, and why it was chosen.
struct GidChoice {
  int index = -1;  ///< index in the port's GID table (becomes ah_attr.grh.sgid_index)
  ibv_gid gid{};   ///< the GID itself (sent to the peer, who uses it as its dgid)
};

/// An opened device and the port and GID a raw-verbs connection will use: lesson 01's
/// steps 2-3, for the raw-verbs lessons after it. Members in creation order.
struct OpenPort {
  DeviceList list;              ///< from ibv_get_device_list (freed last)
  Context ctx;                  ///< the opened device
  std::uint8_t port = 1;        ///< the port number (RDMA ports count from 1)
  ibv_port_attr attr{};         ///< its state, active_mtu, LID, link layer
  GidChoice gid;                ///< our source GID
};

/**
 * ibv_get_device_list + find_device + ibv_open_device, ibv_query_port (which must be
 * ACTIVE) and choose_gid(), as lesson 01 spells them out.
 * @param device     the device name (-d), empty for the first one
 * @param port       the port number (-i)
 * @param gid_index  the GID index (-g), -1 to choose the RoCE v2 IPv4 entry
 * @throws Error with the remedy (no device, no such port, port not ACTIVE, no usable GID).
 */
OpenPort open_port(const std::string& device, int port, int gid_index);

/**
 * Choose the source GID on @p port. With @p requested >= 0, use that index (and warn if
 * it is not a RoCE v2 IPv4 entry); otherwise take the first RoCE v2 entry that carries an
 * IPv4 address. On InfiniBand (link layer IB) GID index 0 is right and the LID routes.
 * Logs every candidate seen and the reason for the choice.
 * @throws Error if the requested index is empty or the port has no usable GID.
 */
GidChoice choose_gid(ibv_context* ctx, int port, const ibv_port_attr& port_attr, int requested);

/// "::ffff:10.0.0.1" (GIDs are IPv6 addresses; IPv4 ones are IPv4-mapped).
std::string gid_to_string(const ibv_gid& gid);

/// "1024" for IBV_MTU_1024 (the enum values are 1..5, not byte counts).
const char* mtu_name(ibv_mtu mtu);

/// Bytes of IBV_MTU_xxx (256 .. 4096), 0 for an unknown value.
unsigned mtu_bytes(ibv_mtu mtu);

/**
 * Check RLIMIT_MEMLOCK before registering @p bytes. Registration pins pages, and the
 * pinned total counts against this limit unless the process has CAP_IPC_LOCK (root has).
 * Logs the limit; warns with the `ulimit -l` remedy when registration would fail.
 */
void check_memlock(std::size_t bytes);

/// The remedy to print when ibv_reg_mr fails (memlock limit, access flags, device).
std::string reg_mr_remedy();

}  // namespace common
