/* crc32.h - CRC-32 (IEEE 802.3, reflected, as zlib.crc32). */
#ifndef TM_CRC32_H
#define TM_CRC32_H

#include <stddef.h>
#include <stdint.h>

uint32_t crc32_update(uint32_t crc, const uint8_t *data, size_t n);

static inline uint32_t crc32(const uint8_t *data, size_t n) { return crc32_update(0, data, n); }

#endif /* TM_CRC32_H */
