// The threads that run generations (caption / refer / describe), apart from the libuv pool.
//
// libuv's pool has 4 threads unless UV_THREADPOOL_SIZE is set before its first use, which an addon cannot
// ensure. Generations of concurrent requests must run at the same time for the CPU backend to batch their decode
// steps (runtime/cpu/step_batcher.h): 8 concurrent captions on 4 pool threads would step 4 rows at a time, and
// would also hold back every other pool user (sharp, fs, encodes) while they decode. So generations run here: a
// pool that grows on demand up to kMaxThreads (the batcher's useful batch size), then queues. The threads sleep
// when idle; they are never joined (a process exits with them idle or blocked in a call like libuv's own).
#pragma once

#include <functional>

namespace pixelllm::addon {

constexpr int kMaxDecodeThreads = 16;

// Runs `task` on a decode thread (a new one while fewer than kMaxDecodeThreads exist and all are busy).
// `task` must not throw.
void RunOnDecodeThread(std::function<void()> task);

}  // namespace pixelllm::addon
