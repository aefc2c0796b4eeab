// The runtime's general services interface (GSI, QP 1): how the runtime's librdmacm
// (userspace-roce/rdmacm/) sends and receives communication-manager MADs through the
// device of this process. A CM MAD travels as a UD SEND_ONLY (opcode 0x64) to QP 1 with a
// DETH (Q_Key 0x80010000, source QP 1), as the kernel's CM sends it over RoCE v2 with rxe;
// of the headers rxe puts on it, only the UDP source port (4791 here) and the IPv4
// Identification (0 here) differ.
//
// These functions are the only exports of libibverbs.so.1 that rdma-core's does not have;
// they live in their own version node, UROCE_PRIVATE_1, which no program built against
// rdma-core can ask for.
#pragma once

#include <infiniband/verbs.h>

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/// The size of a MAD: what uroce_gsi_send takes and the receive callback gets.
#define UROCE_MAD_SIZE 256
/// The Q_Key of QP 1 (IBA 13.4.6.1 / the kernel's IB_QP1_QKEY).
#define UROCE_QP1_QKEY 0x80010000u

/// Called by the device's engine thread, with the device locked, for every packet that
/// parsed and passed its ICRC check as a UD SEND_ONLY to QP 1 with Q_Key 0x80010000 and a
/// 256-byte payload. `src_ip` is the sender's IPv4 address (host order), `src_qp` the DETH
/// source QP. The callback must copy what it needs and return at once; it must not call
/// any verb or uroce_* function (the device is locked).
typedef void (*uroce_gsi_receive_fn)(void* arg, uint32_t src_ip, uint32_t src_qp,
                                     const uint8_t* mad);

/// Installs the receiver of the device's QP 1 traffic. 0, or EBUSY if one is installed.
int uroce_gsi_attach(struct ibv_context* ctx, uroce_gsi_receive_fn fn, void* arg);
/// Removes it; once this returns, the callback is never called again.
void uroce_gsi_detach(struct ibv_context* ctx);
/// Sends one 256-byte MAD to QP 1 of the device at `dst_ip` (host order) through the
/// fault injector, like every other packet. Never blocks. 0, or an errno value.
int uroce_gsi_send(struct ibv_context* ctx, uint32_t dst_ip, const uint8_t* mad);
/// The IPv4 address (host order) of the device behind `ctx`: its GID is ::ffff:<it>.
uint32_t uroce_device_ipv4(struct ibv_context* ctx);
/// Asks that the process's device, when it is opened, be bound to `ip` (host order) rather
/// than to UROCE_ADDR or the first free 127.0.0.x: what rdma_bind_addr to a specific
/// address does before any device is open. 0 if the device is (or will be) at `ip`;
/// EADDRNOTAVAIL if it is already open at another address, or UROCE_ADDR names another.
int uroce_request_address(uint32_t ip);

/// The runtime's UROCE_LOG level (0 when unset).
int uroce_log_level(void);
/// Writes one line (no newline needed) to the runtime's log: stderr, prefixed like every
/// runtime line, never blocking the caller.
void uroce_log_text(const char* line);

#ifdef __cplusplus
}
#endif
