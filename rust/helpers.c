// SPDX-License-Identifier: GPL-2.0
/*
 * C helpers for mblit's Rust layer.
 */
#include <linux/stddef.h>
#include <linux/vfio.h>
#include <linux/mdev.h>

#include "helpers.h"

void mblit_c_layout(struct mblit_c_layout *l)
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
