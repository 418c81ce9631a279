/**
 * The `pixelllm` command line:
 *   pixelllm caption  <image>               [--model DIR] [--json] [--render OUT.png]
 *   pixelllm describe <image> --box x0,y0,x1,y1
 *   pixelllm refer    <image> <expression>  [--mask]
 *   pixelllm segment  <image> --box x0,y0,x1,y1
 *   pixelllm dense    <image>
 *   pixelllm eval     --seed S --count N   (accuracy on freshly generated scenes, through the native runtime)
 *   pixelllm build-engines DIR [--fp16]    (TensorRT plans of a model directory, built ahead of the first load)
 *   pixelllm build-engines --check DIR [--gpu NAME --sm X.Y --trt-version V]   (are the recorded plans usable?)
 * Common: --model DIR (default: the demo model), --backend auto|cpu|tensorrt, --threads N, --decoder-weights fp32|bf16,
 * --encoder-precision fp32|bf16, --mask-resize sam|evaluator, --json, --render OUT.png
 * Output: human text by default (caption/describe stream their words as they are generated, then a summary);
 * --json: machine-readable (caption/describe: one JSON line per token, then one line with the result).
 * A progress bar goes to stderr, only when it is a TTY (dense, eval, build-engines). docs/cli.md documents every command.
 */
import { writeFile } from 'node:fs/promises';
import * as path from 'node:path';
import { parseArgs } from 'node:util';
import { InvalidArgumentError, PixelLLMError } from './errors';
import { assertEnginesUsable, buildEngines, formatBuild, formatPlanCheck, inspectEngines } from './engines';
import type { PlanIdentity } from './engines';
import { evaluate, formatEval } from './eval';
import type { Mask } from './masks';
import { checkChoice, PixelLLM } from './model';
import { progressBar } from './progress';
import { captionItems, denseItems, referItems, render, segmentItems } from './render';
import type { RenderItems } from './render';
import { BACKENDS, MASK_RESIZES, PRECISIONS } from './types';
import type { Backend, Box, CaptionResult, DecoderWeights, EncoderPrecision, LoadOptions, MaskResize, TokenEvent } from './types';

export const COMMANDS = ['caption', 'describe', 'refer', 'segment', 'dense', 'eval', 'build-engines'] as const;
export type Command = (typeof COMMANDS)[number];

export interface CliArgs {
  command: Command;
  image?: string;
  expression?: string;
  model?: string;
  backend: Backend;
  threads: number;
  decoderWeights?: DecoderWeights;
  encoderPrecision?: EncoderPrecision;
  maskResize?: MaskResize;
  json: boolean;
  box?: Box;
  mask: boolean;
  render?: string;
  /** caption/describe: a task prompt the text continues from. */
  prompt?: string;
  /** eval only. */
  seed?: number;
  count?: number;
  /** build-engines only: the model directory, fp16 graphs required, check instead of build, check target. */
  dir?: string;
  fp16?: boolean;
  check?: boolean;
  target?: PlanIdentity;
}

export const USAGE = `usage: pixelllm <caption|describe|refer|segment|dense> <image> [expression] [options]
       pixelllm eval --seed S --count N [--model DIR] [--json]
       pixelllm build-engines DIR [--fp16] [--json]
       pixelllm build-engines --check DIR [--gpu NAME --sm X.Y --trt-version V] [--json]
  --model DIR        model directory (default: the shipped demo model)
  --backend NAME     auto | cpu | tensorrt (default auto)
  --threads N        CPU threads (default: all cores)
  --decoder-weights fp32|bf16   CPU: text-decoder weights as bfloat16 (faster tokens, see README)
  --encoder-precision fp32|bf16 CPU: image encoders in bfloat16 arithmetic (AVX512-BF16; faster encode, see README)
  --mask-resize sam|evaluator   masks at the original size: sam (default) or the official evaluator's crop
  --box x0,y0,x1,y1  region in pixels (describe, segment)
  --mask             refer: also compute the mask
  --prompt TEXT      caption/describe: task prompt (e.g. 'a long image caption:')
  --seed S           eval: scene seed (default 0)
  --count N          eval: number of scenes (default 20)
  --fp16             build-engines: require and build the fp16 ONNX exports
  --check            build-engines: only check the recorded plans (exit 1, ENGINE_MISMATCH, when one is stale)
  --gpu/--sm/--trt-version   build-engines --check: the GPU name, compute capability and TensorRT version to
                     check against (default: the running ones)
  --json             print the result as JSON (caption/describe: one line per token, then the result)
  --render OUT.png   draw the result onto the image (words at their points, boxes, masks)`;

export function parseBox(text: string): Box {
  const v = text.split(',').map((s) => Number(s.trim()));
  if (v.length !== 4 || v.some((n) => !Number.isFinite(n))) throw new InvalidArgumentError(`--box must be x0,y0,x1,y1, got ${text}`);
  return [v[0], v[1], v[2], v[3]];
}

/** Parses argv (without node and the script); throws InvalidArgumentError with a message for the user. */
export function parseCli(argv: string[]): CliArgs {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      options: {
        model: { type: 'string' },
        backend: { type: 'string', default: 'auto' },
        threads: { type: 'string', default: '0' },
        'decoder-weights': { type: 'string', default: 'fp32' },
        'encoder-precision': { type: 'string', default: 'fp32' },
        'mask-resize': { type: 'string', default: 'sam' },
        json: { type: 'boolean', default: false },
        box: { type: 'string' },
        mask: { type: 'boolean', default: false },
        render: { type: 'string' },
        prompt: { type: 'string' },
        seed: { type: 'string' },
        count: { type: 'string' },
        fp16: { type: 'boolean', default: false },
        check: { type: 'boolean', default: false },
        gpu: { type: 'string' },
        sm: { type: 'string' },
        'trt-version': { type: 'string' },
      },
    });
  } catch (err) {
    throw new InvalidArgumentError((err as Error).message);
  }
  const { values, positionals } = parsed;
  const [command, image, ...rest] = positionals;
  if (!(COMMANDS as readonly string[]).includes(command)) throw new InvalidArgumentError(`unknown command ${command ?? '(none)'}`);
  const cmd = command as Command;
  const engineFlags = values.fp16 || values.check || values.gpu !== undefined || values.sm !== undefined || values['trt-version'] !== undefined;
  if (cmd !== 'build-engines' && engineFlags) throw new InvalidArgumentError('--fp16, --check, --gpu, --sm and --trt-version are for build-engines');
  if (cmd === 'build-engines') return parseBuildEngines(values, image, rest);
  if (cmd !== 'eval' && !image) throw new InvalidArgumentError(`${cmd} needs an image`);
  const backend = values.backend as Backend;
  checkChoice('--backend', backend, BACKENDS);
  const threads = Number(values.threads);
  if (!Number.isInteger(threads) || threads < 0) throw new InvalidArgumentError('--threads must be a non-negative integer');
  const decoderWeights = values['decoder-weights'] as DecoderWeights;
  checkChoice('--decoder-weights', decoderWeights, PRECISIONS);
  const encoderPrecision = values['encoder-precision'] as EncoderPrecision;
  checkChoice('--encoder-precision', encoderPrecision, PRECISIONS);
  const maskResize = values['mask-resize'] as MaskResize;
  checkChoice('--mask-resize', maskResize, MASK_RESIZES);
  const box = values.box === undefined ? undefined : parseBox(values.box);
  if ((cmd === 'describe' || cmd === 'segment') && !box) throw new InvalidArgumentError(`${cmd} needs --box x0,y0,x1,y1`);
  const expression = cmd === 'refer' ? rest.join(' ') : undefined;
  if (cmd === 'refer' && !expression) throw new InvalidArgumentError('refer needs an expression');
  if (cmd !== 'refer' && rest.length) throw new InvalidArgumentError(`unexpected arguments: ${rest.join(' ')}`);
  if (cmd === 'eval' && image) throw new InvalidArgumentError(`eval takes no image (it generates its scenes), got ${image}`);
  if (cmd !== 'eval' && (values.seed !== undefined || values.count !== undefined)) throw new InvalidArgumentError('--seed and --count are for eval');
  if (values.prompt !== undefined && cmd !== 'caption' && cmd !== 'describe') throw new InvalidArgumentError('--prompt is for caption and describe');
  const args: CliArgs = { command: cmd, image, expression, model: values.model, backend, threads, decoderWeights, encoderPrecision, maskResize, json: values.json ?? false, box, mask: values.mask ?? false, render: values.render };
  if (values.prompt !== undefined) args.prompt = values.prompt;
  if (cmd === 'eval') {
    args.seed = parseCount('--seed', values.seed ?? '0', 0);
    args.count = parseCount('--count', values.count ?? '20', 1);
  }
  return args;
}

function parseBuildEngines(values: Record<string, string | boolean | undefined>, dir: string | undefined, rest: string[]): CliArgs {
  if (!dir) throw new InvalidArgumentError('build-engines needs a model directory');
  if (rest.length) throw new InvalidArgumentError(`unexpected arguments: ${rest.join(' ')}`);
  for (const k of ['model', 'box', 'render', 'prompt', 'seed', 'count']) {
    if (values[k] !== undefined) throw new InvalidArgumentError(`--${k} is not an option of build-engines (the directory is its argument)`);
  }
  const { gpu, sm } = values as { gpu?: string; sm?: string };
  const trt = values['trt-version'] as string | undefined;
  const given = [gpu, sm, trt].filter((v) => v !== undefined).length;
  if (given !== 0 && given !== 3) throw new InvalidArgumentError('give all of --gpu, --sm and --trt-version, or none of them');
  if (given && !values.check) throw new InvalidArgumentError('--gpu, --sm and --trt-version are for build-engines --check');
  if (values.check && values.fp16) throw new InvalidArgumentError('--fp16 is for building, not --check');
  if (sm !== undefined && !/^\d+\.\d+$/.test(sm)) throw new InvalidArgumentError(`--sm must look like 9.0, got ${sm}`);
  if (trt !== undefined && !/^\d+\.\d+\.\d+$/.test(trt)) throw new InvalidArgumentError(`--trt-version must look like 10.16.1, got ${trt}`);
  const args: CliArgs = { command: 'build-engines', dir, backend: 'tensorrt', threads: 0, json: Boolean(values.json), mask: false, fp16: Boolean(values.fp16), check: Boolean(values.check) };
  if (given) args.target = { gpu: gpu!, computeCapability: sm!, tensorrtVersion: trt! };
  return args;
}

async function runBuildEngines(args: CliArgs): Promise<void> {
  const dir = args.dir!;
  if (args.check) {
    const report = await inspectEngines(dir, { target: args.target });
    print(args.json, report, formatPlanCheck(report));
    assertEnginesUsable(dir, report);
    return;
  }
  let bar = progressBar(1, 'engines');
  try {
    const result = await buildEngines(dir, {
      fp16: args.fp16,
      onProgress: (e) => {
        if (e.index === 0 && !e.done) {
          bar.done();
          bar = progressBar(e.total, 'engines');
        }
        if (e.done) bar.tick(1, e.group);
        else bar.tick(0, `${e.group}...`);
      },
    });
    bar.done();
    print(args.json, result, formatBuild(result));
  } finally {
    bar.done();
  }
}

function parseCount(name: string, text: string, min: number): number {
  const v = Number(text);
  if (!/^\d+$/.test(text.trim()) || !Number.isSafeInteger(v) || v < min) throw new InvalidArgumentError(`${name} must be an integer >= ${min}, got ${text}`);
  return v;
}

function print(json: boolean, value: unknown, text: string): void {
  process.stdout.write(json ? JSON.stringify(value) + '\n' : text + '\n');
}

const fmt = (v: number, d = 1) => v.toFixed(d);
const fmtBox = (b: Box) => b.map((v) => fmt(v)).join(',');

async function writeRender(args: CliArgs, items: RenderItems): Promise<void> {
  if (!args.render) return;
  await writeFile(args.render, await render(args.image!, items));
  process.stderr.write(`pixelllm: wrote ${path.resolve(args.render)}\n`);
}

function tokenLine(e: TokenEvent): string {
  return JSON.stringify({ type: 'token', index: e.index, token: e.token, text: e.text, point: e.point, box: e.box, logprob: e.logprob });
}

/** Human summary after a streamed caption: the words with their points, the score and the speed. */
function captionSummary(result: CaptionResult, ms: number): string {
  const words = result.events.filter((e) => e.text.trim() !== '').map((e) => `${e.text.trim()}@${fmt(e.point[0], 0)},${fmt(e.point[1], 0)}`);
  const speed = ms > 0 ? `, ${fmt(result.tokens.length / (ms / 1000))} tokens/s` : '';
  return `\n\n${words.join(' ')}\n${result.tokens.length} tokens, score ${fmt(result.score, 3)}${speed}${result.box ? `, box ${fmtBox(result.box)}` : ''}`;
}

function loadOptions(args: CliArgs): LoadOptions {
  return { backend: args.backend, threads: args.threads, decoderWeights: args.decoderWeights, encoderPrecision: args.encoderPrecision, maskResize: args.maskResize };
}

async function runEval(args: CliArgs): Promise<void> {
  const bar = progressBar(args.count!, 'eval');
  try {
    const result = await evaluate({ seed: args.seed!, count: args.count!, model: args.model, ...loadOptions(args), onScene: () => bar.tick() });
    bar.done();
    print(args.json, result, formatEval(result));
  } finally {
    bar.done();
  }
}

async function run(args: CliArgs): Promise<void> {
  if (args.command === 'eval') return runEval(args);
  if (args.command === 'build-engines') return runBuildEngines(args);
  const model = await PixelLLM.load(args.model, loadOptions(args));
  try {
    const image = await model.encode(args.image!);
    switch (args.command) {
      case 'caption':
      case 'describe': {
        const options = args.prompt === undefined ? {} : { prompt: args.prompt };
        const t0 = performance.now();
        const gen = args.command === 'caption' ? model.caption(image, options) : model.describe(image, args.box!, options);
        for await (const t of gen) process.stdout.write(args.json ? tokenLine(t) + '\n' : t.text);
        const result = await gen.result;
        const ms = performance.now() - t0;
        if (args.json) process.stdout.write(JSON.stringify({ type: 'result', ...result, ms }) + '\n');
        else process.stdout.write(captionSummary(result, ms) + '\n');
        await writeRender(args, captionItems(result, args.box));
        break;
      }
      case 'refer': {
        const result = await model.refer(image, args.expression!, { mask: args.mask });
        print(args.json, { ...result, mask: result.mask?.rle }, `box ${fmtBox(result.box)} score ${fmt(result.score, 3)}${result.mask ? ` mask area ${result.mask.area()} iou ${fmt(result.maskScore ?? 0, 3)}` : ''}`);
        await writeRender(args, referItems(args.expression!, result));
        break;
      }
      case 'segment': {
        const result = await model.segment(image, args.box!);
        print(args.json, { ...result, mask: result.mask.rle }, `mask area ${result.mask.area()} score ${fmt(result.score, 3)}`);
        await writeRender(args, segmentItems(result));
        break;
      }
      case 'dense': {
        const withMasks = Boolean(args.render) && model.info.hasMaskDecoder;
        const bar = progressBar(1, 'dense');
        try {
          const items = await model.denseCaption(image);
          const masks: (Mask | undefined)[] = [];
          if (withMasks) {
            const more = progressBar(items.length, 'masks');
            try {
              for (const it of items) {
                masks.push((await model.segment(image, it.box)).mask);
                more.tick();
              }
            } finally {
              more.done();
            }
          }
          bar.done();
          print(args.json, items, items.map((it) => `${fmtBox(it.box)}  ${fmt(it.score, 2)}  ${it.text}`).join('\n') || '(no objects found)');
          await writeRender(args, denseItems(items, withMasks ? masks : undefined));
        } finally {
          bar.done();
        }
        break;
      }
    }
  } finally {
    model.dispose();
  }
}

/** Is --help / -h among the options (before a `--` that ends them), with or without a command? */
export function wantsHelp(argv: string[]): boolean {
  const end = argv.indexOf('--');
  return (end < 0 ? argv : argv.slice(0, end)).some((a) => a === '--help' || a === '-h');
}

/** Runs the CLI; resolves with the exit code (0 ok, 1 failure, 2 usage). */
export async function main(argv: string[]): Promise<number> {
  if (argv.length === 0 || wantsHelp(argv)) {
    process.stdout.write(USAGE + '\n');
    return argv.length === 0 ? 2 : 0;
  }
  let args: CliArgs;
  try {
    args = parseCli(argv);
  } catch (err) {
    process.stderr.write(`pixelllm: ${(err as Error).message}\n${USAGE}\n`);
    return 2;
  }
  try {
    await run(args);
    return 0;
  } catch (err) {
    const code = err instanceof PixelLLMError ? ` [${err.code}]` : '';
    process.stderr.write(`pixelllm: ${(err as Error).message}${code}\n`);
    return 1;
  }
}
