// Pipeline results -> JS values (main thread only). Shapes are the JS <-> native contract, mirrored by the
// Native* interfaces in lib/native.ts; keep both in step.
#pragma once

#include <napi.h>

#include <vector>

#include "pipeline/pipeline.h"

namespace pixelllm::addon {

Napi::Array BoxToJs(Napi::Env env, const pipeline::Box& box);  // [x0, y0, x1, y1]
// { index, token, x, y, box: [x0, y0, x1, y1], logprob }
Napi::Object EventToJs(Napi::Env env, const pipeline::TokenEvent& event);
// { width, height, data: Buffer (width*height bytes, 0/1, row-major; no copy), iou, box }
Napi::Object MaskToJs(Napi::Env env, pipeline::MaskResult&& mask);
// { tokens: Int32Array, events: Event[], score, box?: [4], mask?: Mask }
Napi::Object GenerateResultToJs(Napi::Env env, pipeline::GenerateResult&& result);
// [{ box, score, tokens: Int32Array, captionScore }]
Napi::Array DenseToJs(Napi::Env env, std::vector<pipeline::DenseItem>&& items);
// { dir, textDecoder, imageSize, vocabSize, bosTokenId, eosTokenId, padTokenId, maxCaptionLength,
//   hasProposalHead, hasMaskDecoder, backend, threads, decoderWeights, encoderPrecision (cpu) }
Napi::Object InfoToJs(Napi::Env env, const pipeline::ModelInfo& info);

}  // namespace pixelllm::addon
