#include "core/prefix_weights.h"

#include <utility>

#include "core/error.h"

namespace pixelllm::core {

PrefixWeights::PrefixWeights(const SafeTensors& st, std::string prefix) : st_(st), prefix_(std::move(prefix)) {}

Tensor PrefixWeights::get(const std::string& name, const Shape& shape) {
  used_.insert(prefix_ + name);
  return st_.get(prefix_ + name, shape);
}

void PrefixWeights::finish() const {
  for (const std::string& n : st_.names())
    PIXELLLM_CHECK(n.compare(0, prefix_.size(), prefix_) != 0 || used_.count(n), ConfigMismatch,
                   st_.path() + ": unexpected tensor '" + n + "' (not part of the configured " + prefix_ + "*)");
}

}  // namespace pixelllm::core
