// SPDX-License-Identifier: GPL-2.0
/*
 * C helpers for the driver's Rust layer (kapi).
 */
#include <linux/eventfd.h>
#include <linux/highmem.h>
#include <linux/stddef.h>
#include <linux/workqueue.h>
#include <linux/vfio.h>
#include <linux/mdev.h>
#include <linux/memcontrol.h>
#include <linux/ratelimit.h>
#include <linux/sched/mm.h>

#include "helpers.h"

void kapi_c_layout(struct kapi_c_layout *l)
{
	l->vfio_device_size = sizeof(struct vfio_device);
	l->vfio_device_ops_size = sizeof(struct vfio_device_ops);
	l->mdev_device_size = sizeof(struct mdev_device);
	l->mdev_device_type_offset = offsetof(struct mdev_device, type);
	l->mdev_type_size = sizeof(struct mdev_type);
	l->mdev_parent_size = sizeof(struct mdev_parent);
	l->mdev_driver_size = sizeof(struct mdev_driver);
	l->mdev_driver_driver_offset = offsetof(struct mdev_driver, driver);
}

/* Copies out of / into a pinned guest page (highmem-safe). */
void kapi_page_read(struct page *page, size_t offset, void *dst, size_t len)
{
	memcpy_from_page(dst, page, offset, len);
}

void kapi_page_write(struct page *page, size_t offset, const void *src,
		      size_t len)
{
	memcpy_to_page(page, offset, src, len);
}

/* INIT_WORK is a macro with a static lock class per call site. */
void kapi_init_work(struct work_struct *work,
		     void (*func)(struct work_struct *work))
{
	INIT_WORK(work, func);
}

/*
 * A device's work item may run for long (milliseconds): use the unbound
 * workqueue, off the queuing CPU's concurrency management.
 */
bool kapi_queue_work(struct work_struct *work)
{
	return queue_work(system_dfl_wq, work);
}

void kapi_eventfd_signal(struct eventfd_ctx *ctx)
{
	eventfd_signal(ctx);
}

/*
 * The memory cgroup of the calling task, referenced (NULL without memcg):
 * work a device does on behalf of its user in a work item is charged there.
 */
struct mem_cgroup *kapi_memcg_of_current(void)
{
	return get_mem_cgroup_from_mm(current->mm);
}

void kapi_memcg_put(struct mem_cgroup *memcg)
{
	mem_cgroup_put(memcg);
}

/* Charges the calling task's __GFP_ACCOUNT allocations to @memcg. */
struct mem_cgroup *kapi_memcg_enter(struct mem_cgroup *memcg)
{
	return set_active_memcg(memcg);
}

void kapi_memcg_leave(struct mem_cgroup *old)
{
	set_active_memcg(old);
}

/*
 * Whether a message a user can provoke may be logged now: one ratelimit
 * state (DEFAULT_RATELIMIT_INTERVAL, _BURST) for all of the module's such
 * messages, so no user can flood the kernel log.
 */
bool kapi_log_ratelimit(void)
{
	static DEFINE_RATELIMIT_STATE(rs, DEFAULT_RATELIMIT_INTERVAL,
				      DEFAULT_RATELIMIT_BURST);

	return __ratelimit(&rs);
}
