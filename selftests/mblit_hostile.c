// SPDX-License-Identifier: GPL-2.0
/*
 * mblit against a hostile VFIO user (issue 9).  The user of an mdev, and
 * the guest behind it, are not trusted; whatever they do, the driver must
 * not crash, hang, leak memory or leak one user's data to the next:
 *
 *  - dma_unmap returns only once no page of the range is pinned, however
 *    busy the engine and BAR2 are (docs/device.md §8, "Pinning");
 *  - no driver lock is held across a copy from or to user memory: with a
 *    thread parked inside such a copy (userfaultfd), the engine, the
 *    registers and the IOMMU back-end still answer; a BAR0 write racing a
 *    stop is refused or is in the snapshot, never lost;
 *  - values from the user, the guest or a state blob never overflow the
 *    driver's arithmetic (the test kernel panics on a Rust overflow);
 *  - device memory goes with its mdev, and is charged to the memory cgroup
 *    of the user whose actions allocated it;
 *  - every open starts from the state a reset gives: nothing of the
 *    previous user (device memory, registers, config space, interrupts, an
 *    aborted incoming migration) is visible;
 *  - a data_fd read that faults part-way returns the bytes it copied.
 *
 * Fixture "hostile" runs where the IOMMU back-end matters, on both;
 * "hostile_dev" holds the tests of the device side, on type1.  Every wait
 * is bounded (generously: the VM is TCG with heavy kernel debugging) and
 * no test asserts on timing.  Module load and mdev creation under slab
 * fault injection are in mblit_module.c (they unload the module).
 */
#include <pthread.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>

#include <linux/userfaultfd.h>

#include "kselftest_harness.h"
#include "dirty_log.h"
#include "held_access.h"
#include "mblit_cfg.h"
#include "mblit_dev.h"
#include "mblit_state_fmt.h"
#include "mig_steps.h"
#include "mig_v2.h"

#define G(off)		(MB_DATA_IOVA + (off))
#define DD		MBLIT_FLAG_DST_DEV
#define SD		MBLIT_FLAG_SRC_DEV
#define RUNNING		MBLIT_RUNCTL_RUNNING
#define STOPPED		MBLIT_RUNCTL_STOPPED
#define AREA		MBLIT_STATE_AREA_OFFSET
#define DFD(d)		((d)->v.device_fd)

/* A ring mapped on its own, apart from the guest buffer. */
#define RING_IOVA	MB_EXTRA_IOVA

/* Bounds.  None of them is a timing assertion: each only ends a hang. */
#define FAULT_WAIT_MS	30000	/* a held access reaches its user copy */
#define PROBE_MS	30000	/* what must work while it is held */
#define JOIN_MS		60000	/* a thread returns once released */
#define ENGINE_MS	60000	/* the engine moves on / stops */
#define MEM_WAIT_MS	30000	/* freed memory shows in MemAvailable */

#define R_SCRATCH0	15		/* REGS order (regs::REGS) */

/* ---- the test context ----------------------------------------------------- */

#define NDEV	2
#define NFDS	4
#define CG_ROOT	"/sys/fs/cgroup"

struct hctx {
	struct mb_dev d[NDEV];
	struct vfio_region_info sr[NDEV];
	int fds[NFDS];
	int efd;
	uint8_t *ring;		/* a separately mapped ring, or NULL */
	size_t ring_len;
	uint8_t *top;		/* pages mapped at the top of IOVA space */
	char cg[64];		/* the memory cgroup the test moved into */
	bool cg_made, cg_moved;
};

static void hctx_init(struct hctx *c)
{
	int i;

	for (i = 0; i < NDEV; i++)
		mb_init(&c->d[i]);
	memset(c->sr, 0, sizeof(c->sr));
	for (i = 0; i < NFDS; i++)
		c->fds[i] = -1;
	c->efd = -1;
	c->ring = c->top = NULL;
	c->ring_len = 0;
	c->cg[0] = 0;
	c->cg_made = c->cg_moved = false;
}

static void cg_leave(struct hctx *c)
{
	char pid[32];

	if (c->cg_moved) {
		snprintf(pid, sizeof(pid), "%d", getpid());
		if (sysfs_write_str(CG_ROOT "/cgroup.procs", pid))
			fprintf(stderr, "# cleanup: %s\n", mdev_lib_error());
		c->cg_moved = false;
	}
	if (c->cg_made && rmdir(c->cg))
		fprintf(stderr, "# cleanup: rmdir %s: %s\n", c->cg, strerror(errno));
	c->cg_made = false;
}

static void hctx_fini(struct __test_metadata *_metadata, struct hctx *c)
{
	int i;

	/* Data fds first: they refer to their device. */
	for (i = 0; i < NFDS; i++)
		if (c->fds[i] >= 0)
			close(c->fds[i]);
	for (i = 0; i < NDEV; i++)
		mb_close(_metadata, &c->d[i]);
	if (c->efd >= 0)
		close(c->efd);
	if (c->ring)
		munmap(c->ring, c->ring_len);
	if (c->top)
		munmap(c->top, 2 * MB_PAGE);
	cg_leave(c);
}

FIXTURE(hostile) {
	struct hctx c;
};

FIXTURE_VARIANT(hostile) {
	enum vfio_backend backend;
};

FIXTURE_VARIANT_ADD(hostile, type1) {
	.backend = VFIO_BACKEND_TYPE1,
};

FIXTURE_VARIANT_ADD(hostile, iommufd) {
	.backend = VFIO_BACKEND_IOMMUFD,
};

FIXTURE_SETUP(hostile)
{
	hctx_init(&self->c);
}

FIXTURE_TEARDOWN(hostile)
{
	hctx_fini(_metadata, &self->c);
}

FIXTURE(hostile_dev) {
	struct hctx c;
};

FIXTURE_SETUP(hostile_dev)
{
	hctx_init(&self->c);
}

FIXTURE_TEARDOWN(hostile_dev)
{
	hctx_fini(_metadata, &self->c);
}

/* d[i]: a new mdev of @type with a guest buffer, and its state region. */
static struct mb_dev *open_dev(struct __test_metadata *_metadata,
			       struct hctx *c, int i, const char *type,
			       enum vfio_backend be)
{
	mb_open(_metadata, &c->d[i], type, be);
	mb_state_region(_metadata, &c->d[i], &c->sr[i]);
	return &c->d[i];
}

/* d[i]: a new mdev of @type, opened, without guest buffer or model. */
static struct mb_dev *open_bare(struct __test_metadata *_metadata,
				struct hctx *c, int i, const char *type,
				enum vfio_backend be)
{
	struct mb_dev *d = &c->d[i];

	mb_create_open(_metadata, d, type, be);
	mb_state_region(_metadata, d, &c->sr[i]);
	return d;
}

/* Open d[i] again (its mdev exists, it is closed) through @be. */
static void reopen(struct __test_metadata *_metadata, struct hctx *c, int i,
		   enum vfio_backend be)
{
	struct mb_dev *d = &c->d[i];

	ASSERT_EQ(0, vfio_mdev_open(&d->v, d->uuid, be))
		TH_LOG("reopen through %s: %s", vfio_backend_name(be),
		       mdev_lib_error());
	ASSERT_EQ(0, vfio_mdev_pci_regions(&d->v, &d->cfg, &d->bar0, &d->bar2))
		TH_LOG("%s", mdev_lib_error());
	mb_state_region(_metadata, d, &c->sr[i]);
	if (d->buf) {
		ASSERT_EQ(0, vfio_mdev_dma_map(&d->v, d->buf, MB_IOVA,
					       MB_BUF_SIZE))
			TH_LOG("%s", mdev_lib_error());
		d->mapped = true;
	}
}

/* ---- small helpers ---------------------------------------------------------- */

static bool thread_wait(int *done, int ms)
{
	uint64_t end = mb_now_ms() + ms;

	while (!__atomic_load_n(done, __ATOMIC_ACQUIRE)) {
		if (mb_now_ms() > end)
			return false;
		mb_sleep_ms(2);
	}
	return true;
}

/* Register access for helper threads (no harness macros there). */
static int raw_rd32(struct mb_dev *d, uint32_t off, uint32_t *v)
{
	ssize_t n = pread(d->v.device_fd, v, 4, d->bar0.offset + off);

	return n == 4 ? 0 : n < 0 ? -errno : -EIO;
}

static int raw_wr32(struct mb_dev *d, uint32_t off, uint32_t v)
{
	ssize_t n = pwrite(d->v.device_fd, &v, 4, d->bar0.offset + off);

	return n == 4 ? 0 : n < 0 ? -errno : -EIO;
}

/* MemAvailable, in bytes. */
static uint64_t mem_available(struct __test_metadata *_metadata)
{
	char line[256];
	unsigned long long kb = 0;
	bool found = false;
	FILE *f = fopen("/proc/meminfo", "re");

	ASSERT_NE(NULL, f) TH_LOG("/proc/meminfo: %s", strerror(errno));
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "MemAvailable: %llu kB", &kb) == 1) {
			found = true;
			break;
		}
	fclose(f);
	ASSERT_TRUE(found) TH_LOG("no MemAvailable in /proc/meminfo");
	return kb * 1024;
}

/* Wait for the engine to leave BUSY; returns STATUS. */
static uint32_t wait_not_busy(struct __test_metadata *_metadata,
			      struct mb_dev *d, int ms)
{
	uint64_t end = mb_now_ms() + ms;
	uint32_t st;

	while ((st = mb_rd(_metadata, d, MBLIT_REG_STATUS, 4)) &
	       MBLIT_STATUS_BUSY) {
		if (mb_now_ms() > end) {
			mb_log_state(_metadata, d, "engine still busy");
			ASSERT_TRUE(false) TH_LOG("the engine did not stop in %d ms",
						  ms);
		}
		mb_sleep_ms(2);
	}
	return st;
}

static void wait_head(struct __test_metadata *_metadata, struct mb_dev *d,
		      uint32_t idx, int ms)
{
	uint64_t end = mb_now_ms() + ms;

	while ((int32_t)(mb_rd(_metadata, d, MBLIT_REG_RING_HEAD, 4) - idx) < 0) {
		if (mb_now_ms() > end) {
			mb_log_state(_metadata, d, "timeout waiting for head");
			ASSERT_TRUE(false) TH_LOG("head did not reach %u in %d ms",
						  idx, ms);
		}
		mb_sleep_ms(1);
	}
}

/* DMA logging REPORT at 4 KiB into @bm (@bm_words words), cleared first. */
static int dl_report_4k(struct mb_dev *d, uint64_t iova, uint64_t len,
			uint64_t *bm, size_t bm_words)
{
	memset(bm, 0, bm_words * 8);
	return dl_report(d, iova, len, MB_PAGE, bm);
}

/* ---- userfaultfd: a thread held inside the kernel's user copy ------------- */

struct uffd_area {
	int uffd;
	uint8_t *p;
	size_t len;
};

/* @len bytes (rounded up to pages) of never-touched, uffd-missing memory. */
static void uffd_area_init(struct __test_metadata *_metadata,
			   struct uffd_area *a, size_t len)
{
	struct uffdio_api api = { .api = UFFD_API };
	struct uffdio_register reg = { .mode = UFFDIO_REGISTER_MODE_MISSING };

	a->len = (len + MB_PAGE - 1) & ~(MB_PAGE - 1);
	a->uffd = syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
	ASSERT_LE(0, a->uffd) TH_LOG("userfaultfd: %s", strerror(errno));
	ASSERT_EQ(0, ioctl(a->uffd, UFFDIO_API, &api))
		TH_LOG("UFFDIO_API: %s", strerror(errno));
	a->p = mmap(NULL, a->len, PROT_READ | PROT_WRITE,
		    MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	ASSERT_NE(MAP_FAILED, a->p) TH_LOG("mmap: %s", strerror(errno));
	reg.range.start = (uintptr_t)a->p;
	reg.range.len = a->len;
	ASSERT_EQ(0, ioctl(a->uffd, UFFDIO_REGISTER, &reg))
		TH_LOG("UFFDIO_REGISTER: %s", strerror(errno));
}

static void uffd_area_fini(struct uffd_area *a)
{
	close(a->uffd);
	munmap(a->p, a->len);
}

/* Resolve every page of the area with @src (a->len bytes): 0 or -errno. */
static int uffd_resolve(struct uffd_area *a, const uint8_t *src)
{
	size_t off = 0;
	int tries = 0;

	while (off < a->len) {
		struct uffdio_copy cp = {
			.dst = (uintptr_t)a->p + off,
			.src = (uintptr_t)src + off,
			.len = a->len - off,
		};

		if (!ioctl(a->uffd, UFFDIO_COPY, &cp)) {
			off += cp.len;
			continue;
		}
		if (errno != EAGAIN || ++tries > 1000)
			return -errno;
		if (cp.copy > 0)
			off += cp.copy;
	}
	return 0;
}

static void held_init(struct held *h, int fd, bool write, bool positional,
		      off_t off, size_t len)
{
	memset(h, 0, sizeof(*h));
	h->fd = fd;
	h->write = write;
	h->positional = positional;
	h->off = off;
	h->len = len;
}

/*
 * Wait until the held thread faults on the area (it is then inside the
 * kernel's user copy, waiting for us): 0, -ETIMEDOUT, -ECHILD (it returned
 * without faulting) or -EPROTO (an unexpected uffd message).
 */
static int uffd_wait_fault(struct uffd_area *a, struct held *h, int ms)
{
	uint64_t end = mb_now_ms() + ms;
	struct uffd_msg m;
	ssize_t n;

	for (;;) {
		struct pollfd p = { .fd = a->uffd, .events = POLLIN };

		if (poll(&p, 1, 20) > 0) {
			n = read(a->uffd, &m, sizeof(m));
			if (n < 0 && errno == EAGAIN)
				continue;
			if (n != sizeof(m) || m.event != UFFD_EVENT_PAGEFAULT ||
			    m.arg.pagefault.address < (uintptr_t)a->p ||
			    m.arg.pagefault.address >= (uintptr_t)a->p + a->len)
				return -EPROTO;
			return 0;
		}
		if (__atomic_load_n(&h->done, __ATOMIC_ACQUIRE))
			return -ECHILD;
		if (mb_now_ms() > end)
			return -ETIMEDOUT;
	}
}

/* What must keep working while a thread is held in a user copy. */
enum {
	PR_STATUS, PR_MIG_GET, PR_ENGINE, PR_UNMAP, PR_REMAP, PR_STATUS2,
	PR_DONE,
};

static const char *const probe_step[] = {
	"read BAR0 STATUS of the held device",
	"GET the held device's migration state",
	"run a device->device and a guest->device COPY",
	"unmap the held device's guest buffer",
	"map the held device's guest buffer again",
	"read BAR0 STATUS of the held device again",
	"done",
};

struct probe {
	struct mb_dev *held;	/* the device a thread is held on */
	struct mb_dev *eng;	/* a running device, its ring enabled */
	uint64_t dd_src, dd_dst, gd_dst, gd_src;
	uint32_t dd_len, gd_len;
	int step;
	int err;
	char msg[200];
	int done;
	pthread_t th;
};

static void *probe_fn(void *arg)
{
	struct probe *p = arg;
	struct mb_dev *e = p->eng;
	struct mblit_desc x[2];
	uint32_t v, head, st;
	uint64_t end;
	int ret;

#define STEP(s)	__atomic_store_n(&p->step, (s), __ATOMIC_RELEASE)
	STEP(PR_STATUS);
	ret = raw_rd32(p->held, MBLIT_REG_STATUS, &v);
	if (ret)
		goto out;
	STEP(PR_MIG_GET);
	ret = mig_get(DFD(p->held));
	if (ret < 0)
		goto out;
	STEP(PR_ENGINE);
	x[0] = mb_copy(p->dd_dst, p->dd_src, p->dd_len, DD | SD);
	x[1] = mb_copy(p->gd_dst, p->gd_src, p->gd_len, DD);
	mb_ring_put(e, e->tail, &x[0]);
	mb_ring_put(e, e->tail + 1, &x[1]);
	e->tail += 2;
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	ret = raw_wr32(e, MBLIT_REG_RING_TAIL, e->tail);
	if (ret)
		goto out;
	end = mb_now_ms() + PROBE_MS;
	for (;;) {
		ret = raw_rd32(e, MBLIT_REG_RING_HEAD, &head);
		if (!ret)
			ret = raw_rd32(e, MBLIT_REG_STATUS, &st);
		if (ret)
			goto out;
		if (st & MBLIT_STATUS_ERROR) {
			snprintf(p->msg, sizeof(p->msg),
				 "engine error, STATUS %#x", st);
			ret = -EIO;
			goto out;
		}
		if (head == e->tail && !(st & MBLIT_STATUS_BUSY))
			break;
		if (mb_now_ms() > end) {
			ret = -ETIMEDOUT;
			goto out;
		}
		mb_sleep_ms(1);
	}
	STEP(PR_UNMAP);
	ret = vfio_mdev_dma_unmap(&p->held->v, MB_IOVA, MB_BUF_SIZE);
	if (ret) {
		snprintf(p->msg, sizeof(p->msg), "%s", mdev_lib_error());
		goto out;
	}
	STEP(PR_REMAP);
	ret = vfio_mdev_dma_map(&p->held->v, p->held->buf, MB_IOVA,
				MB_BUF_SIZE);
	if (ret) {
		snprintf(p->msg, sizeof(p->msg), "%s", mdev_lib_error());
		goto out;
	}
	STEP(PR_STATUS2);
	ret = raw_rd32(p->held, MBLIT_REG_STATUS, &v);
	if (ret)
		goto out;
	STEP(PR_DONE);
out:
#undef STEP
	p->err = ret < 0 ? ret : 0;
	__atomic_store_n(&p->done, 1, __ATOMIC_RELEASE);
	return NULL;
}

/* Probe @k of a run: its own device ranges on @eng. */
static void probe_init(struct probe *p, struct mb_dev *held,
		       struct mb_dev *eng, unsigned int k)
{
	memset(p, 0, sizeof(*p));
	p->held = held;
	p->eng = eng;
	p->dd_src = 0;
	p->dd_len = 256 * 1024;
	p->dd_dst = 2 * MB_MIB + k * 512 * 1024ULL;
	p->gd_len = 64 * 1024;
	p->gd_src = G(k * 64 * 1024ULL);
	p->gd_dst = 8 * MB_MIB + k * 128 * 1024ULL;
}

/* The probe's two copies landed. */
static void probe_verify(struct __test_metadata *_metadata,
			 const struct probe *p, const char *what)
{
	struct mb_dev *e = p->eng;
	uint8_t *a = malloc(p->dd_len), *b = malloc(p->dd_len);

	ASSERT_TRUE(a && b);
	mb_bar2_rd(_metadata, e, p->dd_src, a, p->dd_len);
	mb_bar2_rd(_metadata, e, p->dd_dst, b, p->dd_len);
	EXPECT_EQ(0, memcmp(a, b, p->dd_len))
		TH_LOG("%s: the probe's device->device COPY is wrong", what);
	mb_bar2_rd(_metadata, e, p->gd_dst, b, p->gd_len);
	EXPECT_EQ(0, memcmp(b, e->buf + (p->gd_src - MB_IOVA), p->gd_len))
		TH_LOG("%s: the probe's guest->device COPY is wrong", what);
	free(a);
	free(b);
}

/*
 * Start @h on the uffd area @a, wait until it is inside its user copy,
 * run the probe @p while it is held there (bounded), then resolve the
 * fault with @fill (a->len bytes) and collect both threads.
 */
static void run_held(struct __test_metadata *_metadata, const char *what,
		     struct held *h, struct uffd_area *a, const uint8_t *fill,
		     struct probe *p)
{
	bool probe_done, released;
	int ret;

	h->buf = a->p;
	ASSERT_EQ(0, pthread_create(&h->th, NULL, held_fn, h));
	ret = uffd_wait_fault(a, h, FAULT_WAIT_MS);
	if (ret) {
		uffd_resolve(a, fill);
		released = thread_wait(&h->done, JOIN_MS);
		TH_LOG("%s: the access returned %zd (%s) without being held",
		       what, h->ret, h->ret < 0 ? strerror(h->err) : "ok");
		ASSERT_EQ(0, ret) TH_LOG("%s: no fault on the buffer: %s", what,
					 ret == -ECHILD ? "the access returned first" :
					 strerror(-ret));
		ASSERT_TRUE(released);
	}

	/* The thread is inside the kernel's copy now, and stays there. */
	ASSERT_EQ(0, pthread_create(&p->th, NULL, probe_fn, p));
	probe_done = thread_wait(&p->done, PROBE_MS);
	EXPECT_TRUE(probe_done)
		TH_LOG("%s: with a thread held in the user copy, \"%s\" did not finish in %d ms: a driver lock is held across the copy",
		       what, probe_step[__atomic_load_n(&p->step, __ATOMIC_ACQUIRE)],
		       PROBE_MS);
	EXPECT_FALSE(__atomic_load_n(&h->done, __ATOMIC_ACQUIRE))
		TH_LOG("%s: the held access returned before its fault was resolved",
		       what);

	ret = uffd_resolve(a, fill);
	ASSERT_EQ(0, ret) TH_LOG("%s: UFFDIO_COPY: %s", what, strerror(-ret));
	released = thread_wait(&h->done, JOIN_MS);
	if (!probe_done)
		probe_done = thread_wait(&p->done, JOIN_MS);
	ASSERT_TRUE(released)
		TH_LOG("%s: the access did not return once its fault was resolved",
		       what);
	ASSERT_TRUE(probe_done)
		TH_LOG("%s: \"%s\" still did not finish after the fault was resolved",
		       what, probe_step[p->step]);
	pthread_join(h->th, NULL);
	pthread_join(p->th, NULL);
	EXPECT_EQ(0, p->err) TH_LOG("%s: probe step \"%s\" failed: %s %s", what,
				    probe_step[p->step], strerror(-p->err),
				    p->msg);
	if (!p->err)
		probe_verify(_metadata, p, what);
}

/* ---- 1. dma_unmap and pins ------------------------------------------------- */

struct reader {
	struct mb_dev *d;
	uint8_t *buf;
	size_t len;
	int *stop;
	int started;
	unsigned long reads;
	int err;
	int done;
	pthread_t th;
};

/* pread() all of its length from BAR2, drop the pages, again. */
static void *reader_fn(void *arg)
{
	struct reader *r = arg;
	ssize_t n;

	while (!__atomic_load_n(r->stop, __ATOMIC_ACQUIRE)) {
		__atomic_store_n(&r->started, 1, __ATOMIC_RELEASE);
		n = pread(r->d->v.device_fd, r->buf, r->len, r->d->bar2.offset);
		if (n != (ssize_t)r->len) {
			r->err = n < 0 ? errno : EIO;
			break;
		}
		r->reads++;
		madvise(r->buf, r->len, MADV_DONTNEED);
	}
	__atomic_store_n(&r->done, 1, __ATOMIC_RELEASE);
	return NULL;
}

#define NREADERS	4

/*
 * The ring on its own mapping, full of 1 MiB device-only COPYs (each keeps
 * its descriptor's page pinned while it runs); with @readers, threads
 * keep reading all of BAR2 meanwhile.  Unmapping the ring mid-command must
 * return with nothing pinned and leave the engine stopped.
 */
static void unmap_ring_mid_command(struct __test_metadata *_metadata,
				   struct hctx *c, enum vfio_backend be,
				   bool readers)
{
	const uint32_t ring_size = readers ? 128 : 1024;
	const uint32_t n = ring_size - 8;
	struct reader rd[NREADERS];
	const char *type = "mblit-16m";
	struct mblit_desc x[5];
	struct mb_dev *d;
	unsigned int i, started = 0;
	uint64_t t0, pinned, addr, rlen = 0;
	uint32_t st, head, code;
	int stop = 0, ret;
	uint8_t *p;

	if (readers) {
		int avail = mdev_type_available("mblit-256m");

		if (avail >= 1)
			type = "mblit-256m";
		else
			TH_LOG("mblit-256m: %d available (%s); using mblit-16m",
			       avail, avail < 0 ? mdev_lib_error() : "budget");
	}
	d = open_dev(_metadata, c, 0, type, be);

	c->ring_len = ring_size * MBLIT_DESC_SIZE;
	c->ring = mmap(NULL, c->ring_len, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
	ASSERT_NE(MAP_FAILED, c->ring) TH_LOG("mmap: %s", strerror(errno));
	ASSERT_EQ(0, vfio_mdev_dma_map(&d->v, c->ring, RING_IOVA, c->ring_len))
		TH_LOG("%s", mdev_lib_error());

	/* Something to copy, then the COPYs between [0, 1) and [1, 2) MiB. */
	p = malloc(MB_MIB);
	ASSERT_NE(NULL, p);
	mb_rand_fill(d, p, MB_MIB);
	mb_bar2_wr(_metadata, d, 0, p, MB_MIB);
	free(p);
	mb_ring_setup_at(_metadata, d, RING_IOVA, c->ring, ring_size);
	for (i = 0; i < n; i++) {
		x[0] = mb_copy(((i + 1) % 2) * MB_MIB, (i % 2) * MB_MIB,
			       MBLIT_XFER_MAX, DD | SD);
		mb_ring_put(d, i, &x[0]);
	}

	memset(rd, 0, sizeof(rd));
	if (readers) {
		/* As much of BAR2 as memory allows, per reader. */
		uint64_t avail = mem_available(_metadata);
		uint64_t spare = avail > 384 * MB_MIB ? avail - 384 * MB_MIB : 0;

		rlen = spare / NREADERS / MB_MIB * MB_MIB;
		if (rlen < 8 * MB_MIB)
			rlen = 8 * MB_MIB;
		if (rlen > d->mem)
			rlen = d->mem;
		TH_LOG("%s: %d readers of %llu MiB of BAR2 each (MemAvailable %llu MiB)",
		       type, NREADERS, (unsigned long long)(rlen / MB_MIB),
		       (unsigned long long)(avail / MB_MIB));
		for (i = 0; i < NREADERS; i++) {
			rd[i].d = d;
			rd[i].len = rlen;
			rd[i].stop = &stop;
			rd[i].buf = mmap(NULL, rlen, PROT_READ | PROT_WRITE,
					 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
			ASSERT_NE(MAP_FAILED, rd[i].buf);
			ASSERT_EQ(0, pthread_create(&rd[i].th, NULL, reader_fn,
						    &rd[i]));
			started++;
		}
		for (i = 0; i < NREADERS; i++)
			ASSERT_TRUE(thread_wait(&rd[i].started, JOIN_MS));
	}

	/* The doorbell; once a command completed the engine is in the queue. */
	d->tail = n;
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	WR32(MBLIT_REG_RING_TAIL, d->tail);
	wait_head(_metadata, d, 1, ENGINE_MS);

	t0 = mb_now_ms();
	ret = vfio_mdev_dma_unmap(&d->v, RING_IOVA, c->ring_len);
	t0 = mb_now_ms() - t0;
	pinned = mb_debugfs(_metadata, d, "pinned_pages");
	EXPECT_EQ(0, ret) TH_LOG("unmapping the ring's pages: %s", mdev_lib_error());
	EXPECT_EQ(0, pinned)
		TH_LOG("%llu pages pinned right after dma_unmap returned",
		       (unsigned long long)pinned);

	st = wait_not_busy(_metadata, d, ENGINE_MS);
	head = RD32(MBLIT_REG_RING_HEAD);
	code = MBLIT_STATUS_ERR_CODE(st);
	addr = RD64(MBLIT_REG_ERR_ADDR);
	TH_LOG("unmap took %llu ms; engine at %u of %u, STATUS %#x, ERR_ADDR %#llx",
	       (unsigned long long)t0, head, n, st, (unsigned long long)addr);
	if (st & MBLIT_STATUS_ERROR) {
		EXPECT_EQ(head, RD32(MBLIT_REG_ERR_INDEX));
		switch (code) {
		case MBLIT_ERR_UNMAPPED:
			/* The command in progress held the ring's page. */
			EXPECT_EQ(RING_IOVA, addr);
			break;
		case MBLIT_ERR_RING_FETCH:
			/* The unmap came between two commands. */
			EXPECT_EQ(RING_IOVA + (head % ring_size) * MBLIT_DESC_SIZE,
				  addr);
			break;
		default:
			EXPECT_TRUE(false) TH_LOG("unexpected error code %#x",
						  code);
		}
	} else {
		EXPECT_EQ(n, head) TH_LOG("idle, not done, without an error");
		EXPECT_EQ(0, st);
	}
	EXPECT_EQ(0, mb_debugfs(_metadata, d, "pinned_pages"));

	__atomic_store_n(&stop, 1, __ATOMIC_RELEASE);
	for (i = 0; i < started; i++) {
		ASSERT_TRUE(thread_wait(&rd[i].done, JOIN_MS))
			TH_LOG("reader %u did not stop", i);
		pthread_join(rd[i].th, NULL);
		EXPECT_EQ(0, rd[i].err) TH_LOG("reader %u: pread: %s", i,
					       strerror(rd[i].err));
		TH_LOG("reader %u: %lu reads of %llu MiB", i, rd[i].reads,
		       (unsigned long long)(rlen / MB_MIB));
		munmap(rd[i].buf, rlen);
	}

	/* After a device reset, a fresh ring (mapped again) works. */
	ASSERT_EQ(0, ioctl(d->v.device_fd, VFIO_DEVICE_RESET))
		TH_LOG("VFIO_DEVICE_RESET: %s", strerror(errno));
	EXPECT_EQ(0, mb_debugfs(_metadata, d, "pinned_pages"));
	mb_expect_reset_regs(_metadata, d, "after VFIO_DEVICE_RESET");
	memset(d->md, 0, 2 * MB_MIB);	/* zero again; nothing else written */
	munmap(c->ring, c->ring_len);
	c->ring_len = MB_PAGE;
	c->ring = mmap(NULL, c->ring_len, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
	ASSERT_NE(MAP_FAILED, c->ring);
	ASSERT_EQ(0, vfio_mdev_dma_map(&d->v, c->ring, RING_IOVA, c->ring_len))
		TH_LOG("mapping the ring again: %s", mdev_lib_error());
	mb_set_command(_metadata, d, PCI_COMMAND_MASTER, 0);
	d->tail = 0;
	mb_ring_setup_at(_metadata, d, RING_IOVA, c->ring, 128);
	x[0] = mb_fill(100, 3 * MB_PAGE + 5, 0xa1b2c3d4, DD);
	x[1] = mb_copy(MB_MIB + 7, G(0x12345), 70000, DD);
	x[2] = mb_copy(G(2 * MB_MIB + 3), 50, 20000, SD);
	x[3] = mb_copy(3 * MB_MIB, MB_MIB, 100000, DD | SD);
	x[4] = mb_fence(G(0x40), 0x600d, 0);
	mb_run(_metadata, d, x, 5);
	EXPECT_EQ(0x600d, RD64(MBLIT_REG_FENCE_LAST));
	mb_check_guest(_metadata, d, "after the reset");
	mb_check_dev(_metadata, d, 0, 4 * MB_MIB, "after the reset");
	EXPECT_EQ(0, mb_debugfs(_metadata, d, "pinned_pages"));
}

TEST_F_TIMEOUT(hostile, unmap_with_bar2_readers_never_leaves_pins, 600)
{
	unmap_ring_mid_command(_metadata, &self->c, variant->backend, true);
}

TEST_F_TIMEOUT(hostile, unmap_during_device_only_copy_releases_ring_page, 300)
{
	unmap_ring_mid_command(_metadata, &self->c, variant->backend, false);
}

/* ---- 1c. no driver lock across a user copy --------------------------------- */

/*
 * One thread is held (userfaultfd) inside the user copy of each access
 * path in turn: BAR2 read and write, BAR0 write, config write and read,
 * the DEVICE_STATE state area read and write (device stopped), a data_fd
 * read (PRE_COPY) and a data_fd write (RESUMING, on the second device).
 * Meanwhile the engine of a running device must complete a device->device
 * and a guest->device COPY, BAR0 and the migration state must read, and
 * the held device's guest buffer must unmap and map again.  Then the copy
 * is released and the access must have done exactly its job.
 */
TEST_F_TIMEOUT(hostile_dev, no_lock_held_across_user_copies, 900)
{
	struct hctx *c = &self->c;
	struct mb_dev *a = open_dev(_metadata, c, 0, "mblit-16m",
				    VFIO_BACKEND_TYPE1);
	struct mb_dev *b = open_dev(_metadata, c, 1, "mblit-16m",
				    VFIO_BACKEND_TYPE1);
	struct mig_buf stream = { 0 };
	struct uffd_area ua;
	struct held h;
	struct probe pr;
	uint8_t *src_a, *src_b, *fill, *snap, cfg[MBLIT_CONFIG_SIZE], one;
	const uint64_t v = 0x0badc0ffee0ddf00ULL;
	const size_t len64k = 64 * 1024;
	unsigned int k = 0;
	size_t slen;
	int fd = -1;

	/* Device-memory sources for the probes' COPYs, on both devices. */
	src_a = malloc(MB_MIB);
	src_b = malloc(MB_MIB);
	ASSERT_TRUE(src_a && src_b);
	mb_rand_fill(a, src_a, MB_MIB);
	mb_rand_fill(b, src_b, MB_MIB);
	mb_bar2_wr(_metadata, a, 0, src_a, MB_MIB);
	mb_bar2_wr(_metadata, b, 0, src_b, MB_MIB);

	/* A's whole stream, for the RESUMING path (A has no ring yet). */
	set_ok(_metadata, a, VFIO_DEVICE_STATE_STOP_COPY, &fd, true);
	c->fds[0] = fd;
	read_eof(_metadata, fd, &stream, NULL);
	close(fd);
	c->fds[0] = -1;
	set_ok(_metadata, a, VFIO_DEVICE_STATE_RUNNING, NULL, false);
	ASSERT_LT(0, stream.len);

	mb_ring_setup(_metadata, a, 64);
	mb_ring_setup(_metadata, b, 64);

	/* BAR2 read: copy_to_user of device memory. */
	uffd_area_init(_metadata, &ua, len64k);
	fill = calloc(1, ua.len);
	ASSERT_NE(NULL, fill);
	held_init(&h, DFD(a), false, true, a->bar2.offset, len64k);
	probe_init(&pr, a, a, k++);
	run_held(_metadata, "BAR2 read", &h, &ua, fill, &pr);
	EXPECT_EQ((ssize_t)len64k, h.ret) TH_LOG("BAR2 read: %s", strerror(h.err));
	EXPECT_EQ(0, memcmp(ua.p, src_a, len64k)) TH_LOG("BAR2 read: wrong bytes");
	uffd_area_fini(&ua);
	free(fill);

	/* BAR2 write: copy_from_user into device memory. */
	uffd_area_init(_metadata, &ua, len64k);
	fill = malloc(ua.len);
	ASSERT_NE(NULL, fill);
	mb_rand_fill(a, fill, ua.len);
	held_init(&h, DFD(a), true, true, a->bar2.offset + 15 * MB_MIB, len64k);
	probe_init(&pr, a, a, k++);
	run_held(_metadata, "BAR2 write", &h, &ua, fill, &pr);
	EXPECT_EQ((ssize_t)len64k, h.ret) TH_LOG("BAR2 write: %s", strerror(h.err));
	{
		uint8_t *got = malloc(len64k);

		ASSERT_NE(NULL, got);
		mb_bar2_rd(_metadata, a, 15 * MB_MIB, got, len64k);
		EXPECT_EQ(0, memcmp(got, fill, len64k))
			TH_LOG("BAR2 write: device memory does not have the bytes");
		free(got);
	}
	uffd_area_fini(&ua);
	free(fill);

	/* BAR0 write (SCRATCH1). */
	uffd_area_init(_metadata, &ua, 8);
	fill = calloc(1, ua.len);
	ASSERT_NE(NULL, fill);
	memcpy(fill, &v, 8);
	held_init(&h, DFD(a), true, true, a->bar0.offset + MBLIT_REG_SCRATCH1, 8);
	probe_init(&pr, a, a, k++);
	run_held(_metadata, "BAR0 write", &h, &ua, fill, &pr);
	EXPECT_EQ(8, h.ret) TH_LOG("BAR0 write: %s", strerror(h.err));
	EXPECT_EQ(v, mb_rd(_metadata, a, MBLIT_REG_SCRATCH1, 8));
	uffd_area_fini(&ua);
	free(fill);

	/* Config space write (interrupt line). */
	uffd_area_init(_metadata, &ua, 1);
	fill = calloc(1, ua.len);
	ASSERT_NE(NULL, fill);
	fill[0] = 0x5c;
	held_init(&h, DFD(a), true, true, a->cfg.offset + PCI_INTERRUPT_LINE, 1);
	probe_init(&pr, a, a, k++);
	run_held(_metadata, "config write", &h, &ua, fill, &pr);
	EXPECT_EQ(1, h.ret) TH_LOG("config write: %s", strerror(h.err));
	MB_ACC_OK(a, &a->cfg, false, PCI_INTERRUPT_LINE, &one, 1);
	EXPECT_EQ(0x5c, one);
	uffd_area_fini(&ua);
	free(fill);

	/* Config space read (all of it). */
	uffd_area_init(_metadata, &ua, MBLIT_CONFIG_SIZE);
	fill = calloc(1, ua.len);
	ASSERT_NE(NULL, fill);
	held_init(&h, DFD(a), false, true, a->cfg.offset, MBLIT_CONFIG_SIZE);
	probe_init(&pr, a, a, k++);
	run_held(_metadata, "config read", &h, &ua, fill, &pr);
	EXPECT_EQ(MBLIT_CONFIG_SIZE, h.ret) TH_LOG("config read: %s",
						   strerror(h.err));
	MB_ACC_OK(a, &a->cfg, false, 0, cfg, MBLIT_CONFIG_SIZE);
	EXPECT_EQ(0, memcmp(cfg, ua.p, MBLIT_CONFIG_SIZE))
		TH_LOG("config read: wrong bytes");
	uffd_area_fini(&ua);
	free(fill);

	/* The DEVICE_STATE state area, read (A stopped: B's engine runs). */
	ASSERT_EQ(0, mb_runctl_set(a, &c->sr[0], STOPPED));
	snap = mb_state_read(_metadata, a, &c->sr[0], &slen);
	uffd_area_init(_metadata, &ua, slen);
	fill = calloc(1, ua.len);
	ASSERT_NE(NULL, fill);
	held_init(&h, DFD(a), false, true, c->sr[0].offset + AREA, slen);
	probe_init(&pr, a, b, k++);
	run_held(_metadata, "DEVICE_STATE read", &h, &ua, fill, &pr);
	EXPECT_EQ((ssize_t)slen, h.ret) TH_LOG("DEVICE_STATE read: %s",
					       strerror(h.err));
	EXPECT_EQ(0, memcmp(ua.p, snap, slen)) TH_LOG("DEVICE_STATE read: wrong bytes");
	uffd_area_fini(&ua);

	/* ... and written back: RUNNING then applies it. */
	uffd_area_init(_metadata, &ua, slen);
	memcpy(fill, snap, slen);
	held_init(&h, DFD(a), true, true, c->sr[0].offset + AREA, slen);
	probe_init(&pr, a, b, k++);
	run_held(_metadata, "DEVICE_STATE write", &h, &ua, fill, &pr);
	EXPECT_EQ((ssize_t)slen, h.ret) TH_LOG("DEVICE_STATE write: %s",
					       strerror(h.err));
	EXPECT_EQ(0, mb_runctl_set(a, &c->sr[0], RUNNING))
		TH_LOG("RUNNING with the state written through the held copy");
	EXPECT_EQ(RUNNING, mb_runctl_get(a, &c->sr[0]));
	uffd_area_fini(&ua);
	free(fill);
	free(snap);

	/* A data_fd read in PRE_COPY (A runs). */
	set_ok(_metadata, a, VFIO_DEVICE_STATE_PRE_COPY, &fd, true);
	c->fds[0] = fd;
	uffd_area_init(_metadata, &ua, len64k);
	fill = calloc(1, ua.len);
	ASSERT_NE(NULL, fill);
	held_init(&h, fd, false, false, 0, len64k);
	probe_init(&pr, a, a, k++);
	run_held(_metadata, "data_fd read", &h, &ua, fill, &pr);
	EXPECT_LT(0, h.ret) TH_LOG("data_fd read: %s", strerror(h.err));
	EXPECT_GE((ssize_t)len64k, h.ret);
	if (h.ret >= 4)
		EXPECT_EQ(MIG_MBLIT_MAGIC_PAGES, mig_le32(ua.p));
	uffd_area_fini(&ua);
	free(fill);
	set_ok(_metadata, a, VFIO_DEVICE_STATE_RUNNING, NULL, false);
	close(fd);
	c->fds[0] = -1;

	/* A data_fd write in RESUMING, on B (A's engine runs). */
	set_ok(_metadata, b, VFIO_DEVICE_STATE_RESUMING, &fd, true);
	c->fds[1] = fd;
	uffd_area_init(_metadata, &ua, stream.len);
	fill = calloc(1, ua.len);
	ASSERT_NE(NULL, fill);
	memcpy(fill, stream.p, stream.len);
	held_init(&h, fd, true, false, 0, stream.len);
	probe_init(&pr, b, a, k++);
	run_held(_metadata, "data_fd write", &h, &ua, fill, &pr);
	EXPECT_EQ((ssize_t)stream.len, h.ret) TH_LOG("data_fd write: %s",
						     strerror(h.err));
	uffd_area_fini(&ua);
	free(fill);
	set_ok(_metadata, b, VFIO_DEVICE_STATE_RUNNING, NULL, false);
	close(fd);
	c->fds[1] = -1;
	{
		uint8_t *got = malloc(MB_MIB);

		ASSERT_NE(NULL, got);
		mb_bar2_rd(_metadata, b, 0, got, MB_MIB);
		EXPECT_EQ(0, memcmp(got, src_a, MB_MIB))
			TH_LOG("B does not have A's device memory after the resume");
		free(got);
	}

	EXPECT_EQ(0, mb_debugfs(_metadata, a, "pinned_pages"));
	EXPECT_EQ(0, mb_debugfs(_metadata, b, "pinned_pages"));
	mig_buf_free(&stream);
	free(src_a);
	free(src_b);
}

/* ---- 1d. a BAR0 write racing a stop ------------------------------------------ */

struct runctl_call {
	struct mb_dev *d;
	const struct vfio_region_info *sr;
	uint8_t v;
	int ret;
	int done;
	pthread_t th;
};

static void *runctl_fn(void *arg)
{
	struct runctl_call *r = arg;

	r->ret = mb_runctl_set(r->d, r->sr, r->v);
	__atomic_store_n(&r->done, 1, __ATOMIC_RELEASE);
	return NULL;
}

/*
 * A BAR0 write of SCRATCH0 is held in its copy_from_user while the device
 * is stopped through run-control.  Released, the write is either refused
 * (EBUSY: the device is stopped) or it happened before the stop and is in
 * the snapshot; a write that lands after the snapshot would be lost to the
 * migration destination.
 */
TEST_F_TIMEOUT(hostile_dev, bar0_write_racing_stop_is_not_lost, 300)
{
	struct hctx *c = &self->c;
	struct mb_dev *d = open_dev(_metadata, c, 0, "mblit-16m",
				    VFIO_BACKEND_TYPE1);
	const uint64_t old = 0x0123456789abcdefULL, val = 0xfeedfacecafebeefULL;
	struct runctl_call rc = { .d = d, .sr = &c->sr[0], .v = STOPPED };
	struct uffd_area ua;
	struct held h;
	uint64_t snap_val, live;
	bool stopped, released;
	uint8_t *fill, *snap;
	size_t len;
	int ret;

	WR64(MBLIT_REG_SCRATCH0, old);
	uffd_area_init(_metadata, &ua, 8);
	fill = calloc(1, ua.len);
	ASSERT_NE(NULL, fill);
	memcpy(fill, &val, 8);
	held_init(&h, DFD(d), true, true, d->bar0.offset + MBLIT_REG_SCRATCH0, 8);
	h.buf = ua.p;
	ASSERT_EQ(0, pthread_create(&h.th, NULL, held_fn, &h));
	ret = uffd_wait_fault(&ua, &h, FAULT_WAIT_MS);
	if (ret) {
		uffd_resolve(&ua, fill);
		thread_wait(&h.done, JOIN_MS);
		ASSERT_EQ(0, ret) TH_LOG("the BAR0 write did not fault on its buffer: %s (it returned %zd, %s)",
					 strerror(-ret), h.ret, strerror(h.err));
	}

	/* The write is past any check made before its copy: stop now. */
	ASSERT_EQ(0, pthread_create(&rc.th, NULL, runctl_fn, &rc));
	stopped = thread_wait(&rc.done, PROBE_MS);
	EXPECT_TRUE(stopped)
		TH_LOG("writing STOPPED did not complete while a BAR0 write was held in its user copy");
	ASSERT_EQ(0, uffd_resolve(&ua, fill));
	released = thread_wait(&h.done, JOIN_MS);
	if (!stopped)
		stopped = thread_wait(&rc.done, JOIN_MS);
	ASSERT_TRUE(released) TH_LOG("the BAR0 write did not return");
	ASSERT_TRUE(stopped) TH_LOG("the stop did not return");
	pthread_join(h.th, NULL);
	pthread_join(rc.th, NULL);
	ASSERT_EQ(0, rc.ret) TH_LOG("STOPPED: %s", strerror(-rc.ret));

	snap = mb_state_read(_metadata, d, &c->sr[0], &len);
	ASSERT_LE(SV_REG(R_SCRATCH0) + 8, len);
	snap_val = get64(snap + SV_REG(R_SCRATCH0));
	live = RD64(MBLIT_REG_SCRATCH0);
	TH_LOG("the held BAR0 write returned %zd (%s); SCRATCH0 reads %#llx, the snapshot has %#llx",
	       h.ret, h.ret < 0 ? strerror(h.err) : "ok",
	       (unsigned long long)live, (unsigned long long)snap_val);
	if (h.ret == 8) {
		EXPECT_EQ(val, snap_val)
			TH_LOG("the write succeeded but is not in the snapshot: lost to the destination");
		EXPECT_EQ(val, live);
	} else {
		EXPECT_EQ(-1, h.ret);
		EXPECT_EQ(EBUSY, h.err) TH_LOG("a write refused by the stop: %s",
					      strerror(h.err));
		EXPECT_EQ(old, snap_val);
		EXPECT_EQ(old, live) TH_LOG("a refused write changed SCRATCH0");
	}
	/* Running again, the device has the state it was stopped with. */
	ASSERT_EQ(0, mb_runctl_set(d, &c->sr[0], RUNNING));
	EXPECT_EQ(snap_val, RD64(MBLIT_REG_SCRATCH0));
	free(snap);
	free(fill);
	uffd_area_fini(&ua);
}

/* ---- 2. arithmetic on untrusted values ------------------------------------------ */

/*
 * The engine's error-stop counter restored from a (CRC-correct) state blob
 * as 2^64 - 1: the next descriptor error wraps it to 0 (docs/migration.md
 * §1.4 ENGINE; debugfs "errors").
 */
TEST_F_TIMEOUT(hostile_dev, restored_error_counter_at_max_wraps, 300)
{
	struct hctx *c = &self->c;
	struct mb_dev *d = open_dev(_metadata, c, 0, "mblit-16m",
				    VFIO_BACKEND_TYPE1);
	const struct vfio_region_info *sr = &c->sr[0];
	struct mblit_desc x[2];
	uint8_t *b;
	size_t len;
	uint32_t st;

	ASSERT_EQ(0xcbf43926U, crc32_le((const uint8_t *)"123456789", 9));
	ASSERT_EQ(0, mb_runctl_set(d, sr, STOPPED));
	b = mb_state_read(_metadata, d, sr, &len);
	ASSERT_LE(SV_ERRORS + 8 + 4, len);
	ASSERT_EQ(SV_MAGIC, mig_le32(b));
	EXPECT_EQ(0, get64(b + SV_ERRORS));
	put64(b + SV_ERRORS, UINT64_MAX);
	fix_crc(b, len);
	MB_ACC_OK(d, sr, true, AREA, b, len);
	ASSERT_EQ(0, mb_runctl_set(d, sr, RUNNING))
		TH_LOG("a state with the error counter at 2^64 - 1 was refused");
	EXPECT_EQ(UINT64_MAX, mb_debugfs(_metadata, d, "errors"));
	free(b);

	/* A bad opcode: the doorbell write succeeds, the engine stops. */
	mb_ring_setup(_metadata, d, 8);
	x[0] = (struct mblit_desc){ .opcode = 0x42 };
	mb_submit_bad(_metadata, d, x, 1);
	st = mb_wait_error(_metadata, d);
	EXPECT_EQ(MBLIT_ERR_BAD_OPCODE, MBLIT_STATUS_ERR_CODE(st));
	EXPECT_EQ(0x42, RD64(MBLIT_REG_ERR_ADDR));
	EXPECT_EQ(0, mb_debugfs(_metadata, d, "errors"))
		TH_LOG("the counter did not wrap");

	/* The wrapped counter is what the next snapshot carries. */
	ASSERT_EQ(0, mb_runctl_set(d, sr, STOPPED));
	b = mb_state_read(_metadata, d, sr, &len);
	ASSERT_LE(SV_ERRORS + 8 + 4, len);
	EXPECT_EQ(0, get64(b + SV_ERRORS));
	free(b);
	ASSERT_EQ(0, mb_runctl_set(d, sr, RUNNING));

	/* A device reset, and the device works. */
	ASSERT_EQ(0, ioctl(d->v.device_fd, VFIO_DEVICE_RESET))
		TH_LOG("VFIO_DEVICE_RESET: %s", strerror(errno));
	mb_expect_reset_regs(_metadata, d, "after VFIO_DEVICE_RESET");
	mb_set_command(_metadata, d, PCI_COMMAND_MASTER, 0);
	d->tail = 0;
	mb_ring_setup(_metadata, d, 8);
	x[0] = mb_fill(G(0x1000), 5000, 0x01020304, 0);
	x[1] = mb_fence(G(0x40), 77, 0);
	mb_run(_metadata, d, x, 2);
	EXPECT_EQ(77, RD64(MBLIT_REG_FENCE_LAST));
	mb_check_guest(_metadata, d, "after the reset");
}

/*
 * DMA_LOGGING_START with one range of length 0: the VFIO core hands the
 * driver last = first - 1.  EINVAL, and logging stays usable.
 */
TEST_F_TIMEOUT(hostile, dma_logging_start_zero_length_is_einval, 300)
{
	struct hctx *c = &self->c;
	struct mb_dev *d = open_dev(_metadata, c, 0, "mblit-16m",
				    variant->backend);
	const struct vfio_device_feature_dma_logging_range zero = {
		.iova = 0x1000, .length = 0,
	};
	const struct vfio_device_feature_dma_logging_range r = {
		.iova = G(0), .length = 0x10000,
	};
	struct mblit_desc x;
	uint64_t bm[1];
	int ret;

	ret = dl_start(d, &zero, 1, MB_PAGE);
	EXPECT_EQ(-EINVAL, ret) TH_LOG("START {0x1000, 0}: %s",
				       ret ? strerror(-ret) : "accepted");
	if (!ret)
		dl_stop(d);
	EXPECT_EQ(-EINVAL, dl_report_4k(d, G(0), 0x10000, bm, 1))
		TH_LOG("logging is on after a refused START");

	/* A valid START / REPORT / STOP. */
	ret = dl_start(d, &r, 1, MB_PAGE);
	ASSERT_EQ(0, ret) TH_LOG("START: %s", strerror(-ret));
	mb_ring_setup(_metadata, d, 8);
	x = mb_fill(G(0x3000), 0x1000, 0x5a6b7c8d, 0);
	mb_run(_metadata, d, &x, 1);
	ret = dl_report_4k(d, G(0), 0x10000, bm, 1);
	EXPECT_EQ(0, ret) TH_LOG("REPORT: %s", strerror(-ret));
	EXPECT_EQ(1ULL << 3, bm[0]);
	EXPECT_EQ(0, dl_stop(d));
	EXPECT_EQ(-EINVAL, dl_report_4k(d, G(0), 0x10000, bm, 1));
	mb_check_guest(_metadata, d, "after logging");
}

/*
 * Logging on, guest pages mapped at the very top of the IOVA space, a
 * FENCE to its last 8 bytes: the engine's page arithmetic must not
 * overflow, the FENCE completes (and its page is logged where the VFIO
 * core lets a range express it), and closing the device returns.
 */
TEST_F_TIMEOUT(hostile, fence_to_top_of_iova_space_is_logged, 300)
{
	struct hctx *c = &self->c;
	struct mb_dev *d = open_dev(_metadata, c, 0, "mblit-16m",
				    variant->backend);
	const uint64_t top_fence = 0xfffffffffffffff8ULL;
	const uint64_t v1 = 0x1111222233334444ULL, v2 = 0x5555666677778888ULL;
	struct vfio_device_feature_dma_logging_range r[3];
	const size_t words = MB_BUF_SIZE / MB_PAGE / 64;
	uint64_t base = 0, addr, *bm;
	bool top_mapped, hi_logged = true;
	struct mblit_desc x[2];
	unsigned int k, i;
	uint32_t st;
	int ret;

	bm = calloc(words, 8);
	ASSERT_NE(NULL, bm);
	c->top = mmap(NULL, 2 * MB_PAGE, PROT_READ | PROT_WRITE,
		      MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
	ASSERT_NE(MAP_FAILED, c->top);

	/* Two pages ending at 2^64, or as high as the back-end allows. */
	for (k = 64; k > 32 && !base; k--) {
		uint64_t at = (k == 64 ? 0 : 1ULL << k) - 2 * MB_PAGE;

		if (!vfio_mdev_dma_map(&d->v, c->top, at, 2 * MB_PAGE))
			base = at;
		else if (k == 64)
			TH_LOG("%s refuses [%#llx, +8 KiB): %s",
			       vfio_backend_name(variant->backend),
			       (unsigned long long)at, mdev_lib_error());
	}
	ASSERT_NE(0, base) TH_LOG("no mapping ending at 2^k (k > 32) accepted");
	top_mapped = base == 0xffffffffffffe000ULL;
	if (!top_mapped)
		TH_LOG("the highest mapping accepted: [%#llx, +8 KiB)",
		       (unsigned long long)base);

	r[0] = (struct vfio_device_feature_dma_logging_range){ MB_IOVA, MB_BUF_SIZE };
	r[1] = (struct vfio_device_feature_dma_logging_range){ base, MB_PAGE };
	r[2] = (struct vfio_device_feature_dma_logging_range){ base + MB_PAGE, MB_PAGE };
	ret = dl_start(d, r, 3, MB_PAGE);
	if (ret == -EOVERFLOW && top_mapped) {
		TH_LOG("the VFIO core cannot express a range ending at 2^64 (EOVERFLOW): logging the page below it");
		hi_logged = false;
		ret = dl_start(d, r, 2, MB_PAGE);
	}
	ASSERT_EQ(0, ret) TH_LOG("DMA_LOGGING_START: %s", strerror(-ret));

	mb_ring_setup(_metadata, d, 16);
	x[0] = mb_fence(base + 0xff8, v1, 0);
	x[1] = mb_fence(base + MB_PAGE + 0xff8, v2, 0);	/* top_fence if mapped */
	mb_run(_metadata, d, x, 2);
	EXPECT_EQ(v1, get64(c->top + 0xff8));
	EXPECT_EQ(v2, get64(c->top + MB_PAGE + 0xff8));
	EXPECT_EQ(v2, RD64(MBLIT_REG_FENCE_LAST));

	/* Logged: the fenced pages, nothing in the guest buffer. */
	ret = dl_report_4k(d, base, MB_PAGE, bm, 1);
	EXPECT_EQ(0, ret) TH_LOG("REPORT [%#llx, +4 KiB): %s",
				 (unsigned long long)base, strerror(-ret));
	EXPECT_EQ(1, bm[0]) TH_LOG("the page below the top one");
	if (hi_logged) {
		ret = dl_report_4k(d, base + MB_PAGE, MB_PAGE, bm, 1);
		EXPECT_EQ(0, ret) TH_LOG("REPORT [%#llx, +4 KiB): %s",
					 (unsigned long long)(base + MB_PAGE),
					 strerror(-ret));
		EXPECT_EQ(1, bm[0]) TH_LOG("the top page");
	}
	ret = dl_report_4k(d, MB_IOVA, MB_BUF_SIZE, bm, words);
	EXPECT_EQ(0, ret);
	for (i = 0; i < words && !bm[i]; i++)
		;
	EXPECT_EQ(words, i) TH_LOG("guest buffer pages logged (word %u)", i);

	if (!top_mapped) {
		/* Not mapped here: an engine error, not a hang. */
		x[0] = mb_fence(top_fence, 0x99, 0);
		mb_submit_bad(_metadata, d, x, 1);
		st = mb_wait_error(_metadata, d);
		addr = RD64(MBLIT_REG_ERR_ADDR);
		TH_LOG("FENCE to %#llx: code %#x, ERR_ADDR %#llx",
		       (unsigned long long)top_fence, MBLIT_STATUS_ERR_CODE(st),
		       (unsigned long long)addr);
		EXPECT_EQ(MBLIT_ERR_IOVA_FAULT, MBLIT_STATUS_ERR_CODE(st));
		mb_engine_reset(_metadata, d);
	}
	EXPECT_EQ(0, dl_stop(d));
	EXPECT_EQ(0, mb_debugfs(_metadata, d, "pinned_pages"));
	/* dma_unmap of a range that ends at 2^64 (or near it). */
	ret = vfio_mdev_dma_unmap(&d->v, base, 2 * MB_PAGE);
	EXPECT_EQ(0, ret) TH_LOG("%s", mdev_lib_error());

	/* Closing the device returns (no engine work left hanging). */
	vfio_mdev_close(&d->v);
	d->mapped = false;
	TH_LOG("closed");
	free(bm);
}

/* ---- 3. memory --------------------------------------------------------------------- */

/*
 * Create a 256 MiB mdev, write 64 MiB, enter PRE_COPY, close, remove it,
 * keep the data_fd: three times.  The removed mdev's memory is freed (its
 * stale data_fd fails with ENODEV), its budget and debugfs directory are
 * gone, and MemAvailable ends no more than 32 MiB below where it started
 * (the 32 MiB are slab caches and kernel bookkeeping; a driver that keeps
 * the device memory alive loses 64 MiB a round).
 */
TEST_F_TIMEOUT(hostile_dev, removed_mdev_frees_memory_despite_open_data_fd, 600)
{
	const uint64_t written = 64 * MB_MIB, slack = 32 * MB_MIB;
	struct hctx *c = &self->c;
	struct mb_dev *d = &c->d[0];
	char uuid[MDEV_UUID_LEN + 1], path[MDEV_PATH_MAX];
	uint8_t *p, tmp[4096];
	uint64_t mem0, mem, end, off;
	int avail0, round, fd;
	ssize_t n;

	p = malloc(MB_MIB);
	ASSERT_NE(NULL, p);
	memset(p, 0x5a, MB_MIB);
	avail0 = mdev_type_available("mblit-256m");
	ASSERT_LE(1, avail0) TH_LOG("mblit-256m: %s", avail0 < 0 ?
				    mdev_lib_error() : "no budget");
	mem0 = mem_available(_metadata);
	TH_LOG("MemAvailable %llu MiB, mblit-256m available %d",
	       (unsigned long long)(mem0 / MB_MIB), avail0);

	for (round = 0; round < 3; round++) {
		mb_init(d);
		open_bare(_metadata, c, 0, "mblit-256m", VFIO_BACKEND_TYPE1);
		memcpy(uuid, d->uuid, sizeof(uuid));
		for (off = 0; off < written; off += MB_MIB) {
			p[0] = off / MB_MIB;
			MB_ACC_OK(d, &d->bar2, true, off, p, MB_MIB);
		}
		fd = -1;
		set_ok(_metadata, d, VFIO_DEVICE_STATE_PRE_COPY, &fd, true);
		c->fds[round] = fd;
		n = read(fd, tmp, sizeof(tmp));
		EXPECT_EQ((ssize_t)sizeof(tmp), n) TH_LOG("PRE_COPY read: %s",
							  strerror(errno));

		vfio_mdev_close(&d->v);
		ASSERT_EQ(0, mdev_remove(uuid)) TH_LOG("%s", mdev_lib_error());
		d->created = false;

		errno = 0;
		n = read(fd, tmp, sizeof(tmp));
		EXPECT_EQ(-1, n) TH_LOG("round %d: the removed mdev's data_fd gave %zd bytes",
					round, n);
		EXPECT_EQ(ENODEV, errno) TH_LOG("round %d: stale data_fd: %s",
						round, strerror(errno));
		EXPECT_EQ(avail0, mdev_type_available("mblit-256m"));
		snprintf(path, sizeof(path), MB_DEBUGFS "/%s", uuid);
		EXPECT_FALSE(path_exists(path))
			TH_LOG("round %d: %s still exists", round, path);

		/* Freed memory may take a moment to show (RCU, workers). */
		end = mb_now_ms() + MEM_WAIT_MS;
		while ((mem = mem_available(_metadata)) + slack < mem0 &&
		       mb_now_ms() < end)
			mb_sleep_ms(100);
		TH_LOG("round %d: MemAvailable %llu MiB (started at %llu MiB)",
		       round, (unsigned long long)(mem / MB_MIB),
		       (unsigned long long)(mem0 / MB_MIB));
		EXPECT_LE(mem0, mem + slack)
			TH_LOG("round %d: %llu MiB less available than before round 1",
			       round, (unsigned long long)((mem0 - mem) / MB_MIB));
	}
	for (round = 0; round < 3; round++) {
		close(c->fds[round]);
		c->fds[round] = -1;
	}
	free(p);
}

static void cg_enter(struct __test_metadata *_metadata, struct hctx *c)
{
	char buf[256], path[128], pid[32];

	if (!path_exists(CG_ROOT "/cgroup.controllers")) {
		mkdir(CG_ROOT, 0755);
		ASSERT_EQ(0, mount("cgroup2", CG_ROOT, "cgroup2", 0, NULL))
			TH_LOG("mount cgroup2 on " CG_ROOT ": %s", strerror(errno));
	}
	ASSERT_LE(0, sysfs_read_str(CG_ROOT "/cgroup.controllers", buf,
				    sizeof(buf))) TH_LOG("%s", mdev_lib_error());
	ASSERT_NE(NULL, strstr(buf, "memory"))
		TH_LOG("no memory controller in '%s'", buf);
	ASSERT_EQ(0, sysfs_write_str(CG_ROOT "/cgroup.subtree_control",
				     "+memory")) TH_LOG("%s", mdev_lib_error());
	snprintf(c->cg, sizeof(c->cg), CG_ROOT "/mblit-hostile-%d", getpid());
	ASSERT_EQ(0, mkdir(c->cg, 0755)) TH_LOG("mkdir %s: %s", c->cg,
						strerror(errno));
	c->cg_made = true;
	snprintf(path, sizeof(path), "%s/cgroup.procs", c->cg);
	snprintf(pid, sizeof(pid), "%d", getpid());
	ASSERT_EQ(0, sysfs_write_str(path, pid)) TH_LOG("%s", mdev_lib_error());
	c->cg_moved = true;
}

static uint64_t cg_current(struct __test_metadata *_metadata, struct hctx *c)
{
	char path[128];
	long v = -1;

	snprintf(path, sizeof(path), "%s/memory.current", c->cg);
	ASSERT_EQ(0, sysfs_read_long(path, &v)) TH_LOG("%s", mdev_lib_error());
	ASSERT_LE(0, v);
	return v;
}

#define EXPECT_CHARGED(before, after, what) do { \
	EXPECT_LE((before) + 30 * MB_MIB, (after)) \
		TH_LOG("%s: memory.current rose by %lld KiB, want >= 30 MiB", \
		       what, ((long long)(after) - (long long)(before)) / 1024); \
} while (0)

/*
 * Memory a user's actions allocate is charged to its memory cgroup: 32 MiB
 * of device memory written through BAR2, the DEVICE_STATE snapshot of it
 * and the incoming state written back, and the pages of a v2 stream
 * resumed into a fresh device.
 */
TEST_F_TIMEOUT(hostile_dev, device_memory_is_charged_to_memcg, 600)
{
	const size_t W = 32 * MB_MIB, cap = 40 * MB_MIB;
	struct hctx *c = &self->c;
	struct mb_dev *d;
	uint64_t m0, m1, m2, m3, m4, m5, off;
	size_t len, slen = 0;
	uint8_t *u, pat[MB_PAGE];
	ssize_t n;
	int fd = -1, ret;

	/* Our own buffer first, so its pages are not part of the deltas. */
	u = mmap(NULL, cap, PROT_READ | PROT_WRITE,
		 MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
	ASSERT_NE(MAP_FAILED, u);
	for (off = 0; off < W; off += MB_MIB)
		memset(u + off, 1 + off / MB_MIB, MB_MIB);
	memset(u + W, 0, cap - W);

	cg_enter(_metadata, c);
	d = open_bare(_metadata, c, 0, "mblit-256m", VFIO_BACKEND_TYPE1);

	m0 = cg_current(_metadata, c);
	for (off = 0; off < W; off += MB_MIB)
		MB_ACC_OK(d, &d->bar2, true, off, u + off, MB_MIB);
	m1 = cg_current(_metadata, c);
	EXPECT_CHARGED(m0, m1, "32 MiB written to BAR2");

	ASSERT_EQ(0, mb_runctl_set(d, &c->sr[0], STOPPED));
	m2 = cg_current(_metadata, c);
	EXPECT_CHARGED(m1, m2, "the DEVICE_STATE snapshot");
	len = mb_state_hdr(_metadata, d, &c->sr[0], MBLIT_STATE_OFF_SIZE, 8);
	ASSERT_GE(cap, len);
	MB_ACC_OK(d, &c->sr[0], false, AREA, u, len);
	m2 = cg_current(_metadata, c);
	MB_ACC_OK(d, &c->sr[0], true, AREA, u, len);
	m3 = cg_current(_metadata, c);
	EXPECT_CHARGED(m2, m3, "the incoming state written to the state area");
	ASSERT_EQ(0, mb_runctl_set(d, &c->sr[0], RUNNING));

	/* The same memory as a v2 stream ... */
	set_ok(_metadata, d, VFIO_DEVICE_STATE_STOP_COPY, &fd, true);
	c->fds[0] = fd;
	while ((n = read(fd, u + slen, cap - slen < MB_MIB ? cap - slen : MB_MIB)) > 0)
		slen += n;
	ASSERT_EQ(0, n) TH_LOG("reading the stream: %s", strerror(errno));
	ASSERT_GT(cap, slen);
	close(fd);
	c->fds[0] = -1;
	set_ok(_metadata, d, VFIO_DEVICE_STATE_RUNNING, NULL, false);
	mb_close(_metadata, d);
	mb_init(d);

	/* ... resumed into a fresh device. */
	d = open_bare(_metadata, c, 0, "mblit-256m", VFIO_BACKEND_TYPE1);
	set_ok(_metadata, d, VFIO_DEVICE_STATE_RESUMING, &fd, true);
	c->fds[0] = fd;
	m4 = cg_current(_metadata, c);
	ret = mig_write_stream(fd, u, slen, NULL, NULL);
	ASSERT_EQ(0, ret) TH_LOG("writing the stream: %s", strerror(-ret));
	m5 = cg_current(_metadata, c);
	EXPECT_CHARGED(m4, m5, "the pages of a v2 stream resumed");
	set_ok(_metadata, d, VFIO_DEVICE_STATE_RUNNING, NULL, false);
	close(fd);
	c->fds[0] = -1;
	MB_ACC_OK(d, &d->bar2, false, W - MB_PAGE, pat, MB_PAGE);
	EXPECT_EQ(W / MB_MIB, pat[0]);
	EXPECT_EQ(W / MB_MIB, pat[MB_PAGE - 1]);
	TH_LOG("memory.current: %llu, +%lld KiB (BAR2), +%lld KiB (incoming state), +%lld KiB (v2 stream)",
	       (unsigned long long)m0, ((long long)m1 - (long long)m0) / 1024,
	       ((long long)m3 - (long long)m2) / 1024,
	       ((long long)m5 - (long long)m4) / 1024);
	munmap(u, cap);
}

/* ---- 4. every open starts from the reset state ----------------------------------- */

static void cfg_wr(struct __test_metadata *_metadata, struct mb_dev *d,
		   uint32_t off, uint32_t v, int w)
{
	MB_ACC_OK(d, &d->cfg, true, off, &v, w);
}

/*
 * Leave something of this user everywhere: device memory, config space,
 * registers, interrupt state and an MSI trigger, and (by @round) the
 * device stopped through run-control or v2.
 */
static void dirty_everything(struct __test_metadata *_metadata,
			     struct hctx *c, int round)
{
	struct mb_dev *d = &c->d[0];
	const uint8_t msi = MBLIT_MSI_CAP_OFFSET;
	struct mblit_desc x;
	uint8_t *p = malloc(MB_MIB);

	ASSERT_NE(NULL, p);
	mb_rand_fill(d, p, MB_MIB);
	mb_bar2_wr(_metadata, d, 0, p, MB_MIB);
	mb_bar2_wr(_metadata, d, 7 * MB_MIB + 123, p, MB_MIB);
	mb_bar2_wr(_metadata, d, d->mem - MB_MIB, p, MB_MIB);
	free(p);

	mb_set_command(_metadata, d, PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER, 0);
	cfg_wr(_metadata, d, PCI_CACHE_LINE_SIZE, 0x10, 1);
	cfg_wr(_metadata, d, PCI_INTERRUPT_LINE, 0x0b, 1);
	cfg_wr(_metadata, d, PCI_BASE_ADDRESS_0, 0xfebf0000, 4);
	cfg_wr(_metadata, d, msi + PCI_MSI_ADDRESS_LO, 0xfee00000, 4);
	cfg_wr(_metadata, d, msi + PCI_MSI_ADDRESS_HI, 0x1, 4);
	cfg_wr(_metadata, d, msi + PCI_MSI_DATA_64, 0x4041, 2);
	cfg_wr(_metadata, d, msi + PCI_MSI_FLAGS, PCI_MSI_FLAGS_ENABLE, 2);
	ASSERT_EQ(0, mb_set_trigger(d, VFIO_PCI_MSI_IRQ_INDEX, c->efd))
		TH_LOG("SET_IRQS MSI");

	/* Registers: a ring, a FENCE with IRQ, an error stop. */
	mb_engine_reset(_metadata, d);
	mb_ring_setup(_metadata, d, 16);
	x = mb_fence(G(0x40), 0xf00d0000ULL + round, MBLIT_FLAG_IRQ);
	mb_run(_metadata, d, &x, 1);
	EXPECT_LE(1, mb_efd_collect(_metadata, c->efd, 1, MB_IRQ_WAIT_MS))
		TH_LOG("round %d: no MSI for the FENCE", round);
	x = (struct mblit_desc){ .opcode = 0x42 };
	mb_submit_bad(_metadata, d, &x, 1);
	mb_wait_error(_metadata, d);
	mb_efd_collect(_metadata, c->efd, 1, MB_IRQ_WAIT_MS);
	WR32(MBLIT_REG_INT_MASK, MBLIT_INT_ALL);
	WR64(MBLIT_REG_SCRATCH0, 0x5c5c5c5c00000000ULL + round);
	WR64(MBLIT_REG_SCRATCH1, 0x1111111111111111ULL);
	WR64(MBLIT_REG_SCRATCH2, 0x2222222222222222ULL);
	WR64(MBLIT_REG_SCRATCH3, 0x3333333333333333ULL);

	/* Migration state left behind. */
	if (round == 0)
		ASSERT_EQ(0, mb_runctl_set(d, &c->sr[0], STOPPED));
	if (round == 1)
		ASSERT_EQ(0, mig_set(DFD(d), VFIO_DEVICE_STATE_STOP, NULL));
}

static void expect_fresh(struct __test_metadata *_metadata, struct hctx *c,
			 const char *what)
{
	struct mb_dev *d = &c->d[0];
	uint8_t img[MBLIT_CONFIG_SIZE], got[MBLIT_CONFIG_SIZE];
	struct mblit_desc x;
	int i, bad = 0;

	EXPECT_EQ(VFIO_DEVICE_STATE_RUNNING, mig_get(DFD(d))) TH_LOG("%s", what);
	EXPECT_EQ(RUNNING, mb_runctl_get(d, &c->sr[0])) TH_LOG("%s", what);
	EXPECT_EQ(0, mb_state_hdr(_metadata, d, &c->sr[0],
				  MBLIT_STATE_OFF_SIZE, 8)) TH_LOG("%s", what);
	mb_expect_reset_regs(_metadata, d, what);
	EXPECT_EQ(0, RD64(MBLIT_REG_SCRATCH1)) TH_LOG("%s", what);
	EXPECT_EQ(0, RD64(MBLIT_REG_SCRATCH2)) TH_LOG("%s", what);

	cfg_reset_image(img, d->mem / MB_MIB);
	MB_ACC_OK(d, &d->cfg, false, 0, got, MBLIT_CONFIG_SIZE);
	for (i = 0; i < MBLIT_CONFIG_SIZE; i++)
		if (got[i] != img[i] && bad++ < 16)
			TH_LOG("%s: config byte %#04x reads %#04x, reset value %#04x",
			       what, i, got[i], img[i]);
	EXPECT_EQ(0, bad) TH_LOG("%s: %d config bytes not at reset", what, bad);

	mb_expect_vram_zero(_metadata, d, what);
	memset(d->md, 0, d->mem);

	/* The previous user's MSI eventfd is not wired to this one. */
	mb_set_command(_metadata, d, PCI_COMMAND_MASTER, 0);
	d->tail = 0;
	mb_ring_setup(_metadata, d, 8);
	x = mb_fence(G(0x80), 0xfe4ce, MBLIT_FLAG_IRQ);
	mb_run(_metadata, d, &x, 1);
	mb_wait_int(_metadata, d, MBLIT_INT_FENCE);
	EXPECT_EQ(0, mb_efd_wait(_metadata, c->efd, MB_QUIET_MS))
		TH_LOG("%s: the previous user's MSI eventfd was signalled", what);
}

/*
 * Close a used device and open it again, through either back-end (rounds:
 * the variant's, the other, the variant's again): every open starts from
 * the reset state.
 */
TEST_F_TIMEOUT(hostile, reopen_starts_from_reset_state, 600)
{
	struct hctx *c = &self->c;
	const enum vfio_backend other = variant->backend == VFIO_BACKEND_TYPE1 ?
		VFIO_BACKEND_IOMMUFD : VFIO_BACKEND_TYPE1;
	const enum vfio_backend seq[3] = { variant->backend, other,
					   variant->backend };
	enum vfio_backend cur = variant->backend;
	struct mb_dev *d = open_dev(_metadata, c, 0, "mblit-16m",
				    variant->backend);
	char what[96];
	int r;

	c->efd = mb_eventfd(_metadata);
	for (r = 0; r < 3; r++) {
		dirty_everything(_metadata, c, r);
		vfio_mdev_close(&d->v);
		d->mapped = false;
		reopen(_metadata, c, 0, seq[r]);
		snprintf(what, sizeof(what), "closed on %s, reopened on %s",
			 vfio_backend_name(cur), vfio_backend_name(seq[r]));
		expect_fresh(_metadata, c, what);
		cur = seq[r];
	}
}

/*
 * A destination closed in RESUMING, after taking part of a stream: the
 * next open finds none of the stream's bytes.
 */
TEST_F_TIMEOUT(hostile_dev, close_in_resuming_leaves_no_incoming_data, 300)
{
	struct hctx *c = &self->c;
	struct mb_dev *a = open_dev(_metadata, c, 0, "mblit-16m",
				    VFIO_BACKEND_TYPE1);
	struct mb_dev *b = open_dev(_metadata, c, 1, "mblit-16m",
				    VFIO_BACKEND_TYPE1);
	struct mig_buf s = { 0 };
	uint8_t *p = malloc(MB_MIB);
	int fd = -1, rfd = -1, ret;
	size_t done = 0;

	ASSERT_NE(NULL, p);
	mb_rand_fill(a, p, MB_MIB);
	mb_bar2_wr(_metadata, a, 0, p, MB_MIB);
	mb_bar2_wr(_metadata, a, 9 * MB_MIB + 5, p, 100000);
	free(p);
	set_ok(_metadata, a, VFIO_DEVICE_STATE_PRE_COPY, &fd, true);
	c->fds[0] = fd;
	read_enomsg(_metadata, fd, &s, NULL);
	ASSERT_LT(0, s.len);
	TH_LOG("%zu bytes of pre-copy records", s.len);

	set_ok(_metadata, b, VFIO_DEVICE_STATE_RESUMING, &rfd, true);
	c->fds[1] = rfd;
	ret = mig_write_stream(rfd, s.p, s.len, NULL, &done);
	ASSERT_EQ(0, ret) TH_LOG("write at %zu of %zu: %s", done, s.len,
				 strerror(-ret));

	/* Closed in RESUMING, its data_fd still open. */
	vfio_mdev_close(&b->v);
	b->mapped = false;
	reopen(_metadata, c, 1, VFIO_BACKEND_TYPE1);
	EXPECT_EQ(VFIO_DEVICE_STATE_RUNNING, mig_get(DFD(b)));
	EXPECT_EQ(RUNNING, mb_runctl_get(b, &c->sr[1]));
	mb_expect_vram_zero(_metadata, b, "reopened after a close in RESUMING");
	mb_expect_reset_regs(_metadata, b, "reopened after a close in RESUMING");
	EXPECT_EQ(-1, write(rfd, s.p, 64)) TH_LOG("the old data_fd takes data");
	close(rfd);
	c->fds[1] = -1;

	set_ok(_metadata, a, VFIO_DEVICE_STATE_RUNNING, NULL, false);
	close(fd);
	c->fds[0] = -1;
	mig_buf_free(&s);
}

/* ---- 5. a data_fd read that faults part-way ---------------------------------------- */

/*
 * read() of the source's data_fd into a buffer whose second page is
 * PROT_NONE returns the bytes copied before the fault (the stream advanced
 * by them), not EFAULT; the stream read on from there resumes exactly.
 */
TEST_F_TIMEOUT(hostile_dev, data_fd_partial_read_returns_count, 300)
{
	struct hctx *c = &self->c;
	struct mb_dev *a = open_dev(_metadata, c, 0, "mblit-16m",
				    VFIO_BACKEND_TYPE1);
	struct mb_dev *b = open_dev(_metadata, c, 1, "mblit-16m",
				    VFIO_BACKEND_TYPE1);
	struct mig_buf s = { 0 };
	uint8_t page[MB_PAGE], *two, *va, *vb;
	unsigned int i, kw = 3;
	int fd = -1, rfd = -1, ret;
	size_t done = 0;
	ssize_t n;

	/* Six written pages, and a register. */
	for (i = 0; i < 6; i++) {
		mb_rand_fill(a, page, sizeof(page));
		mb_bar2_wr(_metadata, a, (uint64_t)(i * 613 + 1) * MB_PAGE, page,
			   sizeof(page));
	}
	mb_wr(_metadata, a, MBLIT_REG_SCRATCH0, 8, 0x5ca1ab1eULL);
	set_ok(_metadata, a, VFIO_DEVICE_STATE_PRE_COPY, &fd, true);
	c->fds[0] = fd;

	two = mmap(NULL, 2 * MB_PAGE, PROT_READ | PROT_WRITE,
		   MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
	ASSERT_NE(MAP_FAILED, two);
	ASSERT_EQ(0, mprotect(two + MB_PAGE, MB_PAGE, PROT_NONE));
	errno = 0;
	n = read(fd, two, 2 * MB_PAGE);
	ASSERT_EQ((ssize_t)MB_PAGE, n)
		TH_LOG("read of 8192 bytes, the second page PROT_NONE: %zd (%s)",
		       n, n < 0 ? strerror(errno) : "short or long");
	ASSERT_EQ(0, mig_buf_append(&s, two, n));
	ASSERT_EQ(MIG_MBLIT_MAGIC_PAGES, mig_le32(two));
	/* The fault in the middle of a buffer page: the bytes before it. */
	errno = 0;
	n = read(fd, two + MB_PAGE - 100, 200);
	ASSERT_EQ(100, n) TH_LOG("read of 200 bytes, 100 before PROT_NONE: %zd (%s)",
				 n, n < 0 ? strerror(errno) : "");
	ASSERT_EQ(0, mig_buf_append(&s, two + MB_PAGE - 100, n));
	munmap(two, 2 * MB_PAGE);

	/* The rest of the stream, read normally. */
	read_enomsg(_metadata, fd, &s, NULL);
	set_ok(_metadata, a, VFIO_DEVICE_STATE_STOP_COPY, NULL, false);
	read_eof(_metadata, fd, &s, NULL);
	close(fd);
	c->fds[0] = -1;
	TH_LOG("stream: %zu bytes", s.len);

	/* Resumed into B: byte-exact. */
	set_ok(_metadata, b, VFIO_DEVICE_STATE_RESUMING, &rfd, true);
	c->fds[1] = rfd;
	ret = mig_write_stream(rfd, s.p, s.len, &kw, &done);
	ASSERT_EQ(0, ret) TH_LOG("resume: write at %zu of %zu: %s", done, s.len,
				 strerror(-ret));
	set_ok(_metadata, b, VFIO_DEVICE_STATE_RUNNING, NULL, false);
	close(rfd);
	c->fds[1] = -1;
	va = mb_dup_vram(_metadata, a);
	vb = mb_dup_vram(_metadata, b);
	EXPECT_EQ(0, memcmp(va, vb, a->mem)) TH_LOG("B's device memory differs from A's");
	EXPECT_EQ(0x5ca1ab1eULL, mb_rd(_metadata, b, MBLIT_REG_SCRATCH0, 8));
	free(va);
	free(vb);
	mig_buf_free(&s);
}

/*
 * A pre-copy read whose allocations fail (fail-nth: the 1st, 2nd, ...
 * slab allocation of the read fails) returns an error and loses nothing:
 * every page dirtied before it still reaches the destination, byte-exact.
 * (At 03d0519 a read cleared dirty bits before allocating the record
 * they went into: a failure there dropped those pages for good.)
 */
TEST_F_TIMEOUT(hostile_dev, failed_precopy_read_loses_no_dirty_page, 300)
{
	struct hctx *c = &self->c;
	struct mb_dev *a = open_dev(_metadata, c, 0, "mblit-16m",
				    VFIO_BACKEND_TYPE1);
	struct mb_dev *b = open_dev(_metadata, c, 1, "mblit-16m",
				    VFIO_BACKEND_TYPE1);
	char wait[8] = "", verbose[8] = "";
	unsigned int i, n, injected = 0, kw = 3;
	struct mig_buf s = { 0 };
	uint8_t page[MB_PAGE], *va, *vb, *buf;
	int fd = -1, rfd = -1, nth, left, ret;
	size_t done = 0;
	ssize_t r;

	for (i = 0; i < 3; i++) {
		mb_rand_fill(a, page, sizeof(page));
		mb_bar2_wr(_metadata, a, (uint64_t)(i * 97 + 5) * MB_PAGE, page,
			   sizeof(page));
	}
	set_ok(_metadata, a, VFIO_DEVICE_STATE_PRE_COPY, &fd, true);
	c->fds[0] = fd;
	read_enomsg(_metadata, fd, &s, NULL);
	/* Dirty pages after the initial pass, one of them rewritten. */
	for (i = 0; i < 300; i++) {
		mb_rand_fill(a, page, sizeof(page));
		mb_bar2_wr(_metadata, a, (uint64_t)(i * 11 + 5) * MB_PAGE, page,
			   sizeof(page));
	}

	ASSERT_LE(0, sysfs_read_str(FAILSLAB "/ignore-gfp-wait", wait,
				    sizeof(wait)));
	ASSERT_LE(0, sysfs_read_str(FAILSLAB "/verbose", verbose,
				    sizeof(verbose)));
	ASSERT_EQ(0, sysfs_write_str(FAILSLAB "/ignore-gfp-wait", "N"));
	ASSERT_EQ(0, sysfs_write_str(FAILSLAB "/verbose", "0"));
	nth = open("/proc/thread-self/fail-nth", O_RDWR | O_CLOEXEC);
	ASSERT_LE(0, nth);
	buf = malloc(MB_MIB);
	ASSERT_NE(NULL, buf);
	for (n = 1; n <= 64; n++) {
		ASSERT_EQ(0, fail_nth_set(nth, n));
		r = read(fd, buf, MB_MIB);
		ret = r < 0 ? -errno : 0;
		left = fail_nth_get(nth);
		fail_nth_set(nth, 0);
		if (r > 0)
			ASSERT_EQ(0, mig_buf_append(&s, buf, r));
		if (left != 0)
			break;		/* nothing failed: done */
		injected++;
		/* A failed allocation is ENOMEM, or absorbed (a short read). */
		if (r < 0)
			EXPECT_EQ(-ENOMEM, ret) TH_LOG("read with allocation %u failing: %s",
						       n, strerror(-ret));
	}
	close(nth);
	free(buf);
	sysfs_write_str(FAILSLAB "/ignore-gfp-wait", wait);
	sysfs_write_str(FAILSLAB "/verbose", verbose);
	TH_LOG("%u reads with an allocation failing", injected);
	ASSERT_LT(0, injected);

	/* The rest, then STOP_COPY: B must hold exactly what A holds. */
	r = 0;
	ret = mig_read_stream(fd, &s, NULL, MIG_STREAM_MAX, &done);
	ASSERT_TRUE(ret == 0 || ret == -ENOMSG) TH_LOG("%s", strerror(-ret));
	set_ok(_metadata, a, VFIO_DEVICE_STATE_STOP_COPY, NULL, false);
	read_eof(_metadata, fd, &s, NULL);
	close(fd);
	c->fds[0] = -1;

	set_ok(_metadata, b, VFIO_DEVICE_STATE_RESUMING, &rfd, true);
	c->fds[1] = rfd;
	done = 0;
	ret = mig_write_stream(rfd, s.p, s.len, &kw, &done);
	ASSERT_EQ(0, ret) TH_LOG("resume: write at %zu of %zu: %s", done, s.len,
				 strerror(-ret));
	set_ok(_metadata, b, VFIO_DEVICE_STATE_RUNNING, NULL, false);
	close(rfd);
	c->fds[1] = -1;
	va = mb_dup_vram(_metadata, a);
	vb = mb_dup_vram(_metadata, b);
	EXPECT_EQ(0, memcmp(va, vb, a->mem))
		TH_LOG("B's device memory differs from A's: a dirty page was lost");
	free(va);
	free(vb);
	mig_buf_free(&s);
}

TEST_HARNESS_MAIN
