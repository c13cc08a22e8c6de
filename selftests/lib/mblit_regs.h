/* SPDX-License-Identifier: GPL-2.0 */
/*
 * mblit's BAR0 registers (docs/device.md §5), in the order of the state
 * format's REGS section (docs/migration.md §1.4, regs::REGS).
 */
#ifndef MBLIT_REGS_H
#define MBLIT_REGS_H

#include <stdint.h>

#include "uapi/linux/mblit.h"

struct mb_reg {
	uint32_t off;
	int w;			/* size in bytes: 4 or 8 */
	const char *name;	/* as in docs/device.md */
	/*
	 * The state format version whose REGS section first carries the
	 * register (regs::RegInfo::since; 0 stands for 1), and its reset
	 * value: golden states of older versions do not describe it, and
	 * it resumes from them at @reset.  Only a register added after
	 * version 1 sets them.
	 */
	uint32_t since;
	uint64_t reset;
};

static const struct mb_reg mb_regs[] = {
	{ MBLIT_REG_ID, 4, "ID" },
	{ MBLIT_REG_VERSION, 4, "VERSION" },
	{ MBLIT_REG_CTRL, 4, "CTRL" },
	{ MBLIT_REG_STATUS, 4, "STATUS" },
	{ MBLIT_REG_RING_BASE, 8, "RING_BASE" },
	{ MBLIT_REG_RING_SIZE, 4, "RING_SIZE" },
	{ MBLIT_REG_RING_HEAD, 4, "RING_HEAD" },
	{ MBLIT_REG_RING_TAIL, 4, "RING_TAIL" },
	{ MBLIT_REG_INT_STATUS, 4, "INT_STATUS" },
	{ MBLIT_REG_INT_MASK, 4, "INT_MASK" },
	{ MBLIT_REG_FENCE_LAST, 8, "FENCE_LAST" },
	{ MBLIT_REG_CMD_COUNT, 8, "CMD_COUNT" },
	{ MBLIT_REG_BYTE_COUNT, 8, "BYTE_COUNT" },
	{ MBLIT_REG_ERR_INDEX, 4, "ERR_INDEX" },
	{ MBLIT_REG_ERR_ADDR, 8, "ERR_ADDR" },
	{ MBLIT_REG_SCRATCH0, 8, "SCRATCH0" },
	{ MBLIT_REG_SCRATCH1, 8, "SCRATCH1" },
	{ MBLIT_REG_SCRATCH2, 8, "SCRATCH2" },
	{ MBLIT_REG_SCRATCH3, 8, "SCRATCH3" },
};

#define MB_NREGS	(sizeof(mb_regs) / sizeof(mb_regs[0]))

#endif /* MBLIT_REGS_H */
