// The threads that run generations (caption / refer / describe), apart from the libuv pool.
//
// libuv's pool has 4 threads unless UV_THREADPOOL_SIZE is set before its first use, which an addon cannot
// ensure. Generations of concurrent requests must run at the same time for the CPU backend to batch their decode
// steps (runtime/cpu/step_batcher.h): 8 concurrent captions on 4 pool threads would step 4 rows at a time, and
// would also hold back every other pool user (sharp, fs, encodes) while they decode. So generations run here: a
// pool that grows on demand up to kMaxThreads (the batcher's useful batch size), then queues. The threads sleep
// when idle; they are never joined (a process exits with them idle or blocked in a call like libuv's own).
//
// Priority (Linux): each decode thread (named "pixelllm-decode") lowers its own scheduling priority by kDecodeThreadNice nice levels below
// the thread that created it (the event loop), capped at 19; PIXELLLM_DECODE_THREAD_NICE=<0..19> overrides the
// step (0 keeps the creator's). On a machine with fewer free cores than runnable threads, the 1 ms wake-ups of the
// event loop otherwise wait behind a decode thread's scheduler slice: the loop's p99 delay while captioning went
// 3.7 -> 2.4 ms (serial) and 3.6 -> 2.5 ms (8 concurrent) with +10 on the 2-core shared VM (bench/lag.mjs,
// bench/README.md). Generations then yield to same-process work at normal priority (libuv pool, JS) and, under
// contention, get a smaller CPU share against other processes; on an idle machine nothing changes.
#pragma once

#include <functional>

namespace pixelllm::addon {

constexpr int kMaxDecodeThreads = 16;
constexpr int kDecodeThreadNice = 10;

// The nice step a new decode thread applies (kDecodeThreadNice or PIXELLLM_DECODE_THREAD_NICE when set to an
// integer 0..19; other values are ignored).
int DecodeThreadNiceStep();

// Runs `task` on a decode thread (a new one while fewer than kMaxDecodeThreads exist and all are busy).
// `task` must not throw.
void RunOnDecodeThread(std::function<void()> task);

}  // namespace pixelllm::addon
