/* SPDX-License-Identifier: GPL-2.0 WITH Linux-syscall-note */
/*
 * mblit: a migratable mediated DMA blitter (VFIO mdev).
 *
 * The device's user-visible interface: PCI ids, the BAR0 register map, the
 * command descriptor, error codes and the DEVICE_STATE region. The exact
 * semantics are in docs/device.md.
 *
 * The values are defined once, in the driver's Rust logic (src/logic/);
 * a host unit test (src/logic/uapi.rs) fails if any MBLIT_ define here
 * differs from it or is missing. Keep every MBLIT_ define a plain integer
 * literal so that test can read it.
 */
#ifndef _UAPI_LINUX_MBLIT_H
#define _UAPI_LINUX_MBLIT_H

#include <linux/types.h>

/* ---- PCI identity and config space ---------------------------------- */

/* Made up: 0x6d62 ("mb") is no real PCI vendor's id. */
#define MBLIT_VENDOR_ID			0x6d62
#define MBLIT_DEVICE_ID			0x0001
#define MBLIT_SUBSYS_VENDOR_ID		0x6d62
/* The subsystem id is the type id: the type's device memory in MiB. */
#define MBLIT_REVISION			0x01
#define MBLIT_CLASS_CODE		0x088000	/* system peripheral, other */
#define MBLIT_CONFIG_SIZE		256
#define MBLIT_MSI_CAP_OFFSET		0x40
#define MBLIT_BAR_REGS			0	/* BAR0: registers, 32-bit */
#define MBLIT_BAR_VRAM			2	/* BAR2: device memory, 64-bit */

/* ---- BAR0 registers --------------------------------------------------- */

#define MBLIT_BAR0_SIZE			0x1000

/* Offsets. Widths and access: docs/device.md. */
#define MBLIT_REG_ID			0x000	/* RO  4 */
#define MBLIT_REG_VERSION		0x004	/* RO  4 */
#define MBLIT_REG_CTRL			0x008	/* RW  4 */
#define MBLIT_REG_STATUS		0x00c	/* RO  4 */
#define MBLIT_REG_RING_BASE		0x010	/* RW  8 (or 4 at +0/+4) */
#define MBLIT_REG_RING_SIZE		0x018	/* RW  4 */
#define MBLIT_REG_RING_HEAD		0x01c	/* RO  4 */
#define MBLIT_REG_RING_TAIL		0x020	/* RW  4, doorbell */
#define MBLIT_REG_INT_STATUS		0x024	/* W1C 4 */
#define MBLIT_REG_INT_MASK		0x028	/* RW  4 */
#define MBLIT_REG_FENCE_LAST		0x030	/* RO  8 (or 4 at +0/+4) */
#define MBLIT_REG_CMD_COUNT		0x038	/* RO  8 (or 4 at +0/+4) */
#define MBLIT_REG_BYTE_COUNT		0x040	/* RO  8 (or 4 at +0/+4) */
#define MBLIT_REG_ERR_INDEX		0x048	/* RO  4 */
#define MBLIT_REG_ERR_ADDR		0x050	/* RO  8 (or 4 at +0/+4) */
#define MBLIT_REG_SCRATCH0		0x060	/* RW  8 (or 1/2/4) */
#define MBLIT_REG_SCRATCH1		0x068	/* RW  8 (or 1/2/4) */
#define MBLIT_REG_SCRATCH2		0x070	/* RW  8 (or 1/2/4) */
#define MBLIT_REG_SCRATCH3		0x078	/* RW  8 (or 1/2/4) */

#define MBLIT_ID_MAGIC			0x544c424d	/* "MBLT" */
#define MBLIT_DEVICE_VERSION		0x00010000	/* 1.0 */

#define MBLIT_CTRL_ENABLE		0x1
#define MBLIT_CTRL_RESET		0x2	/* write-only, self-clearing */

#define MBLIT_STATUS_BUSY		0x1
#define MBLIT_STATUS_ERROR		0x2
#define MBLIT_STATUS_ERR_CODE_SHIFT	8
#define MBLIT_STATUS_ERR_CODE_MASK	0xff00
#define MBLIT_STATUS_ERR_CODE(status) \
	(((status) & MBLIT_STATUS_ERR_CODE_MASK) >> MBLIT_STATUS_ERR_CODE_SHIFT)

/* INT_STATUS and INT_MASK bits. */
#define MBLIT_INT_FENCE			0x1
#define MBLIT_INT_ERROR			0x2
#define MBLIT_INT_ALL			0x3

#define MBLIT_RING_SIZE_MAX		4096	/* descriptors; power of two */
#define MBLIT_RING_ALIGN		32	/* RING_BASE bits 4:0 read 0 */

/* Error codes (STATUS bits 15:8). */
#define MBLIT_ERR_NONE			0x00
#define MBLIT_ERR_BAD_OPCODE		0x01
#define MBLIT_ERR_RESERVED		0x02
#define MBLIT_ERR_BAD_LEN		0x03
#define MBLIT_ERR_BAD_ALIGN		0x04
#define MBLIT_ERR_OVERLAP		0x05
#define MBLIT_ERR_DEV_RANGE		0x06
#define MBLIT_ERR_IOVA_FAULT		0x07
#define MBLIT_ERR_RING_FETCH		0x08
#define MBLIT_ERR_RING_CONFIG		0x09
#define MBLIT_ERR_BAD_TAIL		0x0a
#define MBLIT_ERR_PIN_BUDGET		0x0b
#define MBLIT_ERR_UNMAPPED		0x0c

/* ---- Command descriptors ---------------------------------------------- */

#define MBLIT_DESC_SIZE			32

#define MBLIT_OP_NOP			0x01
#define MBLIT_OP_FILL			0x02
#define MBLIT_OP_COPY			0x03
#define MBLIT_OP_FENCE			0x04

#define MBLIT_FLAG_DST_DEV		0x01	/* FILL, COPY: dst in device memory */
#define MBLIT_FLAG_SRC_DEV		0x02	/* COPY: src in device memory */
#define MBLIT_FLAG_IRQ			0x04	/* FENCE: raise MBLIT_INT_FENCE */

#define MBLIT_XFER_MAX			0x100000	/* FILL/COPY len, bytes */
#define MBLIT_FENCE_ALIGN		8

/* All fields little-endian; reserved fields must be zero. */
struct mblit_desc {
	__u8	opcode;		/* MBLIT_OP_* */
	__u8	flags;		/* MBLIT_FLAG_* */
	__u16	rsvd0;
	__u32	len;		/* FILL, COPY: bytes, 1..MBLIT_XFER_MAX */
	__u64	dst;		/* IOVA, or device-memory offset */
	__u64	src;		/* COPY: source; FILL: pattern (bits 31:0); FENCE: value */
	__u64	rsvd1;
};

#define MBLIT_DESC_OFF_OPCODE		0
#define MBLIT_DESC_OFF_FLAGS		1
#define MBLIT_DESC_OFF_RSVD0		2
#define MBLIT_DESC_OFF_LEN		4
#define MBLIT_DESC_OFF_DST		8
#define MBLIT_DESC_OFF_SRC		16
#define MBLIT_DESC_OFF_RSVD1		24

/* ---- The DEVICE_STATE region ------------------------------------------ */

/*
 * Found through VFIO_REGION_INFO_CAP_TYPE:
 * type = VFIO_REGION_TYPE_PCI_VENDOR_TYPE | MBLIT_VENDOR_ID.
 */
#define MBLIT_REGION_TYPE_DEVICE_STATE	0x80006d62U
#define MBLIT_REGION_SUBTYPE_DEVICE_STATE 1
#define MBLIT_STATE_REGION_INDEX	9	/* informational: find it by type */

#define MBLIT_RUNCTL_RUNNING		0x01
#define MBLIT_RUNCTL_STOPPED		0x02

#define MBLIT_STATE_OFF_RUNCTL		0x00	/* __u8 */
#define MBLIT_STATE_OFF_MAGIC		0x08	/* __u32 */
#define MBLIT_STATE_OFF_VERSION		0x0c	/* __u32 */
#define MBLIT_STATE_OFF_TYPE		0x10	/* __u32 */
#define MBLIT_STATE_OFF_SIZE		0x18	/* __u64 */
#define MBLIT_STATE_OFF_GENERATION	0x20	/* __u64 */
#define MBLIT_STATE_HEADER_END		0x28
#define MBLIT_STATE_AREA_OFFSET		0x1000

#define MBLIT_STATE_MAGIC		0x5453424d	/* "MBST" */
#define MBLIT_STATE_FORMAT_VERSION	1

#endif /* _UAPI_LINUX_MBLIT_H */
