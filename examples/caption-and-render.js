// Captions an image with the demo model through the API, printing each word with its point as it is generated,
// then draws the words at their points (lib/render.ts).  Usage: node examples/caption-and-render.js [image] [out.png]
'use strict';
const { writeFile } = require('node:fs/promises');
const path = require('node:path');
const { PixelLLM } = require('..');
const { captionItems, render } = require('../dist/lib/render');

async function main() {
  const image = process.argv[2] ?? path.join(__dirname, 'scenes', 'shapes_wide.png');
  const out = process.argv[3] ?? 'caption.png';
  const model = await PixelLLM.load(); // the shipped demo model (engines/demo)
  try {
    const gen = model.caption(await model.encode(image), { prompt: 'a long image caption:' });
    for await (const t of gen) console.log(`${t.text.trim().padEnd(12)} at (${t.point[0].toFixed(0)}, ${t.point[1].toFixed(0)})`);
    const result = await gen.result;
    await writeFile(out, await render(image, captionItems(result)));
    console.log(`\n${result.text}\nwrote ${out}`);
  } finally {
    model.dispose();
  }
}

main().catch((err) => {
  console.error(err.message);
  process.exitCode = 1;
});
