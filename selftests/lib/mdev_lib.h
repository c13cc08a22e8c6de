/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Helpers for mdev/VFIO selftests: mdev creation and removal through sysfs,
 * type attributes, and opening an mdev as a VFIO device through either the
 * legacy group/container (type1) back-end or the iommufd cdev back-end.
 *
 * Every function that can fail returns 0 (or a non-negative value) on
 * success and a negative errno on failure; the failing step is then
 * described by mdev_lib_error().
 */
#ifndef MDEV_LIB_H
#define MDEV_LIB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <linux/vfio.h>

#define MDEV_UUID_LEN		36	/* without the terminating NUL */
#define MDEV_PATH_MAX		512
#define MDEV_BUS_DEVICES	"/sys/bus/mdev/devices"
#define MDEV_BUS_CLASS		"/sys/class/mdev_bus"

/* Description of the last failure, valid until the next failing call. */
const char *mdev_lib_error(void);

/* sysfs helpers */
int sysfs_read_str(const char *path, char *buf, size_t len);
int sysfs_read_long(const char *path, long *val);
int sysfs_write_str(const char *path, const char *str);
bool path_exists(const char *path);

/* mdev types and instances */
int mdev_type_dir(const char *type, char *buf, size_t len);
int mdev_type_attr(const char *type, const char *attr, char *buf, size_t len);
int mdev_type_available(const char *type);
void mdev_uuid_generate(char uuid[MDEV_UUID_LEN + 1]);
int mdev_create_uuid(const char *type, const char *uuid);
int mdev_create(const char *type, char uuid[MDEV_UUID_LEN + 1]);
int mdev_remove(const char *uuid);
bool mdev_exists(const char *uuid);
int mdev_device_type(const char *uuid, char *buf, size_t len);

/* modules */
bool module_loaded(const char *name);
int module_refcnt(const char *name);
int module_unload(const char *name);
int run_cmd(const char *cmd);

/*
 * Slab fault injection (CONFIG_FAILSLAB).  @fd is /proc/thread-self/fail-nth,
 * kept open so that reading and writing it allocates nothing: writing N
 * makes the thread's N-th slab allocation from then on fail; reading gives
 * 0 once that happened, the allocations still to go otherwise.  These two
 * do not set mdev_lib_error().
 */
#define FAILSLAB		"/sys/kernel/debug/failslab"
int fail_nth_set(int fd, unsigned int n);
int fail_nth_get(int fd);

/* VFIO access to an mdev */
enum vfio_backend {
	VFIO_BACKEND_TYPE1,
	VFIO_BACKEND_IOMMUFD,
};

const char *vfio_backend_name(enum vfio_backend backend);

struct vfio_mdev {
	enum vfio_backend backend;
	char uuid[MDEV_UUID_LEN + 1];
	int device_fd;
	/* type1 */
	int container_fd;
	int group_fd;
	int group_id;
	/* iommufd */
	int iommufd;
	uint32_t ioas_id;
	uint32_t devid;
	char cdev[64];
};

int vfio_mdev_open(struct vfio_mdev *vdev, const char *uuid,
		   enum vfio_backend backend);
void vfio_mdev_close(struct vfio_mdev *vdev);
int vfio_mdev_open_another_fd(struct vfio_mdev *vdev);
int vfio_mdev_device_info(struct vfio_mdev *vdev,
			  struct vfio_device_info *info);
int vfio_mdev_region_info(struct vfio_mdev *vdev, uint32_t index,
			  struct vfio_region_info *info);
int vfio_mdev_pci_regions(struct vfio_mdev *vdev, struct vfio_region_info *cfg,
			  struct vfio_region_info *bar0,
			  struct vfio_region_info *bar2);
int vfio_mdev_dma_map(struct vfio_mdev *vdev, void *vaddr, uint64_t iova,
		      uint64_t size);
int vfio_mdev_dma_unmap(struct vfio_mdev *vdev, uint64_t iova, uint64_t size);

#endif /* MDEV_LIB_H */
