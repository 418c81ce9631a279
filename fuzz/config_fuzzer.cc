// libFuzzer harness: config.json text (native/core/json.cc) and every component's config parser
// (native/model/*::from_json, pipeline DenseModel::from_config), which is all of model loading that runs before any
// weight is read.
// Property: parsing and validation only ever throw core::Error; a config that validates has the invariants the
// loaders rely on (positive sizes, divisible head dims).
#include <cstdint>
#include <string>

#include "core/json.h"
#include "fuzz_util.h"
#include "model/eva02_encoder.h"
#include "model/feature_fusion.h"
#include "model/git_decoder.h"
#include "model/mask_adapter.h"
#include "model/mask_decoder.h"
#include "model/point_head.h"
#include "model/preprocess.h"
#include "model/prompt_adapter.h"
#include "model/prompt_encoder.h"
#include "model/sam_image_encoder.h"
#include "model/t5.h"
#include "pipeline/dense.h"

namespace core = pixelllm::core;
namespace model = pixelllm::model;
using pixelllm::fuzz::finding;
using pixelllm::fuzz::only_core_errors;

namespace {

// Exercises the generic typed accessors on every key of an object (what the top-level config reader uses).
void poke_accessors(const core::JsonReader& r, int depth) {
  if (depth > 3) return;
  for (auto it = r.raw().begin(); it != r.raw().end(); ++it) {
    const std::string& k = it.key();
    only_core_errors("get_int", [&] { (void)r.get_int(k, -1000, 1 << 20); });
    only_core_errors("get_int(fallback)", [&] { (void)r.get_int(k, 0, 64, 7); });
    only_core_errors("get_number", [&] { (void)r.get_number(k, -1e9, 1e9); });
    only_core_errors("get_bool", [&] { (void)r.get_bool(k, false); });
    only_core_errors("get_string", [&] { (void)r.get_string(k, 64); });
    only_core_errors("get_string(fallback)", [&] { (void)r.get_string(k, 8, "x"); });
    only_core_errors("get_int_array", [&] { (void)r.get_int_array(k, 16, 0, 1 << 20); });
    only_core_errors("get_number_array", [&] { (void)r.get_number_array(k, 16, -1e6, 1e6); });
    only_core_errors("object", [&] { poke_accessors(r.object(k), depth + 1); });
  }
}

template <class Cfg>
void section(const core::JsonReader& root, const char* name) {
  only_core_errors(name, [&] { (void)Cfg::from_json(root.object(name)); });
}

template <class Cfg>
void whole(const core::Json& config, const char* name) {
  only_core_errors(name, [&] { (void)Cfg::from_json(config); });
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  core::Json config;
  if (!only_core_errors("parse_json_text", [&] { config = core::parse_json_text(text, "fuzz.json"); })) return 0;
  if (!config.is_object()) {
    only_core_errors("JsonReader(non-object)", [&] { core::JsonReader r(config, "fuzz.json"); });
    return 0;
  }
  const core::JsonReader root(config, "config.json");
  poke_accessors(root, 0);

  only_core_errors("sam_image_encoder", [&] {
    auto c = model::SamImageEncoderConfig::from_json(root.object("sam_image_encoder"));
    if (c.image_size <= 0 || c.patch_size <= 0) finding("sam config with non-positive sizes");
  });
  only_core_errors("eva02_encoder", [&] {
    auto c = model::Eva02EncoderConfig::from_json(root.object("eva02_encoder"));
    if (c.hidden_size % c.num_attention_heads != 0) finding("eva02 head dim not integral");
    if (c.patch_size > c.image_size) finding("eva02 patch larger than the image");
  });
  section<model::FeatureFusionConfig>(root, "feature_fusion");
  only_core_errors("git_decoder", [&] {
    auto c = model::GitDecoderConfig::from_json(root.object("git_decoder"));
    if (c.hidden_size % c.num_heads != 0) finding("git head dim not integral");
  });
  section<model::PointHeadConfig>(root, "point_head");
  section<model::T5Config>(root, "t5");
  only_core_errors("pixels(sam)", [&] { (void)model::PixelNormalization::from_config(root.object("sam_image_encoder")); });
  only_core_errors("pixels(eva02)", [&] { (void)model::PixelNormalization::from_config(root.object("eva02_encoder")); });
  whole<model::PromptEncoderConfig>(config, "prompt_encoder");
  whole<model::PromptAdapterConfig>(config, "prompt_adapter");
  whole<model::MaskAdapterConfig>(config, "mask_adapter");
  whole<model::MaskDecoderConfig>(config, "mask_decoder");
  only_core_errors("proposal_head", [&] {
    auto d = pixelllm::pipeline::DenseModel::from_config(config);
    if (d.present && d.grid <= 0) finding("dense model with a non-positive grid");
  });
  return 0;
}
