// The demo page: SparK reconstructing masked pictures and pre-training in the browser, on WebGPU when the
// browser has it (then wasm, then plain JavaScript). Everything it loads comes from its own origin.
import * as tf from '@tensorflow/tfjs-core';
import { randomPatchMask } from '@sparkmim/masking';
import { BACKEND_NAMES, setupFastestBackend, type BackendInfo, type BackendName } from '@sparkmim/runtime';
import type { AdamW } from '@sparkmim/trainer';
import {
  FIXED_MASKS_PER_PICTURE,
  isCheckpointName,
  isTfjsModelJsonName,
  modelFromWeights,
  modelFromWeightsFile,
  pageOptimizer,
  reconstruct,
  tfjsWeightsFromFiles,
  trainInPage,
  type LoadedModel,
  type Reconstruction,
} from './model';
import {
  croppedPixels,
  decodePicture,
  drawErrorMap,
  drawLossCurve,
  drawRgb,
  fittedShape,
  type InputShape,
  maskedRgb,
  patchErrors,
  type Picture,
  squarePixels,
} from './pictures';

/** The held-out crops of the embedded sample images (never trained on), in apps/demo/public/samples. */
const SAMPLES = ['chelsea-005.jpg', 'astronaut-007.jpg', 'coffee-010.jpg', 'rocket-003.jpg', 'earth-004.jpg', 'seeding-020.jpg'];
const SHIPPED_WEIGHTS = 'weights/spark-demo.safetensors';
const PATCH = 32;

const element = <T extends HTMLElement>(id: string) => document.getElementById(id) as T;
const statusLine = element<HTMLParagraphElement>('status');
const message = element<HTMLParagraphElement>('message');
const samplesBox = element<HTMLDivElement>('samples');
const sizeSelect = element<HTMLSelectElement>('size');
const shapeSelect = element<HTMLSelectElement>('shape');
const ratioInput = element<HTMLInputElement>('mask-ratio');
const ratioValue = element<HTMLOutputElement>('mask-ratio-value');
const seedInput = element<HTMLInputElement>('seed');
const hiddenCount = element<HTMLParagraphElement>('hidden-count');
const patchGrid = element<HTMLDivElement>('patch-grid');
const views = {
  original: element<HTMLCanvasElement>('view-original'),
  masked: element<HTMLCanvasElement>('view-masked'),
  reconstruction: element<HTMLCanvasElement>('view-reconstruction'),
  composite: element<HTMLCanvasElement>('view-composite'),
  error: element<HTMLCanvasElement>('view-error'),
};
const trainButton = element<HTMLButtonElement>('train');
const stopButton = element<HTMLButtonElement>('stop');
const saveButton = element<HTMLButtonElement>('save');
const trainStatus = element<HTMLParagraphElement>('train-status');
const trainData = element<HTMLParagraphElement>('train-data');
const lossCurve = element<HTMLCanvasElement>('loss-curve');
const trainPreviews = element<HTMLDivElement>('train-previews');
const modelInfo = element<HTMLParagraphElement>('model-info');
const checkpointProgress = element<HTMLProgressElement>('checkpoint-progress');

const state = {
  backend: undefined as BackendInfo | undefined,
  loaded: undefined as LoadedModel | undefined,
  modelSource: '',
  optimizer: undefined as AdamW | undefined,
  pictures: [] as Picture[],
  current: 0,
  /** The input size: the side of the square, or the short side of the picture's proportions. */
  size: 96,
  /** Whether pictures keep their proportions (rectangles of whole patches) or are cropped to squares. */
  keepProportions: false,
  /** The input shape of the views, `[height, width]`; training batches are always `size` squares. */
  shape: [96, 96] as InputShape,
  visible: new Uint8Array(9),
  last: undefined as (Reconstruction & { original: Uint8Array; masked: Uint8Array; shape: InputShape; visible: number[] }) | undefined,
  reconstructions: 0,
  training: false,
  stopRequested: false,
  losses: [] as number[],
  trainedSteps: 0,
};

function showMessage(text: string): void {
  message.textContent = text;
}

/** The patch grid of the views, `[rows, columns]`. */
function grid(): [rows: number, columns: number] {
  return [state.shape[0] / PATCH, state.shape[1] / PATCH];
}

/** The input shape for the current picture, size and shape setting. */
function wantedShape(): InputShape {
  const picture = state.pictures[state.current];
  return state.keepProportions && picture ? fittedShape(picture, state.size, PATCH) : [state.size, state.size];
}

/** Adopts {@link wantedShape}: a new patch grid and mask when it changes (or when `force`). */
function applyShape(force = false): void {
  const shape = wantedShape();
  if (!force && shape[0] === state.shape[0] && shape[1] === state.shape[1]) return;
  state.shape = shape;
  for (const canvas of Object.values(views)) canvas.style.aspectRatio = `${shape[1]} / ${shape[0]}`;
  buildPatchGrid();
  newMask();
}

// ---------------------------------------------------------------------------------------------- the mask

function newMask(): void {
  const ratio = Number(ratioInput.value);
  const seed = Math.max(0, Math.floor(Number(seedInput.value) || 0));
  try {
    const active = randomPatchMask(1, grid(), ratio, { seed });
    state.visible = Uint8Array.from(active.dataSync());
    active.dispose();
  } catch (error) {
    showMessage(`mask: ${(error as Error).message}`);
  }
  updatePatchButtons();
}

function buildPatchGrid(): void {
  const [rows, columns] = grid();
  patchGrid.replaceChildren();
  patchGrid.style.gridTemplateColumns = `repeat(${columns}, 1fr)`;
  patchGrid.style.gridTemplateRows = `repeat(${rows}, 1fr)`;
  for (let index = 0; index < rows * columns; index++) {
    const button = document.createElement('button');
    button.type = 'button';
    button.dataset.index = String(index);
    patchGrid.append(button);
  }
}

function updatePatchButtons(): void {
  const [rows, columns] = grid();
  const hidden = state.visible.reduce((sum, value) => sum + (value === 1 ? 0 : 1), 0);
  patchGrid.querySelectorAll('button').forEach((button, index) => {
    const isHidden = state.visible[index] !== 1;
    button.setAttribute('aria-pressed', String(isHidden));
    button.setAttribute(
      'aria-label',
      `patch row ${Math.floor(index / columns) + 1}, column ${(index % columns) + 1}: ${isHidden ? 'hidden' : 'visible'}`,
    );
  });
  hiddenCount.textContent = `${hidden} of ${rows * columns} patches hidden (${PATCH}×${PATCH} pixels each)`;
  document.body.dataset.hidden = String(hidden);
}

function setPatch(index: number, hidden: boolean): void {
  if ((state.visible[index] !== 1) === hidden) return;
  state.visible[index] = hidden ? 0 : 1;
  updatePatchButtons();
  render();
}

// Pointer: press on a patch flips it and sets what dragging over further patches does (hide or show).
// Keyboard: Enter/Space on a focused patch is a click with detail 0.
let paint: boolean | undefined;
patchGrid.addEventListener('pointerdown', (event) => {
  const target = (event.target as HTMLElement).closest<HTMLButtonElement>('button[data-index]');
  if (!target) return;
  event.preventDefault();
  target.focus();
  const index = Number(target.dataset.index);
  paint = state.visible[index] === 1;
  patchGrid.setPointerCapture(event.pointerId);
  setPatch(index, paint);
});
patchGrid.addEventListener('pointermove', (event) => {
  if (paint === undefined) return;
  const over = document.elementFromPoint(event.clientX, event.clientY)?.closest<HTMLButtonElement>('#patch-grid button[data-index]');
  if (over) setPatch(Number(over.dataset.index), paint);
});
const endPaint = () => (paint = undefined);
patchGrid.addEventListener('pointerup', endPaint);
patchGrid.addEventListener('pointercancel', endPaint);
patchGrid.addEventListener('click', (event) => {
  const target = (event.target as HTMLElement).closest<HTMLButtonElement>('button[data-index]');
  if (!target || event.detail !== 0) return;
  const index = Number(target.dataset.index);
  setPatch(index, state.visible[index] === 1);
});

// ----------------------------------------------------------------------------------------- the views

let rendering = false;
let renderAgain = false;

/** Draws the views for the current picture, mask and model; calls made while one runs coalesce into one. */
function render(): void {
  if (rendering) {
    renderAgain = true;
    return;
  }
  rendering = true;
  void (async () => {
    try {
      do {
        renderAgain = false;
        await renderOnce();
      } while (renderAgain);
    } catch (error) {
      showMessage(`reconstruction failed: ${(error as Error).message}`);
    } finally {
      rendering = false;
    }
  })();
}

async function renderOnce(): Promise<void> {
  const picture = state.pictures[state.current];
  if (!picture) return;
  const { shape } = state;
  const visible = Uint8Array.from(state.visible);
  const original = croppedPixels(picture, shape);
  const masked = maskedRgb(original, visible, shape, PATCH);
  drawRgb(views.original, original, shape);
  drawRgb(views.masked, masked, shape);
  if (!state.loaded) return;
  const result = await reconstruct(state.loaded.model, original, shape, visible);
  drawRgb(views.reconstruction, result.pixels, shape);
  drawRgb(views.composite, result.composite, shape);
  const errors = patchErrors(result.pixels, original, shape, PATCH);
  const hiddenErrors = [...errors].filter((_, index) => visible[index] !== 1);
  // One fixed colour scale (0 .. 0.04, where a grey fill of a mid-contrast patch lands) so pictures compare.
  const [rows, columns] = grid();
  drawErrorMap(views.error, errors, visible, [rows, columns], Math.max(2 * PATCH, Math.round(288 / Math.min(rows, columns))), 0.04);
  state.last = { ...result, original, masked, shape, visible: [...visible] };
  state.reconstructions += 1;
  const hiddenMse = hiddenErrors.length ? hiddenErrors.reduce((a, b) => a + b, 0) / hiddenErrors.length : 0;
  statusLine.textContent =
    `${backendText()} · inference ${result.milliseconds.toFixed(0)} ms · ` +
    `hidden-patch loss ${Number.isFinite(result.loss) ? result.loss.toFixed(3) : '-'} (MSE ${(hiddenMse * 1000).toFixed(1)}e-3)`;
  document.body.dataset.reconstructions = String(state.reconstructions);
  document.body.dataset.inferenceMs = result.milliseconds.toFixed(1);
}

function backendText(): string {
  const info = state.backend;
  if (!info) return 'backend: -';
  const adapter = info.adapter
    ? ` · adapter: ${[info.adapter.vendor, info.adapter.architecture, info.adapter.description].filter(Boolean).join(' ')}`
    : '';
  return `backend: ${info.tfjsBackend}${adapter}`;
}

// -------------------------------------------------------------------------------------------- pictures

function addSampleButton(picture: Picture, index: number): void {
  const button = document.createElement('button');
  button.type = 'button';
  button.dataset.index = String(index);
  button.setAttribute('aria-pressed', 'false');
  const image = document.createElement('img');
  image.alt = picture.own ? `your picture ${picture.name}` : `sample ${picture.name.replace(/\.jpg$/, '')}`;
  const canvas = document.createElement('canvas');
  canvas.width = picture.bitmap.width;
  canvas.height = picture.bitmap.height;
  canvas.getContext('2d')!.drawImage(picture.bitmap, 0, 0);
  image.src = canvas.toDataURL();
  button.append(image);
  button.addEventListener('click', () => selectPicture(index));
  samplesBox.append(button);
}

function selectPicture(index: number): void {
  state.current = index;
  for (const button of samplesBox.querySelectorAll('button')) button.setAttribute('aria-pressed', String(Number(button.dataset.index) === index));
  applyShape();
  showMessage('');
  updateTrainData();
  render();
}

function addPicture(picture: Picture): number {
  state.pictures.push(picture);
  const index = state.pictures.length - 1;
  addSampleButton(picture, index);
  return index;
}

/** Reads dropped, pasted or picked files: a checkpoint (with a run folder's other files) or pictures. */
async function handleFiles(files: File[]): Promise<void> {
  showMessage('');
  if (files.length === 0) return;
  const checkpoints = files.filter((file) => isCheckpointName(file.name));
  if (checkpoints.length > 0) {
    // A run folder: model.*.safetensors is the model; optimizer.* and encoder.* are not what the page runs.
    // TF.js artefacts: model.json with its shards.
    const chosen =
      checkpoints.find((file) => /^model\..*\.safetensors$/i.test(file.name) || /withdecoder/i.test(file.name)) ??
      checkpoints.find((file) => /^model\.json$/i.test(file.name)) ??
      checkpoints.find((file) => !/^(optimizer|encoder)\b/i.test(file.name) && !isTfjsModelJsonName(file.name)) ??
      checkpoints[0];
    await loadCheckpointFile(chosen, files);
    return;
  }
  const problems: string[] = [];
  let first: number | undefined;
  for (const file of files) {
    try {
      const index = addPicture(await decodePicture(file, file.name || 'pasted picture', true));
      first ??= index;
    } catch (error) {
      problems.push((error as Error).message);
    }
  }
  if (first !== undefined) selectPicture(first);
  if (problems.length) showMessage(`${problems.join('; ')}. The page keeps the pictures it had.`);
}

element<HTMLInputElement>('image-input').addEventListener('change', (event) => {
  const input = event.target as HTMLInputElement;
  void handleFiles([...(input.files ?? [])]).finally(() => (input.value = ''));
});

document.addEventListener('dragover', (event) => {
  event.preventDefault();
  document.body.classList.add('dragging');
});
document.addEventListener('dragleave', () => document.body.classList.remove('dragging'));
document.addEventListener('drop', (event) => {
  event.preventDefault();
  document.body.classList.remove('dragging');
  const transfer = event.dataTransfer;
  if (!transfer) return;
  void droppedFiles(transfer).then(handleFiles);
});
document.addEventListener('paste', (event) => {
  const files = [...(event.clipboardData?.files ?? [])];
  if (files.length) {
    event.preventDefault();
    void handleFiles(files);
  }
});

/** The files of a drop, folders (a run folder) read recursively. */
async function droppedFiles(transfer: DataTransfer): Promise<File[]> {
  const entries = [...transfer.items].map((item) => item.webkitGetAsEntry?.()).filter((entry): entry is FileSystemEntry => !!entry);
  if (!entries.some((entry) => entry.isDirectory)) return [...transfer.files];
  const files: File[] = [];
  const visit = async (entry: FileSystemEntry): Promise<void> => {
    if (entry.isFile) {
      files.push(await new Promise<File>((resolve, reject) => (entry as FileSystemFileEntry).file(resolve, reject)));
    } else if (entry.isDirectory) {
      const reader = (entry as FileSystemDirectoryEntry).createReader();
      for (;;) {
        const batch = await new Promise<FileSystemEntry[]>((resolve, reject) => reader.readEntries(resolve, reject));
        if (batch.length === 0) break;
        for (const child of batch) await visit(child);
      }
    }
  };
  for (const entry of entries) await visit(entry);
  return files;
}

// ----------------------------------------------------------------------------------------- checkpoints

async function readWithProgress(file: File): Promise<Uint8Array> {
  checkpointProgress.hidden = false;
  checkpointProgress.value = 0;
  const bytes = new Uint8Array(file.size);
  let offset = 0;
  const reader = file.stream().getReader();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    bytes.set(value, offset);
    offset += value.length;
    checkpointProgress.value = file.size ? offset / file.size : 1;
    statusLine.textContent = `reading ${file.name}: ${(offset / 1e6).toFixed(1)} of ${(file.size / 1e6).toFixed(1)} MB`;
  }
  return bytes;
}

async function loadCheckpointFile(file: File, dropped: readonly File[]): Promise<void> {
  if (state.training) {
    showMessage('Stop training before loading another checkpoint.');
    return;
  }
  try {
    if (isTfjsModelJsonName(file.name)) {
      checkpointProgress.hidden = false;
      const weights = await tfjsWeightsFromFiles(file, dropped, (fraction) => {
        checkpointProgress.value = fraction;
        statusLine.textContent = `reading ${file.name} and its shards: ${Math.round(100 * fraction)}%`;
      });
      statusLine.textContent = `building the model from ${file.name}…`;
      setModel(await modelFromWeightsFile(weights, `'${file.name}'`), file.name);
      return;
    }
    const bytes = await readWithProgress(file);
    statusLine.textContent = `building the model from ${file.name}…`;
    setModel(await modelFromWeights(bytes, `'${file.name}'`), file.name);
  } catch (error) {
    showMessage(`Could not load the checkpoint '${file.name}': ${(error as Error).message}. The page keeps the model it had.`);
    statusLine.textContent = backendText();
  } finally {
    checkpointProgress.hidden = true;
  }
}

function setModel(loaded: LoadedModel, source: string): void {
  state.loaded?.model.dispose();
  state.optimizer?.dispose();
  state.optimizer = undefined;
  state.loaded = loaded;
  state.modelSource = source;
  state.losses = [];
  state.trainedSteps = 0;
  drawLossCurve(lossCurve, state.losses);
  modelInfo.textContent = `${source}: ${loaded.description}`;
  document.body.dataset.model = source;
  render();
}

async function loadShippedWeights(): Promise<void> {
  const response = await fetch(SHIPPED_WEIGHTS);
  if (!response.ok) throw new Error(`${SHIPPED_WEIGHTS}: HTTP ${response.status}`);
  setModel(await modelFromWeights(new Uint8Array(await response.arrayBuffer()), SHIPPED_WEIGHTS), 'shipped weights');
}

element<HTMLInputElement>('checkpoint-input').addEventListener('change', (event) => {
  const input = event.target as HTMLInputElement;
  void handleFiles([...(input.files ?? [])]).finally(() => (input.value = ''));
});
element<HTMLButtonElement>('reset-model').addEventListener('click', () => {
  if (state.training) return;
  showMessage('');
  loadShippedWeights().catch((error: Error) => showMessage(error.message));
});

// -------------------------------------------------------------------------------------------- training

function trainingPictures(): Picture[] {
  const own = state.pictures.filter((picture) => picture.own);
  return own.length ? own : state.pictures;
}

function updateTrainData(): void {
  const pictures = trainingPictures();
  const own = pictures.some((picture) => picture.own);
  trainData.textContent =
    `Trains on ${pictures.length} ${own ? 'of your pictures' : 'bundled samples (open or drop your own pictures to train on them)'}` +
    ` as ${state.size}×${state.size} squares (centred crops), with random masks and flips; the pictures never leave the page.`;
}

async function train(): Promise<void> {
  const loaded = state.loaded;
  if (!loaded || state.training) return;
  if (state.backend && !state.backend.canTrain) {
    showMessage(`Training needs gradients the ${state.backend.tfjsBackend} backend lacks; open the page in a browser with WebGPU.`);
    return;
  }
  showMessage('');
  const steps = Math.max(1, Math.floor(Number(element<HTMLInputElement>('train-steps').value) || 1));
  const batchSize = Math.max(1, Math.floor(Number(element<HTMLInputElement>('train-batch').value) || 1));
  const learningRate = Number(element<HTMLInputElement>('train-lr').value);
  if (!(learningRate > 0)) {
    showMessage(`learning rate: expected a number above 0, got '${element<HTMLInputElement>('train-lr').value}'`);
    return;
  }
  const size = state.size;
  const pictures = trainingPictures().map((picture) => squarePixels(picture, size));
  state.optimizer ??= pageOptimizer(loaded.model, learningRate);
  state.training = true;
  state.stopRequested = false;
  trainButton.disabled = true;
  saveButton.disabled = true;
  stopButton.disabled = false;
  trainPreviews.replaceChildren();
  document.body.dataset.training = 'true';
  const previewEvery = Math.max(1, Math.round(steps / 4));
  const started = performance.now();
  try {
    const result = await trainInPage(loaded.model, state.optimizer, pictures, size, {
      steps,
      batchSize,
      learningRate,
      maskRatio: Number(ratioInput.value),
      seed: Math.floor(Number(seedInput.value) || 0) + state.trainedSteps,
      onStep: async (step, loss) => {
        state.losses.push(loss);
        drawLossCurve(lossCurve, state.losses);
        const seconds = (performance.now() - started) / 1000 / step;
        trainStatus.textContent = `step ${step} of ${steps}: loss ${loss.toFixed(4)} (${seconds.toFixed(2)} s per step on ${state.backend?.tfjsBackend})`;
        if (step % previewEvery === 0 || step === steps) await addPreview(step);
        return !state.stopRequested;
      },
    });
    state.trainedSteps += result.stepsRun;
    trainStatus.textContent =
      `${result.stepsRun} steps done (${state.trainedSteps} in all): loss on a fixed batch (the first ${Math.min(batchSize, pictures.length)} ` +
      `pictures, ${FIXED_MASKS_PER_PICTURE} fixed masks each) ${result.fixedBefore.toFixed(4)} → ${result.fixedAfter.toFixed(4)}. Save the checkpoint to keep it.`;
    document.body.dataset.fixedLossBefore = String(result.fixedBefore);
    document.body.dataset.fixedLossAfter = String(result.fixedAfter);
    modelInfo.textContent = `${state.modelSource} + ${state.trainedSteps} steps in the page: ${loaded.description}`;
  } catch (error) {
    showMessage(`training stopped: ${(error as Error).message}`);
  } finally {
    state.training = false;
    trainButton.disabled = false;
    saveButton.disabled = false;
    stopButton.disabled = true;
    document.body.dataset.training = 'false';
    render();
  }
}

/** A small reconstruction of the current picture with the current mask, during training. */
async function addPreview(step: number): Promise<void> {
  const picture = state.pictures[state.current];
  if (!picture || !state.loaded) return;
  const original = croppedPixels(picture, state.shape);
  const result = await reconstruct(state.loaded.model, original, state.shape, state.visible);
  const canvas = document.createElement('canvas');
  canvas.setAttribute('role', 'img');
  canvas.setAttribute('aria-label', `reconstruction after step ${step}`);
  canvas.title = `step ${step}`;
  drawRgb(canvas, result.composite, state.shape);
  canvas.style.aspectRatio = `${state.shape[1]} / ${state.shape[0]}`;
  trainPreviews.append(canvas);
}

trainButton.addEventListener('click', () => void train());
stopButton.addEventListener('click', () => (state.stopRequested = true));
saveButton.addEventListener('click', async () => {
  if (!state.loaded) return;
  const bytes = await state.loaded.model.toSafetensors({
    format: 'pt',
    producer: 'sparkmim demo page',
    from: state.modelSource,
    pageSteps: String(state.trainedSteps),
  });
  const url = URL.createObjectURL(new Blob([new Uint8Array(bytes)], { type: 'application/octet-stream' }));
  const link = document.createElement('a');
  link.href = url;
  link.download = `spark-demo-${state.trainedSteps}-steps.safetensors`;
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
});

// ------------------------------------------------------------------------------------------ start-up

ratioInput.addEventListener('input', () => {
  ratioValue.textContent = Number(ratioInput.value).toFixed(2);
  newMask();
  render();
});
seedInput.addEventListener('change', () => {
  newMask();
  render();
});
element<HTMLButtonElement>('new-mask').addEventListener('click', () => {
  seedInput.value = String(Math.floor(Number(seedInput.value) || 0) + 1);
  newMask();
  render();
});
sizeSelect.addEventListener('change', () => {
  state.size = Number(sizeSelect.value);
  applyShape(true);
  updateTrainData();
  render();
});
shapeSelect.addEventListener('change', () => {
  state.keepProportions = shapeSelect.value === 'picture';
  applyShape();
  render();
});

/** Backends to try: `?backend=cpu` (or wasm, webgpu) forces one; otherwise WebGPU, then wasm, then cpu. */
function backendCandidates(): BackendName[] {
  const asked = new URLSearchParams(location.search).get('backend');
  if (asked && (BACKEND_NAMES as readonly string[]).includes(asked)) return [asked as BackendName];
  return ['webgpu', 'wasm', 'cpu'];
}

async function start(): Promise<void> {
  // The page exists to show WebGPU; the small model runs on a software adapter (SwiftShader) too.
  state.backend = await setupFastestBackend(backendCandidates(), { acceptSoftwareAdapter: true });
  document.body.dataset.backend = state.backend.tfjsBackend;
  statusLine.textContent = `${backendText()} · loading the model…`;
  // Everything the page needs is fetched now, so it keeps working offline.
  const [pictures] = await Promise.all([
    Promise.all(
      SAMPLES.map(async (name) => {
        const response = await fetch(`samples/${name}`);
        if (!response.ok) throw new Error(`samples/${name}: HTTP ${response.status}`);
        return decodePicture(await response.blob(), name, false);
      }),
    ),
    loadShippedWeights(),
    fetch('weights/config.json')
      .then((response) => (response.ok ? response.json() : undefined))
      .then((config: Record<string, unknown> | undefined) => {
        if (!config) return;
        element('weights-info').textContent =
          `Pre-trained by sparkmim pretrain (apps/pretrain/configs/demo.json): ${config.model}, depths ${config.depths}, widths ${config.widths}, ` +
          `${config.inputSize}×${config.inputSize}, ${config.epochs} epochs of ${config.batchSize}-image batches, ${config.optimizer}, on 314 of the ` +
          'embedded sample images; the six samples above were held out.';
      })
      .catch(() => undefined),
  ]);
  pictures.forEach(addPicture);
  applyShape(true);
  saveButton.disabled = false;
  selectPicture(0);
}

buildPatchGrid();
drawLossCurve(lossCurve, []);
(window as unknown as { sparkmimDemo: unknown }).sparkmimDemo = {
  /** The last reconstruction, as plain arrays (tests compare it with Node and with the original). */
  last: () =>
    state.last && {
      shape: state.last.shape,
      visible: state.last.visible,
      original: [...state.last.original],
      masked: [...state.last.masked],
      raw: [...state.last.raw],
      pixels: [...state.last.pixels],
      composite: [...state.last.composite],
      loss: state.last.loss,
    },
  tensors: () => tf.memory().numTensors,
};
start().catch((error: Error) => {
  statusLine.textContent = `error: ${error.message}`;
  showMessage(error.message);
});
