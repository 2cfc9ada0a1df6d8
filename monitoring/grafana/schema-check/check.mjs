// Checks each Grafana dashboard given on the command line against Grafana's own published
// dashboard schema (the `Dashboard` type of @grafana/schema, the JSON model Grafana loads),
// with the TypeScript compiler: a field Grafana does not know, or a value of the wrong type,
// fails with the dashboard's name and the compiler's message. Exit code 1 on any error.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, basename } from 'node:path';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const ts = require('typescript');
const here = new URL('.', import.meta.url).pathname;
const dir = mkdtempSync(join(tmpdir(), 'dashboard-check-'));
const files = process.argv.slice(2).map((path) => {
  const dashboard = JSON.parse(readFileSync(path, 'utf8'));
  const file = join(dir, `${basename(path, '.json')}.ts`);
  // The dashboard as an object literal typed as Grafana's Dashboard: excess property checks
  // apply to every nested object the schema describes.
  writeFileSync(file, `import type { Dashboard } from '@grafana/schema';\nexport const dashboard: Dashboard = ${JSON.stringify(dashboard, null, 1)};\n`);
  return file;
});
const program = ts.createProgram(files, {
  noEmit: true,
  strict: true,
  target: ts.ScriptTarget.ES2022,
  module: ts.ModuleKind.ESNext,
  moduleResolution: ts.ModuleResolutionKind.Bundler,
  typeRoots: [],
  baseUrl: here,
  paths: { '@grafana/schema': [join(here, 'node_modules/@grafana/schema')] },
});
const errors = ts.getPreEmitDiagnostics(program);
rmSync(dir, { recursive: true, force: true });
for (const error of errors) {
  const where = error.file ? `${basename(error.file.fileName, '.ts')}.json (line ${error.file.getLineAndCharacterOfPosition(error.start).line + 1} as re-indented)` : '';
  console.error(`${where}: ${ts.flattenDiagnosticMessageText(error.messageText, '\n')}`);
}
if (errors.length) process.exit(1);
console.log(`[check-monitoring] ${files.length} dashboard(s) match Grafana's dashboard schema (@grafana/schema ${require('@grafana/schema/package.json').version})`);
