import { parseArgs } from 'node:util';
import * as tf from '@tensorflow/tfjs-core';
import { BACKEND_NAMES, BackendUnavailableError, setupBackend } from '@sparkmim/runtime';
import { convertCommand } from './commands/convert';
import { benchCommand } from './commands/bench';
import { featuresCommand } from './commands/features';
import { finetuneCommand } from './commands/finetune';
import { forwardCommand } from './commands/forward';
import { inspectCommand } from './commands/inspect';
import { pretrainCommand } from './commands/pretrain';
import { probeCommand } from './commands/probe';
import { trainStepsCommand } from './commands/train-steps';
import { UsageError, wasmOutOfMemoryMessage } from './errors';

const HELP = `sparkmim: SparK masked image modelling for TensorFlow.js

usage: sparkmim <command> [options]

commands:
  pretrain --data FOLDER     SparK pre-training on a folder of images: checkpoints, encoder weights, previews
                             (run 'sparkmim pretrain --help' for every option)
  pretrain --config apps/pretrain/configs/quickstart.json
                             the first run: a small ResNet on the embedded sample images, ~30 s on a CPU
  backend [--backend NAME]   set a backend up and report what it got (adapter vendor, architecture)
  forward [options]          one forward pass of a checkpoint, every intermediate written (compare with PyTorch)
  train-steps [options]      N training steps on one batch and mask, written key by key (compare with PyTorch)
  bench [--scenario NAME]    training-step and inference timings per backend, one JSON line each ('bench --help')
  inspect FILE               what a weights file holds (.safetensors or an official .pth): kind, architecture, tensors
  convert IN OUT [--to pth|safetensors|timm]
                             weights between sparkmim and PyTorch (the official SparK checkpoint layouts)
  features --weights W --data FOLDER --out F
                             pooled features of labelled images (one subfolder per class), safetensors or JSONL
  probe --weights W --data FOLDER --out RUN
                             a linear classifier on frozen features; validation top-1 / top-5
  finetune --weights W --data FOLDER --out RUN
                             fine-tune the whole network (official recipe: layer-wise lr decay, LAMB or AdamW)
  help                       this text

backends: ${BACKEND_NAMES.join(', ')}
`;

async function backendCommand(argv: string[]): Promise<number> {
  const { values } = parseArgs({ args: argv, options: { backend: { type: 'string', default: 'cpu' } }, strict: true });
  const info = await setupBackend(values.backend!);
  process.stdout.write(`${JSON.stringify(info)}\n`);
  return 0;
}

/** System errors of files the user can act on: no space, no permission, a missing or wrong path. */
const FILE_ERROR_CODES = new Set([
  'ENOSPC',
  'EDQUOT',
  'EFBIG',
  'EACCES',
  'EPERM',
  'EROFS',
  'EIO',
  'ENOTDIR',
  'EISDIR',
  'ENOENT',
  'EEXIST',
  'ENAMETOOLONG',
  'ELOOP',
  'EMFILE',
]);

/**
 * The exit code after the wasm backend ran out of memory. Its heap is then unusable (later calls into it
 * abort), so bin/sparkmim.mjs ends the process at once on this code rather than letting it unwind.
 */
export const EXIT_WASM_OUT_OF_MEMORY = 3;

/** Runs the CLI; returns the exit code (0 ok, 2 a usage or setup error the user can fix, 3 wasm out of memory). */
export async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  try {
    switch (command) {
      case undefined:
      case 'help':
      case '--help':
      case '-h':
        process.stdout.write(HELP);
        return 0;
      case 'backend':
        return await backendCommand(rest);
      case 'pretrain':
        return await pretrainCommand(rest);
      case 'forward':
        return await forwardCommand(rest);
      case 'bench':
        return await benchCommand(rest);
      case 'train-steps':
        return await trainStepsCommand(rest);
      case 'inspect':
        return await inspectCommand(rest);
      case 'convert':
        return await convertCommand(rest);
      case 'features':
        return await featuresCommand(rest);
      case 'probe':
        return await probeCommand(rest);
      case 'finetune':
        return await finetuneCommand(rest);
      default:
        throw new UsageError(`unknown command '${command}': run 'sparkmim --help' for the list`);
    }
  } catch (error) {
    const outOfMemory = wasmOutOfMemoryMessage(error, activeBackendName(), () => tf.memory().numBytes);
    if (outOfMemory) {
      process.stderr.write(`sparkmim: ${outOfMemory}\n`);
      return EXIT_WASM_OUT_OF_MEMORY;
    }
    const code = (error as { code?: string })?.code;
    // What the user can fix (a flag, a file, a full disk): one line and exit code 2. Anything else is a bug
    // of sparkmim and keeps its stack trace.
    if (
      error instanceof UsageError ||
      error instanceof BackendUnavailableError ||
      code?.startsWith('ERR_PARSE_ARGS') ||
      (code !== undefined && FILE_ERROR_CODES.has(code))
    ) {
      process.stderr.write(`sparkmim: ${(error as Error).message.split('\n').join('; ')}\n`);
      return 2;
    }
    throw error;
  }
}

/** The active tfjs backend's name, or undefined before any was set up. */
function activeBackendName(): string | undefined {
  try {
    return tf.engine().backendName ?? undefined;
  } catch {
    return undefined;
  }
}
