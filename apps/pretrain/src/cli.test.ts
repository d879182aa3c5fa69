import { main } from './cli';

async function run(argv: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const stdout: string[] = [];
  const stderr: string[] = [];
  const outSpy = jest.spyOn(process.stdout, 'write').mockImplementation((chunk) => (stdout.push(String(chunk)), true));
  const errSpy = jest.spyOn(process.stderr, 'write').mockImplementation((chunk) => (stderr.push(String(chunk)), true));
  try {
    const code = await main(argv);
    return { code, stdout: stdout.join(''), stderr: stderr.join('') };
  } finally {
    outSpy.mockRestore();
    errSpy.mockRestore();
  }
}

describe('sparkmim CLI', () => {
  it('prints the install command when tensorflow-gpu is missing, with exit code 2 and no stack', async () => {
    const result = await run(['backend', '--backend', 'tensorflow-gpu']);
    expect(result.code).toBe(2);
    expect(result.stderr).toBe(
      'sparkmim: tensorflow-gpu: the package @tensorflow/tfjs-node-gpu is not installed. Install it with: npm install @tensorflow/tfjs-node-gpu@4.22.0\n',
    );
  });

  it('lists the valid backends for an unknown one', async () => {
    const result = await run(['backend', '--backend', 'tpu']);
    expect(result.code).toBe(2);
    expect(result.stderr).toBe(
      "sparkmim: unknown backend 'tpu': expected one of cpu, wasm, webgpu, tensorflow, tensorflow-gpu\n",
    );
  });

  it('reports the backend it set up', async () => {
    const result = await run(['backend', '--backend', 'cpu']);
    expect(result.code).toBe(0);
    expect(JSON.parse(result.stdout)).toMatchObject({ name: 'cpu', tfjsBackend: 'cpu', canTrain: true });
  });

  it('rejects an unknown command', async () => {
    const result = await run(['frobnicate']);
    expect(result.code).toBe(2);
    expect(result.stderr).toContain("unknown command 'frobnicate'");
  });
});
