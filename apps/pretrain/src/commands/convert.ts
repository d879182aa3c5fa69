// `sparkmim convert IN OUT`: weights from one world to the other, through our model so that what is
// written is what loads: official `.pth` files in, safetensors out; our checkpoints out as the official
// layouts (`main.py --resume_from` / `--init_weight`, timm / official ConvNeXt encoder files).
import { mkdir } from 'node:fs/promises';
import * as path from 'node:path';
import { parseArgs } from 'node:util';
import { createBackboneFromConfig } from '@sparkmim/backbones';
import { setupBackend } from '@sparkmim/runtime';
import { loadTorchState, torchState, type TorchTensorData } from '@sparkmim/sparse-ops';
import {
  ENCODER_STATE_PREFIX,
  isEncoderOnly,
  stateToPth,
  stateToSafetensors,
  stateToTfjsArtifacts,
  weightsArchitecture,
  type WeightsFile,
} from '@sparkmim/trainer';
import { writeFileAtomic } from '@sparkmim/trainer/node';
import { UsageError } from '../errors';
import { oneLine } from './inputs';
import { modelFromWeightsOption, readWeightsOption } from './weights';

export const CONVERT_HELP = `usage: sparkmim convert IN OUT [--to pth|safetensors|timm|tfjs] [--strip-prefix P]

Converts weights between sparkmim (safetensors) and PyTorch (.pth), through the model, so that every
tensor is checked against the architecture read off the weights and copied bit for bit:

  --to pth                the official full checkpoint dict {module, arch, epoch, input_size, ...} that
                          SparK's main.py reads with --resume_from or --init_weight (encoder-only input: a
                          bare encoder state dict)
  --to safetensors        sparkmim's safetensors (official names, PyTorch layouts)
  --to timm               the encoder alone as a .pth: timm names for a ResNet (timm's
                          create_model('resnet50').load_state_dict(..., strict=False) misses nothing but
                          fc), official names for a ConvNeXt
  --to tfjs               TF.js artefacts in the folder OUT (created): model.json and 4 MiB weight shards,
                          official names and PyTorch layouts, for loadTfjsWeights() in a browser
  --strip-prefix P        read only the keys of IN that start with P, without it (e.g. param.)

Default --to: from OUT's extension (.pth: pth, .safetensors: safetensors). IN is any kind 'sparkmim
inspect' names.
`;

const TARGETS = ['pth', 'safetensors', 'timm', 'tfjs'] as const;
type Target = (typeof TARGETS)[number];

/** Runs `sparkmim convert`; returns the exit code. */
export async function convertCommand(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    strict: true,
    allowPositionals: true,
    options: { to: { type: 'string' }, 'strip-prefix': { type: 'string' }, help: { type: 'boolean', short: 'h' } },
  });
  if (values.help) {
    process.stdout.write(CONVERT_HELP);
    return 0;
  }
  if (positionals.length !== 2) throw new UsageError(`convert takes IN and OUT, got ${positionals.length} file(s) (run 'sparkmim convert --help')`);
  const [input, output] = positionals;
  let target = values.to as Target | undefined;
  if (target === undefined) {
    if (output.endsWith('.pth') || output.endsWith('.pt')) target = 'pth';
    else if (output.endsWith('.safetensors')) target = 'safetensors';
    else throw new UsageError(`convert: cannot tell the format of ${output} from its extension: give --to ${TARGETS.join('|')}`);
  }
  if (!TARGETS.includes(target)) throw new UsageError(`--to is '${target}', expected one of ${TARGETS.join(', ')}`);
  const weights = await readWeightsOption('in', input, values['strip-prefix']);
  await setupBackend('cpu');
  const { state, encoderOnly } = await stateThroughModel(weights);
  if (target === 'tfjs') {
    const { modelJson, shards } = stateToTfjsArtifacts(state, { meta: checkpointMeta(weights) });
    await mkdir(output, { recursive: true });
    for (const [name, shard] of shards) await writeFileAtomic(path.join(output, name), shard);
    await writeFileAtomic(path.join(output, 'model.json'), new TextEncoder().encode(`${JSON.stringify(modelJson)}\n`));
    process.stdout.write(`${output}: tfjs, model.json and ${shards.size} shard(s), ${state.size} tensors from ${input} (${weights.kind})\n`);
    return 0;
  }
  let bytes: Uint8Array;
  if (target === 'safetensors') {
    bytes = stateToSafetensors(state, { format: 'pt', converted_from: input });
  } else if (target === 'timm' || encoderOnly) {
    const encoder = encoderOnly
      ? state
      : new Map(
          [...state].filter(([key]) => key.startsWith(ENCODER_STATE_PREFIX)).map(([key, tensor]) => [key.slice(ENCODER_STATE_PREFIX.length), tensor]),
        );
    bytes = stateToPth(encoder, { layout: 'encoder' });
  } else {
    bytes = stateToPth(state, { layout: 'spark', meta: checkpointMeta(weights) });
  }
  await writeFileAtomic(output, bytes);
  process.stdout.write(`${output}: ${target}, ${state.size} tensors from ${input} (${weights.kind})\n`);
  return 0;
}

// The state as our model holds it: loaded strictly into a model of the architecture the weights imply,
// then exported (official order, float32; num_batches_tracked written back as int64).
async function stateThroughModel(weights: WeightsFile): Promise<{ state: Map<string, TorchTensorData>; encoderOnly: boolean }> {
  if (isEncoderOnly(weights)) {
    const backbone = createBackboneFromConfig(weightsArchitecture(weights).config);
    try {
      loadTorchState(backbone, weights.state, { caller: '--in' });
      return { state: await torchState(backbone), encoderOnly: true };
    } catch (error) {
      throw new UsageError(`--in: ${oneLine((error as Error).message)}`);
    } finally {
      backbone.dispose();
    }
  }
  const model = await modelFromWeightsOption('in', weights);
  try {
    return { state: await model.stateDict(), encoderOnly: false };
  } finally {
    model.dispose();
  }
}

// What the official checkpoint dict holds beside `module`: carried over from an official file, else the
// architecture's name when it has one (main.py reads only `epoch`, `performance_desc` and `module`).
function checkpointMeta(weights: WeightsFile): Record<string, string | number | boolean> {
  const meta: Record<string, string | number | boolean> = {};
  for (const [key, value] of Object.entries(weights.meta)) if (value !== null && key !== 'is_pretrain') meta[key] = value;
  if (meta.arch === undefined) {
    const { name } = weightsArchitecture(weights);
    if (name) meta.arch = name;
  }
  return meta;
}
