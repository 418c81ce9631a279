#include "runtime/tensorrt/plan_store.h"

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>

#include <NvInferRuntime.h>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "runtime/tensorrt/sha256.h"

namespace pixelllm::runtime::trt {

using core::ErrorCode;
using Json = nlohmann::json;
namespace fs = std::filesystem;

namespace {

constexpr const char* kFormat = "pixelllm-tensorrt-plans";

std::string read_all(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) return {};
  return std::string(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
}

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

Json read_manifest(const std::string& path) {
  const std::string text = read_all(path);
  if (text.empty()) return Json::object();
  Json j = Json::parse(text, nullptr, /*allow_exceptions=*/false);
  return j.is_object() ? j : Json::object();
}

std::string str(const Json& j, const char* key) {
  auto it = j.find(key);
  return it != j.end() && it->is_string() ? it->get<std::string>() : std::string();
}

}  // namespace

std::string sanitize_name(const std::string& s) {
  std::string out;
  for (char c : s) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
                    c == '-' || c == '_';
    out += ok ? c : '_';
  }
  return out.empty() ? "gpu" : out;
}

RuntimeIdentity runtime_identity(const DeviceInfo& device) {
  RuntimeIdentity id;
  id.gpu_name = device.name;
  id.compute_capability = std::to_string(device.major) + "." + std::to_string(device.minor);
  const int v = getInferLibVersion();   // major * 10000 + minor * 100 + patch
  id.tensorrt_version = std::to_string(v / 10000) + "." + std::to_string((v / 100) % 100) + "." + std::to_string(v % 100);
  return id;
}

PlanStore::PlanStore(const std::string& model_dir, RuntimeIdentity identity) : id_(std::move(identity)) {
  dir_ = model_dir + "/trt/" + sanitize_name(id_.gpu_name) + "-" + id_.tensorrt_version;
}

std::string PlanStore::load_or_build(const std::string& group, const std::string& onnx_path,
                                     const std::string& config_hash, const std::function<std::string()>& build,
                                     std::string* why) {
  std::lock_guard<std::mutex> lock(mu_);
  const std::string manifest_path = dir_ + "/manifest.json";
  const std::string plan_path = dir_ + "/" + group + ".plan";
  const std::string onnx_hash = sha256_file(onnx_path);
  Json manifest = read_manifest(manifest_path);
  std::string reason;
  if (str(manifest, "format") != kFormat) {
    reason = "no manifest";
  } else if (str(manifest, "tensorrt_version") != id_.tensorrt_version) {
    reason = "built with TensorRT " + str(manifest, "tensorrt_version") + ", running " + id_.tensorrt_version;
  } else if (str(manifest, "compute_capability") != id_.compute_capability || str(manifest, "gpu") != id_.gpu_name) {
    reason = "built for " + str(manifest, "gpu") + " (sm " + str(manifest, "compute_capability") + ")";
  } else {
    const Json plans = manifest.value("plans", Json::object());
    const Json entry = plans.is_object() && plans.contains(group) ? plans[group] : Json::object();
    if (!entry.is_object() || entry.empty()) {
      reason = "no plan for " + group;
    } else if (str(entry, "onnx_sha256") != onnx_hash) {
      reason = group + ".onnx changed";
    } else if (str(entry, "config_sha256") != config_hash) {
      reason = "build configuration changed";
    } else {
      const std::string bytes = read_all(plan_path);
      if (bytes.empty()) reason = group + ".plan missing";
      else if (sha256_hex(bytes) != str(entry, "plan_sha256")) reason = group + ".plan does not match its manifest";
      else return bytes;
    }
  }
  if (why) *why = reason;
  std::error_code ec;
  fs::create_directories(dir_, ec);
  if (ec) core::fail(ErrorCode::EngineMismatch, "tensorrt: plan for " + group + " must be rebuilt (" + reason +
                                                    ") but " + dir_ + " cannot be created: " + ec.message());
  const std::string bytes = build();
  write_atomic(plan_path, bytes);
  manifest["format"] = kFormat;
  manifest["version"] = 1;
  if (str(manifest, "tensorrt_version") != id_.tensorrt_version || str(manifest, "gpu") != id_.gpu_name ||
      str(manifest, "compute_capability") != id_.compute_capability)
    manifest["plans"] = Json::object();   // other plans of another identity are stale too
  manifest["tensorrt_version"] = id_.tensorrt_version;
  manifest["compute_capability"] = id_.compute_capability;
  manifest["gpu"] = id_.gpu_name;
  if (!manifest.contains("plans") || !manifest["plans"].is_object()) manifest["plans"] = Json::object();
  manifest["plans"][group] = {{"file", group + ".plan"}, {"onnx_sha256", onnx_hash},
                              {"config_sha256", config_hash}, {"plan_sha256", sha256_hex(bytes)}};
  write_atomic(manifest_path, manifest.dump(1) + "\n");
  return bytes;
}

void PlanStore::invalidate(const std::string& group) {
  std::lock_guard<std::mutex> lock(mu_);
  const std::string manifest_path = dir_ + "/manifest.json";
  Json manifest = read_manifest(manifest_path);
  if (manifest.contains("plans") && manifest["plans"].is_object() && manifest["plans"].contains(group)) {
    manifest["plans"].erase(group);
    write_atomic(manifest_path, manifest.dump(1) + "\n");
  }
}

}  // namespace pixelllm::runtime::trt
