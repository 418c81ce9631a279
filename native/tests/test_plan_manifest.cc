// runtime/plan_manifest: the load-or-rebuild decision of TensorRT plans, without TensorRT (other GPU, compute
// capability or TensorRT version; truncated or changed plan; changed ONNX or build configuration; missing,
// corrupt or absurd manifests), and the --check inspection of a model directory.
#include <filesystem>
#include <fstream>
#include <string>

#include "core/json.h"
#include "runtime/plan_manifest.h"
#include "runtime/sha256.h"
#include "tests/test.h"

using namespace pixelllm;
using namespace pixelllm::runtime;
namespace fs = std::filesystem;

namespace {

void write_file(const std::string& path, const std::string& bytes) {
  fs::create_directories(fs::path(path).parent_path());
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

PlanIdentity h100() { return {"NVIDIA H100 80GB HBM3", "9.0", "10.16.1"}; }

// A plan folder: plan bytes on disk and the record that describes them.
struct Fixture {
  std::string dir, plan_path;
  std::string plan = std::string(1000, 'p') + "plan-bytes";
  std::string onnx_hash = sha256_hex("onnx graph");
  std::string config_hash = sha256_hex("config");
  PlanRecord record;

  explicit Fixture(const std::string& name) {
    dir = test::temp_dir() + "/plans_" + name;
    plan_path = dir + "/decoder_step.fp16.plan";
    write_file(plan_path, plan);
    record.group = "decoder_step";
    record.precision = "fp16";
    record.onnx = "decoder_step.fp16.onnx";
    record.onnx_sha256 = onnx_hash;
    record.config_sha256 = config_hash;
    record.plan_sha256 = sha256_hex(plan);
    record.plan_bytes = plan.size();
  }
  PlanVerdict decide(const PlanIdentity& running, std::string* bytes = nullptr) const {
    return decide_plan(h100(), &record, running, onnx_hash, config_hash, plan_path, bytes);
  }
};

std::string valid_manifest_text() {
  PlanManifest m;
  m.identity = h100();
  Fixture f("valid_text");
  m.plans["decoder_step.fp16"] = f.record;
  return serialize_plan_manifest(m);
}

}  // namespace

TEST(plan_sha256_known_vectors) {
  CHECK_EQ(sha256_hex(std::string()), std::string("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"));
  CHECK_EQ(sha256_hex(std::string("abc")),
           std::string("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"));
  // two blocks (56 bytes: the padding spills into a second block)
  CHECK_EQ(sha256_hex(std::string("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq")),
           std::string("248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"));
}

TEST(plan_names) {
  CHECK_EQ(plan_key("decoder_step.fp16.onnx"), std::string("decoder_step.fp16"));
  CHECK_EQ(plan_group("decoder_step.fp16"), std::string("decoder_step"));
  CHECK_EQ(plan_precision("decoder_step.fp16"), std::string("fp16"));
  CHECK_EQ(plan_precision("image_encoder"), std::string("fp32"));
  CHECK_EQ(plan_dir_name(h100()), std::string("NVIDIA_H100_80GB_HBM3-10.16.1"));
  CHECK_EQ(sanitize_plan_name("a/../b c"), std::string("a_.._b_c"));
  CHECK_EQ(sanitize_plan_name(""), std::string("gpu"));
}

TEST(plan_reusable_when_everything_matches) {
  Fixture f("match");
  std::string bytes;
  const PlanVerdict v = f.decide(h100(), &bytes);
  CHECK(v.reusable);
  CHECK_EQ(v.reason, std::string());
  CHECK(bytes == f.plan);
}

TEST(plan_stale_for_another_gpu_capability_or_tensorrt) {
  Fixture f("identity");
  PlanIdentity other_gpu = h100();
  other_gpu.gpu_name = "NVIDIA H100 PCIe";
  PlanVerdict v = f.decide(other_gpu);
  CHECK(!v.reusable);
  CHECK(contains(v.reason, "built for GPU 'NVIDIA H100 80GB HBM3', running 'NVIDIA H100 PCIe'"));

  PlanIdentity other_sm = h100();
  other_sm.compute_capability = "8.9";
  v = f.decide(other_sm);
  CHECK(!v.reusable);
  CHECK(contains(v.reason, "compute capability 9.0, running 8.9"));

  PlanIdentity other_trt = h100();
  other_trt.tensorrt_version = "11.1.0";
  v = f.decide(other_trt);
  CHECK(!v.reusable);
  CHECK(contains(v.reason, "built with TensorRT 10.16.1, running TensorRT 11.1.0"));

  v = f.decide(PlanIdentity());   // a build without TensorRT
  CHECK(!v.reusable);
  CHECK(contains(v.reason, "no TensorRT backend"));
  CHECK(contains(v.reason, "NVIDIA H100 80GB HBM3"));
}

TEST(plan_stale_when_plan_file_truncated_changed_or_missing) {
  Fixture f("plan_file");
  write_file(f.plan_path, f.plan.substr(0, 100));
  std::string bytes = "untouched";
  PlanVerdict v = f.decide(h100(), &bytes);
  CHECK(!v.reusable);
  CHECK(contains(v.reason, "truncated"));
  CHECK_EQ(bytes, std::string("untouched"));

  std::string flipped = f.plan;
  flipped[500] ^= 1;   // same size, one bit changed: only the hash can tell
  write_file(f.plan_path, flipped);
  v = f.decide(h100());
  CHECK(!v.reusable);
  CHECK(contains(v.reason, "does not match its SHA-256"));

  write_file(f.plan_path, f.plan + "x");
  v = f.decide(h100());
  CHECK(!v.reusable);
  CHECK(contains(v.reason, "the manifest says"));

  fs::remove(f.plan_path);
  v = f.decide(h100());
  CHECK(!v.reusable);
  CHECK(contains(v.reason, "decoder_step.fp16.plan is missing"));
}

TEST(plan_stale_when_onnx_or_config_changed) {
  Fixture f("inputs");
  PlanVerdict v = decide_plan(h100(), &f.record, h100(), sha256_hex("another graph"), f.config_hash, f.plan_path);
  CHECK(!v.reusable);
  CHECK(contains(v.reason, "onnx/decoder_step.fp16.onnx changed"));
  v = decide_plan(h100(), &f.record, h100(), "", f.config_hash, f.plan_path);
  CHECK(!v.reusable);
  CHECK(contains(v.reason, "onnx/decoder_step.fp16.onnx is missing"));
  v = decide_plan(h100(), &f.record, h100(), f.onnx_hash, sha256_hex("other limits"), f.plan_path);
  CHECK(!v.reusable);
  CHECK(contains(v.reason, "build configuration changed"));
  v = decide_plan(h100(), nullptr, h100(), f.onnx_hash, f.config_hash, f.plan_path);
  CHECK(!v.reusable);
  CHECK(contains(v.reason, "no plan recorded"));
}

TEST(plan_manifest_round_trip) {
  const std::string text = valid_manifest_text();
  PlanManifest m;
  std::string error;
  CHECK(parse_plan_manifest(text, &m, &error));
  CHECK_EQ(error, std::string());
  CHECK_EQ(m.identity.gpu_name, h100().gpu_name);
  CHECK_EQ(m.identity.tensorrt_version, std::string("10.16.1"));
  CHECK_EQ(m.plans.size(), size_t(1));
  const PlanRecord& r = m.plans.at("decoder_step.fp16");
  CHECK_EQ(r.group, std::string("decoder_step"));
  CHECK_EQ(r.plan_bytes, uint64_t(1010));
  CHECK_EQ(serialize_plan_manifest(m), text);
}

TEST(plan_manifest_corrupt_or_absurd_never_crashes) {
  const std::string good = valid_manifest_text();
  core::Json j = core::parse_json_text(good, "manifest");
  auto edit = [&](const std::function<void(core::Json&)>& fn) {
    core::Json c = j;
    fn(c);
    return c.dump();
  };
  auto plan = [](core::Json& c) -> core::Json& { return c["plans"]["decoder_step.fp16"]; };
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"", "not valid JSON"},
      {good.substr(0, good.size() / 2), "not valid JSON"},   // truncated
      {"[]", "not a JSON object"},
      {"null", "not a JSON object"},
      {"{\"format\": 1}", "\"format\" is not a string"},
      {edit([](core::Json& c) { c["format"] = "something-else"; }), "\"format\" is not"},
      {edit([](core::Json& c) { c["version"] = 2; }), "version"},
      {edit([](core::Json& c) { c.erase("gpu"); }), "missing \"gpu\""},
      {edit([](core::Json& c) { c["gpu"] = ""; }), "empty gpu"},
      {edit([](core::Json& c) { c["gpu"] = std::string(100000, 'G'); }), "longer than"},
      {edit([](core::Json& c) { c["plans"] = core::Json::array(); }), "\"plans\" is not an object"},
      {edit([&](core::Json& c) { plan(c)["plan_bytes"] = -5; }), "plan_bytes"},
      {edit([&](core::Json& c) { plan(c)["plan_bytes"] = 0; }), "plan_bytes"},
      {edit([&](core::Json& c) { plan(c)["plan_bytes"] = 1e300; }), "plan_bytes"},
      {edit([&](core::Json& c) { plan(c)["plan_bytes"] = uint64_t(1) << 62; }), "plan_bytes"},
      {edit([&](core::Json& c) { plan(c)["plan_bytes"] = "1010"; }), "plan_bytes"},
      {edit([&](core::Json& c) { plan(c)["build_seconds"] = -1; }), "build_seconds"},
      {edit([&](core::Json& c) { plan(c)["plan_sha256"] = "xyz"; }), "SHA-256"},
      {edit([&](core::Json& c) { plan(c)["onnx"] = "../../etc/passwd"; }), "plain file name"},
      {edit([&](core::Json& c) { plan(c)["onnx"] = "image_encoder.onnx"; }), "not the ONNX of this key"},
      {edit([&](core::Json& c) { plan(c) = 7; }), "not an object"},
      {edit([](core::Json& c) { c["plans"]["../evil"] = c["plans"]["decoder_step.fp16"]; }), "plain name"},
      {std::string(200000, '[') + std::string(200000, ']'), "not a JSON object"},   // deep nesting
      {std::string(kMaxPlanManifestBytes + 1, ' '), "more than"},
  };
  for (const auto& [text, expected] : cases) {
    PlanManifest m;
    m.identity = h100();
    std::string error;
    const bool ok = parse_plan_manifest(text, &m, &error);
    CHECK(!ok);
    if (!contains(error, expected))
      test::report(__FILE__, __LINE__, "error '" + error + "' lacks '" + expected + "' for " + text.substr(0, 80));
    CHECK(m.plans.empty());
    CHECK(!m.identity.known());   // nothing half-parsed is left behind
  }
  core::Json many = j;
  for (int i = 0; i < 100; ++i) many["plans"]["g" + std::to_string(i)] = 1;
  PlanManifest m;
  std::string error;
  CHECK(!parse_plan_manifest(many.dump(), &m, &error));
  CHECK(contains(error, "more than 64 plans"));
}

TEST(plan_manifest_files) {
  const std::string dir = test::temp_dir() + "/manifest_files";
  PlanManifest m;
  std::string error;
  CHECK(!read_plan_manifest(dir + "/manifest.json", &m, &error));
  CHECK_EQ(error, std::string("no manifest.json"));
  write_file(dir + "/manifest.json", std::string(kMaxPlanManifestBytes + 10, '{'));
  CHECK(!read_plan_manifest(dir + "/manifest.json", &m, &error));
  CHECK(contains(error, "manifest.json: manifest.json is"));
  write_file(dir + "/manifest.json", valid_manifest_text());
  CHECK(read_plan_manifest(dir + "/manifest.json", &m, &error));
  fs::create_directories(dir + "/dir.json");
  CHECK(!read_plan_manifest(dir + "/dir.json", &m, &error));   // a directory where the file should be
}

TEST(plan_config_hash_rules) {
  TensorRtOptions o;
  const std::string a = plan_config_hash("{}", "decoder_step", "decoder_step.onnx", o);
  CHECK_EQ(a, plan_config_hash("{}", "decoder_step", "decoder_step.onnx", o));
  CHECK(a != plan_config_hash("{ }", "decoder_step", "decoder_step.onnx", o));
  CHECK(a != plan_config_hash("{}", "decoder_step", "decoder_step.fp16.onnx", o));
  TensorRtOptions more = o;
  more.decoder.max_text += 1;
  CHECK(a != plan_config_hash("{}", "decoder_step", "decoder_step.onnx", more));
  more = o;
  more.optimization_level = 5;
  CHECK(a != plan_config_hash("{}", "decoder_step", "decoder_step.onnx", more));

  const core::Json cfg = core::parse_json_text(R"({"max_caption_length": 40})", "config.json");
  const TensorRtOptions t = tensorrt_options_for(cfg);
  CHECK_EQ(t.decoder.max_text, 40);
  CHECK_EQ(t.decoder.max_context, 40);
  CHECK_THROWS_CODE(tensorrt_options_for(core::parse_json_text(R"({"max_caption_length": 1e9})", "config.json")),
                    ModelFormat, "max_caption_length");
}

TEST(plan_inspect_model_dir) {
  const std::string model = test::temp_dir() + "/inspect_model";
  const std::string config = R"({"max_caption_length": 40})";
  write_file(model + "/config.json", config);
  write_file(model + "/onnx/image_encoder.onnx", "graph");
  const std::string plan = "serialized engine";
  const PlanIdentity other{"Other GPU", "7.5", "9.9.9"};
  PlanManifest m;
  m.identity = other;
  PlanRecord& r = m.plans["image_encoder"];
  r.group = "image_encoder";
  r.precision = "fp32";
  r.onnx = "image_encoder.onnx";
  r.onnx_sha256 = sha256_hex("graph");
  r.config_sha256 = plan_config_hash(config, "image_encoder", "image_encoder.onnx",
                                     tensorrt_options_for(core::parse_json_text(config, "config.json")));
  r.plan_sha256 = sha256_hex(plan);
  r.plan_bytes = plan.size();
  const std::string pdir = model + "/trt/" + plan_dir_name(other);
  write_file(pdir + "/manifest.json", serialize_plan_manifest(m));
  write_file(pdir + "/image_encoder.plan", plan);
  write_file(model + "/trt/broken-1.0/manifest.json", "{\"format\": ");
  fs::create_directories(model + "/trt/empty-2.0");

  auto rows = inspect_plans(model, PlanIdentity());   // no TensorRT: nothing is usable, each row says why
  CHECK_EQ(rows.size(), size_t(3));
  if (rows.size() == 3) {
    CHECK_EQ(rows[0].dir, std::string("trt/Other_GPU-9.9.9"));
    CHECK_EQ(rows[0].key, std::string("image_encoder"));
    CHECK(!rows[0].reusable);
    CHECK(contains(rows[0].reason, "no TensorRT backend"));
    CHECK_EQ(rows[0].expected_config_sha256, r.config_sha256);
    CHECK_EQ(rows[1].dir, std::string("trt/broken-1.0"));
    CHECK(contains(rows[1].reason, "manifest.json: not valid JSON"));
    CHECK_EQ(rows[2].reason, std::string("no manifest.json"));
  }
  rows = inspect_plans(model, other);
  CHECK(rows.size() == 3 && rows[0].reusable);
  rows = inspect_plans(model, {"Other GPU", "7.5", "10.16.1"});
  CHECK(rows.size() == 3 && !rows[0].reusable && contains(rows[0].reason, "built with TensorRT 9.9.9"));

  // a copied model directory keeps its plans (the config hash does not depend on where the directory is)
  const std::string copy = test::temp_dir() + "/inspect_model_copy";
  fs::copy(model, copy, fs::copy_options::recursive);
  rows = inspect_plans(copy, other);
  CHECK(rows.size() == 3 && rows[0].reusable);

  write_file(copy + "/onnx/image_encoder.onnx", "another graph");
  rows = inspect_plans(copy, other);
  CHECK(rows.size() == 3 && !rows[0].reusable && contains(rows[0].reason, "changed since the plan was built"));
  write_file(copy + "/config.json", R"({"max_caption_length": 20})");
  write_file(copy + "/onnx/image_encoder.onnx", "graph");
  rows = inspect_plans(copy, other);
  CHECK(rows.size() == 3 && !rows[0].reusable && contains(rows[0].reason, "build configuration changed"));

  CHECK_THROWS_CODE(inspect_plans(test::temp_dir() + "/no_such_model", other), ModelNotFound, "config.json");
  CHECK(inspect_plans(test::temp_dir() + "/inspect_model/onnx/..", PlanIdentity()).size() == 3);
}
