// SPDX-License-Identifier: GPL-2.0
/*
 * Open an mdev as a VFIO device through the legacy group/container with
 * the type1 IOMMU back-end, or through its iommufd cdev; DMA mapping
 * through whichever back-end the device was opened with.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <linux/iommufd.h>
#include <linux/vfio.h>

#include "mdev_lib.h"
#include "mdev_lib_internal.h"

const char *vfio_backend_name(enum vfio_backend backend)
{
	switch (backend) {
	case VFIO_BACKEND_TYPE1:
		return "type1";
	case VFIO_BACKEND_IOMMUFD:
		return "iommufd";
	}
	return "unknown";
}

static void vfio_mdev_init(struct vfio_mdev *vdev, const char *uuid,
			   enum vfio_backend backend)
{
	memset(vdev, 0, sizeof(*vdev));
	vdev->backend = backend;
	snprintf(vdev->uuid, sizeof(vdev->uuid), "%s", uuid);
	vdev->device_fd = -1;
	vdev->container_fd = -1;
	vdev->group_fd = -1;
	vdev->group_id = -1;
	vdev->iommufd = -1;
}

static int mdev_iommu_group(const char *uuid)
{
	char path[MDEV_PATH_MAX], link[MDEV_PATH_MAX], *base, *end;
	ssize_t n;
	long id;

	snprintf(path, sizeof(path), MDEV_BUS_DEVICES "/%s/iommu_group", uuid);
	n = readlink(path, link, sizeof(link) - 1);
	if (n < 0)
		return lib_fail(errno, "readlink %s", path);
	link[n] = '\0';
	base = strrchr(link, '/');
	base = base ? base + 1 : link;
	id = strtol(base, &end, 10);
	if (end == base || *end || id < 0)
		return lib_fail(EINVAL, "%s -> %s: no group number", path, link);
	return id;
}

static int open_type1(struct vfio_mdev *vdev)
{
	struct vfio_group_status status = { .argsz = sizeof(status) };
	char path[64];
	int ret;

	ret = mdev_iommu_group(vdev->uuid);
	if (ret < 0)
		return ret;
	vdev->group_id = ret;

	vdev->container_fd = open("/dev/vfio/vfio", O_RDWR | O_CLOEXEC);
	if (vdev->container_fd < 0)
		return lib_fail(errno, "open /dev/vfio/vfio");
	ret = ioctl(vdev->container_fd, VFIO_GET_API_VERSION);
	if (ret != VFIO_API_VERSION)
		return lib_fail(errno, "VFIO_GET_API_VERSION returned %d", ret);
	ret = ioctl(vdev->container_fd, VFIO_CHECK_EXTENSION,
		    VFIO_TYPE1v2_IOMMU);
	if (ret <= 0)
		return lib_fail(ret < 0 ? errno : ENODEV,
				"VFIO_CHECK_EXTENSION(VFIO_TYPE1v2_IOMMU) returned %d",
				ret);

	snprintf(path, sizeof(path), "/dev/vfio/%d", vdev->group_id);
	vdev->group_fd = open(path, O_RDWR | O_CLOEXEC);
	if (vdev->group_fd < 0)
		return lib_fail(errno, "open %s", path);
	if (ioctl(vdev->group_fd, VFIO_GROUP_GET_STATUS, &status))
		return lib_fail(errno, "VFIO_GROUP_GET_STATUS on %s", path);
	if (!(status.flags & VFIO_GROUP_FLAGS_VIABLE))
		return lib_fail(EINVAL, "group %s not viable (flags %#x)", path,
				status.flags);
	if (ioctl(vdev->group_fd, VFIO_GROUP_SET_CONTAINER,
		  &vdev->container_fd))
		return lib_fail(errno, "VFIO_GROUP_SET_CONTAINER on %s", path);
	if (ioctl(vdev->container_fd, VFIO_SET_IOMMU, VFIO_TYPE1v2_IOMMU))
		return lib_fail(errno, "VFIO_SET_IOMMU(VFIO_TYPE1v2_IOMMU)");

	vdev->device_fd = ioctl(vdev->group_fd, VFIO_GROUP_GET_DEVICE_FD,
				vdev->uuid);
	if (vdev->device_fd < 0)
		return lib_fail(errno, "VFIO_GROUP_GET_DEVICE_FD(%s) on %s",
				vdev->uuid, path);
	return 0;
}

static int mdev_vfio_cdev(const char *uuid, char *buf, size_t len)
{
	char path[MDEV_PATH_MAX];
	struct dirent *de;
	int ret = -ENOENT;
	DIR *dir;

	snprintf(path, sizeof(path), MDEV_BUS_DEVICES "/%s/vfio-dev", uuid);
	dir = opendir(path);
	if (!dir)
		return lib_fail(errno, "opendir %s", path);
	while ((de = readdir(dir))) {
		if (strncmp(de->d_name, "vfio", 4))
			continue;
		if (snprintf(buf, len, "/dev/vfio/devices/%s",
			     de->d_name) >= (int)len)
			ret = -ENAMETOOLONG;
		else
			ret = 0;
		break;
	}
	closedir(dir);
	if (ret == -ENAMETOOLONG)
		return lib_fail(ENAMETOOLONG, "cdev name in %s", path);
	if (ret)
		return lib_fail(ENOENT, "no vfioN entry in %s", path);
	return 0;
}

static int bind_iommufd(int device_fd, int iommufd, uint32_t *devid)
{
	struct vfio_device_bind_iommufd bind = {
		.argsz = sizeof(bind),
		.iommufd = iommufd,
	};

	if (ioctl(device_fd, VFIO_DEVICE_BIND_IOMMUFD, &bind))
		return -errno;
	if (devid)
		*devid = bind.out_devid;
	return 0;
}

static int open_iommufd(struct vfio_mdev *vdev)
{
	struct iommu_ioas_alloc alloc = { .size = sizeof(alloc) };
	struct vfio_device_attach_iommufd_pt attach = {
		.argsz = sizeof(attach),
	};
	int ret;

	ret = mdev_vfio_cdev(vdev->uuid, vdev->cdev, sizeof(vdev->cdev));
	if (ret)
		return ret;
	vdev->iommufd = open("/dev/iommu", O_RDWR | O_CLOEXEC);
	if (vdev->iommufd < 0)
		return lib_fail(errno, "open /dev/iommu");
	vdev->device_fd = open(vdev->cdev, O_RDWR | O_CLOEXEC);
	if (vdev->device_fd < 0)
		return lib_fail(errno, "open %s", vdev->cdev);
	ret = bind_iommufd(vdev->device_fd, vdev->iommufd, &vdev->devid);
	if (ret)
		return lib_fail(-ret, "VFIO_DEVICE_BIND_IOMMUFD on %s",
				vdev->cdev);
	if (ioctl(vdev->iommufd, IOMMU_IOAS_ALLOC, &alloc))
		return lib_fail(errno, "IOMMU_IOAS_ALLOC");
	vdev->ioas_id = alloc.out_ioas_id;
	attach.pt_id = vdev->ioas_id;
	if (ioctl(vdev->device_fd, VFIO_DEVICE_ATTACH_IOMMUFD_PT, &attach))
		return lib_fail(errno,
				"VFIO_DEVICE_ATTACH_IOMMUFD_PT(ioas %u) on %s",
				vdev->ioas_id, vdev->cdev);
	return 0;
}

int vfio_mdev_open(struct vfio_mdev *vdev, const char *uuid,
		   enum vfio_backend backend)
{
	int ret;

	vfio_mdev_init(vdev, uuid, backend);
	switch (backend) {
	case VFIO_BACKEND_TYPE1:
		ret = open_type1(vdev);
		break;
	case VFIO_BACKEND_IOMMUFD:
		ret = open_iommufd(vdev);
		break;
	default:
		ret = lib_fail(EINVAL, "unknown VFIO back-end %d", backend);
	}
	if (ret) {
		/* Keep the error of the failing step, not of the cleanup. */
		vfio_mdev_close(vdev);
	}
	return ret;
}

void vfio_mdev_close(struct vfio_mdev *vdev)
{
	if (vdev->device_fd >= 0)
		close(vdev->device_fd);
	if (vdev->group_fd >= 0) {
		ioctl(vdev->group_fd, VFIO_GROUP_UNSET_CONTAINER);
		close(vdev->group_fd);
	}
	if (vdev->container_fd >= 0)
		close(vdev->container_fd);
	if (vdev->iommufd >= 0)
		close(vdev->iommufd);
	vdev->device_fd = -1;
	vdev->group_fd = -1;
	vdev->container_fd = -1;
	vdev->iommufd = -1;
}

/*
 * A second fd for an already open device: another VFIO_GROUP_GET_DEVICE_FD
 * on the group, or another open of the cdev bound to the same iommufd.
 * Returns the fd or a negative errno; the caller closes it.
 */
int vfio_mdev_open_another_fd(struct vfio_mdev *vdev)
{
	int fd, ret;

	if (vdev->device_fd < 0)
		return lib_fail(EBADF, "device %s is not open", vdev->uuid);
	if (vdev->backend == VFIO_BACKEND_TYPE1) {
		fd = ioctl(vdev->group_fd, VFIO_GROUP_GET_DEVICE_FD,
			   vdev->uuid);
		if (fd < 0)
			return lib_fail(errno, "second VFIO_GROUP_GET_DEVICE_FD(%s)",
					vdev->uuid);
		return fd;
	}
	fd = open(vdev->cdev, O_RDWR | O_CLOEXEC);
	if (fd < 0)
		return lib_fail(errno, "second open of %s", vdev->cdev);
	ret = bind_iommufd(fd, vdev->iommufd, NULL);
	if (ret) {
		close(fd);
		return lib_fail(-ret, "second VFIO_DEVICE_BIND_IOMMUFD on %s",
				vdev->cdev);
	}
	return fd;
}

int vfio_mdev_device_info(struct vfio_mdev *vdev,
			  struct vfio_device_info *info)
{
	memset(info, 0, sizeof(*info));
	info->argsz = sizeof(*info);
	if (ioctl(vdev->device_fd, VFIO_DEVICE_GET_INFO, info))
		return lib_fail(errno, "VFIO_DEVICE_GET_INFO on %s", vdev->uuid);
	return 0;
}

int vfio_mdev_region_info(struct vfio_mdev *vdev, uint32_t index,
			  struct vfio_region_info *info)
{
	memset(info, 0, sizeof(*info));
	info->argsz = sizeof(*info);
	info->index = index;
	if (ioctl(vdev->device_fd, VFIO_DEVICE_GET_REGION_INFO, info))
		return lib_fail(errno, "VFIO_DEVICE_GET_REGION_INFO(%u) on %s",
				index, vdev->uuid);
	return 0;
}

/* The config space, BAR0 and BAR2 regions of a vfio-pci device. */
int vfio_mdev_pci_regions(struct vfio_mdev *vdev, struct vfio_region_info *cfg,
			  struct vfio_region_info *bar0,
			  struct vfio_region_info *bar2)
{
	int ret;

	ret = vfio_mdev_region_info(vdev, VFIO_PCI_CONFIG_REGION_INDEX, cfg);
	if (!ret)
		ret = vfio_mdev_region_info(vdev, VFIO_PCI_BAR0_REGION_INDEX,
					    bar0);
	if (!ret)
		ret = vfio_mdev_region_info(vdev, VFIO_PCI_BAR2_REGION_INDEX,
					    bar2);
	return ret;
}

int vfio_mdev_dma_map(struct vfio_mdev *vdev, void *vaddr, uint64_t iova,
		      uint64_t size)
{
	if (vdev->backend == VFIO_BACKEND_TYPE1) {
		struct vfio_iommu_type1_dma_map map = {
			.argsz = sizeof(map),
			.flags = VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE,
			.vaddr = (uintptr_t)vaddr,
			.iova = iova,
			.size = size,
		};

		if (ioctl(vdev->container_fd, VFIO_IOMMU_MAP_DMA, &map))
			return lib_fail(errno,
					"VFIO_IOMMU_MAP_DMA(iova %#llx size %#llx)",
					(unsigned long long)iova,
					(unsigned long long)size);
	} else {
		struct iommu_ioas_map map = {
			.size = sizeof(map),
			.flags = IOMMU_IOAS_MAP_FIXED_IOVA |
				 IOMMU_IOAS_MAP_READABLE |
				 IOMMU_IOAS_MAP_WRITEABLE,
			.ioas_id = vdev->ioas_id,
			.user_va = (uintptr_t)vaddr,
			.length = size,
			.iova = iova,
		};

		if (ioctl(vdev->iommufd, IOMMU_IOAS_MAP, &map))
			return lib_fail(errno,
					"IOMMU_IOAS_MAP(iova %#llx length %#llx)",
					(unsigned long long)iova,
					(unsigned long long)size);
	}
	return 0;
}

int vfio_mdev_dma_unmap(struct vfio_mdev *vdev, uint64_t iova, uint64_t size)
{
	uint64_t done;

	if (vdev->backend == VFIO_BACKEND_TYPE1) {
		struct vfio_iommu_type1_dma_unmap unmap = {
			.argsz = sizeof(unmap),
			.iova = iova,
			.size = size,
		};

		if (ioctl(vdev->container_fd, VFIO_IOMMU_UNMAP_DMA, &unmap))
			return lib_fail(errno,
					"VFIO_IOMMU_UNMAP_DMA(iova %#llx size %#llx)",
					(unsigned long long)iova,
					(unsigned long long)size);
		done = unmap.size;
	} else {
		struct iommu_ioas_unmap unmap = {
			.size = sizeof(unmap),
			.ioas_id = vdev->ioas_id,
			.iova = iova,
			.length = size,
		};

		if (ioctl(vdev->iommufd, IOMMU_IOAS_UNMAP, &unmap))
			return lib_fail(errno,
					"IOMMU_IOAS_UNMAP(iova %#llx length %#llx)",
					(unsigned long long)iova,
					(unsigned long long)size);
		done = unmap.length;
	}
	if (done != size)
		return lib_fail(EIO, "unmapped %#llx bytes of %#llx at %#llx",
				(unsigned long long)done,
				(unsigned long long)size,
				(unsigned long long)iova);
	return 0;
}
