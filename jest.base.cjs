// Shared jest configuration for every workspace package (each package's jest.config.cjs calls this).
//
// Why tfjs is mapped to its ESM builds: tfjs-core's Node bundle (dist/tf-core.node.js) registers no
// gradients, and the gradient registrations ship only as ESM files beside dist/index.js. Loading both
// would put two copies of tfjs-core in one process, and the ES5 Node bundles of the backends cannot
// subclass the ES2017 classes of the ESM core. So tests use the ESM builds of tfjs-core and of the
// backends, transformed by ts-jest, exactly as a bundler resolves them for the apps and the browser.
const path = require('node:path');

const fromTestUtils = { paths: [path.join(__dirname, 'packages/test-utils'), path.join(__dirname, 'packages/runtime')] };
const esmEntry = (name) => path.join(path.dirname(require.resolve(`${name}/package.json`, fromTestUtils)), 'dist/index.js');

// Dawn reads these from the real process environment (jest gives specs a copy), so they are set here, in
// the process that starts the test workers. SwiftShader, Chromium's software Vulkan driver, stands in for
// a GPU on machines without one.
const swiftShaderIcd = '/usr/lib/chromium/vk_swiftshader_icd.json';
if (!process.env.VK_ICD_FILENAMES && !process.env.VK_DRIVER_FILES && require('node:fs').existsSync(swiftShaderIcd)) {
  process.env.VK_ICD_FILENAMES = swiftShaderIcd;
}
if (!process.env.XDG_RUNTIME_DIR) process.env.XDG_RUNTIME_DIR = require('node:os').tmpdir();

module.exports = (packageDir) => ({
  rootDir: packageDir,
  displayName: require(path.join(packageDir, 'package.json')).name,
  testEnvironment: 'node',
  testEnvironmentOptions: {
    // Resolve workspace packages to their TypeScript sources: no build before tests.
    customExportConditions: ['@sparkmim/source', 'node', 'require', 'default'],
  },
  testMatch: ['<rootDir>/src/**/*.test.ts', '<rootDir>/test/**/*.test.ts'],
  moduleFileExtensions: ['ts', 'js', 'cjs', 'mjs', 'json', 'node'],
  moduleNameMapper: {
    '^@tensorflow/tfjs-core$': esmEntry('@tensorflow/tfjs-core'),
    '^@tensorflow/tfjs-backend-cpu$': esmEntry('@tensorflow/tfjs-backend-cpu'),
    '^@tensorflow/tfjs-backend-webgpu$': esmEntry('@tensorflow/tfjs-backend-webgpu'),
    // The wasm backend's ESM build loads its Emscripten scripts from ../wasm-out, which stay CommonJS
    // (untransformed), so they find their .wasm files beside them through their real __dirname.
    '^@tensorflow/tfjs-backend-wasm$': esmEntry('@tensorflow/tfjs-backend-wasm'),
  },
  transform: {
    '^.+\\.[cm]?[tj]s$': [
      'ts-jest',
      {
        diagnostics: false,
        tsconfig: {
          module: 'commonjs',
          target: 'es2022',
          allowJs: true,
          esModuleInterop: true,
          isolatedModules: true,
          sourceMap: true,
        },
      },
    ],
  },
  // Transform our sources and the ESM builds of tfjs; leave every other node_module alone.
  transformIgnorePatterns: ['^(?!.*/@tensorflow/tfjs-(core|backend-cpu|backend-webgpu|backend-wasm)/dist/(?!tf-)).*/node_modules/'],
  setupFilesAfterEnv: [require.resolve('./packages/test-utils/src/jest-setup.cjs')],
  testTimeout: 120000,
  maxWorkers: 1,
  // Lists every spec with its backend ([cpu] / [webgpu]) so a run shows what ran where.
  verbose: true,
});
