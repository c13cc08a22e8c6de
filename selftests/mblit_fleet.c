// SPDX-License-Identifier: GPL-2.0
/*
 * Many mblit mdevs migrating at once, and migration data sent where it does
 * not belong (issue 15, items 2 and 3).
 *
 * fleet.concurrent_v2_migrations: as many mblit-1m mdevs as the module
 *   budget gives (available_instances at the start, at least 64), capped
 *   at FL_PAIRS_DEFAULT pairs, half sources, half destinations, on type1
 *   and iommufd in all four combinations.  The cap keeps the test near two
 *   minutes in the TCG test VM (64 pairs: about 2 min; the default budget's
 *   256 pairs: about 6.5 min); MBLIT_FLEET_PAIRS=<n> or =all (scripts/vm-test
 *   --env) lifts it.  One thread per pair migrates it the way a VMM does:
 *   the destination is put in RESUMING at once, the source runs a DMA
 *   workload (FILL and COPY in every direction, FENCE) against the model
 *   of mblit_dev.h, enters PRE_COPY (initial_bytes exact), more work, a
 *   dirty pass (dirty_bytes exact), more work in flight and STOP_COPY
 *   (MIG_DATA_SIZE and the stream exact for what ran before the stop);
 *   every chunk read is written into the destination's data_fd as it
 *   comes; guest memory is copied while both are stopped; the destination
 *   runs, woken by MSI (its trigger set before the migration).  It must
 *   finish the work byte-exact against the model (guest and device memory,
 *   registers and config space that migrate, counters, fence) and run
 *   more.  Afterwards every source and destination, reset, runs a known
 *   workload byte-exact, nothing is pinned, and once all are removed
 *   available_instances is back to its start value and MemAvailable within
 *   FL_MEM_SLACK.  Figures (pairs, wall time of the concurrent phase, the
 *   longest stop-copy) are printed, not asserted.
 *
 * fleet.v2_stream_into_other_type_is_refused: a mblit-16m stream into a
 *   mblit-1m device in RESUMING and the reverse (docs/migration.md §1.7,
 *   §3.2): refused with EINVAL by the write that brings the first record
 *   (its header names the wrong type), the stream poisoned, RESUMING ->
 *   STOP fails with EINVAL into ERROR, as after a reset; VFIO_DEVICE_RESET
 *   brings it back, it runs a workload and takes a stream of its type.
 *
 * fleet.region_state_into_other_type_is_refused: the same through the
 *   DEVICE_STATE region (docs/device.md §10, docs/migration.md §2): RUNNING
 *   fails with EINVAL, the destination stays stopped with its own state
 *   intact (registers, config space, device memory, snapshot), then
 *   resumes it and runs on; a state of its own type is taken.
 *
 * fleet.v2_stream_into_device_not_resuming_is_refused: stream bytes
 *   written to a saving data_fd (PRE_COPY, STOP_COPY) fail with EBADF (the
 *   file is read-only) and disturb nothing; SET RESUMING from RUNNING and
 *   from PRE_COPY is a combination transition the driver walks (the old
 *   saving fd then fails with ENODEV); a RESUMING data_fd after the device
 *   left RESUMING (to STOP, or by a reset) fails with ENODEV, also while a
 *   later RESUMING session is open, which it must not feed.
 *
 * fleet.region_restore_while_running_is_refused: the state area refuses
 *   writes (and reads) with EBUSY while the device runs, busy or idle, and
 *   while v2 holds it in STOP; nothing is stored: a later stop and resume
 *   keeps the device's own state, and it runs on byte-exact.
 *
 * docs/migration.md §3 gives the errnos for a data_fd used the wrong way
 * (EBADF, from the VFS) and after its migration ended (ENODEV).
 */
#include <malloc.h>
#include <pthread.h>
#include <setjmp.h>
#include <sys/resource.h>

#include "kselftest_harness.h"
#include "mblit_dev.h"
#include "mblit_regs.h"
#include "mig_v2.h"

#define FL_TYPE			"mblit-1m"
#define FL_MIN_PAIRS		32	/* 64 mdevs */
#define FL_PAIRS_DEFAULT	64	/* the cap, unless MBLIT_FLEET_PAIRS */
#define FL_MEM_SLACK		(64 * MB_MIB)
#define FL_MEM_WAIT_MS		30000
#define FL_STALL_MS		120000	/* no engine progress for that long */
#define FL_THREAD_STACK		(512 * 1024)

/* A small guest buffer per device: ring, fences, data. */
#define FL_BUF			(64 * 1024)
#define FL_RING_N		128		/* 4 KiB at offset 0 */
#define FL_FENCE_OFF		0x1000		/* 64 fence slots */
#define FL_DATA_OFF		0x2000
#define FL_G(off)		(MB_IOVA + (off))
/* The work touches the first and the last FL_DEV_WIN of device memory. */
#define FL_DEV_WIN		(64 * 1024)
#define FL_XFER_MAX		8192

/* Work per source: before PRE_COPY, during it, in flight at the stop. */
#define FL_N1			24
#define FL_N2			24
#define FL_N3			32
#define FL_N4			8		/* on the destination afterwards */
#define FL_STREAM_MAX		(8 * MB_MIB)	/* a bound on any stream */

#define DD			MBLIT_FLAG_DST_DEV
#define SD			MBLIT_FLAG_SRC_DEV
#define DFD(f)			((f)->d.v.device_fd)

#define FL_NREGS		MB_NREGS
/* SCRATCH0 in a device record: REGS payload at 320, register 15. */
#define FL_REC_SCRATCH0		(320 + 8 * 15)

/* An mdev with a small guest buffer, its model and an MSI eventfd. */
struct fl_dev {
	struct mb_dev d;
	int efd;
	uint64_t bytes;		/* BYTE_COUNT the model expects */
	uint64_t cmds;		/* CMD_COUNT the model expects */
	uint64_t fence;		/* FENCE_LAST the model expects */
};

struct fl_pair {
	unsigned int idx;
	struct fl_dev src, dst;
	struct __test_metadata md;	/* this pair's thread's own */
	pthread_t th;
	bool started;
	int sfd, rfd;
	uint8_t *chunk;
	size_t chunk_len;
	struct mig_buf sc;		/* the stop-copy part of the stream */
	/* figures */
	uint64_t stop_copy_ms, pre_bytes, sc_bytes;
	uint32_t head_stop;
};

/* ---- failing inside a thread ------------------------------------------ */

/*
 * Each pair's thread has its own copy of the test's metadata whose
 * teardown_fn (which a failing ASSERT_* calls before it would abort())
 * jumps back to the thread's start instead: the pair fails, the thread
 * ends, and the test goes on to clean up everything.
 */
static __thread jmp_buf *fl_bail_env;

static void fl_bail(bool in_parent, struct __test_metadata *t, void *self,
		    const void *variant)
{
	longjmp(*fl_bail_env, 1);
}

static void fl_thread_metadata(struct __test_metadata *tm,
			       const struct __test_metadata *parent)
{
	*tm = *parent;
	tm->exit_code = KSFT_PASS;
	tm->trigger = 0;
	tm->teardown_fn = fl_bail;
}

/* ---- devices ----------------------------------------------------------- */

static void fl_init(struct fl_dev *f)
{
	mb_init(&f->d);
	f->efd = -1;
	f->bytes = f->cmds = f->fence = 0;
}

/*
 * Create an mdev of @type, open it through @backend, map FL_BUF of guest
 * buffer (random data area, zero ring and fence area) at MB_IOVA, set bus
 * master and an MSI trigger eventfd.
 */
static void fl_open(struct __test_metadata *_metadata, struct fl_dev *f,
		    const char *type, enum vfio_backend backend, uint64_t seed)
{
	struct mb_dev *d = &f->d;
	int ret;

	mb_create_open(_metadata, d, type, backend);
	ASSERT_LE(MB_MIB, d->mem);
	d->buf = mmap(NULL, FL_BUF, PROT_READ | PROT_WRITE,
		      MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
	ASSERT_NE(MAP_FAILED, d->buf) TH_LOG("mmap: %s", strerror(errno));
	d->rng = seed | 1;
	mb_rand_fill(d, d->buf + FL_DATA_OFF, FL_BUF - FL_DATA_OFF);
	d->mg = malloc(FL_BUF);
	d->md = calloc(1, d->mem);	/* device memory is zero when opened */
	ASSERT_TRUE(d->mg && d->md);
	memcpy(d->mg, d->buf, FL_BUF);
	ASSERT_EQ(0, vfio_mdev_dma_map(&d->v, d->buf, MB_IOVA, FL_BUF))
		TH_LOG("%s", mdev_lib_error());
	d->mapped = true;
	mb_set_command(_metadata, d, PCI_COMMAND_MASTER, 0);
	f->efd = mb_eventfd(_metadata);
	ret = mb_set_trigger(d, VFIO_PCI_MSI_IRQ_INDEX, f->efd);
	ASSERT_EQ(0, ret) TH_LOG("MSI trigger: %s", strerror(-ret));
}

/* Close and remove; no ASSERT (teardown uses it).  0 or -errno. */
static int fl_close(struct fl_dev *f)
{
	struct mb_dev *d = &f->d;
	int ret = 0;

	vfio_mdev_close(&d->v);
	if (f->efd >= 0)
		close(f->efd);
	f->efd = -1;
	if (d->created)
		ret = mdev_remove(d->uuid);
	d->created = false;
	d->mapped = false;
	if (d->buf && d->buf != MAP_FAILED)
		munmap(d->buf, FL_BUF);
	d->buf = NULL;
	free(d->mg);
	free(d->md);
	d->mg = d->md = NULL;
	return ret;
}

/* Guest buffer bytes that differ from the model: none. */
static void fl_check_guest(struct __test_metadata *_metadata, struct fl_dev *f,
			   const char *what)
{
	size_t bad, first = 0;

	bad = mb_guest_diff(_metadata, &f->d, 0, FL_BUF, &first, 8, what);
	ASSERT_EQ(0, bad) TH_LOG("%s: %zu guest bytes differ, first at IOVA %#llx",
				 what, bad, MB_IOVA + first);
}

/* Submit @n descriptors; the model and the expected counters follow. */
static void fl_submit(struct __test_metadata *_metadata, struct fl_dev *f,
		      const struct mblit_desc *x, unsigned int n)
{
	unsigned int i;

	for (i = 0; i < n; i++)
		if (x[i].opcode == MBLIT_OP_FENCE)
			f->fence = x[i].src;
	f->bytes += mb_submit(_metadata, &f->d, x, n);
	f->cmds += n;
}

/*
 * Wait until the engine has run everything up to the tail: woken by the
 * MSI of the FENCE with IRQ that ends every batch, or every 250 ms.  Fails
 * on an engine error, or when the head does not move for FL_STALL_MS (a
 * hang; 256 devices share the two vCPUs of the test VM).
 */
static void fl_wait(struct __test_metadata *_metadata, struct fl_dev *f)
{
	struct mb_dev *d = &f->d;
	uint64_t moved = mb_now_ms();
	uint32_t st, head, last = RD32(MBLIT_REG_RING_HEAD);

	for (;;) {
		head = RD32(MBLIT_REG_RING_HEAD);
		st = RD32(MBLIT_REG_STATUS);
		if (st & MBLIT_STATUS_ERROR) {
			mb_log_state(_metadata, d, "engine error");
			ASSERT_EQ(0, st & MBLIT_STATUS_ERROR);
		}
		if (head == d->tail && !(st & MBLIT_STATUS_BUSY))
			break;
		if (head != last) {
			last = head;
			moved = mb_now_ms();
		}
		if (mb_now_ms() - moved > FL_STALL_MS) {
			mb_log_state(_metadata, d, "no progress");
			ASSERT_EQ(d->tail, head)
				TH_LOG("the engine made no progress for %d ms",
				       FL_STALL_MS);
		}
		mb_efd_wait(_metadata, f->efd, 250);
	}
	ASSERT_EQ(0, st) TH_LOG("STATUS when idle");
}

/* Registers, fence and counters as the model has them; memory byte-exact. */
static void fl_check_all(struct __test_metadata *_metadata, struct fl_dev *f,
			 const char *what)
{
	struct mb_dev *d = &f->d;

	EXPECT_EQ(d->tail, RD32(MBLIT_REG_RING_HEAD)) TH_LOG("%s", what);
	EXPECT_EQ(f->cmds, RD64(MBLIT_REG_CMD_COUNT)) TH_LOG("%s", what);
	EXPECT_EQ(f->bytes, RD64(MBLIT_REG_BYTE_COUNT)) TH_LOG("%s", what);
	EXPECT_EQ(f->fence, RD64(MBLIT_REG_FENCE_LAST)) TH_LOG("%s", what);
	EXPECT_EQ(0, RD32(MBLIT_REG_STATUS)) TH_LOG("%s", what);
	fl_check_guest(_metadata, f, what);
	mb_check_dev(_metadata, d, 0, d->mem, what);
}

/* A debugfs counter of @f. */
static uint64_t fl_dbg(struct __test_metadata *_metadata, struct fl_dev *f,
		       const char *name)
{
	return mb_debugfs(_metadata, &f->d, name);
}

/*
 * A known workload on a fresh ring at the start of the buffer: FILL and
 * COPY through device memory in both directions and a FENCE; byte-exact.
 */
static void fl_known_work(struct __test_metadata *_metadata, struct fl_dev *f,
			  const char *what)
{
	struct mb_dev *d = &f->d;
	struct mblit_desc x[6];

	x[0] = mb_fill(0x100, 5000, 0xa5c3e1f0, DD);
	x[1] = mb_copy(FL_G(FL_DATA_OFF + 0x800), 0x100, 5000, SD);
	x[2] = mb_fill(FL_G(FL_DATA_OFF + 0x4000), 3000, 0x01020304, 0);
	x[3] = mb_copy(d->mem - 0x2000, FL_G(FL_DATA_OFF + 0x4000), 3000, DD);
	x[4] = mb_copy(0x3000, d->mem - 0x2000, 3000, DD | SD);
	x[5] = mb_fence(FL_G(FL_FENCE_OFF + 8), 0xfeedf00d, MBLIT_FLAG_IRQ);
	mb_ring_setup_at(_metadata, d, FL_G(0), d->buf, 16);
	fl_submit(_metadata, f, x, ARRAY_SIZE(x));
	fl_wait(_metadata, f);
	fl_check_all(_metadata, f, what);
}

/*
 * Usable: VFIO_DEVICE_RESET returns it to RUNNING and reset values, it
 * runs the known workload byte-exact and keeps nothing pinned.
 */
static void fl_usable(struct __test_metadata *_metadata, struct fl_dev *f,
		      const char *what)
{
	struct mb_dev *d = &f->d;
	int st;

	ASSERT_EQ(0, ioctl(DFD(f), VFIO_DEVICE_RESET))
		TH_LOG("%s: VFIO_DEVICE_RESET: %s", what, strerror(errno));
	st = mig_get(DFD(f));
	ASSERT_EQ(VFIO_DEVICE_STATE_RUNNING, st)
		TH_LOG("%s: after reset: %s", what, mig_state_name(st));
	mb_expect_reset_regs(_metadata, d, what);
	memset(d->md, 0, d->mem);	/* a reset zeroes device memory */
	d->tail = 0;
	f->bytes = f->cmds = f->fence = 0;
	mb_set_command(_metadata, d, PCI_COMMAND_MASTER, 0);
	fl_known_work(_metadata, f, what);
	EXPECT_EQ(0, fl_dbg(_metadata, f, "pinned_pages")) TH_LOG("%s", what);
}

/* ---- the workload ------------------------------------------------------ */

static bool fl_overlap(uint64_t a, uint64_t b, uint64_t len)
{
	return a < b + len && b < a + len;
}

static uint64_t fl_dev_addr(struct mb_dev *r, uint64_t mem, uint32_t len)
{
	uint64_t off = mb_rand(r) % (FL_DEV_WIN - len + 1);

	return (mb_rand(r) & 1) ? off : mem - FL_DEV_WIN + off;
}

static uint64_t fl_guest_addr(struct mb_dev *r, uint32_t len)
{
	return FL_G(FL_DATA_OFF + mb_rand(r) % (FL_BUF - FL_DATA_OFF - len + 1));
}

/*
 * @n descriptors from @r's generator: FILL and COPY in every direction,
 * a FENCE every 8th and a FENCE with IRQ last (values from @fence up).
 */
static void fl_make(struct mb_dev *r, uint64_t mem, struct mblit_desc *x,
		    unsigned int n, uint64_t fence)
{
	unsigned int i;

	for (i = 0; i < n; i++) {
		uint32_t len = mb_rand_range(r, 1, FL_XFER_MAX);
		uint64_t s, t;

		if (i == n - 1 || i % 8 == 7) {
			x[i] = mb_fence(FL_G(FL_FENCE_OFF + 8 * (i % 64)),
					fence + i,
					i == n - 1 ? MBLIT_FLAG_IRQ : 0);
			continue;
		}
		switch (mb_rand(r) % 6) {
		case 0:
			x[i] = mb_fill(fl_dev_addr(r, mem, len), len,
				       (uint32_t)mb_rand(r), DD);
			break;
		case 1:
			x[i] = mb_fill(fl_guest_addr(r, len), len,
				       (uint32_t)mb_rand(r), 0);
			break;
		case 2:
			x[i] = mb_copy(fl_dev_addr(r, mem, len),
				       fl_guest_addr(r, len), len, DD);
			break;
		case 3:
			x[i] = mb_copy(fl_guest_addr(r, len),
				       fl_dev_addr(r, mem, len), len, SD);
			break;
		case 4:
			do {
				s = fl_dev_addr(r, mem, len);
				t = fl_dev_addr(r, mem, len);
			} while (fl_overlap(s, t, len));
			x[i] = mb_copy(t, s, len, DD | SD);
			break;
		default:
			do {
				s = fl_guest_addr(r, len);
				t = fl_guest_addr(r, len);
			} while (fl_overlap(s, t, len));
			x[i] = mb_copy(t, s, len, 0);
		}
	}
}

/* Mark the device pages @x[0..n) write in @pages; how many were new. */
static unsigned int fl_mark(const struct mblit_desc *x, unsigned int n,
			    uint8_t *pages)
{
	unsigned int i, added = 0;
	uint64_t p;

	for (i = 0; i < n; i++) {
		if (x[i].opcode == MBLIT_OP_FENCE || !(x[i].flags & DD))
			continue;
		for (p = x[i].dst / MB_PAGE;
		     p <= (x[i].dst + x[i].len - 1) / MB_PAGE; p++)
			if (!pages[p]++)
				added++;
	}
	return added;
}

/* ---- streams ----------------------------------------------------------- */

/*
 * Move the stream from the source's @p->sfd into the destination's
 * @p->rfd, a chunk at a time as it is read, until pre-copy's temporary
 * end (@eof false: read fails with ENOMSG) or the end of the stream (@eof:
 * read returns 0).  With @keep, what was moved is appended to it too.
 */
static uint64_t fl_pump(struct __test_metadata *_metadata, struct fl_pair *p,
			bool eof, struct mig_buf *keep)
{
	uint64_t moved = 0;
	size_t done;
	ssize_t n;
	int ret;

	for (;;) {
		n = read(p->sfd, p->chunk, p->chunk_len);
		if (n < 0) {
			ASSERT_FALSE(eof) TH_LOG("STOP_COPY read: %s",
						 strerror(errno));
			ASSERT_EQ(ENOMSG, errno) TH_LOG("PRE_COPY read: %s",
							strerror(errno));
			break;
		}
		if (!n) {
			ASSERT_TRUE(eof) TH_LOG("end of stream in PRE_COPY");
			break;
		}
		ASSERT_GE((ssize_t)p->chunk_len, n);
		if (keep)
			ASSERT_EQ(0, mig_buf_append(keep, p->chunk, n));
		ret = mig_write_stream(p->rfd, p->chunk, n, NULL, &done);
		ASSERT_EQ(0, ret) TH_LOG("destination write at %llu + %zu: %s",
					 (unsigned long long)(p->pre_bytes + moved),
					 done, strerror(-ret));
		moved += n;
		ASSERT_GE(FL_STREAM_MAX, moved) TH_LOG("a stream without end");
	}
	return moved;
}

/*
 * @s..+len is a stop-copy stream: pages records of @d's type carrying
 * @pages pages in all, then one device record, last.
 */
static void fl_walk_stop_copy(struct __test_metadata *_metadata,
			      struct mb_dev *d, const uint8_t *s, size_t len,
			      uint64_t pages)
{
	uint64_t off = 0, rl, seen = 0;
	unsigned int ndev = 0;

	while (off < len) {
		const uint8_t *h = s + off;

		ASSERT_LE(off + 32, len) TH_LOG("a partial header at %llu",
						(unsigned long long)off);
		rl = mig_le64(h + 24);
		ASSERT_LE(off + rl, len);
		EXPECT_EQ(1, mig_le32(h + 4));
		EXPECT_EQ(d->mem / MB_MIB, mig_le32(h + 8));
		EXPECT_EQ(d->mem, mig_le64(h + 16));
		if (mig_le32(h) == MIG_MBLIT_MAGIC_DEV) {
			ndev++;
			EXPECT_EQ(MIG_MBLIT_DEV_REC, rl);
			EXPECT_EQ(off + rl, len) TH_LOG("device record not last");
		} else {
			ASSERT_EQ(MIG_MBLIT_MAGIC_PAGES, mig_le32(h));
			ASSERT_EQ(mig_mblit_chunk_len(mig_le32(h + 12)), rl);
			seen += mig_le32(h + 12);
		}
		off += rl;
	}
	EXPECT_EQ(1, ndev);
	EXPECT_EQ(pages, seen) TH_LOG("pages in the stop-copy stream");
}

/* SET @state: it must succeed; the data_fd it returns, if @fd. */
static void fl_set(struct __test_metadata *_metadata, struct fl_dev *f,
		   uint32_t state, int *fd, bool want_fd)
{
	int g = -1, ret = mig_set(DFD(f), state, &g);

	ASSERT_EQ(0, ret) TH_LOG("SET %s: %s", mig_state_name(state),
				 strerror(-ret));
	ASSERT_EQ((int)state, mig_get(DFD(f)));
	ASSERT_EQ(want_fd, g >= 0) TH_LOG("SET %s: data_fd %d",
					  mig_state_name(state), g);
	if (fd)
		*fd = g;
	else if (g >= 0)
		close(g);
}

/* ---- one pair: the migration ----------------------------------------- */

static void fl_migrate(struct __test_metadata *_metadata, struct fl_pair *p)
{
	struct fl_dev *src = &p->src, *dst = &p->dst;
	struct mb_dev *d = &src->d;
	struct mblit_desc x[FL_N1 + FL_N2 + FL_N3], y[FL_N4];
	uint64_t i0 = 0, d0 = 0, est = 0, t0, scr[4], expect;
	unsigned int k, n_pre, n_sc;
	uint8_t *pages, *dirty;
	uint16_t msi_data;
	uint8_t line;

	pages = calloc(d->mem / MB_PAGE, 1);
	dirty = calloc(d->mem / MB_PAGE, 1);
	ASSERT_TRUE(pages && dirty);
	fl_make(d, d->mem, x, FL_N1, 0x100000ULL * (p->idx + 1));
	fl_make(d, d->mem, x + FL_N1, FL_N2, 0x100000ULL * (p->idx + 1) + 0x100);
	fl_make(d, d->mem, x + FL_N1 + FL_N2, FL_N3,
		0x100000ULL * (p->idx + 1) + 0x200);

	/* The destination waits in RESUMING (RUNNING -> ... -> RESUMING). */
	fl_set(_metadata, dst, VFIO_DEVICE_STATE_RESUMING, &p->rfd, true);

	/* Source: state that migrates besides the work. */
	for (k = 0; k < 4; k++) {
		scr[k] = 0x5c00000000000000ULL | (uint64_t)p->idx << 8 | k;
		mb_wr(_metadata, d, MBLIT_REG_SCRATCH0 + 8 * k, 8, scr[k]);
	}
	WR32(MBLIT_REG_INT_MASK, MBLIT_INT_ERROR);
	line = p->idx;
	MB_ACC_OK(d, &d->cfg, true, PCI_INTERRUPT_LINE, &line, 1);
	msi_data = 0x4000 + p->idx;
	MB_ACC_OK(d, &d->cfg, true, MBLIT_MSI_CAP_OFFSET + 0xc, &msi_data, 2);

	/* Work, then PRE_COPY: the initial pass is every page written. */
	mb_ring_setup_at(_metadata, d, FL_G(0), d->buf, FL_RING_N);
	fl_submit(_metadata, src, x, FL_N1);
	fl_mark(x, FL_N1, pages);
	fl_wait(_metadata, src);
	n_pre = fl_mark(x, FL_N1, dirty);
	fl_set(_metadata, src, VFIO_DEVICE_STATE_PRE_COPY, &p->sfd, true);
	ASSERT_EQ(0, mig_precopy_info(p->sfd, &i0, &d0));
	EXPECT_EQ(mig_mblit_stream_len(n_pre), i0)
		TH_LOG("initial_bytes for %u written pages", n_pre);
	EXPECT_EQ(0, d0);
	p->pre_bytes = fl_pump(_metadata, p, false, NULL);
	EXPECT_EQ(mig_mblit_stream_len(n_pre), p->pre_bytes);

	/* More work in PRE_COPY: a dirty pass of exactly what it wrote. */
	memset(dirty, 0, d->mem / MB_PAGE);
	fl_submit(_metadata, src, x + FL_N1, FL_N2);
	fl_mark(x + FL_N1, FL_N2, pages);
	fl_wait(_metadata, src);
	n_pre = fl_mark(x + FL_N1, FL_N2, dirty);
	ASSERT_EQ(0, mig_precopy_info(p->sfd, &i0, &d0));
	EXPECT_EQ(0, i0);
	EXPECT_EQ(mig_mblit_stream_len(n_pre), d0)
		TH_LOG("dirty_bytes for %u dirtied pages", n_pre);
	expect = fl_pump(_metadata, p, false, NULL);
	EXPECT_EQ(d0, expect);
	p->pre_bytes += expect;
	ASSERT_EQ(0, mig_precopy_info(p->sfd, &i0, &d0));
	EXPECT_EQ(0, i0);
	EXPECT_EQ(0, d0);
	ASSERT_EQ(0, mig_data_size(DFD(src), &est));
	EXPECT_EQ(MIG_MBLIT_DEV_REC, est) TH_LOG("MIG_DATA_SIZE, nothing dirty");

	/* Work in flight, and the stop: the downtime starts. */
	memset(dirty, 0, d->mem / MB_PAGE);
	fl_submit(_metadata, src, x + FL_N1 + FL_N2, FL_N3);
	t0 = mb_now_ms();
	fl_set(_metadata, src, VFIO_DEVICE_STATE_STOP_COPY, NULL, false);
	p->head_stop = RD32(MBLIT_REG_RING_HEAD);
	ASSERT_LE(FL_N1 + FL_N2, p->head_stop);
	ASSERT_GE(d->tail, p->head_stop);
	n_sc = fl_mark(x + FL_N1 + FL_N2, p->head_stop - FL_N1 - FL_N2, dirty);
	expect = mig_mblit_stream_len(n_sc) + MIG_MBLIT_DEV_REC;
	ASSERT_EQ(0, mig_data_size(DFD(src), &est));
	EXPECT_EQ(expect, est) TH_LOG("MIG_DATA_SIZE in STOP_COPY");
	p->sc_bytes = fl_pump(_metadata, p, true, &p->sc);
	ASSERT_EQ(0, mig_data_size(DFD(src), &est));
	EXPECT_EQ(0, est) TH_LOG("MIG_DATA_SIZE at the end of the stream");
	/* The destination applies the stream; the VMM copies guest RAM. */
	fl_set(_metadata, dst, VFIO_DEVICE_STATE_STOP, NULL, false);
	memcpy(dst->d.buf, src->d.buf, FL_BUF);
	memcpy(dst->d.mg, src->d.mg, FL_BUF);
	memcpy(dst->d.md, src->d.md, dst->d.mem);
	dst->d.ring_iova = src->d.ring_iova;
	dst->d.ring_va = dst->d.buf + (src->d.ring_va - src->d.buf);
	dst->d.ring_size = src->d.ring_size;
	dst->d.tail = src->d.tail;
	dst->bytes = src->bytes;
	dst->cmds = src->cmds;
	dst->fence = src->fence;
	fl_set(_metadata, dst, VFIO_DEVICE_STATE_RUNNING, NULL, false);
	p->stop_copy_ms = mb_now_ms() - t0;

	/* The source is done: STOP, its stream ended. */
	fl_set(_metadata, src, VFIO_DEVICE_STATE_STOP, NULL, false);
	EXPECT_EQ(-1, read(p->sfd, p->chunk, 64));
	EXPECT_EQ(ENODEV, errno) TH_LOG("the source's data_fd after STOP");
	close(p->sfd);
	p->sfd = -1;
	close(p->rfd);
	p->rfd = -1;
	EXPECT_EQ(expect, p->sc_bytes)
		TH_LOG("stop-copy stream for %u pages dirtied by %u commands",
		       n_sc, p->head_stop - FL_N1 - FL_N2);
	fl_walk_stop_copy(_metadata, d, p->sc.p, p->sc.len, n_sc);
	EXPECT_EQ(p->head_stop, RD32(MBLIT_REG_RING_HEAD))
		TH_LOG("the stopped source ran commands");

	/* The destination finishes the work, exactly. */
	d = &dst->d;
	fl_wait(_metadata, dst);
	fl_check_all(_metadata, dst, "destination after the migration");
	for (k = 0; k < 4; k++)
		EXPECT_EQ(scr[k], mb_rd(_metadata, d, MBLIT_REG_SCRATCH0 + 8 * k, 8))
			TH_LOG("SCRATCH%u", k);
	EXPECT_EQ(MBLIT_INT_ERROR, RD32(MBLIT_REG_INT_MASK));
	EXPECT_EQ(MBLIT_INT_FENCE, RD32(MBLIT_REG_INT_STATUS));
	EXPECT_EQ(MBLIT_CTRL_ENABLE, RD32(MBLIT_REG_CTRL));
	line = 0;
	MB_ACC_OK(d, &d->cfg, false, PCI_INTERRUPT_LINE, &line, 1);
	EXPECT_EQ((uint8_t)p->idx, line) TH_LOG("config: interrupt line");
	msi_data = 0;
	MB_ACC_OK(d, &d->cfg, false, MBLIT_MSI_CAP_OFFSET + 0xc, &msi_data, 2);
	EXPECT_EQ(0x4000 + p->idx, msi_data) TH_LOG("config: MSI data");
	EXPECT_TRUE(mb_cfg_rd16(_metadata, d, PCI_COMMAND) & PCI_COMMAND_MASTER);
	/* debugfs counts what this mdev ran, the source what it did. */
	EXPECT_EQ(dst->cmds - p->head_stop, fl_dbg(_metadata, dst, "commands"));
	EXPECT_EQ(p->head_stop, fl_dbg(_metadata, src, "commands"));
	EXPECT_EQ(0, fl_dbg(_metadata, dst, "errors"));

	/* And it runs more. */
	fl_make(d, d->mem, y, FL_N4, 0x100000ULL * (p->idx + 1) + 0x300);
	fl_submit(_metadata, dst, y, FL_N4);
	fl_wait(_metadata, dst);
	fl_check_all(_metadata, dst, "destination, more work");
	free(pages);
	free(dirty);
}

static void *fl_migrate_thread(void *arg)
{
	struct fl_pair *p = arg;
	jmp_buf env;

	fl_bail_env = &env;
	if (!setjmp(env))
		fl_migrate(&p->md, p);
	if (p->sfd >= 0)
		close(p->sfd);
	if (p->rfd >= 0)
		close(p->rfd);
	p->sfd = p->rfd = -1;
	return NULL;
}

/* After all the migrations: both sides usable, nothing pinned. */
static void fl_afterwards(struct __test_metadata *_metadata, struct fl_pair *p)
{
	EXPECT_EQ(0, fl_dbg(_metadata, &p->src, "pinned_pages"));
	EXPECT_EQ(0, fl_dbg(_metadata, &p->dst, "pinned_pages"));
	/*
	 * The source's guest memory stayed as it was at the stop (its model
	 * went on with the destination): the model restarts from it.
	 */
	memcpy(p->src.d.mg, p->src.d.buf, FL_BUF);
	fl_usable(_metadata, &p->src, "source, reset");
	fl_usable(_metadata, &p->dst, "destination, reset");
}

static void *fl_afterwards_thread(void *arg)
{
	struct fl_pair *p = arg;
	jmp_buf env;

	fl_bail_env = &env;
	if (!setjmp(env))
		fl_afterwards(&p->md, p);
	return NULL;
}

/* ---- the fixture ------------------------------------------------------- */

#define FL_NDEV		5
#define FL_NFD		4
#define FL_NBUF		4

FIXTURE(fleet) {
	struct fl_pair *pairs;
	unsigned int npairs;
	struct fl_dev dev[FL_NDEV];
	struct vfio_region_info sr[FL_NDEV];
	int fds[FL_NFD];
	struct mig_buf b[FL_NBUF];
};

FIXTURE_SETUP(fleet)
{
	unsigned int i;

	self->pairs = NULL;
	self->npairs = 0;
	for (i = 0; i < FL_NDEV; i++)
		fl_init(&self->dev[i]);
	for (i = 0; i < FL_NFD; i++)
		self->fds[i] = -1;
	memset(self->b, 0, sizeof(self->b));
	ASSERT_TRUE(module_loaded("mblit")) TH_LOG("mblit is not loaded");
}

FIXTURE_TEARDOWN(fleet)
{
	unsigned int i;

	for (i = 0; i < FL_NFD; i++)
		if (self->fds[i] >= 0)
			close(self->fds[i]);
	for (i = 0; i < self->npairs; i++) {
		struct fl_pair *p = &self->pairs[i];

		if (p->sfd >= 0)
			close(p->sfd);
		if (p->rfd >= 0)
			close(p->rfd);
		if (fl_close(&p->src) || fl_close(&p->dst))
			TH_LOG("cleanup of pair %u: %s", i, mdev_lib_error());
		free(p->chunk);
		mig_buf_free(&p->sc);
	}
	free(self->pairs);
	self->pairs = NULL;
	self->npairs = 0;
	for (i = 0; i < FL_NDEV; i++)
		if (fl_close(&self->dev[i]))
			TH_LOG("cleanup: %s", mdev_lib_error());
	for (i = 0; i < FL_NBUF; i++)
		mig_buf_free(&self->b[i]);
}

/* ---- fleet.concurrent_v2_migrations ------------------------------------ */

/* Pairs to migrate: all the budget gives, capped (MBLIT_FLEET_PAIRS). */
static unsigned int fl_pairs_wanted(unsigned int budget_pairs)
{
	const char *env = getenv("MBLIT_FLEET_PAIRS");
	unsigned long v;
	char *end;

	if (env && !strcmp(env, "all"))
		return budget_pairs;
	if (env && *env) {
		v = strtoul(env, &end, 10);
		if (!*end && v >= FL_MIN_PAIRS)
			return v < budget_pairs ? v : budget_pairs;
	}
	return budget_pairs < FL_PAIRS_DEFAULT ? budget_pairs : FL_PAIRS_DEFAULT;
}

/* Enough file descriptors for @need. */
static void fl_nofile(struct __test_metadata *_metadata, rlim_t need)
{
	struct rlimit r;

	ASSERT_EQ(0, getrlimit(RLIMIT_NOFILE, &r));
	if (r.rlim_cur >= need)
		return;
	if (r.rlim_max < need)
		r.rlim_max = need;
	r.rlim_cur = r.rlim_max;
	ASSERT_EQ(0, setrlimit(RLIMIT_NOFILE, &r))
		TH_LOG("RLIMIT_NOFILE %llu: %s", (unsigned long long)need,
		       strerror(errno));
}

static int fl_cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/* Start @fn on every pair, each in its own thread, and wait for all. */
static void fl_run_threads(struct __test_metadata *_metadata,
			   struct fl_pair *pairs, unsigned int npairs,
			   void *(*fn)(void *), const char *phase)
{
	pthread_attr_t attr;
	unsigned int i, failed = 0;
	int ret = 0;

	pthread_attr_init(&attr);
	pthread_attr_setstacksize(&attr, FL_THREAD_STACK);
	for (i = 0; i < npairs; i++) {
		struct fl_pair *p = &pairs[i];

		fl_thread_metadata(&p->md, _metadata);
		p->started = false;
		if (ret)
			continue;
		ret = pthread_create(&p->th, &attr, fn, p);
		p->started = !ret;
	}
	pthread_attr_destroy(&attr);
	for (i = 0; i < npairs; i++) {
		struct fl_pair *p = &pairs[i];

		if (!p->started)
			continue;
		pthread_join(p->th, NULL);
		if (p->md.exit_code == KSFT_FAIL && failed++ < 8)
			TH_LOG("%s: pair %u (%s -> %s) failed", phase, i,
			       p->src.d.uuid, p->dst.d.uuid);
	}
	ASSERT_EQ(0, ret) TH_LOG("%s: pthread_create: %s", phase, strerror(ret));
	ASSERT_EQ(0, failed) TH_LOG("%s: %u of %u pairs failed", phase, failed,
				    npairs);
}

TEST_F_TIMEOUT(fleet, concurrent_v2_migrations, 1800)
{
	static const enum vfio_backend be[2] = {
		VFIO_BACKEND_TYPE1, VFIO_BACKEND_IOMMUFD,
	};
	uint64_t mem0, mem, end, t0, t_open, t_conc, *sc_ms;
	uint64_t pre_sum = 0, sc_sum = 0, worst = 0;
	unsigned int i, n, worst_pair = 0;
	int avail0, avail;

	mem0 = mb_mem_available();
	avail0 = mdev_type_available(FL_TYPE);
	ASSERT_LE(2 * FL_MIN_PAIRS, avail0)
		TH_LOG("%s available_instances %d: fewer than %d mdevs",
		       FL_TYPE, avail0, 2 * FL_MIN_PAIRS);
	n = fl_pairs_wanted(avail0 / 2);
	ksft_print_msg("fleet: %s available_instances %d (%d pairs); migrating %u pairs (cap %d, MBLIT_FLEET_PAIRS=all for the whole budget); MemAvailable %llu MiB\n",
		       FL_TYPE, avail0, avail0 / 2, n, FL_PAIRS_DEFAULT,
		       (unsigned long long)(mem0 / MB_MIB));
	/* Per device: container/iommufd, group, device, eventfd; data fds. */
	fl_nofile(_metadata, 64 + (rlim_t)n * 10);

	self->pairs = calloc(n, sizeof(*self->pairs));
	sc_ms = calloc(n, sizeof(*sc_ms));
	ASSERT_TRUE(self->pairs && sc_ms);
	t0 = mb_now_ms();
	for (i = 0; i < n; i++) {
		struct fl_pair *p = &self->pairs[i];

		p->idx = i;
		p->sfd = p->rfd = -1;
		fl_init(&p->src);
		fl_init(&p->dst);
		self->npairs = i + 1;
		/* All four back-end combinations. */
		fl_open(_metadata, &p->src, FL_TYPE, be[i % 2],
			0x9e3779b97f4a7c15ULL * (i + 1));
		fl_open(_metadata, &p->dst, FL_TYPE, be[(i / 2) % 2],
			0xc2b2ae3d27d4eb4fULL * (i + 1));
		p->chunk_len = 4099 + (i * 7919) % 60000;
		p->chunk = malloc(p->chunk_len);
		ASSERT_NE(NULL, p->chunk);
	}
	t_open = mb_now_ms() - t0;
	avail = mdev_type_available(FL_TYPE);
	EXPECT_EQ(avail0 - 2 * (int)n, avail)
		TH_LOG("available_instances with %u mdevs", 2 * n);
	ksft_print_msg("fleet: %u mdevs created and opened in %llu ms\n", 2 * n,
		       (unsigned long long)t_open);

	/* The concurrent phase: every pair migrates at once. */
	t0 = mb_now_ms();
	fl_run_threads(_metadata, self->pairs, n, fl_migrate_thread,
		       "migration");
	t_conc = mb_now_ms() - t0;
	for (i = 0; i < n; i++) {
		struct fl_pair *p = &self->pairs[i];

		sc_ms[i] = p->stop_copy_ms;
		pre_sum += p->pre_bytes;
		sc_sum += p->sc_bytes;
		if (p->stop_copy_ms > worst) {
			worst = p->stop_copy_ms;
			worst_pair = i;
		}
	}
	qsort(sc_ms, n, sizeof(*sc_ms), fl_cmp_u64);
	ksft_print_msg("fleet: %u pairs migrated concurrently (one thread each) in %llu ms wall time\n",
		       n, (unsigned long long)t_conc);
	ksft_print_msg("fleet: stop-copy (STOP_COPY to destination RUNNING): longest %llu ms (pair %u, %llu bytes), median %llu ms\n",
		       (unsigned long long)worst, worst_pair,
		       (unsigned long long)self->pairs[worst_pair].sc_bytes,
		       (unsigned long long)sc_ms[n / 2]);
	ksft_print_msg("fleet: streams: %llu bytes pre-copy, %llu bytes stop-copy in all\n",
		       (unsigned long long)pre_sum,
		       (unsigned long long)sc_sum);
	free(sc_ms);

	/* Afterwards: each side, reset, runs a known workload. */
	t0 = mb_now_ms();
	fl_run_threads(_metadata, self->pairs, n, fl_afterwards_thread,
		       "afterwards");
	ksft_print_msg("fleet: %u mdevs reset and checked in %llu ms\n", 2 * n,
		       (unsigned long long)(mb_now_ms() - t0));

	/* Everything goes, and so do its budget and memory. */
	for (i = 0; i < n; i++) {
		struct fl_pair *p = &self->pairs[i];
		char path[MDEV_PATH_MAX];
		struct fl_dev *f[2] = { &p->src, &p->dst };
		unsigned int s;

		for (s = 0; s < 2; s++) {
			char uuid[MDEV_UUID_LEN + 1];

			memcpy(uuid, f[s]->d.uuid, sizeof(uuid));
			vfio_mdev_close(&f[s]->d.v);
			EXPECT_EQ(0, fl_dbg(_metadata, f[s], "pinned_pages"))
				TH_LOG("pair %u %s, closed", i, s ? "dst" : "src");
			EXPECT_EQ(0, fl_close(f[s])) TH_LOG("%s", mdev_lib_error());
			snprintf(path, sizeof(path), MB_DEBUGFS "/%s", uuid);
			EXPECT_FALSE(mdev_exists(uuid));
			EXPECT_FALSE(path_exists(path));
		}
		free(p->chunk);
		p->chunk = NULL;
		mig_buf_free(&p->sc);
	}
	free(self->pairs);
	self->pairs = NULL;
	self->npairs = 0;
	EXPECT_EQ(avail0, mdev_type_available(FL_TYPE))
		TH_LOG("available_instances after removing all");
	malloc_trim(0);
	end = mb_now_ms() + FL_MEM_WAIT_MS;
	while ((mem = mb_mem_available()) + FL_MEM_SLACK < mem0 &&
	       mb_now_ms() < end)
		mb_sleep_ms(200);
	ksft_print_msg("fleet: MemAvailable %llu MiB before, %llu MiB after removing all (bound: at most %llu MiB less)\n",
		       (unsigned long long)(mem0 / MB_MIB),
		       (unsigned long long)(mem / MB_MIB),
		       (unsigned long long)(FL_MEM_SLACK / MB_MIB));
	EXPECT_LE(mem0, mem + FL_MEM_SLACK)
		TH_LOG("%llu MiB less available than before the test",
		       (unsigned long long)((mem0 - mem) / MB_MIB));
}

/* ---- helpers of the mismatch tests ------------------------------------ */

/* Run @n commands of @f's generator (a ring at the buffer's start). */
static void fl_work(struct __test_metadata *_metadata, struct fl_dev *f,
		    unsigned int n, uint64_t fence, uint64_t scratch)
{
	struct mb_dev *d = &f->d;
	struct mblit_desc x[64];

	ASSERT_GE(ARRAY_SIZE(x), n);
	if (!d->ring_size)
		mb_ring_setup_at(_metadata, d, FL_G(0), d->buf, FL_RING_N);
	fl_make(d, d->mem, x, n, fence);
	fl_submit(_metadata, f, x, n);
	fl_wait(_metadata, f);
	WR64(MBLIT_REG_SCRATCH0, scratch);
	WR64(MBLIT_REG_SCRATCH3, ~scratch);
}

/* @n more commands on @f's ring, byte-exact. */
static void fl_more(struct __test_metadata *_metadata, struct fl_dev *f,
		    unsigned int n, uint64_t fence, const char *what)
{
	struct mblit_desc x[16];

	ASSERT_GE(ARRAY_SIZE(x), n);
	fl_make(&f->d, f->d.mem, x, n, fence);
	fl_submit(_metadata, f, x, n);
	fl_wait(_metadata, f);
	fl_check_all(_metadata, f, what);
}

/*
 * @dst takes over @src's guest memory (as the VMM copies it), ring and
 * model: what a destination of @src's state must then show and run.
 */
static void fl_adopt(struct __test_metadata *_metadata, struct fl_dev *dst,
		     const struct fl_dev *src)
{
	ASSERT_EQ(src->d.mem, dst->d.mem);
	memcpy(dst->d.buf, src->d.buf, FL_BUF);
	memcpy(dst->d.mg, src->d.mg, FL_BUF);
	memcpy(dst->d.md, src->d.md, dst->d.mem);
	dst->d.ring_iova = src->d.ring_iova;
	dst->d.ring_va = dst->d.buf + (src->d.ring_va - src->d.buf);
	dst->d.ring_size = src->d.ring_size;
	dst->d.tail = src->d.tail;
	dst->bytes = src->bytes;
	dst->cmds = src->cmds;
	dst->fence = src->fence;
}

/* A whole v2 stream of @f (RUNNING -> STOP_COPY, to its end -> RUNNING). */
static void fl_save_v2(struct __test_metadata *_metadata, struct fl_dev *f,
		       struct mig_buf *b, int *fd)
{
	unsigned int k = 5;
	size_t got;
	int ret;

	fl_set(_metadata, f, VFIO_DEVICE_STATE_STOP_COPY, fd, true);
	ret = mig_read_stream(*fd, b, &k, FL_STREAM_MAX, &got);
	ASSERT_EQ(0, ret) TH_LOG("reading to the end: %s", strerror(-ret));
	close(*fd);
	*fd = -1;
	fl_set(_metadata, f, VFIO_DEVICE_STATE_RUNNING, NULL, false);
}

/* What a device shows: registers, config space, all of device memory. */
struct fl_live {
	uint64_t regs[FL_NREGS];
	uint8_t cfg[MBLIT_CONFIG_SIZE];
	uint8_t *m;
};

static void fl_live_take(struct __test_metadata *_metadata, struct fl_dev *f,
			 struct fl_live *l)
{
	struct mb_dev *d = &f->d;
	uint64_t off;
	unsigned int i;

	for (i = 0; i < FL_NREGS; i++)
		l->regs[i] = mb_rd(_metadata, d, mb_regs[i].off, mb_regs[i].w);
	MB_ACC_OK(d, &d->cfg, false, 0, l->cfg, MBLIT_CONFIG_SIZE);
	l->m = malloc(d->mem);
	ASSERT_NE(NULL, l->m);
	for (off = 0; off < d->mem; off += MB_MIB)
		mb_bar2_rd(_metadata, d, off, l->m + off, MB_MIB);
}

static void fl_live_compare(struct __test_metadata *_metadata,
			    struct fl_dev *f, const struct fl_live *l,
			    const char *what)
{
	struct fl_live now;
	unsigned int i;

	fl_live_take(_metadata, f, &now);
	for (i = 0; i < FL_NREGS; i++) {
		const char *n = mb_regs[i].name ? mb_regs[i].name : "?";

		EXPECT_EQ(l->regs[i], now.regs[i])
			TH_LOG("%s: %s changed", what, n);
	}
	EXPECT_EQ(0, memcmp(l->cfg, now.cfg, sizeof(now.cfg)))
		TH_LOG("%s: config space changed", what);
	EXPECT_EQ(0, memcmp(l->m, now.m, f->d.mem))
		TH_LOG("%s: device memory changed", what);
	free(now.m);
}

/* Write @b into the state area, in chunks of 4097 bytes. */
static void fl_state_write(struct __test_metadata *_metadata, struct fl_dev *f,
			   const struct vfio_region_info *sr, const uint8_t *b,
			   size_t len)
{
	size_t off, n;

	ASSERT_GE(sr->size - MBLIT_STATE_AREA_OFFSET, len);
	for (off = 0; off < len; off += n) {
		n = len - off < 4097 ? len - off : 4097;
		MB_ACC_OK(&f->d, sr, true, MBLIT_STATE_AREA_OFFSET + off,
			  (void *)(b + off), n);
	}
}

/* The state of @f through the region (stopped and resumed). */
static uint8_t *fl_save_region(struct __test_metadata *_metadata,
			       struct fl_dev *f,
			       const struct vfio_region_info *sr, size_t *len)
{
	uint8_t *b;

	ASSERT_EQ(0, mb_runctl_set(&f->d, sr, MBLIT_RUNCTL_STOPPED));
	b = mb_state_read(_metadata, &f->d, sr, len);
	ASSERT_EQ(0, mb_runctl_set(&f->d, sr, MBLIT_RUNCTL_RUNNING));
	return b;
}

/* ---- fleet.v2_stream_into_other_type_is_refused ------------------------ */

/*
 * @bad (another type's stream) into @dst in RESUMING, then @good (a stream
 * of @gsrc, @dst's type) once @dst is usable again.
 */
static void fl_v2_wrong_type(struct __test_metadata *_metadata, int *fd,
			     struct fl_dev *dst, const struct mig_buf *bad,
			     const struct mig_buf *good, struct fl_dev *gsrc,
			     const char *what)
{
	struct mb_dev *d = &dst->d;
	uint64_t first = mig_le64(bad->p + 24), v = 1;
	unsigned int kw = 3;
	size_t off, n, refused_at = 0;
	ssize_t w;
	int err = 0, ret, st;

	/* The destination has state of its own. */
	fl_work(_metadata, dst, 16, 0xd000, 0xd57);
	fl_set(_metadata, dst, VFIO_DEVICE_STATE_RESUMING, fd, true);

	/* The header alone, then the rest of the first record, then more. */
	ASSERT_LT(32, first);
	ASSERT_GE(bad->len, first);
	for (off = 0; off < bad->len && !err; off += n) {
		n = off < 32 ? 32 : off < first ? first - off : bad->len - off;
		errno = 0;
		w = write(*fd, bad->p + off, n);
		if (w < 0) {
			err = errno;
			refused_at = off;
			break;
		}
		ASSERT_EQ((ssize_t)n, w);
	}
	TH_LOG("%s: %s at byte %zu of %zu (first record: %llu bytes)", what,
	       err ? strerror(err) : "all accepted", refused_at, bad->len,
	       (unsigned long long)first);
	ASSERT_EQ(EINVAL, err) TH_LOG("%s: the stream was taken", what);
	/* At the latest, the write completing the first record fails. */
	EXPECT_GT(first, refused_at) TH_LOG("%s", what);
	/* Poisoned: a header of the right type is refused too. */
	errno = 0;
	EXPECT_EQ(-1, write(*fd, good->p, 32));
	EXPECT_EQ(EINVAL, errno) TH_LOG("%s: after the refusal", what);

	ret = mig_set(DFD(dst), VFIO_DEVICE_STATE_STOP, NULL);
	EXPECT_EQ(-EINVAL, ret) TH_LOG("%s: RESUMING -> STOP: %s", what,
				       strerror(-ret));
	st = mig_get(DFD(dst));
	EXPECT_EQ(VFIO_DEVICE_STATE_ERROR, st) TH_LOG("%s: %s", what,
						      mig_state_name(st));
	/* ERROR: as after a reset, nothing of either state; no writes. */
	mb_expect_reset_regs(_metadata, d, what);
	memset(d->md, 0, d->mem);
	mb_check_dev(_metadata, d, 0, d->mem, what);
	EXPECT_EQ(-EBUSY, mb_acc(d, &d->bar0, true, MBLIT_REG_SCRATCH1, &v, 8));
	EXPECT_EQ(-EINVAL, mig_set(DFD(dst), VFIO_DEVICE_STATE_RUNNING, NULL));

	/* VFIO_DEVICE_RESET: RUNNING, and the old data_fd is dead. */
	ASSERT_EQ(0, ioctl(DFD(dst), VFIO_DEVICE_RESET));
	ASSERT_EQ(VFIO_DEVICE_STATE_RUNNING, mig_get(DFD(dst)));
	errno = 0;
	EXPECT_EQ(-1, write(*fd, good->p, 32));
	EXPECT_EQ(ENODEV, errno) TH_LOG("%s: data_fd after the reset", what);
	close(*fd);
	*fd = -1;
	fl_usable(_metadata, dst, what);

	/* A stream of its own type goes in, and the device runs it on. */
	fl_set(_metadata, dst, VFIO_DEVICE_STATE_RESUMING, fd, true);
	ret = mig_write_stream(*fd, good->p, good->len, &kw, &off);
	ASSERT_EQ(0, ret) TH_LOG("%s: the good stream, at %zu: %s", what, off,
				 strerror(-ret));
	fl_set(_metadata, dst, VFIO_DEVICE_STATE_STOP, NULL, false);
	close(*fd);
	*fd = -1;
	fl_adopt(_metadata, dst, gsrc);
	fl_set(_metadata, dst, VFIO_DEVICE_STATE_RUNNING, NULL, false);
	fl_check_all(_metadata, dst, "the good stream after a refused one");
	EXPECT_EQ(mb_rd(_metadata, &gsrc->d, MBLIT_REG_SCRATCH0, 8),
		  RD64(MBLIT_REG_SCRATCH0));
	fl_more(_metadata, dst, 8, 0xe000, "the good stream, more work");
}

TEST_F_TIMEOUT(fleet, v2_stream_into_other_type_is_refused, 600)
{
	struct fl_dev *s16 = &self->dev[0], *s1 = &self->dev[1];
	struct fl_dev *d1 = &self->dev[2], *d16 = &self->dev[3];
	struct mig_buf *st16 = &self->b[0], *st1 = &self->b[1];

	fl_open(_metadata, s16, "mblit-16m", VFIO_BACKEND_TYPE1, 1601);
	fl_open(_metadata, s1, "mblit-1m", VFIO_BACKEND_IOMMUFD, 101);
	fl_open(_metadata, d1, "mblit-1m", VFIO_BACKEND_TYPE1, 102);
	fl_open(_metadata, d16, "mblit-16m", VFIO_BACKEND_IOMMUFD, 1602);
	fl_work(_metadata, s16, 40, 0x16000, 0x1616);
	fl_work(_metadata, s1, 40, 0x1000, 0x0101);
	fl_save_v2(_metadata, s16, st16, &self->fds[0]);
	fl_save_v2(_metadata, s1, st1, &self->fds[0]);
	ASSERT_EQ(16, mig_le32(st16->p + 8));
	ASSERT_EQ(1, mig_le32(st1->p + 8));

	fl_v2_wrong_type(_metadata, &self->fds[1], d1, st16, st1, s1,
			 "mblit-16m stream into mblit-1m");
	fl_v2_wrong_type(_metadata, &self->fds[1], d16, st1, st16, s16,
			 "mblit-1m stream into mblit-16m");
}

/* ---- fleet.region_state_into_other_type_is_refused --------------------- */

/*
 * @bad (another type's state) into @dst's state area while it is stopped
 * with work pending; then @good (@gsrc's state, @dst's type).
 */
static void fl_region_wrong_type(struct __test_metadata *_metadata,
				 struct fl_dev *dst,
				 const struct vfio_region_info *sr,
				 const uint8_t *bad, size_t bad_len,
				 const uint8_t *good, size_t good_len,
				 struct fl_dev *gsrc, const char *what)
{
	struct mb_dev *d = &dst->d;
	struct mblit_desc x[40];
	uint64_t gen, v = 1;
	struct fl_live l0;
	uint8_t *s0, *cur;
	size_t s0_len, len;
	int ret;

	/* Its own state: work done, and more pending at the stop. */
	fl_work(_metadata, dst, 16, 0xd000, 0xd57);
	fl_make(d, d->mem, x, ARRAY_SIZE(x), 0xd100);
	fl_submit(_metadata, dst, x, ARRAY_SIZE(x));
	ASSERT_EQ(0, mb_runctl_set(d, sr, MBLIT_RUNCTL_STOPPED));
	TH_LOG("%s: stopped at head %u of %u", what,
	       RD32(MBLIT_REG_RING_HEAD), d->tail);
	s0 = mb_state_read(_metadata, d, sr, &s0_len);
	gen = mb_state_hdr(_metadata, d, sr, MBLIT_STATE_OFF_GENERATION, 8);
	fl_live_take(_metadata, dst, &l0);

	/* The other type's state: RUNNING refuses it. */
	fl_state_write(_metadata, dst, sr, bad, bad_len);
	ret = mb_runctl_set(d, sr, MBLIT_RUNCTL_RUNNING);
	EXPECT_EQ(-EINVAL, ret) TH_LOG("%s: RUNNING: %s", what,
				       ret ? strerror(-ret) : "accepted");
	if (!ret)
		ASSERT_EQ(0, mb_runctl_set(d, sr, MBLIT_RUNCTL_STOPPED));
	EXPECT_EQ(MBLIT_RUNCTL_STOPPED, mb_runctl_get(d, sr)) TH_LOG("%s", what);
	/* Still stopped, with its previous state exactly. */
	EXPECT_EQ(-EBUSY, mb_acc(d, &d->bar0, true, MBLIT_REG_SCRATCH1, &v, 8));
	EXPECT_EQ(s0_len, mb_state_hdr(_metadata, d, sr, MBLIT_STATE_OFF_SIZE, 8));
	EXPECT_EQ(gen, mb_state_hdr(_metadata, d, sr,
				    MBLIT_STATE_OFF_GENERATION, 8));
	cur = mb_state_read(_metadata, d, sr, &len);
	EXPECT_EQ(s0_len, len);
	EXPECT_EQ(0, memcmp(cur, s0, len < s0_len ? len : s0_len))
		TH_LOG("%s: the snapshot changed", what);
	free(cur);
	fl_live_compare(_metadata, dst, &l0, what);
	free(l0.m);
	free(s0);

	/* It resumes what it kept and runs on. */
	ASSERT_EQ(0, mb_runctl_set(d, sr, MBLIT_RUNCTL_RUNNING))
		TH_LOG("%s: RUNNING with the kept state", what);
	fl_wait(_metadata, dst);
	fl_check_all(_metadata, dst, what);
	EXPECT_EQ(0xd57, RD64(MBLIT_REG_SCRATCH0));
	fl_more(_metadata, dst, 8, 0xd200, what);

	/* A state of its own type is taken. */
	ASSERT_EQ(0, mb_runctl_set(d, sr, MBLIT_RUNCTL_STOPPED));
	fl_state_write(_metadata, dst, sr, good, good_len);
	fl_adopt(_metadata, dst, gsrc);
	ASSERT_EQ(0, mb_runctl_set(d, sr, MBLIT_RUNCTL_RUNNING))
		TH_LOG("%s: a state of the device's own type", what);
	fl_check_all(_metadata, dst, "the good state after a refused one");
	EXPECT_EQ(mb_rd(_metadata, &gsrc->d, MBLIT_REG_SCRATCH0, 8),
		  RD64(MBLIT_REG_SCRATCH0));
	fl_more(_metadata, dst, 8, 0xd300, "the good state, more work");
	fl_usable(_metadata, dst, what);
}

TEST_F_TIMEOUT(fleet, region_state_into_other_type_is_refused, 600)
{
	struct fl_dev *s16 = &self->dev[0], *s1 = &self->dev[1];
	struct fl_dev *d1 = &self->dev[2], *d16 = &self->dev[3];
	uint8_t *b16, *b1;
	size_t l16, l1;
	unsigned int i;

	fl_open(_metadata, s16, "mblit-16m", VFIO_BACKEND_TYPE1, 1603);
	fl_open(_metadata, s1, "mblit-1m", VFIO_BACKEND_IOMMUFD, 103);
	fl_open(_metadata, d1, "mblit-1m", VFIO_BACKEND_IOMMUFD, 104);
	fl_open(_metadata, d16, "mblit-16m", VFIO_BACKEND_TYPE1, 1604);
	for (i = 0; i < 4; i++)
		mb_state_region(_metadata, &self->dev[i].d, &self->sr[i]);
	fl_work(_metadata, s16, 40, 0x16000, 0x1616);
	fl_work(_metadata, s1, 40, 0x1000, 0x0101);
	b16 = fl_save_region(_metadata, s16, &self->sr[0], &l16);
	b1 = fl_save_region(_metadata, s1, &self->sr[1], &l1);
	ASSERT_EQ(16, mig_le32(b16 + 8));
	ASSERT_EQ(1, mig_le32(b1 + 8));

	fl_region_wrong_type(_metadata, d1, &self->sr[2], b16, l16, b1, l1, s1,
			     "mblit-16m state into mblit-1m");
	fl_region_wrong_type(_metadata, d16, &self->sr[3], b1, l1, b16, l16, s16,
			     "mblit-1m state into mblit-16m");
	free(b16);
	free(b1);
}

/* ---- fleet.v2_stream_into_device_not_resuming_is_refused --------------- */

TEST_F_TIMEOUT(fleet, v2_stream_into_device_not_resuming_is_refused, 600)
{
	struct fl_dev *src = &self->dev[0], *dst = &self->dev[1];
	struct mig_buf *s = &self->b[0], *junk = &self->b[1];
	int *sfd = &self->fds[0], *rfd = &self->fds[1], *old = &self->fds[2];
	uint64_t i0 = 0, d0 = 0, i1 = 0, d1 = 0;
	unsigned int k = 0, kw = 1;
	uint8_t c[64];
	size_t got, half, done;
	struct mb_dev *d;
	int ret;

	fl_open(_metadata, src, FL_TYPE, VFIO_BACKEND_TYPE1, 105);
	fl_open(_metadata, dst, FL_TYPE, VFIO_BACKEND_IOMMUFD, 106);
	fl_work(_metadata, src, 32, 0x5000, 0x5005);
	fl_work(_metadata, dst, 16, 0xd000, 0xd57);
	memset(c, 0xa5, sizeof(c));

	/* A saving data_fd is read-only: stream bytes written to it fail. */
	fl_set(_metadata, src, VFIO_DEVICE_STATE_PRE_COPY, sfd, true);
	ASSERT_EQ(0, mig_precopy_info(*sfd, &i0, &d0));
	errno = 0;
	EXPECT_EQ(-1, write(*sfd, c, sizeof(c)));
	EXPECT_EQ(EBADF, errno) TH_LOG("write to a PRE_COPY data_fd: %s",
				       strerror(errno));
	ASSERT_EQ(0, mig_precopy_info(*sfd, &i1, &d1));
	EXPECT_EQ(i0, i1) TH_LOG("the refused write changed the stream");
	EXPECT_EQ(d0, d1);
	ret = mig_read_stream(*sfd, s, &k, FL_STREAM_MAX, &got);
	ASSERT_EQ(-ENOMSG, ret);
	EXPECT_EQ(i0, got);
	errno = 0;
	EXPECT_EQ(-1, write(*sfd, s->p, 32));
	EXPECT_EQ(EBADF, errno) TH_LOG("its own bytes written back");
	fl_set(_metadata, src, VFIO_DEVICE_STATE_STOP_COPY, NULL, false);
	errno = 0;
	EXPECT_EQ(-1, write(*sfd, s->p, 32));
	EXPECT_EQ(EBADF, errno) TH_LOG("write to a STOP_COPY data_fd: %s",
				       strerror(errno));
	ret = mig_read_stream(*sfd, s, &k, FL_STREAM_MAX, &got);
	ASSERT_EQ(0, ret) TH_LOG("STOP_COPY: %s", strerror(-ret));
	EXPECT_EQ(MIG_MBLIT_DEV_REC, got);
	fl_set(_metadata, src, VFIO_DEVICE_STATE_STOP, NULL, false);
	errno = 0;
	EXPECT_EQ(-1, read(*sfd, c, sizeof(c)));
	EXPECT_EQ(ENODEV, errno) TH_LOG("the saving data_fd after STOP");
	close(*sfd);
	*sfd = -1;

	/*
	 * RUNNING -> RESUMING is no arc of the FSM but a combination the
	 * driver walks (RUNNING_P2P, STOP, RESUMING), as <linux/vfio.h> asks.
	 * A resuming data_fd is write-only.
	 */
	fl_set(_metadata, dst, VFIO_DEVICE_STATE_RESUMING, rfd, true);
	errno = 0;
	EXPECT_EQ(-1, read(*rfd, c, sizeof(c)));
	EXPECT_EQ(EBADF, errno) TH_LOG("read from a RESUMING data_fd");
	ret = mig_write_stream(*rfd, s->p, s->len, &kw, &done);
	ASSERT_EQ(0, ret) TH_LOG("the source's stream (whose data_fd refused writes), at %zu: %s",
				 done, strerror(-ret));
	fl_set(_metadata, dst, VFIO_DEVICE_STATE_STOP, NULL, false);
	fl_adopt(_metadata, dst, src);
	fl_set(_metadata, dst, VFIO_DEVICE_STATE_RUNNING, NULL, false);
	d = &dst->d;
	fl_check_all(_metadata, dst, "resumed");
	EXPECT_EQ(0x5005, RD64(MBLIT_REG_SCRATCH0));

	/* The RESUMING data_fd after the device left RESUMING: ENODEV. */
	*old = *rfd;
	*rfd = -1;
	errno = 0;
	EXPECT_EQ(-1, write(*old, s->p, 32));
	EXPECT_EQ(ENODEV, errno) TH_LOG("stale RESUMING data_fd: %s",
					strerror(errno));
	errno = 0;
	EXPECT_EQ(-1, write(*old, s->p, s->len));
	EXPECT_EQ(ENODEV, errno);
	fl_check_all(_metadata, dst, "after writes to the stale data_fd");
	EXPECT_EQ(0x5005, RD64(MBLIT_REG_SCRATCH0));

	/* ... also while a new RESUMING session is open, which it must not feed. */
	fl_set(_metadata, dst, VFIO_DEVICE_STATE_RESUMING, rfd, true);
	half = s->len / 2;
	ret = mig_write_stream(*rfd, s->p, half, NULL, &done);
	ASSERT_EQ(0, ret);
	ASSERT_EQ(0, mig_buf_append(junk, s->p, s->len));
	junk->p[100] ^= 0xff;
	errno = 0;
	EXPECT_EQ(-1, write(*old, junk->p, junk->len));
	EXPECT_EQ(ENODEV, errno) TH_LOG("stale data_fd during a new session");
	errno = 0;
	EXPECT_EQ(-1, write(*old, s->p + half, s->len - half));
	EXPECT_EQ(ENODEV, errno);
	ret = mig_write_stream(*rfd, s->p + half, s->len - half, NULL, &done);
	ASSERT_EQ(0, ret) TH_LOG("the new session, second half: %s",
				 strerror(-ret));
	fl_set(_metadata, dst, VFIO_DEVICE_STATE_RUNNING, NULL, false);
	close(*rfd);
	*rfd = -1;
	close(*old);
	*old = -1;
	fl_check_all(_metadata, dst, "the second session");
	EXPECT_EQ(0x5005, RD64(MBLIT_REG_SCRATCH0));

	/* A reset in RESUMING ends the session: ENODEV. */
	fl_set(_metadata, dst, VFIO_DEVICE_STATE_RESUMING, rfd, true);
	ASSERT_EQ(0, mig_write_stream(*rfd, s->p, half, NULL, &done));
	ASSERT_EQ(0, ioctl(DFD(dst), VFIO_DEVICE_RESET));
	EXPECT_EQ(VFIO_DEVICE_STATE_RUNNING, mig_get(DFD(dst)));
	errno = 0;
	EXPECT_EQ(-1, write(*rfd, s->p + half, s->len - half));
	EXPECT_EQ(ENODEV, errno) TH_LOG("RESUMING data_fd after a reset");
	close(*rfd);
	*rfd = -1;

	/*
	 * PRE_COPY -> RESUMING (through RUNNING, RUNNING_P2P, STOP): the arc
	 * to RUNNING ends the saving session, whose data_fd then fails with
	 * ENODEV (reads) and EBADF (writes).
	 */
	fl_set(_metadata, src, VFIO_DEVICE_STATE_RUNNING, NULL, false);
	fl_set(_metadata, src, VFIO_DEVICE_STATE_PRE_COPY, sfd, true);
	EXPECT_LT(0, read(*sfd, c, sizeof(c)));
	fl_set(_metadata, src, VFIO_DEVICE_STATE_RESUMING, rfd, true);
	errno = 0;
	EXPECT_EQ(-1, read(*sfd, c, sizeof(c)));
	EXPECT_EQ(ENODEV, errno) TH_LOG("PRE_COPY data_fd after SET RESUMING");
	errno = 0;
	EXPECT_EQ(-1, write(*sfd, s->p, 32));
	EXPECT_EQ(EBADF, errno);
	close(*sfd);
	*sfd = -1;
	ret = mig_write_stream(*rfd, s->p, s->len, &kw, &done);
	ASSERT_EQ(0, ret) TH_LOG("its own stream into the source: %s",
				 strerror(-ret));
	fl_set(_metadata, src, VFIO_DEVICE_STATE_RUNNING, NULL, false);
	close(*rfd);
	*rfd = -1;
	fl_check_all(_metadata, src, "the source resumed from its own stream");

	fl_usable(_metadata, src, "source");
	fl_usable(_metadata, dst, "destination");
}

/* ---- fleet.region_restore_while_running_is_refused --------------------- */

/* The state area refuses @b while @f runs: EBUSY, whole or in pieces. */
static void fl_area_busy(struct __test_metadata *_metadata, struct fl_dev *f,
			 const struct vfio_region_info *sr, const uint8_t *b,
			 size_t len, const char *what)
{
	struct mb_dev *d = &f->d;
	uint8_t tmp[16];

	EXPECT_EQ(-EBUSY, mb_acc(d, sr, true, MBLIT_STATE_AREA_OFFSET,
				 (void *)b, len)) TH_LOG("%s: whole state", what);
	EXPECT_EQ(-EBUSY, mb_acc(d, sr, true, MBLIT_STATE_AREA_OFFSET,
				 (void *)b, 1)) TH_LOG("%s: 1 byte", what);
	EXPECT_EQ(-EBUSY, mb_acc(d, sr, true, MBLIT_STATE_AREA_OFFSET + 4096,
				 (void *)(b + 4096), 4097))
		TH_LOG("%s: a chunk", what);
	EXPECT_EQ(-EBUSY, mb_acc(d, sr, false, MBLIT_STATE_AREA_OFFSET, tmp,
				 sizeof(tmp))) TH_LOG("%s: read", what);
	EXPECT_EQ(0, mb_state_hdr(_metadata, d, sr, MBLIT_STATE_OFF_SIZE, 8))
		TH_LOG("%s: state size", what);
}

TEST_F_TIMEOUT(fleet, region_restore_while_running_is_refused, 600)
{
	struct fl_dev *a = &self->dev[0], *b = &self->dev[1];
	const struct vfio_region_info *sr = &self->sr[0];
	struct mblit_desc x[FL_N3];
	struct fl_live l0;
	uint8_t *bb, *snap;
	size_t blen, slen;
	struct mb_dev *d = &a->d;
	uint64_t gen;
	int ret;

	fl_open(_metadata, a, FL_TYPE, VFIO_BACKEND_IOMMUFD, 107);
	fl_open(_metadata, b, FL_TYPE, VFIO_BACKEND_TYPE1, 108);
	mb_state_region(_metadata, &a->d, &self->sr[0]);
	mb_state_region(_metadata, &b->d, &self->sr[1]);
	fl_work(_metadata, b, 32, 0xb000, 0xb0b);
	bb = fl_save_region(_metadata, b, &self->sr[1], &blen);
	ASSERT_LT(4096 + 4097, blen) TH_LOG("a state with pages");

	/* Running, busy: the state area refuses it. */
	fl_work(_metadata, a, 16, 0xa000, 0xa5a);
	fl_make(d, d->mem, x, ARRAY_SIZE(x), 0xa100);
	fl_submit(_metadata, a, x, ARRAY_SIZE(x));
	fl_area_busy(_metadata, a, sr, bb, blen, "running, work in flight");
	EXPECT_EQ(MBLIT_RUNCTL_RUNNING, mb_runctl_get(d, sr));
	fl_wait(_metadata, a);
	fl_check_all(_metadata, a, "the work during the refused writes");
	/* Running, idle. */
	fl_area_busy(_metadata, a, sr, bb, blen, "running, idle");
	fl_check_all(_metadata, a, "after the refused writes");
	EXPECT_EQ(0xa5a, RD64(MBLIT_REG_SCRATCH0));

	/* Nothing was kept: a stop and a resume keep the device's own state. */
	fl_live_take(_metadata, a, &l0);
	ASSERT_EQ(0, mb_runctl_set(d, sr, MBLIT_RUNCTL_STOPPED));
	gen = mb_state_hdr(_metadata, d, sr, MBLIT_STATE_OFF_GENERATION, 8);
	snap = mb_state_read(_metadata, d, sr, &slen);
	EXPECT_EQ(0xa5a, mig_le64(snap + FL_REC_SCRATCH0))
		TH_LOG("the snapshot is not the device's own state");
	free(snap);
	ret = mb_runctl_set(d, sr, MBLIT_RUNCTL_RUNNING);
	ASSERT_EQ(0, ret) TH_LOG("RUNNING: %s", strerror(-ret));
	fl_live_compare(_metadata, a, &l0, "stopped and resumed");
	EXPECT_EQ(0xa5a, RD64(MBLIT_REG_SCRATCH0));

	/* v2 holds it in STOP (the run-control byte says RUNNING): refused. */
	fl_set(_metadata, a, VFIO_DEVICE_STATE_STOP, NULL, false);
	EXPECT_EQ(-EBUSY, mb_acc(d, sr, true, MBLIT_STATE_AREA_OFFSET,
				 bb, blen)) TH_LOG("v2 STOP");
	EXPECT_EQ(-EBUSY, mb_runctl_get(d, sr));
	fl_set(_metadata, a, VFIO_DEVICE_STATE_RUNNING, NULL, false);
	fl_live_compare(_metadata, a, &l0, "after v2 STOP");
	free(l0.m);
	ASSERT_EQ(0, mb_runctl_set(d, sr, MBLIT_RUNCTL_STOPPED));
	EXPECT_NE(gen, mb_state_hdr(_metadata, d, sr,
				    MBLIT_STATE_OFF_GENERATION, 8));
	snap = mb_state_read(_metadata, d, sr, &slen);
	EXPECT_EQ(0xa5a, mig_le64(snap + FL_REC_SCRATCH0));
	free(snap);
	ASSERT_EQ(0, mb_runctl_set(d, sr, MBLIT_RUNCTL_RUNNING));

	/* It runs on. */
	fl_more(_metadata, a, 8, 0xa200, "more work after the refusals");
	free(bb);
	fl_usable(_metadata, a, "a");
	fl_usable(_metadata, b, "b");
}

TEST_HARNESS_MAIN
