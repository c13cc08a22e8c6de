/* SPDX-License-Identifier: GPL-2.0 */
/*
 * bindgen input: the C declarations the driver's Rust layer needs that
 * kernel::bindings does not provide (VFIO, mdev, class devices), plus the
 * prototypes of the project's own C helpers.
 */
#include <linux/device.h>
#include <linux/device/class.h>
#include <linux/cdev.h>
#include <linux/poll.h>
#include <linux/vfio.h>
#include <linux/mdev.h>
#include <linux/iommufd.h>
#include <linux/eventfd.h>
#include <linux/workqueue.h>
#include <linux/anon_inodes.h>
#include <linux/fs.h>
#include <linux/interval_tree.h>
#include <linux/crc32.h>

#include "helpers.h"

/*
 * ioctl numbers are macro expressions bindgen cannot evaluate; give them to
 * it as constants.
 */
static const unsigned int KAPI_VFIO_DEVICE_GET_INFO = VFIO_DEVICE_GET_INFO;
static const unsigned int KAPI_VFIO_DEVICE_GET_REGION_INFO = VFIO_DEVICE_GET_REGION_INFO;
static const unsigned int KAPI_VFIO_DEVICE_GET_IRQ_INFO = VFIO_DEVICE_GET_IRQ_INFO;
static const unsigned int KAPI_VFIO_DEVICE_SET_IRQS = VFIO_DEVICE_SET_IRQS;
static const unsigned int KAPI_VFIO_DEVICE_RESET = VFIO_DEVICE_RESET;
static const unsigned int KAPI_VFIO_MIG_GET_PRECOPY_INFO = VFIO_MIG_GET_PRECOPY_INFO;

static const int KAPI_IOMMU_READ = IOMMU_READ;
static const int KAPI_IOMMU_WRITE = IOMMU_WRITE;
static const unsigned int KAPI_EPOLLIN = EPOLLIN | EPOLLRDNORM;
static const unsigned int KAPI_EPOLLOUT = EPOLLOUT | EPOLLWRNORM;
