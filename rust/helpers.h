/* SPDX-License-Identifier: GPL-2.0 */
/*
 * C helpers of mblit's Rust layer: layout facts as the C compiler sees
 * them, for the Rust side to check its generated bindings against.
 */
#ifndef MBLIT_RUST_HELPERS_H
#define MBLIT_RUST_HELPERS_H

#include <linux/types.h>

/**
 * struct mblit_c_layout - sizes and offsets as seen by the C compiler
 * @vfio_device_size: sizeof(struct vfio_device)
 * @vfio_device_ops_size: sizeof(struct vfio_device_ops)
 * @mdev_device_size: sizeof(struct mdev_device)
 * @mdev_device_type_offset: offsetof(struct mdev_device, type)
 * @mdev_type_size: sizeof(struct mdev_type)
 * @mdev_parent_size: sizeof(struct mdev_parent)
 * @mdev_driver_size: sizeof(struct mdev_driver)
 * @mdev_driver_driver_offset: offsetof(struct mdev_driver, driver)
 */
struct mblit_c_layout {
	size_t vfio_device_size;
	size_t vfio_device_ops_size;
	size_t mdev_device_size;
	size_t mdev_device_type_offset;
	size_t mdev_type_size;
	size_t mdev_parent_size;
	size_t mdev_driver_size;
	size_t mdev_driver_driver_offset;
};

void mblit_c_layout(struct mblit_c_layout *layout);

struct page;
struct work_struct;
struct eventfd_ctx;
struct mem_cgroup;

void mblit_page_read(struct page *page, size_t offset, void *dst, size_t len);
void mblit_page_write(struct page *page, size_t offset, const void *src,
		      size_t len);
void mblit_init_work(struct work_struct *work,
		     void (*func)(struct work_struct *work));
bool mblit_queue_work(struct work_struct *work);
void mblit_eventfd_signal(struct eventfd_ctx *ctx);
struct mem_cgroup *mblit_memcg_of_current(void);
void mblit_memcg_put(struct mem_cgroup *memcg);
struct mem_cgroup *mblit_memcg_enter(struct mem_cgroup *memcg);
void mblit_memcg_leave(struct mem_cgroup *old);
bool mblit_log_ratelimit(void);

#endif /* MBLIT_RUST_HELPERS_H */
