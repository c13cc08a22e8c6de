/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Golden device states (docs/migration.md §1.8, §1.9): the description file
 * that goes with each saved stream, shared by the generator
 * (selftests/golden_gen.c) and the test that resumes the streams
 * (selftests/mblit_golden.c).  The host test (tests/golden.rs) reads the
 * same format.
 *
 * A description is text, one fact a line, '#' starts a comment:
 *
 *   version 1                      state format version of the streams
 *   type mblit-1m                  mdev type; vram_size in bytes
 *   vram_size 1048576
 *   reg CTRL 0x1                   every BAR0 register, by name (but
 *                                  those newer than the version: they
 *                                  are expected at their reset value)
 *   config 0000...                 the 256 config-space bytes, in hex
 *   errors 1                       debugfs "errors" (error stops)
 *   intx_masked 0                  the VFIO-level INTx mask
 *   page 12 fill32 0x11111111      a page of one repeated LE 32-bit word
 *   page 9 ramp 0x37               a page whose byte k is (0x37 + k) & 0xff
 *
 * Pages not listed are zero.  Every page the device holds must be one of
 * the two patterns, so a description stays short and readable.
 */
#ifndef MBLIT_GOLDEN_H
#define MBLIT_GOLDEN_H

#include <ctype.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mblit_regs.h"

#define MB_GOLDEN_PAGE		4096
#define MB_GOLDEN_MAX_PAGES	64
#define MB_GOLDEN_CONFIG	256

#define MB_GOLDEN_NREGS	MB_NREGS

enum mb_golden_pattern { MB_GOLDEN_FILL32, MB_GOLDEN_RAMP };

struct mb_golden_page {
	uint64_t index;
	enum mb_golden_pattern pattern;
	uint32_t value;		/* the word (FILL32) or the first byte (RAMP) */
};

struct mb_golden {
	uint32_t version;
	char type[32];
	uint64_t vram_size;
	uint64_t regs[MB_GOLDEN_NREGS];
	bool have_reg[MB_GOLDEN_NREGS];
	uint8_t config[MB_GOLDEN_CONFIG];
	bool have_config;
	uint64_t errors;
	int intx_masked;
	unsigned int npages;
	struct mb_golden_page pages[MB_GOLDEN_MAX_PAGES];
};

/* Fill @buf (one page) with @p's pattern. */
static inline void mb_golden_page_bytes(const struct mb_golden_page *p,
					uint8_t *buf)
{
	size_t k;

	for (k = 0; k < MB_GOLDEN_PAGE; k++) {
		if (p->pattern == MB_GOLDEN_FILL32)
			buf[k] = (uint8_t)(p->value >> (8 * (k % 4)));
		else
			buf[k] = (uint8_t)(p->value + k);
	}
}

/*
 * Describe one page of device memory: false if it is zero, else true with
 * *@p filled in; -1 if it is neither pattern (the generator refuses it).
 */
static inline int mb_golden_describe(uint64_t index, const uint8_t *buf,
				     struct mb_golden_page *p)
{
	uint8_t want[MB_GOLDEN_PAGE];
	size_t k;

	for (k = 0; k < MB_GOLDEN_PAGE && !buf[k]; k++)
		;
	if (k == MB_GOLDEN_PAGE)
		return 0;
	p->index = index;
	p->pattern = MB_GOLDEN_FILL32;
	p->value = (uint32_t)buf[0] | (uint32_t)buf[1] << 8 |
		   (uint32_t)buf[2] << 16 | (uint32_t)buf[3] << 24;
	mb_golden_page_bytes(p, want);
	if (!memcmp(want, buf, MB_GOLDEN_PAGE))
		return 1;
	p->pattern = MB_GOLDEN_RAMP;
	p->value = buf[0];
	mb_golden_page_bytes(p, want);
	if (!memcmp(want, buf, MB_GOLDEN_PAGE))
		return 1;
	return -1;
}

static inline int mb_golden_hex_nibble(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	c = tolower(c);
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

/* Parse one description line; 0, or -1 with a reason in @err. */
static inline int mb_golden_line(struct mb_golden *g, char *line,
				 char *err, size_t errlen)
{
	char key[32], a[600], b[32], c[32];
	unsigned int i;
	int n;

	line[strcspn(line, "#\n")] = '\0';
	n = sscanf(line, "%31s %599s %31s %31s", key, a, b, c);
	if (n <= 0)
		return 0;
	if (!strcmp(key, "version") && n == 2) {
		g->version = strtoul(a, NULL, 0);
	} else if (!strcmp(key, "type") && n == 2) {
		snprintf(g->type, sizeof(g->type), "%.31s", a);
	} else if (!strcmp(key, "vram_size") && n == 2) {
		g->vram_size = strtoull(a, NULL, 0);
	} else if (!strcmp(key, "errors") && n == 2) {
		g->errors = strtoull(a, NULL, 0);
	} else if (!strcmp(key, "intx_masked") && n == 2) {
		g->intx_masked = (int)strtol(a, NULL, 0);
	} else if (!strcmp(key, "reg") && n == 3) {
		for (i = 0; i < MB_GOLDEN_NREGS; i++) {
			if (!strcmp(a, mb_regs[i].name))
				break;
		}
		if (i == MB_GOLDEN_NREGS) {
			snprintf(err, errlen, "unknown register %.32s", a);
			return -1;
		}
		g->regs[i] = strtoull(b, NULL, 0);
		g->have_reg[i] = true;
	} else if (!strcmp(key, "config") && n == 2) {
		if (strlen(a) != 2 * MB_GOLDEN_CONFIG) {
			snprintf(err, errlen, "config: %zu hex digits", strlen(a));
			return -1;
		}
		for (i = 0; i < MB_GOLDEN_CONFIG; i++) {
			int hi = mb_golden_hex_nibble(a[2 * i]);
			int lo = mb_golden_hex_nibble(a[2 * i + 1]);

			if (hi < 0 || lo < 0) {
				snprintf(err, errlen, "config: not hex");
				return -1;
			}
			g->config[i] = (uint8_t)(hi << 4 | lo);
		}
		g->have_config = true;
	} else if (!strcmp(key, "page") && n == 4) {
		struct mb_golden_page *p;

		if (g->npages == MB_GOLDEN_MAX_PAGES) {
			snprintf(err, errlen, "more than %d pages",
				 MB_GOLDEN_MAX_PAGES);
			return -1;
		}
		p = &g->pages[g->npages++];
		p->index = strtoull(a, NULL, 0);
		p->value = strtoul(c, NULL, 0);
		if (!strcmp(b, "fill32")) {
			p->pattern = MB_GOLDEN_FILL32;
		} else if (!strcmp(b, "ramp")) {
			p->pattern = MB_GOLDEN_RAMP;
		} else {
			snprintf(err, errlen, "unknown page pattern %.32s", b);
			return -1;
		}
	} else {
		snprintf(err, errlen, "cannot parse '%.100s'", line);
		return -1;
	}
	return 0;
}

/* Read a description; 0, or -1 with a reason in @err. */
static inline int mb_golden_load(const char *path, struct mb_golden *g,
				 char *err, size_t errlen)
{
	char line[1024];
	unsigned int i;
	FILE *f;

	memset(g, 0, sizeof(*g));
	g->intx_masked = -1;
	f = fopen(path, "r");
	if (!f) {
		snprintf(err, errlen, "%.100s: %m", path);
		return -1;
	}
	while (fgets(line, sizeof(line), f)) {
		if (mb_golden_line(g, line, err, errlen)) {
			fclose(f);
			return -1;
		}
	}
	fclose(f);
	for (i = 0; i < MB_GOLDEN_NREGS; i++) {
		bool newer = mb_regs[i].since > g->version;

		if (newer && !g->have_reg[i]) {
			/* Not in states of this version: resumes at reset. */
			g->regs[i] = mb_regs[i].reset;
		} else if (newer || !g->have_reg[i]) {
			snprintf(err, errlen, "%.100s: register %s %s", path,
				 mb_regs[i].name,
				 newer ? "is newer than the version" : "missing");
			return -1;
		}
	}
	if (!g->version || !g->type[0] || !g->vram_size || !g->have_config ||
	    g->intx_masked < 0) {
		snprintf(err, errlen, "%.100s: version, type, vram_size, config or intx_masked missing",
			 path);
		return -1;
	}
	return 0;
}

/* The expected content of page @index: its pattern, or zeros. */
static inline void mb_golden_expected_page(const struct mb_golden *g,
					   uint64_t index, uint8_t *buf)
{
	unsigned int i;

	memset(buf, 0, MB_GOLDEN_PAGE);
	for (i = 0; i < g->npages; i++) {
		if (g->pages[i].index == index)
			mb_golden_page_bytes(&g->pages[i], buf);
	}
}

#endif /* MBLIT_GOLDEN_H */
