// The TensorRT plan manifest and the decision "load this plan or rebuild it", without TensorRT: compiled into the
// CPU library so that a build without TensorRT can still inspect plans (pixelllm build-engines --check) and the
// rules are unit-tested here (native/tests/test_plan_manifest.cc). runtime/tensorrt/plan_store uses it.
//
// Layout: model_dir/trt/<gpu-name>-<tensorrt-version>/manifest.json + <key>.plan, where <key> is the stem of the
// ONNX file the plan was built from ("decoder_step" for onnx/decoder_step.onnx, "decoder_step.fp16" for the fp16
// export). manifest.json:
//   {"format": "pixelllm-tensorrt-plans", "version": 1, "gpu": "NVIDIA H100 80GB HBM3", "compute_capability": "9.0",
//    "tensorrt_version": "10.16.1",
//    "plans": {"<key>": {"group": "decoder_step", "precision": "fp16", "onnx": "decoder_step.fp16.onnx",
//                        "onnx_sha256": ..., "config_sha256": ..., "plan_sha256": ..., "plan_bytes": N,
//                        "build_seconds": S}}}
// A plan is reusable only when the recorded GPU name, compute capability and TensorRT version equal the running
// ones and the ONNX, build configuration and plan file hash to the recorded values (and the plan has the recorded
// size). Everything else is stale, with the first failing check as the reason. Malformed manifests never throw
// out of here: they are reported as "manifest.json: <what is wrong>".
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "core/json.h"
#include "runtime/backend.h"

namespace pixelllm::runtime {

inline constexpr const char* kPlanManifestFormat = "pixelllm-tensorrt-plans";
inline constexpr size_t kMaxPlanManifestBytes = size_t(1) << 20;     // a manifest is a few KB
inline constexpr uint64_t kMaxPlanBytes = uint64_t(1) << 36;          // 64 GiB: larger recorded sizes are absurd

// The GPU and TensorRT library a plan is built for / would run on. Empty fields = unknown (a build without
// TensorRT has no running identity).
struct PlanIdentity {
  std::string gpu_name;             // "NVIDIA H100 80GB HBM3"
  std::string compute_capability;   // "9.0"
  std::string tensorrt_version;     // "10.16.1"
  bool known() const noexcept { return !gpu_name.empty() && !compute_capability.empty() && !tensorrt_version.empty(); }
};

struct PlanRecord {
  std::string group;          // image_encoder, decoder_step, ...
  std::string precision;      // "fp32" | "fp16" (from the ONNX file name)
  std::string onnx;           // file name under model_dir/onnx/
  std::string onnx_sha256;
  std::string config_sha256;
  std::string plan_sha256;
  uint64_t plan_bytes = 0;
  double build_seconds = 0;
};

struct PlanManifest {
  PlanIdentity identity;
  std::map<std::string, PlanRecord> plans;   // by key (the ONNX stem)
};

struct PlanVerdict {
  bool reusable = false;
  std::string reason;   // empty when reusable
};

// "<gpu>-<version>" with every character outside [A-Za-z0-9._-] replaced by '_': the plan folder under trt/.
std::string plan_dir_name(const PlanIdentity& id);
std::string sanitize_plan_name(const std::string& s);
// "decoder_step.fp16.onnx" -> key "decoder_step.fp16", group "decoder_step", precision "fp16".
std::string plan_key(const std::string& onnx_file_name);
std::string plan_group(const std::string& key);
std::string plan_precision(const std::string& key);

// Parses manifest text. Never throws: false with `error` for invalid JSON, a wrong format tag, missing or mistyped
// fields, overlong text / strings or absurd sizes.
bool parse_plan_manifest(const std::string& text, PlanManifest* out, std::string* error) noexcept;
std::string serialize_plan_manifest(const PlanManifest& manifest);
// Reads model_dir/trt/<dir>/manifest.json; false with `error` ("no manifest.json", or why it is invalid).
bool read_plan_manifest(const std::string& path, PlanManifest* out, std::string* error) noexcept;

// Empty when `built` equals `running`, else the reason (another GPU, compute capability or TensorRT version, or
// an unknown running identity: a build without TensorRT).
std::string identity_mismatch(const PlanIdentity& built, const PlanIdentity& running);

// The decision for one plan. `record` null = the manifest has no entry for the key. `onnx_sha256` /
// `config_sha256` are those of the files and options the plan would be built from now. Reads the plan file at
// `plan_path` only when every recorded fact matches (size first, then SHA-256); `plan_bytes` (optional) receives
// its content when reusable. Never throws for missing or unreadable files (they are reasons).
PlanVerdict decide_plan(const PlanIdentity& built, const PlanRecord* record, const PlanIdentity& running,
                        const std::string& onnx_sha256, const std::string& config_sha256, const std::string& plan_path,
                        std::string* plan_bytes = nullptr);

// SHA-256 of what a plan's build depends on besides its ONNX: config.json's text, the ONNX file name (not its
// directory: a copied model directory keeps its plans) and every option that shapes the engine (optimization
// level, workspace, profile limits).
std::string plan_config_hash(const std::string& config_text, const std::string& group, const std::string& onnx_file_name,
                             const TensorRtOptions& options);

// The TensorRT options a model directory is loaded / built with: defaults, decoder limits from config.json's
// max_caption_length / max_context_length (runtime/select.cc uses the same), prefer_fp16 as given.
// MODEL_FORMAT / LIMIT_EXCEEDED for a bad max_caption_length.
TensorRtOptions tensorrt_options_for(const core::Json& config, bool prefer_fp16 = true);

// The ONNX file of `group` under model_dir/onnx/ the backend would build from ("" when none): <group>.fp16.onnx
// when prefer_fp16 and it exists, else <group>.onnx.
std::string plan_onnx_file(const std::string& model_dir, const std::string& group, bool prefer_fp16);

// The groups a TensorRT backend builds, in build order (those without an ONNX export are skipped by callers).
const std::vector<std::string>& plan_groups();

// One row of `pixelllm build-engines --check`: every plan recorded under model_dir/trt/*/ checked against
// `target` (the running identity; unknown in a build without TensorRT) and the current files.
struct PlanReport {
  std::string dir;          // "trt/<gpu>-<version>"
  std::string key, group, precision;
  PlanIdentity built;
  bool reusable = false;
  std::string reason;
  uint64_t plan_bytes = 0;   // recorded size
  std::string expected_onnx_sha256, expected_config_sha256;   // of the current files ("" when there is no ONNX)
};

// Every trt/<dir>/ of model_dir (a folder without a usable manifest gives one row with an empty key and the
// reason). Throws MODEL_NOT_FOUND when model_dir/config.json is missing.
std::vector<PlanReport> inspect_plans(const std::string& model_dir, const PlanIdentity& target);

}  // namespace pixelllm::runtime
