#include "runtime/plan_manifest.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <system_error>

#include "core/error.h"
#include "core/json.h"
#include "runtime/sha256.h"

namespace pixelllm::runtime {

using core::ErrorCode;
using core::Json;
namespace fs = std::filesystem;

namespace {

constexpr size_t kMaxField = 512;          // longest string field (GPU names are ~30 characters)
constexpr size_t kMaxPlans = 64;           // a model has 7 groups x 2 precisions

// Reads at most `limit` bytes; false when the file cannot be opened or is larger.
bool read_capped(const std::string& path, size_t limit, std::string* out, std::string* error) {
  std::error_code ec;
  const auto size = fs::file_size(path, ec);
  if (ec) {
    *error = "cannot read " + fs::path(path).filename().string();
    return false;
  }
  if (size > limit) {
    *error = fs::path(path).filename().string() + " is " + std::to_string(size) + " bytes (more than " +
             std::to_string(limit) + ")";
    return false;
  }
  std::ifstream f(path, std::ios::binary);
  if (!f) {
    *error = "cannot read " + fs::path(path).filename().string();
    return false;
  }
  out->assign(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
  return true;
}

// A string field of at most kMaxField characters; false with `error` otherwise.
bool get_string(const Json& j, const char* key, bool required, std::string* out, std::string* error) {
  auto it = j.find(key);
  if (it == j.end()) {
    if (!required) return true;
    *error = std::string("missing \"") + key + "\"";
    return false;
  }
  if (!it->is_string()) {
    *error = std::string("\"") + key + "\" is not a string";
    return false;
  }
  const auto& s = it->get_ref<const std::string&>();
  if (s.size() > kMaxField) {
    *error = std::string("\"") + key + "\" is longer than " + std::to_string(kMaxField) + " characters";
    return false;
  }
  *out = s;
  return true;
}

bool is_hex64(const std::string& s) {
  if (s.size() != 64) return false;
  for (char c : s)
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  return true;
}

bool parse_record(const std::string& key, const Json& j, PlanRecord* r, std::string* error) {
  const std::string where = "plans." + key + ": ";
  std::string e;
  if (!j.is_object()) {
    *error = where + "not an object";
    return false;
  }
  if (!get_string(j, "onnx", true, &r->onnx, &e) || !get_string(j, "onnx_sha256", true, &r->onnx_sha256, &e) ||
      !get_string(j, "config_sha256", true, &r->config_sha256, &e) ||
      !get_string(j, "plan_sha256", true, &r->plan_sha256, &e) || !get_string(j, "group", false, &r->group, &e) ||
      !get_string(j, "precision", false, &r->precision, &e)) {
    *error = where + e;
    return false;
  }
  for (const std::string* h : {&r->onnx_sha256, &r->config_sha256, &r->plan_sha256})
    if (!is_hex64(*h)) {
      *error = where + "a SHA-256 field is not 64 lowercase hex digits";
      return false;
    }
  if (r->onnx.empty() || r->onnx.find('/') != std::string::npos || r->onnx.find('\\') != std::string::npos ||
      r->onnx == "." || r->onnx == "..") {
    *error = where + "\"onnx\" must be a plain file name";
    return false;
  }
  auto b = j.find("plan_bytes");
  if (b == j.end() || !b->is_number_unsigned() || b->get<uint64_t>() == 0 || b->get<uint64_t>() > kMaxPlanBytes) {
    *error = where + "\"plan_bytes\" must be an integer in 1.." + std::to_string(kMaxPlanBytes);
    return false;
  }
  r->plan_bytes = b->get<uint64_t>();
  auto s = j.find("build_seconds");
  if (s != j.end()) {
    if (!s->is_number() || !std::isfinite(s->get<double>()) || s->get<double>() < 0 || s->get<double>() > 1e7) {
      *error = where + "\"build_seconds\" must be a number in 0..1e7";
      return false;
    }
    r->build_seconds = s->get<double>();
  }
  if (r->group.empty()) r->group = plan_group(key);
  if (r->precision.empty()) r->precision = plan_precision(key);
  if (plan_key(r->onnx) != key) {
    *error = where + "built from " + r->onnx + ", which is not the ONNX of this key";
    return false;
  }
  return true;
}

}  // namespace

std::string sanitize_plan_name(const std::string& s) {
  std::string out;
  for (char c : s) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
                    c == '-' || c == '_';
    out += ok ? c : '_';
  }
  return out.empty() ? "gpu" : out;
}

std::string plan_dir_name(const PlanIdentity& id) {
  return sanitize_plan_name(id.gpu_name) + "-" + sanitize_plan_name(id.tensorrt_version);
}

std::string plan_key(const std::string& onnx_file_name) {
  const std::string ext = ".onnx";
  if (onnx_file_name.size() > ext.size() &&
      onnx_file_name.compare(onnx_file_name.size() - ext.size(), ext.size(), ext) == 0)
    return onnx_file_name.substr(0, onnx_file_name.size() - ext.size());
  return onnx_file_name;
}

std::string plan_group(const std::string& key) {
  const std::string fp16 = ".fp16";
  if (key.size() > fp16.size() && key.compare(key.size() - fp16.size(), fp16.size(), fp16) == 0)
    return key.substr(0, key.size() - fp16.size());
  return key;
}

std::string plan_precision(const std::string& key) { return plan_group(key) == key ? "fp32" : "fp16"; }

bool parse_plan_manifest(const std::string& text, PlanManifest* out, std::string* error) noexcept {
  try {
    *out = PlanManifest();   // nothing half-parsed is left in *out: fields go to `m`, which is moved at the end
    PlanManifest m;
    if (text.size() > kMaxPlanManifestBytes) {
      *error = "more than " + std::to_string(kMaxPlanManifestBytes) + " bytes";
      return false;
    }
    const Json j = Json::parse(text, nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded()) {
      *error = "not valid JSON";
      return false;
    }
    if (!j.is_object()) {
      *error = "not a JSON object";
      return false;
    }
    std::string format, e;
    if (!get_string(j, "format", true, &format, &e) || format != kPlanManifestFormat) {
      *error = e.empty() ? "\"format\" is not \"" + std::string(kPlanManifestFormat) + "\"" : e;
      return false;
    }
    auto v = j.find("version");
    if (v == j.end() || !v->is_number_integer() || v->get<int64_t>() != 1) {
      *error = "unsupported \"version\" (this build reads version 1)";
      return false;
    }
    if (!get_string(j, "gpu", true, &m.identity.gpu_name, &e) ||
        !get_string(j, "compute_capability", true, &m.identity.compute_capability, &e) ||
        !get_string(j, "tensorrt_version", true, &m.identity.tensorrt_version, &e)) {
      *error = e;
      return false;
    }
    if (!m.identity.known()) {
      *error = "empty gpu / compute_capability / tensorrt_version";
      return false;
    }
    auto plans = j.find("plans");
    if (plans == j.end() || !plans->is_object()) {
      *error = "\"plans\" is not an object";
      return false;
    }
    if (plans->size() > kMaxPlans) {
      *error = "more than " + std::to_string(kMaxPlans) + " plans";
      return false;
    }
    for (auto it = plans->begin(); it != plans->end(); ++it) {
      if (it.key().empty() || it.key().size() > kMaxField || sanitize_plan_name(it.key()) != it.key()) {
        *error = "plan key is not a plain name";
        return false;
      }
      PlanRecord r;
      if (!parse_record(it.key(), it.value(), &r, error)) return false;
      m.plans.emplace(it.key(), std::move(r));
    }
    *out = std::move(m);
    return true;
  } catch (const std::exception& ex) {   // allocation failure or a nlohmann type error we did not foresee
    *error = std::string("unreadable: ") + ex.what();
    return false;
  }
}

std::string serialize_plan_manifest(const PlanManifest& m) {
  Json plans = Json::object();
  for (const auto& [key, r] : m.plans)
    plans[key] = {{"group", r.group},
                  {"precision", r.precision},
                  {"onnx", r.onnx},
                  {"onnx_sha256", r.onnx_sha256},
                  {"config_sha256", r.config_sha256},
                  {"plan_sha256", r.plan_sha256},
                  {"plan_bytes", r.plan_bytes},
                  {"build_seconds", r.build_seconds}};
  const Json j = {{"format", kPlanManifestFormat},
                  {"version", 1},
                  {"gpu", m.identity.gpu_name},
                  {"compute_capability", m.identity.compute_capability},
                  {"tensorrt_version", m.identity.tensorrt_version},
                  {"plans", plans}};
  return j.dump(1) + "\n";
}

bool read_plan_manifest(const std::string& path, PlanManifest* out, std::string* error) noexcept {
  try {
    std::error_code ec;
    if (!fs::exists(path, ec)) {
      *error = "no manifest.json";
      return false;
    }
    std::string text, e;
    if (!read_capped(path, kMaxPlanManifestBytes, &text, &e)) {
      *error = "manifest.json: " + e;
      return false;
    }
    if (!parse_plan_manifest(text, out, &e)) {
      *error = "manifest.json: " + e;
      return false;
    }
    return true;
  } catch (const std::exception& ex) {
    *error = std::string("manifest.json: ") + ex.what();
    return false;
  }
}

std::string identity_mismatch(const PlanIdentity& built, const PlanIdentity& running) {
  const std::string what = "GPU '" + built.gpu_name + "' (sm " + built.compute_capability + ") with TensorRT " +
                           built.tensorrt_version;
  if (!running.known()) return "built for " + what + "; this build has no TensorRT backend to run it";
  if (built.tensorrt_version != running.tensorrt_version)
    return "built with TensorRT " + built.tensorrt_version + ", running TensorRT " + running.tensorrt_version;
  if (built.compute_capability != running.compute_capability)
    return "built for compute capability " + built.compute_capability + ", running " + running.compute_capability +
           " ('" + running.gpu_name + "')";
  if (built.gpu_name != running.gpu_name)
    return "built for GPU '" + built.gpu_name + "', running '" + running.gpu_name + "'";
  return {};
}

PlanVerdict decide_plan(const PlanIdentity& built, const PlanRecord* record, const PlanIdentity& running,
                        const std::string& onnx_sha256, const std::string& config_sha256, const std::string& plan_path,
                        std::string* plan_bytes) {
  PlanVerdict v;
  v.reason = identity_mismatch(built, running);
  if (!v.reason.empty()) return v;
  if (record == nullptr) {
    v.reason = "no plan recorded in the manifest";
    return v;
  }
  if (onnx_sha256.empty()) {
    v.reason = "onnx/" + record->onnx + " is missing";
    return v;
  }
  if (record->onnx_sha256 != onnx_sha256) {
    v.reason = "onnx/" + record->onnx + " changed since the plan was built";
    return v;
  }
  if (record->config_sha256 != config_sha256) {
    v.reason = "build configuration changed (config.json or profile limits)";
    return v;
  }
  const std::string name = fs::path(plan_path).filename().string();
  std::error_code ec;
  const auto size = fs::file_size(plan_path, ec);
  if (ec) {
    v.reason = name + " is missing";
    return v;
  }
  if (size != record->plan_bytes) {
    v.reason = name + " is " + std::to_string(size) + " bytes, the manifest says " +
               std::to_string(record->plan_bytes) + (size < record->plan_bytes ? " (truncated)" : "");
    return v;
  }
  std::string bytes, e;
  if (!read_capped(plan_path, static_cast<size_t>(record->plan_bytes), &bytes, &e) || bytes.size() != size) {
    v.reason = e.empty() ? name + " could not be read completely" : e;
    return v;
  }
  if (sha256_hex(bytes) != record->plan_sha256) {
    v.reason = name + " does not match its SHA-256 in the manifest (changed or corrupt)";
    return v;
  }
  v.reusable = true;
  if (plan_bytes) *plan_bytes = std::move(bytes);
  return v;
}

std::string plan_config_hash(const std::string& config_text, const std::string& group, const std::string& onnx_file_name,
                             const TensorRtOptions& o) {
  const DecoderLimits& l = o.decoder;
  const std::string text = config_text + "\n" + group + " " + onnx_file_name + " opt=" +
                           std::to_string(o.optimization_level) + " ws=" + std::to_string(o.workspace_bytes) +
                           " batch=" + std::to_string(o.max_batch) + " prompts=" + std::to_string(o.max_prompts) +
                           " rows=" + std::to_string(l.max_rows) + " ctx=" + std::to_string(l.max_context) +
                           " text=" + std::to_string(l.max_text);
  return sha256_hex(text);
}

TensorRtOptions tensorrt_options_for(const Json& config, bool prefer_fp16) {
  TensorRtOptions options;
  const core::JsonReader top(config, "config.json");
  const int max_len = static_cast<int>(top.get_int("max_caption_length", 2, 4096));
  options.decoder.max_text = max_len;
  // the mask path pads a context to max_context_length (pipeline/tasks.cc), default max_caption_length
  options.decoder.max_context = static_cast<int>(top.get_int("max_context_length", 1, 4096, max_len));
  options.prefer_fp16 = prefer_fp16;
  return options;
}

std::string plan_onnx_file(const std::string& model_dir, const std::string& group, bool prefer_fp16) {
  std::error_code ec;
  const fs::path dir = fs::path(model_dir) / "onnx";
  if (prefer_fp16 && fs::is_regular_file(dir / (group + ".fp16.onnx"), ec)) return group + ".fp16.onnx";
  if (fs::is_regular_file(dir / (group + ".onnx"), ec)) return group + ".onnx";
  return {};
}

const std::vector<std::string>& plan_groups() {
  static const std::vector<std::string> groups = {"image_encoder", "prompt_adapter", "decoder_prefill", "decoder_step",
                                                  "decoder_forward", "mask_decoder",  "proposal_head"};
  return groups;
}

std::vector<PlanReport> inspect_plans(const std::string& model_dir, const PlanIdentity& target) {
  std::string config_text, e;
  const std::string config_path = (fs::path(model_dir) / "config.json").string();
  if (!read_capped(config_path, core::kMaxJsonFileBytes, &config_text, &e))
    core::fail(ErrorCode::ModelNotFound, model_dir + "/config.json: " + e);
  const TensorRtOptions options = tensorrt_options_for(core::parse_json_text(config_text, "config.json"));
  std::vector<PlanReport> out;
  std::error_code ec;
  const fs::path trt = fs::path(model_dir) / "trt";
  if (!fs::is_directory(trt, ec)) return out;
  std::vector<fs::path> dirs;
  for (const auto& d : fs::directory_iterator(trt, ec))
    if (d.is_directory(ec)) dirs.push_back(d.path());
  std::sort(dirs.begin(), dirs.end());
  std::map<std::string, std::string> onnx_hashes;   // file name -> sha256 ("" when missing)
  auto onnx_hash = [&](const std::string& name) -> const std::string& {
    auto it = onnx_hashes.find(name);
    if (it != onnx_hashes.end()) return it->second;
    const fs::path p = fs::path(model_dir) / "onnx" / name;
    std::error_code fe;
    std::string h = fs::is_regular_file(p, fe) ? sha256_file(p.string()) : std::string();
    return onnx_hashes.emplace(name, std::move(h)).first->second;
  };
  for (const fs::path& d : dirs) {
    const std::string rel = "trt/" + d.filename().string();
    PlanManifest m;
    std::string error;
    if (!read_plan_manifest((d / "manifest.json").string(), &m, &error)) {
      PlanReport r;
      r.dir = rel;
      r.reason = error;
      out.push_back(std::move(r));
      continue;
    }
    for (const auto& [key, record] : m.plans) {
      PlanReport r;
      r.dir = rel;
      r.key = key;
      r.group = record.group;
      r.precision = record.precision;
      r.built = m.identity;
      r.plan_bytes = record.plan_bytes;
      r.expected_onnx_sha256 = onnx_hash(record.onnx);
      r.expected_config_sha256 = plan_config_hash(config_text, record.group, record.onnx, options);
      const PlanVerdict v = decide_plan(m.identity, &record, target, r.expected_onnx_sha256, r.expected_config_sha256,
                                        (d / (key + ".plan")).string());
      r.reusable = v.reusable;
      r.reason = v.reason;
      out.push_back(std::move(r));
    }
    if (m.plans.empty()) {
      PlanReport r;
      r.dir = rel;
      r.built = m.identity;
      r.reason = "the manifest records no plans";
      out.push_back(std::move(r));
    }
  }
  return out;
}

}  // namespace pixelllm::runtime
