const sharp = require(require('node:path').resolve(__dirname, '../../apps/pretrain/node_modules/sharp'));
const { resizeBicubicLikePil } = require(require('node:path').resolve('resize.cjs')); // built into the current folder (see README);
const fs = require('node:fs');
const cases = JSON.parse(fs.readFileSync('cases.json', 'utf8'));
(async () => {
  for (const [i, c] of cases.entries()) {
    const [top, left, height, width] = c.box;
    const crop = await sharp(fs.readFileSync(c.file))
      .extract({ left, top, width, height })
      .removeAlpha()
      .toColourspace('srgb')
      .raw({ depth: 'uchar' })
      .toBuffer({ resolveWithObject: true });
    fs.writeFileSync(`ours-${i}.raw`, resizeBicubicLikePil(crop.data, width, height, 3, c.size, c.size));
    // decode only: sharp's crop vs PIL's crop, to separate JPEG decoding from resizing
    fs.writeFileSync(`crop-sharp-${i}.raw`, crop.data);
  }
})();
