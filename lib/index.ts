/** pixelllm: PixelLLM (pixel-aligned language model) for Node.js. */
export { PixelLLM, EncodedImage, demoModelDir } from './model';
export { loadImage, DEFAULT_MAX_PIXELS } from './image';
export type { RgbImage } from './image';
export { Mask, encodeCounts, decodeCounts, countsToString, stringToCounts } from './masks';
export type { RLE } from './masks';
export { TextTokenizer, TokenTextStream, CONTEXT_PREFIX } from './tokenizer';
export * from './errors';
export type * from './types';
export { render } from './render';
export type { RenderItems } from './render';
