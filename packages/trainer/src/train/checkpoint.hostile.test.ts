// Checkpoint folders as a kill or a hostile file leaves them: what a save writes and in which order, what a
// resume repairs, and the manifests that are refused.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { describeBackends } from '@sparkmim/test-utils';
import { decodeSafetensors } from '../io/safetensors';
import { readCheckpointManifest, resumeFromCheckpoint, saveCheckpoint } from './checkpoint';
import { train } from './loop';
import { disposeTinyRun, setupTinyRun, stateValues } from './test-fixtures';

describeBackends('checkpoint folders after kills and hostile manifests', () => {
  let folder: string;
  beforeEach(() => {
    folder = fs.mkdtempSync(path.join(os.tmpdir(), 'sparkmim-checkpoint-hostile-'));
  });
  afterEach(() => {
    fs.rmSync(folder, { recursive: true, force: true });
  });

  it('lists encoder.safetensors in the manifest, writes it before the manifest, and a resume rewrites a stale one and removes leftover .tmp files', async () => {
    const run = setupTinyRun(1, 8);
    await train({ ...run, epochs: 1, seed: 2, checkpointDir: folder });
    const manifest = await readCheckpointManifest(folder);
    expect(manifest.files.encoder).toBe('encoder.safetensors');
    const encoderFile = path.join(folder, 'encoder.safetensors');
    const good = fs.readFileSync(encoderFile);

    // What a kill after the encoder write and before the manifest leaves: a newer encoder (here: other
    // weights), and temporary files of killed writes (a pid that is not ours, as a killed process has).
    const other = setupTinyRun(5, 8);
    await saveCheckpoint(path.join(folder, 'other'), { ...other, progress: manifest.progress, random: manifest.random });
    fs.copyFileSync(path.join(folder, 'other', 'encoder.safetensors'), encoderFile);
    expect(fs.readFileSync(encoderFile).equals(good)).toBe(false);
    const leftovers = [
      '.model.it00000004-abcd.safetensors.999999.0123abcd.tmp',
      '.encoder.safetensors.999999.89abcdef.tmp',
      '.checkpoint.json.999999.00000000.tmp',
    ];
    for (const name of leftovers) fs.writeFileSync(path.join(folder, name), 'partial');
    fs.rmSync(path.join(folder, 'other'), { recursive: true });

    const resumed = setupTinyRun(9, 8);
    await resumeFromCheckpoint(folder, resumed);
    expect(await stateValues(resumed.model)).toEqual(await stateValues(run.model));
    expect(fs.readFileSync(encoderFile).equals(good)).toBe(true);
    expect(fs.readdirSync(folder).filter((name) => name.endsWith('.tmp'))).toEqual([]);

    // The next save removes leftovers too.
    fs.writeFileSync(path.join(folder, leftovers[0]), 'partial');
    await saveCheckpoint(folder, { ...resumed, progress: manifest.progress, random: manifest.random });
    expect(fs.readdirSync(folder).filter((name) => name.endsWith('.tmp'))).toEqual([]);
    const encoder = decodeSafetensors(new Uint8Array(fs.readFileSync(encoderFile)));
    expect([...encoder.tensors.keys()].sort()).toEqual(['bn1.num_batches_tracked', 'bn1.running_mean', 'conv1.bias', 'conv1.weight']);
    for (const item of [run, other, resumed]) disposeTinyRun(item);
  });

  it('refuses manifests that name files outside the folder, hold no config, or an impossible progress', async () => {
    const run = setupTinyRun(1, 8);
    await train({ ...run, epochs: 1, seed: 2, checkpointDir: folder });
    disposeTinyRun(run);
    const file = path.join(folder, 'checkpoint.json');
    const good = JSON.parse(fs.readFileSync(file, 'utf8'));
    const expectRefused = async (
      change: (manifest: { files: Record<string, unknown>; config: unknown; progress: unknown; random: unknown }) => void,
      message: string,
    ) => {
      const manifest = structuredClone(good);
      change(manifest);
      fs.writeFileSync(file, JSON.stringify(manifest));
      await expect(readCheckpointManifest(folder)).rejects.toThrow(`${file}: ${message}`);
    };
    const plain = "expected a plain file name inside the checkpoint folder (no '/', '\\' or '..')";
    await expectRefused((m) => (m.files.model = '../outside.safetensors'), `files.model is "../outside.safetensors", ${plain}`);
    await expectRefused((m) => (m.files.optimizer = '/etc/passwd'), `files.optimizer is "/etc/passwd", ${plain}`);
    await expectRefused((m) => (m.files.encoder = '..'), `files.encoder is "..", ${plain}`);
    await expectRefused((m) => (m.files.model = 'sub\\..\\..\\x'), `files.model is "sub\\\\..\\\\..\\\\x", ${plain}`);
    await expectRefused((m) => (m.config = null), 'config is null, expected an object of settings');
    await expectRefused(
      (m) => (m.progress = { epoch: 3, iterationInEpoch: 1, iteration: 2 }),
      'progress is inconsistent: iteration 2 cannot follow 3 whole epochs and 1 batches',
    );
    await expectRefused((m) => (m.random = null), 'random is null, expected { mask: <stream position>, ... }');
  });
});
