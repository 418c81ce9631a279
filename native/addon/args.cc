#include "addon/args.h"

#include <cmath>

#include "addon/errors.h"

namespace pixelllm::addon::args {

namespace {

std::string Describe(const Napi::Value& value) {
  if (value.IsUndefined()) return "undefined";
  if (value.IsNull()) return "null";
  if (value.IsBoolean()) return "a boolean";
  if (value.IsNumber()) return "a number";
  if (value.IsString()) return "a string";
  if (value.IsFunction()) return "a function";
  if (value.IsArray()) return "an array";
  if (value.IsTypedArray()) return "a typed array";
  if (value.IsObject()) return "an object";
  return "a value of another type";
}

// Reads element i of an Array or a float/int TypedArray as double; false when not a number.
bool NumberAt(const Napi::Value& container, uint32_t i, double* out) {
  Napi::Value v = container.As<Napi::Object>().Get(i);
  if (!v.IsNumber()) return false;
  *out = v.As<Napi::Number>().DoubleValue();
  return true;
}

uint32_t ListLength(const Napi::Value& value) {
  if (value.IsArray()) return value.As<Napi::Array>().Length();
  return static_cast<uint32_t>(value.As<Napi::TypedArray>().ElementLength());
}

}  // namespace

std::string String(const Napi::Value& value, const char* name) {
  if (!value.IsString()) Throw(value.Env(), "INVALID_ARGUMENT", std::string(name) + " must be a string, got " + Describe(value));
  std::string s = value.As<Napi::String>().Utf8Value();
  if (s.find('\0') != std::string::npos) Throw(value.Env(), "INVALID_ARGUMENT", std::string(name) + " must not contain NUL");
  return s;
}

int Int(const Napi::Value& value, const char* name, int min, int max) {
  const std::string n(name);
  if (!value.IsNumber()) Throw(value.Env(), "INVALID_ARGUMENT", n + " must be a number, got " + Describe(value));
  const double d = value.As<Napi::Number>().DoubleValue();
  if (!std::isfinite(d) || d != std::floor(d)) Throw(value.Env(), "INVALID_ARGUMENT", n + " must be an integer");
  if (d < min || d > max) {
    Throw(value.Env(), "INVALID_ARGUMENT",
          n + " must be in [" + std::to_string(min) + ", " + std::to_string(max) + "], got " + std::to_string(static_cast<long long>(d)));
  }
  return static_cast<int>(d);
}

Napi::Object Options(const Napi::Value& value, const char* name) {
  if (value.IsUndefined() || value.IsNull()) return Napi::Object::New(value.Env());
  if (!value.IsObject() || value.IsArray() || value.IsFunction() || value.IsTypedArray()) {
    Throw(value.Env(), "INVALID_ARGUMENT", std::string(name) + " must be an object, got " + Describe(value));
  }
  return value.As<Napi::Object>();
}

int OptionalInt(const Napi::Object& options, const char* key, int fallback, int min, int max) {
  Napi::Value v = options.Get(key);
  if (v.IsUndefined()) return fallback;
  return Int(v, key, min, max);
}

float OptionalFloat(const Napi::Object& options, const char* key, float fallback, float min, float max) {
  Napi::Value v = options.Get(key);
  if (v.IsUndefined()) return fallback;
  const std::string n(key);
  if (!v.IsNumber()) Throw(v.Env(), "INVALID_ARGUMENT", n + " must be a number, got " + Describe(v));
  const double d = v.As<Napi::Number>().DoubleValue();
  if (!std::isfinite(d) || d < min || d > max) {
    Throw(v.Env(), "INVALID_ARGUMENT", n + " must be a finite number in [" + std::to_string(min) + ", " + std::to_string(max) + "]");
  }
  return static_cast<float>(d);
}

bool OptionalBool(const Napi::Object& options, const char* key, bool fallback) {
  Napi::Value v = options.Get(key);
  if (v.IsUndefined()) return fallback;
  if (!v.IsBoolean()) Throw(v.Env(), "INVALID_ARGUMENT", std::string(key) + " must be a boolean, got " + Describe(v));
  return v.As<Napi::Boolean>().Value();
}

std::string OptionalString(const Napi::Object& options, const char* key, const std::string& fallback) {
  Napi::Value v = options.Get(key);
  if (v.IsUndefined()) return fallback;
  return String(v, key);
}

std::string OptionalChoice(const Napi::Object& options, const char* key, const std::string& fallback,
                           const std::vector<std::string>& choices) {
  std::string v = OptionalString(options, key, fallback);
  std::string list;
  for (size_t i = 0; i < choices.size(); ++i) {
    if (choices[i] == v) return v;
    list += (i == 0 ? "'" : i + 1 == choices.size() ? " or '" : ", '") + choices[i] + "'";
  }
  Throw(options.Env(), "INVALID_ARGUMENT", std::string(key) + " must be " + list + ", got '" + v + "'");
}

pipeline::Box Box(const Napi::Value& value, const char* name, int width, int height) {
  Napi::Env env = value.Env();
  const std::string n(name);
  const bool typed = value.IsTypedArray() && (value.As<Napi::TypedArray>().TypedArrayType() == napi_float32_array ||
                                              value.As<Napi::TypedArray>().TypedArrayType() == napi_float64_array);
  if (!value.IsArray() && !typed) {
    Throw(env, "INVALID_BOX", n + " must be [x0, y0, x1, y1] (Array, Float32Array or Float64Array), got " + Describe(value));
  }
  if (ListLength(value) != 4) Throw(env, "INVALID_BOX", n + " must have 4 numbers [x0, y0, x1, y1]");
  double c[4];
  for (uint32_t i = 0; i < 4; ++i) {
    if (!NumberAt(value, i, &c[i]) || !std::isfinite(c[i])) Throw(env, "INVALID_BOX", n + " must hold 4 finite numbers");
  }
  if (!(c[0] >= 0 && c[1] >= 0 && c[2] <= width && c[3] <= height)) {
    Throw(env, "INVALID_BOX", n + " must lie inside the image (" + std::to_string(width) + "x" + std::to_string(height) + ")");
  }
  if (!(c[0] < c[2] && c[1] < c[3])) Throw(env, "INVALID_BOX", n + " must have x0 < x1 and y0 < y1");
  return pipeline::Box{static_cast<float>(c[0]), static_cast<float>(c[1]), static_cast<float>(c[2]), static_cast<float>(c[3])};
}

std::vector<int32_t> Tokens(const Napi::Value& value, const char* name, int vocab_size) {
  Napi::Env env = value.Env();
  const std::string n(name);
  std::vector<int32_t> out;
  if (value.IsTypedArray()) {
    Napi::TypedArray ta = value.As<Napi::TypedArray>();
    if (ta.TypedArrayType() != napi_int32_array && ta.TypedArrayType() != napi_uint32_array) {
      Throw(env, "INVALID_TEXT", n + " must be an Int32Array, a Uint32Array or an array of integers");
    }
  } else if (!value.IsArray()) {
    Throw(env, "INVALID_TEXT", n + " must be an Int32Array or an array of integers, got " + Describe(value));
  }
  const uint32_t len = ListLength(value);
  if (len > kMaxTokens) Throw(env, "INVALID_TEXT", n + " has " + std::to_string(len) + " tokens, more than " + std::to_string(kMaxTokens));
  out.reserve(len);
  for (uint32_t i = 0; i < len; ++i) {
    double d;
    if (!NumberAt(value, i, &d) || !std::isfinite(d) || d != std::floor(d) || d < 0 || d >= vocab_size) {
      Throw(env, "INVALID_TEXT", n + "[" + std::to_string(i) + "] must be an integer token id in [0, " + std::to_string(vocab_size) + ")");
    }
    out.push_back(static_cast<int32_t>(d));
  }
  return out;
}

Bytes ByteView(const Napi::Value& value, const char* name) {
  if (!value.IsTypedArray()) Throw(value.Env(), "INVALID_ARGUMENT", std::string(name) + " must be a Buffer or Uint8Array, got " + Describe(value));
  Napi::TypedArray ta = value.As<Napi::TypedArray>();
  if (ta.TypedArrayType() != napi_uint8_array && ta.TypedArrayType() != napi_uint8_clamped_array) {
    Throw(value.Env(), "INVALID_ARGUMENT", std::string(name) + " must be a Buffer or Uint8Array");
  }
  Napi::Uint8Array u8 = value.As<Napi::Uint8Array>();
  return Bytes{u8.Data(), u8.ByteLength()};
}

}  // namespace pixelllm::addon::args
