const sharp = require(require('node:path').resolve(__dirname, '../../apps/pretrain/node_modules/sharp'));
const fs = require('node:fs');
const cases = JSON.parse(fs.readFileSync('cases.json', 'utf8'));
(async () => {
  for (const [i, c] of cases.entries()) {
    const [top, left, height, width] = c.box;
    for (const kernel of ['cubic', 'mitchell', 'lanczos3']) {
      const { data } = await sharp(fs.readFileSync(c.file))
        .extract({ left, top, width, height })
        .resize(c.size, c.size, { kernel, fit: 'fill' })
        .removeAlpha()
        .raw()
        .toBuffer({ resolveWithObject: true });
      fs.writeFileSync(`sharp-${kernel}-${i}.raw`, data);
    }
  }
})();
