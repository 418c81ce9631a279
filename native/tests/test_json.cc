// core/json: typed config reading with path-carrying errors.
#include <fstream>

#include "core/json.h"
#include "tests/test.h"

using namespace pixelllm::core;

TEST(json_reader_typed_access) {
  Json j = parse_json_text(R"({"image_size": 384, "eps": 1e-6, "name": "tiny", "flag": true,
      "sam_image_encoder": {"depth": 2, "window": [14, 14], "big": 99999999999, "neg": -3, "f": 1.5,
      "scales": [0.5, 1.0]}})",
                           "config.json");
  JsonReader cfg(j, "config.json");
  CHECK_EQ(cfg.get_int("image_size", 1, 4096), 384);
  CHECK_NEAR(cfg.get_number("eps", 0, 1), 1e-6, 1e-18);
  CHECK_EQ(cfg.get_string("name"), std::string("tiny"));
  CHECK(cfg.get_bool("flag"));
  CHECK_EQ(cfg.get_int("absent", 0, 10, 7), 7);
  CHECK(!cfg.has("absent"));
  JsonReader sam = cfg.object("sam_image_encoder");
  CHECK_EQ(sam.path(), std::string("config.json.sam_image_encoder"));
  auto win = sam.get_int_array("window", 4, 1, 64);
  CHECK(win.size() == 2 && win[0] == 14);
  auto sc = sam.get_number_array("scales", 4, 0, 2);
  CHECK(sc.size() == 2 && sc[1] == 1.0);
  CHECK_EQ(sam.get_int("neg", -5, 0), -3);

  CHECK_THROWS_CODE(sam.get_int("missing", 0, 1), ModelFormat, "config.json.sam_image_encoder.missing: missing");
  CHECK_THROWS_CODE(cfg.get_int("name", 0, 1), ModelFormat, "expected an integer");
  CHECK_THROWS_CODE(sam.get_int("f", 0, 10), ModelFormat, "expected an integer");
  CHECK_THROWS_CODE(cfg.get_string("image_size"), ModelFormat, "expected a string");
  CHECK_THROWS_CODE(cfg.get_bool("name"), ModelFormat, "expected a boolean");
  CHECK_THROWS_CODE(cfg.object("name"), ModelFormat, "expected an object");
  CHECK_THROWS_CODE(sam.get_int("big", 0, 1 << 20), LimitExceeded, "99999999999");
  CHECK_THROWS_CODE(sam.get_int("neg", 0, 10), LimitExceeded, "outside");
  // non-negative integers are stored unsigned by nlohmann: the lower bound must still apply (fuzz finding:
  // "num_attention_heads": 0 reached a division by zero)
  CHECK_THROWS_CODE(cfg.get_int("image_size", 385, 4096), LimitExceeded, "outside [385, 4096]");
  CHECK_THROWS_CODE(sam.get_int_array("window", 4, 15, 64), LimitExceeded, "window[0]");
  CHECK_THROWS_CODE(cfg.get_number("eps", 1, 2), LimitExceeded, "outside");
  CHECK_THROWS_CODE(sam.get_int_array("window", 1, 1, 64), LimitExceeded, "longer than 1");
  CHECK_THROWS_CODE(sam.get_int_array("window", 4, 1, 10), LimitExceeded, "window[0]");
  CHECK_THROWS_CODE(sam.get_int_array("depth", 4, 1, 10), ModelFormat, "expected an array");
  CHECK_THROWS_CODE(cfg.get_string("name", 2), LimitExceeded, "longer than 2");
  CHECK_THROWS_CODE(cfg.get_bool("image_size"), ModelFormat, "expected a boolean");
  Json arr = Json::array();
  CHECK_THROWS_CODE(JsonReader(arr, "x"), ModelFormat, "expected an object");
}

TEST(json_files) {
  CHECK_THROWS_CODE(parse_json_file(pixelllm::test::temp_dir() + "/nope.json"), ModelNotFound, "nope.json");
  std::string bad = pixelllm::test::temp_dir() + "/bad.json";
  std::ofstream(bad) << "{\"a\": 1,";
  CHECK_THROWS_CODE(parse_json_file(bad), ModelFormat, "invalid JSON");
  std::string good = pixelllm::test::temp_dir() + "/good.json";
  std::ofstream(good) << "{\"a\": [1, 2]}";
  Json j = parse_json_file(good);
  CHECK_EQ(j["a"].size(), size_t(2));
}
