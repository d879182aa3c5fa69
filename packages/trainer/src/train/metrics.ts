import type * as FsPromises from 'node:fs/promises';
import { fs, path } from '../data/node-modules';

export type { EpochMetrics, RunSummaryMetrics, StepMetrics } from './metric-records';

/** Appends JSON lines to a file (Node only), opened on first write. */
export class JsonlWriter {
  private handle: FsPromises.FileHandle | undefined;
  private opening: Promise<FsPromises.FileHandle> | undefined;

  constructor(readonly file: string) {}

  async write(record: object): Promise<void> {
    if (!this.handle) {
      this.opening ??= (async () => {
        await fs.mkdir(path.dirname(this.file), { recursive: true });
        return fs.open(this.file, 'a');
      })();
      this.handle = await this.opening;
    }
    await this.handle.write(`${JSON.stringify(record)}\n`);
  }

  async close(): Promise<void> {
    const handle = this.handle ?? (this.opening ? await this.opening.catch(() => undefined) : undefined);
    this.handle = undefined;
    this.opening = undefined;
    await handle?.close();
  }
}
