#include "core/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "core/json.h"

namespace pixelllm::core {

namespace {

[[noreturn]] void bad(const std::string& path, const std::string& what) {
  fail(ErrorCode::ModelFormat, path + ": " + what);
}

uint64_t read_u64_le(const unsigned char* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

}  // namespace

std::shared_ptr<SafeTensors> SafeTensors::open(const std::string& path) {
  std::shared_ptr<SafeTensors> st(new SafeTensors());
  st->self_ = st;
  st->path_ = path;
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) fail(ErrorCode::ModelNotFound, "cannot open " + path + ": " + std::strerror(errno));
  struct stat sb;
  if (::fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
    ::close(fd);
    fail(ErrorCode::ModelNotFound, path + " is not a regular file");
  }
  size_t size = static_cast<size_t>(sb.st_size);
  if (size < 8) {
    ::close(fd);
    bad(path, "file is " + std::to_string(size) + " bytes, shorter than the 8-byte header length");
  }
  void* m = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
  ::close(fd);
  if (m == MAP_FAILED) fail(ErrorCode::OutOfMemory, "cannot mmap " + path + ": " + std::strerror(errno));
  st->map_ = m;
  st->map_size_ = size;
  const unsigned char* base = static_cast<const unsigned char*>(m);
  uint64_t header_len = read_u64_le(base);
  if (header_len > kMaxHeaderBytes)
    bad(path, "header length " + std::to_string(header_len) + " exceeds the limit of " +
                  std::to_string(kMaxHeaderBytes) + " bytes");
  if (header_len > size - 8)
    bad(path, "header length " + std::to_string(header_len) + " runs past the end of the " + std::to_string(size) +
                  "-byte file");
  st->data_ = base + 8 + header_len;
  st->data_size_ = size - 8 - header_len;
  st->parse_header(header_len);
  return st;
}

SafeTensors::~SafeTensors() {
  if (map_) ::munmap(map_, map_size_);
}

void SafeTensors::parse_header(uint64_t header_len) {
  const char* text = static_cast<const char*>(map_) + 8;
  // Count top-level keys while parsing: nlohmann keeps only the last of duplicate keys.
  // A valid header nests 3 levels (header > entry > shape); deeper input is rejected while parsing, because
  // nlohmann's dump() (used in the messages below) recurses once per level and a deep array overflows the stack.
  size_t top_keys = 0;
  constexpr int kMaxDepth = 8;
  Json::parser_callback_t count = [&top_keys, this](int depth, Json::parse_event_t event, Json&) {
    if (event == Json::parse_event_t::key && depth == 1) ++top_keys;
    if (depth > kMaxDepth) bad(path_, "header nests deeper than " + std::to_string(kMaxDepth) + " levels");
    return true;
  };
  Json header;
  try {
    header = Json::parse(text, text + header_len, count);
  } catch (const Json::exception& e) {
    bad(path_, std::string("header is not valid JSON: ") + e.what());
  }
  if (!header.is_object()) bad(path_, std::string("header is a JSON ") + header.type_name() + ", not an object");
  if (top_keys != header.size()) bad(path_, "header has duplicate keys");

  std::vector<const TensorInfo*> by_offset;
  for (auto it = header.begin(); it != header.end(); ++it) {
    const std::string& name = it.key();
    const Json& v = it.value();
    if (name == "__metadata__") {
      if (!v.is_object()) bad(path_, "__metadata__ is not an object");
      for (auto m = v.begin(); m != v.end(); ++m) {
        if (!m.value().is_string()) bad(path_, "__metadata__." + m.key() + " is not a string");
        metadata_[m.key()] = m.value().get<std::string>();
      }
      continue;
    }
    const std::string where = "tensor '" + name + "': ";
    if (name.empty()) bad(path_, "a tensor has an empty name");
    if (!v.is_object()) bad(path_, where + "entry is not an object");
    for (auto f = v.begin(); f != v.end(); ++f)
      if (f.key() != "dtype" && f.key() != "shape" && f.key() != "data_offsets")
        bad(path_, where + "unknown field '" + f.key() + "'");
    TensorInfo info;
    info.name = name;
    // dtype
    auto d = v.find("dtype");
    if (d == v.end() || !d->is_string()) bad(path_, where + "missing or non-string dtype");
    auto dt = dtype_from_name(d->get<std::string>());
    if (!dt) bad(path_, where + "unsupported dtype " + d->get<std::string>() + " (expected F32, F16 or BF16)");
    info.dtype = *dt;
    // shape
    auto s = v.find("shape");
    if (s == v.end() || !s->is_array()) bad(path_, where + "missing or non-array shape");
    if (s->size() > 16) bad(path_, where + "shape has " + std::to_string(s->size()) + " dims (limit 16)");
    uint64_t numel = 1;
    for (const Json& dim : *s) {
      if (!dim.is_number_integer()) bad(path_, where + "shape " + s->dump() + " has a non-integer dimension");
      if (!dim.is_number_unsigned() && dim.get<int64_t>() < 0)
        bad(path_, where + "shape " + s->dump() + " has a negative dimension");
      uint64_t u = dim.get<uint64_t>();
      if (u > uint64_t(INT64_MAX) || __builtin_mul_overflow(numel, u, &numel) || numel > uint64_t(INT64_MAX))
        bad(path_, where + "shape " + s->dump() + " overflows");
      info.shape.push_back(static_cast<int64_t>(u));
    }
    uint64_t nbytes;
    if (__builtin_mul_overflow(numel, uint64_t(dtype_size(info.dtype)), &nbytes))
      bad(path_, where + "shape " + s->dump() + " overflows");
    info.numel = static_cast<int64_t>(numel);
    // data_offsets
    auto o = v.find("data_offsets");
    if (o == v.end() || !o->is_array() || o->size() != 2) bad(path_, where + "data_offsets is not [begin, end]");
    for (const Json& x : *o)
      if (!x.is_number_unsigned()) bad(path_, where + "data_offsets " + o->dump() + " are not non-negative integers");
    info.begin = (*o)[0].get<uint64_t>();
    info.end = (*o)[1].get<uint64_t>();
    if (info.begin > info.end) bad(path_, where + "data_offsets " + o->dump() + " has begin > end");
    if (info.end > data_size_)
      bad(path_, where + "data_offsets " + o->dump() + " run past the " + std::to_string(data_size_) +
                     "-byte data section");
    if (info.end - info.begin != nbytes)
      bad(path_, where + "data_offsets " + o->dump() + " span " + std::to_string(info.end - info.begin) +
                     " bytes but " + dtype_name(info.dtype) + " shape " + shape_str(info.shape) + " needs " +
                     std::to_string(nbytes));
    tensors_.emplace(name, std::move(info));
  }
  for (const auto& kv : tensors_) by_offset.push_back(&kv.second);
  std::sort(by_offset.begin(), by_offset.end(), [](const TensorInfo* a, const TensorInfo* b) {
    return a->begin != b->begin ? a->begin < b->begin : a->end < b->end;
  });
  // Empty tensors occupy no bytes and cannot overlap anything; each non-empty tensor is compared with the
  // non-empty one before it in offset order (an empty tensor in between must not hide an overlap).
  const TensorInfo* prev = nullptr;
  for (const TensorInfo* cur : by_offset) {
    if (cur->begin == cur->end) continue;
    if (prev && cur->begin < prev->end)
      bad(path_, "tensor '" + cur->name + "' overlaps tensor '" + prev->name + "' in the data section");
    prev = cur;
  }
}

const TensorInfo& SafeTensors::info(const std::string& name) const {
  auto it = tensors_.find(name);
  if (it == tensors_.end()) bad(path_, "missing tensor '" + name + "'");
  return it->second;
}

std::vector<std::string> SafeTensors::names() const {
  std::vector<std::string> out;
  out.reserve(tensors_.size());
  for (const auto& kv : tensors_) out.push_back(kv.first);
  return out;
}

const unsigned char* SafeTensors::raw(const std::string& name) const { return data_ + info(name).begin; }

static void check_shape(const std::string& path, const TensorInfo& info, const Shape& expected) {
  if (info.shape != expected)
    fail(ErrorCode::ConfigMismatch, path + ": tensor '" + info.name + "' has shape " + shape_str(info.shape) +
                                        " but the config needs " + shape_str(expected));
}

Tensor SafeTensors::get(const std::string& name, const Shape& expected_shape) const {
  check_shape(path_, info(name), expected_shape);
  return get(name);
}

Tensor SafeTensors::get(const std::string& name) const {
  const TensorInfo& ti = info(name);
  Tensor t = Tensor::empty(ti.shape);
  convert_to_f32(ti.dtype, data_ + ti.begin, t.data(), static_cast<size_t>(ti.numel));
  return t;
}

Tensor SafeTensors::view(const std::string& name, const Shape& expected_shape) const {
  const TensorInfo& ti = info(name);
  check_shape(path_, ti, expected_shape);
  if (ti.dtype != DType::F32)
    bad(path_, "tensor '" + name + "' is " + dtype_name(ti.dtype) + "; a zero-copy view needs F32");
  const unsigned char* p = data_ + ti.begin;
  if (reinterpret_cast<uintptr_t>(p) % alignof(float) != 0)
    bad(path_, "tensor '" + name + "' is not 4-byte aligned in the file; use get() to copy it");
  auto keep = self_.lock();
  return Tensor::view(const_cast<float*>(reinterpret_cast<const float*>(p)), ti.shape,
                      std::shared_ptr<const void>(keep, keep.get()));
}

}  // namespace pixelllm::core
