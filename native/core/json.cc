#include "core/json.h"

#include <cmath>
#include <fstream>
#include <sstream>

#include "core/error.h"

namespace pixelllm::core {

namespace {

const char* type_name(const Json& j) { return j.type_name(); }

std::string num_str(double v) {
  std::ostringstream s;
  s << v;
  return s.str();
}

}  // namespace

Json parse_json_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail(ErrorCode::ModelNotFound, "cannot open " + path);
  in.seekg(0, std::ios::end);
  std::streamoff size = in.tellg();
  if (size < 0) fail(ErrorCode::ModelNotFound, "cannot read " + path);
  if (static_cast<uint64_t>(size) > kMaxJsonFileBytes)
    fail(ErrorCode::LimitExceeded, path + " is " + std::to_string(size) + " bytes (limit " +
                                       std::to_string(kMaxJsonFileBytes) + ")");
  in.seekg(0);
  std::string text(static_cast<size_t>(size), '\0');
  if (!in.read(text.data(), size)) fail(ErrorCode::ModelNotFound, "cannot read " + path);
  return parse_json_text(text, path);
}

Json parse_json_text(const std::string& text, const std::string& what) {
  try {
    return Json::parse(text);
  } catch (const Json::exception& e) {
    fail(ErrorCode::ModelFormat, what + ": invalid JSON: " + e.what());
  }
}

JsonReader::JsonReader(const Json& json, std::string path) : json_(&json), path_(std::move(path)) {
  PIXELLLM_CHECK(json.is_object(), ModelFormat,
                 path_ + ": expected an object, got " + std::string(type_name(json)));
}

std::string JsonReader::key_path(const std::string& key) const { return path_ + "." + key; }

bool JsonReader::has(const std::string& key) const {
  auto it = json_->find(key);
  return it != json_->end() && !it->is_null();
}

const Json& JsonReader::require(const std::string& key) const {
  auto it = json_->find(key);
  if (it == json_->end() || it->is_null()) fail(ErrorCode::ModelFormat, key_path(key) + ": missing");
  return *it;
}

JsonReader JsonReader::object(const std::string& key) const {
  const Json& j = require(key);
  if (!j.is_object())
    fail(ErrorCode::ModelFormat, key_path(key) + ": expected an object, got " + type_name(j));
  return JsonReader(j, key_path(key));
}

static int64_t to_int(const Json& j, const std::string& where, int64_t min, int64_t max) {
  if (!j.is_number_integer())
    fail(ErrorCode::ModelFormat, where + ": expected an integer, got " + std::string(type_name(j)) +
                                     (j.is_number() ? " " + j.dump() : ""));
  if (j.is_number_unsigned()) {
    uint64_t u = j.get<uint64_t>();
    // nlohmann stores every non-negative integer as unsigned: the lower bound applies here too ("heads": 0).
    if (max < 0 || u > static_cast<uint64_t>(max) || static_cast<int64_t>(u) < min)
      fail(ErrorCode::LimitExceeded, where + ": " + std::to_string(u) + " is outside [" + std::to_string(min) + ", " +
                                         std::to_string(max) + "]");
    return static_cast<int64_t>(u);
  }
  int64_t v = j.get<int64_t>();
  if (v < min || v > max)
    fail(ErrorCode::LimitExceeded, where + ": " + std::to_string(v) + " is outside [" + std::to_string(min) + ", " +
                                       std::to_string(max) + "]");
  return v;
}

static double to_number(const Json& j, const std::string& where, double min, double max) {
  if (!j.is_number()) fail(ErrorCode::ModelFormat, where + ": expected a number, got " + type_name(j));
  double v = j.get<double>();
  if (!std::isfinite(v) || v < min || v > max)
    fail(ErrorCode::LimitExceeded, where + ": " + num_str(v) + " is outside [" + num_str(min) + ", " +
                                       num_str(max) + "]");
  return v;
}

int64_t JsonReader::get_int(const std::string& key, int64_t min, int64_t max) const {
  return to_int(require(key), key_path(key), min, max);
}

int64_t JsonReader::get_int(const std::string& key, int64_t min, int64_t max, int64_t fallback) const {
  return has(key) ? get_int(key, min, max) : fallback;
}

double JsonReader::get_number(const std::string& key, double min, double max) const {
  return to_number(require(key), key_path(key), min, max);
}

double JsonReader::get_number(const std::string& key, double min, double max, double fallback) const {
  return has(key) ? get_number(key, min, max) : fallback;
}

bool JsonReader::get_bool(const std::string& key) const {
  const Json& j = require(key);
  if (!j.is_boolean()) fail(ErrorCode::ModelFormat, key_path(key) + ": expected a boolean, got " + type_name(j));
  return j.get<bool>();
}

bool JsonReader::get_bool(const std::string& key, bool fallback) const {
  return has(key) ? get_bool(key) : fallback;
}

std::string JsonReader::get_string(const std::string& key, size_t max_len) const {
  const Json& j = require(key);
  if (!j.is_string()) fail(ErrorCode::ModelFormat, key_path(key) + ": expected a string, got " + type_name(j));
  const std::string& s = j.get_ref<const std::string&>();
  if (s.size() > max_len)
    fail(ErrorCode::LimitExceeded, key_path(key) + ": string of " + std::to_string(s.size()) +
                                       " bytes is longer than " + std::to_string(max_len));
  return s;
}

std::string JsonReader::get_string(const std::string& key, size_t max_len, const std::string& fallback) const {
  return has(key) ? get_string(key, max_len) : fallback;
}

static const Json& require_array(const Json& j, const std::string& where, size_t max_len) {
  if (!j.is_array()) fail(ErrorCode::ModelFormat, where + ": expected an array, got " + type_name(j));
  if (j.size() > max_len)
    fail(ErrorCode::LimitExceeded, where + ": array of " + std::to_string(j.size()) + " elements is longer than " +
                                       std::to_string(max_len));
  return j;
}

std::vector<int64_t> JsonReader::get_int_array(const std::string& key, size_t max_len, int64_t min,
                                               int64_t max) const {
  const Json& a = require_array(require(key), key_path(key), max_len);
  std::vector<int64_t> out;
  out.reserve(a.size());
  for (size_t i = 0; i < a.size(); ++i)
    out.push_back(to_int(a[i], key_path(key) + "[" + std::to_string(i) + "]", min, max));
  return out;
}

std::vector<double> JsonReader::get_number_array(const std::string& key, size_t max_len, double min,
                                                 double max) const {
  const Json& a = require_array(require(key), key_path(key), max_len);
  std::vector<double> out;
  out.reserve(a.size());
  for (size_t i = 0; i < a.size(); ++i)
    out.push_back(to_number(a[i], key_path(key) + "[" + std::to_string(i) + "]", min, max));
  return out;
}

}  // namespace pixelllm::core
