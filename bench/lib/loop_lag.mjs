// Event-loop delay over a window (monitorEventLoopDelay, 1 ms resolution) and what the main thread did meanwhile:
// its CPU time and the time it sat runnable waiting for a CPU (Linux schedstat). Used by bench/run.mjs
// (loopLagP99Ms) and bench/lag.mjs.
import { readFileSync } from 'node:fs';
import { monitorEventLoopDelay, performance } from 'node:perf_hooks';
import { round } from './stats.mjs';

// The main thread's scheduler statistics: ns on a CPU, ns runnable but waiting, time slices. Null off Linux.
function schedstat() {
  try {
    const [run, wait, slices] = readFileSync(`/proc/self/task/${process.pid}/schedstat`, 'utf8').trim().split(/\s+/).map(Number);
    return { run, wait, slices };
  } catch {
    return null;
  }
}

// Measures `ms` of an idle loop (work = null) or of `await work()` repeated until `ms` have passed; work returns how
// many captions it ran. Returns p99 / p50 / max delay (ms), captions, process CPU % and the main thread's numbers.
export async function loopLag(ms, work = null) {
  const h = monitorEventLoopDelay({ resolution: 1 });
  const s0 = schedstat();
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  h.enable();
  let captions = 0;
  if (work) {
    do captions += await work();
    while (performance.now() - t0 < ms);
  } else {
    await new Promise((r) => setTimeout(r, ms));
  }
  h.disable();
  const wall = performance.now() - t0;
  const cpu = process.cpuUsage(cpu0);
  const s1 = schedstat();
  const main = s0 && s1
    ? { runMs: round((s1.run - s0.run) / 1e6, 1), runqueueWaitMs: round((s1.wait - s0.wait) / 1e6, 1),
      waitPerWakeUs: round((s1.wait - s0.wait) / 1e3 / Math.max(1, s1.slices - s0.slices), 1) }
    : null;
  return { p99Ms: round(h.percentile(99) / 1e6, 3), p50Ms: round(h.percentile(50) / 1e6, 3), maxMs: round(h.max / 1e6, 3),
    captions, wallMs: round(wall, 0), processCpuPct: round((100 * (cpu.user + cpu.system)) / 1e3 / wall, 0), mainThread: main };
}
