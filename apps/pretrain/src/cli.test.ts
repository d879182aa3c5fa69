import { runCli } from './testing/run-cli';

describe('sparkmim CLI', () => {
  it('prints the install command when tensorflow-gpu is missing, with exit code 2 and no stack', async () => {
    const result = await runCli(['backend', '--backend', 'tensorflow-gpu']);
    expect(result.code).toBe(2);
    expect(result.stderr).toBe(
      'sparkmim: tensorflow-gpu: the package @tensorflow/tfjs-node-gpu is not installed. Install it with: npm install @tensorflow/tfjs-node-gpu@4.22.0\n',
    );
  });

  it('lists the valid backends for an unknown one', async () => {
    const result = await runCli(['backend', '--backend', 'tpu']);
    expect(result.code).toBe(2);
    expect(result.stderr).toBe("sparkmim: unknown backend 'tpu': expected one of cpu, wasm, webgpu, tensorflow, tensorflow-gpu\n");
  });

  it('reports the backend it set up', async () => {
    const result = await runCli(['backend', '--backend', 'cpu']);
    expect(result.code).toBe(0);
    expect(JSON.parse(result.stdout)).toMatchObject({ name: 'cpu', tfjsBackend: 'cpu', canTrain: true });
  });

  it('rejects an unknown command', async () => {
    const result = await runCli(['frobnicate']);
    expect(result.code).toBe(2);
    expect(result.stderr).toContain("unknown command 'frobnicate'");
  });
});
