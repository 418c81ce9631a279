import * as assert from 'node:assert/strict';
import { InvalidArgumentError } from '../lib';
import { main, parseCli, wantsHelp } from '../lib/cli';

describe('cli argument parsing', () => {
  it('parses each subcommand', () => {
    assert.deepEqual(parseCli(['caption', 'a.png', '--json']), {
      command: 'caption', image: 'a.png', expression: undefined, model: undefined, backend: 'auto', threads: 0,
      decoderWeights: 'fp32', encoderPrecision: 'fp32', maskResize: 'sam', json: true, box: undefined, mask: false, render: undefined,
    });
    const r = parseCli(['refer', 'a.png', 'the', 'red', 'circle', '--mask', '--render', 'o.png', '--model', 'm']);
    assert.equal(r.expression, 'the red circle');
    assert.equal(r.mask, true);
    assert.equal(r.render, 'o.png');
    assert.equal(r.model, 'm');
    assert.deepEqual(parseCli(['segment', 'a.png', '--box', '1,2,30.5,40']).box, [1, 2, 30.5, 40]);
    assert.equal(parseCli(['describe', 'a.png', '--box', '0,0,5,5', '--backend', 'cpu', '--threads', '2']).threads, 2);
    assert.equal(parseCli(['dense', 'a.png']).command, 'dense');
    assert.equal(parseCli(['caption', 'a.png', '--decoder-weights', 'bf16']).decoderWeights, 'bf16');
    assert.equal(parseCli(['eval']).command, 'eval');
    assert.equal(parseCli(['segment', 'a.png', '--box', '0,0,5,5', '--mask-resize', 'evaluator']).maskResize, 'evaluator');
  });

  it('rejects bad usage with InvalidArgumentError', () => {
    for (const argv of [
      ['frobnicate', 'a.png'],
      ['caption'],
      ['refer', 'a.png'],
      ['segment', 'a.png'],
      ['segment', 'a.png', '--box', '1,2,3'],
      ['caption', 'a.png', '--backend', 'gpu'],
      ['caption', 'a.png', '--threads', '-1'],
      ['caption', 'a.png', '--decoder-weights', 'int8'],
      ['caption', 'a.png', '--encoder-precision', 'fp16'],
      ['segment', 'a.png', '--box', '0,0,5,5', '--mask-resize', 'cv2'],
      ['caption', 'a.png', 'extra'],
      ['caption', 'a.png', '--unknown'],
    ]) {
      assert.throws(() => parseCli(argv), InvalidArgumentError, argv.join(' '));
    }
  });

  it('takes --help / -h anywhere before `--` as a request for the usage (exit 0)', async () => {
    assert.equal(wantsHelp(['eval', '--help']), true);
    assert.equal(wantsHelp(['caption', 'a.png', '-h']), true);
    assert.equal(wantsHelp(['--help']), true);
    assert.equal(wantsHelp(['refer', 'a.png', '--', '-h']), false);
    assert.equal(wantsHelp(['caption', 'a.png']), false);
    const write = process.stdout.write;
    let out = '';
    process.stdout.write = ((chunk: string) => { out += chunk; return true; }) as typeof process.stdout.write;
    try {
      assert.equal(await main(['eval', '--help']), 0);
    } finally {
      process.stdout.write = write;
    }
    assert.match(out, /^usage: pixelllm/);
  });
});
