import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as ts from 'typescript';
import { writeFileAtomic } from './atomic-write';
import { decodeSafetensors, encodeSafetensors } from './safetensors';

function checkpoint(value: number): Uint8Array {
  return encodeSafetensors({ weight: { shape: [2, 2], data: new Float32Array([value, value, value, value]) } }, { epoch: String(value) });
}

function expectCheckpoint(file: string, value: number): void {
  const { tensors, metadata } = decodeSafetensors(new Uint8Array(fs.readFileSync(file)), { source: file });
  expect(metadata).toEqual({ epoch: String(value) });
  expect(Array.from(tensors.get('weight')!.data)).toEqual([value, value, value, value]);
}

describe('writeFileAtomic', () => {
  let folder: string;
  beforeEach(() => {
    folder = fs.mkdtempSync(path.join(os.tmpdir(), 'sparkmim-atomic-'));
  });
  afterEach(() => {
    fs.rmSync(folder, { recursive: true, force: true });
  });

  it('writes a new file, then replaces it whole, leaving no temporary files', async () => {
    const target = path.join(folder, 'last.safetensors');
    await writeFileAtomic(target, checkpoint(1));
    expectCheckpoint(target, 1);
    const bytes = checkpoint(2);
    // In chunks, as a large checkpoint would be written.
    await writeFileAtomic(target, [bytes.subarray(0, 5), bytes.subarray(5, 100), bytes.subarray(100)]);
    expectCheckpoint(target, 2);
    expect(fs.readdirSync(folder)).toEqual(['last.safetensors']);
  });

  it('leaves the previous file intact and loadable when the write fails half-way', async () => {
    const target = path.join(folder, 'last.safetensors');
    await writeFileAtomic(target, checkpoint(1));
    const bytes = checkpoint(2);
    async function* failing(): AsyncIterable<Uint8Array> {
      yield bytes.subarray(0, 64);
      throw new Error('disk full (simulated)');
    }
    await expect(writeFileAtomic(target, failing())).rejects.toThrow('disk full (simulated)');
    expectCheckpoint(target, 1);
    expect(fs.readdirSync(folder)).toEqual(['last.safetensors']);
  });

  it('leaves the previous file intact and loadable when the writing process is killed mid-write', async () => {
    const target = path.join(folder, 'last.safetensors');
    await writeFileAtomic(target, checkpoint(1));
    // The child runs this very module (transpiled to CommonJS), writes 1 MiB, reports, then hangs until killed.
    const source = fs.readFileSync(path.join(__dirname, 'atomic-write.ts'), 'utf8');
    const compiled = ts.transpileModule(source, { compilerOptions: { module: ts.ModuleKind.CommonJS, target: ts.ScriptTarget.ES2022 } });
    fs.writeFileSync(path.join(folder, 'atomic-write.cjs'), compiled.outputText);
    const child = spawn(
      process.execPath,
      [
        '-e',
        `const { writeFileAtomic } = require(${JSON.stringify(path.join(folder, 'atomic-write.cjs'))});
         setInterval(() => {}, 1000);
         async function* slow() {
           yield new Uint8Array(1 << 20).fill(7);
           process.stdout.write('first chunk written\\n');
           await new Promise(() => {});
         }
         writeFileAtomic(${JSON.stringify(target)}, slow());`,
      ],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
    await new Promise<void>((resolve, reject) => {
      child.stdout.on('data', (chunk: Buffer) => chunk.toString().includes('first chunk written') && resolve());
      child.on('exit', (code) => reject(new Error(`child exited early with code ${code}`)));
    });
    const partial = fs.readdirSync(folder).filter((name) => name.endsWith('.tmp'));
    expect(partial).toHaveLength(1);
    expect(fs.statSync(path.join(folder, partial[0])).size).toBe(1 << 20);
    const exited = new Promise((resolve) => child.on('exit', (_code, signal) => resolve(signal)));
    child.kill('SIGKILL');
    expect(await exited).toBe('SIGKILL');
    expectCheckpoint(target, 1);
  });

  it('rejects, creating nothing, when the folder does not exist', async () => {
    const target = path.join(folder, 'missing', 'last.safetensors');
    // The message names the file asked for and its folder, not the hidden temporary file the system call saw.
    await expect(writeFileAtomic(target, checkpoint(1))).rejects.toThrow(
      `writeFileAtomic: cannot write ${target}: its folder ${path.dirname(target)} does not exist (ENOENT)`,
    );
    await expect(writeFileAtomic(target, checkpoint(1))).rejects.toMatchObject({ code: 'ENOENT' });
    expect(fs.readdirSync(folder)).toEqual([]);
    fs.writeFileSync(path.join(folder, 'file'), 'x');
    const underFile = path.join(folder, 'file', 'last.safetensors');
    await expect(writeFileAtomic(underFile, checkpoint(1))).rejects.toThrow(
      `writeFileAtomic: cannot write ${underFile}: a part of the path is not a folder (ENOTDIR)`,
    );
  });
});
