/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Helpers for VFIO migration v2 selftests (<linux/vfio.h>:
 * VFIO_DEVICE_FEATURE_MIGRATION, VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE,
 * VFIO_MIG_GET_PRECOPY_INFO on the data_fd, VFIO_DEVICE_FEATURE_MIG_DATA_SIZE)
 * and the sizes of mblit's v2 stream (docs/migration.md §1.4, §1.5, §3).
 *
 * Driver-independent except for the mig_mblit_* size helpers.  Every
 * function returns 0 / a non-negative value or a negative errno; nothing
 * here blocks without a bound (data_fds are read with O_NONBLOCK-free
 * reads that the drivers never block: they return data, 0, or ENOMSG).
 */
#ifndef MIG_V2_H
#define MIG_V2_H

#include <errno.h>
#include <poll.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <linux/vfio.h>

#define MIG_NSTATES	(VFIO_DEVICE_STATE_PRE_COPY_P2P + 1)

static inline const char *mig_state_name(uint32_t s)
{
	static const char *const n[] = {
		"ERROR", "STOP", "RUNNING", "STOP_COPY", "RESUMING",
		"RUNNING_P2P", "PRE_COPY", "PRE_COPY_P2P",
	};

	return s < MIG_NSTATES ? n[s] : "?";
}

/* VFIO_DEVICE_FEATURE with a payload of @len bytes: 0 or -errno. */
static inline int mig_feature(int device_fd, uint32_t flags, void *data,
			      size_t len)
{
	uint64_t raw[(sizeof(struct vfio_device_feature) + 64) / 8];
	struct vfio_device_feature *f = (void *)raw;
	uint8_t *payload = (uint8_t *)raw + sizeof(*f);
	int ret;

	if (len > 64)
		return -EINVAL;
	memset(raw, 0, sizeof(raw));
	f->argsz = sizeof(*f) + len;
	f->flags = flags;
	if (len)
		memcpy(payload, data, len);
	ret = ioctl(device_fd, VFIO_DEVICE_FEATURE, f);
	if (ret)
		return -errno;
	if (len)
		memcpy(data, payload, len);
	return 0;
}

/* VFIO_DEVICE_FEATURE_MIGRATION flags. */
static inline int mig_flags(int device_fd, uint64_t *flags)
{
	struct vfio_device_feature_migration m = { 0 };
	int ret = mig_feature(device_fd, VFIO_DEVICE_FEATURE_GET |
			      VFIO_DEVICE_FEATURE_MIGRATION, &m, sizeof(m));

	*flags = m.flags;
	return ret;
}

/*
 * SET the device state. *data_fd gets the returned fd or -1 (the kernel
 * writes -1 when no fd is returned, and on failure).  0 or -errno.
 */
static inline int mig_set(int device_fd, uint32_t state, int *data_fd)
{
	struct vfio_device_feature_mig_state m = {
		.device_state = state, .data_fd = -2,
	};
	int ret = mig_feature(device_fd, VFIO_DEVICE_FEATURE_SET |
			      VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE, &m,
			      sizeof(m));

	if (data_fd)
		*data_fd = ret ? -1 : m.data_fd;
	else if (!ret && m.data_fd >= 0)
		close(m.data_fd);
	return ret;
}

/* GET the device state: the state or -errno; *data_fd gets what GET said. */
static inline int mig_get2(int device_fd, int *data_fd)
{
	struct vfio_device_feature_mig_state m = {
		.device_state = 0xdead, .data_fd = -2,
	};
	int ret = mig_feature(device_fd, VFIO_DEVICE_FEATURE_GET |
			      VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE, &m,
			      sizeof(m));

	if (data_fd)
		*data_fd = m.data_fd;
	return ret ? ret : (int)m.device_state;
}

static inline int mig_get(int device_fd)
{
	return mig_get2(device_fd, NULL);
}

/* VFIO_DEVICE_FEATURE_MIG_DATA_SIZE. */
static inline int mig_data_size(int device_fd, uint64_t *len)
{
	struct vfio_device_feature_mig_data_size m = { 0 };
	int ret = mig_feature(device_fd, VFIO_DEVICE_FEATURE_GET |
			      VFIO_DEVICE_FEATURE_MIG_DATA_SIZE, &m, sizeof(m));

	*len = m.stop_copy_length;
	return ret;
}

/* VFIO_MIG_GET_PRECOPY_INFO on a data_fd. */
static inline int mig_precopy_info(int data_fd, uint64_t *initial,
				   uint64_t *dirty)
{
	struct vfio_precopy_info info = {
		.argsz = sizeof(info),
		.initial_bytes = ~0ULL, .dirty_bytes = ~0ULL,
	};

	if (ioctl(data_fd, VFIO_MIG_GET_PRECOPY_INFO, &info))
		return -errno;
	*initial = info.initial_bytes;
	*dirty = info.dirty_bytes;
	return 0;
}

/* A growable byte buffer for streams. */
struct mig_buf {
	uint8_t *p;
	size_t len, cap;
};

static inline int mig_buf_reserve(struct mig_buf *b, size_t more)
{
	size_t cap = b->cap ? b->cap : 1 << 16;
	uint8_t *p;

	if (b->len + more <= b->cap)
		return 0;
	while (cap < b->len + more)
		cap *= 2;
	p = realloc(b->p, cap);
	if (!p)
		return -ENOMEM;
	b->p = p;
	b->cap = cap;
	return 0;
}

static inline int mig_buf_append(struct mig_buf *b, const void *p, size_t n)
{
	int ret = mig_buf_reserve(b, n);

	if (ret)
		return ret;
	memcpy(b->p + b->len, p, n);
	b->len += n;
	return 0;
}

static inline void mig_buf_free(struct mig_buf *b)
{
	free(b->p);
	memset(b, 0, sizeof(*b));
}

/* Odd chunk sizes for reads and writes, cycled through. */
static const size_t mig_odd_sizes[] = {
	1, 7, 31, 4099, 3, 65537, 13, 555, 557, 1048573, 36, 4104, 2, 262147,
};
#define MIG_NODD (sizeof(mig_odd_sizes) / sizeof(mig_odd_sizes[0]))

/*
 * Read @fd until end of stream (read returns 0) or pre-copy's temporary
 * end (ENOMSG), appending to @b, in chunks of mig_odd_sizes from *@k
 * (NULL: 1 MiB chunks).  At most @max bytes (a bound: a stream that never
 * ends is a failure).  Returns 0 at EOF, -ENOMSG at pre-copy's end,
 * -E2BIG past @max, or another -errno.  *@got: bytes read by this call.
 */
static inline int mig_read_stream(int fd, struct mig_buf *b, unsigned int *k,
				  size_t max, size_t *got)
{
	size_t want;
	ssize_t n;
	int ret;

	*got = 0;
	for (;;) {
		want = k ? mig_odd_sizes[(*k)++ % MIG_NODD] : (1 << 20);
		ret = mig_buf_reserve(b, want);
		if (ret)
			return ret;
		n = read(fd, b->p + b->len, want);
		if (n < 0)
			return -errno;
		if (n == 0)
			return 0;
		if ((size_t)n > want)
			return -EOVERFLOW;
		b->len += n;
		*got += n;
		if (*got > max)
			return -E2BIG;
	}
}

/*
 * Write @len bytes to @fd in chunks of mig_odd_sizes starting at *@k
 * (NULL: one write).  Returns 0, or the first failing write's -errno with
 * *@done the bytes accepted before it.  A short write is retried.
 */
static inline int mig_write_stream(int fd, const uint8_t *p, size_t len,
				   unsigned int *k, size_t *done)
{
	size_t off = 0, want;
	ssize_t n;
	int spins = 0;

	while (off < len) {
		want = k ? mig_odd_sizes[(*k)++ % MIG_NODD] : len;
		if (want > len - off)
			want = len - off;
		n = write(fd, p + off, want);
		if (n < 0) {
			if (done)
				*done = off;
			return -errno;
		}
		if (n == 0 && ++spins > 1000) {
			if (done)
				*done = off;
			return -EIO;
		}
		off += n;
	}
	if (done)
		*done = off;
	return 0;
}

/* poll() one fd for @events with a timeout: the revents, or -errno. */
static inline int mig_poll(int fd, short events, int ms)
{
	struct pollfd p = { .fd = fd, .events = events };
	int ret = poll(&p, 1, ms);

	if (ret < 0)
		return -errno;
	return ret ? p.revents : 0;
}

/* ---- mblit's stream sizes (docs/migration.md §1.4, §1.5) ---- */

#define MIG_MBLIT_PAGE		4096ULL
#define MIG_MBLIT_ENTRY		4104ULL
#define MIG_MBLIT_CHUNK_MAX	256ULL
#define MIG_MBLIT_DEV_REC	556ULL		/* device record, 0 pages */
#define MIG_MBLIT_MAGIC_DEV	0x5653424dU	/* "MBSV" */
#define MIG_MBLIT_MAGIC_PAGES	0x4750424dU	/* "MBPG" */

static inline uint64_t mig_mblit_chunk_len(uint64_t n)
{
	return 36 + n * MIG_MBLIT_ENTRY;
}

static inline uint64_t mig_mblit_stream_len(uint64_t n)
{
	uint64_t full = n / MIG_MBLIT_CHUNK_MAX, rest = n % MIG_MBLIT_CHUNK_MAX;

	return full * mig_mblit_chunk_len(MIG_MBLIT_CHUNK_MAX) +
	       (rest ? mig_mblit_chunk_len(rest) : 0);
}

static inline uint32_t mig_le32(const uint8_t *p)
{
	return p[0] | p[1] << 8 | p[2] << 16 | (uint32_t)p[3] << 24;
}

static inline uint64_t mig_le64(const uint8_t *p)
{
	return mig_le32(p) | (uint64_t)mig_le32(p + 4) << 32;
}

#endif /* MIG_V2_H */
