// SPDX-License-Identifier: GPL-2.0
/*
 * Dirty guest pages (docs/dirty-tracking.md, docs/device.md §8 "Pinning"):
 *
 *  - type1: the container's VFIO_IOMMU_DIRTY_PAGES bitmap, which type1
 *    fills from the pages a mediated device pins with vfio_pin_pages();
 *  - device DMA logging (vfio_log_ops): VFIO_DEVICE_FEATURE_DMA_LOGGING_
 *    START/STOP/REPORT, on both back-ends.
 *
 * Every expected page set is derived from the descriptors the test wrote
 * and the documented policy, and compared exactly: no page missing, none
 * extra.
 *
 * The pin budget (ERR_PIN_BUDGET and recovery) is in mblit_pin_budget.c.
 */
#include "kselftest_harness.h"
#include "dirty_log.h"
#include "mblit_dev.h"

#include <linux/iommufd.h>

#define G(off)		(MB_DATA_IOVA + (off))
#define PAT1		0xa1b2c3d4U
#define PAT2		0x5a6b7c8dU

/* LOG_MAX_RANGES in drivers/vfio/vfio_main.c: PAGE_SIZE / 16. */
#define DL_MAX_RANGES	(4096 / sizeof(struct vfio_device_feature_dma_logging_range))

/* ---- page sets ------------------------------------------------------------ */

/* A set of 4 KiB IOVA pages in [base, base + npages * 4 KiB). */
struct pset {
	uint64_t base, npages;
	uint8_t *in;
};

static void pset_init(struct __test_metadata *_metadata, struct pset *s,
		      uint64_t base, uint64_t size)
{
	s->base = base;
	s->npages = size / MB_PAGE;
	s->in = calloc(s->npages ? s->npages : 1, 1);
	ASSERT_NE(NULL, s->in);
}

static void pset_free(struct pset *s)
{
	free(s->in);
	s->in = NULL;
}

static void pset_clear(struct pset *s)
{
	memset(s->in, 0, s->npages);
}

/* Add every page that [a, a + len) touches and that is in the window. */
static void pset_add(struct pset *s, uint64_t a, uint64_t len)
{
	uint64_t p;

	if (!len)
		return;
	for (p = a & ~(MB_PAGE - 1); p < a + len; p += MB_PAGE)
		if (p >= s->base && (p - s->base) / MB_PAGE < s->npages)
			s->in[(p - s->base) / MB_PAGE] = 1;
}

/* Keep only the pages in one of the n ranges. */
static void pset_restrict(struct pset *s,
			  const struct vfio_device_feature_dma_logging_range *r,
			  unsigned int n)
{
	uint64_t i, p;
	unsigned int k;
	bool keep;

	for (i = 0; i < s->npages; i++) {
		p = s->base + i * MB_PAGE;
		keep = false;
		for (k = 0; k < n; k++)
			if (p >= r[k].iova && p < r[k].iova + r[k].length)
				keep = true;
		if (!keep)
			s->in[i] = 0;
	}
}

static uint64_t pset_count(const struct pset *s)
{
	uint64_t i, n = 0;

	for (i = 0; i < s->npages; i++)
		n += s->in[i];
	return n;
}

/* From a bitmap with one bit per 4 KiB page of the window. */
static void pset_from_bitmap(struct pset *s, const uint64_t *bm)
{
	uint64_t i;

	for (i = 0; i < s->npages; i++)
		s->in[i] = (bm[i / 64] >> (i % 64)) & 1;
}

/* "0x100000000 0x100001000 ..." (static buffer, one at a time). */
static const char *pset_str(const struct pset *s)
{
	static char buf[8192];
	size_t o = 0;
	uint64_t i;

	buf[0] = 0;
	for (i = 0; i < s->npages && o < sizeof(buf) - 32; i++)
		if (s->in[i])
			o += snprintf(buf + o, sizeof(buf) - o, "%s%#llx",
				      o ? " " : "",
				      (unsigned long long)(s->base + i * MB_PAGE));
	if (i < s->npages)
		snprintf(buf + o, sizeof(buf) - o, " ...");
	return o ? buf : "(none)";
}

/* Compare got with want, logging each missing and extra page. */
static void pset_expect_eq(struct __test_metadata *_metadata,
			   const struct pset *want, const struct pset *got,
			   const char *what)
{
	uint64_t i, missing = 0, extra = 0;

	ASSERT_EQ(want->base, got->base);
	ASSERT_EQ(want->npages, got->npages);
	for (i = 0; i < want->npages; i++) {
		if (want->in[i] == got->in[i])
			continue;
		if (want->in[i])
			missing++;
		else
			extra++;
		if (missing + extra <= 16)
			TH_LOG("%s: page %#llx %s", what,
			       (unsigned long long)(want->base + i * MB_PAGE),
			       want->in[i] ? "missing" : "reported but not expected");
	}
	EXPECT_EQ(0, missing + extra)
		TH_LOG("%s: %llu pages missing, %llu extra; reported: %s", what,
		       (unsigned long long)missing, (unsigned long long)extra,
		       pset_str(got));
}

/*
 * The pages a valid descriptor at ring slot @slot_iova makes the engine
 * pin (@touched: the descriptor's page, guest sources, guest destinations,
 * the FENCE target) and write (@written: guest destinations, the FENCE
 * target).  Either may be NULL.
 */
static void desc_pages(const struct mblit_desc *x, uint64_t slot_iova,
		       struct pset *touched, struct pset *written)
{
	bool dst_guest = !(x->flags & MBLIT_FLAG_DST_DEV);
	bool src_guest = !(x->flags & MBLIT_FLAG_SRC_DEV);

	if (touched)
		pset_add(touched, slot_iova, MBLIT_DESC_SIZE);
	switch (x->opcode) {
	case MBLIT_OP_FILL:
		if (dst_guest) {
			if (touched)
				pset_add(touched, x->dst, x->len);
			if (written)
				pset_add(written, x->dst, x->len);
		}
		break;
	case MBLIT_OP_COPY:
		if (src_guest && touched)
			pset_add(touched, x->src, x->len);
		if (dst_guest) {
			if (touched)
				pset_add(touched, x->dst, x->len);
			if (written)
				pset_add(written, x->dst, x->len);
		}
		break;
	case MBLIT_OP_FENCE:
		if (touched)
			pset_add(touched, x->dst, 8);
		if (written)
			pset_add(written, x->dst, 8);
		break;
	}
}

/* Run @n descriptors one after the other, deriving their page sets. */
static void run_derive(struct __test_metadata *_metadata, struct mb_dev *d,
		       const struct mblit_desc *x, unsigned int n,
		       struct pset *touched, struct pset *written)
{
	unsigned int i;

	for (i = 0; i < n; i++)
		desc_pages(&x[i], d->ring_iova +
			   (uint64_t)((d->tail + i) % d->ring_size) * MBLIT_DESC_SIZE,
			   touched, written);
	mb_run(_metadata, d, x, n);
}

/* ---- type1: VFIO_IOMMU_DIRTY_PAGES ---------------------------------------- */

/* The container's bitmap over the whole guest buffer, as a set. */
static void t1_get(struct __test_metadata *_metadata, struct mb_dev *d,
		   struct pset *got)
{
	uint64_t bm[MB_BUF_SIZE / MB_PAGE / 64];
	int ret;

	pset_init(_metadata, got, MB_IOVA, MB_BUF_SIZE);
	ret = t1_get_bitmap(d, MB_IOVA, MB_BUF_SIZE, bm, sizeof(bm));
	ASSERT_EQ(0, ret) TH_LOG("VFIO_IOMMU_DIRTY_PAGES GET_BITMAP: %s",
				 strerror(-ret));
	pset_from_bitmap(got, bm);
}

/* ---- device DMA logging ----------------------------------------------------- */

/* REPORT [iova, iova + len) at 4 KiB as a set (bitmap zeroed first). */
static void dl_get(struct __test_metadata *_metadata, struct mb_dev *d,
		   uint64_t iova, uint64_t len, struct pset *got)
{
	size_t words = (len / MB_PAGE + 63) / 64;
	uint64_t *bm = calloc(words ? words : 1, 8);
	int ret;

	ASSERT_NE(NULL, bm);
	pset_init(_metadata, got, iova, len);
	ret = dl_report(d, iova, len, MB_PAGE, bm);
	EXPECT_EQ(0, ret) TH_LOG("DMA_LOGGING_REPORT [%#llx, +%#llx): %s",
				 (unsigned long long)iova,
				 (unsigned long long)len, strerror(-ret));
	pset_from_bitmap(got, bm);
	free(bm);
}

static void dl_start_ok(struct __test_metadata *_metadata, struct mb_dev *d,
			const struct vfio_device_feature_dma_logging_range *r,
			uint32_t n)
{
	int ret = dl_start(d, r, n, MB_PAGE);

	ASSERT_EQ(0, ret) TH_LOG("DMA_LOGGING_START (%u ranges): %s", n,
				 strerror(-ret));
}

/* ---- type1 container bitmap ------------------------------------------------- */

FIXTURE(type1) {
	struct mb_dev dev;
	uint8_t *extra;		/* a separately mapped buffer, or NULL */
	size_t extra_size;
};

FIXTURE_SETUP(type1)
{
	mb_init(&self->dev);
	self->extra = NULL;
	mb_open(_metadata, &self->dev, "mblit-16m", VFIO_BACKEND_TYPE1);
}

FIXTURE_TEARDOWN(type1)
{
	mb_close(_metadata, &self->dev);
	if (self->extra)
		munmap(self->extra, self->extra_size);
}

/*
 * What type1 reports for an mdev (drivers/vfio/vfio_iommu_type1.c):
 *  - vfio_iommu_type1_pin_pages() sets a page's bit when it pins it while
 *    tracking, whatever the prot: pages the engine pinned read-only
 *    (descriptor pages, guest COPY sources) are reported as well as the
 *    ones it wrote.  A page already pinned (its vfio_pfn exists) is not
 *    marked again, but it was marked when first pinned in that command.
 *  - START populates the bitmap with the pages pinned at that moment
 *    (vfio_dma_populate_bitmap); nothing is pinned between commands, so
 *    START on an idle device starts empty.
 *  - GET_BITMAP copies the bitmap out, then clears it and re-populates it
 *    with the pages still pinned (vfio_iova_dirty_bitmap): a second GET
 *    with no command in between reports nothing.
 *  - The mdev's group is a pinned-page dirty scope group, so type1 does
 *    not fall back to "everything dirty".
 *  - GET_BITMAP without tracking is EINVAL.
 * The same workload is also logged through DMA logging over the whole
 * buffer, which must report only the pages written.
 */
TEST_F_TIMEOUT(type1, dirty_bitmap_exact, 300)
{
	struct mb_dev *d = &self->dev;
	const struct vfio_device_feature_dma_logging_range all = {
		.iova = MB_IOVA, .length = MB_BUF_SIZE,
	};
	const struct mblit_desc w[] = {
		/* FILL guest, unaligned, over 4 pages */
		mb_fill(G(0x10800), 0x3000, PAT1, 0),
		/* COPY guest -> guest, both unaligned */
		mb_copy(G(0x40100), G(0x20f00), 0x1200, 0),
		/* FILL device memory only: just the descriptor page */
		mb_fill(0, 0x2000, PAT2, MBLIT_FLAG_DST_DEV),
		/* COPY device -> guest */
		mb_copy(G(0x60000), 0x800, 0x2000, MBLIT_FLAG_SRC_DEV),
		/* COPY guest -> device: a source, nothing written */
		mb_copy(0x10000, G(0x80010), 0xff0, MBLIT_FLAG_DST_DEV),
		/* FENCE */
		mb_fence(G(0xa0ff8), 0x1122334455667788ULL, 0),
	};
	const struct mblit_desc more = mb_fill(G(0xc0000), 0x1000, PAT2, 0);
	struct pset touched, written, got, dl;
	uint64_t bm[MB_BUF_SIZE / MB_PAGE / 64];
	int ret;

	pset_init(_metadata, &touched, MB_IOVA, MB_BUF_SIZE);
	pset_init(_metadata, &written, MB_IOVA, MB_BUF_SIZE);

	/* Without tracking, GET_BITMAP fails. */
	EXPECT_EQ(-EINVAL, t1_get_bitmap(d, MB_IOVA, MB_BUF_SIZE, bm, sizeof(bm)));

	/* The ring: 64 slots (2 KiB) in the buffer's first page. */
	mb_ring_setup(_metadata, d, 64);
	ASSERT_EQ(0, t1_dirty(d, VFIO_IOMMU_DIRTY_PAGES_FLAG_START));
	dl_start_ok(_metadata, d, &all, 1);

	/* Idle, enabled device: nothing pinned, nothing reported. */
	EXPECT_EQ(0, mb_debugfs(_metadata, d, "pinned_pages"));
	t1_get(_metadata, d, &got);
	EXPECT_EQ(0, pset_count(&got)) TH_LOG("after START on an idle device: %s",
					      pset_str(&got));
	pset_free(&got);

	run_derive(_metadata, d, w, ARRAY_SIZE(w), &touched, &written);
	mb_check_guest(_metadata, d, "workload");
	mb_check_dev(_metadata, d, 0, 0x20000, "workload");
	EXPECT_EQ(0, mb_debugfs(_metadata, d, "pinned_pages"));

	t1_get(_metadata, d, &got);
	TH_LOG("type1 GET_BITMAP: %s", pset_str(&got));
	pset_expect_eq(_metadata, &touched, &got, "type1 GET_BITMAP");
	pset_free(&got);

	dl_get(_metadata, d, MB_IOVA, MB_BUF_SIZE, &dl);
	TH_LOG("DMA logging REPORT: %s", pset_str(&dl));
	pset_expect_eq(_metadata, &written, &dl, "DMA_LOGGING_REPORT");
	pset_free(&dl);

	/* Again, with no DMA in between: nothing. */
	t1_get(_metadata, d, &got);
	EXPECT_EQ(0, pset_count(&got)) TH_LOG("second GET_BITMAP: %s",
					      pset_str(&got));
	pset_free(&got);

	/* One more command: exactly its pages, nothing from before. */
	pset_clear(&touched);
	pset_clear(&written);
	run_derive(_metadata, d, &more, 1, &touched, &written);
	t1_get(_metadata, d, &got);
	pset_expect_eq(_metadata, &touched, &got, "GET_BITMAP after one FILL");
	pset_free(&got);
	dl_get(_metadata, d, MB_IOVA, MB_BUF_SIZE, &dl);
	pset_expect_eq(_metadata, &written, &dl, "REPORT after one FILL");
	pset_free(&dl);

	ASSERT_EQ(0, t1_dirty(d, VFIO_IOMMU_DIRTY_PAGES_FLAG_STOP));
	EXPECT_EQ(0, dl_stop(d));
	ret = t1_get_bitmap(d, MB_IOVA, MB_BUF_SIZE, bm, sizeof(bm));
	EXPECT_EQ(-EINVAL, ret) TH_LOG("GET_BITMAP after STOP: %s",
				       strerror(-ret));
	mb_engine_reset(_metadata, d);
	EXPECT_EQ(0, mb_debugfs(_metadata, d, "pinned_pages"));
	pset_free(&touched);
	pset_free(&written);
}

/* ---- device DMA logging ----------------------------------------------------- */

FIXTURE(dma_logging) {
	struct mb_dev dev;
	uint8_t *extra, *extra_orig;
	size_t extra_size;
};

FIXTURE_VARIANT(dma_logging) {
	enum vfio_backend backend;
};

FIXTURE_VARIANT_ADD(dma_logging, type1) {
	.backend = VFIO_BACKEND_TYPE1,
};

FIXTURE_VARIANT_ADD(dma_logging, iommufd) {
	.backend = VFIO_BACKEND_IOMMUFD,
};

FIXTURE_SETUP(dma_logging)
{
	mb_init(&self->dev);
	self->extra = self->extra_orig = NULL;
	mb_open(_metadata, &self->dev, "mblit-16m", variant->backend);
}

FIXTURE_TEARDOWN(dma_logging)
{
	mb_close(_metadata, &self->dev);
	if (self->extra)
		munmap(self->extra, self->extra_size);
	free(self->extra_orig);
}

/* REPORT over each range: exactly @want's pages in that range. */
static void expect_ranges(struct __test_metadata *_metadata, struct mb_dev *d,
			  const struct vfio_device_feature_dma_logging_range *r,
			  unsigned int n, const struct pset *want,
			  const char *what)
{
	struct pset w, got;
	unsigned int k;
	uint64_t i, p;
	char msg[128];

	for (k = 0; k < n; k++) {
		pset_init(_metadata, &w, r[k].iova, r[k].length);
		for (i = 0; i < want->npages; i++) {
			p = want->base + i * MB_PAGE;
			if (want->in[i])
				pset_add(&w, p, MB_PAGE);
		}
		dl_get(_metadata, d, r[k].iova, r[k].length, &got);
		snprintf(msg, sizeof(msg), "%s, range %u [%#llx, +%#llx)", what,
			 k, (unsigned long long)r[k].iova,
			 (unsigned long long)r[k].length);
		pset_expect_eq(_metadata, &w, &got, msg);
		pset_free(&w);
		pset_free(&got);
	}
}

/*
 * START with four disjoint ranges (one holds the ring's page), a workload
 * writing inside, across the edges of and outside the ranges, reading
 * from inside them: each range reports exactly the pages written in it.
 */
TEST_F_TIMEOUT(dma_logging, exact_report, 300)
{
	struct mb_dev *d = &self->dev;
	const struct vfio_device_feature_dma_logging_range r[] = {
		{ MB_IOVA, MB_PAGE },			/* the ring's page */
		{ G(0x10000), 0x10000 },
		{ G(0x40000), 0x8000 },
		{ G(0x100000), 0x40000 },
	};
	const struct mblit_desc w[] = {
		/* across R1's start: page 0xf out, 0x10-0x11 in */
		mb_fill(G(0xf800), 0x2000, PAT1, 0),
		/* across R1's end: 0x1f in, 0x20 out */
		mb_fill(G(0x1f000), 0x2000, PAT2, 0),
		/* source in R1 (not logged), destination in R2 */
		mb_copy(G(0x40010), G(0x15000), 0x1000, 0),
		/* device -> R3 */
		mb_copy(G(0x120000), 0, 0x3000, MBLIT_FLAG_SRC_DEV),
		/* FENCE on R2's last page */
		mb_fence(G(0x47ff8), 0xfeedULL, 0),
		/* outside every range */
		mb_fill(G(0x200000), 0x4000, PAT1, 0),
		mb_fence(G(0x300000), 0xbeefULL, 0),
		/* guest (R3) -> device: read only */
		mb_copy(0x8000, G(0x130000), 0x1000, MBLIT_FLAG_DST_DEV),
	};
	const struct mblit_desc w2[] = {
		mb_fill(G(0x18000), 0x1000, PAT1, 0),
		mb_fill(G(0x200000), 0x1000, PAT2, 0),
	};
	const struct mblit_desc w3[] = {
		mb_fill(G(0x11000), 0x1000, PAT2, 0),
		mb_fence(G(0x47000), 1, 0),
	};
	struct pset written, got;
	uint64_t bm[4];
	int ret;

	mb_ring_setup(_metadata, d, 64);
	dl_start_ok(_metadata, d, r, ARRAY_SIZE(r));

	/* Nothing yet. */
	pset_init(_metadata, &written, MB_IOVA, MB_BUF_SIZE);
	expect_ranges(_metadata, d, r, ARRAY_SIZE(r), &written, "before DMA");

	run_derive(_metadata, d, w, ARRAY_SIZE(w), NULL, &written);
	mb_check_guest(_metadata, d, "workload");
	pset_restrict(&written, r, ARRAY_SIZE(r));
	TH_LOG("expected in ranges: %s", pset_str(&written));
	expect_ranges(_metadata, d, r, ARRAY_SIZE(r), &written, "workload");

	/* Reported pages were cleared: nothing again. */
	pset_clear(&written);
	expect_ranges(_metadata, d, r, ARRAY_SIZE(r), &written, "second REPORT");

	/* A REPORT window wider than the ranges: still only in-range pages. */
	run_derive(_metadata, d, w2, ARRAY_SIZE(w2), NULL, &written);
	pset_restrict(&written, r, ARRAY_SIZE(r));
	EXPECT_EQ(1, pset_count(&written));
	dl_get(_metadata, d, MB_IOVA, MB_BUF_SIZE, &got);
	pset_expect_eq(_metadata, &written, &got, "whole-buffer REPORT");
	pset_free(&got);
	dl_get(_metadata, d, MB_IOVA, MB_BUF_SIZE, &got);
	EXPECT_EQ(0, pset_count(&got)) TH_LOG("whole-buffer REPORT again: %s",
					      pset_str(&got));
	pset_free(&got);

	/*
	 * REPORT at 8 KiB over [G(0x10000), G(0x48000)) (R1 and R2): bit k
	 * is 8 KiB unit k; page 0x11000 is bit 0, page 0x47000 bit 27.
	 */
	mb_run(_metadata, d, w3, ARRAY_SIZE(w3));
	memset(bm, 0, sizeof(bm));
	ret = dl_report(d, G(0x10000), 0x38000, 2 * MB_PAGE, bm);
	EXPECT_EQ(0, ret) TH_LOG("REPORT at 8 KiB: %s", strerror(-ret));
	EXPECT_EQ((1ULL << 0) | (1ULL << 27), bm[0]);
	EXPECT_EQ(0, bm[1]);
	memset(bm, 0, sizeof(bm));
	EXPECT_EQ(0, dl_report(d, G(0x10000), 0x38000, MB_PAGE, bm));
	EXPECT_EQ(0, bm[0] | bm[1]) TH_LOG("REPORT at 8 KiB did not clear");

	EXPECT_EQ(0, dl_stop(d));
	ret = dl_report(d, G(0x10000), 0x10000, MB_PAGE, bm);
	EXPECT_EQ(-EINVAL, ret) TH_LOG("REPORT after STOP: %s", strerror(-ret));

	mb_engine_reset(_metadata, d);
	EXPECT_EQ(0, mb_debugfs(_metadata, d, "pinned_pages"));
	pset_free(&written);
}

/* Close the device (its only fd) and open it again. */
static void reopen_device(struct __test_metadata *_metadata, struct mb_dev *d)
{
	struct vfio_mdev *v = &d->v;
	int fd;

	close(v->device_fd);
	v->device_fd = -1;
	if (v->backend == VFIO_BACKEND_TYPE1) {
		fd = ioctl(v->group_fd, VFIO_GROUP_GET_DEVICE_FD, v->uuid);
		ASSERT_LE(0, fd) TH_LOG("VFIO_GROUP_GET_DEVICE_FD: %s",
					strerror(errno));
	} else {
		struct vfio_device_bind_iommufd bind = {
			.argsz = sizeof(bind), .iommufd = v->iommufd,
		};
		struct vfio_device_attach_iommufd_pt at = {
			.argsz = sizeof(at), .pt_id = v->ioas_id,
		};

		fd = open(v->cdev, O_RDWR | O_CLOEXEC);
		ASSERT_LE(0, fd) TH_LOG("open %s: %s", v->cdev, strerror(errno));
		ASSERT_EQ(0, ioctl(fd, VFIO_DEVICE_BIND_IOMMUFD, &bind))
			TH_LOG("VFIO_DEVICE_BIND_IOMMUFD: %s", strerror(errno));
		v->devid = bind.out_devid;
		ASSERT_EQ(0, ioctl(fd, VFIO_DEVICE_ATTACH_IOMMUFD_PT, &at))
			TH_LOG("VFIO_DEVICE_ATTACH_IOMMUFD_PT: %s",
			       strerror(errno));
	}
	v->device_fd = fd;
}

/* START must fail with @err and leave logging off. */
#define EXPECT_START_FAILS(err, r, n, ps, what) do {			\
	int __r = dl_start(d, r, n, ps);				\
	uint64_t __bm[1] = { 0 };					\
									\
	EXPECT_EQ(-(err), __r) TH_LOG("%s: START returned %s", what,	\
				      __r ? strerror(-__r) : "0");	\
	if (!__r)							\
		dl_stop(d);						\
	EXPECT_EQ(-EINVAL, dl_report(d, G(0), MB_PAGE, MB_PAGE, __bm))	\
		TH_LOG("%s: logging is on after a failed START", what);	\
} while (0)

TEST_F_TIMEOUT(dma_logging, bad_ranges, 300)
{
	struct mb_dev *d = &self->dev;
	const uint32_t nmax = DL_MAX_RANGES;
	struct vfio_device_feature_dma_logging_range *many, r[2];
	uint64_t bm[1];
	unsigned int i;
	int ret;

	/* The feature is there (PROBE). */
	EXPECT_EQ(0, dl_feature(d, VFIO_DEVICE_FEATURE_PROBE |
				VFIO_DEVICE_FEATURE_SET |
				VFIO_DEVICE_FEATURE_DMA_LOGGING_START, NULL, 0));

	/* Not started: REPORT and (core checks) bad REPORT arguments. */
	EXPECT_EQ(-EINVAL, dl_report(d, G(0), MB_PAGE, MB_PAGE, bm));

	/* num_ranges 0 */
	EXPECT_START_FAILS(EINVAL, r, 0, MB_PAGE, "no ranges");

	/* more than LOG_MAX_RANGES; exactly that many is fine */
	many = calloc(nmax + 1, sizeof(*many));
	ASSERT_NE(NULL, many);
	for (i = 0; i <= nmax; i++) {
		many[i].iova = MB_IOVA + 2 * i * MB_PAGE;
		many[i].length = MB_PAGE;
	}
	EXPECT_START_FAILS(E2BIG, many, nmax + 1, MB_PAGE, "too many ranges");
	ret = dl_start(d, many, nmax, MB_PAGE);
	EXPECT_EQ(0, ret) TH_LOG("%u ranges: %s", nmax, strerror(-ret));
	EXPECT_EQ(0, dl_stop(d));
	free(many);

	/* unaligned start, unaligned length */
	r[0] = (struct vfio_device_feature_dma_logging_range){ G(0x800), MB_PAGE };
	EXPECT_START_FAILS(EINVAL, r, 1, MB_PAGE, "unaligned iova");
	r[0] = (struct vfio_device_feature_dma_logging_range){ G(0), MB_PAGE + 8 };
	EXPECT_START_FAILS(EINVAL, r, 1, MB_PAGE, "unaligned length");
	/* aligned to 4 KiB but not to the 64 KiB page size asked for */
	r[0] = (struct vfio_device_feature_dma_logging_range){ G(0x1000), 0x10000 };
	EXPECT_START_FAILS(EINVAL, r, 1, 0x10000, "unaligned to page_size");

	/* overlapping; touching is fine */
	r[0] = (struct vfio_device_feature_dma_logging_range){ G(0), 0x3000 };
	r[1] = (struct vfio_device_feature_dma_logging_range){ G(0x2000), 0x2000 };
	EXPECT_START_FAILS(EINVAL, r, 2, MB_PAGE, "overlapping");
	r[1] = (struct vfio_device_feature_dma_logging_range){ G(0), MB_PAGE };
	EXPECT_START_FAILS(EINVAL, r, 2, MB_PAGE, "contained");
	r[1] = (struct vfio_device_feature_dma_logging_range){ G(0x3000), 0x2000 };
	ret = dl_start(d, r, 2, MB_PAGE);
	EXPECT_EQ(0, ret) TH_LOG("touching ranges: %s", strerror(-ret));
	EXPECT_EQ(0, dl_stop(d));

	/* iova + length overflows */
	r[0] = (struct vfio_device_feature_dma_logging_range){
		0xfffffffffffff000ULL, 0x2000 };
	EXPECT_START_FAILS(EOVERFLOW, r, 1, MB_PAGE, "overflow");

	/*
	 * page_size not a power of two (the driver): 12 KiB, with a range
	 * the core's IS_ALIGNED(x, 0x3000) (x & 0x2fff) lets through.
	 */
	r[0] = (struct vfio_device_feature_dma_logging_range){ G(0), 0x4000 };
	EXPECT_START_FAILS(EINVAL, r, 1, 0x3000, "page_size 12 KiB");

	/* START twice: EBUSY, and the first one still works. */
	r[0] = (struct vfio_device_feature_dma_logging_range){ G(0), 0x4000 };
	dl_start_ok(_metadata, d, r, 1);
	r[0] = (struct vfio_device_feature_dma_logging_range){ G(0x10000), 0x4000 };
	ret = dl_start(d, r, 1, MB_PAGE);
	EXPECT_EQ(-EBUSY, ret) TH_LOG("second START: %s",
				      ret ? strerror(-ret) : "0");
	{
		struct mblit_desc x = mb_fill(G(0x1000), 0x1000, PAT1, 0);

		mb_ring_setup(_metadata, d, 8);
		mb_run(_metadata, d, &x, 1);
	}
	bm[0] = 0;
	EXPECT_EQ(0, dl_report(d, G(0), 0x4000, MB_PAGE, bm));
	EXPECT_EQ(2, bm[0]) TH_LOG("page 1 of the first START's range");

	/* REPORT arguments the core refuses */
	EXPECT_EQ(-EINVAL, dl_report(d, G(0), 0x4000, 2048, bm));
	EXPECT_EQ(-EINVAL, dl_report(d, G(0), 0x4000, 0x3000, bm));
	EXPECT_EQ(-EOVERFLOW, dl_report(d, 0xfffffffffffff000ULL, 0x2000,
					 MB_PAGE, bm));
	EXPECT_EQ(0, dl_stop(d));
	EXPECT_EQ(-EINVAL, dl_report(d, G(0), 0x4000, MB_PAGE, bm));

	/* Closing the device stops logging: START works after reopening. */
	mb_engine_reset(_metadata, d);
	dl_start_ok(_metadata, d, r, 1);
	reopen_device(_metadata, d);
	EXPECT_EQ(-EINVAL, dl_report(d, G(0x10000), 0x4000, MB_PAGE, bm))
		TH_LOG("logging still on after the device was closed");
	ret = dl_start(d, r, 1, MB_PAGE);
	EXPECT_EQ(0, ret) TH_LOG("START after reopening: %s", strerror(-ret));
	EXPECT_EQ(0, dl_stop(d));
}

/*
 * The driver bounds all ranges together at 2^28 4 KiB pages (E2BIG past
 * that, docs/dirty-tracking.md), so a bitmap is at most 32 MiB.  At the
 * bound itself START may succeed or fail with ENOMEM, but must not upset
 * the kernel (the run's kernel log check covers that).
 */
TEST_F_TIMEOUT(dma_logging, range_limit, 120)
{
	struct mb_dev *d = &self->dev;
	struct vfio_device_feature_dma_logging_range r = {
		0, (1ULL << 40) + MB_PAGE,
	};
	int ret;

	ret = dl_start(d, &r, 1, MB_PAGE);
	EXPECT_EQ(-E2BIG, ret) TH_LOG("2^28 + 1 pages: %s",
				      ret ? strerror(-ret) : "0");
	if (!ret)
		dl_stop(d);
	r.length = 1ULL << 40;
	ret = dl_start(d, &r, 1, MB_PAGE);
	TH_LOG("2^28 pages: START returned %s", ret ? strerror(-ret) : "0");
	EXPECT_TRUE(!ret || ret == -ENOMEM);
	if (!ret)
		EXPECT_EQ(0, dl_stop(d));
}

/*
 * Unmap a separately mapped destination range while a long workload
 * writes it.  The engine stops with ERR_UNMAPPED (a command was using the
 * range) or ERR_IOVA_FAULT (it could not pin a page of it), nothing stays
 * pinned, and the log still has every page written before the unmap:
 *  - R_main: pages written by earlier, completed commands (exact);
 *  - R_extra: exactly the pages whose content changed (the buffer is still
 *    our memory; the workload writes random data over random data), a
 *    prefix of the destination area;
 *  - R_src: the workload's source, read only: nothing.
 */
TEST_F_TIMEOUT(dma_logging, unmap_during_work, 300)
{
	struct mb_dev *d = &self->dev;
	const uint64_t ex = MB_EXTRA_IOVA, ex_size = 8 * MB_MIB;
	const uint32_t chunk = 128 * 1024, n = 256, ring = 512;
	const struct vfio_device_feature_dma_logging_range r[] = {
		{ G(0x400000), 0x10000 },	/* R_main */
		{ G(0), 0x40000 },		/* R_src */
		{ ex, ex_size },		/* R_extra */
	};
	const struct mblit_desc a[] = {
		mb_fill(G(0x403000), 0x5000, PAT1, 0),
		mb_fence(G(0x40f000), 7, 0),
	};
	struct pset want, got;
	struct mblit_desc x;
	uint32_t st, code, head, t0, i;
	uint64_t addr, p, changed, prefix;

	self->extra_size = ex_size;
	self->extra = mmap(NULL, ex_size, PROT_READ | PROT_WRITE,
			   MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
	ASSERT_NE(MAP_FAILED, self->extra);
	mb_rand_fill(d, self->extra, ex_size);
	self->extra_orig = malloc(ex_size);
	ASSERT_NE(NULL, self->extra_orig);
	memcpy(self->extra_orig, self->extra, ex_size);
	ASSERT_EQ(0, vfio_mdev_dma_map(&d->v, self->extra, ex, ex_size))
		TH_LOG("%s", mdev_lib_error());

	mb_ring_setup(_metadata, d, ring);
	dl_start_ok(_metadata, d, r, ARRAY_SIZE(r));

	/* Completed writes before the long workload. */
	pset_init(_metadata, &want, G(0x400000), 0x10000);
	run_derive(_metadata, d, a, ARRAY_SIZE(a), NULL, &want);
	EXPECT_EQ(6, pset_count(&want));

	/* The long workload: 256 COPYs of 128 KiB from R_src into extra. */
	t0 = d->tail;
	for (i = 0; i < n; i++) {
		x = mb_copy(ex + (uint64_t)i * chunk % ex_size,
			    G((i % 2) * chunk), chunk, 0);
		mb_ring_put(d, t0 + i, &x);
	}
	d->tail = t0 + n;
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	WR32(MBLIT_REG_RING_TAIL, d->tail);
	mb_wait_head(_metadata, d, t0 + 2);
	ASSERT_EQ(0, vfio_mdev_dma_unmap(&d->v, ex, ex_size))
		TH_LOG("%s", mdev_lib_error());

	st = mb_wait_error(_metadata, d);
	code = MBLIT_STATUS_ERR_CODE(st);
	head = RD32(MBLIT_REG_RING_HEAD);
	addr = RD64(MBLIT_REG_ERR_ADDR);
	TH_LOG("stopped at %u of %u with code %#x, ERR_ADDR %#llx", head - t0,
	       n, code, (unsigned long long)addr);
	EXPECT_GT(t0 + n, head) TH_LOG("the workload finished before the unmap");
	EXPECT_EQ(head, RD32(MBLIT_REG_ERR_INDEX));
	switch (code) {
	case MBLIT_ERR_UNMAPPED:
		EXPECT_EQ(ex, addr);
		break;
	case MBLIT_ERR_IOVA_FAULT:
		EXPECT_TRUE(addr >= ex && addr < ex + ex_size && !(addr % MB_PAGE))
			TH_LOG("IOVA_FAULT at %#llx, outside the unmapped range",
			       (unsigned long long)addr);
		break;
	default:
		EXPECT_TRUE(false) TH_LOG("unexpected error code %#x", code);
	}
	EXPECT_EQ(0, mb_debugfs(_metadata, d, "pinned_pages"))
		TH_LOG("pages pinned after the engine stopped");

	/* R_main: the earlier commands' pages. */
	dl_get(_metadata, d, r[0].iova, r[0].length, &got);
	pset_expect_eq(_metadata, &want, &got, "R_main after the unmap");
	pset_free(&got);
	pset_free(&want);

	/* R_src: read only. */
	dl_get(_metadata, d, r[1].iova, r[1].length, &got);
	EXPECT_EQ(0, pset_count(&got)) TH_LOG("source pages reported: %s",
					      pset_str(&got));
	pset_free(&got);

	/* R_extra: exactly the pages whose content changed, a prefix. */
	pset_init(_metadata, &want, ex, ex_size);
	changed = 0;
	prefix = 0;
	for (p = 0; p < ex_size; p += MB_PAGE) {
		if (memcmp(self->extra + p, self->extra_orig + p, MB_PAGE)) {
			pset_add(&want, ex + p, MB_PAGE);
			if (changed++ == p / MB_PAGE)
				prefix++;
		}
	}
	TH_LOG("%llu extra pages written before the unmap",
	       (unsigned long long)changed);
	EXPECT_LE(2 * chunk / MB_PAGE, changed);
	EXPECT_EQ(changed, prefix) TH_LOG("the written pages are not a prefix");
	dl_get(_metadata, d, r[2].iova, r[2].length, &got);
	pset_expect_eq(_metadata, &want, &got, "R_extra after the unmap");
	pset_free(&got);
	pset_free(&want);

	/* Once reported, gone. */
	dl_get(_metadata, d, r[2].iova, r[2].length, &got);
	EXPECT_EQ(0, pset_count(&got));
	pset_free(&got);
	EXPECT_EQ(0, dl_stop(d));

	mb_engine_reset(_metadata, d);
	EXPECT_EQ(0, mb_debugfs(_metadata, d, "pinned_pages"));
	EXPECT_EQ(0, RD32(MBLIT_REG_STATUS));
	mb_check_guest(_metadata, d, "after the unmap");
}

/* ---- unmap, and reports taken while DMA runs ------------------------------- */

#define EX		MB_EXTRA_IOVA

/* @size bytes of random content mapped at EX; *@slot keeps it for the teardown. */
static uint8_t *extra_map(struct __test_metadata *_metadata, struct mb_dev *d,
			  uint8_t **slot, size_t *slot_size, size_t size)
{
	uint8_t *p;

	if (*slot)
		munmap(*slot, *slot_size);
	*slot = NULL;
	p = mmap(NULL, size, PROT_READ | PROT_WRITE,
		 MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
	ASSERT_NE(MAP_FAILED, p) TH_LOG("mmap: %s", strerror(errno));
	*slot = p;
	*slot_size = size;
	mb_rand_fill(d, p, size);
	ASSERT_EQ(0, vfio_mdev_dma_map(&d->v, p, EX, size))
		TH_LOG("%s", mdev_lib_error());
	return p;
}

/* type1 GET_BITMAP over [iova, iova + size) as a set. */
static void t1_get_at(struct __test_metadata *_metadata, struct mb_dev *d,
		      uint64_t iova, uint64_t size, struct pset *got)
{
	size_t words = (size / MB_PAGE + 63) / 64;
	uint64_t *bm = calloc(words, 8);
	int ret;

	ASSERT_NE(NULL, bm);
	pset_init(_metadata, got, iova, size);
	ret = t1_get_bitmap(d, iova, size, bm, words * 8);
	ASSERT_EQ(0, ret) TH_LOG("GET_BITMAP [%#llx, +%#llx): %s",
				 (unsigned long long)iova,
				 (unsigned long long)size, strerror(-ret));
	pset_from_bitmap(got, bm);
	free(bm);
}

/*
 * VFIO_IOMMU_UNMAP_DMA of [iova, iova + size), with
 * VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP when @got is given (the range's
 * dirty pages into @got, at 4 KiB).  0 or -errno; *@unmapped: the size
 * type1 says it unmapped.
 */
static int t1_unmap(struct __test_metadata *_metadata, struct mb_dev *d,
		    uint64_t iova, uint64_t size, struct pset *got,
		    uint64_t *unmapped)
{
	size_t words = (size / MB_PAGE + 63) / 64;
	uint64_t *bm = calloc(words, 8);
	int ret;

	ASSERT_NE(NULL, bm);
	ret = t1_unmap_bitmap(d, iova, size, got ? bm : NULL, words * 8,
			      unmapped);
	if (got) {
		pset_init(_metadata, got, iova, size);
		pset_from_bitmap(got, bm);
	}
	free(bm);
	return ret;
}

/*
 * The pages @n descriptors touch inside @s's window when the window holds
 * no ring slot (a separately mapped range).
 */
static void derive_in(const struct mblit_desc *x, unsigned int n,
		      struct pset *s)
{
	unsigned int i;

	for (i = 0; i < n; i++)
		desc_pages(&x[i], 0, s, NULL);
}

/*
 * The model cannot follow a COPY from EX into the guest buffer by itself
 * (mb_model_apply knows only the buffer and device memory): after such
 * commands ran, copy their source bytes from @ex (mapped at EX, @size
 * bytes; sources no later command overwrote) into the model.
 */
static void model_from_extra(struct mb_dev *d, const uint8_t *ex, uint64_t size,
			     const struct mblit_desc *x, unsigned int n)
{
	uint8_t *m;
	unsigned int i;

	for (i = 0; i < n; i++) {
		if (x[i].opcode != MBLIT_OP_COPY ||
		    (x[i].flags & (MBLIT_FLAG_DST_DEV | MBLIT_FLAG_SRC_DEV)) ||
		    x[i].src < EX || x[i].src + x[i].len > EX + size)
			continue;
		m = mb_model_guest(d, x[i].dst, x[i].len);
		if (m)
			memcpy(m, ex + (x[i].src - EX), x[i].len);
	}
}

/* Every page of @lo is in @got, and every page of @got is in @hi. */
static void pset_expect_between(struct __test_metadata *_metadata,
				const struct pset *lo, const struct pset *got,
				const struct pset *hi, const char *what)
{
	uint64_t i, missing = 0, extra = 0;

	ASSERT_EQ(lo->base, got->base);
	ASSERT_EQ(hi->base, got->base);
	ASSERT_EQ(lo->npages, got->npages);
	ASSERT_EQ(hi->npages, got->npages);
	for (i = 0; i < got->npages; i++) {
		if (lo->in[i] && !got->in[i]) {
			if (missing++ < 16)
				TH_LOG("%s: page %#llx missing", what,
				       (unsigned long long)(got->base + i * MB_PAGE));
		}
		if (got->in[i] && !hi->in[i]) {
			if (extra++ < 16)
				TH_LOG("%s: page %#llx reported, never touched",
				       what,
				       (unsigned long long)(got->base + i * MB_PAGE));
		}
	}
	EXPECT_EQ(0, missing) TH_LOG("%s: %llu pages missing", what,
				     (unsigned long long)missing);
	EXPECT_EQ(0, extra) TH_LOG("%s: %llu pages never touched reported", what,
				   (unsigned long long)extra);
}

static void pset_or(struct pset *acc, const struct pset *s)
{
	uint64_t i;

	for (i = 0; i < acc->npages; i++)
		acc->in[i] |= s->in[i];
}

/*
 * Dirty tracking on, the device writes a separately mapped range and the
 * guest buffer, then the range is unmapped with a plain
 * VFIO_IOMMU_UNMAP_DMA: the unmap loses nothing of the rest -- GET_BITMAP
 * of the guest buffer is exactly the pages the commands touched there --
 * and nothing of the range stays behind (no pin to re-populate it; a
 * GET_BITMAP over where it was reports nothing).  Mapped again, the range
 * starts clean.
 */
TEST_F_TIMEOUT(type1, unmap_then_get_bitmap_reports_the_rest, 300)
{
	struct mb_dev *d = &self->dev;
	const uint64_t size = MB_MIB;
	const struct mblit_desc w[] = {
		mb_fill(EX + 0x1800, 0x2000, PAT1, 0),
		mb_copy(EX + 0x20000, G(0x30100), 0x1100, 0),
		mb_copy(G(0x50000), EX + 0x40010, 0x800, 0),
		mb_copy(EX + 0x60000, 0x1000, 0x1000, MBLIT_FLAG_SRC_DEV),
		mb_fence(EX + size - 8, 0x55, 0),
		mb_fill(G(0x70ffc), 8, PAT2, 0),
	};
	struct pset tm, te, got;
	uint64_t unmapped = 0;
	int ret;

	extra_map(_metadata, d, &self->extra, &self->extra_size, size);
	pset_init(_metadata, &tm, MB_IOVA, MB_BUF_SIZE);
	pset_init(_metadata, &te, EX, size);
	mb_ring_setup(_metadata, d, 64);
	ASSERT_EQ(0, t1_dirty(d, VFIO_IOMMU_DIRTY_PAGES_FLAG_START));

	derive_in(w, ARRAY_SIZE(w), &te);
	run_derive(_metadata, d, w, ARRAY_SIZE(w), &tm, NULL);
	model_from_extra(d, self->extra, size, w, ARRAY_SIZE(w));
	mb_check_guest(_metadata, d, "workload");
	EXPECT_LT(0, pset_count(&te));
	EXPECT_EQ(0, mb_debugfs(_metadata, d, "pinned_pages"));

	ret = t1_unmap(_metadata, d, EX, size, NULL, &unmapped);
	ASSERT_EQ(0, ret) TH_LOG("UNMAP_DMA: %s", strerror(-ret));
	EXPECT_EQ(size, unmapped);

	t1_get(_metadata, d, &got);
	pset_expect_eq(_metadata, &tm, &got, "guest buffer after the unmap");
	pset_free(&got);
	t1_get_at(_metadata, d, EX, size, &got);
	EXPECT_EQ(0, pset_count(&got)) TH_LOG("unmapped range: %s",
					      pset_str(&got));
	pset_free(&got);
	/* Reported once: the guest buffer is clean now. */
	t1_get(_metadata, d, &got);
	EXPECT_EQ(0, pset_count(&got)) TH_LOG("second GET_BITMAP: %s",
					      pset_str(&got));
	pset_free(&got);

	/* Mapped again: clean until the device touches it. */
	extra_map(_metadata, d, &self->extra, &self->extra_size, size);
	t1_get_at(_metadata, d, EX, size, &got);
	EXPECT_EQ(0, pset_count(&got)) TH_LOG("range mapped again: %s",
					      pset_str(&got));
	pset_free(&got);
	pset_clear(&tm);
	pset_clear(&te);
	derive_in(w, 2, &te);
	run_derive(_metadata, d, w, 2, &tm, NULL);
	t1_get_at(_metadata, d, EX, size, &got);
	pset_expect_eq(_metadata, &te, &got, "range mapped again, after DMA");
	pset_free(&got);

	ASSERT_EQ(0, t1_dirty(d, VFIO_IOMMU_DIRTY_PAGES_FLAG_STOP));
	ret = t1_unmap(_metadata, d, EX, size, NULL, &unmapped);
	EXPECT_EQ(0, ret);
	mb_check_guest(_metadata, d, "after the unmaps");
	mb_engine_reset(_metadata, d);
	EXPECT_EQ(0, mb_debugfs(_metadata, d, "pinned_pages"));
	pset_free(&tm);
	pset_free(&te);
}

/*
 * VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP: the unmap hands back the range's
 * dirty pages.  Idle: exactly the pages the commands touched in it.
 * While a long workload writes the range: every page whose content
 * changed is in the returned bitmap (type1 marks a page when the engine
 * pins it, so the unmap cannot lose one the engine wrote), nothing the
 * commands could not have touched is, the engine stops with ERR_UNMAPPED
 * or ERR_IOVA_FAULT and nothing stays pinned; the guest buffer's
 * GET_BITMAP afterwards has the pages of every command that completed.
 */
TEST_F_TIMEOUT(type1, unmap_get_dirty_bitmap_reports_the_range, 300)
{
	struct mb_dev *d = &self->dev;
	const uint64_t size = 16 * MB_MIB, chunk = 128 * 1024;
	const unsigned int n = size / chunk;
	const struct mblit_desc w[] = {
		mb_fill(EX + 0x3000, 0x1001, PAT1, 0),
		mb_copy(EX + 0x100000, G(0x1000), 0x3000, 0),
		mb_copy(G(0x80000), EX + 0x200000, 0x1000, 0),
		mb_fence(EX + 0x300ff8, 9, 0),
	};
	struct pset tm, te, got, lo, hi;
	uint8_t *orig, *ex;
	uint64_t unmapped = 0, p, addr;
	uint32_t t0, head, st, code, i;
	struct mblit_desc x;
	int ret;

	pset_init(_metadata, &tm, MB_IOVA, MB_BUF_SIZE);
	pset_init(_metadata, &te, EX, size);
	mb_ring_setup(_metadata, d, 512);
	ASSERT_EQ(0, t1_dirty(d, VFIO_IOMMU_DIRTY_PAGES_FLAG_START));

	/* Idle. */
	extra_map(_metadata, d, &self->extra, &self->extra_size, size);
	derive_in(w, ARRAY_SIZE(w), &te);
	run_derive(_metadata, d, w, ARRAY_SIZE(w), &tm, NULL);
	model_from_extra(d, self->extra, size, w, ARRAY_SIZE(w));
	mb_check_guest(_metadata, d, "workload");
	ret = t1_unmap(_metadata, d, EX, size, &got, &unmapped);
	ASSERT_EQ(0, ret) TH_LOG("UNMAP_DMA with GET_DIRTY_BITMAP: %s",
				 strerror(-ret));
	EXPECT_EQ(size, unmapped);
	pset_expect_eq(_metadata, &te, &got, "idle unmap's bitmap");
	pset_free(&got);
	t1_get(_metadata, d, &got);
	pset_expect_eq(_metadata, &tm, &got, "guest buffer after the idle unmap");
	pset_free(&got);

	/* While n COPYs of 128 KiB from the guest buffer write the range. */
	ex = extra_map(_metadata, d, &self->extra, &self->extra_size, size);
	orig = malloc(size);
	ASSERT_NE(NULL, orig);
	memcpy(orig, ex, size);
	pset_init(_metadata, &lo, MB_IOVA, MB_BUF_SIZE);	/* completed */
	pset_init(_metadata, &hi, MB_IOVA, MB_BUF_SIZE);	/* + the failed one */
	t0 = d->tail;
	for (i = 0; i < n; i++) {
		x = mb_copy(EX + i * chunk, G((i % 2) * chunk), chunk, 0);
		mb_ring_put(d, t0 + i, &x);
	}
	d->tail = t0 + n;
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	WR32(MBLIT_REG_RING_TAIL, d->tail);
	mb_wait_head(_metadata, d, t0 + 2);
	ret = t1_unmap(_metadata, d, EX, size, &got, &unmapped);
	ASSERT_EQ(0, ret) TH_LOG("UNMAP_DMA with GET_DIRTY_BITMAP during DMA: %s",
				 strerror(-ret));
	EXPECT_EQ(size, unmapped);

	st = mb_wait_error(_metadata, d);
	code = MBLIT_STATUS_ERR_CODE(st);
	head = RD32(MBLIT_REG_RING_HEAD);
	addr = RD64(MBLIT_REG_ERR_ADDR);
	TH_LOG("stopped at %u of %u with code %#x, ERR_ADDR %#llx; bitmap has %llu pages",
	       head - t0, n, code, (unsigned long long)addr,
	       (unsigned long long)pset_count(&got));
	EXPECT_GT(t0 + n, head) TH_LOG("the workload finished before the unmap");
	EXPECT_TRUE(code == MBLIT_ERR_UNMAPPED || code == MBLIT_ERR_IOVA_FAULT)
		TH_LOG("error code %#x", code);
	EXPECT_EQ(0, mb_debugfs(_metadata, d, "pinned_pages"));

	/* The range: changed pages <= bitmap <= destinations up to head. */
	pset_free(&te);
	pset_init(_metadata, &te, EX, size);		/* changed */
	for (p = 0; p < size; p += MB_PAGE)
		if (memcmp(ex + p, orig + p, MB_PAGE))
			pset_add(&te, EX + p, MB_PAGE);
	{
		struct pset reach;

		pset_init(_metadata, &reach, EX, size);
		for (i = t0; i <= head && i < t0 + n; i++)
			pset_add(&reach, EX + (i - t0) * chunk, chunk);
		EXPECT_LE(2 * chunk / MB_PAGE, pset_count(&te));
		pset_expect_between(_metadata, &te, &got, &reach,
				    "bitmap of the unmap during DMA");
		pset_free(&reach);
	}
	pset_free(&got);

	/* The guest buffer: the completed commands' pages, at most the failed one's. */
	for (i = t0; i <= head && i < t0 + n; i++) {
		x = mb_copy(EX + (i - t0) * chunk, G(((i - t0) % 2) * chunk),
			    chunk, 0);
		desc_pages(&x, d->ring_iova +
			   (uint64_t)(i % d->ring_size) * MBLIT_DESC_SIZE,
			   &hi, NULL);
		if (i < head)
			desc_pages(&x, d->ring_iova +
				   (uint64_t)(i % d->ring_size) * MBLIT_DESC_SIZE,
				   &lo, NULL);
	}
	t1_get(_metadata, d, &got);
	pset_expect_between(_metadata, &lo, &got, &hi,
			    "guest buffer after the unmap during DMA");
	pset_free(&got);

	ASSERT_EQ(0, t1_dirty(d, VFIO_IOMMU_DIRTY_PAGES_FLAG_STOP));
	mb_engine_reset(_metadata, d);
	EXPECT_EQ(0, mb_debugfs(_metadata, d, "pinned_pages"));
	mb_check_guest(_metadata, d, "after the unmap");
	free(orig);
	pset_free(&tm);
	pset_free(&te);
	pset_free(&lo);
	pset_free(&hi);
}

#define RW_PAGES	4096	/* destination pages, each written once */
#define RW_BATCH	256

/*
 * Take reports (type1 GET_BITMAP, or DMA_LOGGING_REPORT) over the guest
 * buffer and EX as fast as possible while RW_PAGES one-page FILLs write
 * each page of EX once, in a random order, submitted in batches; then one
 * more report once the engine is idle.  No dirtied page is missing from
 * the union of the reports, and none is there that the commands did not
 * touch (type1: descriptor and destination pages) or write (DMA logging:
 * destination pages).  Returns the reports taken while the engine was
 * running (head moved during them).
 */
static unsigned int reports_while_dma_runs(struct __test_metadata *_metadata,
					   struct mb_dev *d, const uint8_t *ex,
					   bool type1)
{
	const uint64_t size = RW_PAGES * MB_PAGE;
	struct pset want_m, want_e, un_m, un_e, got;
	struct mblit_desc *x = calloc(RW_BATCH, sizeof(*x));
	uint32_t *perm = calloc(RW_PAGES, sizeof(*perm)), h0, h1, tmp;
	unsigned int i, j, b, reports = 0, during = 0;
	uint64_t end, p;
	bool last = false;

	ASSERT_TRUE(x && perm);
	pset_init(_metadata, &want_m, MB_IOVA, MB_BUF_SIZE);
	pset_init(_metadata, &want_e, EX, size);
	pset_init(_metadata, &un_m, MB_IOVA, MB_BUF_SIZE);
	pset_init(_metadata, &un_e, EX, size);
	for (i = 0; i < RW_PAGES; i++)
		perm[i] = i;
	for (i = RW_PAGES - 1; i > 0; i--) {
		j = mb_rand(d) % (i + 1);
		tmp = perm[i];
		perm[i] = perm[j];
		perm[j] = tmp;
	}
	mb_ring_setup(_metadata, d, RW_PAGES);

	end = mb_now_ms() + MB_WAIT_TOTAL_MS;
	for (b = 0; !last; ) {
		if (b < RW_PAGES) {
			for (i = 0; i < RW_BATCH; i++) {
				x[i] = mb_fill(EX + (uint64_t)perm[b + i] * MB_PAGE,
					       MB_PAGE, 0x01010101U * (b + i) + 7, 0);
				desc_pages(&x[i], d->ring_iova +
					   (uint64_t)((d->tail + i) % d->ring_size) *
					   MBLIT_DESC_SIZE,
					   type1 ? &want_m : NULL, NULL);
				desc_pages(&x[i], 0, NULL, &want_e);
			}
			mb_submit(_metadata, d, x, RW_BATCH);
			b += RW_BATCH;
		} else if (RD32(MBLIT_REG_RING_HEAD) == d->tail) {
			/* Idle: one more report, the last. */
			mb_wait_done(_metadata, d);
			last = true;
		}
		h0 = RD32(MBLIT_REG_RING_HEAD);
		if (type1) {
			t1_get_at(_metadata, d, MB_IOVA, MB_BUF_SIZE, &got);
			pset_or(&un_m, &got);
			pset_free(&got);
			t1_get_at(_metadata, d, EX, size, &got);
		} else {
			dl_get(_metadata, d, MB_IOVA, MB_BUF_SIZE, &got);
			pset_or(&un_m, &got);
			pset_free(&got);
			dl_get(_metadata, d, EX, size, &got);
		}
		pset_or(&un_e, &got);
		pset_free(&got);
		h1 = RD32(MBLIT_REG_RING_HEAD);
		reports++;
		if (h1 != h0)
			during++;
		ASSERT_GT(end, mb_now_ms()) TH_LOG("the workload took too long");
	}
	TH_LOG("%s: %u reports, %u of them while the engine ran",
	       type1 ? "GET_BITMAP" : "DMA_LOGGING_REPORT", reports, during);
	pset_expect_eq(_metadata, &want_e, &un_e, "union of the reports, EX");
	pset_expect_eq(_metadata, &want_m, &un_m,
		       "union of the reports, guest buffer");
	/* The writes landed (each page once, its command's pattern). */
	for (i = 0; i < RW_PAGES; i++) {
		uint32_t pat = 0x01010101U * i + 7, v;

		p = (uint64_t)perm[i] * MB_PAGE;
		memcpy(&v, ex + p, 4);
		EXPECT_EQ(pat, v) TH_LOG("page %#llx", (unsigned long long)(EX + p));
		if (pat != v)
			break;
		memcpy(&v, ex + p + MB_PAGE - 4, 4);
		EXPECT_EQ(pat, v);
	}
	mb_check_guest(_metadata, d, "after the workload");
	free(x);
	free(perm);
	pset_free(&want_m);
	pset_free(&want_e);
	pset_free(&un_m);
	pset_free(&un_e);
	return during;
}

TEST_F_TIMEOUT(type1, get_bitmap_while_dma_runs_loses_no_page, 600)
{
	struct mb_dev *d = &self->dev;
	uint8_t *ex;
	unsigned int during;

	ex = extra_map(_metadata, d, &self->extra, &self->extra_size,
		       RW_PAGES * MB_PAGE);
	ASSERT_EQ(0, t1_dirty(d, VFIO_IOMMU_DIRTY_PAGES_FLAG_START));
	during = reports_while_dma_runs(_metadata, d, ex, true);
	EXPECT_LT(0, during) TH_LOG("no report overlapped the DMA");
	ASSERT_EQ(0, t1_dirty(d, VFIO_IOMMU_DIRTY_PAGES_FLAG_STOP));
	mb_engine_reset(_metadata, d);
	EXPECT_EQ(0, mb_debugfs(_metadata, d, "pinned_pages"));
}

TEST_F_TIMEOUT(dma_logging, report_while_dma_runs_loses_no_page, 600)
{
	struct mb_dev *d = &self->dev;
	const struct vfio_device_feature_dma_logging_range r[] = {
		{ MB_IOVA, MB_BUF_SIZE },
		{ EX, RW_PAGES * MB_PAGE },
	};
	uint8_t *ex;
	unsigned int during;

	ex = extra_map(_metadata, d, &self->extra, &self->extra_size,
		       RW_PAGES * MB_PAGE);
	dl_start_ok(_metadata, d, r, ARRAY_SIZE(r));
	during = reports_while_dma_runs(_metadata, d, ex, false);
	EXPECT_LT(0, during) TH_LOG("no report overlapped the DMA");
	EXPECT_EQ(0, dl_stop(d));
	mb_engine_reset(_metadata, d);
	EXPECT_EQ(0, mb_debugfs(_metadata, d, "pinned_pages"));
}

TEST_HARNESS_MAIN
