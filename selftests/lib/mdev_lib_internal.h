/* SPDX-License-Identifier: GPL-2.0 */
#ifndef MDEV_LIB_INTERNAL_H
#define MDEV_LIB_INTERNAL_H

/* Record a failure; returns -err (or -EINVAL when err is 0). */
int lib_fail(int err, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

#endif /* MDEV_LIB_INTERNAL_H */
