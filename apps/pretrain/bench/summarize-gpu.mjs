#!/usr/bin/env node
// Turns what gpu-run printed (JSON lines; other lines are ignored) into the Markdown tables of the root
// README's GPU section and of bench/README.md: throughput stock vs ours, the kernel pairs, the profile's
// slowest kernels, and what failed or was skipped.
//
// usage: node apps/pretrain/bench/summarize-gpu.mjs gpu.jsonl [--top 15]
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';

const { values, positionals } = parseArgs({ allowPositionals: true, options: { top: { type: 'string', default: '15' } } });
if (positionals.length !== 1) {
  console.error('usage: node apps/pretrain/bench/summarize-gpu.mjs gpu.jsonl [--top 15]');
  process.exit(2);
}
const records = [];
for (const line of readFileSync(positionals[0], 'utf8').split('\n')) {
  if (!line.startsWith('{')) continue;
  try {
    records.push(JSON.parse(line));
  } catch {
    // a line cut short by a stopped job
  }
}
const out = [];
const say = (text = '') => out.push(text);
const cell = (value) => (value === undefined || value === null ? '—' : String(value));

const start = records.find((record) => record.type === 'start');
const backend = records.find((record) => record.type === 'backend');
const adapter = backend?.adapter
  ? [backend.adapter.vendor, backend.adapter.architecture, backend.adapter.device].filter(Boolean).join(' ')
  : 'unknown';
say(
  `Run of ${cell(start?.date)}, adapter ${adapter}, timestamp queries ${cell(backend?.timestampQuery)}, budget ${cell(start?.budgetSeconds)} s${start?.smoke ? ' (--smoke: no figure means anything)' : ''}.`,
);
say();

// Throughput: the summary lines of the step and inference jobs (the ones with imagesPerSecond).
const summaries = records.filter((record) => (record.type === 'spark' || record.type === 'infer') && record.imagesPerSecond !== undefined);
const jobs = [...new Set(summaries.map((record) => record.job))];
say('| job | model | batch | stock, images/s | ours, images/s | ours / stock | ms per step or batch (stock; ours) |');
say('| --- | --- | --- | --- | --- | --- | --- |');
for (const job of jobs) {
  const of = (arm) => summaries.find((record) => record.job === job && record.arm === arm);
  const [stock, ours] = [of('stock'), of('ours')];
  const any = stock ?? ours;
  const ratio = stock && ours ? (ours.imagesPerSecond / stock.imagesPerSecond).toFixed(2) : undefined;
  const ms = (record) => (record ? (record.msPerStep ?? record.msPerBatch) : undefined);
  say(
    `| ${job} | ${any.model} | ${any.batch} | ${cell(stock?.imagesPerSecond)} | ${cell(ours?.imagesPerSecond)} | ${cell(ratio)} | ${cell(ms(stock))}; ${cell(ms(ours))} |`,
  );
}
say();

const pairs = records.filter((record) => record.type === 'kernel-pair');
if (pairs.length) {
  const kernelMs = (shape, kernel, arm) =>
    records.find((record) => record.type === 'kernel' && record.shape === shape && record.kernel === kernel && record.arm === arm)?.ms;
  say('| shape | batch | kernel | variant | stock ms | ours ms | speed-up | max relative difference |');
  say('| --- | --- | --- | --- | --- | --- | --- | --- |');
  for (const pair of pairs) {
    const variant = pair.arm ?? 'ours';
    const batch = records.find((record) => record.type === 'kernel' && record.shape === pair.shape)?.batch;
    const difference = typeof pair.maxRelDiff === 'number' ? pair.maxRelDiff.toExponential(1) : undefined;
    say(
      `| ${pair.shape} | ${cell(batch)} | ${pair.kernel} | ${variant} | ${cell(kernelMs(pair.shape, pair.kernel, 'stock'))} | ${cell(kernelMs(pair.shape, pair.kernel, variant))} | ${cell(pair.speedup)} | ${cell(difference)} |`,
    );
  }
  say();
}

const profile = records.find((record) => record.type === 'profile');
if (profile) {
  say(
    `Profile of one ${profile.model} step, batch ${profile.batch}, ${profile.inputSize}x${profile.inputSize} (${profile.arm} kernels, ${profile.timing}): ` +
      `${profile.calls} kernel calls, ${profile.kernelMs} ms of kernel time (optimiser ${profile.optimiserKernelMs} ms); ` +
      `a plain step ${profile.plainStepMs} ms (optimiser part ${cell(profile.plainOptimiserMs)} ms), GPU busy ${cell(profile.gpuBusy)}.`,
  );
  say();
  say('| kernel | ms | share | calls | of which optimiser, ms | programs (ms) |');
  say('| --- | --- | --- | --- | --- | --- |');
  const lines = records.filter((record) => record.type === 'profile-kernel').slice(0, Number(values.top));
  for (const line of lines) {
    const programs = line.programs
      ? Object.entries(line.programs)
          .sort((a, b) => b[1] - a[1])
          .slice(0, 3)
          .map(([name, ms]) => `${name} ${ms}`)
          .join(', ')
      : '';
    say(`| ${line.kernel} | ${line.ms} | ${(line.share * 100).toFixed(1)}% | ${line.count} | ${line.optimiserMs} | ${programs} |`);
  }
  say();
}

for (const record of records.filter((entry) => ['skip', 'error', 'job-failed'].includes(entry.type))) {
  const what = record.reason ?? record.message ?? `exit ${record.code}${record.killed ? ', stopped' : ''}: ${(record.stderrTail ?? []).join(' / ')}`;
  say(`- ${record.type} ${record.job}/${record.arm}${record.shape ? ` ${record.shape} ${record.kernel}` : ''}: ${what}`);
}
process.stdout.write(`${out.join('\n')}\n`);
