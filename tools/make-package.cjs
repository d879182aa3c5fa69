// One-off scaffolding helper: writes the package.json / tsconfig / tsup / jest config of a library so
// that every package follows the same hygiene (exports map, source condition, peer tfjs-core).
const fs = require('node:fs');
const path = require('node:path');
const [dir, name, description, deps = '', extraDev = ''] = process.argv.slice(2);
const internal = deps ? deps.split(',') : [];
const pkg = {
  name,
  version: '0.0.0',
  description,
  license: 'MIT',
  repository: { type: 'git', url: 'git+https://github.com/sparkmim/sparkmim.git', directory: dir },
  type: 'module',
  sideEffects: false,
  engines: { node: '>=18' },
  main: './dist/index.cjs',
  module: './dist/index.js',
  types: './dist/index.d.ts',
  exports: {
    '.': {
      '@sparkmim/source': './src/index.ts',
      import: { types: './dist/index.d.ts', default: './dist/index.js' },
      require: { types: './dist/index.d.cts', default: './dist/index.cjs' },
    },
    './package.json': './package.json',
  },
  files: ['dist', 'README.md'],
  scripts: {
    build: 'tsup',
    typecheck: 'tsc --noEmit -p tsconfig.json',
    lint: 'publint --strict',
    test: 'jest',
  },
  peerDependencies: { '@tensorflow/tfjs-core': '^4.22.0' },
  dependencies: Object.fromEntries(internal.map((d) => [d, 'workspace:^'])),
  devDependencies: {
    '@sparkmim/test-utils': 'workspace:*',
    '@tensorflow/tfjs-core': '4.22.0',
    ...Object.fromEntries(extraDev ? extraDev.split(',').map((d) => d.split('=')) : []),
  },
  publishConfig: { access: 'public' },
};
fs.mkdirSync(path.join(dir, 'src'), { recursive: true });
fs.writeFileSync(path.join(dir, 'package.json'), `${JSON.stringify(pkg, null, 2)}\n`);
fs.writeFileSync(path.join(dir, 'tsconfig.json'), `${JSON.stringify({ extends: '../../tsconfig.base.json', include: ['src'] }, null, 2)}\n`);
fs.writeFileSync(path.join(dir, 'tsup.config.ts'), "export { default } from '../../tsup.library';\n");
fs.writeFileSync(path.join(dir, 'jest.config.cjs'), `module.exports = require('../../jest.base.cjs')(__dirname);\n`);
