/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Helpers for the mblit engine selftests (docs/device.md §7-§9, §11): an
 * opened mblit mdev with a DMA-mapped guest buffer, register/config/BAR2
 * access, descriptors, submitting to the ring, bounded waits, a byte model
 * of guest and device memory, debugfs counters and interrupt eventfds.
 *
 * Header-only: include it after kselftest_harness.h (the helpers take
 * _metadata and use ASSERT_*).  Every wait is bounded.
 */
#ifndef MBLIT_DEV_H
#define MBLIT_DEV_H

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <linux/pci_regs.h>
#include <linux/vfio.h>

#include "uapi/linux/mblit.h"
#include "mdev_lib.h"

#define MB_MIB			(1ULL << 20)
#define MB_PAGE			4096ULL

/* The guest buffer: mapped at a fixed IOVA through the lib's DMA helper. */
#define MB_IOVA			0x100000000ULL		/* 4 GiB */
#define MB_BUF_SIZE		(8 * MB_MIB)
#define MB_RING_OFF		0ULL			/* rings live here */
#define MB_DATA_OFF		(1 * MB_MIB)		/* data from here */
#define MB_DATA_IOVA		(MB_IOVA + MB_DATA_OFF)
#define MB_IOVA_END		(MB_IOVA + MB_BUF_SIZE)
/* Never mapped. */
#define MB_UNMAPPED_IOVA	0x200000000ULL
/* Extra, separately mapped (and unmapped) buffers. */
#define MB_EXTRA_IOVA		0x300000000ULL

#define MB_DEBUGFS		"/sys/kernel/debug/mblit"
#define MB_WAIT_MS		20000	/* engine waits (TCG is slow) */
#define MB_WAIT_TOTAL_MS	120000	/* ... while it makes progress */
#define MB_IRQ_WAIT_MS		5000	/* an interrupt that must come */
#define MB_QUIET_MS		200	/* an interrupt that must not come */

struct mb_dev {
	char uuid[MDEV_UUID_LEN + 1];
	bool created;
	struct vfio_mdev v;
	struct vfio_region_info cfg, bar0, bar2;
	uint64_t mem;			/* device memory, bytes */

	uint8_t *buf;			/* guest buffer, MB_BUF_SIZE at MB_IOVA */
	bool mapped;

	/* The model: what guest buffer and device memory must contain. */
	uint8_t *mg, *md;

	/* The ring as the test programmed it. */
	uint64_t ring_iova;
	uint8_t *ring_va;		/* where its slots are in our memory */
	uint32_t ring_size;
	uint32_t tail;

	uint64_t rng;
};

static inline void mb_init(struct mb_dev *d)
{
	memset(d, 0, sizeof(*d));
	d->v.device_fd = -1;
	d->v.group_fd = -1;
	d->v.container_fd = -1;
	d->v.iommufd = -1;
	d->rng = 0x9e3779b97f4a7c15ULL;
}

static inline uint64_t mb_rand(struct mb_dev *d)
{
	uint64_t x = d->rng;

	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	d->rng = x;
	return x;
}

/* A random number in [lo, hi]. */
static inline uint64_t mb_rand_range(struct mb_dev *d, uint64_t lo, uint64_t hi)
{
	return lo + mb_rand(d) % (hi - lo + 1);
}

static inline void mb_rand_fill(struct mb_dev *d, uint8_t *p, size_t len)
{
	size_t i;

	for (i = 0; i < len; i++) {
		if (!(i & 7))
			mb_rand(d);
		p[i] = d->rng >> (8 * (i & 7));
	}
}

static inline uint64_t mb_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000ULL + ts.tv_nsec / 1000000;
}

static inline void mb_sleep_ms(unsigned int ms)
{
	usleep(ms * 1000);
}

/* ---- region access ---------------------------------------------------- */

static inline ssize_t mb_acc(struct mb_dev *d, const struct vfio_region_info *r,
			     bool wr, uint64_t off, void *buf, size_t len)
{
	ssize_t n;

	errno = 0;
	if (wr)
		n = pwrite(d->v.device_fd, buf, len, r->offset + off);
	else
		n = pread(d->v.device_fd, buf, len, r->offset + off);
	return n < 0 ? -errno : n;
}

#define MB_ACC_OK(d, r, wr, off, buf, len) do {				\
	ssize_t __n = mb_acc(d, r, wr, off, buf, len);			\
	ASSERT_EQ((ssize_t)(len), __n)					\
		TH_LOG("%s %zu bytes at %s+%#llx: %s",			\
		       (wr) ? "write" : "read", (size_t)(len), #r,	\
		       (unsigned long long)(off),			\
		       __n < 0 ? strerror(-__n) : "short transfer");	\
} while (0)

static inline uint64_t mb_rd(struct __test_metadata *_metadata,
			     struct mb_dev *d, uint32_t off, int w)
{
	uint64_t v = 0;

	MB_ACC_OK(d, &d->bar0, false, off, &v, w);
	return v;
}

static inline void mb_wr(struct __test_metadata *_metadata, struct mb_dev *d,
			 uint32_t off, int w, uint64_t v)
{
	MB_ACC_OK(d, &d->bar0, true, off, &v, w);
}

#define RD32(off)	((uint32_t)mb_rd(_metadata, d, (off), 4))
#define RD64(off)	mb_rd(_metadata, d, (off), 8)
#define WR32(off, v)	mb_wr(_metadata, d, (off), 4, (v))
#define WR64(off, v)	mb_wr(_metadata, d, (off), 8, (v))

static inline uint16_t mb_cfg_rd16(struct __test_metadata *_metadata,
				   struct mb_dev *d, uint32_t off)
{
	uint16_t v = 0;

	MB_ACC_OK(d, &d->cfg, false, off, &v, 2);
	return v;
}

static inline void mb_cfg_wr16(struct __test_metadata *_metadata,
			       struct mb_dev *d, uint32_t off, uint16_t v)
{
	MB_ACC_OK(d, &d->cfg, true, off, &v, 2);
}

static inline void mb_set_command(struct __test_metadata *_metadata,
				  struct mb_dev *d, uint16_t set, uint16_t clear)
{
	uint16_t cmd = mb_cfg_rd16(_metadata, d, PCI_COMMAND);

	mb_cfg_wr16(_metadata, d, PCI_COMMAND, (cmd | set) & ~clear);
}

/* Config status bit 3: the device's interrupt is pending. */
static inline bool mb_irq_pending(struct __test_metadata *_metadata,
				  struct mb_dev *d)
{
	return mb_cfg_rd16(_metadata, d, PCI_STATUS) & PCI_STATUS_INTERRUPT;
}

static inline void mb_bar2_rd(struct __test_metadata *_metadata,
			      struct mb_dev *d, uint64_t off, void *buf,
			      size_t len)
{
	MB_ACC_OK(d, &d->bar2, false, off, buf, len);
}

/* Write device memory through BAR2, and the model with it. */
static inline void mb_bar2_wr(struct __test_metadata *_metadata,
			      struct mb_dev *d, uint64_t off, const void *buf,
			      size_t len)
{
	MB_ACC_OK(d, &d->bar2, true, off, (void *)buf, len);
	memcpy(d->md + off, buf, len);
}

/* All of device memory through BAR2, a MiB at a time, into @out (d->mem bytes). */
static inline void mb_read_vram(struct __test_metadata *_metadata,
				struct mb_dev *d, uint8_t *out)
{
	uint64_t off;

	for (off = 0; off < d->mem; off += MB_MIB)
		mb_bar2_rd(_metadata, d, off, out + off, MB_MIB);
}

/* The same, into a new buffer (free() it). */
static inline uint8_t *mb_dup_vram(struct __test_metadata *_metadata,
				   struct mb_dev *d)
{
	uint8_t *m = malloc(d->mem);

	ASSERT_NE(NULL, m);
	mb_read_vram(_metadata, d, m);
	return m;
}

/* ---- setup -------------------------------------------------------------- */

/*
 * Create an mdev of @type, open it through @backend and look up its PCI
 * regions (d->mem: the device memory's size); nothing mapped.
 */
static inline void mb_create_open(struct __test_metadata *_metadata,
				  struct mb_dev *d, const char *type,
				  enum vfio_backend backend)
{
	ASSERT_EQ(0, mdev_create(type, d->uuid))
		TH_LOG("create %s: %s", type, mdev_lib_error());
	d->created = true;
	ASSERT_EQ(0, vfio_mdev_open(&d->v, d->uuid, backend))
		TH_LOG("%s", mdev_lib_error());
	ASSERT_EQ(0, vfio_mdev_pci_regions(&d->v, &d->cfg, &d->bar0, &d->bar2))
		TH_LOG("%s", mdev_lib_error());
	d->mem = d->bar2.size;
}

/*
 * Create an mdev of @type, open it through @backend, look up its regions,
 * map MB_BUF_SIZE of guest buffer at MB_IOVA (random content outside the
 * ring area, zero ring area) and set bus master.
 */
static inline void mb_open(struct __test_metadata *_metadata, struct mb_dev *d,
			   const char *type, enum vfio_backend backend)
{
	ASSERT_TRUE(module_loaded("mblit")) TH_LOG("mblit is not loaded");
	mb_create_open(_metadata, d, type, backend);
	ASSERT_EQ(MBLIT_BAR0_SIZE, d->bar0.size);
	ASSERT_EQ(MBLIT_CONFIG_SIZE, d->cfg.size);
	ASSERT_LE(MB_MIB, d->mem);

	d->buf = mmap(NULL, MB_BUF_SIZE, PROT_READ | PROT_WRITE,
		      MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
	ASSERT_NE(MAP_FAILED, d->buf) TH_LOG("mmap: %s", strerror(errno));
	mb_rand_fill(d, d->buf + MB_DATA_OFF, MB_BUF_SIZE - MB_DATA_OFF);
	d->mg = malloc(MB_BUF_SIZE);
	d->md = calloc(1, d->mem);	/* device memory is zero at creation */
	ASSERT_TRUE(d->mg && d->md);
	memcpy(d->mg, d->buf, MB_BUF_SIZE);
	ASSERT_EQ(0, vfio_mdev_dma_map(&d->v, d->buf, MB_IOVA, MB_BUF_SIZE))
		TH_LOG("%s", mdev_lib_error());
	d->mapped = true;
	mb_set_command(_metadata, d, PCI_COMMAND_MASTER, 0);
}

static inline void mb_close(struct __test_metadata *_metadata, struct mb_dev *d)
{
	/* Closing the container / iommufd unmaps the buffer. */
	vfio_mdev_close(&d->v);
	if (d->created && mdev_remove(d->uuid))
		TH_LOG("cleanup: %s", mdev_lib_error());
	d->created = false;
	if (d->buf && d->buf != MAP_FAILED)
		munmap(d->buf, MB_BUF_SIZE);
	d->buf = NULL;
	free(d->mg);
	free(d->md);
	d->mg = d->md = NULL;
}

/* ---- descriptors and the model ----------------------------------------- */

static inline struct mblit_desc mb_nop(void)
{
	return (struct mblit_desc){ .opcode = MBLIT_OP_NOP };
}

static inline struct mblit_desc mb_fill(uint64_t dst, uint32_t len,
					uint32_t pat, uint8_t flags)
{
	return (struct mblit_desc){ .opcode = MBLIT_OP_FILL, .flags = flags,
				    .len = len, .dst = dst, .src = pat };
}

static inline struct mblit_desc mb_copy(uint64_t dst, uint64_t src,
					uint32_t len, uint8_t flags)
{
	return (struct mblit_desc){ .opcode = MBLIT_OP_COPY, .flags = flags,
				    .len = len, .dst = dst, .src = src };
}

static inline struct mblit_desc mb_fence(uint64_t dst, uint64_t val,
					 uint8_t flags)
{
	return (struct mblit_desc){ .opcode = MBLIT_OP_FENCE, .flags = flags,
				    .dst = dst, .src = val };
}

/* Where @iova..+len is in the model of the guest buffer, or NULL. */
static inline uint8_t *mb_model_guest(struct mb_dev *d, uint64_t iova,
				      uint64_t len)
{
	if (iova < MB_IOVA || iova + len > MB_IOVA_END || iova + len < iova)
		return NULL;
	return d->mg + (iova - MB_IOVA);
}

static inline uint8_t *mb_model_ptr(struct mb_dev *d, uint64_t a, uint64_t len,
				    bool dev)
{
	if (dev)
		return a + len <= d->mem ? d->md + a : NULL;
	return mb_model_guest(d, a, len);
}

/* Apply a valid descriptor to the model; returns the bytes it counts. */
static inline uint64_t mb_model_apply(struct mb_dev *d,
				      const struct mblit_desc *x)
{
	uint8_t *dst, *src;
	uint32_t k;

	switch (x->opcode) {
	case MBLIT_OP_FILL:
		dst = mb_model_ptr(d, x->dst, x->len,
				   x->flags & MBLIT_FLAG_DST_DEV);
		if (dst)
			for (k = 0; k < x->len; k++)
				dst[k] = x->src >> (8 * (k & 3));
		return x->len;
	case MBLIT_OP_COPY:
		dst = mb_model_ptr(d, x->dst, x->len,
				   x->flags & MBLIT_FLAG_DST_DEV);
		src = mb_model_ptr(d, x->src, x->len,
				   x->flags & MBLIT_FLAG_SRC_DEV);
		if (dst && src)
			memmove(dst, src, x->len);
		return x->len;
	case MBLIT_OP_FENCE:
		dst = mb_model_guest(d, x->dst, 8);
		if (dst)
			memcpy(dst, &x->src, 8);
		return 0;
	}
	return 0;
}

/*
 * Count the guest buffer bytes in [lo, hi) (offsets in the buffer) that
 * differ from the model; the first one's offset in *first (if any), the
 * first @log of them logged.  The model follows every descriptor the test
 * puts in a ring in the buffer (mb_ring_put) and every write it expects
 * the engine to make (mb_model_apply), so a byte that differs anywhere,
 * the ring area included, is a write nobody asked for.
 */
static inline size_t mb_guest_diff(struct __test_metadata *_metadata,
				   struct mb_dev *d, size_t lo, size_t hi,
				   size_t *first, unsigned int log,
				   const char *what)
{
	size_t i, bad = 0;

	for (i = lo; i < hi; i++) {
		if (d->buf[i] == d->mg[i])
			continue;
		if (!bad++ && first)
			*first = i;
		if (bad <= log)
			TH_LOG("%s: guest IOVA %#llx (%s area) is %#04x, expected %#04x",
			       what, MB_IOVA + i,
			       i < MB_DATA_OFF ? "ring" : "data",
			       d->buf[i], d->mg[i]);
	}
	return bad;
}

/* Compare the whole guest buffer, ring area included, with the model. */
static inline void mb_check_guest(struct __test_metadata *_metadata,
				  struct mb_dev *d, const char *what)
{
	size_t bad, first = 0;

	bad = mb_guest_diff(_metadata, d, 0, MB_BUF_SIZE, &first, 8, what);
	ASSERT_EQ(0, bad) TH_LOG("%s: %zu guest bytes differ, first at IOVA %#llx",
				 what, bad, MB_IOVA + first);
}

/* Compare device memory [lo, hi) with the model, through BAR2. */
static inline void mb_check_dev(struct __test_metadata *_metadata,
				struct mb_dev *d, uint64_t lo, uint64_t hi,
				const char *what)
{
	const size_t chunk = MB_MIB;
	uint8_t *got = malloc(chunk);
	size_t bad = 0, first = 0, i, n;
	uint64_t off;

	ASSERT_NE(NULL, got);
	for (off = lo; off < hi; off += n) {
		n = hi - off < chunk ? hi - off : chunk;
		mb_bar2_rd(_metadata, d, off, got, n);
		for (i = 0; i < n; i++) {
			if (got[i] == d->md[off + i])
				continue;
			if (!bad++)
				first = off + i;
			if (bad <= 8)
				TH_LOG("%s: device byte %#llx is %#04x, expected %#04x",
				       what, (unsigned long long)(off + i),
				       got[i], d->md[off + i]);
		}
	}
	free(got);
	ASSERT_EQ(0, bad) TH_LOG("%s: %zu device bytes differ, first at %#zx",
				 what, bad, first);
}

/* Expect all of device memory to read zero, through BAR2. */
static inline void mb_expect_vram_zero(struct __test_metadata *_metadata,
				       struct mb_dev *d, const char *what)
{
	uint8_t *p = malloc(MB_MIB);
	uint64_t off, bad = 0, first = 0;
	size_t i;

	ASSERT_NE(NULL, p);
	for (off = 0; off < d->mem; off += MB_MIB) {
		mb_bar2_rd(_metadata, d, off, p, MB_MIB);
		for (i = 0; i < MB_MIB; i++)
			if (p[i] && !bad++)
				first = off + i;
	}
	free(p);
	EXPECT_EQ(0, bad) TH_LOG("%s: %llu non-zero device bytes, first at %#llx",
				 what, (unsigned long long)bad,
				 (unsigned long long)first);
}

/* ---- the ring ----------------------------------------------------------- */

/* Descriptor index @idx into its slot (and the model, if in the buffer). */
static inline void mb_ring_put(struct mb_dev *d, uint32_t idx,
			       const struct mblit_desc *x)
{
	uint64_t slot = (uint64_t)(idx % d->ring_size) * MBLIT_DESC_SIZE;
	uint8_t *m = mb_model_guest(d, d->ring_iova + slot, MBLIT_DESC_SIZE);

	memcpy(d->ring_va + slot, x, MBLIT_DESC_SIZE);
	if (m)
		memcpy(m, x, MBLIT_DESC_SIZE);
}

/*
 * Program a ring of @size descriptors at @iova (whose slots we write at
 * @va) and enable the engine.  The device must be idle with ENABLE 0.
 */
static inline void mb_ring_setup_at(struct __test_metadata *_metadata,
				    struct mb_dev *d, uint64_t iova,
				    uint8_t *va, uint32_t size)
{
	d->ring_iova = iova;
	d->ring_va = va;
	d->ring_size = size;
	WR64(MBLIT_REG_RING_BASE, iova);
	WR32(MBLIT_REG_RING_SIZE, size);
	d->tail = RD32(MBLIT_REG_RING_TAIL);
	ASSERT_EQ(d->tail, RD32(MBLIT_REG_RING_HEAD));
	WR32(MBLIT_REG_CTRL, MBLIT_CTRL_ENABLE);
}

/* A ring in the guest buffer at MB_RING_OFF. */
static inline void mb_ring_setup(struct __test_metadata *_metadata,
				 struct mb_dev *d, uint32_t size)
{
	mb_ring_setup_at(_metadata, d, MB_IOVA + MB_RING_OFF,
			 d->buf + MB_RING_OFF, size);
}

/* Write @n descriptors at the tail (the model follows) and ring the bell. */
static inline uint64_t mb_submit(struct __test_metadata *_metadata,
				 struct mb_dev *d, const struct mblit_desc *x,
				 unsigned int n)
{
	uint64_t bytes = 0;
	unsigned int i;

	for (i = 0; i < n; i++) {
		mb_ring_put(d, d->tail + i, &x[i]);
		bytes += mb_model_apply(d, &x[i]);
	}
	d->tail += n;
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	WR32(MBLIT_REG_RING_TAIL, d->tail);
	return bytes;
}

/* Write descriptors that must fail: the model does not follow. */
static inline void mb_submit_bad(struct __test_metadata *_metadata,
				 struct mb_dev *d, const struct mblit_desc *x,
				 unsigned int n)
{
	unsigned int i;

	for (i = 0; i < n; i++)
		mb_ring_put(d, d->tail + i, &x[i]);
	d->tail += n;
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	WR32(MBLIT_REG_RING_TAIL, d->tail);
}

static inline void mb_log_state(struct __test_metadata *_metadata,
				struct mb_dev *d, const char *what)
{
	uint32_t st = RD32(MBLIT_REG_STATUS);

	TH_LOG("%s: STATUS %#x (code %#x) HEAD %u TAIL %u (test tail %u) CTRL %#x INT_STATUS %#x CMD_COUNT %llu ERR_INDEX %u ERR_ADDR %#llx",
	       what, st, MBLIT_STATUS_ERR_CODE(st), RD32(MBLIT_REG_RING_HEAD),
	       RD32(MBLIT_REG_RING_TAIL), d->tail, RD32(MBLIT_REG_CTRL),
	       RD32(MBLIT_REG_INT_STATUS),
	       (unsigned long long)RD64(MBLIT_REG_CMD_COUNT),
	       RD32(MBLIT_REG_ERR_INDEX),
	       (unsigned long long)RD64(MBLIT_REG_ERR_ADDR));
}

/*
 * Wait until the engine has executed everything up to the tail.  Bounded:
 * fails when the head does not move for MB_WAIT_MS, or after
 * MB_WAIT_TOTAL_MS in all (long workloads on a busy TCG host are slow but
 * make progress).
 */
static inline void mb_wait_done(struct __test_metadata *_metadata,
				struct mb_dev *d)
{
	uint64_t now = mb_now_ms(), end = now + MB_WAIT_MS;
	uint64_t cap = now + MB_WAIT_TOTAL_MS;
	uint32_t st, head, last = RD32(MBLIT_REG_RING_HEAD);

	for (;;) {
		head = RD32(MBLIT_REG_RING_HEAD);
		if (head != last) {
			last = head;
			end = mb_now_ms() + MB_WAIT_MS;
			if (end > cap)
				end = cap;
		}
		st = RD32(MBLIT_REG_STATUS);
		if (st & MBLIT_STATUS_ERROR) {
			mb_log_state(_metadata, d, "engine error");
			ASSERT_EQ(0, st & MBLIT_STATUS_ERROR);
		}
		if (head == d->tail && !(st & MBLIT_STATUS_BUSY))
			break;
		if (mb_now_ms() > end) {
			mb_log_state(_metadata, d, "timeout waiting for the ring");
			ASSERT_EQ(d->tail, head)
				TH_LOG("engine made no progress for %d ms (or took over %d ms)",
				       MB_WAIT_MS, MB_WAIT_TOTAL_MS);
			ASSERT_EQ(0, st);
		}
		mb_sleep_ms(1);
	}
	ASSERT_EQ(0, st) TH_LOG("STATUS when idle");
}

/* Wait until RING_HEAD is at least @idx (free-running compare). */
static inline void mb_wait_head(struct __test_metadata *_metadata,
				struct mb_dev *d, uint32_t idx)
{
	uint64_t end = mb_now_ms() + MB_WAIT_MS;

	while ((int32_t)(RD32(MBLIT_REG_RING_HEAD) - idx) < 0) {
		if (mb_now_ms() > end) {
			mb_log_state(_metadata, d, "timeout waiting for head");
			ASSERT_TRUE(false) TH_LOG("head did not reach %u", idx);
		}
		mb_sleep_ms(1);
	}
}

/*
 * Wait for an error stop: STATUS.ERROR and (set last) INT_STATUS.ERROR.
 * Returns STATUS.
 */
static inline uint32_t mb_wait_error(struct __test_metadata *_metadata,
				     struct mb_dev *d)
{
	uint64_t end = mb_now_ms() + MB_WAIT_MS;
	uint32_t st;

	for (;;) {
		st = RD32(MBLIT_REG_STATUS);
		if ((st & MBLIT_STATUS_ERROR) &&
		    (RD32(MBLIT_REG_INT_STATUS) & MBLIT_INT_ERROR))
			return st;
		if (mb_now_ms() > end) {
			mb_log_state(_metadata, d, "timeout waiting for an error");
			ASSERT_TRUE(false) TH_LOG("no error stop in %d ms",
						  MB_WAIT_MS);
		}
		mb_sleep_ms(1);
	}
}

/* Wait for INT_STATUS bits @bits. */
static inline void mb_wait_int(struct __test_metadata *_metadata,
			       struct mb_dev *d, uint32_t bits)
{
	uint64_t end = mb_now_ms() + MB_WAIT_MS;

	while ((RD32(MBLIT_REG_INT_STATUS) & bits) != bits) {
		if (mb_now_ms() > end) {
			mb_log_state(_metadata, d, "timeout waiting for INT_STATUS");
			ASSERT_TRUE(false) TH_LOG("INT_STATUS %#x never set", bits);
		}
		mb_sleep_ms(1);
	}
}

/* Submit and wait. */
static inline uint64_t mb_run(struct __test_metadata *_metadata,
			      struct mb_dev *d, const struct mblit_desc *x,
			      unsigned int n)
{
	uint64_t bytes = mb_submit(_metadata, d, x, n);

	mb_wait_done(_metadata, d);
	return bytes;
}

static inline void mb_engine_reset(struct __test_metadata *_metadata,
				   struct mb_dev *d)
{
	WR32(MBLIT_REG_CTRL, MBLIT_CTRL_RESET);
	d->tail = 0;
}

/* Every BAR0 register at its reset value (docs/device.md §5, §11). */
static inline void mb_expect_reset_regs(struct __test_metadata *_metadata,
					struct mb_dev *d, const char *what)
{
	static const struct { uint32_t off; int w; uint64_t v; const char *n; } r[] = {
		{ MBLIT_REG_ID, 4, MBLIT_ID_MAGIC, "ID" },
		{ MBLIT_REG_VERSION, 4, MBLIT_DEVICE_VERSION, "VERSION" },
		{ MBLIT_REG_CTRL, 4, 0, "CTRL" },
		{ MBLIT_REG_STATUS, 4, 0, "STATUS" },
		{ MBLIT_REG_RING_BASE, 8, 0, "RING_BASE" },
		{ MBLIT_REG_RING_SIZE, 4, 0, "RING_SIZE" },
		{ MBLIT_REG_RING_HEAD, 4, 0, "RING_HEAD" },
		{ MBLIT_REG_RING_TAIL, 4, 0, "RING_TAIL" },
		{ MBLIT_REG_INT_STATUS, 4, 0, "INT_STATUS" },
		{ MBLIT_REG_INT_MASK, 4, 0, "INT_MASK" },
		{ MBLIT_REG_FENCE_LAST, 8, 0, "FENCE_LAST" },
		{ MBLIT_REG_CMD_COUNT, 8, 0, "CMD_COUNT" },
		{ MBLIT_REG_BYTE_COUNT, 8, 0, "BYTE_COUNT" },
		{ MBLIT_REG_ERR_INDEX, 4, 0, "ERR_INDEX" },
		{ MBLIT_REG_ERR_ADDR, 8, 0, "ERR_ADDR" },
		{ MBLIT_REG_SCRATCH0, 8, 0, "SCRATCH0" },
		{ MBLIT_REG_SCRATCH3, 8, 0, "SCRATCH3" },
	};
	unsigned int i;

	for (i = 0; i < sizeof(r) / sizeof(r[0]); i++)
		EXPECT_EQ(r[i].v, mb_rd(_metadata, d, r[i].off, r[i].w))
			TH_LOG("%s: %s", what, r[i].n ? r[i].n : "?");
}

/* ---- debugfs ------------------------------------------------------------ */

static inline int mb_debugfs_try(struct mb_dev *d, const char *name,
				 uint64_t *val)
{
	char path[MDEV_PATH_MAX], buf[64], *end;
	int ret;

	snprintf(path, sizeof(path), MB_DEBUGFS "/%s/%s", d->uuid, name);
	ret = sysfs_read_str(path, buf, sizeof(buf));
	if (ret < 0)
		return ret;
	errno = 0;
	*val = strtoull(buf, &end, 10);
	if (errno || end == buf || *end)
		return -EINVAL;
	return 0;
}

static inline uint64_t mb_debugfs(struct __test_metadata *_metadata,
				  struct mb_dev *d, const char *name)
{
	uint64_t v = 0;

	ASSERT_EQ(0, mb_debugfs_try(d, name, &v))
		TH_LOG("debugfs %s/%s: %s", d->uuid, name, mdev_lib_error());
	return v;
}

/* ---- interrupts --------------------------------------------------------- */

/* SET_IRQS with @count eventfds (or none); returns 0 or -errno. */
static inline int mb_set_irqs(struct mb_dev *d, uint32_t flags, uint32_t index,
			      uint32_t start, uint32_t count, const void *data,
			      size_t data_len)
{
	struct vfio_irq_set *set;
	size_t sz = sizeof(*set) + data_len;
	int ret;

	set = calloc(1, sz);
	if (!set)
		return -ENOMEM;
	set->argsz = sz;
	set->flags = flags;
	set->index = index;
	set->start = start;
	set->count = count;
	if (data_len)
		memcpy(set->data, data, data_len);
	ret = ioctl(d->v.device_fd, VFIO_DEVICE_SET_IRQS, set) ? -errno : 0;
	free(set);
	return ret;
}

static inline int mb_set_trigger(struct mb_dev *d, uint32_t index, int32_t fd)
{
	return mb_set_irqs(d, VFIO_IRQ_SET_DATA_EVENTFD |
			   VFIO_IRQ_SET_ACTION_TRIGGER, index, 0, 1, &fd,
			   sizeof(fd));
}

static inline int mb_intx_action(struct mb_dev *d, uint32_t action)
{
	return mb_set_irqs(d, VFIO_IRQ_SET_DATA_NONE | action,
			   VFIO_PCI_INTX_IRQ_INDEX, 0, 1, NULL, 0);
}

static inline int mb_eventfd(struct __test_metadata *_metadata)
{
	int fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);

	ASSERT_LE(0, fd) TH_LOG("eventfd: %s", strerror(errno));
	return fd;
}

/*
 * Wait up to @ms for the eventfd; returns its counter (0: nothing came).
 */
static inline uint64_t mb_efd_wait(struct __test_metadata *_metadata, int fd,
				   int ms)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };
	uint64_t v = 0;
	int ret;

	ret = poll(&p, 1, ms);
	ASSERT_LE(0, ret) TH_LOG("poll: %s", strerror(errno));
	if (!ret)
		return 0;
	ASSERT_EQ(8, read(fd, &v, 8)) TH_LOG("read eventfd: %s", strerror(errno));
	return v;
}

/* Sum the eventfd's signals until @want arrived or @ms passed. */
static inline uint64_t mb_efd_collect(struct __test_metadata *_metadata,
				      int fd, uint64_t want, int ms)
{
	uint64_t end = mb_now_ms() + ms, got = 0, now;

	while (got < want && (now = mb_now_ms()) < end)
		got += mb_efd_wait(_metadata, fd, end - now);
	return got;
}

/* ---- the DEVICE_STATE region (docs/device.md §10) ---------------------- */

/*
 * Find the region(s) whose VFIO_REGION_INFO_CAP_TYPE capability is
 * @type/@subtype, walking each region's capability chain (never by index).
 * Returns how many regions carry it, the first one's info in *out, or a
 * negative errno.
 */
static inline int mb_find_region_by_type(struct mb_dev *d, uint32_t type,
					 uint32_t subtype,
					 struct vfio_region_info *out)
{
	struct vfio_device_info dinfo;
	struct vfio_region_info *ri;
	uint32_t i, sz, off;
	int found = 0, ret, hops;

	ret = vfio_mdev_device_info(&d->v, &dinfo);
	if (ret)
		return ret;
	for (i = 0; i < dinfo.num_regions; i++) {
		sz = sizeof(*ri);
		for (;;) {
			ri = calloc(1, sz);
			if (!ri)
				return -ENOMEM;
			ri->argsz = sz;
			ri->index = i;
			if (ioctl(d->v.device_fd, VFIO_DEVICE_GET_REGION_INFO, ri)) {
				ret = -errno;
				free(ri);
				return ret;
			}
			if (ri->argsz <= sz)
				break;
			sz = ri->argsz;		/* room for the capabilities */
			free(ri);
		}
		off = (ri->flags & VFIO_REGION_INFO_FLAG_CAPS) ? ri->cap_offset : 0;
		for (hops = 0; off && hops < 64; hops++) {
			struct vfio_info_cap_header *h;

			if (off < sizeof(*ri) ||
			    off + sizeof(struct vfio_region_info_cap_type) > sz)
				break;
			h = (struct vfio_info_cap_header *)((char *)ri + off);
			if (h->id == VFIO_REGION_INFO_CAP_TYPE) {
				struct vfio_region_info_cap_type *ct = (void *)h;

				if (ct->type == type && ct->subtype == subtype &&
				    !found++) {
					*out = *ri;
					out->argsz = sizeof(*out);
				}
			}
			off = h->next;
		}
		free(ri);
	}
	return found;
}

/* The DEVICE_STATE region of @d, found by its type capability. */
static inline void mb_state_region(struct __test_metadata *_metadata,
				   struct mb_dev *d, struct vfio_region_info *sr)
{
	int n = mb_find_region_by_type(d, MBLIT_REGION_TYPE_DEVICE_STATE,
				       MBLIT_REGION_SUBTYPE_DEVICE_STATE, sr);

	ASSERT_EQ(1, n) TH_LOG("regions with the DEVICE_STATE type capability: %d%s%s",
			       n, n < 0 ? ": " : "",
			       n < 0 ? strerror(-n) : "");
}

/* Write the run-control byte: 0 or -errno. */
static inline int mb_runctl_set(struct mb_dev *d,
				const struct vfio_region_info *sr, uint8_t v)
{
	ssize_t n = mb_acc(d, sr, true, MBLIT_STATE_OFF_RUNCTL, &v, 1);

	return n == 1 ? 0 : n < 0 ? (int)n : -EIO;
}

/* Read the run-control byte: its value or -errno. */
static inline int mb_runctl_get(struct mb_dev *d,
				const struct vfio_region_info *sr)
{
	uint8_t v = 0;
	ssize_t n = mb_acc(d, sr, false, MBLIT_STATE_OFF_RUNCTL, &v, 1);

	return n == 1 ? v : n < 0 ? (int)n : -EIO;
}

/* A header field (@w = 4 or 8 bytes at @off). */
static inline uint64_t mb_state_hdr(struct __test_metadata *_metadata,
				    struct mb_dev *d,
				    const struct vfio_region_info *sr,
				    uint32_t off, int w)
{
	uint64_t v = 0;

	MB_ACC_OK(d, sr, false, off, &v, w);
	return v;
}

/* The state (STOPPED), in one read; its size from the header in *len. */
static inline uint8_t *mb_state_read(struct __test_metadata *_metadata,
				     struct mb_dev *d,
				     const struct vfio_region_info *sr,
				     size_t *len)
{
	uint64_t size = mb_state_hdr(_metadata, d, sr, MBLIT_STATE_OFF_SIZE, 8);
	uint8_t *blob;

	ASSERT_LT(0, size) TH_LOG("state size 0 while stopped");
	ASSERT_GE(sr->size - MBLIT_STATE_AREA_OFFSET, size);
	blob = malloc(size);
	ASSERT_NE(NULL, blob);
	MB_ACC_OK(d, sr, false, MBLIT_STATE_AREA_OFFSET, blob, size);
	*len = size;
	return blob;
}

/* MemAvailable from /proc/meminfo, in bytes; 0 if it cannot be read. */
static inline uint64_t mb_mem_available(void)
{
	unsigned long long kb = 0;
	char line[256];
	FILE *f = fopen("/proc/meminfo", "re");

	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "MemAvailable: %llu kB", &kb) == 1)
			break;
	fclose(f);
	return kb * 1024;
}

#endif /* MBLIT_DEV_H */
