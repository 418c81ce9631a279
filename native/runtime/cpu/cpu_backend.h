// The CPU backend: runtime::Backend (runtime/backend.h) over native/model, fp32, OpenBLAS + the thread pool.
//
//   image_encoder   normalise per branch (model/preprocess.h, valid rectangle from the padding mask) -> SAM ViT +
//                   EVA02 ViT -> feature fusion
//   prompt_adapter  SAM prompt encoder (box -> adapter prompt tokens) + prompt adapter (+ T5 projection)
//   text_decoder    runtime/cpu/cpu_decoder.h (git_decoder | t5 + point_head)
//   mask_decoder    prompt encoder box tokens -> mask adapter (visual tokens + text states) -> SAM mask decoder;
//                   with multimask_output the mask with the highest predicted IoU (official decode_mask)
//   proposal_head   none yet (dense captioning lands with the native proposal head)
// Threads: `threads` (0 = core::default_thread_count()) on the GEMM module's pool (cpu::blas_set_threads, which
// is process-wide), shared by the kernels and the products; one compute mutex serialises the component calls of
// concurrent requests (never held around a parallel_for of the pool itself: parallel_for takes the pool's own lock).
#pragma once

#include <memory>
#include <string>

#include "core/json.h"
#include "core/safetensors.h"
#include "cpu/packed_linear.h"
#include "runtime/backend.h"

namespace pixelllm::runtime::cpu {

// Builds every component from config.json (parsed) and the weights; MODEL_FORMAT / CONFIG_MISMATCH on a bad
// model. The backend keeps `weights` alive.
struct CpuBackendOptions {
  int threads = 0;  // worker threads (0 = hardware concurrency)
  // How the text decoder's and the image encoders' linear layers are packed (cpu/packed_linear.h WeightFormat):
  // decoder f32 or bf16 (weights only: half the bytes per decode step); encoders f32 or bf16_dot (bfloat16
  // compute; BACKEND_UNAVAILABLE without AVX512-BF16).
  pixelllm::cpu::WeightFormat decoder_weights = pixelllm::cpu::WeightFormat::f32;
  pixelllm::cpu::WeightFormat encoder_weights = pixelllm::cpu::WeightFormat::f32;
};
std::unique_ptr<Backend> create_cpu_backend(const core::Json& config, std::shared_ptr<core::SafeTensors> weights,
                                            const CpuBackendOptions& options);

// The worker threads the backend created by create_cpu_backend uses (for ModelInfo.threads).
int cpu_backend_threads(const Backend& backend);

}  // namespace pixelllm::runtime::cpu
