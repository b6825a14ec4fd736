#!/usr/bin/env node
// Development entry point: like run.js, but errors show their stack and cause chain.
process.env.WZP_DEBUG ??= '1';
await import('./run.js');
