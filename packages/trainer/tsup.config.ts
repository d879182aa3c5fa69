import { defineConfig, type Options } from 'tsup';
import library from '../../tsup.library';

// Two entries: `.` runs anywhere, `./node` holds what needs Node.js (see src/node.ts).
export default defineConfig({ ...(library as Options), entry: ['src/index.ts', 'src/node.ts'] });
