/* SPDX-License-Identifier: GPL-2.0 */
/* mblit's PCI config space (docs/device.md §4): at reset, and what is writable. */
#ifndef MBLIT_CFG_H
#define MBLIT_CFG_H

#include <stdint.h>
#include <string.h>

#include <linux/pci_regs.h>

#include "uapi/linux/mblit.h"
#include "le_bytes.h"

/* Config space at reset of an mdev of type mblit-<type_id>m. */
static inline void cfg_reset_image(uint8_t img[MBLIT_CONFIG_SIZE],
				   uint16_t type_id)
{
	memset(img, 0, MBLIT_CONFIG_SIZE);
	put16(img + PCI_VENDOR_ID, MBLIT_VENDOR_ID);
	put16(img + PCI_DEVICE_ID, MBLIT_DEVICE_ID);
	put16(img + PCI_STATUS, PCI_STATUS_CAP_LIST);
	img[PCI_REVISION_ID] = MBLIT_REVISION;
	img[PCI_CLASS_PROG] = MBLIT_CLASS_CODE & 0xff;
	img[PCI_CLASS_DEVICE] = (MBLIT_CLASS_CODE >> 8) & 0xff;
	img[PCI_CLASS_DEVICE + 1] = MBLIT_CLASS_CODE >> 16;
	img[PCI_HEADER_TYPE] = 0;
	put32(img + PCI_BASE_ADDRESS_2, PCI_BASE_ADDRESS_MEM_TYPE_64 |
					PCI_BASE_ADDRESS_MEM_PREFETCH);
	put16(img + PCI_SUBSYSTEM_VENDOR_ID, MBLIT_SUBSYS_VENDOR_ID);
	put16(img + PCI_SUBSYSTEM_ID, type_id);
	img[PCI_CAPABILITY_LIST] = MBLIT_MSI_CAP_OFFSET;
	img[PCI_INTERRUPT_PIN] = 1;
	img[MBLIT_MSI_CAP_OFFSET + PCI_CAP_LIST_ID] = PCI_CAP_ID_MSI;
	img[MBLIT_MSI_CAP_OFFSET + PCI_CAP_LIST_NEXT] = 0;
	put16(img + MBLIT_MSI_CAP_OFFSET + PCI_MSI_FLAGS, PCI_MSI_FLAGS_64BIT);
}

/* The writable bits of every config byte, for @mem bytes of device memory. */
static inline void cfg_write_mask(uint8_t m[MBLIT_CONFIG_SIZE], uint64_t mem)
{
	const uint8_t msi = MBLIT_MSI_CAP_OFFSET;

	memset(m, 0, MBLIT_CONFIG_SIZE);
	put16(m + PCI_COMMAND, PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER |
			       PCI_COMMAND_INTX_DISABLE);
	m[PCI_CACHE_LINE_SIZE] = 0xff;
	put32(m + PCI_BASE_ADDRESS_0, ~(uint32_t)(MBLIT_BAR0_SIZE - 1));
	/* BAR2/3: a 64-bit BAR of @mem bytes, its low 4 bits read-only. */
	put32(m + PCI_BASE_ADDRESS_2, (uint32_t)~(mem - 1) & ~0xfU);
	put32(m + PCI_BASE_ADDRESS_3, (uint32_t)(~(mem - 1) >> 32));
	m[PCI_INTERRUPT_LINE] = 0xff;
	put16(m + msi + PCI_MSI_FLAGS, PCI_MSI_FLAGS_ENABLE);
	put32(m + msi + PCI_MSI_ADDRESS_LO, 0xfffffffc);
	put32(m + msi + PCI_MSI_ADDRESS_HI, 0xffffffff);
	put16(m + msi + PCI_MSI_DATA_64, 0xffff);
}

#endif /* MBLIT_CFG_H */
