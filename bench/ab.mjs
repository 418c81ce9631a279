#!/usr/bin/env node
// A/B of two (or more) builds of the bench executable on one command: every executable stays loaded (its own
// process, THREADS threads) and they take turns, one call each, the order reversed every other turn, so a slow
// phase of the machine hits all of them alike. Prints the median / min / max of KEY per executable.
//
//   node bench/ab.mjs --model DIR --command "encode" --key ms --n 400 EXE_A EXE_B [...]
//   (build the "before" executable from another checkout: cmake -S bench -B /tmp/before -DCMAKE_BUILD_TYPE=Release)
import os from 'node:os';
import { LineServer } from './lib/peers.mjs';
import { median, round } from './lib/stats.mjs';

function parseArgs(argv) {
  const a = { model: null, command: 'encode', key: 'ms', n: 100, threads: os.availableParallelism(), exes: [] };
  for (let i = 0; i < argv.length; ++i) {
    const k = argv[i];
    if (k === '--model') a.model = argv[++i];
    else if (k === '--command') a.command = argv[++i];
    else if (k === '--key') a.key = argv[++i];
    else if (k === '--n') a.n = Number(argv[++i]);
    else if (k === '--threads') a.threads = Number(argv[++i]);
    else if (k.startsWith('--')) throw new Error(`ab: unknown option ${k}`);
    else a.exes.push(k);
  }
  if (!a.model || a.exes.length < 2 || !(a.n >= 1)) throw new Error('ab: needs --model DIR and two or more executables');
  return a;
}

const o = parseArgs(process.argv.slice(2));
const peers = o.exes.map((e) => new LineServer(e, e, [o.model, String(o.threads)], process.env));
for (const p of peers) await p.call(o.command);  // warm-up, untimed
const got = peers.map(() => []);
for (let i = 0; i < o.n; ++i) {
  const order = peers.map((_, k) => k);
  if (i % 2) order.reverse();
  for (const k of order) {
    const r = await peers[k].call(o.command);
    if (!(o.key in r)) throw new Error(`ab: ${peers[k].name} answered without "${o.key}": ${JSON.stringify(r)}`);
    got[k].push(r[o.key]);
  }
}
await Promise.all(peers.map((p) => p.close()));
for (const [k, p] of peers.entries()) {
  const xs = got[k];
  console.log(`${p.name}: ${o.command} ${o.key} median ${round(median(xs), 4)} min ${round(Math.min(...xs), 4)} max ${round(Math.max(...xs), 4)} (n ${xs.length})`);
}
