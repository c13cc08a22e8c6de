/* SPDX-License-Identifier: GPL-2.0 */
/*
 * mblit's state format (docs/migration.md §1): the layout of the device
 * record, and the CRC32 that ends every record.
 */
#ifndef MBLIT_STATE_FMT_H
#define MBLIT_STATE_FMT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "le_bytes.h"

/* The device record (§1.4): header, then sections at fixed offsets. */
#define SV_MAGIC	0x5653424dU	/* "MBSV" */
#define PG_MAGIC	0x4750424dU	/* "MBPG", a pages record */
#define SV_OFF_VERSION	4
#define SV_OFF_TYPE	8
#define SV_OFF_COUNT	12
#define SV_OFF_VRAMSZ	16
#define SV_OFF_LEN	24
#define SV_CONFIG_SEC	32
#define SV_CONFIG	48
#define SV_REGS_SEC	304
#define SV_REGS		320
#define SV_ENGINE_SEC	472
#define SV_ENGINE	488
#define SV_ERRORS	(SV_ENGINE + 8)	/* the error-stop counter */
#define SV_IRQ_SEC	504
#define SV_IRQ		520
#define SV_VRAM_SEC	528
#define SV_VRAM_N	544
#define SV_PAGES	552
#define SV_ENTRY	4104
#define SV_LEN(n)	(556 + (uint64_t)(n) * SV_ENTRY)
#define SV_REG(k)	(SV_REGS + 8 * (k))	/* in regs::REGS order */

/* IEEE 802.3 / zlib CRC32 (§1.3), slicing by 8: streams are megabytes. */
static uint32_t crc32_table[8][256];
static bool crc32_ready;

/*
 * Fill the tables.  crc32_le() does it on first use; a program with threads
 * calls this before it starts them.
 */
static inline void crc32_init(void)
{
	uint32_t c;
	int i, k;

	for (i = 0; i < 256; i++) {
		c = i;
		for (k = 0; k < 8; k++)
			c = c & 1 ? 0xedb88320U ^ (c >> 1) : c >> 1;
		crc32_table[0][i] = c;
	}
	for (i = 0; i < 256; i++)
		for (k = 1; k < 8; k++)
			crc32_table[k][i] = (crc32_table[k - 1][i] >> 8) ^
					    crc32_table[0][crc32_table[k - 1][i] & 0xff];
	crc32_ready = true;
}

static inline uint32_t crc32_le(const uint8_t *p, size_t n)
{
	uint32_t c = 0xffffffffU, lo, hi;

	if (!crc32_ready)
		crc32_init();
	while (n >= 8) {
		lo = get32(p) ^ c;
		hi = get32(p + 4);
		c = crc32_table[7][lo & 0xff] ^ crc32_table[6][(lo >> 8) & 0xff] ^
		    crc32_table[5][(lo >> 16) & 0xff] ^ crc32_table[4][lo >> 24] ^
		    crc32_table[3][hi & 0xff] ^ crc32_table[2][(hi >> 8) & 0xff] ^
		    crc32_table[1][(hi >> 16) & 0xff] ^ crc32_table[0][hi >> 24];
		p += 8;
		n -= 8;
	}
	while (n--)
		c = crc32_table[0][(c ^ *p++) & 0xff] ^ (c >> 8);
	return ~c;
}

/* Recompute a record's CRC trailer, so a patch reaches the check it means. */
static inline void fix_crc(uint8_t *b, size_t len)
{
	put32(b + len - 4, crc32_le(b, len - 4));
}

#endif /* MBLIT_STATE_FMT_H */
