// libFuzzer harness: COCO RLE (native/pipeline/masks.cc).
// Properties:
//   * mask -> rle_encode -> rle_decode gives the mask back (binarised), the counts sum to width * height and
//     rle_area equals the number of foreground pixels;
//   * counts -> rle_to_string -> rle_from_string gives the counts back;
//   * rle_from_string on arbitrary text only throws core::Error, and whatever it accepts survives
//     rle_to_string -> rle_from_string unchanged;
//   * rle_decode on arbitrary counts only throws core::Error.
#include <cstdint>
#include <cstring>
#include <numeric>
#include <string>
#include <vector>

#include "fuzz_util.h"
#include "pipeline/masks.h"

namespace pp = pixelllm::pipeline;
using pixelllm::fuzz::finding;
using pixelllm::fuzz::only_core_errors;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 3) return 0;
  const uint8_t mode = data[0] % 3;
  data += 1;
  size -= 1;
  if (mode == 0) {  // a mask: width from the first byte, the rest is pixels
    const int width = 1 + data[0] % 64;
    const size_t pixels = size - 1;
    const int height = int(pixels / size_t(width));
    std::vector<uint8_t> mask(data + 1, data + 1 + size_t(width) * size_t(height));
    const auto counts = pp::rle_encode(mask.data(), width, height);
    const uint64_t total = std::accumulate(counts.begin(), counts.end(), uint64_t(0));
    if (total != uint64_t(width) * uint64_t(height)) finding("rle_encode counts do not sum to width*height");
    uint64_t fg = 0;
    for (uint8_t v : mask) fg += v != 0;
    if (pp::rle_area(counts) != fg) finding("rle_area != foreground pixels");
    std::vector<uint8_t> back;
    only_core_errors("rle_decode(encode)", [&] { back = pp::rle_decode(counts, width, height); });
    for (size_t i = 0; i < mask.size(); ++i)
      if ((mask[i] != 0) != (back[i] != 0)) finding("rle_decode(rle_encode(mask)) != mask");
    std::vector<uint32_t> again;
    only_core_errors("rle_from_string(to_string)", [&] { again = pp::rle_from_string(pp::rle_to_string(counts)); });
    if (again != counts) finding("rle_from_string(rle_to_string(counts)) != counts");
  } else if (mode == 1) {  // an RLE string
    const std::string s(reinterpret_cast<const char*>(data), size);
    std::vector<uint32_t> counts;
    if (only_core_errors("rle_from_string", [&] { counts = pp::rle_from_string(s); })) {
      std::vector<uint32_t> again;
      only_core_errors("rle_from_string(to_string)", [&] { again = pp::rle_from_string(pp::rle_to_string(counts)); });
      if (again != counts) finding("accepted string does not round-trip");
      const uint64_t total = std::accumulate(counts.begin(), counts.end(), uint64_t(0));
      if (total <= 4096) {  // decode as a single column of `total` pixels
        std::vector<uint8_t> m;
        only_core_errors("rle_decode(column)", [&] { m = pp::rle_decode(counts, 1, int(total)); });
        std::vector<uint8_t> m2;
        only_core_errors("rle_decode(encode)", [&] { m2 = pp::rle_decode(pp::rle_encode(m.data(), 1, int(total)), 1, int(total)); });
        if (m2 != m) finding("decode(encode(decode(s))) != decode(s)");
      }
    }
  } else {  // raw counts + a size
    const int width = data[0] % 32, height = data[1] % 32;
    std::vector<uint32_t> counts;
    for (size_t i = 2; i + 1 < size; i += 2) counts.push_back(uint32_t(data[i]) | (uint32_t(data[i + 1] & 3) << 8));
    std::vector<uint8_t> m;
    if (only_core_errors("rle_decode", [&] { m = pp::rle_decode(counts, width, height); })) {
      if (m.size() != size_t(width) * size_t(height)) finding("rle_decode size");
      std::vector<uint32_t> again;
      only_core_errors("rle_decode(to_string)", [&] { again = pp::rle_from_string(pp::rle_to_string(counts)); });
      if (again != counts) finding("decodable counts do not round-trip through the string form");
    }
  }
  return 0;
}
