#include "common/device.hpp"

#include <arpa/inet.h>
#include <net/if.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "common/errors.hpp"
#include "common/log.hpp"

namespace common {
namespace {

const char* kNoDeviceRemedy =
    "on a machine whose kernel has Soft-RoCE, run `sudo ./scripts/softroce-setup.sh` "
    "(loads rdma_rxe and adds rxe0 on your network interface), then `ibv_devices`; "
    "without RDMA in the kernel, run the lessons in the lab VMs: `./scripts/tour.sh`";

bool is_ipv4_mapped(const ibv_gid& gid) {
  static const unsigned char prefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  return std::memcmp(gid.raw, prefix, sizeof prefix) == 0;
}

const char* gid_type_name(unsigned type) {
  switch (type) {
    case IBV_GID_TYPE_IB: return "IB";
    case IBV_GID_TYPE_ROCE_V1: return "RoCE v1";
    case IBV_GID_TYPE_ROCE_V2: return "RoCE v2";
  }
  return "unknown";
}

std::string netdev_name(unsigned ifindex) {
  char name[IF_NAMESIZE] = {};
  return ifindex != 0 && if_indextoname(ifindex, name) != nullptr ? name : "-";
}

}  // namespace

ibv_device* find_device(ibv_device** list, int count, const std::string& name) {
  if (list == nullptr) {
    // ENOSYS here means the kernel has no RDMA subsystem at all (no uverbs, no netlink
    // RDMA family): nothing in user space can fix that.
    const int err = errno;
    // rdma-core's libibverbs (v44) fails with ENOSYS (no /sys/class/infiniband_verbs: no
    // RDMA in the kernel or ib_uverbs not loaded, or a kernel ABI it does not speak) or
    // ENOMEM; EINVAL comes from a libibverbs that rejected its own configuration, as this
    // project's userspace runtime does for a bad UROCE_* variable after printing which one.
    if (err == EINVAL)
      fail("ibv_get_device_list failed: " + errno_text(err) + ": the verbs library rejected its configuration",
           "see the line the library printed just above (on the userspace runtime: a UROCE_* variable, "
           "userspace-roce/README.md)");
    fail("ibv_get_device_list failed: " + errno_text(err) +
             (err == ENOSYS ? ": no RDMA in this kernel, or its ib_uverbs module is not loaded (modprobe ib_uverbs)" : ""),
         kNoDeviceRemedy);
  }
  if (count == 0) fail("no RDMA device found (ibv_get_device_list returned 0 devices)",
                       kNoDeviceRemedy);
  if (name.empty()) return list[0];
  std::string present;
  for (int i = 0; i < count; ++i) {
    if (name == ibv_get_device_name(list[i])) return list[i];
    present += (i ? ", " : "") + std::string(ibv_get_device_name(list[i]));
  }
  fail("RDMA device '" + name + "' not found; devices present: " + present,
       "pass one of them with -d, or list them with `ibv_devices`");
}

OpenPort open_port(const std::string& device, int port, int gid_index) {
  OpenPort p;
  int count = 0;
  p.list.reset(ibv_get_device_list(&count));
  ibv_device* dev = find_device(p.list.get(), count, device);
  p.ctx.reset(check_ptr(ibv_open_device(dev), "ibv_open_device", "check permissions on /dev/infiniband/uverbs*"));
  p.port = static_cast<std::uint8_t>(port);
  check_rc(ibv_query_port(p.ctx.get(), p.port, &p.attr), "ibv_query_port",
           "the port number (-i) must exist on the device: see `ibv_devinfo`");
  if (p.attr.state != IBV_PORT_ACTIVE)
    fail("port " + std::to_string(port) + " of " + ibv_get_device_name(dev) + " is " +
             ibv_port_state_str(p.attr.state) + ", not ACTIVE",
         "bring the network interface under the RDMA device up (`ip link set <if> up`; `rdma link show`)");
  p.gid = choose_gid(p.ctx.get(), port, p.attr, gid_index);
  LOG(slow, "device %s port %u: active MTU %s, GID[%d] %s", ibv_get_device_name(dev), p.port,
      mtu_name(p.attr.active_mtu), p.gid.index, gid_to_string(p.gid.gid).c_str());
  return p;
}

std::string gid_to_string(const ibv_gid& gid) {
  char text[INET6_ADDRSTRLEN] = {};
  inet_ntop(AF_INET6, gid.raw, text, sizeof text);
  return text;
}

GidChoice choose_gid(ibv_context* ctx, int port, const ibv_port_attr& port_attr, int requested) {
  const auto query = [&](int index, ibv_gid_entry& entry) {
    return ibv_query_gid_ex(ctx, static_cast<uint32_t>(port), static_cast<uint32_t>(index),
                            &entry, 0) == 0;
  };
  GidChoice choice;
  ibv_gid_entry entry{};

  if (requested >= 0) {
    if (requested >= port_attr.gid_tbl_len || !query(requested, entry))
      fail("GID index " + std::to_string(requested) + " is empty on port " +
               std::to_string(port) + " (table length " + std::to_string(port_attr.gid_tbl_len) + ")",
           "list the table with `ibv_devinfo -v` (GID lines) and pass a filled index with -g, "
           "or leave -g out to choose automatically");
    choice.index = requested;
    choice.gid = entry.gid;
    const bool v2_ipv4 = entry.gid_type == IBV_GID_TYPE_ROCE_V2 && is_ipv4_mapped(entry.gid);
    if (port_attr.link_layer == IBV_LINK_LAYER_ETHERNET && !v2_ipv4)
      LOG(warn, "GID[%d] %s is %s, not RoCE v2 IPv4: the peer must use the same kind of GID, or "
                "ibv_modify_qp(INIT->RTR) fails with EINVAL on both sides", requested,
          gid_to_string(entry.gid).c_str(), gid_type_name(entry.gid_type));
    LOG(slow, "GID[%d] %s (%s on %s) chosen with -g", requested, gid_to_string(entry.gid).c_str(),
        gid_type_name(entry.gid_type), netdev_name(entry.ndev_ifindex).c_str());
    return choice;
  }

  if (port_attr.link_layer == IBV_LINK_LAYER_INFINIBAND) {
    // On InfiniBand the subnet manager assigns a LID and that routes; GID[0] is fine.
    if (!query(0, entry)) fail("GID index 0 is empty on an InfiniBand port", "check `ibv_devinfo -v`");
    choice.index = 0;
    choice.gid = entry.gid;
    LOG(slow, "GID[0] %s chosen: InfiniBand link layer, routing by LID 0x%x",
        gid_to_string(entry.gid).c_str(), port_attr.lid);
    return choice;
  }

  for (int i = 0; i < port_attr.gid_tbl_len; ++i) {
    if (!query(i, entry)) continue;  // ENODATA: an empty slot
    const bool v2_ipv4 = entry.gid_type == IBV_GID_TYPE_ROCE_V2 && is_ipv4_mapped(entry.gid);
    LOG(info, "GID[%d] %-28s %-7s on %s%s", i, gid_to_string(entry.gid).c_str(),
        gid_type_name(entry.gid_type), netdev_name(entry.ndev_ifindex).c_str(),
        v2_ipv4 ? "  <- RoCE v2 + IPv4" : "");
    if (v2_ipv4 && choice.index < 0) {
      choice.index = i;
      choice.gid = entry.gid;
    }
  }
  if (choice.index < 0)
    fail("port " + std::to_string(port) + " has no RoCE v2 GID carrying an IPv4 address",
         "give the RDMA netdev an IPv4 address (`ip addr add ... dev <if>`) or pass -g with "
         "an index from `ibv_devinfo -v`");
  LOG(slow, "GID[%d] %s chosen: RoCE v2 (UDP/IP, routable) with the interface's IPv4 address; "
            "GID[0] is usually the IPv6 link-local entry, and a peer must use the same kind "
            "(IPv4 or IPv6) as we do",
      choice.index, gid_to_string(choice.gid).c_str());
  return choice;
}

const char* mtu_name(ibv_mtu mtu) {
  switch (mtu) {
    case IBV_MTU_256: return "256";
    case IBV_MTU_512: return "512";
    case IBV_MTU_1024: return "1024";
    case IBV_MTU_2048: return "2048";
    case IBV_MTU_4096: return "4096";
  }
  return "invalid";
}

unsigned mtu_bytes(ibv_mtu mtu) {
  return mtu >= IBV_MTU_256 && mtu <= IBV_MTU_4096 ? 128u << mtu : 0u;
}

void check_memlock(std::size_t bytes) {
  rlimit limit{};
  if (getrlimit(RLIMIT_MEMLOCK, &limit) != 0) return;
  if (limit.rlim_cur == RLIM_INFINITY) {
    LOG(info, "RLIMIT_MEMLOCK is unlimited: registering %zu bytes is fine", bytes);
    return;
  }
  LOG(info, "RLIMIT_MEMLOCK is %llu KiB; registering %zu bytes pins them against it",
      static_cast<unsigned long long>(limit.rlim_cur / 1024), bytes);
  if (bytes > limit.rlim_cur && geteuid() != 0)
    LOG(warn, "%zu bytes exceed the memlock limit of %llu KiB: ibv_reg_mr will fail; "
              "raise it with `ulimit -l unlimited` (or memlock in /etc/security/limits.conf)",
        bytes, static_cast<unsigned long long>(limit.rlim_cur / 1024));
}

std::string reg_mr_remedy() {
  rlimit limit{};
  std::string now = "unknown";
  if (getrlimit(RLIMIT_MEMLOCK, &limit) == 0)
    now = limit.rlim_cur == RLIM_INFINITY ? "unlimited"
                                          : std::to_string(limit.rlim_cur / 1024) + " KiB";
  return "registration pins memory against RLIMIT_MEMLOCK (now " + now +
         "): raise it with `ulimit -l unlimited` or run as root; EINVAL means REMOTE_WRITE or "
         "REMOTE_ATOMIC without LOCAL_WRITE, or an access flag the device does not support";
}

}  // namespace common
