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
#include "mblit_state_fmt.h"
#include "mig_steps.h"
#include "mig_v2.h"

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

static void info_ok(struct __test_metadata *_metadata, int fd, uint64_t *i,
		    uint64_t *d)
{
	int ret = mig_precopy_info(fd, i, d);

	ASSERT_EQ(0, ret) TH_LOG("PRECOPY_INFO: %s", strerror(-ret));
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
	mb_read_vram(_metadata, dst, a);
	mb_read_vram(_metadata, ref, b);
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

/*
 * Regression (found by uapi_fuzz.random_sequences): in STOP_COPY,
 * MIG_DATA_SIZE counted the device record a second time once it was
 * queued, and still said 556 after the whole stream had been read.  It is
 * the bytes the stream has still to deliver (docs/migration.md §3.1): each
 * read takes exactly its count off, down to 0 at the end of the stream,
 * through a PRE_COPY start and through STOP -> STOP_COPY.
 */
TEST_F_TIMEOUT(mig, mig_data_size_counts_down_to_0_in_stop_copy, 600)
{
	struct mb_dev *d = &self->d[0];
	uint8_t page[MB_PAGE], *buf;
	uint64_t before, after, total;
	unsigned int i, k, pass;
	ssize_t n;
	int fd;

	mb_open(_metadata, d, "mblit-16m", variant->backend);
	buf = malloc(MB_MIB);
	ASSERT_NE(NULL, buf);
	for (i = 0; i < 300; i++) {
		memset(page, i + 1, sizeof(page));
		mb_bar2_wr(_metadata, d, (uint64_t)(i * 13 % 4096) * MB_PAGE,
			   page, MB_PAGE);
	}
	for (pass = 0; pass < 2; pass++) {
		if (pass == 0) {
			set_ok(_metadata, d, VFIO_DEVICE_STATE_STOP, NULL, false);
			set_ok(_metadata, d, VFIO_DEVICE_STATE_STOP_COPY, &fd,
			       true);
		} else {
			set_ok(_metadata, d, VFIO_DEVICE_STATE_PRE_COPY, &fd,
			       true);
			/* A part of the initial pass, then stop. */
			ASSERT_LT(0, read(fd, buf, 100 * 4104));
			set_ok(_metadata, d, VFIO_DEVICE_STATE_STOP_COPY, NULL,
			       false);
		}
		self->fds[0] = fd;
		ASSERT_EQ(0, mig_data_size(DFD(d), &before));
		total = 0;
		for (k = 0;; k++) {
			n = read(fd, buf, mig_odd_sizes[k % MIG_NODD]);
			ASSERT_LE(0, n) TH_LOG("read: %s", strerror(errno));
			ASSERT_EQ(0, mig_data_size(DFD(d), &after));
			EXPECT_EQ(before - n, after)
				TH_LOG("pass %u: %zd bytes read at %llu of the stream",
				       pass, n, (unsigned long long)total);
			if (!n)
				break;
			total += n;
			before = after;
		}
		EXPECT_EQ(0, after) TH_LOG("pass %u: the stream has ended", pass);
		close(fd);
		self->fds[0] = -1;
		set_ok(_metadata, d, VFIO_DEVICE_STATE_STOP, NULL, false);
		set_ok(_metadata, d, VFIO_DEVICE_STATE_RUNNING, NULL, false);
	}
	free(buf);
}

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
		mb_expect_vram_zero(_metadata, d, case_name[c]);
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

/* ---- the P2P states ------------------------------------------------------ */

/*
 * RUNNING_P2P and PRE_COPY_P2P.  docs/migration.md says nothing of them
 * beyond their existence; what mblit promises is docs/device.md §3 (BAR0
 * and BAR2 writes fail with EBUSY only in "a v2 migration state in which
 * the device does not run"), §7 (a v2 transition out of RUNNING lets the
 * command in progress finish, then the device touches neither guest nor
 * device memory until it runs again; STATUS.BUSY stays while work is
 * submitted), src/logic/mig.rs ("In the P2P states the device accepts
 * MMIO but starts no new work") and the uAPI (<linux/vfio.h>: the arc into
 * a P2P state completes outstanding DMA; RUNNING_P2P -> RUNNING and
 * PRE_COPY_P2P -> PRE_COPY return to full operation).  So in a P2P state:
 * BAR0, BAR2 and config accesses are accepted, a doorbell (RING_TAIL
 * write) is stored and starts nothing, and back in RUNNING / PRE_COPY the
 * engine runs what was submitted, each command once.
 */

#define P2P_N		120		/* 1 MiB commands in flight */
#define P2P_DEV_PAGE	(12 * MB_MIB)	/* device memory no command touches */
#define P2P_FENCE	(MB_DATA_IOVA + 6 * MB_MIB + 0x100)

/* @n commands of 1 MiB: FILL and COPY, guest and device memory. */
static void big_cmds(struct mblit_desc *x, unsigned int n)
{
	const uint64_t g = MB_DATA_IOVA;
	unsigned int i, k;

	for (i = 0; i < n; i++) {
		k = i / 4;
		switch (i % 4) {
		case 0:
			x[i] = mb_fill((k % 6) * MB_MIB, MB_MIB,
				       0x01010101U * (i + 1), MBLIT_FLAG_DST_DEV);
			break;
		case 1:
			x[i] = mb_fill(g + (k % 3) * MB_MIB, MB_MIB,
				       0x02020202U * (i + 1), 0);
			break;
		case 2:
			x[i] = mb_copy((6 + k % 2) * MB_MIB, g + (k % 3) * MB_MIB,
				       MB_MIB, MBLIT_FLAG_DST_DEV);
			break;
		default:
			x[i] = mb_copy(g + (3 + k % 3) * MB_MIB, (k % 6) * MB_MIB,
				       MB_MIB, MBLIT_FLAG_SRC_DEV);
		}
	}
}

/* Small commands for a doorbell rung in a P2P state, ending in a FENCE. */
static unsigned int late_cmds(struct mblit_desc *x, uint64_t fence)
{
	const uint64_t g = MB_DATA_IOVA + 6 * MB_MIB;

	x[0] = mb_fill(g + 0x1003, 5000, 0x11223344, 0);
	x[1] = mb_copy(13 * MB_MIB + 7, g + 0x1003, 5000, MBLIT_FLAG_DST_DEV);
	x[2] = mb_copy(g + 0x4000, 13 * MB_MIB, 3000, MBLIT_FLAG_SRC_DEV);
	x[3] = mb_nop();
	x[4] = mb_fence(P2P_FENCE, fence, 0);
	return 5;
}

struct p2p_snap {
	uint8_t *g, *m;
};

static void p2p_snap_take(struct __test_metadata *_metadata, struct mb_dev *d,
			  struct p2p_snap *s)
{
	s->g = malloc(MB_BUF_SIZE);
	s->m = malloc(d->mem);
	ASSERT_TRUE(s->g && s->m);
	memcpy(s->g, d->buf, MB_BUF_SIZE);
	mb_read_vram(_metadata, d, s->m);
}

static void p2p_snap_free(struct p2p_snap *s)
{
	free(s->g);
	free(s->m);
}

/*
 * @d is in a P2P state (@what) with submitted work pending.  The arc
 * returned after the command in progress finished; MMIO and BAR2 accesses
 * are accepted; @n more descriptors are submitted (a doorbell, rung twice);
 * and for 200 ms nothing runs: head, counters and guest and device memory
 * stay, STATUS.BUSY stays.
 */
static void p2p_holds(struct __test_metadata *_metadata, struct mb_dev *d,
		      const char *what, const struct mblit_desc *more,
		      unsigned int n, uint64_t *bytes)
{
	uint32_t head = RD32(MBLIT_REG_RING_HEAD);
	uint64_t cmds = RD64(MBLIT_REG_CMD_COUNT);
	uint64_t nbytes = RD64(MBLIT_REG_BYTE_COUNT);
	uint64_t fence = RD64(MBLIT_REG_FENCE_LAST);
	uint8_t page[MB_PAGE], back[MB_PAGE], line = 0;
	struct p2p_snap a, b;

	TH_LOG("%s: head %u of %u", what, head, d->tail);
	ASSERT_NE(d->tail, head) TH_LOG("%s: the work finished before the arc",
					what);
	/* The arc waited for the command in progress: none is. */
	EXPECT_EQ(head, cmds) TH_LOG("%s: a command was still running", what);
	EXPECT_EQ(0, mb_debugfs(_metadata, d, "pinned_pages"))
		TH_LOG("%s: pages pinned after the arc returned", what);
	EXPECT_EQ(MBLIT_STATUS_BUSY, RD32(MBLIT_REG_STATUS)) TH_LOG("%s", what);

	/* BAR0: registers are written and read. */
	WR64(MBLIT_REG_SCRATCH2, 0x5a5aa5a5c3c33c3cULL);
	EXPECT_EQ(0x5a5aa5a5c3c33c3cULL, RD64(MBLIT_REG_SCRATCH2)) TH_LOG("%s", what);
	WR32(MBLIT_REG_INT_MASK, MBLIT_INT_FENCE);
	EXPECT_EQ(MBLIT_INT_FENCE, RD32(MBLIT_REG_INT_MASK)) TH_LOG("%s", what);
	WR32(MBLIT_REG_INT_MASK, 0);
	/* BAR2: a page no command touches. */
	mb_rand_fill(d, page, sizeof(page));
	mb_bar2_wr(_metadata, d, P2P_DEV_PAGE, page, sizeof(page));
	mb_bar2_rd(_metadata, d, P2P_DEV_PAGE, back, sizeof(back));
	EXPECT_EQ(0, memcmp(page, back, sizeof(page))) TH_LOG("%s: BAR2", what);
	/* Config space. */
	line = 0x2b;
	MB_ACC_OK(d, &d->cfg, true, PCI_INTERRUPT_LINE, &line, 1);
	line = 0;
	MB_ACC_OK(d, &d->cfg, false, PCI_INTERRUPT_LINE, &line, 1);
	EXPECT_EQ(0x2b, line) TH_LOG("%s: config space", what);

	/* The doorbell, twice: stored, and nothing more. */
	*bytes += mb_submit(_metadata, d, more, n);
	EXPECT_EQ(d->tail, RD32(MBLIT_REG_RING_TAIL)) TH_LOG("%s: RING_TAIL", what);
	WR32(MBLIT_REG_RING_TAIL, d->tail);

	p2p_snap_take(_metadata, d, &a);
	mb_sleep_ms(200);
	p2p_snap_take(_metadata, d, &b);
	EXPECT_EQ(head, RD32(MBLIT_REG_RING_HEAD))
		TH_LOG("%s: the engine fetched a command", what);
	EXPECT_EQ(cmds, RD64(MBLIT_REG_CMD_COUNT)) TH_LOG("%s", what);
	EXPECT_EQ(nbytes, RD64(MBLIT_REG_BYTE_COUNT)) TH_LOG("%s", what);
	EXPECT_EQ(fence, RD64(MBLIT_REG_FENCE_LAST)) TH_LOG("%s", what);
	EXPECT_EQ(0, memcmp(a.g, b.g, MB_BUF_SIZE))
		TH_LOG("%s: guest memory changed", what);
	EXPECT_EQ(0, memcmp(a.m, b.m, d->mem))
		TH_LOG("%s: device memory changed", what);
	EXPECT_EQ(MBLIT_STATUS_BUSY, RD32(MBLIT_REG_STATUS)) TH_LOG("%s", what);
	p2p_snap_free(&a);
	p2p_snap_free(&b);
}

/*
 * Back in a running state: everything submitted ran, each command once
 * (CMD_COUNT; debugfs "commands", which counts every command this mdev
 * ran since its creation, is then @dbg).
 */
static void p2p_all_ran(struct __test_metadata *_metadata, struct mb_dev *d,
			uint64_t bytes, uint64_t fence, uint64_t dbg,
			const char *what)
{
	mb_wait_done(_metadata, d);
	EXPECT_EQ(d->tail, RD32(MBLIT_REG_RING_HEAD)) TH_LOG("%s", what);
	EXPECT_EQ(d->tail, RD64(MBLIT_REG_CMD_COUNT))
		TH_LOG("%s: commands run (a doorbell ran twice, or not at all)",
		       what);
	EXPECT_EQ(dbg, mb_debugfs(_metadata, d, "commands")) TH_LOG("%s", what);
	EXPECT_EQ(bytes, RD64(MBLIT_REG_BYTE_COUNT)) TH_LOG("%s", what);
	EXPECT_EQ(fence, RD64(MBLIT_REG_FENCE_LAST)) TH_LOG("%s", what);
	mb_check_guest(_metadata, d, what);
	mb_check_dev(_metadata, d, 0, d->mem, what);
}

TEST_F_TIMEOUT(mig, running_p2p_takes_mmio_and_holds_the_doorbell, 600)
{
	struct mb_dev *d = &self->d[0];
	struct mblit_desc x[P2P_N], more[8];
	uint64_t bytes, dbg;
	uint32_t head;
	unsigned int n;

	mb_open(_metadata, d, "mblit-16m", variant->backend);
	big_cmds(x, P2P_N);
	mb_ring_setup(_metadata, d, 256);
	bytes = mb_submit(_metadata, d, x, P2P_N);
	mb_wait_head(_metadata, d, 2);

	/* In flight: RUNNING -> RUNNING_P2P. */
	set_ok(_metadata, d, VFIO_DEVICE_STATE_RUNNING_P2P, NULL, false);
	n = late_cmds(more, 0xa11ce);
	p2p_holds(_metadata, d, "RUNNING_P2P", more, n, &bytes);
	head = RD32(MBLIT_REG_RING_HEAD);

	/* Through STOP and back into RUNNING_P2P: still held. */
	set_ok(_metadata, d, VFIO_DEVICE_STATE_STOP, NULL, false);
	set_ok(_metadata, d, VFIO_DEVICE_STATE_RUNNING_P2P, NULL, false);
	mb_sleep_ms(100);
	EXPECT_EQ(head, RD32(MBLIT_REG_RING_HEAD)) TH_LOG("STOP -> RUNNING_P2P");

	set_ok(_metadata, d, VFIO_DEVICE_STATE_RUNNING, NULL, false);
	p2p_all_ran(_metadata, d, bytes, 0xa11ce, d->tail, "back in RUNNING");

	/*
	 * A ring reset, programmed and enabled entirely in RUNNING_P2P
	 * (CTRL.RESET, RING_BASE, RING_SIZE, CTRL.ENABLE, RING_TAIL): the
	 * engine starts nothing until RUNNING.
	 */
	dbg = mb_debugfs(_metadata, d, "commands");
	set_ok(_metadata, d, VFIO_DEVICE_STATE_RUNNING_P2P, NULL, false);
	mb_engine_reset(_metadata, d);
	mb_expect_reset_regs(_metadata, d, "CTRL.RESET in RUNNING_P2P");
	mb_ring_setup(_metadata, d, 16);
	EXPECT_EQ(MBLIT_CTRL_ENABLE, RD32(MBLIT_REG_CTRL));
	n = late_cmds(more, 0xb0b);
	bytes = mb_submit(_metadata, d, more, n);
	mb_sleep_ms(200);
	EXPECT_EQ(0, RD32(MBLIT_REG_RING_HEAD))
		TH_LOG("a ring enabled in RUNNING_P2P ran");
	EXPECT_EQ(0, RD64(MBLIT_REG_CMD_COUNT));
	EXPECT_EQ(0, RD64(MBLIT_REG_FENCE_LAST));
	EXPECT_EQ(MBLIT_STATUS_BUSY, RD32(MBLIT_REG_STATUS));
	set_ok(_metadata, d, VFIO_DEVICE_STATE_RUNNING, NULL, false);
	p2p_all_ran(_metadata, d, bytes, 0xb0b, dbg + n,
		    "ring enabled in RUNNING_P2P");
}

TEST_F_TIMEOUT(mig, pre_copy_p2p_takes_mmio_and_holds_the_doorbell, 600)
{
	struct mb_dev *d = &self->d[0];
	struct mig_buf *b = &self->b[0];
	struct mblit_desc x[P2P_N], more[8];
	uint8_t page[MB_PAGE];
	uint64_t bytes, i0, d0;
	unsigned int n, k = 0;
	size_t got;
	int fd = -1;

	mb_open(_metadata, d, "mblit-16m", variant->backend);
	big_cmds(x, P2P_N);
	mb_ring_setup(_metadata, d, 256);
	bytes = mb_submit(_metadata, d, x, P2P_N);
	mb_wait_head(_metadata, d, 2);

	set_ok(_metadata, d, VFIO_DEVICE_STATE_PRE_COPY, &fd, true);
	self->fds[0] = fd;
	set_ok(_metadata, d, VFIO_DEVICE_STATE_PRE_COPY_P2P, NULL, false);
	n = late_cmds(more, 0xc0ffee);
	p2p_holds(_metadata, d, "PRE_COPY_P2P", more, n, &bytes);

	/* A BAR2 write in PRE_COPY_P2P is tracked like one in PRE_COPY. */
	read_enomsg(_metadata, fd, b, &k);
	info_ok(_metadata, fd, &i0, &d0);
	EXPECT_EQ(0, i0);
	EXPECT_EQ(0, d0) TH_LOG("dirty pages with the engine held");
	mb_rand_fill(d, page, sizeof(page));
	mb_bar2_wr(_metadata, d, P2P_DEV_PAGE + MB_PAGE + 100, page, 1000);
	info_ok(_metadata, fd, &i0, &d0);
	EXPECT_EQ(0, i0);
	EXPECT_EQ(mig_mblit_chunk_len(1), d0)
		TH_LOG("a BAR2 write in PRE_COPY_P2P is not dirty");
	b->len = 0;
	got = read_enomsg(_metadata, fd, b, &k);
	ASSERT_EQ(mig_mblit_chunk_len(1), got);
	EXPECT_EQ(MIG_MBLIT_MAGIC_PAGES, mig_le32(b->p));
	EXPECT_EQ(1, mig_le32(b->p + 12));
	EXPECT_EQ((P2P_DEV_PAGE + MB_PAGE) / MB_PAGE, mig_le64(b->p + 32));
	EXPECT_EQ(0, memcmp(b->p + 40, d->md + P2P_DEV_PAGE + MB_PAGE, MB_PAGE))
		TH_LOG("the page sent is not what BAR2 wrote");

	/* PRE_COPY: the held work runs, once, and dirties device memory. */
	set_ok(_metadata, d, VFIO_DEVICE_STATE_PRE_COPY, NULL, false);
	p2p_all_ran(_metadata, d, bytes, 0xc0ffee, d->tail, "back in PRE_COPY");
	info_ok(_metadata, fd, &i0, &d0);
	EXPECT_LT(0, d0) TH_LOG("the work run in PRE_COPY dirtied nothing");
	set_ok(_metadata, d, VFIO_DEVICE_STATE_RUNNING, NULL, false);
	close(fd);
	self->fds[0] = -1;
}

/*
 * A doorbell rung in RUNNING_P2P is device state: a STOP_COPY stream taken
 * after it carries it, the destination runs the work once it is RUNNING,
 * and so does the source if it resumes instead.
 */
TEST_F_TIMEOUT(mig, doorbell_rung_in_running_p2p_runs_once_on_each_side, 600)
{
	struct mb_dev *src = &self->d[0], *dst = &self->d[1], *d;
	struct mig_buf *st = &self->b[0];
	struct mblit_desc x[8];
	uint64_t bytes, bytes0;
	unsigned int n, kw = 2;
	uint32_t head;
	size_t done = 0;
	int fd = -1, ret;

	mb_open(_metadata, src, "mblit-16m", variant->backend);
	mb_open(_metadata, dst, "mblit-16m", variant->backend);
	d = src;
	mb_ring_setup(_metadata, d, 64);
	x[0] = mb_fill(MB_DATA_IOVA + 0x20000, 0x3000, 0xabcdef01, 0);
	x[1] = mb_fence(P2P_FENCE, 1, 0);
	bytes0 = mb_run(_metadata, d, x, 2);

	set_ok(_metadata, src, VFIO_DEVICE_STATE_RUNNING_P2P, NULL, false);
	n = late_cmds(x, 0xd00be11);
	bytes = bytes0 + mb_submit(_metadata, d, x, n);
	mb_sleep_ms(100);
	head = RD32(MBLIT_REG_RING_HEAD);
	EXPECT_EQ(2, head) TH_LOG("the engine ran in RUNNING_P2P");

	/* RUNNING_P2P -> STOP -> STOP_COPY: the stream. */
	set_ok(_metadata, src, VFIO_DEVICE_STATE_STOP, NULL, false);
	set_ok(_metadata, src, VFIO_DEVICE_STATE_STOP_COPY, &fd, true);
	self->fds[0] = fd;
	read_eof(_metadata, fd, st, NULL);
	close(fd);
	self->fds[0] = -1;
	set_ok(_metadata, src, VFIO_DEVICE_STATE_STOP, NULL, false);

	/* The destination, with the guest's memory as the VMM copies it. */
	set_ok(_metadata, dst, VFIO_DEVICE_STATE_RESUMING, &fd, true);
	self->fds[1] = fd;
	ret = mig_write_stream(fd, st->p, st->len, &kw, &done);
	ASSERT_EQ(0, ret) TH_LOG("write at %zu: %s", done, strerror(-ret));
	set_ok(_metadata, dst, VFIO_DEVICE_STATE_STOP, NULL, false);
	close(fd);
	self->fds[1] = -1;
	memcpy(dst->buf, src->buf, MB_BUF_SIZE);
	memcpy(dst->mg, src->mg, MB_BUF_SIZE);
	memcpy(dst->md, src->md, dst->mem);
	dst->ring_iova = src->ring_iova;
	dst->ring_va = dst->buf + (src->ring_va - src->buf);
	dst->ring_size = src->ring_size;
	dst->tail = src->tail;
	d = dst;
	EXPECT_EQ(2, RD32(MBLIT_REG_RING_HEAD));
	EXPECT_EQ(d->tail, RD32(MBLIT_REG_RING_TAIL)) TH_LOG("the doorbell was not saved");
	set_ok(_metadata, dst, VFIO_DEVICE_STATE_RUNNING, NULL, false);
	p2p_all_ran(_metadata, dst, bytes, 0xd00be11, n, "destination");

	/* The source resumes instead (a cancelled migration): the same. */
	d = src;
	EXPECT_EQ(2, RD32(MBLIT_REG_RING_HEAD));
	set_ok(_metadata, src, VFIO_DEVICE_STATE_RUNNING, NULL, false);
	p2p_all_ran(_metadata, src, bytes, 0xd00be11, 2 + n, "source resumed");
}

/* ---- pages records of 257 pages ------------------------------------------ */

#define NPG	257	/* one more than PAGES_CHUNK_MAX */

/* 257 page indices spread over device memory, the first and last included. */
static void spread_pages(uint64_t npages, uint64_t *idx)
{
	unsigned int i;

	for (i = 0; i < NPG; i++)
		idx[i] = i * (npages - 1) / (NPG - 1);
}

/*
 * Walk @len bytes of stream at @p: every record whole, its header right
 * for @d's type, pages records of at most 256 entries with valid CRCs,
 * indices strictly increasing within each record (and across the records
 * when @ordered), each page carrying @d->md's content; every page counted
 * in @seen.  Records' page counts go into @counts (at most @max), their
 * number into *@nrec; device records into *@ndev.
 */
static void walk_records(struct __test_metadata *_metadata, struct mb_dev *d,
			 const uint8_t *p, size_t len, bool ordered,
			 uint8_t *seen, unsigned int *counts, unsigned int max,
			 unsigned int *nrec, unsigned int *ndev)
{
	const uint32_t type_id = d->mem / MB_MIB;
	uint64_t off = 0, last = 0, idx, rl;
	bool any = false;
	uint32_t cnt, i;

	*nrec = *ndev = 0;
	while (off < len) {
		const uint8_t *h = p + off;

		ASSERT_LE(off + 32, len) TH_LOG("a partial header at %llu",
						(unsigned long long)off);
		rl = mig_le64(h + 24);
		ASSERT_LE(off + rl, len) TH_LOG("a partial record at %llu",
						(unsigned long long)off);
		EXPECT_EQ(1, mig_le32(h + 4));
		EXPECT_EQ(type_id, mig_le32(h + 8));
		EXPECT_EQ(d->mem, mig_le64(h + 16));
		EXPECT_EQ(crc32_le(h, rl - 4), mig_le32(h + rl - 4))
			TH_LOG("CRC of the record at %llu", (unsigned long long)off);
		if (mig_le32(h) == MIG_MBLIT_MAGIC_DEV) {
			(*ndev)++;
			EXPECT_EQ(off + rl, len) TH_LOG("device record not last");
			off += rl;
			continue;
		}
		ASSERT_EQ(MIG_MBLIT_MAGIC_PAGES, mig_le32(h));
		cnt = mig_le32(h + 12);
		EXPECT_GE(MIG_MBLIT_CHUNK_MAX, cnt)
			TH_LOG("a pages record of %u pages", cnt);
		ASSERT_EQ(mig_mblit_chunk_len(cnt), rl);
		ASSERT_GT(max, *nrec);
		counts[(*nrec)++] = cnt;
		if (!ordered)
			any = false;
		for (i = 0; i < cnt; i++) {
			const uint8_t *e = h + 32 + i * MIG_MBLIT_ENTRY;

			idx = mig_le64(e);
			ASSERT_GT(d->mem / MB_PAGE, idx);
			EXPECT_TRUE(!any || idx > last)
				TH_LOG("page %llu after page %llu",
				       (unsigned long long)idx,
				       (unsigned long long)last);
			any = true;
			last = idx;
			seen[idx]++;
			EXPECT_EQ(0, memcmp(e + 8, d->md + idx * MB_PAGE, MB_PAGE))
				TH_LOG("page %llu's content", (unsigned long long)idx);
		}
		off += rl;
	}
}

/* The 257 pages at @idx, each sent exactly once, nothing else. */
static void expect_seen(struct __test_metadata *_metadata, struct mb_dev *d,
			uint8_t *seen, const uint64_t *idx, const char *what)
{
	uint64_t i, np = d->mem / MB_PAGE, sent = 0;

	for (i = 0; i < NPG; i++) {
		EXPECT_EQ(1, seen[idx[i]]) TH_LOG("%s: page %llu sent %u times",
						  what, (unsigned long long)idx[i],
						  seen[idx[i]]);
		seen[idx[i]] = 0;
	}
	for (i = 0; i < np; i++)
		sent += seen[i];
	EXPECT_EQ(0, sent) TH_LOG("%s: %llu pages sent that were not written",
				  what, (unsigned long long)sent);
	memset(seen, 0, np);
}

/* Exactly two pages records, of 256 and 1 pages (in this order). */
static void expect_split(struct __test_metadata *_metadata,
			 const unsigned int *counts, unsigned int nrec,
			 const char *what)
{
	EXPECT_EQ(2, nrec) TH_LOG("%s: %u pages records", what, nrec);
	if (nrec == 2) {
		EXPECT_EQ(256, counts[0]) TH_LOG("%s", what);
		EXPECT_EQ(1, counts[1]) TH_LOG("%s", what);
	}
}

/* Write 257 spread pages of random content into @d through BAR2. */
static void write_257(struct __test_metadata *_metadata, struct mb_dev *d,
		      const uint64_t *idx)
{
	uint8_t page[MB_PAGE];
	unsigned int i;

	for (i = 0; i < NPG; i++) {
		mb_rand_fill(d, page, sizeof(page));
		page[0] |= 1;	/* never a page of zeros */
		mb_bar2_wr(_metadata, d, idx[i] * MB_PAGE, page, sizeof(page));
	}
}

static bool page_is_zero(const uint8_t *p)
{
	return !p[0] && !memcmp(p, p + 1, MB_PAGE - 1);
}

/* Load @s into @dst and compare the 257 pages (and a few others). */
static void load_and_compare(struct __test_metadata *_metadata,
			     FIXTURE_DATA(mig) *self, struct mb_dev *src,
			     struct mb_dev *dst, const struct mig_buf *s,
			     const uint64_t *idx, const char *what)
{
	uint8_t got[MB_PAGE];
	unsigned int i, kw = 3;
	size_t done = 0;
	int fd = -1, ret;

	set_ok(_metadata, dst, VFIO_DEVICE_STATE_RESUMING, &fd, true);
	self->fds[1] = fd;
	ret = mig_write_stream(fd, s->p, s->len, &kw, &done);
	EXPECT_EQ(0, ret) TH_LOG("%s: write at %zu of %zu: %s", what, done,
				 s->len, strerror(-ret));
	set_ok(_metadata, dst, VFIO_DEVICE_STATE_STOP, NULL, false);
	close(fd);
	self->fds[1] = -1;
	set_ok(_metadata, dst, VFIO_DEVICE_STATE_RUNNING, NULL, false);
	for (i = 0; i < NPG; i++) {
		mb_bar2_rd(_metadata, dst, idx[i] * MB_PAGE, got, MB_PAGE);
		EXPECT_EQ(0, memcmp(got, src->md + idx[i] * MB_PAGE, MB_PAGE))
			TH_LOG("%s: page %llu", what, (unsigned long long)idx[i]);
		/* The page after each written one stayed zero. */
		if (idx[i] + 1 < dst->mem / MB_PAGE &&
		    (i + 1 == NPG || idx[i + 1] != idx[i] + 1)) {
			mb_bar2_rd(_metadata, dst, (idx[i] + 1) * MB_PAGE, got,
				   MB_PAGE);
			EXPECT_TRUE(page_is_zero(got))
				TH_LOG("%s: page %llu not zero", what,
				       (unsigned long long)idx[i] + 1);
		}
	}
	EXPECT_EQ(0x257, mb_rd(_metadata, dst, MBLIT_REG_SCRATCH1, 8))
		TH_LOG("%s: SCRATCH1", what);
}

/*
 * 257 written pages on the 16 MiB and 256 MiB types: the PRE_COPY initial
 * pass, a PRE_COPY dirty pass of 257 pages and a STOP_COPY stream each
 * carry them as a pages record of 256 pages (PAGES_CHUNK_MAX) and one of
 * 1, with PRECOPY_INFO and MIG_DATA_SIZE counting exactly that, and a
 * destination of the type takes both streams.
 */
TEST_F_TIMEOUT(mig, pages_records_split_at_256_pages, 900)
{
	static const char *const types[] = { "mblit-16m", "mblit-256m" };
	struct mb_dev *src = &self->d[0], *dst = &self->d[1], *d;
	struct mig_buf *pre = &self->b[0], *sc = &self->b[1], *tmp = &self->b[2];
	uint64_t idx[NPG], i0, d0, est, split = mig_mblit_stream_len(NPG);
	unsigned int t, counts[8], nrec, ndev, k = 0;
	uint8_t *seen;
	size_t got;
	int fd = -1;

	ASSERT_EQ(mig_mblit_chunk_len(256) + mig_mblit_chunk_len(1), split);
	for (t = 0; t < ARRAY_SIZE(types); t++) {
		const char *ty = types[t];

		mb_open(_metadata, src, ty, variant->backend);
		mb_open(_metadata, dst, ty, variant->backend);
		d = src;
		seen = calloc(d->mem / MB_PAGE, 1);
		ASSERT_NE(NULL, seen);
		spread_pages(d->mem / MB_PAGE, idx);
		write_257(_metadata, src, idx);
		WR64(MBLIT_REG_SCRATCH1, 0x257);

		/* STOP_COPY straight from RUNNING. */
		ASSERT_EQ(0, mig_data_size(DFD(src), &est));
		EXPECT_EQ(split + MIG_MBLIT_DEV_REC, est) TH_LOG("%s", ty);
		sc->len = 0;
		save_all(_metadata, src, sc);
		EXPECT_EQ(split + MIG_MBLIT_DEV_REC, sc->len) TH_LOG("%s", ty);
		walk_records(_metadata, src, sc->p, sc->len, true, seen, counts,
			     ARRAY_SIZE(counts), &nrec, &ndev);
		expect_split(_metadata, counts, nrec, "STOP_COPY");
		EXPECT_EQ(1, ndev);
		expect_seen(_metadata, src, seen, idx, "STOP_COPY");
		load_and_compare(_metadata, self, src, dst, sc, idx, "STOP_COPY");

		/* PRE_COPY: the initial pass. */
		set_ok(_metadata, src, VFIO_DEVICE_STATE_PRE_COPY, &fd, true);
		self->fds[0] = fd;
		info_ok(_metadata, fd, &i0, &d0);
		EXPECT_EQ(split, i0) TH_LOG("%s: initial_bytes", ty);
		EXPECT_EQ(0, d0);
		pre->len = 0;
		got = read_enomsg(_metadata, fd, pre, &k);
		EXPECT_EQ(split, got);
		walk_records(_metadata, src, pre->p, pre->len, true, seen, counts,
			     ARRAY_SIZE(counts), &nrec, &ndev);
		expect_split(_metadata, counts, nrec, "initial pass");
		EXPECT_EQ(0, ndev);
		expect_seen(_metadata, src, seen, idx, "initial pass");

		/* The same 257 pages dirtied with new content: a dirty pass. */
		write_257(_metadata, src, idx);
		info_ok(_metadata, fd, &i0, &d0);
		EXPECT_EQ(0, i0);
		EXPECT_EQ(split, d0) TH_LOG("%s: dirty_bytes", ty);
		ASSERT_EQ(0, mig_data_size(DFD(src), &est));
		EXPECT_EQ(split + MIG_MBLIT_DEV_REC, est) TH_LOG("%s", ty);
		tmp->len = 0;
		got = read_enomsg(_metadata, fd, tmp, &k);
		EXPECT_EQ(split, got);
		walk_records(_metadata, src, tmp->p, tmp->len, false, seen,
			     counts, ARRAY_SIZE(counts), &nrec, &ndev);
		expect_split(_metadata, counts, nrec, "dirty pass");
		EXPECT_EQ(0, ndev);
		expect_seen(_metadata, src, seen, idx, "dirty pass");
		mig_buf_append(pre, tmp->p, tmp->len);

		/* STOP_COPY: nothing dirty left, the device record. */
		set_ok(_metadata, src, VFIO_DEVICE_STATE_PRE_COPY_P2P, NULL, false);
		set_ok(_metadata, src, VFIO_DEVICE_STATE_STOP_COPY, NULL, false);
		tmp->len = 0;
		got = read_eof(_metadata, fd, tmp, &k);
		EXPECT_EQ(MIG_MBLIT_DEV_REC, got);
		mig_buf_append(pre, tmp->p, tmp->len);
		close(fd);
		self->fds[0] = -1;
		set_ok(_metadata, src, VFIO_DEVICE_STATE_RUNNING, NULL, false);

		/* A fresh destination takes the pre-copy stream. */
		ASSERT_EQ(0, ioctl(DFD(dst), VFIO_DEVICE_RESET));
		load_and_compare(_metadata, self, src, dst, pre, idx, "PRE_COPY");

		free(seen);
		mb_close(_metadata, src);
		mb_close(_metadata, dst);
		mb_init(src);
		mb_init(dst);
	}
}

/*
 * A pages record of @count_field pages with the @n entries at @idx (content
 * @pages), total length @len_field (0: the right one for @n) and a valid
 * CRC, for @d's type, appended to @b.
 */
static void build_pages_record(struct mb_dev *d, struct mig_buf *b,
			       uint32_t count_field, const uint64_t *idx,
			       unsigned int n, const uint8_t *pages)
{
	uint64_t len = mig_mblit_chunk_len(n);
	uint8_t *r = calloc(1, len);
	unsigned int i;

	put32(r, MIG_MBLIT_MAGIC_PAGES);
	put32(r + 4, 1);
	put32(r + 8, d->mem / MB_MIB);
	put32(r + 12, count_field);
	put64(r + 16, d->mem);
	put64(r + 24, len);
	for (i = 0; i < n; i++) {
		put64(r + 32 + i * MIG_MBLIT_ENTRY, idx[i]);
		memcpy(r + 40 + i * MIG_MBLIT_ENTRY, pages + i * MB_PAGE, MB_PAGE);
	}
	fix_crc(r, len);
	mig_buf_append(b, r, len);
	free(r);
}

/*
 * Pages records built by hand on the 16 MiB and 256 MiB types: one of 256
 * pages (PAGES_CHUNK_MAX) followed by a device record is taken; one
 * claiming 257 pages -- carrying them with a consistent length and CRC, or
 * carrying 256 -- is refused with EINVAL by the write that brings it (at
 * the latest the one completing it), the stream is poisoned, leaving
 * RESUMING fails with EINVAL into ERROR, and none of its pages reached
 * device memory.
 */
TEST_F_TIMEOUT(mig, pages_record_of_257_pages_is_refused, 900)
{
	static const char *const types[] = { "mblit-16m", "mblit-256m" };
	struct mb_dev *d = &self->d[1];
	struct mig_buf *devrec = &self->b[0], *s = &self->b[1];
	uint64_t idx[NPG];
	unsigned int t, c, i, kw;
	uint8_t *pages, got[MB_PAGE];
	size_t done;
	int fd = -1, ret, st;

	pages = malloc(NPG * MB_PAGE);
	ASSERT_NE(NULL, pages);
	for (t = 0; t < ARRAY_SIZE(types); t++) {
		const char *ty = types[t];

		mb_open(_metadata, d, ty, variant->backend);
		spread_pages(d->mem / MB_PAGE, idx);
		for (i = 0; i < NPG; i++) {
			mb_rand_fill(d, pages + i * MB_PAGE, MB_PAGE);
			pages[i * MB_PAGE] |= 1;
		}
		/* The device's own device record (no page written: 0 pages). */
		devrec->len = 0;
		save_all(_metadata, d, devrec);
		ASSERT_EQ(MIG_MBLIT_DEV_REC, devrec->len);

		/* 256 pages: taken, and they are device memory after it. */
		s->len = 0;
		build_pages_record(d, s, 256, idx, 256, pages);
		mig_buf_append(s, devrec->p, devrec->len);
		set_ok(_metadata, d, VFIO_DEVICE_STATE_RESUMING, &fd, true);
		self->fds[0] = fd;
		kw = 0;
		ret = mig_write_stream(fd, s->p, s->len, &kw, &done);
		EXPECT_EQ(0, ret) TH_LOG("%s: 256 pages: write at %zu: %s", ty,
					 done, strerror(-ret));
		set_ok(_metadata, d, VFIO_DEVICE_STATE_STOP, NULL, false);
		close(fd);
		self->fds[0] = -1;
		set_ok(_metadata, d, VFIO_DEVICE_STATE_RUNNING, NULL, false);
		for (i = 0; i < 256; i++) {
			mb_bar2_rd(_metadata, d, idx[i] * MB_PAGE, got, MB_PAGE);
			EXPECT_EQ(0, memcmp(got, pages + i * MB_PAGE, MB_PAGE))
				TH_LOG("%s: page %llu of the 256-page record", ty,
				       (unsigned long long)idx[i]);
		}
		mb_bar2_rd(_metadata, d, idx[256] * MB_PAGE, got, MB_PAGE);
		EXPECT_TRUE(page_is_zero(got)) TH_LOG("%s: a page no record carried", ty);

		for (c = 0; c < 2; c++) {
			const char *what = c ? "count 257, 256 entries" :
					       "257 entries";

			ASSERT_EQ(0, ioctl(DFD(d), VFIO_DEVICE_RESET));
			s->len = 0;
			build_pages_record(d, s, 257, idx, c ? 256 : 257, pages);
			mig_buf_append(s, devrec->p, devrec->len);
			set_ok(_metadata, d, VFIO_DEVICE_STATE_RESUMING, &fd, true);
			self->fds[0] = fd;
			kw = 1;
			ret = mig_write_stream(fd, s->p, s->len, &kw, &done);
			TH_LOG("%s, %s: write %s at %zu of %zu", ty, what,
			       ret ? strerror(-ret) : "accepted", done, s->len);
			EXPECT_EQ(-EINVAL, ret) TH_LOG("%s, %s", ty, what);
			EXPECT_GE(s->len - devrec->len, done)
				TH_LOG("%s, %s: refused only after the record",
				       ty, what);
			/* Poisoned. */
			errno = 0;
			EXPECT_EQ(-1, write(fd, devrec->p, devrec->len));
			EXPECT_EQ(EINVAL, errno);
			ret = mig_set(DFD(d), VFIO_DEVICE_STATE_STOP, NULL);
			EXPECT_EQ(-EINVAL, ret) TH_LOG("%s, %s: RESUMING -> STOP: %s",
						       ty, what, strerror(-ret));
			st = mig_get(DFD(d));
			EXPECT_EQ(VFIO_DEVICE_STATE_ERROR, st) TH_LOG("%s, %s: %s", ty,
								      what,
								      mig_state_name(st));
			close(fd);
			self->fds[0] = -1;
			/* Nothing of the record is device memory. */
			for (i = 0; i < NPG; i++) {
				mb_bar2_rd(_metadata, d, idx[i] * MB_PAGE, got,
					   MB_PAGE);
				EXPECT_TRUE(page_is_zero(got)) TH_LOG("%s, %s: page %llu written",
							    ty, what,
							    (unsigned long long)idx[i]);
			}
			ASSERT_EQ(0, ioctl(DFD(d), VFIO_DEVICE_RESET));
			ASSERT_EQ(VFIO_DEVICE_STATE_RUNNING, mig_get(DFD(d)));
		}
		mb_close(_metadata, d);
		mb_init(d);
	}
	free(pages);
}

TEST_HARNESS_MAIN
