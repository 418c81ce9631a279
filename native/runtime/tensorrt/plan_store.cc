#include "runtime/tensorrt/plan_store.h"

#include <chrono>
#include <filesystem>
#include <fstream>

#include <NvInferRuntime.h>

#include "core/error.h"
#include "runtime/sha256.h"

namespace pixelllm::runtime::trt {

using core::ErrorCode;
namespace fs = std::filesystem;

namespace {

void write_atomic(const std::string& path, const std::string& bytes) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
    f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    if (!f) core::fail(ErrorCode::EngineMismatch, "tensorrt: cannot write " + tmp + " (is the model directory writable?)");
  }
  std::error_code ec;
  fs::rename(tmp, path, ec);
  if (ec) core::fail(ErrorCode::EngineMismatch, "tensorrt: cannot write " + path + ": " + ec.message());
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

PlanIdentity runtime_identity(const DeviceInfo& device) {
  PlanIdentity id;
  id.gpu_name = device.name;
  id.compute_capability = std::to_string(device.major) + "." + std::to_string(device.minor);
  const int v = getInferLibVersion();   // major * 10000 + minor * 100 + patch
  id.tensorrt_version = std::to_string(v / 10000) + "." + std::to_string((v / 100) % 100) + "." + std::to_string(v % 100);
  return id;
}

PlanStore::PlanStore(const std::string& model_dir, PlanIdentity identity) : id_(std::move(identity)) {
  dir_ = model_dir + "/trt/" + plan_dir_name(id_);
}

std::string PlanStore::load_or_build(const std::string& group, const std::string& onnx_path,
                                     const std::string& config_hash, const std::function<std::string()>& build,
                                     PlanOutcome* outcome) {
  std::lock_guard<std::mutex> lock(mu_);
  const auto t0 = std::chrono::steady_clock::now();
  const std::string onnx_name = fs::path(onnx_path).filename().string();
  const std::string key = plan_key(onnx_name);
  const std::string manifest_path = dir_ + "/manifest.json";
  const std::string plan_path = dir_ + "/" + key + ".plan";
  const std::string onnx_hash = sha256_file(onnx_path);
  PlanOutcome out;
  out.key = key;
  out.group = group;
  out.precision = plan_precision(key);

  PlanManifest manifest;
  std::string error;
  const bool have_manifest = read_plan_manifest(manifest_path, &manifest, &error);
  std::string bytes;
  if (have_manifest) {
    auto it = manifest.plans.find(key);
    const PlanVerdict v = decide_plan(manifest.identity, it == manifest.plans.end() ? nullptr : &it->second, id_,
                                      onnx_hash, config_hash, plan_path, &bytes);
    if (v.reusable) {
      out.seconds = seconds_since(t0);
      out.plan_bytes = bytes.size();
      if (outcome) *outcome = out;
      return bytes;
    }
    out.reason = v.reason;
  } else {
    out.reason = error;
  }
  // Another identity's plans in this folder (a renamed folder, a copied manifest) are all stale.
  if (!have_manifest || !identity_mismatch(manifest.identity, id_).empty()) manifest = PlanManifest();
  manifest.identity = id_;

  std::error_code ec;
  fs::create_directories(dir_, ec);
  if (ec) core::fail(ErrorCode::EngineMismatch, "tensorrt: plan " + key + " must be rebuilt (" + out.reason + ") but " +
                                                    dir_ + " cannot be created: " + ec.message());
  bytes = build();
  if (bytes.empty() || bytes.size() > kMaxPlanBytes)
    core::fail(ErrorCode::EngineMismatch, "tensorrt: the build of " + key + " returned " + std::to_string(bytes.size()) +
                                              " bytes");
  write_atomic(plan_path, bytes);
  PlanRecord& r = manifest.plans[key];
  r.group = group;
  r.precision = out.precision;
  r.onnx = onnx_name;
  r.onnx_sha256 = onnx_hash;
  r.config_sha256 = config_hash;
  r.plan_sha256 = sha256_hex(bytes);
  r.plan_bytes = bytes.size();
  r.build_seconds = seconds_since(t0);
  write_atomic(manifest_path, serialize_plan_manifest(manifest));
  out.built = true;
  out.seconds = r.build_seconds;
  out.plan_bytes = r.plan_bytes;
  if (outcome) *outcome = out;
  return bytes;
}

void PlanStore::invalidate(const std::string& key) {
  std::lock_guard<std::mutex> lock(mu_);
  const std::string manifest_path = dir_ + "/manifest.json";
  PlanManifest manifest;
  std::string error;
  if (!read_plan_manifest(manifest_path, &manifest, &error)) return;
  if (manifest.plans.erase(key) > 0) write_atomic(manifest_path, serialize_plan_manifest(manifest));
}

}  // namespace pixelllm::runtime::trt
