// The CLI tests run the compiled CLI (bin/ -> dist/): compile first so they never test stale code.
import { execFileSync } from 'node:child_process';

export default function setup(): void {
  if (process.env.SKIP_BUILD === '1') return; // (developers iterating on tests that do not run the CLI)
  execFileSync('npx', ['--no-install', 'tsc', '-p', 'tsconfig.json'], { stdio: 'inherit' });
}
