/* SPDX-License-Identifier: GPL-2.0 */
/*
 * C helpers of the driver's Rust layer (kapi): layout facts as the C
 * compiler sees them, for the Rust side to check its generated bindings
 * against.
 */
#ifndef KAPI_RUST_HELPERS_H
#define KAPI_RUST_HELPERS_H

#include <linux/types.h>

/**
 * struct kapi_c_layout - sizes and offsets as seen by the C compiler
 * @vfio_device_size: sizeof(struct vfio_device)
 * @vfio_device_ops_size: sizeof(struct vfio_device_ops)
 * @mdev_device_size: sizeof(struct mdev_device)
 * @mdev_device_type_offset: offsetof(struct mdev_device, type)
 * @mdev_type_size: sizeof(struct mdev_type)
 * @mdev_parent_size: sizeof(struct mdev_parent)
 * @mdev_driver_size: sizeof(struct mdev_driver)
 * @mdev_driver_driver_offset: offsetof(struct mdev_driver, driver)
 */
struct kapi_c_layout {
	size_t vfio_device_size;
	size_t vfio_device_ops_size;
	size_t mdev_device_size;
	size_t mdev_device_type_offset;
	size_t mdev_type_size;
	size_t mdev_parent_size;
	size_t mdev_driver_size;
	size_t mdev_driver_driver_offset;
};

void kapi_c_layout(struct kapi_c_layout *layout);

struct page;
struct work_struct;
struct eventfd_ctx;
struct mem_cgroup;

void kapi_page_read(struct page *page, size_t offset, void *dst, size_t len);
void kapi_page_write(struct page *page, size_t offset, const void *src,
		      size_t len);
void kapi_init_work(struct work_struct *work,
		     void (*func)(struct work_struct *work));
bool kapi_queue_work(struct work_struct *work);
void kapi_eventfd_signal(struct eventfd_ctx *ctx);
struct mem_cgroup *kapi_memcg_of_current(void);
void kapi_memcg_put(struct mem_cgroup *memcg);
struct mem_cgroup *kapi_memcg_enter(struct mem_cgroup *memcg);
void kapi_memcg_leave(struct mem_cgroup *old);
bool kapi_log_ratelimit(void);

#endif /* KAPI_RUST_HELPERS_H */
