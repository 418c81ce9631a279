// Typed reading of JSON (config.json, manifests) over nlohmann::json. Every accessor names the full key path in
// its error: missing keys and wrong types are MODEL_FORMAT, values outside the caller's bounds are LIMIT_EXCEEDED
// (checked before anything is allocated from them).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace pixelllm::core {

using Json = nlohmann::json;

// Largest JSON file we read (config.json and friends are a few KB).
constexpr size_t kMaxJsonFileBytes = size_t(64) << 20;

// Reads and parses a JSON file: MODEL_NOT_FOUND when it cannot be opened, LIMIT_EXCEEDED when larger than
// kMaxJsonFileBytes, MODEL_FORMAT when it is not valid JSON.
Json parse_json_file(const std::string& path);
// Parses text; `what` names the source in errors (MODEL_FORMAT).
Json parse_json_text(const std::string& text, const std::string& what);

// A read-only cursor into a JSON object with the key path it was reached by ("config.json:sam_image_encoder").
class JsonReader {
 public:
  JsonReader(const Json& json, std::string path);

  const Json& raw() const noexcept { return *json_; }
  const std::string& path() const noexcept { return path_; }
  bool has(const std::string& key) const;  // key present and not null

  JsonReader object(const std::string& key) const;  // child that must be an object
  int64_t get_int(const std::string& key, int64_t min, int64_t max) const;
  int64_t get_int(const std::string& key, int64_t min, int64_t max, int64_t fallback) const;
  double get_number(const std::string& key, double min, double max) const;
  double get_number(const std::string& key, double min, double max, double fallback) const;
  bool get_bool(const std::string& key) const;
  bool get_bool(const std::string& key, bool fallback) const;
  std::string get_string(const std::string& key, size_t max_len = 4096) const;
  std::string get_string(const std::string& key, size_t max_len, const std::string& fallback) const;
  // Arrays: at most max_len elements (LIMIT_EXCEEDED) and each element within [min, max].
  std::vector<int64_t> get_int_array(const std::string& key, size_t max_len, int64_t min, int64_t max) const;
  std::vector<double> get_number_array(const std::string& key, size_t max_len, double min, double max) const;

 private:
  const Json& require(const std::string& key) const;
  std::string key_path(const std::string& key) const;

  const Json* json_;
  std::string path_;
};

}  // namespace pixelllm::core
