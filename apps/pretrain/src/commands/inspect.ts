// `sparkmim inspect FILE`: what a weights file holds (safetensors or any official `.pth` kind): its kind,
// the architecture read off the weights, the parameter count, the checkpoint's other entries, every tensor.
import { readFile, stat } from 'node:fs/promises';
import * as path from 'node:path';
import { parseArgs } from 'node:util';
import { summarizeWeights } from '@sparkmim/trainer';
import { UsageError } from '../errors';
import { oneLine } from './inputs';
import { readWeightsOption } from './weights';

export const INSPECT_HELP = `usage: sparkmim inspect FILE|RUN [--strip-prefix P] [--json]

Prints what a weights file holds: the file kind (spark-checkpoint: the official *_withdecoder_*_spark_style.pth
dict; spark-state: a bare SparK state dict; resnet-encoder: timm ResNet weights such as *_timm_style.pth;
convnext-encoder: official ConvNeXt weights; state-dict: anything else), the architecture read off the
weights, the parameter count (BatchNorm running statistics excluded, as PyTorch's model.parameters()), the
checkpoint's other entries (arch, epoch, input_size, ...), what is not loaded, and every tensor's shape and
dtype. FILE is .safetensors or .pth (torch.save's zip format). For a run folder RUN (or its checkpoint.json):
its settings as the official main.py's arguments (to continue it on torchrun), then its model file.

  --strip-prefix P        use only the keys that start with P, without it (e.g. param.)
  --json                  one JSON object instead of text
`;

/** Runs `sparkmim inspect`; returns the exit code. */
export async function inspectCommand(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    strict: true,
    allowPositionals: true,
    options: { 'strip-prefix': { type: 'string' }, json: { type: 'boolean' }, help: { type: 'boolean', short: 'h' } },
  });
  if (values.help) {
    process.stdout.write(INSPECT_HELP);
    return 0;
  }
  if (positionals.length !== 1) throw new UsageError(`inspect takes one file, got ${positionals.length} (run 'sparkmim inspect --help')`);
  let file = positionals[0];
  if ((await stat(file).catch(() => undefined))?.isDirectory() || path.basename(file) === 'checkpoint.json') {
    const run = path.basename(file) === 'checkpoint.json' ? path.dirname(file) : file;
    file = await describeRun(run, Boolean(values.json));
  }
  const weights = await readWeightsOption('file', file, values['strip-prefix']);
  let summary: ReturnType<typeof summarizeWeights> | undefined;
  try {
    summary = summarizeWeights(weights);
  } catch (error) {
    // A state dict of no known architecture: still list it.
    summary = undefined;
    if (!values.json) process.stdout.write(`note: ${oneLine((error as Error).message)}\n`);
  }
  const tensors = [...weights.state].map(([key, tensor]) => ({ key, shape: tensor.shape, dtype: weights.dtypes.get(key) ?? 'float32' }));
  if (values.json) {
    process.stdout.write(
      `${JSON.stringify({
        file,
        ...(summary ?? { format: weights.format, kind: weights.kind, tensors, meta: weights.meta, ignored: weights.ignored }),
      })}\n`,
    );
    return 0;
  }
  const lines = [`file: ${file}`, `format: ${weights.format}`, `kind: ${weights.kind}`];
  if (summary) {
    const { backbone } = summary;
    const shape =
      backbone.kind === 'resnet'
        ? `resnet, ${backbone.block} blocks, depths ${backbone.depths.join(',')}, stem width ${backbone.stemWidth ?? 64}, widths ${(backbone.channels ?? [64, 128, 256, 512]).join(',')}`
        : `convnext, depths ${backbone.depths.join(',')}, dims ${backbone.dims?.join(',')}`;
    lines.push(`architecture: ${summary.architecture ?? 'custom'} (${shape})`);
    lines.push(`parameters: ${summary.parameterCount}`);
  }
  for (const [key, value] of Object.entries(weights.meta)) {
    const text = typeof value === 'string' && value.length > 200 ? `${value.slice(0, 200)}...` : String(value);
    lines.push(`${key}: ${text}`);
  }
  if (weights.ignored.length) lines.push(`not loaded: ${weights.ignored.join(', ')}`);
  lines.push(`tensors: ${tensors.length}`);
  for (const tensor of tensors) lines.push(`  ${tensor.key}  [${tensor.shape.join(', ')}]  ${tensor.dtype}`);
  process.stdout.write(`${lines.join('\n')}\n`);
  return 0;
}

// Our settings and the official pretrain/utils/arg_util.py arguments they correspond to.
const OFFICIAL_ARGUMENTS: [string, string][] = [
  ['model', 'model'],
  ['inputSize', 'input_size'],
  ['maskRatio', 'mask'],
  ['batchSize', 'bs'],
  ['epochs', 'ep'],
  ['warmupEpochs', 'wp_ep'],
  ['baseLr', 'base_lr'],
  ['weightDecay', 'wd'],
  ['weightDecayEnd', 'wde'],
  ['optimizer', 'opt'],
  ['beta2', 'ada'],
  ['dropPath', 'dp'],
  ['clip', 'clip'],
  ['densifyNorm', 'densify_norm'],
];

/** Prints a run folder's settings as official main.py arguments; returns the path of its model file. */
async function describeRun(run: string, json: boolean): Promise<string> {
  let manifest: { config?: Record<string, unknown>; files?: { model?: string }; progress?: { epoch?: number } };
  try {
    manifest = JSON.parse(await readFile(path.join(run, 'checkpoint.json'), 'utf8'));
  } catch (error) {
    throw new UsageError(`--file: ${run} is a folder without a readable checkpoint.json (${oneLine((error as Error).message)})`);
  }
  const config = manifest.config ?? {};
  if (typeof manifest.files?.model !== 'string') throw new UsageError(`--file: ${run}/checkpoint.json names no model file`);
  const flags: string[] = [];
  const notes: string[] = [];
  for (const [ours, official] of OFFICIAL_ARGUMENTS) {
    const value = config[ours];
    if (value === undefined || value === null) continue;
    if (ours === 'inputSize' && typeof value !== 'number')
      notes.push(`input size ${JSON.stringify(value)} is not square: main.py takes one --input_size`);
    else if (ours === 'optimizer' && value === 'sgd') notes.push('sgd has no official counterpart (main.py: lamb, adamw)');
    else flags.push(`--${official}=${value}`);
  }
  for (const key of ['depths', 'widths', 'dims', 'stemWidth'])
    if (config[key] !== undefined) notes.push(`${key} ${JSON.stringify(config[key])}: main.py builds only the named models`);
  if (config.decoderWidth !== undefined && config.decoderWidth !== 768)
    notes.push(`decoder width ${config.decoderWidth}: main.py's LightDecoder is 768 wide`);
  const epoch = manifest.progress?.epoch;
  if (json) {
    process.stdout.write(`${JSON.stringify({ run, officialArguments: flags, notes, nextEpoch: epoch })}\n`);
  } else {
    const lines = [`run: ${run} (next epoch ${epoch ?? '?'})`, `official main.py arguments: ${flags.join(' ')}`];
    for (const note of notes) lines.push(`note: ${note}`);
    lines.push(
      `continue on torchrun: sparkmim convert ${path.join(run, manifest.files.model)} run.pth, then main.py --resume_from=run.pth ${flags.join(' ')}`,
    );
    process.stdout.write(`${lines.join('\n')}\n\n`);
  }
  return path.join(run, manifest.files.model);
}
