#!/usr/bin/env node
// A/B of two (or more) builds of the bench executable on one command: every executable stays loaded (its own
// process, THREADS threads) and they take turns, one call each, the order reversed every other turn, so a slow
// phase of the machine hits all of them alike. Prints the median / min / max of KEY per executable.
//
//   node bench/ab.mjs --model DIR --command "encode" --key ms --n 400 EXE_A EXE_B [...]
//   (build the "before" executable from another checkout: cmake -S bench -B /tmp/before -DCMAKE_BUILD_TYPE=Release)
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import os from 'node:os';
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

// One executable as a line server: call(cmd) writes a line and resolves with the next JSON line.
function server(exe, model, threads) {
  const p = spawn(exe, [model, String(threads)], { stdio: ['pipe', 'pipe', 'inherit'] });
  const lines = createInterface({ input: p.stdout });
  const waiting = [];
  lines.on('line', (l) => waiting.shift()?.(JSON.parse(l)));
  const next = () => new Promise((resolve) => waiting.push(resolve));
  const ready = next();
  return { exe, ready, call: (cmd) => { const r = next(); p.stdin.write(`${cmd}\n`); return r; }, close: () => p.stdin.end('quit\n') };
}

const o = parseArgs(process.argv.slice(2));
const peers = o.exes.map((e) => server(e, o.model, o.threads));
for (const p of peers) await p.ready;
for (const p of peers) await p.call(o.command);  // warm-up, untimed
const got = peers.map(() => []);
for (let i = 0; i < o.n; ++i) {
  const order = peers.map((_, k) => k);
  if (i % 2) order.reverse();
  for (const k of order) {
    const r = await peers[k].call(o.command);
    if (!(o.key in r)) throw new Error(`ab: ${peers[k].exe} answered without "${o.key}": ${JSON.stringify(r)}`);
    got[k].push(r[o.key]);
  }
}
for (const p of peers) p.close();
for (const [k, p] of peers.entries()) {
  const xs = got[k];
  console.log(`${p.exe}: ${o.command} ${o.key} median ${round(median(xs), 4)} min ${round(Math.min(...xs), 4)} max ${round(Math.max(...xs), 4)} (n ${xs.length})`);
}
