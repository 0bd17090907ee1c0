// Parse and validate an AsyncAPI document with the official parser (@asyncapi/parser, pinned in
// package-lock.json beside this file and installed by scripts/ensure-services.sh into
// .tools/asyncapi). Prints every diagnostic as one JSON object on stdout, then exits
//   0: valid (warnings and hints allowed), 1: a diagnostic of error severity, 2: parser missing or bad usage.
//
//   node scripts/asyncapi/validate.cjs docs/asyncapi.yaml
"use strict";

const fs = require("node:fs");
const path = require("node:path");
const { createRequire } = require("node:module");

const SEVERITY = ["error", "warning", "information", "hint"];

async function main() {
  const [documentPath] = process.argv.slice(2);
  if (!documentPath) {
    process.stderr.write("usage: node scripts/asyncapi/validate.cjs docs/asyncapi.yaml\n");
    return 2;
  }
  const toolsDir = path.resolve(__dirname, "..", "..", ".tools", "asyncapi");
  let parserModule;
  try {
    // Resolved from the tools folder's own node_modules, not from this script's location.
    parserModule = createRequire(path.join(toolsDir, "package.json"))("@asyncapi/parser");
  } catch (error) {
    process.stderr.write(`@asyncapi/parser is not installed in ${toolsDir} (bash scripts/ensure-services.sh): ${error.message}\n`);
    return 2;
  }
  const { Parser, DiagnosticSeverity } = parserModule;
  const text = fs.readFileSync(documentPath, "utf8");
  const { document, diagnostics } = await new Parser().parse(text, { source: path.resolve(documentPath) });
  for (const diagnostic of diagnostics) {
    const line = diagnostic.range ? diagnostic.range.start.line + 1 : null;
    process.stdout.write(
      JSON.stringify({
        severity: SEVERITY[diagnostic.severity] || String(diagnostic.severity),
        code: diagnostic.code,
        message: diagnostic.message,
        path: diagnostic.path.join("."),
        line,
      }) + "\n",
    );
  }
  const failed = diagnostics.some((d) => d.severity === DiagnosticSeverity.Error);
  return failed || document === undefined ? 1 : 0;
}

main().then(
  (code) => process.exit(code),
  (error) => {
    process.stderr.write(`${error.stack || error}\n`);
    process.exit(1);
  },
);
