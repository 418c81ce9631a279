// Checked loading of one component's tensors from a .safetensors file: every name is "<prefix><name>"
// (prefix = the component name plus ".", e.g. "mask_decoder."), shapes are checked, and finish() proves the
// config and the weights agree on the component's full parameter set.
#pragma once

#include <set>
#include <string>

#include "core/safetensors.h"
#include "core/tensor.h"

namespace pixelllm::core {

// Loads "<prefix><name>" tensors with checked shapes (CONFIG_MISMATCH on a different shape, MODEL_FORMAT when
// missing) and remembers them; finish() refuses any tensor under the prefix nothing loaded (CONFIG_MISMATCH),
// e.g. an extra layer the config does not declare. Holds a reference: `st` must outlive it.
class PrefixWeights {
 public:
  PrefixWeights(const SafeTensors& st, std::string prefix);
  Tensor get(const std::string& name, const Shape& shape);
  bool has(const std::string& name) const { return st_.has(prefix_ + name); }
  void finish() const;
  const std::string& prefix() const noexcept { return prefix_; }

 private:
  const SafeTensors& st_;
  std::string prefix_;
  std::set<std::string> used_;
};

}  // namespace pixelllm::core
