// Matrix-vector product on an unpacked weight (one-row cpu::linear: the point head, single rows elsewhere; the text
// decoders use packed weights, packed_linear.h): y (out) += W (out, in) @ x (in), W row-major (torch layout).
// Memory-bound: it streams W once, row after row (the order it lies in memory), so one thread reads the weight
// at the machine's streaming-read bandwidth (~31 GB/s on the CI VM, bench `roofline`) where OpenBLAS 0.3.21's
// sgemv (rows of 768 floats) reached ~15 GB/s. Compiled for AVX-512, AVX2 and the baseline (ifunc, see simd.h).
#pragma once

#include <cstdint>

namespace pixelllm::cpu {

void gemv_accumulate(const float* w, int64_t in, int64_t out, const float* x, float* y);

}  // namespace pixelllm::cpu
