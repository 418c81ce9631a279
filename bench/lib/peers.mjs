// The benchmark peers: line-protocol servers (the native bench executable, the PyTorch reference) and
// onnxruntime-node sessions on the reference's ONNX exports, in this process.
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { performance } from 'node:perf_hooks';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);

// A child process answering one JSON line per command line (bench/native/bench_native.cc, bench/torch_peer.py).
export class LineServer {
  constructor(name, cmd, args, env) {
    this.name = name;
    this.proc = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'pipe'], env });
    this.queue = [];
    this.stderr = '';
    this.proc.stderr.on('data', (d) => {
      this.stderr = (this.stderr + d.toString()).slice(-4000);
    });
    const rl = createInterface({ input: this.proc.stdout });
    rl.on('line', (line) => {
      if (!line.startsWith('{')) return;
      const waiter = this.queue.shift();
      if (waiter) waiter.resolve(JSON.parse(line));
    });
    this.proc.on('exit', (code) => {
      for (const w of this.queue.splice(0)) {
        w.reject(new Error(`${this.name} exited (${code}): ${this.stderr.trim().split('\n').slice(-5).join(' | ')}`));
      }
    });
    this.ready = this.next();
    // A peer that dies at start (e.g. the bf16 one without AVX512-BF16) rejects its calls, not the process.
    this.ready.catch(() => {});
    this.proc.stdin.on('error', () => {});
  }

  next() {
    return new Promise((resolve, reject) => this.queue.push({ resolve, reject }));
  }

  async call(command) {
    await this.ready;
    const p = this.next();
    this.proc.stdin.write(command + '\n');
    const res = await p;
    if (res.error) throw new Error(`${this.name} '${command}': ${res.error}`);
    return res;
  }

  async close() {
    try {
      this.proc.stdin.end('quit\n');
    } catch {
      /* already gone */
    }
    await new Promise((r) => (this.proc.exitCode !== null ? r() : this.proc.on('exit', r)));
  }
}

// onnxruntime-node on <model>/onnx/*.onnx with the same thread count (intra-op = threads, inter-op = 1).
export class OrtPeer {
  static available() {
    try {
      const ort = require('onnxruntime-node');
      return { ok: true, version: ort.env.versions?.node ?? 'unknown' };
    } catch (err) {
      return { ok: false, reason: String(err?.message ?? err) };
    }
  }

  constructor(dir, cfg, threads) {
    this.ort = require('onnxruntime-node');
    this.dir = dir;
    this.cfg = cfg;
    this.threads = threads;
    this.sessions = {};
  }

  async session(group) {
    if (!this.sessions[group]) {
      this.sessions[group] = await this.ort.InferenceSession.create(`${this.dir}/onnx/${group}.onnx`, {
        intraOpNumThreads: this.threads,
        interOpNumThreads: 1,
        executionMode: 'sequential',
        graphOptimizationLevel: 'all',
      });
    }
    return this.sessions[group];
  }

  imageFeeds() {
    const s = this.cfg.image_size;
    const img = new Float32Array(s * s * 3);
    for (let y = 0; y < s; ++y)
      for (let x = 0; x < s; ++x)
        for (let c = 0; c < 3; ++c) img[(y * s + x) * 3 + c] = (x * (c + 1) + y * (3 - c) * 7) & 255;
    const T = this.ort.Tensor;
    return { images: new T('float32', img, [1, s, s, 3]), padding_mask: new T('float32', new Float32Array(s * s).fill(1), [1, s, s]) };
  }

  async encode() {
    const sess = await this.session('image_encoder');
    const feeds = (this.encodeFeeds ??= this.imageFeeds());
    const t0 = performance.now();
    await sess.run(feeds);
    return { ms: performance.now() - t0 };
  }

  // Feeds for one decoder step at text position `pos` with an explicit KV cache of nVisual + pos entries (all
  // valid), random K/V values: the same attended length as the native step at that position.
  stepFeeds(pos, nVisual) {
    const g = this.cfg.git_decoder;
    const H = g.num_heads, Dh = g.hidden_size / g.num_heads, C = nVisual + pos;
    const T = this.ort.Tensor;
    let seed = 12345;
    const rnd = () => ((seed = (seed * 1103515245 + 12345) >>> 0) / 2 ** 32) * 2 - 1;
    const feeds = {
      tokens: new T('int64', BigInt64Array.from([BigInt(this.cfg.bos_token_id + 5)]), [1]),
      position: new T('int64', BigInt64Array.from([BigInt(pos)]), [1]),
      image_hw: new T('float32', Float32Array.from([this.cfg.image_size, this.cfg.image_size]), [1, 2]),
      past_key_bias: new T('float32', new Float32Array(C), [1, C]),
    };
    for (let i = 0; i < g.num_layers; ++i)
      for (const kind of ['key', 'value']) {
        const a = new Float32Array(H * C * Dh);
        for (let j = 0; j < a.length; ++j) a[j] = rnd();
        feeds[`past_${kind}.${i}`] = new T('float32', a, [1, H, C, Dh]);
      }
    return feeds;
  }

  async step(pos, nVisual, reps) {
    const sess = await this.session('decoder_step');
    const feeds = this.stepFeeds(pos, nVisual);
    await sess.run(feeds);  // warm
    const ms = [];
    for (let r = 0; r < reps; ++r) {
      const t0 = performance.now();
      await sess.run(feeds);
      ms.push(performance.now() - t0);
    }
    return ms;
  }

  async release() {
    for (const s of Object.values(this.sessions)) await s.release?.();
    this.sessions = {};
  }
}
