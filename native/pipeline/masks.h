// Mask post-processing (low-res SAM logits -> a binary mask at the original image size) and COCO RLE.
//
// Two post-processings (MaskResize), both bilinear with half-pixel centres (source coordinate
// s = max((d + 0.5) * in / out - 0.5, 0), i0 = floor(s), i1 = min(i0 + 1, in - 1), t = s - i0, value = lerp over rows
// of lerps over columns: torch interpolate(bilinear, align_corners=False, antialias=False) = cv2.INTER_LINEAR), then
// mask = value > threshold (0 for logits):
//   Sam (the default): segment-anything's postprocess_masks, the geometry the model was trained on (the mask loss
//     resizes the low-res logits to the padded input): resize (mh, mw) to the padded input (padded_h, padded_w),
//     keep its valid region [0, valid_h) x [0, valid_w), resize that to (orig_h, orig_w). Only the valid region of
//     the first resize is computed.
//   Evaluator: the official PixelLLM evaluator (scenic pixel_llm/evaluators.py, rescale_and_encode_masks), what the
//     published RefCOCO mask numbers use: crop the low-res logits to rows [0, int(valid_h * mh / padded_h)), cols
//     [0, int(valid_w * mw / padded_w)) (truncation, as the official int(); clamped to at least 1 row/col so tiny
//     images never give an empty crop) and resize the crop to (orig_h, orig_w). Where valid * mh / padded is not a
//     whole number the truncated crop is stretched over the image: masks move toward the bottom right by up to one
//     low-res cell (4 input pixels), which at small input sizes costs real IoU (engines/demo/TRAINING.md measures it on
//     the 224-pixel demo model).
// COCO RLE (pycocotools maskApi.c): counts of alternating runs over the mask in COLUMN-major order, starting with
// a run of zeros (possibly 0); the compressed string form is rleToString (LEB128-like 5-bit groups + '0', deltas
// against the count two back from the third count on). Masks here are row-major (height, width) bytes, any
// non-zero byte is foreground.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace pixelllm::pipeline {

enum class MaskResize { Sam, Evaluator };
// "sam" | "evaluator" (LoadOptions.mask_resize); INVALID_ARGUMENT otherwise.
MaskResize parse_mask_resize(const std::string& name);

struct MaskGeometry {
  int valid_h = 0, valid_w = 0;    // the resized image inside the padded input (pixels of the padded input)
  int padded_h = 0, padded_w = 0;  // the padded input the model saw (config image_size)
  int orig_h = 0, orig_w = 0;      // the original image
  MaskResize resize = MaskResize::Sam;
};

// logits (mh, mw) row-major -> out (orig_h, orig_w) row-major 0/1. INVALID_ARGUMENT on non-positive sizes or a
// valid region larger than the padded input.
void postprocess_mask(const float* logits, int mh, int mw, const MaskGeometry& g, uint8_t* out,
                      float threshold = 0.f);
std::vector<uint8_t> postprocess_mask(const float* logits, int mh, int mw, const MaskGeometry& g,
                                      float threshold = 0.f);
// The bilinear resize of step 2 alone (float in, float out), exposed for tests.
void resize_bilinear_half_pixel(const float* in, int in_h, int in_w, int in_stride, float* out, int out_h,
                                int out_w);

// Uncompressed COCO counts of a row-major (height, width) mask (sum of counts = width * height).
std::vector<uint32_t> rle_encode(const uint8_t* mask, int width, int height);
// Row-major 0/1 mask from counts; INVALID_ARGUMENT when the counts do not cover exactly width * height pixels.
std::vector<uint8_t> rle_decode(const std::vector<uint32_t>& counts, int width, int height);
// pycocotools rleToString / rleFrString. rle_from_string: INVALID_ARGUMENT on a malformed string or negative counts.
std::string rle_to_string(const std::vector<uint32_t>& counts);
std::vector<uint32_t> rle_from_string(const std::string& s);
// Foreground pixels (pycocotools area).
uint64_t rle_area(const std::vector<uint32_t>& counts);

// Tight box of the foreground of a row-major mask: x0, y0, x1, y1 with x1 / y1 exclusive (pixel edges; the COCO
// toBbox [x, y, w, h] is (x0, y0, x1 - x0, y1 - y0)). Returns false (box zeros) for an empty mask.
bool mask_bbox(const uint8_t* mask, int width, int height, float box[4]);

}  // namespace pixelllm::pipeline
