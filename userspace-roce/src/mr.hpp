// Protection domains and memory regions: what a key names, and whose it is.
#pragma once

#include <infiniband/verbs.h>

#include <cstdint>

namespace uroce {

struct Pd {
  ibv_pd ibv{};
  int refs = 0;  ///< MRs and QPs in this PD (guarded by Device::mu)
};

struct Mr {
  ibv_mr ibv{};
  Pd* pd = nullptr;
  int access = 0;
  uint64_t iova = 0;  ///< the address keys are checked against (== addr unless reg_mr_iova)
};

}  // namespace uroce
