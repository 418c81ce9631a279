// Caption / refer / describe calls: the generation runs on a decode thread (addon/decode_threads.h, so concurrent
// requests really run at once and the CPU backend batches their decode steps), streams one TokenEvent per token
// to `on_token` on the main thread, in order, all delivered before the Promise settles, through a thread-safe
// function. If on_token throws, generation is cancelled and the Promise rejects with that exception. The call
// holds its own std::shared_ptr to the pipeline and the features (dispose() never pulls memory from under it).
#pragma once

#include <napi.h>

#include <memory>

#include "addon/cancel.h"
#include "pipeline/pipeline.h"

namespace pixelllm::addon {

Napi::Promise StartGenerate(Napi::Env env, std::shared_ptr<pipeline::Pipeline> pipeline,
                            std::shared_ptr<const pipeline::ImageFeatures> features, pipeline::GenerateRequest request,
                            Napi::Value on_token, CancelFlag cancel);

}  // namespace pixelllm::addon
