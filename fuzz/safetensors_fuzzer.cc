// libFuzzer harness: arbitrary bytes as a .safetensors file (native/core/safetensors.cc).
// Property: SafeTensors::open either throws core::Error or returns a reader whose every tensor lies inside the
// data section, has a byte span equal to numel * itemsize, overlaps no other non-empty tensor, and can be read
// (get(), and view() for aligned F32 data) without touching memory outside the mapping (ASan checks that).
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "core/safetensors.h"
#include "fuzz_util.h"

using pixelllm::core::SafeTensors;
using pixelllm::core::TensorInfo;
using pixelllm::fuzz::finding;

namespace {

// One memfd reused for every input: the reader opens it by its /proc path, like any file.
int memfd() {
  static int fd = [] {
    int f = memfd_create("safetensors-fuzz", MFD_CLOEXEC);
    if (f < 0) finding("memfd_create failed");
    return f;
  }();
  return fd;
}

void check(const SafeTensors& st, uint64_t file_size) {
  std::vector<TensorInfo> infos;
  for (const auto& name : st.names()) infos.push_back(st.info(name));
  for (const auto& t : infos) {
    if (t.begin > t.end || t.end > file_size) finding("tensor '" + t.name + "' outside the file");
    const uint64_t itemsize = pixelllm::core::dtype_size(t.dtype);
    if (t.end - t.begin != uint64_t(t.numel) * itemsize) finding("tensor '" + t.name + "' span != numel * itemsize");
    int64_t n = 1;
    for (int64_t d : t.shape) n *= d;
    if (n != t.numel) finding("tensor '" + t.name + "' numel disagrees with its shape");
  }
  for (size_t i = 0; i < infos.size(); ++i)
    for (size_t j = i + 1; j < infos.size() && j < 64; ++j) {
      const auto &a = infos[i], &b = infos[j];
      if (a.begin == a.end || b.begin == b.end) continue;
      if (a.begin < b.end && b.begin < a.end) finding("tensors '" + a.name + "' and '" + b.name + "' overlap");
    }
  for (const auto& t : infos) {
    if (t.numel > (1 << 16)) continue;  // keep each input cheap
    pixelllm::fuzz::only_core_errors("get", [&] { (void)st.get(t.name); });
    pixelllm::fuzz::only_core_errors("view", [&] { (void)st.view(t.name, t.shape); });
    pixelllm::fuzz::only_core_errors("get(shape)", [&] { (void)st.get(t.name, {t.numel + 1}); });
  }
  pixelllm::fuzz::only_core_errors("missing", [&] { (void)st.info("\x01 no such tensor"); });
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const int fd = memfd();
  if (ftruncate(fd, 0) != 0 || pwrite(fd, data, size, 0) != ssize_t(size)) finding("memfd write failed");
  const std::string path = "/proc/self/fd/" + std::to_string(fd);
  pixelllm::fuzz::only_core_errors("SafeTensors::open", [&] {
    auto st = SafeTensors::open(path);
    check(*st, size);
  });
  return 0;
}
