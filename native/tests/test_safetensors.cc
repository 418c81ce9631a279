// core/safetensors: every validation rule on hand-made good and bad files.
#include <cstring>
#include <fstream>

#include "core/dtype.h"
#include "core/json.h"
#include "core/safetensors.h"
#include "tests/test.h"

using namespace pixelllm::core;

namespace {

int file_counter = 0;

// Writes [u64 LE header_len][header][data] and returns the path.
std::string write_raw(const std::string& header, const std::string& data, int64_t header_len = -1) {
  std::string path = pixelllm::test::temp_dir() + "/t" + std::to_string(file_counter++) + ".safetensors";
  std::ofstream out(path, std::ios::binary);
  uint64_t n = header_len >= 0 ? static_cast<uint64_t>(header_len) : header.size();
  unsigned char len[8];
  for (int i = 0; i < 8; ++i) len[i] = static_cast<unsigned char>(n >> (8 * i));
  out.write(reinterpret_cast<const char*>(len), 8);
  out << header << data;
  return path;
}

std::string bytes_of(const std::vector<float>& v) {
  return std::string(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(float));
}

// A header with a single tensor "w" whose entry is `entry` (a JSON text), over `data_bytes` zero bytes.
std::string one(const std::string& entry, size_t data_bytes) {
  return write_raw("{\"w\": " + entry + "}", std::string(data_bytes, '\0'));
}

}  // namespace

TEST(safetensors_good_file) {
  std::vector<float> a = {1, 2, 3, 4, 5, 6};
  uint16_t h[4] = {f32_to_f16(1.5f), f32_to_f16(-2.f), f32_to_f16(0.25f), f32_to_f16(8.f)};
  uint16_t b[2] = {f32_to_bf16(3.f), f32_to_bf16(-0.5f)};
  std::string data = bytes_of(a) + std::string(reinterpret_cast<const char*>(h), 8) +
                     std::string(reinterpret_cast<const char*>(b), 4);
  Json header = {
      {"__metadata__", {{"format", "pt"}, {"note", "hand made"}}},
      {"enc.a", {{"dtype", "F32"}, {"shape", {2, 3}}, {"data_offsets", {0, 24}}}},
      {"enc.h", {{"dtype", "F16"}, {"shape", {4}}, {"data_offsets", {24, 32}}}},
      {"enc.b", {{"dtype", "BF16"}, {"shape", {2, 1}}, {"data_offsets", {32, 36}}}},
      {"enc.empty", {{"dtype", "F32"}, {"shape", {0, 3}}, {"data_offsets", {36, 36}}}},
      {"enc.scalar", {{"dtype", "F32"}, {"shape", Json::array()}, {"data_offsets", {0, 4}}}},
  };
  // enc.scalar deliberately shares bytes with enc.a -> invalid; first check the valid file without it.
  Json valid = header;
  valid.erase("enc.scalar");
  std::string path = write_raw(valid.dump() + "   ", data);  // trailing spaces as the Python writer pads
  auto st = SafeTensors::open(path);
  CHECK_EQ(st->size(), size_t(4));
  CHECK_EQ(st->metadata().at("format"), std::string("pt"));
  CHECK(st->has("enc.a") && !st->has("enc.z"));
  CHECK_EQ(st->names().front(), std::string("enc.a"));
  Tensor ta = st->get("enc.a", {2, 3});
  CHECK(ta.owns() && ta.aligned());
  CHECK_EQ(ta.at(1, 2), 6.f);
  Tensor th = st->get("enc.h");
  CHECK_EQ(th.at(0), 1.5f);
  CHECK_EQ(th.at(3), 8.f);
  Tensor tb = st->get("enc.b", {2, 1});
  CHECK_EQ(tb.at(0, 0), 3.f);
  CHECK_EQ(tb.at(1, 0), -0.5f);
  CHECK_EQ(st->get("enc.empty", {0, 3}).numel(), 0);
  CHECK(st->info("enc.h").dtype == DType::F16);
  CHECK_EQ(st->info("enc.h").begin, uint64_t(24));
  Tensor va;
  if (reinterpret_cast<uintptr_t>(st->raw("enc.a")) % 4 == 0) {
    va = st->view("enc.a", {2, 3});
    CHECK(!va.owns());
    CHECK_EQ(va.at(0, 1), 2.f);
  } else {
    CHECK_THROWS_CODE(st->view("enc.a", {2, 3}), ModelFormat, "aligned");
  }
  st.reset();  // the view keeps the mapping alive
  if (va.numel()) CHECK_EQ(va.at(1, 1), 5.f);
  auto st2 = SafeTensors::open(path);
  CHECK_THROWS_CODE(st2->get("enc.a", {3, 2}), ConfigMismatch, "enc.a' has shape (2, 3) but the config needs (3, 2)");
  CHECK_THROWS_CODE(st2->get("enc.zz", {1}), ModelFormat, "missing tensor 'enc.zz'");
  CHECK_THROWS_CODE(st2->view("enc.h", {4}), ModelFormat, "needs F32");
  // Overlap: enc.scalar inside enc.a.
  CHECK_THROWS_CODE(SafeTensors::open(write_raw(header.dump(), data)), ModelFormat, "overlaps");
}

TEST(safetensors_file_level_errors) {
  CHECK_THROWS_CODE(SafeTensors::open(pixelllm::test::temp_dir() + "/missing.safetensors"), ModelNotFound,
                    "missing.safetensors");
  CHECK_THROWS_CODE(SafeTensors::open(pixelllm::test::temp_dir()), ModelNotFound, "not a regular file");
  {
    std::string p = pixelllm::test::temp_dir() + "/short.safetensors";
    std::ofstream(p, std::ios::binary) << "abc";
    CHECK_THROWS_CODE(SafeTensors::open(p), ModelFormat, "shorter than the 8-byte header length");
  }
  CHECK_THROWS_CODE(SafeTensors::open(write_raw("{}", "", int64_t(1) << 40)), ModelFormat, "exceeds the limit");
  CHECK_THROWS_CODE(SafeTensors::open(write_raw("{}", "", 1000)), ModelFormat, "runs past the end");
  CHECK_THROWS_CODE(SafeTensors::open(write_raw("{\"w\": ", "")), ModelFormat, "not valid JSON");
  CHECK_THROWS_CODE(SafeTensors::open(write_raw("[1, 2]", "")), ModelFormat, "not an object");
  CHECK_THROWS_CODE(SafeTensors::open(write_raw(
                        R"({"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]},
                            "w": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}})",
                        std::string(8, '\0'))),
                    ModelFormat, "duplicate");
  auto empty = SafeTensors::open(write_raw("{}", ""));
  CHECK_EQ(empty->size(), size_t(0));
  auto meta_only = SafeTensors::open(write_raw(R"({"__metadata__": {"a": "b"}})", ""));
  CHECK_EQ(meta_only->metadata().at("a"), std::string("b"));
  CHECK_THROWS_CODE(SafeTensors::open(write_raw(R"({"__metadata__": [1]})", "")), ModelFormat,
                    "__metadata__ is not an object");
  CHECK_THROWS_CODE(SafeTensors::open(write_raw(R"({"__metadata__": {"a": 1}})", "")), ModelFormat,
                    "__metadata__.a is not a string");
}

TEST(safetensors_entry_errors) {
  const std::string ok_offsets = R"("data_offsets": [0, 8])";
  CHECK(SafeTensors::open(one(R"({"dtype": "F32", "shape": [2], "data_offsets": [0, 8]})", 8))->has("w"));
  CHECK_THROWS_CODE(SafeTensors::open(one("[1]", 8)), ModelFormat, "tensor 'w': entry is not an object");
  CHECK_THROWS_CODE(SafeTensors::open(write_raw(R"({"": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}})",
                                                std::string(8, '\0'))),
                    ModelFormat, "empty name");
  CHECK_THROWS_CODE(SafeTensors::open(one(R"({"dtype": "F32", "shape": [2], "data_offsets": [0, 8], "x": 1})", 8)),
                    ModelFormat, "unknown field 'x'");
  // dtype
  CHECK_THROWS_CODE(SafeTensors::open(one(R"({"shape": [2], "data_offsets": [0, 8]})", 8)), ModelFormat,
                    "missing or non-string dtype");
  CHECK_THROWS_CODE(SafeTensors::open(one(R"({"dtype": 3, "shape": [2], "data_offsets": [0, 8]})", 8)), ModelFormat,
                    "missing or non-string dtype");
  CHECK_THROWS_CODE(SafeTensors::open(one(R"({"dtype": "I64", "shape": [1], "data_offsets": [0, 8]})", 8)),
                    ModelFormat, "tensor 'w': unsupported dtype I64");
  // shape
  CHECK_THROWS_CODE(SafeTensors::open(one(R"({"dtype": "F32", "data_offsets": [0, 8]})", 8)), ModelFormat,
                    "missing or non-array shape");
  CHECK_THROWS_CODE(SafeTensors::open(one(R"({"dtype": "F32", "shape": 2, "data_offsets": [0, 8]})", 8)),
                    ModelFormat, "missing or non-array shape");
  CHECK_THROWS_CODE(SafeTensors::open(one(R"({"dtype": "F32", "shape": [-2], "data_offsets": [0, 8]})", 8)),
                    ModelFormat, "negative dimension");
  CHECK_THROWS_CODE(SafeTensors::open(one(R"({"dtype": "F32", "shape": [2.0], "data_offsets": [0, 8]})", 8)),
                    ModelFormat, "non-integer dimension");
  CHECK_THROWS_CODE(SafeTensors::open(one(R"({"dtype": "F32", "shape": ["2"], "data_offsets": [0, 8]})", 8)),
                    ModelFormat, "non-integer dimension");
  CHECK_THROWS_CODE(
      SafeTensors::open(one(R"({"dtype": "F32", "shape": [4294967296, 4294967296], "data_offsets": [0, 8]})", 8)),
      ModelFormat, "overflows");
  CHECK_THROWS_CODE(
      SafeTensors::open(one(R"({"dtype": "F32", "shape": [4611686018427387904], "data_offsets": [0, 8]})", 8)),
      ModelFormat, "overflows");  // numel fits, numel * 4 does not
  CHECK_THROWS_CODE(
      SafeTensors::open(one(R"({"dtype": "F32", "shape": [1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1], "data_offsets": [0, 4]})",
                            8)),
      ModelFormat, "17 dims");
  // data_offsets
  CHECK_THROWS_CODE(SafeTensors::open(one(R"({"dtype": "F32", "shape": [2]})", 8)), ModelFormat,
                    "data_offsets is not [begin, end]");
  CHECK_THROWS_CODE(SafeTensors::open(one(R"({"dtype": "F32", "shape": [2], "data_offsets": [0]})", 8)), ModelFormat,
                    "data_offsets is not [begin, end]");
  CHECK_THROWS_CODE(SafeTensors::open(one(R"({"dtype": "F32", "shape": [2], "data_offsets": [-8, 0]})", 8)),
                    ModelFormat, "not non-negative integers");
  CHECK_THROWS_CODE(SafeTensors::open(one(R"({"dtype": "F32", "shape": [2], "data_offsets": [0, 8.5]})", 8)),
                    ModelFormat, "not non-negative integers");
  CHECK_THROWS_CODE(SafeTensors::open(one(R"({"dtype": "F32", "shape": [0], "data_offsets": [8, 0]})", 8)),
                    ModelFormat, "begin > end");
  CHECK_THROWS_CODE(SafeTensors::open(one(R"({"dtype": "F32", "shape": [4], "data_offsets": [0, 16]})", 8)),
                    ModelFormat, "run past the 8-byte data section");
  CHECK_THROWS_CODE(SafeTensors::open(one(R"({"dtype": "F32", "shape": [3], "data_offsets": [0, 8]})", 8)),
                    ModelFormat, "span 8 bytes but F32 shape (3,) needs 12");
  CHECK_THROWS_CODE(SafeTensors::open(one(R"({"dtype": "BF16", "shape": [2], "data_offsets": [0, 8]})", 8)),
                    ModelFormat, "needs 4");
  // overlaps (partial), adjacency and gaps are fine
  CHECK_THROWS_CODE(SafeTensors::open(write_raw(R"({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                                                   "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}})",
                                                std::string(12, '\0'))),
                    ModelFormat, "'b' overlaps tensor 'a'");
  auto ok = SafeTensors::open(write_raw(R"({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                                           "b": {"dtype": "F32", "shape": [1], "data_offsets": [12, 16]},
                                           "c": {"dtype": "F16", "shape": [2], "data_offsets": [8, 12]}})",
                                        std::string(16, '\0')));
  CHECK_EQ(ok->size(), size_t(3));
  (void)ok_offsets;
}

TEST(safetensors_reads_python_written_file) {
  auto st = SafeTensors::open(std::string(PIXELLLM_TEST_DATA_DIR) + "/jax_resize.safetensors");
  CHECK(st->size() > 10);
  CHECK(st->metadata().count("jax_version") == 1);
  Tensor y = st->get("case/eva_pos_16_27/y", {1, 27, 27, 3});
  CHECK_EQ(y.numel(), 27 * 27 * 3);
}
