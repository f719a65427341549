import kafkajs from 'kafkajs';

// CompressionCodecs is not among the names Node's CommonJS interop exposes from kafkajs.
const { CompressionCodecs, CompressionTypes } = kafkajs;

import { compressFrame, decompressFrame } from 'lz4-napi';

/**
 * KafkaJS ships no LZ4 codec. Kafka's LZ4 record batches use the LZ4 *frame* format
 * (magic 0x184D2204), so the frame functions of lz4-napi are the right ones, not its
 * block-level compress/uncompress.
 */
export const lz4Codec = {
  async compress(encoder: { buffer: Buffer }): Promise<Buffer> {
    return compressFrame(encoder.buffer);
  },
  async decompress(buffer: Buffer): Promise<Buffer> {
    return decompressFrame(buffer);
  },
};

/** Registers the LZ4 codec with KafkaJS (process-wide; safe to call more than once). */
export function registerLz4Codec(): void {
  CompressionCodecs[CompressionTypes.LZ4] = () => lz4Codec;
}
