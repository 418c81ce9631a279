#!/usr/bin/env node
'use strict';
// The `pixelllm` command: runs the compiled CLI (npm run build:ts makes dist/).
require('../dist/lib/cli.js')
  .main(process.argv.slice(2))
  .then((code) => {
    process.exitCode = code;
  });
