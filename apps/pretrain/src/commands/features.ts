// `sparkmim features`: pooled features of every image of a labelled folder, from pre-trained (or random)
// weights, as safetensors (`features` [N, C], `labels` [N], file names and classes in the metadata) or JSONL
// (one line per image: file, class, label, features).
import { writeFile } from 'node:fs/promises';
import { parseArgs } from 'node:util';
import { setupBackend } from '@sparkmim/runtime';
import { encodeSafetensors } from '@sparkmim/trainer';
import { UsageError } from '../errors';
import { checkOutputFile } from './inputs';
import { LABELLED_HELP, LABELLED_OPTIONS, buildClassifier, extractFeatures, intOption } from './labelled';
import { LabelledFolderError, LabelledImageFolder } from '@sparkmim/trainer/node';

export const FEATURES_HELP = `usage: sparkmim features --weights FILE --data FOLDER --out FILE.safetensors|FILE.jsonl [options]

Pooled features (global average of the last feature map, in evaluation mode) of every image in FOLDER, one
subfolder per class. FILE.safetensors holds 'features' [N, C] float32 and 'labels' [N] int32, with the file
names and the class names as JSON in its metadata ('files', 'classes'); FILE.jsonl one line per image:
{"file", "class", "label", "features"}.

  --out FILE               .safetensors or .jsonl
${LABELLED_HELP}`;

/** Runs `sparkmim features`; returns the exit code. */
export async function featuresCommand(argv: string[]): Promise<number> {
  const { values } = parseArgs({ args: argv, strict: true, options: { ...LABELLED_OPTIONS, out: { type: 'string' } } });
  if (values.help) {
    process.stdout.write(FEATURES_HELP);
    return 0;
  }
  if (!values.out) throw new UsageError('--out FILE is required (.safetensors or .jsonl)');
  const format = values.out.endsWith('.safetensors') ? 'safetensors' : values.out.endsWith('.jsonl') ? 'jsonl' : undefined;
  if (!format) throw new UsageError(`--out: expected a file ending in .safetensors or .jsonl, got ${values.out}`);
  if (!values.data) throw new UsageError('--data FOLDER is required (a folder with one subfolder per class)');
  await checkOutputFile('out', values.out);
  const inputSize = intOption(values, 'input-size', 96);
  const batchSize = intOption(values, 'batch-size', 16);
  const seed = intOption(values, 'seed', 0, 0);
  await setupBackend(values.backend ?? 'cpu');
  let data: LabelledImageFolder;
  try {
    data = await LabelledImageFolder.open(values.data, { inputSize });
  } catch (error) {
    if (error instanceof LabelledFolderError) throw new UsageError(`--data: ${error.message}`);
    throw error;
  }
  const { classifier, source } = await buildClassifier(values, data.classes.length, seed);
  try {
    const indices = data.files.map((_, i) => i);
    const started = Date.now();
    const features = await extractFeatures(classifier, data, indices, batchSize);
    const size = classifier.featureSize;
    if (format === 'safetensors') {
      const bytes = encodeSafetensors(
        {
          features: { dtype: 'F32', shape: [indices.length, size], data: features },
          labels: { dtype: 'I32', shape: [indices.length], data: Int32Array.from(data.labels) },
        },
        { files: JSON.stringify(data.files), classes: JSON.stringify(data.classes), weights: source },
      );
      await writeFile(values.out, bytes);
    } else {
      const lines = indices.map((i) =>
        JSON.stringify({
          file: data.files[i],
          class: data.classes[data.labels[i]],
          label: data.labels[i],
          features: Array.from(features.subarray(i * size, (i + 1) * size)),
        }),
      );
      await writeFile(values.out, `${lines.join('\n')}\n`);
    }
    process.stdout.write(
      `features of ${indices.length} images (${data.classes.length} classes, ${size} channels) from ${source} in ${((Date.now() - started) / 1000).toFixed(1)} s: ${values.out}\n`,
    );
    return 0;
  } finally {
    classifier.dispose();
  }
}
