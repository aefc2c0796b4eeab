// The device's sizing rules: the active MTU an interface allows (rxe's rule) and the send
// window a receive buffer can hold.
#include <gtest/gtest.h>

#include "runtime.hpp"

namespace uroce {
namespace {

TEST(DeviceMtu, RxeRuleLeavesEightyBytesForHeaders) {
  EXPECT_EQ(ib_mtu_for(65536), IBV_MTU_4096);  // loopback
  EXPECT_EQ(ib_mtu_for(9000), IBV_MTU_4096);   // jumbo frames
  EXPECT_EQ(ib_mtu_for(4176), IBV_MTU_4096);   // 4096 + 80: just fits
  EXPECT_EQ(ib_mtu_for(4175), IBV_MTU_2048);
  EXPECT_EQ(ib_mtu_for(1500), IBV_MTU_1024);   // Ethernet
  EXPECT_EQ(ib_mtu_for(1103), IBV_MTU_512);    // 1024 + 80 - 1
  EXPECT_EQ(ib_mtu_for(576), IBV_MTU_256);
}

TEST(DeviceMtu, LoopbackAddressesGetTheLargestMtu) {
  // 127.0.0.x belongs to lo (127.0.0.1/8), whose MTU is 65536 on Linux.
  EXPECT_EQ(interface_active_mtu(0x7F000005), IBV_MTU_4096);
}

TEST(DeviceWindow, SizedToTheGrantedReceiveBuffer) {
  Device dev;
  // No socket (rcvbuf unknown): UROCE_WINDOW as set (unset here: 128).
  EXPECT_EQ(dev.window_packets(4096), Config::get().window);
  // Debian's default net.core.rmem_max (212992) is granted doubled: 425984 bytes. A 4 KiB
  // packet costs 8512 bytes of it; three quarters of the buffer holds 37 of them.
  dev.rcvbuf_bytes = 425984;
  EXPECT_EQ(dev.window_packets(4096), 37u);
  // 1 KiB packets cost 2368 bytes: 134 would fit, the window stays at 128.
  EXPECT_EQ(dev.window_packets(1024), 128u);
  // A buffer too small for even one packet still lets one through.
  dev.rcvbuf_bytes = 4096;
  EXPECT_EQ(dev.window_packets(4096), 1u);
  // Root's 8 MiB (SO_RCVBUFFORCE, granted 16 MiB): the configured 128.
  dev.rcvbuf_bytes = 16 << 20;
  EXPECT_EQ(dev.window_packets(4096), 128u);
}

}  // namespace
}  // namespace uroce
