// Node only: exported by the `@sparkmim/trainer/node` entry, never by the main one.
import * as fs from 'node:fs/promises';
import * as path from 'node:path';

/** What {@link writeFileAtomic} writes: bytes, or chunks (so a large checkpoint need not be one buffer). */
export type AtomicWriteData = Uint8Array | Iterable<Uint8Array> | AsyncIterable<Uint8Array>;

async function* chunksOf(data: AtomicWriteData): AsyncIterable<Uint8Array> {
  if (data instanceof Uint8Array) yield data;
  else yield* data;
}

const REASONS: Record<string, string> = {
  ENOSPC: 'no space left on the device',
  EDQUOT: 'the disk quota is used up',
  EACCES: 'permission denied',
  EPERM: 'operation not permitted',
  EROFS: 'the file system is read-only',
  ENOTDIR: 'a part of the path is not a folder',
  EISDIR: 'it is a folder',
  EFBIG: 'the file is too large for this file system (or the file size limit)',
  EIO: 'an input/output error of the device',
};

// The message names the file asked for, not the hidden temporary file the system call failed on.
function writeError(filePath: string, folder: string, error: NodeJS.ErrnoException): Error {
  const code = error?.code;
  if (!code) return error;
  const reason = code === 'ENOENT' ? `its folder ${folder} does not exist` : (REASONS[code] ?? error.message.replace(/, \w+ '[^']*'$/, ''));
  const wrapped = new Error(`writeFileAtomic: cannot write ${filePath}: ${reason} (${code})`) as NodeJS.ErrnoException;
  wrapped.code = code;
  wrapped.cause = error;
  return wrapped;
}

/**
 * Writes a file so that readers see either the old content or the whole new content, never a part:
 * the bytes go to a temporary file in the same folder, which is flushed to disk (fsync) and then renamed
 * over `filePath` (an atomic replace on POSIX and on Windows NTFS). If the write fails or the process
 * dies first, `filePath` is untouched (a failed write removes its temporary file; a killed process may
 * leave a `.<name>.<pid>.<random>.tmp` file behind). A failed write rejects with an error that names
 * `filePath` and the reason (`no space left on the device (ENOSPC)`), with the system error's `code`. Node only.
 *
 * @example
 * await writeFileAtomic('checkpoints/last.safetensors', encodeSafetensors(entries, metadata));
 */
export async function writeFileAtomic(filePath: string, data: AtomicWriteData): Promise<void> {
  const folder = path.dirname(filePath);
  const random = Math.floor(Math.random() * 0x100000000)
    .toString(16)
    .padStart(8, '0');
  const tempPath = path.join(folder, `.${path.basename(filePath)}.${process.pid}.${random}.tmp`);
  // 'wx': fail rather than share a temporary file with another writer.
  const handle = await fs.open(tempPath, 'wx').catch((error: NodeJS.ErrnoException) => {
    throw writeError(filePath, folder, error);
  });
  let closed = false;
  try {
    for await (const chunk of chunksOf(data)) {
      let written = 0;
      while (written < chunk.byteLength) {
        const { bytesWritten } = await handle.write(chunk, written, chunk.byteLength - written);
        written += bytesWritten;
      }
    }
    // Flush the data before the rename: otherwise a crash can leave the new name pointing at an empty file.
    await handle.sync();
    await handle.close();
    closed = true;
    await fs.rename(tempPath, filePath);
  } catch (error) {
    if (!closed) await handle.close().catch(() => undefined);
    await fs.rm(tempPath, { force: true }).catch(() => undefined);
    throw writeError(filePath, folder, error as NodeJS.ErrnoException);
  }
  // Flush the folder too, so the rename itself survives a power loss. Folders cannot be opened for
  // this on Windows, where the rename is already durable once it returns.
  try {
    const folderHandle = await fs.open(folder, 'r');
    try {
      await folderHandle.sync();
    } finally {
      await folderHandle.close();
    }
  } catch {
    // Best effort: the file is complete and in place either way.
  }
}
