// Training a run to its end or to a stop: the first Ctrl-C (SIGINT) or SIGTERM (what schedulers and `docker
// stop` send) finishes the step, saves a checkpoint and returns; a second one quits at once. Errors the user
// can act on (a diverged run, a full disk) become one line naming the checkpoint that remains.
import { NonFiniteLossError } from '@sparkmim/trainer';
import { readCheckpointManifest, type Trainer, type TrainResult } from '@sparkmim/trainer/node';
import { UsageError } from '../../errors';
import { oneLine } from '../inputs';

/** Errors of the file system the user can act on (a full disk, a read-only folder): one line, not a trace. */
const FILE_ERRORS = new Set(['ENOSPC', 'EDQUOT', 'EFBIG', 'EACCES', 'EPERM', 'EROFS', 'EIO', 'ENOTDIR', 'ENOENT']);

/**
 * Runs `trainer` with the signal handlers installed (and removed afterwards). `beforeMessage` clears a live
 * progress line before a message is printed.
 */
export async function trainUntilDoneOrStopped(trainer: Trainer, out: string, beforeMessage: () => void): Promise<TrainResult> {
  let interrupts = 0;
  const onInterrupt = (signal: NodeJS.Signals) => {
    interrupts++;
    beforeMessage();
    if (interrupts === 1) {
      const again = signal === 'SIGTERM' ? 'a second signal quits at once' : 'Ctrl-C again to quit at once';
      process.stderr.write(`sparkmim: ${signal === 'SIGTERM' ? 'SIGTERM: ' : ''}stopping after this step and saving a checkpoint (${again})\n`);
      trainer.stop();
    } else {
      process.stderr.write('sparkmim: quit without saving\n');
      // The lock file goes with the 'exit' handler the run folder's lock installed.
      process.exit(signal === 'SIGTERM' ? 143 : 130);
    }
  };
  process.on('SIGINT', onInterrupt);
  process.on('SIGTERM', onInterrupt);
  try {
    return await trainer.run();
  } catch (error) {
    beforeMessage();
    if (error instanceof NonFiniteLossError) throw new UsageError(oneLine(error.message));
    const code = (error as { code?: string }).code;
    if (code && FILE_ERRORS.has(code)) {
      const last = await readCheckpointManifest(out).catch(() => undefined);
      throw new UsageError(
        `${oneLine((error as Error).message)}; ` +
          (last
            ? `${out} still holds the checkpoint of iteration ${last.progress.iteration} (continue with: sparkmim pretrain --resume ${out})`
            : `${out} holds no complete checkpoint of this run`),
      );
    }
    throw error;
  } finally {
    process.off('SIGINT', onInterrupt);
    process.off('SIGTERM', onInterrupt);
  }
}
