/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Dirty page tracking on an mb_dev (docs/dirty-tracking.md): device DMA
 * logging (VFIO_DEVICE_FEATURE_DMA_LOGGING_*) on either back-end, and the
 * type1 container's VFIO_IOMMU_DIRTY_PAGES.  Every call returns 0 or
 * -errno and asserts nothing.
 */
#ifndef DIRTY_LOG_H
#define DIRTY_LOG_H

#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <sys/ioctl.h>

#include <linux/vfio.h>

#include "mblit_dev.h"
#include "mig_v2.h"

/* VFIO_DEVICE_FEATURE on @d with @len (<= 64) bytes of payload. */
static inline int dl_feature(struct mb_dev *d, uint32_t flags, void *data,
			     size_t len)
{
	return mig_feature(d->v.device_fd, flags, data, len);
}

static inline int dl_start(struct mb_dev *d,
			   const struct vfio_device_feature_dma_logging_range *r,
			   uint32_t n, uint64_t page_size)
{
	struct vfio_device_feature_dma_logging_control c = {
		.page_size = page_size, .num_ranges = n,
		.ranges = (uintptr_t)r,
	};

	return dl_feature(d, VFIO_DEVICE_FEATURE_SET |
			  VFIO_DEVICE_FEATURE_DMA_LOGGING_START, &c, sizeof(c));
}

static inline int dl_stop(struct mb_dev *d)
{
	return dl_feature(d, VFIO_DEVICE_FEATURE_SET |
			  VFIO_DEVICE_FEATURE_DMA_LOGGING_STOP, NULL, 0);
}

/* REPORT [iova, iova + len) at @page_size into @bm (not cleared first). */
static inline int dl_report(struct mb_dev *d, uint64_t iova, uint64_t len,
			    uint64_t page_size, void *bm)
{
	struct vfio_device_feature_dma_logging_report r = {
		.iova = iova, .length = len, .page_size = page_size,
		.bitmap = (uintptr_t)bm,
	};

	return dl_feature(d, VFIO_DEVICE_FEATURE_GET |
			  VFIO_DEVICE_FEATURE_DMA_LOGGING_REPORT, &r, sizeof(r));
}

/* VFIO_IOMMU_DIRTY_PAGES with @flag (START or STOP). */
static inline int t1_dirty(struct mb_dev *d, uint32_t flag)
{
	struct vfio_iommu_type1_dirty_bitmap db = {
		.argsz = sizeof(db), .flags = flag,
	};

	return ioctl(d->v.container_fd, VFIO_IOMMU_DIRTY_PAGES, &db) ? -errno : 0;
}

/* GET_BITMAP over [iova, iova + size) at 4 KiB into @bm (cleared first). */
static inline int t1_get_bitmap(struct mb_dev *d, uint64_t iova, uint64_t size,
				uint64_t *bm, size_t bm_bytes)
{
	struct {
		struct vfio_iommu_type1_dirty_bitmap db;
		struct vfio_iommu_type1_dirty_bitmap_get get;
	} __attribute__((packed)) a;

	memset(&a, 0, sizeof(a));
	memset(bm, 0, bm_bytes);
	a.db.argsz = sizeof(a);
	a.db.flags = VFIO_IOMMU_DIRTY_PAGES_FLAG_GET_BITMAP;
	a.get.iova = iova;
	a.get.size = size;
	a.get.bitmap.pgsize = MB_PAGE;
	a.get.bitmap.size = bm_bytes;
	a.get.bitmap.data = (void *)bm;
	return ioctl(d->v.container_fd, VFIO_IOMMU_DIRTY_PAGES, &a) ? -errno : 0;
}

/*
 * VFIO_IOMMU_UNMAP_DMA of [iova, iova + size), with @bm also
 * VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP (the range's dirty pages at 4 KiB
 * into @bm, @bm_bytes long).  *@done: the size type1 says it unmapped.
 */
static inline int t1_unmap_bitmap(struct mb_dev *d, uint64_t iova,
				  uint64_t size, uint64_t *bm, size_t bm_bytes,
				  uint64_t *done)
{
	struct {
		struct vfio_iommu_type1_dma_unmap u;
		struct vfio_bitmap b;
	} __attribute__((packed)) a;
	int ret;

	memset(&a, 0, sizeof(a));
	a.u.argsz = bm ? sizeof(a) : sizeof(a.u);
	a.u.flags = bm ? VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP : 0;
	a.u.iova = iova;
	a.u.size = size;
	a.b.pgsize = MB_PAGE;
	a.b.size = bm_bytes;
	a.b.data = (void *)bm;
	ret = ioctl(d->v.container_fd, VFIO_IOMMU_UNMAP_DMA, &a) ? -errno : 0;
	*done = a.u.size;
	return ret;
}

#endif /* DIRTY_LOG_H */
