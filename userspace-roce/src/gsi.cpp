// The general services interface's exports (gsi.h): how the runtime's librdmacm reaches
// QP 1 of this process's device (qp1.cpp) and the runtime's log.
#include <cerrno>

#include "runtime.hpp"

using uroce::context_of;

UROCE_EXPORT int uroce_gsi_attach(ibv_context* ctx, uroce_gsi_receive_fn fn, void* arg) {
  if (!ctx || !fn) return EINVAL;
  uroce::Device* dev = context_of(ctx)->dev;
  std::lock_guard<std::mutex> l(dev->mu);
  if (dev->gsi_receive) return EBUSY;
  dev->gsi_receive = fn;
  dev->gsi_arg = arg;
  return 0;
}

UROCE_EXPORT void uroce_gsi_detach(ibv_context* ctx) {
  if (!ctx) return;
  uroce::Device* dev = context_of(ctx)->dev;
  // The callback runs only with mu held: once we hold it, no call is under way.
  std::lock_guard<std::mutex> l(dev->mu);
  dev->gsi_receive = nullptr;
  dev->gsi_arg = nullptr;
}

UROCE_EXPORT int uroce_gsi_send(ibv_context* ctx, uint32_t dst_ip, const uint8_t* mad) {
  if (!ctx || !mad) return EINVAL;
  uroce::Device* dev = context_of(ctx)->dev;
  std::lock_guard<std::mutex> l(dev->mu);
  dev->send_gsi_packet(dst_ip, mad);
  return 0;
}

UROCE_EXPORT uint32_t uroce_device_ipv4(ibv_context* ctx) {
  return ctx ? context_of(ctx)->dev->ip : 0;
}

UROCE_EXPORT int uroce_request_address(uint32_t ip) { return uroce::request_device_address(ip); }

UROCE_EXPORT int uroce_log_level(void) { return uroce::Config::get().log; }

UROCE_EXPORT void uroce_log_text(const char* line) {
  if (line) uroce::log_line("%s", line);
}
