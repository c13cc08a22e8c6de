/* SPDX-License-Identifier: GPL-2.0 */
/*
 * One read or write made by a thread of its own, so that the caller can
 * hold it inside the kernel's user copy (a buffer in userfaultfd) and see
 * what else works meanwhile.
 */
#ifndef HELD_ACCESS_H
#define HELD_ACCESS_H

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <sys/types.h>
#include <unistd.h>

struct held {
	int fd;
	bool write, positional;	/* pwrite/pread at @off, or write/read */
	void *buf;
	size_t len;
	off_t off;
	ssize_t ret;		/* what the call returned */
	int err;		/* its errno, if it failed */
	int done;		/* set (release) once it returned */
	pthread_t th;
};

/* The thread: pthread_create(&h->th, NULL, held_fn, h). */
static inline void *held_fn(void *arg)
{
	struct held *h = arg;
	ssize_t n;

	if (h->positional)
		n = h->write ? pwrite(h->fd, h->buf, h->len, h->off) :
			       pread(h->fd, h->buf, h->len, h->off);
	else
		n = h->write ? write(h->fd, h->buf, h->len) :
			       read(h->fd, h->buf, h->len);
	h->err = n < 0 ? errno : 0;
	h->ret = n;
	__atomic_store_n(&h->done, 1, __ATOMIC_RELEASE);
	return NULL;
}

#endif /* HELD_ACCESS_H */
