/**
 * The `pixelllm` command line:
 *   pixelllm caption  <image>               [--model DIR] [--json] [--render OUT.png]
 *   pixelllm describe <image> --box x0,y0,x1,y1
 *   pixelllm refer    <image> <expression>  [--mask]
 *   pixelllm segment  <image> --box x0,y0,x1,y1
 *   pixelllm dense    <image>
 *   pixelllm eval     (not built yet: accuracy on freshly generated scenes)
 * Common: --model DIR (default: the demo model), --backend auto|cpu|tensorrt, --threads N, --json, --render OUT.png
 */
import { writeFile } from 'node:fs/promises';
import { parseArgs } from 'node:util';
import { InvalidArgumentError, PixelLLMError } from './errors';
import { PixelLLM } from './model';
import { render } from './render';
import type { Backend, Box } from './types';

export const COMMANDS = ['caption', 'describe', 'refer', 'segment', 'dense', 'eval'] as const;
export type Command = (typeof COMMANDS)[number];

export interface CliArgs {
  command: Command;
  image?: string;
  expression?: string;
  model?: string;
  backend: Backend;
  threads: number;
  json: boolean;
  box?: Box;
  mask: boolean;
  render?: string;
}

export const USAGE = `usage: pixelllm <caption|describe|refer|segment|dense|eval> <image> [expression] [options]
  --model DIR        model directory (default: the shipped demo model)
  --backend NAME     auto | cpu | tensorrt (default auto)
  --threads N        CPU threads (default: all cores)
  --box x0,y0,x1,y1  region in pixels (describe, segment)
  --mask             refer: also compute the mask
  --json             print the result as JSON
  --render OUT.png   draw the result onto the image`;

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
        json: { type: 'boolean', default: false },
        box: { type: 'string' },
        mask: { type: 'boolean', default: false },
        render: { type: 'string' },
      },
    });
  } catch (err) {
    throw new InvalidArgumentError((err as Error).message);
  }
  const { values, positionals } = parsed;
  const [command, image, ...rest] = positionals;
  if (!(COMMANDS as readonly string[]).includes(command)) throw new InvalidArgumentError(`unknown command ${command ?? '(none)'}`);
  const cmd = command as Command;
  if (cmd !== 'eval' && !image) throw new InvalidArgumentError(`${cmd} needs an image`);
  const backend = values.backend as Backend;
  if (!['auto', 'cpu', 'tensorrt'].includes(backend)) throw new InvalidArgumentError(`--backend must be auto, cpu or tensorrt`);
  const threads = Number(values.threads);
  if (!Number.isInteger(threads) || threads < 0) throw new InvalidArgumentError('--threads must be a non-negative integer');
  const box = values.box === undefined ? undefined : parseBox(values.box);
  if ((cmd === 'describe' || cmd === 'segment') && !box) throw new InvalidArgumentError(`${cmd} needs --box x0,y0,x1,y1`);
  const expression = cmd === 'refer' ? rest.join(' ') : undefined;
  if (cmd === 'refer' && !expression) throw new InvalidArgumentError('refer needs an expression');
  if (cmd !== 'refer' && rest.length) throw new InvalidArgumentError(`unexpected arguments: ${rest.join(' ')}`);
  return { command: cmd, image, expression, model: values.model, backend, threads, json: values.json ?? false, box, mask: values.mask ?? false, render: values.render };
}

function print(json: boolean, value: unknown, text: string): void {
  process.stdout.write(json ? JSON.stringify(value) + '\n' : text + '\n');
}

async function run(args: CliArgs): Promise<void> {
  if (args.command === 'eval') throw new PixelLLMError('BACKEND_UNAVAILABLE', 'eval is not built yet');
  const model = await PixelLLM.load(args.model, { backend: args.backend, threads: args.threads });
  try {
    const image = await model.encode(args.image!);
    switch (args.command) {
      case 'caption':
      case 'describe': {
        const gen = args.command === 'caption' ? model.caption(image) : model.describe(image, args.box!);
        if (!args.json) for await (const t of gen) process.stdout.write(t.text);
        const result = await gen.result;
        print(args.json, result, '');
        if (args.render) await writeFile(args.render, await render(args.image!, { points: result.events.map((e) => e.point), boxes: args.box ? [{ box: args.box }] : [] }));
        break;
      }
      case 'refer': {
        const result = await model.refer(image, args.expression!, { mask: args.mask });
        print(args.json, { ...result, mask: result.mask?.rle }, `box ${result.box.map((v) => v.toFixed(1)).join(',')} score ${result.score.toFixed(3)}`);
        if (args.render) await writeFile(args.render, await render(args.image!, { boxes: [{ box: result.box, label: args.expression }], mask: result.mask }));
        break;
      }
      case 'segment': {
        const result = await model.segment(image, args.box!);
        print(args.json, { ...result, mask: result.mask.rle }, `mask area ${result.mask.area()} score ${result.score.toFixed(3)}`);
        if (args.render) await writeFile(args.render, await render(args.image!, { boxes: [{ box: result.box }], mask: result.mask }));
        break;
      }
      case 'dense': {
        const items = await model.denseCaption(image);
        print(args.json, items, items.map((it) => `${it.box.map((v) => v.toFixed(0)).join(',')}  ${it.text}`).join('\n'));
        if (args.render) await writeFile(args.render, await render(args.image!, { boxes: items.map((it) => ({ box: it.box, label: it.text })) }));
        break;
      }
    }
  } finally {
    model.dispose();
  }
}

/** Runs the CLI; resolves with the exit code (0 ok, 1 failure, 2 usage). */
export async function main(argv: string[]): Promise<number> {
  if (argv.length === 0 || argv[0] === '--help' || argv[0] === '-h') {
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
