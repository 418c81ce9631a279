#include "addon/convert.h"

#include <cstring>

namespace pixelllm::addon {

namespace {
Napi::Int32Array TokensToJs(Napi::Env env, const std::vector<int32_t>& tokens) {
  Napi::Int32Array out = Napi::Int32Array::New(env, tokens.size());
  if (!tokens.empty()) std::memcpy(out.Data(), tokens.data(), tokens.size() * sizeof(int32_t));
  return out;
}
}  // namespace

Napi::Array BoxToJs(Napi::Env env, const pipeline::Box& box) {
  Napi::Array a = Napi::Array::New(env, 4);
  a.Set(0u, Napi::Number::New(env, box.x0));
  a.Set(1u, Napi::Number::New(env, box.y0));
  a.Set(2u, Napi::Number::New(env, box.x1));
  a.Set(3u, Napi::Number::New(env, box.y1));
  return a;
}

Napi::Object EventToJs(Napi::Env env, const pipeline::TokenEvent& event) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("index", Napi::Number::New(env, event.index));
  o.Set("token", Napi::Number::New(env, event.token));
  o.Set("x", Napi::Number::New(env, event.x));
  o.Set("y", Napi::Number::New(env, event.y));
  o.Set("box", BoxToJs(env, event.corners));
  o.Set("logprob", Napi::Number::New(env, event.logprob));
  return o;
}

Napi::Object MaskToJs(Napi::Env env, pipeline::MaskResult&& mask) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("width", Napi::Number::New(env, mask.width));
  o.Set("height", Napi::Number::New(env, mask.height));
  o.Set("iou", Napi::Number::New(env, mask.iou));
  o.Set("box", BoxToJs(env, mask.box));
  // Hand the vector's storage to JS: the Buffer's finalizer deletes it.
  auto* bytes = new std::vector<uint8_t>(std::move(mask.mask));
  o.Set("data", Napi::Buffer<uint8_t>::New(env, bytes->data(), bytes->size(),
                                           [](Napi::Env, uint8_t*, std::vector<uint8_t>* v) { delete v; }, bytes));
  return o;
}

Napi::Object GenerateResultToJs(Napi::Env env, pipeline::GenerateResult&& result) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("tokens", TokensToJs(env, result.tokens));
  Napi::Array events = Napi::Array::New(env, result.events.size());
  for (size_t i = 0; i < result.events.size(); ++i) events.Set(static_cast<uint32_t>(i), EventToJs(env, result.events[i]));
  o.Set("events", events);
  o.Set("score", Napi::Number::New(env, result.score));
  if (result.box) o.Set("box", BoxToJs(env, *result.box));
  if (result.mask) o.Set("mask", MaskToJs(env, std::move(*result.mask)));
  return o;
}

Napi::Array DenseToJs(Napi::Env env, std::vector<pipeline::DenseItem>&& items) {
  Napi::Array a = Napi::Array::New(env, items.size());
  for (size_t i = 0; i < items.size(); ++i) {
    Napi::Object o = Napi::Object::New(env);
    o.Set("box", BoxToJs(env, items[i].box));
    o.Set("score", Napi::Number::New(env, items[i].score));
    o.Set("tokens", TokensToJs(env, items[i].tokens));
    o.Set("captionScore", Napi::Number::New(env, items[i].caption_score));
    a.Set(static_cast<uint32_t>(i), o);
  }
  return a;
}

Napi::Object InfoToJs(Napi::Env env, const pipeline::ModelInfo& info) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("dir", info.dir);
  o.Set("textDecoder", info.text_decoder);
  o.Set("imageSize", Napi::Number::New(env, info.image_size));
  o.Set("vocabSize", Napi::Number::New(env, info.vocab_size));
  o.Set("bosTokenId", Napi::Number::New(env, info.bos_token_id));
  o.Set("eosTokenId", Napi::Number::New(env, info.eos_token_id));
  o.Set("padTokenId", Napi::Number::New(env, info.pad_token_id));
  o.Set("maxCaptionLength", Napi::Number::New(env, info.max_caption_length));
  o.Set("hasProposalHead", Napi::Boolean::New(env, info.has_proposal_head));
  o.Set("hasMaskDecoder", Napi::Boolean::New(env, info.has_mask_decoder));
  o.Set("backend", info.backend);
  o.Set("threads", Napi::Number::New(env, info.threads));
  if (!info.decoder_weights.empty()) o.Set("decoderWeights", info.decoder_weights);
  if (!info.encoder_precision.empty()) o.Set("encoderPrecision", info.encoder_precision);
  o.Set("maskResize", info.mask_resize);
  return o;
}

}  // namespace pixelllm::addon
