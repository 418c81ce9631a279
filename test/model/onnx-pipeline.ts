/**
 * A small PixelLLM pipeline over onnxruntime-node sessions on the reference's ONNX export
 * (engines/reference/pixelllm_ref/export_onnx.py): an independent second runtime for test/model/onnx.test.ts.
 *
 * It follows the reference composition (pixelllm_ref/model.py `PixelLLM.inference`, decoding.py `greedy_decode`,
 * `clean_after_eos`, `text_inference`; point_head.py `token_valid_mask` / `boxes_from_points`), i.e. the official
 * pixel_llm.py inference: image encoder on the padded image, prompt adapter with the whole-image box, greedy decode
 * over an explicit KV cache (decoder_prefill, then decoder_step with a fixed capacity and past_key_bias), the
 * cleaned token row re-run through decoder_prefill for the hidden states and the per-token corners, the box from
 * the valid tokens' points, and mask_decoder on that box.
 */
import { existsSync, readFileSync } from 'node:fs';
import * as path from 'node:path';
import type * as OrtNs from 'onnxruntime-node';

type Ort = typeof OrtNs;
type Tensor = OrtNs.Tensor;

const REPEAT_LOGIT = -1e4;   // official greedy: previous token's logit capped (decoding.py REPEAT_LOGIT)
const T5_MASK = -1e10;       // t5.MASK_BIAS

export interface Config {
  text_decoder: 'git_decoder' | 't5';
  image_size: number;
  bos_token_id: number;
  eos_token_id: number;
  max_caption_length: number;
  point_head: { point_output_ignore: string };
  git_decoder?: { num_layers: number; num_heads: number; hidden_size: number };
  t5?: { num_decoder_layers: number; num_heads: number; d_kv: number };
  proposal_head?: unknown;
}

export interface TextResult {
  /** The token row (max_caption_length) after clean_after_eos. */
  row: number[];
  /** Words: the row between BOS and the first EOS. */
  words: number[];
  /** The official score: the mean log-prob of the greedy picks (words + an EOS written before the last
   *  position; the last position is never written) over the words. */
  score: number;
  /** Per word: log-prob (the greedy rule's for the caption, plain for teacher forcing). */
  logprobs: number[];
  /** Log-prob of the EOS (undefined when the row has none). */
  eosLogprob?: number;
  /** Per word: corners x0, y0, x1, y1 (px of the unpadded image). */
  corners: number[][];
  box: number[];
  /** Top-2 logit gap of each greedy step (caption only): how close a tie each pick was. */
  gaps: number[];
  hidden: Float32Array;   // (L, D) of the cleaned row
  hiddenDim: number;
}

export interface MaskResult {
  logits: Float32Array;
  iou: number;
}

function logSoftmax(x: Float32Array | number[], i: number): number {
  let m = -Infinity;
  for (const v of x) if (v > m) m = v;
  let s = 0;
  for (const v of x) s += Math.exp(v - m);
  return x[i] - m - Math.log(s);
}

/** Official utils.get_token_valid_mask (point_head.token_valid_mask) for one row. */
export function tokenValidMask(row: number[], ignore: string, bos: number, eos: number): boolean[] {
  const negate = ignore.startsWith('^');
  const kinds = (negate ? ignore.slice(1) : ignore).split(',');
  return row.map((t, i) => {
    let v = true;
    if (kinds.includes('pad')) v &&= t > 0;
    if (kinds.includes('begin')) v &&= t !== bos;
    if (kinds.includes('end')) v &&= t !== eos;
    if (kinds.includes('end-1')) v &&= (i + 1 < row.length ? row[i + 1] : 0) !== eos;
    if (kinds.includes('text')) v &&= t === bos || t === eos || t === 0;
    return negate ? !v : v;
  });
}

/** point_head.boxes_from_points for one row: corners (L, K, 2) flat, valid (L) -> x0, y0, x1, y1. */
export function boxFromPoints(corners: Float32Array, k: number, valid: boolean[]): number[] {
  const xs: number[] = [];
  const ys: number[] = [];
  const vx: number[] = [];
  const vy: number[] = [];
  for (let l = 0; l < valid.length; l++)
    for (let j = 0; j < k; j++) {
      const x = corners[(l * k + j) * 2];
      const y = corners[(l * k + j) * 2 + 1];
      xs.push(x);
      ys.push(y);
      if (valid[l]) { vx.push(x); vy.push(y); }
    }
  if (!vx.length) return [Math.max(...xs) + 1, Math.max(...ys) + 1, Math.min(...xs) - 1, Math.min(...ys) - 1];
  return [Math.min(...vx), Math.min(...vy), Math.max(...vx), Math.max(...vy)];
}

export class OnnxPipeline {
  private sessions: Record<string, OrtNs.InferenceSession> = {};
  readonly t5: boolean;
  readonly layers: number;
  readonly heads: number;
  readonly headDim: number;

  private constructor(private ort: Ort, private dir: string, private suffix: string, readonly cfg: Config) {
    this.t5 = cfg.text_decoder === 't5';
    if (this.t5) {
      const c = cfg.t5!;
      [this.layers, this.heads, this.headDim] = [c.num_decoder_layers, c.num_heads, c.d_kv];
    } else {
      const c = cfg.git_decoder!;
      [this.layers, this.heads, this.headDim] = [c.num_layers, c.num_heads, c.hidden_size / c.num_heads];
    }
  }

  /** onnxDir holds <group>.onnx (fp16: <group>.fp16.onnx); cfg is the model dir's config.json. */
  static async create(onnxDir: string, modelDir: string, fp16: boolean): Promise<OnnxPipeline> {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const ort = require('onnxruntime-node') as Ort;
    const cfg = JSON.parse(readFileSync(path.join(modelDir, 'config.json'), 'utf8')) as Config;
    return new OnnxPipeline(ort, onnxDir, fp16 ? '.fp16' : '', cfg);
  }

  async release(): Promise<void> {
    for (const s of Object.values(this.sessions)) await s.release();
    this.sessions = {};
  }

  private async run(group: string, feeds: Record<string, Tensor>): Promise<Record<string, Tensor>> {
    if (!this.sessions[group]) {
      this.sessions[group] = await this.ort.InferenceSession.create(path.join(this.dir, `${group}${this.suffix}.onnx`), {
        intraOpNumThreads: 1, interOpNumThreads: 1, executionMode: 'sequential', graphOptimizationLevel: 'all',
      });
    }
    return this.sessions[group].run(feeds);
  }

  private f32(data: Float32Array, dims: number[]): Tensor {
    return new this.ort.Tensor('float32', data, dims);
  }

  private i64(data: number[], dims: number[]): Tensor {
    return new this.ort.Tensor('int64', BigInt64Array.from(data.map((v) => BigInt(v))), dims);
  }

  /** image_encoder on the 8-bit image pasted top-left on the model-size canvas (zeros elsewhere, mask 1 = valid):
   *  the native preprocessing for an image that needs no resize (the golden and fixture images). */
  async encode(rgb: Uint8Array, width: number, height: number): Promise<{ features: Tensor; sam: Tensor }> {
    const s = this.cfg.image_size;
    if (width > s || height > s || Math.max(width, height) !== s) {
      throw new Error(`OnnxPipeline.encode: ${width}x${height} needs a resize to ${s} (only the identity is supported)`);
    }
    const img = new Float32Array(s * s * 3);
    const mask = new Float32Array(s * s);
    for (let y = 0; y < height; y++)
      for (let x = 0; x < width; x++) {
        mask[y * s + x] = 1;
        for (let c = 0; c < 3; c++) img[(y * s + x) * 3 + c] = rgb[(y * width + x) * 3 + c];
      }
    const out = await this.run('image_encoder', { images: this.f32(img, [1, s, s, 3]), padding_mask: this.f32(mask, [1, s, s]) });
    return { features: out.features, sam: out.sam_features };
  }

  /** prompt_adapter on one box (captioning / referring: the whole valid image [0, 0, w, h], model.py
   *  `PixelLLM.default_boxes`, what the official data pipeline gives). */
  async visualTokens(features: Tensor, box: number[]): Promise<Tensor> {
    const b = Float32Array.from(box);
    const out = await this.run('prompt_adapter', { features, boxes: this.f32(b, [1, 1, 4]) });
    const vt = out.visual_tokens;
    return this.f32(vt.data as Float32Array, [1, vt.dims[2] as number, vt.dims[3] as number]);
  }

  private prefill(visual: Tensor, context: number[], text: number[], hw: number[]) {
    return this.run('decoder_prefill', {
      visual_tokens: visual, context_tokens: this.i64(context, [1, context.length]),
      text_tokens: this.i64(text, [1, text.length]), image_hw: this.f32(Float32Array.from(hw), [1, 2]),
    });
  }

  /** T5 only: the official full pass (pixelllm_ref.export_onnx T5ForwardGraph); same I/O as the prefill's heads. */
  private forward(visual: Tensor, contextIn: number[], text: number[], hw: number[]) {
    const file = path.join(this.dir, `decoder_forward${this.suffix}.onnx`);
    if (!existsSync(file)) throw new Error(`${file} is missing: re-export with scripts/export-test-onnx.sh`);
    // As the native mask path (pipeline/tasks.cc decode_mask) and the official data pipeline: a context is 0-padded
    // to the official row length (max_context_length, default max_caption_length); T5's rows after the EOS attend
    // uniformly over every encoder key, the padding included. No context = one 0 token.
    const { max_caption_length: maxLen, max_context_length: maxCtx } = this.cfg as Config & { max_context_length?: number };
    const context = contextIn.length ? contextIn.slice() : [0];
    if (contextIn.length) while (context.length < (maxCtx ?? maxLen)) context.push(0);
    return this.run('decoder_forward', {
      visual_tokens: visual, context_tokens: this.i64(context, [1, context.length]),
      text_tokens: this.i64(text, [1, text.length]), image_hw: this.f32(Float32Array.from(hw), [1, 2]),
    });
  }

  /** Official greedy_decode over decoder_prefill + decoder_step with a cache of fixed capacity. */
  async greedy(visual: Tensor, context: number[], hw: number[]): Promise<{ row: number[]; gaps: number[] }> {
    const { bos_token_id: bos, eos_token_id: eos, max_caption_length: maxLen } = this.cfg;
    const [H, Dh, NL] = [this.heads, this.headDim, this.layers];
    const row = new Array<number>(maxLen).fill(eos);
    row[0] = bos;
    const pre = await this.prefill(visual, context, [bos], hw);
    // Cache layout: GIT entries = prefix (visual + context) then text positions; T5 entries = text positions.
    const prefixLen = this.t5 ? 0 : (pre.key_bias.dims[1] as number) - 1;
    const cap = prefixLen + maxLen;
    const masked = this.t5 ? T5_MASK : -Infinity;
    const bias = new Float32Array(cap).fill(masked);
    const kb = pre.key_bias.data as Float32Array;
    bias.set(kb, 0);
    const cache: Float32Array[] = [];
    const lk = pre.key_bias.dims[1] as number;
    for (let i = 0; i < NL; i++)
      for (const kind of ['key', 'value']) {
        const src = pre[`present_${kind}.${i}`].data as Float32Array;   // (1, H, lk, Dh)
        const dst = new Float32Array(H * cap * Dh);
        for (let h = 0; h < H; h++) dst.set(src.subarray(h * lk * Dh, (h + 1) * lk * Dh), h * cap * Dh);
        cache.push(dst);
      }
    const fixed: Record<string, Tensor> = { image_hw: this.f32(Float32Array.from(hw), [1, 2]) };
    if (this.t5) {
      fixed.encoder_key_bias = pre.encoder_key_bias;
      for (let i = 0; i < NL; i++) for (const kind of ['key', 'value']) fixed[`cross_${kind}.${i}`] = pre[`cross_${kind}.${i}`];
    }
    let logits = (pre.logits.data as Float32Array).slice();
    const gaps: number[] = [];
    for (let cur = 1; cur < maxLen - 1; cur++) {
      const last = row[cur - 1];
      if (last === eos) break;   // one row: every row finished
      if (cur > 1) {
        const p = cur - 1;   // feed row[p] at text position p
        if (this.t5) bias[p - 1] = last === 0 ? T5_MASK : 0;
        const feeds: Record<string, Tensor> = {
          ...fixed, tokens: this.i64([last], [1]), position: this.i64([p], [1]), past_key_bias: this.f32(bias.slice(), [1, cap]),
        };
        for (let i = 0; i < NL; i++)
          ['key', 'value'].forEach((kind, j) => { feeds[`past_${kind}.${i}`] = this.f32(cache[2 * i + j], [1, H, cap, Dh]); });
        const out = await this.run('decoder_step', feeds);
        logits = (out.logits.data as Float32Array).slice();
        const at = prefixLen + p;
        for (let i = 0; i < NL; i++)
          ['key', 'value'].forEach((kind, j) => {
            const r = out[`present_${kind}.${i}`].data as Float32Array;   // (1, H, 1, Dh)
            for (let h = 0; h < H; h++) cache[2 * i + j].set(r.subarray(h * Dh, (h + 1) * Dh), (h * cap + at) * Dh);
          });
        if (!this.t5) bias[at] = 0;
      }
      logits[last] = Math.min(logits[last], REPEAT_LOGIT);
      let best = 0;
      for (let v = 1; v < logits.length; v++) if (logits[v] > logits[best]) best = v;   // first maximal index
      let second = -Infinity;
      for (let v = 0; v < logits.length; v++) if (v !== best && logits[v] > second) second = logits[v];
      gaps.push(logits[best] - second);
      row[cur] = best;
    }
    return { row, gaps };
  }

  /** clean_after_eos + the teacher-forced pass over the row: hidden states, corners, box, per-word log-probs. */
  async text(visual: Tensor, context: number[], rowIn: number[], hw: number[], capped: boolean): Promise<TextResult> {
    const { bos_token_id: bos, eos_token_id: eos, max_caption_length: maxLen } = this.cfg;
    const row = rowIn.slice();
    while (row.length < maxLen) row.push(0);
    const end = row.indexOf(eos);
    if (end >= 0) row.fill(0, end + 1);   // clean_after_eos
    const words = row.slice(1, end < 0 ? row.length : end);
    // The official teacher-forced pass over the cleaned row: GIT's is its prefill; T5's is `decoder_forward`, whose
    // rows from the EOS on attend uniformly (the prefill runs them with step semantics) and the mask adapter reads them.
    const out = this.t5 ? await this.forward(visual, context, row, hw) : await this.prefill(visual, context, row, hw);
    const [L, V] = [out.logits.dims[1] as number, out.logits.dims[2] as number];
    const K = out.corners.dims[2] as number;
    const lg = out.logits.data as Float32Array;
    const lps: number[] = [];
    for (let p = 1; p <= words.length + (end < 0 ? 0 : 1) && p < L; p++) {
      const r = lg.slice((p - 1) * V, p * V);
      if (capped) r[row[p - 1]] = Math.min(r[row[p - 1]], REPEAT_LOGIT);
      lps.push(logSoftmax(r, row[p]));
    }
    const cr = out.corners.data as Float32Array;
    const corners = words.map((_, w) => Array.from(cr.subarray((w + 1) * K * 2, (w + 2) * K * 2)));
    const valid = tokenValidMask(row, this.cfg.point_head.point_output_ignore, bos, eos);
    const picks = end >= 0 && end <= maxLen - 2 ? lps.length : words.length;
    const score = lps.slice(0, picks).reduce((a, b) => a + b, 0) / Math.max(1, words.length);
    return {
      row, words, score, logprobs: lps.slice(0, words.length), eosLogprob: lps.length > words.length ? lps[words.length] : undefined,
      corners, box: boxFromPoints(cr, K, valid), gaps: [],
      hidden: out.hidden.data as Float32Array, hiddenDim: out.hidden.dims[2] as number,
    };
  }

  /** mask_decoder on one box with the visual tokens and the cleaned row's hidden states. */
  async mask(sam: Tensor, box: number[], visual: Tensor, t: TextResult): Promise<MaskResult> {
    const [T, Dv] = [visual.dims[1] as number, visual.dims[2] as number];
    const L = t.row.length;
    const out = await this.run('mask_decoder', {
      sam_features: sam, boxes: this.f32(Float32Array.from(box), [1, 1, 4]),
      visual_tokens: this.f32(visual.data as Float32Array, [1, 1, T, Dv]),
      text_hidden: this.f32(t.hidden, [1, 1, L, t.hiddenDim]),
    });
    return { logits: out.mask_logits.data as Float32Array, iou: (out.iou.data as Float32Array)[0] };
  }

  /** proposal_head: heatmap logits (G, G) and box regressions (G, G, 4). */
  async proposals(features: Tensor): Promise<{ heatmap: Float32Array; boxRegs: Float32Array; grid: number }> {
    const out = await this.run('proposal_head', { features });
    return { heatmap: out.heatmap.data as Float32Array, boxRegs: out.box_regs.data as Float32Array, grid: out.heatmap.dims[1] as number };
  }
}
