// Choosing and creating the backend of a model directory: the ONE place the backend is chosen.
//
//   "cpu"       -> the CPU backend (runtime/cpu)
//   "tensorrt"  -> the TensorRT backend; BACKEND_UNAVAILABLE (with the probe's reason) when this build has no
//                  TensorRT, no usable GPU, or the model directory has no onnx/ graphs to build engines from
//   "auto"      -> "tensorrt" only when it is built, a GPU is usable and the model has onnx/ graphs; else "cpu"
//   anything else -> BACKEND_UNAVAILABLE
// (runtime::choose_backend in backend.h holds the rule; this file applies it and builds the backend.)
#pragma once

#include <memory>
#include <string>

#include "core/json.h"
#include "runtime/backend.h"

namespace pixelllm::runtime {

struct BackendRequest {
  std::string dir;           // model directory (config.json, model.safetensors, onnx/ for TensorRT)
  std::string backend = "auto";
  int threads = 0;           // CPU worker threads (0 = default)
  std::string decoder_weights = "fp32";    // CPU backend: "fp32" | "bf16" text-decoder weights (cpu/packed_linear.h);
  std::string encoder_precision = "fp32";  // "fp32" | "bf16" image-encoder compute; TensorRT engines fix their
                                           // precision when they are built (both are ignored there)
};

struct SelectedBackend {
  std::unique_ptr<Backend> backend;
  int threads = 0;           // CPU threads in use (0 for TensorRT)
};

// Which backend `requested` resolves to for `dir` (no loading). Throws BACKEND_UNAVAILABLE as above.
std::string resolve_backend(const std::string& requested, const std::string& dir);

// Resolves and creates the backend. `config` is the parsed config.json of request.dir. Throws
// BACKEND_UNAVAILABLE, MODEL_NOT_FOUND (no model.safetensors), MODEL_FORMAT, CONFIG_MISMATCH, ENGINE_MISMATCH.
SelectedBackend create_backend(const BackendRequest& request, const core::Json& config);

}  // namespace pixelllm::runtime
