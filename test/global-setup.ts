// The CLI tests run the compiled CLI (bin/ -> dist/): compile first so they never test stale code.
import { execFileSync } from 'node:child_process';

export default function setup(): void {
  execFileSync('npx', ['--no-install', 'tsc', '-p', 'tsconfig.json'], { stdio: 'inherit' });
}
