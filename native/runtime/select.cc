#include "runtime/select.h"

#include <filesystem>
#include <system_error>

#include "core/error.h"
#include "core/safetensors.h"
#include "runtime/cpu/cpu_backend.h"
#include "runtime/plan_manifest.h"

namespace pixelllm::runtime {

namespace {

bool has_onnx(const std::string& dir) {
  std::error_code ec;
  const std::filesystem::path onnx = std::filesystem::path(dir) / "onnx";
  if (!std::filesystem::is_directory(onnx, ec)) return false;
  for (const auto& e : std::filesystem::directory_iterator(onnx, ec))
    if (e.path().extension() == ".onnx") return true;
  return false;
}

}  // namespace

std::string resolve_backend(const std::string& requested, const std::string& dir) {
  if (requested == "cpu") return "cpu";  // never probes the GPU
  if (requested != "auto" && requested != "tensorrt") return choose_backend(requested, {}, false);  // throws
  return choose_backend(requested, probe_tensorrt(), has_onnx(dir));
}

SelectedBackend create_backend(const BackendRequest& request, const core::Json& config) {
  SelectedBackend out;
  cpu::CpuBackendOptions cpu_options;
  cpu_options.threads = request.threads;
  cpu_options.decoder_weights = pixelllm::cpu::weight_format(request.decoder_weights);
  PIXELLLM_CHECK(request.encoder_precision == "fp32" || request.encoder_precision == "bf16", InvalidArgument,
                 "encoder precision '" + request.encoder_precision + "' (expected 'fp32' or 'bf16')");
  if (request.encoder_precision == "bf16") cpu_options.encoder_weights = pixelllm::cpu::WeightFormat::bf16_dot;
  const std::string which = resolve_backend(request.backend, request.dir);
  if (which == "tensorrt") {
    // decoder profiles sized by the model's caption length (the same options `pixelllm build-engines` uses)
    out.backend = create_tensorrt_backend(request.dir, tensorrt_options_for(config));
    return out;
  }
  const std::string weights = (std::filesystem::path(request.dir) / "model.safetensors").string();
  out.backend = cpu::create_cpu_backend(config, core::SafeTensors::open(weights), cpu_options);
  out.threads = cpu::cpu_backend_threads(*out.backend);
  return out;
}

}  // namespace pixelllm::runtime
