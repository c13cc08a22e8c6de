// SPDX-License-Identifier: GPL-2.0
/*
 * mblit's VFIO migration v2 (docs/migration.md §3, docs/device.md): a live
 * migration with the ring engine busy, pre-copy dirty-page accounting,
 * hostile input on the destination's data_fd, one protocol at a time with
 * the DEVICE_STATE region, reset and close in the middle of a migration.
 * Both VFIO back-ends.
 */
#include "kselftest_harness.h"
#include "mblit_dev.h"
#include "mig_v2.h"

#define STREAM_MAX	(600ULL << 20)

FIXTURE(mig) {
	struct mb_dev d[3];
	int fds[4];
	struct mig_buf b[4];
};

FIXTURE_VARIANT(mig) {
	enum vfio_backend backend;
};

FIXTURE_VARIANT_ADD(mig, type1) {
	.backend = VFIO_BACKEND_TYPE1,
};

FIXTURE_VARIANT_ADD(mig, iommufd) {
	.backend = VFIO_BACKEND_IOMMUFD,
};

FIXTURE_SETUP(mig)
{
	unsigned int i;

	for (i = 0; i < ARRAY_SIZE(self->d); i++)
		mb_init(&self->d[i]);
	for (i = 0; i < ARRAY_SIZE(self->fds); i++)
		self->fds[i] = -1;
	memset(self->b, 0, sizeof(self->b));
}

FIXTURE_TEARDOWN(mig)
{
	unsigned int i;

	/* Data fds first: they hold their device. */
	for (i = 0; i < ARRAY_SIZE(self->fds); i++)
		if (self->fds[i] >= 0)
			close(self->fds[i]);
	for (i = 0; i < ARRAY_SIZE(self->d); i++) {
		if (self->d[i].v.device_fd >= 0)
			ioctl(self->d[i].v.device_fd, VFIO_DEVICE_RESET);
		mb_close(_metadata, &self->d[i]);
	}
	for (i = 0; i < ARRAY_SIZE(self->b); i++)
		mig_buf_free(&self->b[i]);
}

#define DFD(d)	((d)->v.device_fd)
#define RD32_DEV(dev)	((uint32_t)mb_rd(_metadata, (dev), MBLIT_REG_RING_HEAD, 4))

static void set_ok(struct __test_metadata *_metadata, struct mb_dev *d,
		   uint32_t state, int *fd, bool want_fd)
{
	int f = -1, ret = mig_set(DFD(d), state, &f);

	ASSERT_EQ(0, ret) TH_LOG("SET %s: %s", mig_state_name(state),
				 strerror(-ret));
	ASSERT_EQ((int)state, mig_get(DFD(d)));
	ASSERT_EQ(want_fd, f >= 0) TH_LOG("SET %s: data_fd %d",
					  mig_state_name(state), f);
	if (fd)
		*fd = f;
	else if (f >= 0)
		close(f);
}

/* Read to EOF (STOP_COPY), bounded. */
static size_t read_eof(struct __test_metadata *_metadata, int fd,
		       struct mig_buf *b, unsigned int *k)
{
	size_t got = 0;
	int ret = mig_read_stream(fd, b, k, STREAM_MAX, &got);

	ASSERT_EQ(0, ret) TH_LOG("reading to EOF: %s", strerror(-ret));
	return got;
}

/* Read to pre-copy's temporary end (ENOMSG), bounded. */
static size_t read_enomsg(struct __test_metadata *_metadata, int fd,
			  struct mig_buf *b, unsigned int *k)
{
	size_t got = 0;
	int ret = mig_read_stream(fd, b, k, STREAM_MAX, &got);

	ASSERT_EQ(-ENOMSG, ret) TH_LOG("reading to ENOMSG: %s",
				       ret ? strerror(-ret) : "EOF in PRE_COPY");
	return got;
}

static void info_ok(struct __test_metadata *_metadata, int fd, uint64_t *i,
		    uint64_t *d)
{
	int ret = mig_precopy_info(fd, i, d);

	ASSERT_EQ(0, ret) TH_LOG("PRECOPY_INFO: %s", strerror(-ret));
}

/* Whole device memory through BAR2 into @out (d->mem bytes). */
static void read_devmem(struct __test_metadata *_metadata, struct mb_dev *d,
			uint8_t *out)
{
	uint64_t off;

	for (off = 0; off < d->mem; off += MB_MIB)
		mb_bar2_rd(_metadata, d, off, out + off, MB_MIB);
}

static void expect_devmem_zero(struct __test_metadata *_metadata,
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

/* ---- the workload -------------------------------------------------------- */

#define FENCE_IOVA	(MB_IOVA + 512 * 1024)
#define RING_N		4096

struct wl {
	struct mblit_desc *x;
	unsigned int n;
	uint64_t fence;		/* last fence value */
};

/* A range of @len in [lo, hi), @align aligned. */
static uint64_t pick(struct mb_dev *r, uint64_t lo, uint64_t hi, uint64_t len)
{
	return lo + mb_rand(r) % (hi - lo - len + 1);
}

static bool overlap(uint64_t a, uint64_t b, uint64_t len)
{
	return a < b + len && b < a + len;
}

/*
 * @n descriptors moving data between guest buffer and device memory,
 * with a fence every 16.  Deterministic (the rng of @r).
 */
static void wl_make(struct wl *w, struct mb_dev *r, unsigned int n,
		    uint64_t mem)
{
	const uint64_t glo = MB_DATA_IOVA, ghi = MB_IOVA_END;
	unsigned int i;

	w->x = calloc(n, sizeof(*w->x));
	w->n = n;
	for (i = 0; i < n; i++) {
		uint32_t len = mb_rand_range(r, 1, 64 * 1024);
		uint64_t s, t;

		if (i % 16 == 15) {
			w->fence = 0x1000 + i;
			w->x[i] = mb_fence(FENCE_IOVA, w->fence, 0);
			continue;
		}
		switch (mb_rand(r) % 4) {
		case 0:
			w->x[i] = mb_fill(pick(r, 0, mem, len), len,
					  (uint32_t)mb_rand(r),
					  MBLIT_FLAG_DST_DEV);
			break;
		case 1:
			w->x[i] = mb_copy(pick(r, 0, mem, len),
					  pick(r, glo, ghi, len), len,
					  MBLIT_FLAG_DST_DEV);
			break;
		case 2:
			w->x[i] = mb_copy(pick(r, glo, ghi, len),
					  pick(r, 0, mem, len), len,
					  MBLIT_FLAG_SRC_DEV);
			break;
		default:
			do {
				s = pick(r, 0, mem, len);
				t = pick(r, 0, mem, len);
			} while (overlap(s, t, len));
			w->x[i] = mb_copy(t, s, len, MBLIT_FLAG_DST_DEV |
					  MBLIT_FLAG_SRC_DEV);
		}
	}
}

/* Submit descriptors [from, to) of the workload. */
static uint64_t wl_submit(struct __test_metadata *_metadata, struct mb_dev *d,
			  const struct wl *w, unsigned int from, unsigned int to)
{
	return mb_submit(_metadata, d, w->x + from, to - from);
}

/* ---- full migration with the engine busy ---------------------------------- */

TEST_F_TIMEOUT(mig, full_migration_in_flight, 900)
{
	struct mb_dev *src = &self->d[0], *dst = &self->d[1], *ref = &self->d[2];
	struct mig_buf *st = &self->b[0];
	struct mb_dev gen;
	struct wl w = { 0 };
	const unsigned int N = 2400, A = 400, R = 4, PER = 200;
	unsigned int sub, round, k = 0, kw = 1;
	uint64_t bytes = 0, i0, d0, last_i, est, t0, t_ref;
	size_t got, n, done = 0, pre_len;
	uint8_t *vram, *a, *b;
	uint32_t head_stop;
	int fd = -1, rfd = -1, ret, dirty_rounds = 0;

	mb_open(_metadata, src, "mblit-16m", variant->backend);
	mb_open(_metadata, dst, "mblit-16m", variant->backend);
	mb_open(_metadata, ref, "mblit-16m", variant->backend);
	/* Same guest buffer content, same device memory: every page written. */
	memcpy(ref->buf, src->buf, MB_BUF_SIZE);
	memcpy(ref->mg, src->mg, MB_BUF_SIZE);
	vram = malloc(src->mem);
	ASSERT_NE(NULL, vram);
	mb_rand_fill(src, vram, src->mem);
	mb_bar2_wr(_metadata, src, 0, vram, src->mem);
	mb_bar2_wr(_metadata, ref, 0, vram, ref->mem);
	free(vram);
	mb_init(&gen);
	gen.rng = 0x243f6a8885a308d3ULL;
	wl_make(&w, &gen, N, src->mem);

	/* The reference: the same work, never migrated. */
	t0 = mb_now_ms();
	mb_ring_setup(_metadata, ref, RING_N);
	for (sub = 0; sub < N; sub += 600) {
		wl_submit(_metadata, ref, &w, sub, sub + 600 < N ? sub + 600 : N);
		mb_wait_done(_metadata, ref);
	}
	t_ref = mb_now_ms() - t0;
	TH_LOG("reference run: %u commands in %llu ms", N,
	       (unsigned long long)t_ref);

	/* The source: batch A, then PRE_COPY with more work coming. */
	mb_ring_setup(_metadata, src, RING_N);
	bytes += wl_submit(_metadata, src, &w, 0, A);
	sub = A;
	mb_wait_head(_metadata, src, A / 4);
	set_ok(_metadata, src, VFIO_DEVICE_STATE_PRE_COPY, &fd, true);
	self->fds[0] = fd;
	info_ok(_metadata, fd, &i0, &d0);
	/* Every page was written before: the initial pass is all of them. */
	EXPECT_EQ(mig_mblit_stream_len(src->mem / MB_PAGE), i0);
	TH_LOG("PRE_COPY entered at head %u: initial_bytes %llu dirty_bytes %llu",
	       RD32_DEV(src), (unsigned long long)i0, (unsigned long long)d0);
	/* The initial pass shrinks by exactly what is read. */
	last_i = i0;
	for (n = 0; n < 6; n++) {
		uint8_t tmp[65537];
		ssize_t r = read(fd, tmp, 1000 + 9973 * n);

		ASSERT_LT(0, r) TH_LOG("read: %s", strerror(errno));
		ASSERT_EQ(0, mig_buf_append(st, tmp, r));
		info_ok(_metadata, fd, &i0, &d0);
		EXPECT_EQ(last_i - r, i0) TH_LOG("read %zd", r);
		last_i = i0;
	}
	/* Rounds: more work, read to the temporary end each time. */
	for (round = 0; round < R; round++) {
		unsigned int end = sub + PER;

		info_ok(_metadata, fd, &i0, &d0);
		got = read_enomsg(_metadata, fd, st, &k);
		EXPECT_LE(i0 + d0, got) TH_LOG("round %u", round);
		if (round > 0 && got)
			dirty_rounds++;
		info_ok(_metadata, fd, &i0, &d0);
		EXPECT_EQ(0, i0) TH_LOG("round %u: initial pass left", round);
		TH_LOG("round %u: read %zu bytes, then initial %llu dirty %llu, head %u",
		       round, got, (unsigned long long)i0,
		       (unsigned long long)d0, RD32_DEV(src));
		bytes += wl_submit(_metadata, src, &w, sub, end);
		sub = end;
		mb_wait_head(_metadata, src, sub - PER / 2);
	}
	EXPECT_LT(0, dirty_rounds) TH_LOG("the engine dirtied nothing during pre-copy");
	/* The rest of the work, then P2P at once: it is in flight. */
	bytes += wl_submit(_metadata, src, &w, sub, N);
	set_ok(_metadata, src, VFIO_DEVICE_STATE_PRE_COPY_P2P, NULL, false);
	head_stop = RD32_DEV(src);
	TH_LOG("PRE_COPY_P2P at head %u of %u", head_stop, N);
	EXPECT_NE(N, head_stop) TH_LOG("the workload finished before the stop");
	/* P2P: the engine fetches nothing new. */
	mb_sleep_ms(100);
	EXPECT_EQ(head_stop, RD32_DEV(src));
	got = read_enomsg(_metadata, fd, st, &k);
	info_ok(_metadata, fd, &i0, &d0);
	EXPECT_EQ(0, i0);
	EXPECT_EQ(0, d0) TH_LOG("dirty pages with the engine quiesced");
	ASSERT_EQ(0, mig_data_size(DFD(src), &est));
	EXPECT_EQ(MIG_MBLIT_DEV_REC, est);
	pre_len = st->len;
	set_ok(_metadata, src, VFIO_DEVICE_STATE_STOP_COPY, NULL, false);
	got = read_eof(_metadata, fd, st, &k);
	EXPECT_EQ(est, got);
	EXPECT_EQ(MIG_MBLIT_DEV_REC, st->len - pre_len);
	set_ok(_metadata, src, VFIO_DEVICE_STATE_STOP, NULL, false);
	close(fd);
	self->fds[0] = -1;
	TH_LOG("stream: %zu bytes (%zu pre-copy)", st->len, pre_len);
	EXPECT_EQ(head_stop, RD32_DEV(src));

	/* The destination. */
	set_ok(_metadata, dst, VFIO_DEVICE_STATE_STOP, NULL, false);
	set_ok(_metadata, dst, VFIO_DEVICE_STATE_RESUMING, &rfd, true);
	self->fds[1] = rfd;
	ret = mig_write_stream(rfd, st->p, st->len, &kw, &done);
	ASSERT_EQ(0, ret) TH_LOG("write at %zu of %zu: %s", done, st->len,
				 strerror(-ret));
	set_ok(_metadata, dst, VFIO_DEVICE_STATE_STOP, NULL, false);
	close(rfd);
	self->fds[1] = -1;
	/* The VMM copies guest RAM while everything is stopped. */
	memcpy(dst->buf, src->buf, MB_BUF_SIZE);
	memcpy(dst->mg, src->mg, MB_BUF_SIZE);
	memcpy(dst->md, src->md, dst->mem);
	dst->ring_iova = src->ring_iova;
	dst->ring_va = dst->buf + (src->ring_va - src->buf);
	dst->ring_size = src->ring_size;
	dst->tail = src->tail;
	t0 = mb_now_ms();
	set_ok(_metadata, dst, VFIO_DEVICE_STATE_RUNNING, NULL, false);
	mb_wait_done(_metadata, dst);
	TH_LOG("destination finished %u commands in %llu ms", N - head_stop,
	       (unsigned long long)(mb_now_ms() - t0));

	/* Equal to the reference, byte for byte, and to the model. */
	EXPECT_EQ(0, memcmp(dst->buf, ref->buf, MB_BUF_SIZE))
		TH_LOG("guest buffer differs from the reference run");
	mb_check_guest(_metadata, dst, "destination guest buffer");
	a = malloc(dst->mem);
	b = malloc(dst->mem);
	ASSERT_TRUE(a && b);
	read_devmem(_metadata, dst, a);
	read_devmem(_metadata, ref, b);
	EXPECT_EQ(0, memcmp(a, b, dst->mem))
		TH_LOG("device memory differs from the reference run");
	EXPECT_EQ(0, memcmp(a, dst->md, dst->mem))
		TH_LOG("device memory differs from the model");
	free(a);
	free(b);
	{
		struct mb_dev *d = dst;

		EXPECT_EQ(N, RD64(MBLIT_REG_CMD_COUNT));
		EXPECT_EQ(bytes, RD64(MBLIT_REG_BYTE_COUNT));
		EXPECT_EQ(w.fence, RD64(MBLIT_REG_FENCE_LAST));
		EXPECT_EQ(N, RD32(MBLIT_REG_RING_HEAD));
		EXPECT_EQ(0, RD32(MBLIT_REG_STATUS));
	}
	{
		struct mb_dev *d = ref;

		EXPECT_EQ(N, RD64(MBLIT_REG_CMD_COUNT));
		EXPECT_EQ(bytes, RD64(MBLIT_REG_BYTE_COUNT));
		EXPECT_EQ(w.fence, RD64(MBLIT_REG_FENCE_LAST));
	}
	free(w.x);
}

/* ---- pre-copy accounting ---------------------------------------------------- */

TEST_F_TIMEOUT(mig, pre_copy_dirty_accounting, 600)
{
	struct mb_dev *d = &self->d[0];
	struct mig_buf *init = &self->b[0], *sc = &self->b[1];
	const unsigned int W = 300;
	unsigned int npages, k, i, j, kr = 0, nfill = 55, nidx = 0;
	uint64_t i0, d0, est, expect, off;
	uint8_t *dirty, *seen, page[MB_PAGE];
	size_t got;
	int fd = -1;
	struct mblit_desc x[64];

	mb_open(_metadata, d, "mblit-256m", variant->backend);
	npages = d->mem / MB_PAGE;
	ASSERT_EQ(65536, npages);
	k = npages / 100;			/* 1 %: 655 pages */
	dirty = calloc(npages, 1);
	seen = calloc(npages, 1);
	ASSERT_TRUE(dirty && seen);

	/* W written pages, spread out. */
	for (i = 0; i < W; i++) {
		memset(page, i + 1, sizeof(page));
		mb_bar2_wr(_metadata, d, (uint64_t)(i * 211 % npages) * MB_PAGE,
			   page, MB_PAGE);
	}
	ASSERT_EQ(0, mig_data_size(DFD(d), &est));
	EXPECT_EQ(mig_mblit_stream_len(W) + MIG_MBLIT_DEV_REC, est);

	set_ok(_metadata, d, VFIO_DEVICE_STATE_PRE_COPY, &fd, true);
	self->fds[0] = fd;
	info_ok(_metadata, fd, &i0, &d0);
	EXPECT_EQ(mig_mblit_stream_len(W), i0);
	EXPECT_EQ(0, d0);
	got = read_enomsg(_metadata, fd, init, &kr);
	EXPECT_EQ(mig_mblit_stream_len(W), got);
	info_ok(_metadata, fd, &i0, &d0);
	EXPECT_EQ(0, i0);
	EXPECT_EQ(0, d0);

	/* Dirty k distinct pages: most by BAR2, some by the engine. */
	mb_ring_setup(_metadata, d, 64);
	for (i = 0, j = 0; i < k; i++) {
		uint32_t p = (uint32_t)((uint64_t)i * 7919 % npages);

		ASSERT_FALSE(dirty[p]);
		dirty[p] = 1;
		off = (uint64_t)p * MB_PAGE;
		if (i < nfill) {
			/* A few bytes inside the page, never crossing it. */
			x[j++] = mb_fill(off + 100, 17, 0xdeadbeef,
					 MBLIT_FLAG_DST_DEV);
			if (j == ARRAY_SIZE(x) || i == nfill - 1) {
				mb_run(_metadata, d, x, j);
				j = 0;
			}
		} else {
			uint8_t v = i;

			/* One byte is enough to dirty a page. */
			mb_bar2_wr(_metadata, d, off + (i % 4096), &v, 1);
		}
	}
	info_ok(_metadata, fd, &i0, &d0);
	EXPECT_EQ(0, i0);
	EXPECT_EQ(mig_mblit_stream_len(k), d0) TH_LOG("k = %u pages", k);
	ASSERT_EQ(0, mig_data_size(DFD(d), &est));
	expect = mig_mblit_stream_len(k) + MIG_MBLIT_DEV_REC;
	EXPECT_EQ(expect, est);

	set_ok(_metadata, d, VFIO_DEVICE_STATE_PRE_COPY_P2P, NULL, false);
	info_ok(_metadata, fd, &i0, &d0);
	EXPECT_EQ(0, i0);
	EXPECT_EQ(mig_mblit_stream_len(k), d0);
	set_ok(_metadata, d, VFIO_DEVICE_STATE_STOP_COPY, NULL, false);
	got = read_eof(_metadata, fd, sc, &kr);
	EXPECT_EQ(expect, got);

	/* The stop-copy stream carries exactly the dirtied pages. */
	for (off = 0; off + 32 <= sc->len;) {
		const uint8_t *h = sc->p + off;
		uint32_t magic = mig_le32(h), cnt = mig_le32(h + 12);
		uint64_t len = mig_le64(h + 24);

		ASSERT_LE(off + len, sc->len);
		if (magic == MIG_MBLIT_MAGIC_PAGES) {
			ASSERT_EQ(mig_mblit_chunk_len(cnt), len);
			for (i = 0; i < cnt; i++) {
				uint64_t idx = mig_le64(h + 32 + i * MIG_MBLIT_ENTRY);

				ASSERT_LT(idx, npages);
				EXPECT_TRUE(dirty[idx]) TH_LOG("page %llu sent, not dirtied",
							      (unsigned long long)idx);
				EXPECT_FALSE(seen[idx]);
				seen[idx] = 1;
				nidx++;
			}
		} else {
			EXPECT_EQ(MIG_MBLIT_MAGIC_DEV, magic);
			EXPECT_EQ(MIG_MBLIT_DEV_REC, len);
			EXPECT_EQ(off + len, sc->len) TH_LOG("device record not last");
		}
		off += len;
	}
	EXPECT_EQ(sc->len, off);
	EXPECT_EQ(k, nidx);
	ksft_print_msg("pre_copy_dirty_accounting (%s): %u of %u pages dirtied (1%%) after the initial pass of %zu bytes: stop-copy %zu bytes vs device memory %llu bytes (%.3f%%); dirty_bytes %llu, MIG_DATA_SIZE %llu\n",
		       vfio_backend_name(variant->backend), k, npages,
		       init->len, sc->len, (unsigned long long)d->mem,
		       100.0 * sc->len / d->mem, (unsigned long long)d0,
		       (unsigned long long)est);
	set_ok(_metadata, d, VFIO_DEVICE_STATE_STOP, NULL, false);
	free(dirty);
	free(seen);
}

/* ---- hostile input on the destination ---------------------------------- */

/* A whole stream of @d (RUNNING -> STOP_COPY -> EOF -> RUNNING). */
static void save_all(struct __test_metadata *_metadata, struct mb_dev *d,
		     struct mig_buf *b)
{
	int fd = -1;

	set_ok(_metadata, d, VFIO_DEVICE_STATE_STOP_COPY, &fd, true);
	read_eof(_metadata, fd, b, NULL);
	close(fd);
	set_ok(_metadata, d, VFIO_DEVICE_STATE_RUNNING, NULL, false);
}

/* Some state worth losing: pages, a scratch register. */
static void make_state(struct __test_metadata *_metadata, struct mb_dev *d,
		       uint64_t marker)
{
	uint8_t page[MB_PAGE];
	unsigned int i;

	for (i = 0; i < 5; i++) {
		memset(page, marker + i, sizeof(page));
		mb_bar2_wr(_metadata, d, (uint64_t)(i * 3 + 1) * MB_PAGE, page,
			   sizeof(page));
	}
	WR64(MBLIT_REG_SCRATCH0, marker);
	WR64(MBLIT_REG_SCRATCH3, ~marker);
}

/* The device works: a fill and a fence through a fresh ring. */
static void works(struct __test_metadata *_metadata, struct mb_dev *d)
{
	struct mblit_desc x[2] = {
		mb_fill(MB_DATA_IOVA + 64, 100, 0x01020304, 0),
		mb_fence(FENCE_IOVA, 77, 0),
	};

	mb_set_command(_metadata, d, PCI_COMMAND_MASTER, 0);
	mb_ring_setup(_metadata, d, 16);
	mb_run(_metadata, d, x, 2);
	mb_check_guest(_metadata, d, "after recovery");
	EXPECT_EQ(77, RD64(MBLIT_REG_FENCE_LAST));
	mb_engine_reset(_metadata, d);
	WR32(MBLIT_REG_CTRL, 0);
}

enum { CUT, CUT_DEVREC, FLIP_PAGES, FLIP_DEVREC, WRONG_TYPE, LARGER_TYPE,
       TRAILING, TWICE, NCASES };

static const char *const case_name[] = {
	"truncated", "no device record", "bit flip in a pages record",
	"bit flip in the device record", "stream of mblit-1m",
	"stream of mblit-256m", "a byte after the device record",
	"the stream twice",
};

TEST_F_TIMEOUT(mig, hostile_resume, 600)
{
	struct mb_dev *src = &self->d[0], *dst = &self->d[1], *oth = &self->d[2];
	struct mig_buf *s16 = &self->b[0], *s1 = &self->b[1], *s256 = &self->b[2];
	struct mig_buf *bad = &self->b[3];
	unsigned int c, kw;
	int fd = -1, ret, st;
	size_t done;

	mb_open(_metadata, src, "mblit-16m", variant->backend);
	mb_open(_metadata, dst, "mblit-16m", variant->backend);
	make_state(_metadata, src, 0x42);
	save_all(_metadata, src, s16);
	ASSERT_EQ(mig_mblit_stream_len(5) + MIG_MBLIT_DEV_REC, s16->len);
	mb_close(_metadata, src);
	mb_init(src);
	mb_open(_metadata, oth, "mblit-1m", variant->backend);
	make_state(_metadata, oth, 0x43);
	save_all(_metadata, oth, s1);
	mb_close(_metadata, oth);
	mb_init(oth);
	mb_open(_metadata, oth, "mblit-256m", variant->backend);
	make_state(_metadata, oth, 0x44);
	save_all(_metadata, oth, s256);
	mb_close(_metadata, oth);
	mb_init(oth);

	for (c = 0; c < NCASES; c++) {
		struct mb_dev *d = dst;

		bad->len = 0;
		switch (c) {
		case CUT:
			mig_buf_append(bad, s16->p, s16->len - 100);
			break;
		case CUT_DEVREC:
			mig_buf_append(bad, s16->p, s16->len - MIG_MBLIT_DEV_REC);
			break;
		case FLIP_PAGES:
			mig_buf_append(bad, s16->p, s16->len);
			bad->p[36 + 2 * MIG_MBLIT_ENTRY + 1000] ^= 0x10;
			break;
		case FLIP_DEVREC:
			mig_buf_append(bad, s16->p, s16->len);
			/* SCRATCH0 (register 15) in the REGS section */
			bad->p[s16->len - MIG_MBLIT_DEV_REC + 320 + 8 * 15] ^= 0x01;
			break;
		case WRONG_TYPE:
			mig_buf_append(bad, s1->p, s1->len);
			break;
		case LARGER_TYPE:
			mig_buf_append(bad, s256->p, s256->len);
			break;
		case TRAILING:
			mig_buf_append(bad, s16->p, s16->len);
			mig_buf_append(bad, "\0", 1);
			break;
		case TWICE:
			mig_buf_append(bad, s16->p, s16->len);
			mig_buf_append(bad, s16->p, s16->len);
			break;
		}
		/* The destination has state of its own. */
		make_state(_metadata, d, 0x99);
		set_ok(_metadata, d, VFIO_DEVICE_STATE_RESUMING, &fd, true);
		self->fds[0] = fd;
		kw = c;
		ret = mig_write_stream(fd, bad->p, bad->len, &kw, &done);
		TH_LOG("%s: write %s at %zu of %zu", case_name[c],
		       ret ? strerror(-ret) : "accepted", done, bad->len);
		if (ret) {
			EXPECT_EQ(-EINVAL, ret) TH_LOG("%s", case_name[c]);
			/* Poisoned: more data is refused too. */
			EXPECT_EQ(-1, write(fd, s16->p, 64));
			EXPECT_EQ(EINVAL, errno);
		}
		if (c == CUT || c == CUT_DEVREC)
			EXPECT_EQ(0, ret) TH_LOG("a prefix of a good stream");
		if (c >= FLIP_PAGES)
			EXPECT_EQ(-EINVAL, ret) TH_LOG("%s accepted", case_name[c]);
		ret = mig_set(DFD(d), VFIO_DEVICE_STATE_STOP, NULL);
		EXPECT_EQ(-EINVAL, ret) TH_LOG("%s: RESUMING -> STOP: %s",
					       case_name[c], strerror(-ret));
		st = mig_get(DFD(d));
		EXPECT_EQ(VFIO_DEVICE_STATE_ERROR, st) TH_LOG("%s: state %s",
							      case_name[c],
							      mig_state_name(st));
		/* As after a reset, nothing of either state left. */
		mb_expect_reset_regs(_metadata, d, case_name[c]);
		EXPECT_EQ(0, mb_cfg_rd16(_metadata, d, PCI_COMMAND) &
			  PCI_COMMAND_MASTER);
		expect_devmem_zero(_metadata, d, case_name[c]);
		/* ERROR: no MMIO writes, no SET, the fd is dead. */
		{
			uint64_t v = 1;

			EXPECT_EQ(-EBUSY, mb_acc(d, &d->bar0, true,
						 MBLIT_REG_SCRATCH0, &v, 8));
			EXPECT_EQ(-EBUSY, mb_acc(d, &d->bar2, true, 0, &v, 8));
		}
		EXPECT_EQ(-EINVAL, mig_set(DFD(d), VFIO_DEVICE_STATE_RUNNING, NULL));
		EXPECT_EQ(-1, write(fd, s16->p, 32));
		close(fd);
		self->fds[0] = -1;
		ASSERT_EQ(0, ioctl(DFD(d), VFIO_DEVICE_RESET));
		ASSERT_EQ(VFIO_DEVICE_STATE_RUNNING, mig_get(DFD(d)));
		memset(d->md, 0, d->mem);
		works(_metadata, d);
	}

	/* The good stream still goes in. */
	{
		struct mb_dev *d = dst;

		set_ok(_metadata, d, VFIO_DEVICE_STATE_RESUMING, &fd, true);
		self->fds[0] = fd;
		kw = 0;
		ret = mig_write_stream(fd, s16->p, s16->len, &kw, &done);
		ASSERT_EQ(0, ret);
		set_ok(_metadata, d, VFIO_DEVICE_STATE_RUNNING, NULL, false);
		close(fd);
		self->fds[0] = -1;
		EXPECT_EQ(0x42, RD64(MBLIT_REG_SCRATCH0));
		EXPECT_EQ(~0x42ULL, RD64(MBLIT_REG_SCRATCH3));
	}
}

/* ---- one protocol at a time ---------------------------------------------- */

TEST_F_TIMEOUT(mig, one_protocol_at_a_time, 300)
{
	struct mb_dev *d = &self->d[0];
	struct vfio_region_info sr = { 0 };
	const uint32_t states[] = {
		VFIO_DEVICE_STATE_PRE_COPY, VFIO_DEVICE_STATE_PRE_COPY_P2P,
		VFIO_DEVICE_STATE_RUNNING_P2P, VFIO_DEVICE_STATE_STOP,
		VFIO_DEVICE_STATE_STOP_COPY, VFIO_DEVICE_STATE_RESUMING,
	};
	uint8_t buf[16] = { 0 };
	unsigned int i;
	int fd, f2, ret;

	mb_open(_metadata, d, "mblit-16m", variant->backend);
	mb_state_region(_metadata, d, &sr);
	ASSERT_EQ(MBLIT_RUNCTL_RUNNING, mb_runctl_get(d, &sr));

	for (i = 0; i < ARRAY_SIZE(states); i++) {
		const char *n = mig_state_name(states[i]);

		fd = -1;
		ret = mig_set(DFD(d), states[i], &fd);
		EXPECT_EQ(0, ret) TH_LOG("SET %s: %s", n, strerror(-ret));
		if (ret) {	/* go on with the other states */
			ASSERT_EQ(0, ioctl(DFD(d), VFIO_DEVICE_RESET));
			continue;
		}
		self->fds[0] = fd;
		EXPECT_EQ(-EBUSY, mb_runctl_get(d, &sr)) TH_LOG("%s: read", n);
		EXPECT_EQ(-EBUSY, mb_runctl_set(d, &sr, MBLIT_RUNCTL_STOPPED))
			TH_LOG("%s: write STOPPED", n);
		EXPECT_EQ(-EBUSY, mb_runctl_set(d, &sr, MBLIT_RUNCTL_RUNNING))
			TH_LOG("%s: write RUNNING", n);
		EXPECT_EQ(-EBUSY, mb_acc(d, &sr, false, MBLIT_STATE_AREA_OFFSET,
					 buf, sizeof(buf))) TH_LOG("%s", n);
		EXPECT_EQ(-EBUSY, mb_acc(d, &sr, true, MBLIT_STATE_AREA_OFFSET,
					 buf, sizeof(buf))) TH_LOG("%s", n);
		/* The header stays readable. */
		EXPECT_EQ(MBLIT_STATE_MAGIC,
			  mb_state_hdr(_metadata, d, &sr, MBLIT_STATE_OFF_MAGIC, 4));
		EXPECT_EQ(0, mb_state_hdr(_metadata, d, &sr, MBLIT_STATE_OFF_SIZE, 8));
		EXPECT_EQ((int)states[i], mig_get(DFD(d)));
		if (fd >= 0)
			close(fd);
		self->fds[0] = -1;
		ASSERT_EQ(0, ioctl(DFD(d), VFIO_DEVICE_RESET));
		ASSERT_EQ(VFIO_DEVICE_STATE_RUNNING, mig_get(DFD(d)));
		EXPECT_EQ(MBLIT_RUNCTL_RUNNING, mb_runctl_get(d, &sr));
	}

	/* The region stops the device: v2 may not leave RUNNING. */
	ASSERT_EQ(0, mb_runctl_set(d, &sr, MBLIT_RUNCTL_STOPPED));
	ASSERT_EQ(MBLIT_RUNCTL_STOPPED, mb_runctl_get(d, &sr));
	for (i = 0; i < MIG_NSTATES; i++) {
		if (i == VFIO_DEVICE_STATE_RUNNING ||
		    i == VFIO_DEVICE_STATE_ERROR)
			continue;
		f2 = -2;
		EXPECT_EQ(-EBUSY, mig_set(DFD(d), i, &f2))
			TH_LOG("SET %s while the region has the device stopped",
			       mig_state_name(i));
		EXPECT_EQ(-1, f2);
		if (f2 >= 0)
			close(f2);
		EXPECT_EQ(VFIO_DEVICE_STATE_RUNNING, mig_get(DFD(d)));
	}
	/* SET RUNNING is the no-op it is from RUNNING. */
	EXPECT_EQ(0, mig_set(DFD(d), VFIO_DEVICE_STATE_RUNNING, NULL));
	EXPECT_EQ(MBLIT_RUNCTL_STOPPED, mb_runctl_get(d, &sr));
	ASSERT_EQ(0, mb_runctl_set(d, &sr, MBLIT_RUNCTL_RUNNING));
	/* Both free again. */
	set_ok(_metadata, d, VFIO_DEVICE_STATE_STOP, NULL, false);
	set_ok(_metadata, d, VFIO_DEVICE_STATE_RUNNING, NULL, false);
	ASSERT_EQ(0, mb_runctl_set(d, &sr, MBLIT_RUNCTL_STOPPED));
	ASSERT_EQ(0, mb_runctl_set(d, &sr, MBLIT_RUNCTL_RUNNING));
}

/* ---- reset and close during a migration ---------------------------------- */

/* Bring @d to @state with a session fd (ERROR through a bad RESUMING). */
static int into(struct __test_metadata *_metadata, struct mb_dev *d,
		uint32_t state)
{
	int fd = -1, ret;

	if (state == VFIO_DEVICE_STATE_ERROR) {
		set_ok(_metadata, d, VFIO_DEVICE_STATE_RESUMING, &fd, true);
		EXPECT_EQ(8, write(fd, "garbage!", 8));
		EXPECT_EQ(-EINVAL, mig_set(DFD(d), VFIO_DEVICE_STATE_STOP, NULL));
		EXPECT_EQ(VFIO_DEVICE_STATE_ERROR, mig_get(DFD(d)));
		return fd;
	}
	ret = mig_set(DFD(d), state, &fd);
	EXPECT_EQ(0, ret) TH_LOG("SET %s: %s", mig_state_name(state),
				 strerror(-ret));
	EXPECT_LE(0, fd);
	EXPECT_EQ((int)state, mig_get(DFD(d)));
	if (ret || fd < 0) {	/* the caller goes on with the other states */
		if (fd >= 0)
			close(fd);
		ioctl(DFD(d), VFIO_DEVICE_RESET);
		return -1;
	}
	return fd;
}

/* The old fd gives nothing any more. */
static void dead_fd(struct __test_metadata *_metadata, int fd, uint32_t state,
		    const char *how)
{
	uint8_t c[64] = { 0 };
	uint64_t a, b;
	ssize_t n;

	if (state == VFIO_DEVICE_STATE_RESUMING ||
	    state == VFIO_DEVICE_STATE_ERROR) {
		n = write(fd, c, sizeof(c));
		EXPECT_EQ(-1, n) TH_LOG("%s in %s: old fd takes data",
					how, mig_state_name(state));
	} else {
		n = read(fd, c, sizeof(c));
		EXPECT_EQ(-1, n) TH_LOG("%s in %s: old fd read gives %zd",
					how, mig_state_name(state), n);
		TH_LOG("%s in %s: old fd read: %s", how, mig_state_name(state),
		       n < 0 ? strerror(errno) : "data");
		EXPECT_NE(0, mig_precopy_info(fd, &a, &b));
	}
}

TEST_F_TIMEOUT(mig, reset_and_close_during_migration, 600)
{
	struct mb_dev *d = &self->d[0];
	const uint32_t states[] = {
		VFIO_DEVICE_STATE_PRE_COPY, VFIO_DEVICE_STATE_PRE_COPY_P2P,
		VFIO_DEVICE_STATE_STOP_COPY, VFIO_DEVICE_STATE_RESUMING,
		VFIO_DEVICE_STATE_ERROR,
	};
	uint8_t c[100];
	unsigned int i;
	uint64_t a, b;
	int fd;

	mb_open(_metadata, d, "mblit-16m", variant->backend);

	for (i = 0; i < ARRAY_SIZE(states); i++) {
		make_state(_metadata, d, 0x10 + i);
		fd = into(_metadata, d, states[i]);
		if (fd < 0)
			continue;
		self->fds[0] = fd;
		if (states[i] == VFIO_DEVICE_STATE_PRE_COPY ||
		    states[i] == VFIO_DEVICE_STATE_STOP_COPY)
			EXPECT_LT(0, read(fd, c, sizeof(c)));
		ASSERT_EQ(0, ioctl(DFD(d), VFIO_DEVICE_RESET));
		EXPECT_EQ(VFIO_DEVICE_STATE_RUNNING, mig_get(DFD(d)));
		dead_fd(_metadata, fd, states[i], "reset");
		close(fd);
		self->fds[0] = -1;
		/* The device is usable and migrates again. */
		mb_expect_reset_regs(_metadata, d, "after reset");
		memset(d->md, 0, d->mem);
		works(_metadata, d);
		fd = -1;
		set_ok(_metadata, d, VFIO_DEVICE_STATE_PRE_COPY, &fd, true);
		info_ok(_metadata, fd, &a, &b);
		/* Only what works() wrote (no device memory): nothing. */
		EXPECT_EQ(0, a);
		EXPECT_EQ(0, b);
		close(fd);
		set_ok(_metadata, d, VFIO_DEVICE_STATE_RUNNING, NULL, false);
	}

	/* Closing the device in the middle; the next open finds RUNNING. */
	for (i = 0; i < ARRAY_SIZE(states); i++) {
		make_state(_metadata, d, 0x20 + i);
		fd = into(_metadata, d, states[i]);
		if (fd < 0)
			continue;
		self->fds[0] = fd;
		vfio_mdev_close(&d->v);
		d->mapped = false;
		dead_fd(_metadata, fd, states[i], "close");
		ASSERT_EQ(0, vfio_mdev_open(&d->v, d->uuid, variant->backend))
			TH_LOG("%s", mdev_lib_error());
		EXPECT_EQ(VFIO_DEVICE_STATE_RUNNING, mig_get(DFD(d)))
			TH_LOG("reopened after closing in %s",
			       mig_state_name(states[i]));
		dead_fd(_metadata, fd, states[i], "close+reopen");
		close(fd);
		self->fds[0] = -1;
		ASSERT_EQ(0, vfio_mdev_dma_map(&d->v, d->buf, MB_IOVA,
					       MB_BUF_SIZE))
			TH_LOG("%s", mdev_lib_error());
		d->mapped = true;
		/* BAR0 is writable again (not ERROR, not STOP). */
		WR64(MBLIT_REG_SCRATCH1, 0x1234);
		EXPECT_EQ(0x1234, RD64(MBLIT_REG_SCRATCH1));
		WR64(MBLIT_REG_SCRATCH1, 0);
		fd = -1;
		set_ok(_metadata, d, VFIO_DEVICE_STATE_STOP_COPY, &fd, true);
		self->fds[0] = fd;
		EXPECT_LT(0, read(fd, c, sizeof(c)));
		close(fd);
		self->fds[0] = -1;
		set_ok(_metadata, d, VFIO_DEVICE_STATE_RUNNING, NULL, false);
	}
}

TEST_HARNESS_MAIN
