// TF.js weight artefacts (`model.json` + binary shards, the layout of tfjs-converter and `tf.io`) for a
// SparK model or its encoder: the way to ship weights to a browser, fetched shard by shard with progress.
// Tensors keep their official names and PyTorch layouts, so one loader (`loadTorchState`) serves all
// formats; `tf.io.decodeWeights` reads the shards as any TF.js weights.

import { version as SPARKMIM_VERSION } from '../../package.json';
import type { TorchTensorData } from '@sparkmim/sparse-ops';
import { classifyWeights, type WeightsFile } from './weights-file';

/** `model.json` of {@link stateToTfjsArtifacts}: a weights manifest as tfjs-converter writes one. */
export interface TfjsModelJson {
  format: 'sparkmim-weights';
  generatedBy: string;
  convertedBy: string;
  weightsManifest: { paths: string[]; weights: { name: string; shape: number[]; dtype: 'float32' }[] }[];
  /** What the weights are (official names, PyTorch layouts) and the meta entries of the source. */
  userDefinedMetadata: { layout: 'pytorch'; meta: WeightsFile['meta'] };
}

/** The files of a TF.js artefact: `model.json` and its shards by file name. */
export interface TfjsArtifacts {
  modelJson: TfjsModelJson;
  shards: Map<string, Uint8Array>;
}

export interface TfjsArtifactsOptions {
  /** Largest shard in bytes (default 4 MiB, tfjs-converter's). */
  shardBytes?: number;
  /** Kept in `userDefinedMetadata.meta` (e.g. `arch`, `epoch`). */
  meta?: WeightsFile['meta'];
}

/**
 * A state dict (official names, PyTorch layouts) as TF.js artefacts: every tensor float32, concatenated in
 * order and cut into shards, as `tf.io` expects.
 *
 * @example
 * const { modelJson, shards } = stateToTfjsArtifacts(await model.stateDict());
 */
export function stateToTfjsArtifacts(
  state: ReadonlyMap<string, TorchTensorData>,
  { shardBytes = 4 * 1024 * 1024, meta = {} }: TfjsArtifactsOptions = {},
): TfjsArtifacts {
  if (!(Number.isInteger(shardBytes) && shardBytes >= 4 && shardBytes % 4 === 0))
    throw new Error(`stateToTfjsArtifacts: shardBytes must be a positive multiple of 4, got ${shardBytes}`);
  const weights = [...state].map(([name, tensor]) => ({ name, shape: [...tensor.shape], dtype: 'float32' as const }));
  const total = [...state.values()].reduce((sum, tensor) => sum + tensor.data.length * 4, 0);
  const all = new Uint8Array(total);
  let offset = 0;
  for (const tensor of state.values()) {
    all.set(new Uint8Array(tensor.data.buffer, tensor.data.byteOffset, tensor.data.byteLength), offset);
    offset += tensor.data.byteLength;
  }
  const count = Math.max(1, Math.ceil(total / shardBytes));
  const shards = new Map<string, Uint8Array>();
  for (let i = 0; i < count; i++) shards.set(`group1-shard${i + 1}of${count}.bin`, all.slice(i * shardBytes, Math.min(total, (i + 1) * shardBytes)));
  return {
    modelJson: {
      format: 'sparkmim-weights',
      generatedBy: `sparkmim ${SPARKMIM_VERSION}`,
      convertedBy: 'sparkmim stateToTfjsArtifacts',
      weightsManifest: [{ paths: [...shards.keys()], weights }],
      userDefinedMetadata: { layout: 'pytorch', meta },
    },
    shards,
  };
}

/** What {@link loadTfjsWeights} needs of `fetch`: the browser's, Node's, or a stand-in. */
export type FetchBytes = (url: string) => Promise<{ ok: boolean; status: number; arrayBuffer(): Promise<ArrayBuffer> }>;

export interface LoadTfjsWeightsOptions {
  /** Default: the global `fetch`. */
  fetch?: FetchBytes;
  /** Called after `model.json` and after each shard with the fraction of bytes loaded (0 to 1). */
  onProgress?: (fraction: number) => void;
}

/**
 * Fetches TF.js artefacts written by {@link stateToTfjsArtifacts} (`model.json`, then its shards, resolved
 * against its URL) into a weights file for `sparkModelFromWeights`. Sizes are checked against the manifest.
 *
 * @example
 * const model = await sparkModelFromWeights(await loadTfjsWeights('/weights/model.json', { onProgress: (f) => bar.value = f }));
 */
export async function loadTfjsWeights(modelJsonUrl: string, { fetch: fetchBytes, onProgress }: LoadTfjsWeightsOptions = {}): Promise<WeightsFile> {
  const get: FetchBytes = fetchBytes ?? ((url) => (globalThis as unknown as { fetch: FetchBytes }).fetch(url));
  const read = async (url: string) => {
    const response = await get(url);
    if (!response.ok) throw new Error(`loadTfjsWeights: ${url} answered ${response.status}`);
    return new Uint8Array(await response.arrayBuffer());
  };
  let modelJson: TfjsModelJson;
  try {
    modelJson = JSON.parse(new TextDecoder().decode(await read(modelJsonUrl))) as TfjsModelJson;
  } catch (error) {
    throw new Error(`loadTfjsWeights: ${modelJsonUrl} is not a TF.js model.json (${(error as Error).message})`);
  }
  const groups = modelJson.weightsManifest;
  if (!Array.isArray(groups) || groups.length === 0) throw new Error(`loadTfjsWeights: ${modelJsonUrl} has no weightsManifest`);
  const base = modelJsonUrl.slice(0, modelJsonUrl.lastIndexOf('/') + 1);
  const state = new Map<string, TorchTensorData>();
  const dtypes = new Map<string, string>();
  const expectedBytes = groups.flatMap((group) => group.weights).reduce((sum, weight) => sum + 4 * weight.shape.reduce((a, b) => a * b, 1), 0);
  let loaded = 0;
  onProgress?.(0);
  for (const group of groups) {
    const parts: Uint8Array[] = [];
    for (const path of group.paths) {
      const bytes = await read(base + path);
      parts.push(bytes);
      loaded += bytes.length;
      onProgress?.(expectedBytes > 0 ? Math.min(1, loaded / expectedBytes) : 1);
    }
    const size = parts.reduce((sum, part) => sum + part.length, 0);
    const needed = group.weights.reduce((sum, weight) => sum + 4 * weight.shape.reduce((a, b) => a * b, 1), 0);
    if (size !== needed) throw new Error(`loadTfjsWeights: the shards of ${modelJsonUrl} hold ${size} bytes, the manifest needs ${needed}`);
    const all = new Uint8Array(size);
    let offset = 0;
    for (const part of parts) {
      all.set(part, offset);
      offset += part.length;
    }
    offset = 0;
    for (const weight of group.weights) {
      if (weight.dtype !== 'float32') throw new Error(`loadTfjsWeights: ${weight.name} is ${weight.dtype}, expected float32`);
      const count = weight.shape.reduce((a, b) => a * b, 1);
      state.set(weight.name, { shape: weight.shape, data: new Float32Array(all.buffer.slice(offset, offset + 4 * count)) });
      dtypes.set(weight.name, 'float32');
      offset += 4 * count;
    }
  }
  return classifyWeights(
    { format: 'tfjs', state, dtypes, meta: { ...(modelJson.userDefinedMetadata?.meta ?? {}) }, ignored: [] },
    { source: modelJsonUrl },
  );
}
