// SPDX-License-Identifier: GPL-2.0
/*
 * The mblit ring engine through the VFIO uAPI (docs/device.md §7 ring, §8
 * descriptors and error codes, §9 interrupts, §11 reset), plus the
 * driver's debugfs counters and pin accounting.  Every test runs on both
 * VFIO back-ends (type1 container, iommufd cdev) with a fresh mblit-16m
 * mdev and an 8 MiB guest buffer mapped at a fixed IOVA; results are
 * checked byte by byte against a model of guest and device memory.
 */
#include "kselftest_harness.h"
#include "mblit_dev.h"

FIXTURE(engine) {
	struct mb_dev dev;
	int efd;
	uint8_t *extra;		/* a separately mapped buffer, or NULL */
	size_t extra_size;
	bool extra_mapped;
};

FIXTURE_VARIANT(engine) {
	enum vfio_backend backend;
};

FIXTURE_VARIANT_ADD(engine, type1) {
	.backend = VFIO_BACKEND_TYPE1,
};

FIXTURE_VARIANT_ADD(engine, iommufd) {
	.backend = VFIO_BACKEND_IOMMUFD,
};

FIXTURE_SETUP(engine)
{
	mb_init(&self->dev);
	self->efd = -1;
	self->extra = NULL;
	self->extra_mapped = false;
	mb_open(_metadata, &self->dev, "mblit-16m", variant->backend);
}

FIXTURE_TEARDOWN(engine)
{
	if (self->efd >= 0)
		close(self->efd);
	mb_close(_metadata, &self->dev);
	if (self->extra)
		munmap(self->extra, self->extra_size);
}

#define PAT1	0xa1b2c3d4U
#define PAT2	0x5a6b7c8dU

/* Counters after a run: CMD_COUNT and BYTE_COUNT as documented. */
static void expect_counts(struct __test_metadata *_metadata, struct mb_dev *d,
			  uint64_t cmds, uint64_t bytes)
{
	EXPECT_EQ(cmds, RD64(MBLIT_REG_CMD_COUNT));
	EXPECT_EQ(bytes, RD64(MBLIT_REG_BYTE_COUNT));
	/* Halves of an 8-byte register at width 4. */
	EXPECT_EQ((uint32_t)cmds, RD32(MBLIT_REG_CMD_COUNT));
	EXPECT_EQ((uint32_t)(bytes >> 32), RD32(MBLIT_REG_BYTE_COUNT + 4));
}

/* Run each descriptor alone; check counters as we go. */
static void run_each(struct __test_metadata *_metadata, struct mb_dev *d,
		     const struct mblit_desc *x, unsigned int n,
		     uint64_t *cmds, uint64_t *bytes)
{
	unsigned int i;

	for (i = 0; i < n; i++) {
		*bytes += mb_run(_metadata, d, &x[i], 1);
		*cmds += 1;
		expect_counts(_metadata, d, *cmds, *bytes);
	}
}

/* ---- data movement ------------------------------------------------------ */

TEST_F_TIMEOUT(engine, fill_guest, 300)
{
	struct mb_dev *d = &self->dev;
	const uint64_t g = MB_DATA_IOVA;
	const struct mblit_desc x[] = {
		/* odd offset, crossing three page boundaries, odd length */
		mb_fill(g + MB_PAGE - 3, 3 * MB_PAGE + 7, PAT1, 0),
		mb_fill(g + 5 * MB_PAGE + 1, 1, PAT2, 0),
		mb_fill(g + 7 * MB_PAGE - 1, 2, PAT1, 0),	/* straddles */
		mb_fill(g + 9 * MB_PAGE + 3, 3, 0, 0),
		mb_fill(g + 12 * MB_PAGE, MB_PAGE, 0xffffffff, 0),
		/* the maximum length, unaligned: 257 pages */
		mb_fill(g + 1 * MB_MIB + 5, MBLIT_XFER_MAX, PAT2, 0),
		/* ending at the last byte of the mapping */
		mb_fill(MB_IOVA_END - 4097, 4097, 0x01020304, 0),
	};
	uint64_t cmds = 0, bytes = 0;

	mb_ring_setup(_metadata, d, 16);
	run_each(_metadata, d, x, ARRAY_SIZE(x), &cmds, &bytes);
	mb_check_guest(_metadata, d, "fill_guest");
	/* Explicitly, the first fill's pattern and its neighbours. */
	EXPECT_EQ(0xd4, d->buf[MB_DATA_OFF + MB_PAGE - 3]);
	EXPECT_EQ(0xc3, d->buf[MB_DATA_OFF + MB_PAGE - 2]);
	EXPECT_EQ(0xa1, d->buf[MB_DATA_OFF + MB_PAGE]);
	EXPECT_EQ(d->mg[MB_DATA_OFF + MB_PAGE - 4],
		  d->buf[MB_DATA_OFF + MB_PAGE - 4]);
	/* Device memory untouched. */
	mb_check_dev(_metadata, d, 0, d->mem, "device memory");
}

TEST_F_TIMEOUT(engine, fill_device, 300)
{
	struct mb_dev *d = &self->dev;
	const uint64_t end = d->mem;
	uint8_t sentinel[2 * MB_PAGE];
	const struct mblit_desc x[] = {
		mb_fill(MB_PAGE - 3, 3 * MB_PAGE + 7, PAT1, MBLIT_FLAG_DST_DEV),
		mb_fill(5 * MB_PAGE + 1, 1, PAT2, MBLIT_FLAG_DST_DEV),
		mb_fill(7 * MB_PAGE - 1, 2, PAT1, MBLIT_FLAG_DST_DEV),
		mb_fill(9 * MB_PAGE + 3, 3, 0, MBLIT_FLAG_DST_DEV),
		mb_fill(MB_MIB + 5, MBLIT_XFER_MAX, PAT2, MBLIT_FLAG_DST_DEV),
		/* the last bytes of device memory */
		mb_fill(end - 4097, 4097, 0x01020304, MBLIT_FLAG_DST_DEV),
	};
	uint64_t cmds = 0, bytes = 0;

	/* Non-zero neighbours so "untouched" means something. */
	memset(sentinel, 0x5a, sizeof(sentinel));
	mb_bar2_wr(_metadata, d, 0, sentinel, sizeof(sentinel));
	mb_bar2_wr(_metadata, d, MB_MIB - MB_PAGE, sentinel, sizeof(sentinel));
	mb_bar2_wr(_metadata, d, 2 * MB_MIB, sentinel, sizeof(sentinel));
	mb_bar2_wr(_metadata, d, end - sizeof(sentinel), sentinel,
		   sizeof(sentinel));

	mb_ring_setup(_metadata, d, 16);
	run_each(_metadata, d, x, ARRAY_SIZE(x), &cmds, &bytes);
	mb_check_dev(_metadata, d, 0, d->mem, "fill_device");
	mb_check_guest(_metadata, d, "guest buffer");
}

/* Random source content in device memory [off, off+len). */
static void dev_random(struct __test_metadata *_metadata, struct mb_dev *d,
		       uint64_t off, size_t len)
{
	uint8_t *p = malloc(len);

	ASSERT_NE(NULL, p);
	mb_rand_fill(d, p, len);
	mb_bar2_wr(_metadata, d, off, p, len);
	free(p);
}

TEST_F_TIMEOUT(engine, copy_guest_to_guest, 300)
{
	struct mb_dev *d = &self->dev;
	const uint64_t g = MB_DATA_IOVA;
	const struct mblit_desc x[] = {
		mb_copy(g + 3 * MB_MIB + MB_PAGE - 3, g + MB_PAGE - 1001,
			3 * MB_PAGE + 7, 0),
		mb_copy(g + 3 * MB_MIB + 9 * MB_PAGE + 1, g + 9 * MB_PAGE + 2,
			1, 0),
		mb_copy(g + 3 * MB_MIB + 11 * MB_PAGE - 1,
			g + 11 * MB_PAGE - 2, 5, 0),
		/* adjacent, not overlapping: allowed */
		mb_copy(g + 20 * MB_PAGE + 100, g + 20 * MB_PAGE + 100 - 333,
			333, 0),
		/* one MiB, both ends unaligned */
		mb_copy(g + 4 * MB_MIB + 7, g + 1 * MB_MIB + 4093,
			MBLIT_XFER_MAX, 0),
		/* to the last byte of the mapping */
		mb_copy(MB_IOVA_END - 5000, g + 2 * MB_MIB + 1, 5000, 0),
	};
	uint64_t cmds = 0, bytes = 0;

	mb_ring_setup(_metadata, d, 8);
	run_each(_metadata, d, x, ARRAY_SIZE(x), &cmds, &bytes);
	mb_check_guest(_metadata, d, "copy_guest_to_guest");
	mb_check_dev(_metadata, d, 0, d->mem, "device memory");
}

TEST_F_TIMEOUT(engine, copy_guest_to_device, 300)
{
	struct mb_dev *d = &self->dev;
	const uint64_t g = MB_DATA_IOVA;
	uint8_t sentinel[MB_PAGE];
	const struct mblit_desc x[] = {
		mb_copy(MB_PAGE - 3, g + 2 * MB_PAGE - 1001, 3 * MB_PAGE + 7,
			MBLIT_FLAG_DST_DEV),
		mb_copy(9 * MB_PAGE + 1, g + 9 * MB_PAGE + 2, 1,
			MBLIT_FLAG_DST_DEV),
		mb_copy(11 * MB_PAGE - 2, g + 11 * MB_PAGE - 1, 3,
			MBLIT_FLAG_DST_DEV),
		mb_copy(MB_MIB + 7, g + MB_MIB + 4093, MBLIT_XFER_MAX,
			MBLIT_FLAG_DST_DEV),
		mb_copy(d->mem - 5000, g + 3 * MB_MIB + 1, 5000,
			MBLIT_FLAG_DST_DEV),
	};
	uint64_t cmds = 0, bytes = 0;

	memset(sentinel, 0xa5, sizeof(sentinel));
	mb_bar2_wr(_metadata, d, 0, sentinel, sizeof(sentinel));
	mb_bar2_wr(_metadata, d, 4 * MB_PAGE, sentinel, sizeof(sentinel));
	mb_bar2_wr(_metadata, d, 2 * MB_MIB, sentinel, sizeof(sentinel));
	mb_bar2_wr(_metadata, d, d->mem - 2 * MB_PAGE, sentinel,
		   sizeof(sentinel));

	mb_ring_setup(_metadata, d, 8);
	run_each(_metadata, d, x, ARRAY_SIZE(x), &cmds, &bytes);
	mb_check_dev(_metadata, d, 0, d->mem, "copy_guest_to_device");
	mb_check_guest(_metadata, d, "guest buffer (source)");
}

TEST_F_TIMEOUT(engine, copy_device_to_guest, 300)
{
	struct mb_dev *d = &self->dev;
	const uint64_t g = MB_DATA_IOVA;
	const struct mblit_desc x[] = {
		mb_copy(g + MB_PAGE - 3, 2 * MB_PAGE - 1001, 3 * MB_PAGE + 7,
			MBLIT_FLAG_SRC_DEV),
		mb_copy(g + 9 * MB_PAGE + 1, 9 * MB_PAGE + 2, 1,
			MBLIT_FLAG_SRC_DEV),
		mb_copy(g + 11 * MB_PAGE - 2, 11 * MB_PAGE - 1, 3,
			MBLIT_FLAG_SRC_DEV),
		mb_copy(g + MB_MIB + 7, MB_MIB + 4093, MBLIT_XFER_MAX,
			MBLIT_FLAG_SRC_DEV),
		mb_copy(MB_IOVA_END - 5000, d->mem - 5001, 5000,
			MBLIT_FLAG_SRC_DEV),
	};
	uint64_t cmds = 0, bytes = 0;

	dev_random(_metadata, d, 0, 3 * MB_MIB);
	dev_random(_metadata, d, d->mem - MB_MIB, MB_MIB);

	mb_ring_setup(_metadata, d, 8);
	run_each(_metadata, d, x, ARRAY_SIZE(x), &cmds, &bytes);
	mb_check_guest(_metadata, d, "copy_device_to_guest");
	mb_check_dev(_metadata, d, 0, d->mem, "device memory (source)");
}

TEST_F_TIMEOUT(engine, copy_device_to_device, 300)
{
	struct mb_dev *d = &self->dev;
	const uint8_t f = MBLIT_FLAG_DST_DEV | MBLIT_FLAG_SRC_DEV;
	const struct mblit_desc x[] = {
		mb_copy(8 * MB_MIB + MB_PAGE - 3, 2 * MB_PAGE - 1001,
			3 * MB_PAGE + 7, f),
		mb_copy(8 * MB_MIB + 9 * MB_PAGE + 1, 9 * MB_PAGE + 2, 1, f),
		mb_copy(8 * MB_MIB + 11 * MB_PAGE - 2, 11 * MB_PAGE - 1, 3, f),
		/* adjacent, not overlapping */
		mb_copy(20 * MB_PAGE, 20 * MB_PAGE - 777, 777, f),
		mb_copy(20 * MB_PAGE - 777 - 500, 20 * MB_PAGE - 777, 500, f),
		mb_copy(9 * MB_MIB + 7, MB_MIB + 4093, MBLIT_XFER_MAX, f),
		mb_copy(d->mem - 5000, 5, 5000, f),
		mb_copy(12 * MB_MIB, d->mem - 3000, 3000, f),
	};
	uint64_t cmds = 0, bytes = 0;

	dev_random(_metadata, d, 0, 3 * MB_MIB);
	dev_random(_metadata, d, d->mem - MB_MIB, MB_MIB);

	mb_ring_setup(_metadata, d, 8);
	run_each(_metadata, d, x, ARRAY_SIZE(x), &cmds, &bytes);
	mb_check_dev(_metadata, d, 0, d->mem, "copy_device_to_device");
	mb_check_guest(_metadata, d, "guest buffer");
}

/* ---- FENCE -------------------------------------------------------------- */

static uint64_t guest_u64(struct mb_dev *d, uint64_t iova)
{
	uint64_t v;

	memcpy(&v, d->buf + (iova - MB_IOVA), 8);
	return v;
}

TEST_F_TIMEOUT(engine, fence_value, 300)
{
	struct mb_dev *d = &self->dev;
	const uint64_t f = MB_DATA_IOVA + 3 * MB_PAGE + 64;
	const uint64_t v1 = 0x0123456789abcdefULL, v2 = 0xfedcba9876543210ULL;
	struct mblit_desc x[4];
	uint64_t bytes;

	mb_ring_setup(_metadata, d, 8);

	x[0] = mb_fence(f, v1, 0);
	mb_run(_metadata, d, x, 1);
	EXPECT_EQ(v1, guest_u64(d, f));
	EXPECT_EQ(v1, RD64(MBLIT_REG_FENCE_LAST));
	EXPECT_EQ((uint32_t)v1, RD32(MBLIT_REG_FENCE_LAST));
	EXPECT_EQ((uint32_t)(v1 >> 32), RD32(MBLIT_REG_FENCE_LAST + 4));
	/* A FENCE counts as a command; its own 8 bytes are not counted. */
	expect_counts(_metadata, d, 1, 0);
	/* Without IRQ no interrupt source. */
	EXPECT_EQ(0, RD32(MBLIT_REG_INT_STATUS));
	mb_check_guest(_metadata, d, "after the first fence");

	/* FILL + NOP + FENCE: the fence comes after the fill's bytes. */
	x[0] = mb_fill(MB_DATA_IOVA + 5 * MB_PAGE + 3, 100, PAT1, 0);
	x[1] = mb_nop();
	x[2] = mb_fence(f + 8, v2, 0);
	bytes = mb_run(_metadata, d, x, 3);
	EXPECT_EQ(100, bytes);
	EXPECT_EQ(v2, guest_u64(d, f + 8));
	EXPECT_EQ(v1, guest_u64(d, f));
	EXPECT_EQ(v2, RD64(MBLIT_REG_FENCE_LAST));
	expect_counts(_metadata, d, 4, 100);

	/* At the last 8 bytes of the mapping, value 0, with IRQ. */
	x[0] = mb_fence(MB_IOVA_END - 8, 0, MBLIT_FLAG_IRQ);
	mb_run(_metadata, d, x, 1);
	EXPECT_EQ(0, guest_u64(d, MB_IOVA_END - 8));
	EXPECT_EQ(0, RD64(MBLIT_REG_FENCE_LAST));
	expect_counts(_metadata, d, 5, 100);
	/* INT_STATUS is set last, after RING_HEAD: wait for it. */
	mb_wait_int(_metadata, d, MBLIT_INT_FENCE);
	EXPECT_EQ(MBLIT_INT_FENCE, RD32(MBLIT_REG_INT_STATUS));
	WR32(MBLIT_REG_INT_STATUS, MBLIT_INT_FENCE);
	EXPECT_EQ(0, RD32(MBLIT_REG_INT_STATUS));

	/* Two fences in one batch: FENCE_LAST is the last one's. */
	x[0] = mb_fence(f + 16, v2 + 1, 0);
	x[1] = mb_fence(f + 24, v2 + 2, 0);
	mb_run(_metadata, d, x, 2);
	EXPECT_EQ(v2 + 2, RD64(MBLIT_REG_FENCE_LAST));
	expect_counts(_metadata, d, 7, 100);
	mb_check_guest(_metadata, d, "fences");
}

/* ---- rings -------------------------------------------------------------- */

/* A small random command: FILL/COPY in guest or device memory, or NOP. */
static struct mblit_desc random_cmd(struct mb_dev *d, uint32_t maxlen,
				    uint64_t dev_span)
{
	const uint64_t gspan = MB_BUF_SIZE - MB_DATA_OFF;
	uint32_t len = mb_rand_range(d, 1, maxlen);
	uint64_t half, dst, src;

	switch (mb_rand(d) % 8) {
	case 0:
		return mb_nop();
	case 1:
		dst = MB_DATA_IOVA + mb_rand_range(d, 0, gspan - len);
		return mb_fill(dst, len, (uint32_t)mb_rand(d), 0);
	case 2:
		dst = mb_rand_range(d, 0, dev_span - len);
		return mb_fill(dst, len, (uint32_t)mb_rand(d),
			       MBLIT_FLAG_DST_DEV);
	case 3:	/* guest -> guest: halves never overlap */
		half = gspan / 2;
		src = MB_DATA_IOVA + mb_rand_range(d, 0, half - len);
		dst = MB_DATA_IOVA + half + mb_rand_range(d, 0, half - len);
		if (mb_rand(d) & 1)
			return mb_copy(src, dst, len, 0);
		return mb_copy(dst, src, len, 0);
	case 4:
		src = MB_DATA_IOVA + mb_rand_range(d, 0, gspan - len);
		dst = mb_rand_range(d, 0, dev_span - len);
		return mb_copy(dst, src, len, MBLIT_FLAG_DST_DEV);
	case 5:
	case 6:
		src = mb_rand_range(d, 0, dev_span - len);
		dst = MB_DATA_IOVA + mb_rand_range(d, 0, gspan - len);
		return mb_copy(dst, src, len, MBLIT_FLAG_SRC_DEV);
	default:
		half = dev_span / 2;
		src = mb_rand_range(d, 0, half - len);
		dst = half + mb_rand_range(d, 0, half - len);
		if (mb_rand(d) & 1)
			return mb_copy(src, dst, len,
				       MBLIT_FLAG_DST_DEV | MBLIT_FLAG_SRC_DEV);
		return mb_copy(dst, src, len,
			       MBLIT_FLAG_DST_DEV | MBLIT_FLAG_SRC_DEV);
	}
}

TEST_F_TIMEOUT(engine, ring_wrap, 300)
{
	struct mb_dev *d = &self->dev;
	static const unsigned int batches[] = { 3, 8, 5, 4 };	/* 20 */
	struct mblit_desc x[8];
	uint64_t cmds = 0, bytes = 0;
	unsigned int b, i, done, n;

	dev_random(_metadata, d, 0, MB_MIB);
	mb_ring_setup(_metadata, d, 8);

	/* Batches, waiting for each: slots wrap (20 commands, 8 slots). */
	for (b = 0; b < ARRAY_SIZE(batches); b++) {
		for (i = 0; i < batches[b]; i++)
			x[i] = random_cmd(d, 3 * MB_PAGE, MB_MIB);
		bytes += mb_run(_metadata, d, x, batches[b]);
		cmds += batches[b];
		EXPECT_EQ(cmds, RD32(MBLIT_REG_RING_HEAD));
		expect_counts(_metadata, d, cmds, bytes);
		mb_check_guest(_metadata, d, "ring_wrap batch");
	}

	/* 20 more, keeping the ring as full as it gets while it runs. */
	for (done = 0; done < 20; done += n) {
		uint32_t head = RD32(MBLIT_REG_RING_HEAD);
		uint32_t space = 8 - (d->tail - head);

		n = space < 20 - done ? space : 20 - done;
		for (i = 0; i < n; i++)
			x[i] = random_cmd(d, 3 * MB_PAGE, MB_MIB);
		if (n)
			bytes += mb_submit(_metadata, d, x, n);
		else
			mb_sleep_ms(1);
		cmds += n;
	}
	/* The ring may still be full: the fence needs a free slot. */
	for (i = 0; i < 20000 && d->tail - RD32(MBLIT_REG_RING_HEAD) >= 8; i++)
		mb_sleep_ms(1);
	ASSERT_LT(d->tail - RD32(MBLIT_REG_RING_HEAD), 8)
		TH_LOG("the ring never drained");
	x[0] = mb_fence(MB_DATA_IOVA + 8, 0x1234, 0);
	mb_run(_metadata, d, x, 1);
	cmds++;
	EXPECT_EQ(41, cmds);
	EXPECT_EQ(cmds, RD32(MBLIT_REG_RING_HEAD));
	EXPECT_EQ(0x1234, RD64(MBLIT_REG_FENCE_LAST));
	expect_counts(_metadata, d, cmds, bytes);
	mb_check_guest(_metadata, d, "ring_wrap");
	mb_check_dev(_metadata, d, 0, MB_MIB, "ring_wrap device memory");
}

TEST_F_TIMEOUT(engine, ring_many, 300)
{
	struct mb_dev *d = &self->dev;
	const unsigned int total = 400;
	const uint64_t fence = MB_DATA_IOVA + 0x40;
	struct mblit_desc x[64];
	uint64_t bytes = 0;
	unsigned int done, i, n;

	dev_random(_metadata, d, 0, 4 * MB_MIB);
	mb_ring_setup(_metadata, d, 512);

	/* Batches of 1..64 without waiting: the engine runs meanwhile. */
	for (done = 0; done < total; done += n) {
		n = mb_rand_range(d, 1, 64);
		if (n > total - done)
			n = total - done;
		for (i = 0; i < n; i++)
			x[i] = random_cmd(d, 16 * MB_PAGE, 4 * MB_MIB);
		bytes += mb_submit(_metadata, d, x, n);
	}
	x[0] = mb_fence(fence, 0xf00dfeedcafe0001ULL, 0);
	mb_run(_metadata, d, x, 1);

	EXPECT_EQ(total + 1, RD32(MBLIT_REG_RING_HEAD));
	EXPECT_EQ(0xf00dfeedcafe0001ULL, RD64(MBLIT_REG_FENCE_LAST));
	EXPECT_EQ(0xf00dfeedcafe0001ULL, guest_u64(d, fence));
	expect_counts(_metadata, d, total + 1, bytes);
	mb_check_guest(_metadata, d, "ring_many");
	mb_check_dev(_metadata, d, 0, d->mem, "ring_many device memory");
}

/* ---- interrupts --------------------------------------------------------- */

static void irq_fence(struct __test_metadata *_metadata, struct mb_dev *d,
		      uint64_t val, uint8_t flags)
{
	struct mblit_desc x = mb_fence(MB_DATA_IOVA + 8 * (val % 64), val,
				       flags);

	mb_run(_metadata, d, &x, 1);
}

TEST_F_TIMEOUT(engine, msi_fence, 300)
{
	struct mb_dev *d = &self->dev;
	struct mblit_desc x[2];

	self->efd = mb_eventfd(_metadata);
	ASSERT_EQ(0, mb_set_trigger(d, VFIO_PCI_MSI_IRQ_INDEX, self->efd))
		TH_LOG("SET_IRQS MSI trigger: %s", strerror(errno));
	mb_ring_setup(_metadata, d, 16);

	/* FENCE with IRQ: one MSI, INT_STATUS.FENCE, pending. */
	irq_fence(_metadata, d, 1, MBLIT_FLAG_IRQ);
	ASSERT_EQ(1, mb_efd_wait(_metadata, self->efd, MB_IRQ_WAIT_MS))
		TH_LOG("no MSI for FENCE|IRQ");
	EXPECT_EQ(MBLIT_INT_FENCE, RD32(MBLIT_REG_INT_STATUS));
	EXPECT_TRUE(mb_irq_pending(_metadata, d));
	EXPECT_EQ(1, RD64(MBLIT_REG_FENCE_LAST));
	/* W1C: writing 0 changes nothing, writing the bit clears it. */
	WR32(MBLIT_REG_INT_STATUS, 0);
	EXPECT_EQ(MBLIT_INT_FENCE, RD32(MBLIT_REG_INT_STATUS));
	WR32(MBLIT_REG_INT_STATUS, MBLIT_INT_FENCE);
	EXPECT_EQ(0, RD32(MBLIT_REG_INT_STATUS));
	EXPECT_FALSE(mb_irq_pending(_metadata, d));
	/* Clearing INT_STATUS does not signal MSI. */
	EXPECT_EQ(0, mb_efd_wait(_metadata, self->efd, MB_QUIET_MS));

	/* FENCE without IRQ: nothing. */
	irq_fence(_metadata, d, 2, 0);
	EXPECT_EQ(0, mb_efd_wait(_metadata, self->efd, MB_QUIET_MS));
	EXPECT_EQ(0, RD32(MBLIT_REG_INT_STATUS));

	/* Two FENCE|IRQ: one signal each, the second with the bit set. */
	x[0] = mb_fence(MB_DATA_IOVA, 3, MBLIT_FLAG_IRQ);
	x[1] = mb_fence(MB_DATA_IOVA + 8, 4, MBLIT_FLAG_IRQ);
	mb_run(_metadata, d, x, 2);
	EXPECT_EQ(2, mb_efd_collect(_metadata, self->efd, 2, MB_IRQ_WAIT_MS));
	EXPECT_EQ(0, mb_efd_wait(_metadata, self->efd, MB_QUIET_MS));
	EXPECT_EQ(MBLIT_INT_FENCE, RD32(MBLIT_REG_INT_STATUS));
	WR32(MBLIT_REG_INT_STATUS, MBLIT_INT_FENCE);

	/* Masked: the status bit is set, no MSI, not pending... */
	WR32(MBLIT_REG_INT_MASK, MBLIT_INT_FENCE);
	EXPECT_EQ(MBLIT_INT_FENCE, RD32(MBLIT_REG_INT_MASK));
	irq_fence(_metadata, d, 5, MBLIT_FLAG_IRQ);
	mb_wait_int(_metadata, d, MBLIT_INT_FENCE);
	EXPECT_EQ(0, mb_efd_wait(_metadata, self->efd, MB_QUIET_MS))
		TH_LOG("MSI although INT_MASK.FENCE");
	EXPECT_FALSE(mb_irq_pending(_metadata, d));
	/* ...and unmasking with the bit set signals once. */
	WR32(MBLIT_REG_INT_MASK, 0);
	EXPECT_EQ(1, mb_efd_wait(_metadata, self->efd, MB_IRQ_WAIT_MS))
		TH_LOG("no MSI on unmasking a set INT_STATUS bit");
	EXPECT_TRUE(mb_irq_pending(_metadata, d));
	EXPECT_EQ(0, mb_efd_wait(_metadata, self->efd, MB_QUIET_MS));
	WR32(MBLIT_REG_INT_STATUS, MBLIT_INT_FENCE);

	/* MSI disabled (DATA_NONE, count 0): no more signals. */
	ASSERT_EQ(0, mb_set_irqs(d, VFIO_IRQ_SET_DATA_NONE |
				 VFIO_IRQ_SET_ACTION_TRIGGER,
				 VFIO_PCI_MSI_IRQ_INDEX, 0, 0, NULL, 0));
	irq_fence(_metadata, d, 6, MBLIT_FLAG_IRQ);
	mb_wait_int(_metadata, d, MBLIT_INT_FENCE);
	EXPECT_EQ(0, mb_efd_wait(_metadata, self->efd, MB_QUIET_MS));
	WR32(MBLIT_REG_INT_STATUS, MBLIT_INT_FENCE);

	/* Set again, then removed with fd -1. */
	ASSERT_EQ(0, mb_set_trigger(d, VFIO_PCI_MSI_IRQ_INDEX, self->efd));
	irq_fence(_metadata, d, 7, MBLIT_FLAG_IRQ);
	EXPECT_EQ(1, mb_efd_wait(_metadata, self->efd, MB_IRQ_WAIT_MS));
	WR32(MBLIT_REG_INT_STATUS, MBLIT_INT_FENCE);
	ASSERT_EQ(0, mb_set_trigger(d, VFIO_PCI_MSI_IRQ_INDEX, -1));
	irq_fence(_metadata, d, 8, MBLIT_FLAG_IRQ);
	mb_wait_int(_metadata, d, MBLIT_INT_FENCE);
	EXPECT_EQ(0, mb_efd_wait(_metadata, self->efd, MB_QUIET_MS));
	expect_counts(_metadata, d, 8, 0);	/* fences 1..8 */
}

TEST_F_TIMEOUT(engine, intx_fence, 300)
{
	struct mb_dev *d = &self->dev;
	const int efd = self->efd = mb_eventfd(_metadata);
	uint8_t one = 1;

	ASSERT_EQ(0, mb_set_trigger(d, VFIO_PCI_INTX_IRQ_INDEX, efd))
		TH_LOG("SET_IRQS INTx trigger: %s", strerror(errno));
	ASSERT_EQ(0, mb_cfg_rd16(_metadata, d, PCI_COMMAND) &
		  PCI_COMMAND_INTX_DISABLE);
	mb_ring_setup(_metadata, d, 16);
	EXPECT_FALSE(mb_irq_pending(_metadata, d));

	/* FENCE|IRQ: the line rises, the eventfd fires, INTx automasks. */
	irq_fence(_metadata, d, 1, MBLIT_FLAG_IRQ);
	ASSERT_EQ(1, mb_efd_wait(_metadata, efd, MB_IRQ_WAIT_MS))
		TH_LOG("no INTx for FENCE|IRQ");
	EXPECT_EQ(MBLIT_INT_FENCE, RD32(MBLIT_REG_INT_STATUS));
	EXPECT_TRUE(mb_irq_pending(_metadata, d));

	/* Automasked: a second FENCE|IRQ does not fire. */
	irq_fence(_metadata, d, 2, MBLIT_FLAG_IRQ);
	EXPECT_EQ(0, mb_efd_wait(_metadata, efd, MB_QUIET_MS))
		TH_LOG("INTx fired while automasked");

	/* Unmask while still asserted: fires again (and masks). */
	ASSERT_EQ(0, mb_intx_action(d, VFIO_IRQ_SET_ACTION_UNMASK));
	EXPECT_EQ(1, mb_efd_wait(_metadata, efd, MB_IRQ_WAIT_MS))
		TH_LOG("no INTx on unmask with the line asserted");

	/* Clear the cause, then unmask: nothing. */
	WR32(MBLIT_REG_INT_STATUS, MBLIT_INT_FENCE);
	EXPECT_EQ(0, RD32(MBLIT_REG_INT_STATUS));
	EXPECT_FALSE(mb_irq_pending(_metadata, d));
	ASSERT_EQ(0, mb_intx_action(d, VFIO_IRQ_SET_ACTION_UNMASK));
	EXPECT_EQ(0, mb_efd_wait(_metadata, efd, MB_QUIET_MS));

	/* Unmasked again: the next FENCE|IRQ fires. */
	irq_fence(_metadata, d, 3, MBLIT_FLAG_IRQ);
	EXPECT_EQ(1, mb_efd_wait(_metadata, efd, MB_IRQ_WAIT_MS));
	WR32(MBLIT_REG_INT_STATUS, MBLIT_INT_FENCE);
	ASSERT_EQ(0, mb_intx_action(d, VFIO_IRQ_SET_ACTION_UNMASK));

	/* FENCE without IRQ: nothing. */
	irq_fence(_metadata, d, 4, 0);
	EXPECT_EQ(0, mb_efd_wait(_metadata, efd, MB_QUIET_MS));

	/* Explicit ACTION_MASK; unmask with DATA_BOOL fires. */
	ASSERT_EQ(0, mb_intx_action(d, VFIO_IRQ_SET_ACTION_MASK));
	irq_fence(_metadata, d, 5, MBLIT_FLAG_IRQ);
	mb_wait_int(_metadata, d, MBLIT_INT_FENCE);
	EXPECT_EQ(0, mb_efd_wait(_metadata, efd, MB_QUIET_MS))
		TH_LOG("INTx fired while masked");
	EXPECT_TRUE(mb_irq_pending(_metadata, d));
	ASSERT_EQ(0, mb_set_irqs(d, VFIO_IRQ_SET_DATA_BOOL |
				 VFIO_IRQ_SET_ACTION_UNMASK,
				 VFIO_PCI_INTX_IRQ_INDEX, 0, 1, &one, 1));
	EXPECT_EQ(1, mb_efd_wait(_metadata, efd, MB_IRQ_WAIT_MS));
	WR32(MBLIT_REG_INT_STATUS, MBLIT_INT_FENCE);
	ASSERT_EQ(0, mb_intx_action(d, VFIO_IRQ_SET_ACTION_UNMASK));

	/* INT_MASK deasserts the line; unmasking the source reasserts. */
	irq_fence(_metadata, d, 6, MBLIT_FLAG_IRQ);
	EXPECT_EQ(1, mb_efd_wait(_metadata, efd, MB_IRQ_WAIT_MS));
	WR32(MBLIT_REG_INT_MASK, MBLIT_INT_FENCE);
	EXPECT_FALSE(mb_irq_pending(_metadata, d));
	ASSERT_EQ(0, mb_intx_action(d, VFIO_IRQ_SET_ACTION_UNMASK));
	EXPECT_EQ(0, mb_efd_wait(_metadata, efd, MB_QUIET_MS));
	WR32(MBLIT_REG_INT_MASK, 0);
	EXPECT_TRUE(mb_irq_pending(_metadata, d));
	EXPECT_EQ(1, mb_efd_wait(_metadata, efd, MB_IRQ_WAIT_MS))
		TH_LOG("no INTx when INT_MASK cleared with the cause set");
	WR32(MBLIT_REG_INT_STATUS, MBLIT_INT_FENCE);
	ASSERT_EQ(0, mb_intx_action(d, VFIO_IRQ_SET_ACTION_UNMASK));

	/*
	 * Command INTx disable keeps the line low, while status bit 3 still
	 * shows the pending interrupt; clearing it asserts the line.
	 */
	mb_set_command(_metadata, d, PCI_COMMAND_INTX_DISABLE, 0);
	irq_fence(_metadata, d, 7, MBLIT_FLAG_IRQ);
	mb_wait_int(_metadata, d, MBLIT_INT_FENCE);
	EXPECT_EQ(0, mb_efd_wait(_metadata, efd, MB_QUIET_MS))
		TH_LOG("INTx fired with INTx disable set");
	EXPECT_TRUE(mb_irq_pending(_metadata, d));
	mb_set_command(_metadata, d, 0, PCI_COMMAND_INTX_DISABLE);
	EXPECT_EQ(1, mb_efd_wait(_metadata, efd, MB_IRQ_WAIT_MS))
		TH_LOG("no INTx when INTx disable cleared with the cause set");
	WR32(MBLIT_REG_INT_STATUS, MBLIT_INT_FENCE);
	ASSERT_EQ(0, mb_intx_action(d, VFIO_IRQ_SET_ACTION_UNMASK));

	/* An engine reset deasserts the line (eventfds stay). */
	irq_fence(_metadata, d, 8, MBLIT_FLAG_IRQ);
	EXPECT_EQ(1, mb_efd_wait(_metadata, efd, MB_IRQ_WAIT_MS));
	mb_engine_reset(_metadata, d);
	EXPECT_FALSE(mb_irq_pending(_metadata, d));
	EXPECT_EQ(0, RD32(MBLIT_REG_INT_STATUS));
	ASSERT_EQ(0, mb_intx_action(d, VFIO_IRQ_SET_ACTION_UNMASK));
	EXPECT_EQ(0, mb_efd_wait(_metadata, efd, MB_QUIET_MS));
	mb_ring_setup(_metadata, d, 16);
	irq_fence(_metadata, d, 9, MBLIT_FLAG_IRQ);
	EXPECT_EQ(1, mb_efd_wait(_metadata, efd, MB_IRQ_WAIT_MS))
		TH_LOG("no INTx after an engine reset");
	WR32(MBLIT_REG_INT_STATUS, MBLIT_INT_FENCE);
	ASSERT_EQ(0, mb_intx_action(d, VFIO_IRQ_SET_ACTION_UNMASK));

	/* Trigger removed (fd -1): nothing. */
	ASSERT_EQ(0, mb_set_trigger(d, VFIO_PCI_INTX_IRQ_INDEX, -1));
	irq_fence(_metadata, d, 10, MBLIT_FLAG_IRQ);
	mb_wait_int(_metadata, d, MBLIT_INT_FENCE);
	EXPECT_EQ(0, mb_efd_wait(_metadata, efd, MB_QUIET_MS));
}

TEST_F_TIMEOUT(engine, irq_info, 120)
{
	static const struct { uint32_t count, flags; } want[] = {
		[VFIO_PCI_INTX_IRQ_INDEX] = { 1, VFIO_IRQ_INFO_EVENTFD |
					      VFIO_IRQ_INFO_MASKABLE |
					      VFIO_IRQ_INFO_AUTOMASKED },
		[VFIO_PCI_MSI_IRQ_INDEX] = { 1, VFIO_IRQ_INFO_EVENTFD |
					     VFIO_IRQ_INFO_NORESIZE },
		[VFIO_PCI_MSIX_IRQ_INDEX] = { 0, 0 },
		[VFIO_PCI_ERR_IRQ_INDEX] = { 0, 0 },
		[VFIO_PCI_REQ_IRQ_INDEX] = { 0, 0 },
	};
	struct mb_dev *d = &self->dev;
	const uint32_t trig_efd = VFIO_IRQ_SET_DATA_EVENTFD |
				  VFIO_IRQ_SET_ACTION_TRIGGER;
	struct vfio_device_info info;
	struct vfio_irq_info ii;
	int32_t fds[2];
	uint32_t i;
	uint8_t one = 1;

	ASSERT_EQ(0, vfio_mdev_device_info(&d->v, &info))
		TH_LOG("%s", mdev_lib_error());
	EXPECT_EQ(VFIO_PCI_NUM_IRQS, info.num_irqs);
	EXPECT_TRUE(info.flags & VFIO_DEVICE_FLAGS_RESET);

	for (i = 0; i < VFIO_PCI_NUM_IRQS; i++) {
		memset(&ii, 0, sizeof(ii));
		ii.argsz = sizeof(ii);
		ii.index = i;
		ASSERT_EQ(0, ioctl(d->v.device_fd, VFIO_DEVICE_GET_IRQ_INFO, &ii))
			TH_LOG("GET_IRQ_INFO(%u): %s", i, strerror(errno));
		EXPECT_EQ(i, ii.index);
		EXPECT_EQ(want[i].count, ii.count) TH_LOG("index %u count", i);
		EXPECT_EQ(want[i].flags, ii.flags) TH_LOG("index %u flags", i);
	}
	memset(&ii, 0, sizeof(ii));
	ii.argsz = sizeof(ii);
	ii.index = VFIO_PCI_NUM_IRQS;
	EXPECT_EQ(-1, ioctl(d->v.device_fd, VFIO_DEVICE_GET_IRQ_INFO, &ii));
	EXPECT_EQ(EINVAL, errno);

	fds[0] = self->efd = mb_eventfd(_metadata);
	fds[1] = mb_eventfd(_metadata);

	/* Indices without interrupts, and past the end. */
	EXPECT_EQ(-EINVAL, mb_set_trigger(d, VFIO_PCI_MSIX_IRQ_INDEX, fds[0]));
	EXPECT_EQ(-EINVAL, mb_set_trigger(d, VFIO_PCI_ERR_IRQ_INDEX, fds[0]));
	EXPECT_EQ(-EINVAL, mb_set_trigger(d, VFIO_PCI_REQ_IRQ_INDEX, fds[0]));
	EXPECT_EQ(-EINVAL, mb_set_trigger(d, VFIO_PCI_NUM_IRQS, fds[0]));
	EXPECT_EQ(-EINVAL, mb_set_trigger(d, 100, fds[0]));
	/* Masking MSI is not supported, nor are mask/unmask eventfds. */
	EXPECT_EQ(-EINVAL, mb_set_irqs(d, VFIO_IRQ_SET_DATA_NONE |
				       VFIO_IRQ_SET_ACTION_MASK,
				       VFIO_PCI_MSI_IRQ_INDEX, 0, 1, NULL, 0));
	EXPECT_EQ(-EINVAL, mb_set_irqs(d, VFIO_IRQ_SET_DATA_NONE |
				       VFIO_IRQ_SET_ACTION_UNMASK,
				       VFIO_PCI_MSI_IRQ_INDEX, 0, 1, NULL, 0));
	EXPECT_EQ(-EINVAL, mb_set_irqs(d, VFIO_IRQ_SET_DATA_EVENTFD |
				       VFIO_IRQ_SET_ACTION_MASK,
				       VFIO_PCI_INTX_IRQ_INDEX, 0, 1, fds, 4));
	EXPECT_EQ(-EINVAL, mb_set_irqs(d, VFIO_IRQ_SET_DATA_EVENTFD |
				       VFIO_IRQ_SET_ACTION_UNMASK,
				       VFIO_PCI_INTX_IRQ_INDEX, 0, 1, fds, 4));
	/* count > 1, start + count > 1. */
	EXPECT_EQ(-EINVAL, mb_set_irqs(d, trig_efd, VFIO_PCI_INTX_IRQ_INDEX,
				       0, 2, fds, 8));
	EXPECT_EQ(-EINVAL, mb_set_irqs(d, trig_efd, VFIO_PCI_MSI_IRQ_INDEX,
				       0, 2, fds, 8));
	EXPECT_EQ(-EINVAL, mb_set_irqs(d, trig_efd, VFIO_PCI_MSI_IRQ_INDEX,
				       1, 1, fds, 4));
	/* Unknown flags; two data types; two actions. */
	EXPECT_EQ(-EINVAL, mb_set_irqs(d, trig_efd | (1U << 12),
				       VFIO_PCI_MSI_IRQ_INDEX, 0, 1, fds, 4));
	EXPECT_EQ(-EINVAL, mb_set_irqs(d, trig_efd | VFIO_IRQ_SET_DATA_BOOL,
				       VFIO_PCI_MSI_IRQ_INDEX, 0, 1, fds, 4));
	EXPECT_EQ(-EINVAL, mb_set_irqs(d, VFIO_IRQ_SET_DATA_NONE |
				       VFIO_IRQ_SET_ACTION_MASK |
				       VFIO_IRQ_SET_ACTION_UNMASK,
				       VFIO_PCI_INTX_IRQ_INDEX, 0, 1, NULL, 0));

	/* Good ones. */
	EXPECT_EQ(0, mb_set_trigger(d, VFIO_PCI_INTX_IRQ_INDEX, fds[0]));
	EXPECT_EQ(0, mb_intx_action(d, VFIO_IRQ_SET_ACTION_MASK));
	EXPECT_EQ(0, mb_intx_action(d, VFIO_IRQ_SET_ACTION_UNMASK));
	EXPECT_EQ(0, mb_set_irqs(d, VFIO_IRQ_SET_DATA_BOOL |
				 VFIO_IRQ_SET_ACTION_MASK,
				 VFIO_PCI_INTX_IRQ_INDEX, 0, 1, &one, 1));
	EXPECT_EQ(0, mb_set_irqs(d, VFIO_IRQ_SET_DATA_BOOL |
				 VFIO_IRQ_SET_ACTION_UNMASK,
				 VFIO_PCI_INTX_IRQ_INDEX, 0, 1, &one, 1));
	/* Only one of INTx and MSI at a time. */
	EXPECT_EQ(-EINVAL, mb_set_trigger(d, VFIO_PCI_MSI_IRQ_INDEX, fds[1]));
	EXPECT_EQ(0, mb_set_trigger(d, VFIO_PCI_INTX_IRQ_INDEX, -1));
	EXPECT_EQ(0, mb_set_trigger(d, VFIO_PCI_MSI_IRQ_INDEX, fds[1]));
	EXPECT_EQ(-EINVAL, mb_set_trigger(d, VFIO_PCI_INTX_IRQ_INDEX, fds[0]));
	/* Disable by DATA_NONE, count 0; then INTx may be set. */
	EXPECT_EQ(0, mb_set_irqs(d, VFIO_IRQ_SET_DATA_NONE |
				 VFIO_IRQ_SET_ACTION_TRIGGER,
				 VFIO_PCI_MSI_IRQ_INDEX, 0, 0, NULL, 0));
	EXPECT_EQ(0, mb_set_trigger(d, VFIO_PCI_INTX_IRQ_INDEX, fds[0]));
	EXPECT_EQ(0, mb_set_irqs(d, VFIO_IRQ_SET_DATA_NONE |
				 VFIO_IRQ_SET_ACTION_TRIGGER,
				 VFIO_PCI_INTX_IRQ_INDEX, 0, 0, NULL, 0));

	/* After all that, MSI works. */
	ASSERT_EQ(0, mb_set_trigger(d, VFIO_PCI_MSI_IRQ_INDEX, fds[0]));
	mb_ring_setup(_metadata, d, 8);
	irq_fence(_metadata, d, 1, MBLIT_FLAG_IRQ);
	EXPECT_EQ(1, mb_efd_wait(_metadata, fds[0], MB_IRQ_WAIT_MS));
	EXPECT_EQ(0, mb_efd_wait(_metadata, fds[1], 0));
	close(fds[1]);
}

/* ---- errors ------------------------------------------------------------- */

enum prep {
	PREP_DESC,		/* ring of 8, a NOP then the bad descriptor */
	PREP_DESC_PARTIAL,	/* same; the destination may be written */
	PREP_RING_CONFIG,	/* enable with ring_size / ring_base */
	PREP_BAD_TAIL,		/* a NOP, then RING_TAIL := head + tail_delta */
	PREP_RING_FETCH,	/* ring at ring_base, one NOP */
	PREP_RING_EDGE,		/* ring crossing the end of the mapping */
};

struct err_case {
	const char *name;
	enum prep prep;
	struct mblit_desc x;
	uint8_t code;
	uint64_t addr;
	uint64_t ring_base;
	uint32_t ring_size;
	uint32_t tail_delta;
};

#define G(off)		(MB_DATA_IOVA + (off))
#define DEV		(16 * MB_MIB)	/* mblit-16m */
#define DD		MBLIT_FLAG_DST_DEV
#define SD		MBLIT_FLAG_SRC_DEV
#define RAW(op, fl, r0, l, ds, sr, r1) \
	((struct mblit_desc){ .opcode = (op), .flags = (fl), .rsvd0 = (r0), \
			      .len = (l), .dst = (ds), .src = (sr), .rsvd1 = (r1) })
#define XFILL(ds, l, pat, fl)	RAW(MBLIT_OP_FILL, fl, 0, l, ds, pat, 0)
#define XCOPY(ds, sr, l, fl)	RAW(MBLIT_OP_COPY, fl, 0, l, ds, sr, 0)
#define XFENCE(ds, v, fl)	RAW(MBLIT_OP_FENCE, fl, 0, 0, ds, v, 0)
#define DESC(n, x, c, a)	{ n, PREP_DESC, x, c, a }
#define PARTIAL(n, x, c, a)	{ n, PREP_DESC_PARTIAL, x, c, a }

static const struct err_case err_cases[] = {
	/* 1: opcode */
	DESC("opcode 0", RAW(0, 0, 0, 0, 0, 0, 0), MBLIT_ERR_BAD_OPCODE, 0),
	DESC("opcode 5", RAW(5, 0, 0, 0, 0, 0, 0), MBLIT_ERR_BAD_OPCODE, 5),
	DESC("opcode 0xff + reserved", RAW(0xff, 0x80, 1, 0, 0, 0, 1),
	     MBLIT_ERR_BAD_OPCODE, 0xff),
	/* 2: reserved fields, in offset order */
	DESC("reserved flag 0x80", RAW(MBLIT_OP_FILL, 0x80, 0, 16, G(0), 0, 0),
	     MBLIT_ERR_RESERVED, MBLIT_DESC_OFF_FLAGS),
	DESC("NOP with DST_DEV", RAW(MBLIT_OP_NOP, DD, 0, 0, 0, 0, 0),
	     MBLIT_ERR_RESERVED, MBLIT_DESC_OFF_FLAGS),
	DESC("FILL with SRC_DEV", XFILL(G(0), 16, PAT1, SD),
	     MBLIT_ERR_RESERVED, MBLIT_DESC_OFF_FLAGS),
	DESC("COPY with IRQ", XCOPY(G(0), G(4096), 16, MBLIT_FLAG_IRQ),
	     MBLIT_ERR_RESERVED, MBLIT_DESC_OFF_FLAGS),
	DESC("FENCE with DST_DEV", XFENCE(G(0), 1, DD),
	     MBLIT_ERR_RESERVED, MBLIT_DESC_OFF_FLAGS),
	DESC("rsvd0", RAW(MBLIT_OP_FILL, 0, 0x100, 16, G(0), PAT1, 0),
	     MBLIT_ERR_RESERVED, MBLIT_DESC_OFF_RSVD0),
	DESC("rsvd0 and rsvd1", RAW(MBLIT_OP_NOP, 0, 1, 0, 0, 0, 1),
	     MBLIT_ERR_RESERVED, MBLIT_DESC_OFF_RSVD0),
	DESC("NOP len", RAW(MBLIT_OP_NOP, 0, 0, 1, 0, 0, 0),
	     MBLIT_ERR_RESERVED, MBLIT_DESC_OFF_LEN),
	DESC("NOP dst", RAW(MBLIT_OP_NOP, 0, 0, 0, G(0), 0, 0),
	     MBLIT_ERR_RESERVED, MBLIT_DESC_OFF_DST),
	DESC("NOP src", RAW(MBLIT_OP_NOP, 0, 0, 0, 0, 1, 0),
	     MBLIT_ERR_RESERVED, MBLIT_DESC_OFF_SRC),
	DESC("FENCE len", RAW(MBLIT_OP_FENCE, 0, 0, 8, G(0), 1, 0),
	     MBLIT_ERR_RESERVED, MBLIT_DESC_OFF_LEN),
	DESC("FILL pattern bits 63:32",
	     RAW(MBLIT_OP_FILL, 0, 0, 16, G(0), 0x100000000ULL | PAT1, 0),
	     MBLIT_ERR_RESERVED, MBLIT_DESC_OFF_SRC),
	DESC("rsvd1", RAW(MBLIT_OP_COPY, 0, 0, 16, G(0), G(4096), 1),
	     MBLIT_ERR_RESERVED, MBLIT_DESC_OFF_RSVD1),
	DESC("len 0 and rsvd1", RAW(MBLIT_OP_FILL, 0, 0, 0, G(0), 0, 1ULL << 63),
	     MBLIT_ERR_RESERVED, MBLIT_DESC_OFF_RSVD1),
	/* 3: len */
	DESC("FILL len 0", XFILL(G(0), 0, PAT1, 0), MBLIT_ERR_BAD_LEN, 0),
	DESC("COPY len 0", XCOPY(G(0), G(4096), 0, 0), MBLIT_ERR_BAD_LEN, 0),
	DESC("COPY len 1 MiB + 1", XCOPY(G(0), G(2 * MB_MIB),
					   MBLIT_XFER_MAX + 1, 0),
	     MBLIT_ERR_BAD_LEN, MBLIT_XFER_MAX + 1),
	DESC("FILL dev len 0xffffffff", XFILL(0, 0xffffffff, 0, DD),
	     MBLIT_ERR_BAD_LEN, 0xffffffff),
	/* 4: FENCE alignment (before the IOVA is looked at) */
	DESC("FENCE dst + 4", XFENCE(G(4), 1, 0), MBLIT_ERR_BAD_ALIGN, G(4)),
	DESC("FENCE dst 1, unmapped", XFENCE(1, 1, 0), MBLIT_ERR_BAD_ALIGN, 1),
	/* 5: ranges, destination first */
	DESC("FILL dev past end", XFILL(DEV - 10, 11, PAT1, DD),
	     MBLIT_ERR_DEV_RANGE, DEV - 10),
	DESC("FILL dev at end", XFILL(DEV, 1, PAT1, DD),
	     MBLIT_ERR_DEV_RANGE, DEV),
	DESC("FILL dev offset wraps", XFILL(~0ULL, 2, PAT1, DD),
	     MBLIT_ERR_DEV_RANGE, ~0ULL),
	DESC("COPY dev src past end", XCOPY(0, DEV - 1, 2, DD | SD),
	     MBLIT_ERR_DEV_RANGE, DEV - 1),
	DESC("COPY dev both past end", XCOPY(DEV, DEV + 4096, 2, DD | SD),
	     MBLIT_ERR_DEV_RANGE, DEV),
	DESC("COPY dev dst bad, guest src unmapped",
	     XCOPY(DEV - 1, MB_UNMAPPED_IOVA, 2, DD),
	     MBLIT_ERR_DEV_RANGE, DEV - 1),
	DESC("COPY guest->dev src past end", XCOPY(G(0), DEV - 2, 3, SD),
	     MBLIT_ERR_DEV_RANGE, DEV - 2),
	DESC("FILL guest wraps 2^64", XFILL(0xfffffffffffff000ULL, 0x2000,
					      PAT1, 0),
	     MBLIT_ERR_IOVA_FAULT, 0xfffffffffffff000ULL),
	DESC("COPY guest src wraps 2^64",
	     XCOPY(G(0), 0xffffffffffffff00ULL, 0x200, 0),
	     MBLIT_ERR_IOVA_FAULT, 0xffffffffffffff00ULL),
	/* 6: overlap in one space */
	DESC("COPY guest overlap", XCOPY(G(100), G(0), 4096, 0),
	     MBLIT_ERR_OVERLAP, G(0)),
	DESC("COPY guest overlap by one byte", XCOPY(G(4095), G(0), 4096, 0),
	     MBLIT_ERR_OVERLAP, G(0)),
	DESC("COPY guest dst below src", XCOPY(G(0), G(1), 4096, 0),
	     MBLIT_ERR_OVERLAP, G(1)),
	DESC("COPY guest same", XCOPY(G(8), G(8), 1, 0),
	     MBLIT_ERR_OVERLAP, G(8)),
	DESC("COPY dev overlap", XCOPY(0x1000, 0x1800, 0x1000, DD | SD),
	     MBLIT_ERR_OVERLAP, 0x1800),
	/* execution: pages that are not mapped */
	DESC("FILL never-mapped IOVA", XFILL(MB_UNMAPPED_IOVA + 0x123, 16,
					       PAT1, 0),
	     MBLIT_ERR_IOVA_FAULT, MB_UNMAPPED_IOVA),
	DESC("FENCE never-mapped IOVA", XFENCE(MB_UNMAPPED_IOVA + 8, 1, 0),
	     MBLIT_ERR_IOVA_FAULT, MB_UNMAPPED_IOVA),
	DESC("COPY src never mapped", XCOPY(G(0), MB_UNMAPPED_IOVA + 4096 + 5,
					      100, 0),
	     MBLIT_ERR_IOVA_FAULT, MB_UNMAPPED_IOVA + 4096),
	DESC("COPY dev->guest dst never mapped",
	     XCOPY(MB_UNMAPPED_IOVA + 3 * 4096, 0, 100, SD),
	     MBLIT_ERR_IOVA_FAULT, MB_UNMAPPED_IOVA + 3 * 4096),
	DESC("COPY guest->dev src below the mapping",
	     XCOPY(0, MB_IOVA - 4096, 100, DD),
	     MBLIT_ERR_IOVA_FAULT, MB_IOVA - 4096),
	PARTIAL("FILL crossing the end of the mapping",
		XFILL(MB_IOVA_END - 100, 200, PAT1, 0),
		MBLIT_ERR_IOVA_FAULT, MB_IOVA_END),
	PARTIAL("COPY dev->guest crossing the end of the mapping",
		XCOPY(MB_IOVA_END - 4096 - 100, 0, 8192, SD),
		MBLIT_ERR_IOVA_FAULT, MB_IOVA_END),
	/* the ring */
	{ "ring size 0", PREP_RING_CONFIG, {}, MBLIT_ERR_RING_CONFIG,
	  MB_IOVA, MB_IOVA, 0 },
	{ "ring size 3", PREP_RING_CONFIG, {}, MBLIT_ERR_RING_CONFIG,
	  MB_IOVA, MB_IOVA, 3 },
	{ "ring size 6", PREP_RING_CONFIG, {}, MBLIT_ERR_RING_CONFIG,
	  MB_IOVA, MB_IOVA, 6 },
	{ "ring size 8192", PREP_RING_CONFIG, {}, MBLIT_ERR_RING_CONFIG,
	  MB_IOVA, MB_IOVA, 2 * MBLIT_RING_SIZE_MAX },
	{ "ring size 0x80000000", PREP_RING_CONFIG, {}, MBLIT_ERR_RING_CONFIG,
	  MB_IOVA, MB_IOVA, 0x80000000U },
	{ "ring wraps 2^64", PREP_RING_CONFIG, {}, MBLIT_ERR_RING_CONFIG,
	  0xffffffffffffff00ULL, 0xffffffffffffff00ULL, 16 },
	/* after one NOP (head 1): ERR_ADDR = RING_TAIL = 1 + delta */
	{ "tail 9 ahead of 8", PREP_BAD_TAIL, {}, MBLIT_ERR_BAD_TAIL,
	  10, 0, 8, 9 },
	{ "tail behind head", PREP_BAD_TAIL, {}, MBLIT_ERR_BAD_TAIL,
	  0, 0, 8, (uint32_t)-1 },
	{ "ring never mapped", PREP_RING_FETCH, {}, MBLIT_ERR_RING_FETCH,
	  MB_UNMAPPED_IOVA, MB_UNMAPPED_IOVA, 8 },
	{ "ring crossing the end of the mapping", PREP_RING_EDGE, {},
	  MBLIT_ERR_RING_FETCH, MB_IOVA_END, MB_IOVA_END - 4096, 256 },
};

/*
 * Run one error case: the engine stops with the code, ERR_INDEX, ERR_ADDR
 * and head as documented (docs/device.md §7, §8), INT_STATUS.ERROR and one
 * MSI, nothing outside a destination written (nothing at all after a
 * decode error); then CTRL.RESET recovers and a good command works.
 */
static void run_err_case(struct __test_metadata *_metadata,
			 FIXTURE_DATA(engine) *self, const struct err_case *c,
			 uint64_t *errors)
{
	struct mb_dev *d = &self->dev;
	struct mblit_desc x[2];
	uint32_t st, idx = 1, want_head, i;
	uint64_t cmds = 1, pinned_max = 1;

	TH_LOG("case: %s", c->name);
	x[0] = mb_nop();
	x[1] = c->x;
	switch (c->prep) {
	case PREP_DESC:
	case PREP_DESC_PARTIAL:
		mb_ring_setup(_metadata, d, 8);
		mb_submit_bad(_metadata, d, x, 2);
		break;
	case PREP_RING_CONFIG:
		WR64(MBLIT_REG_RING_BASE, c->ring_base);
		WR32(MBLIT_REG_RING_SIZE, c->ring_size);
		WR32(MBLIT_REG_CTRL, MBLIT_CTRL_ENABLE);
		idx = 0;
		cmds = 0;
		pinned_max = 0;
		break;
	case PREP_BAD_TAIL:
		mb_ring_setup(_metadata, d, c->ring_size);
		mb_run(_metadata, d, x, 1);
		d->tail += c->tail_delta;
		WR32(MBLIT_REG_RING_TAIL, d->tail);
		break;
	case PREP_RING_FETCH:
		WR64(MBLIT_REG_RING_BASE, c->ring_base);
		WR32(MBLIT_REG_RING_SIZE, c->ring_size);
		WR32(MBLIT_REG_CTRL, MBLIT_CTRL_ENABLE);
		WR32(MBLIT_REG_RING_TAIL, 1);
		idx = 0;
		cmds = 0;
		pinned_max = 0;
		break;
	case PREP_RING_EDGE:
		/* Slots 0..127 in the last mapped page, 128.. unmapped. */
		mb_ring_setup_at(_metadata, d, c->ring_base,
				 d->buf + (c->ring_base - MB_IOVA),
				 c->ring_size);
		for (i = 0; i < 128; i++)
			mb_ring_put(d, i, &x[0]);
		d->tail = 129;
		WR32(MBLIT_REG_RING_TAIL, d->tail);
		idx = 128;
		cmds = 128;
		break;
	}

	st = mb_wait_error(_metadata, d);
	want_head = c->prep == PREP_BAD_TAIL ? 1 : idx;
	EXPECT_EQ(MBLIT_STATUS_ERROR | (c->code << MBLIT_STATUS_ERR_CODE_SHIFT),
		  st) TH_LOG("%s: STATUS (code %#x, want %#x)", c->name,
			     MBLIT_STATUS_ERR_CODE(st), c->code);
	EXPECT_EQ(want_head, RD32(MBLIT_REG_ERR_INDEX)) TH_LOG("%s: ERR_INDEX",
							      c->name);
	EXPECT_EQ(want_head, RD32(MBLIT_REG_RING_HEAD)) TH_LOG("%s: RING_HEAD",
							      c->name);
	EXPECT_EQ(c->addr, RD64(MBLIT_REG_ERR_ADDR)) TH_LOG("%s: ERR_ADDR",
							   c->name);
	EXPECT_EQ(cmds, RD64(MBLIT_REG_CMD_COUNT)) TH_LOG("%s: CMD_COUNT",
							 c->name);
	EXPECT_EQ(0, RD64(MBLIT_REG_BYTE_COUNT)) TH_LOG("%s: BYTE_COUNT",
						       c->name);
	EXPECT_EQ(MBLIT_INT_ERROR, RD32(MBLIT_REG_INT_STATUS));
	EXPECT_TRUE(mb_irq_pending(_metadata, d)) TH_LOG("%s: status bit 3",
							 c->name);
	EXPECT_EQ(1, mb_efd_wait(_metadata, self->efd, MB_IRQ_WAIT_MS))
		TH_LOG("%s: no MSI for the error", c->name);
	/*
	 * debugfs "errors" counts error stops.  It is not a device register
	 * and need not be updated before STATUS/INT_STATUS/MSI are: allow
	 * it a moment.
	 */
	*errors += 1;
	{
		uint64_t end = mb_now_ms() + 2000, v;

		while ((v = mb_debugfs(_metadata, d, "errors")) != *errors &&
		       mb_now_ms() < end)
			mb_sleep_ms(1);
		EXPECT_EQ(*errors, v) TH_LOG("%s: debugfs errors", c->name);
	}
	/* No data page stays pinned; at most the ring page. */
	EXPECT_GE(pinned_max, mb_debugfs(_metadata, d, "pinned_pages"))
		TH_LOG("%s: pinned_pages after the error", c->name);

	/* The error holds: a doorbell and clearing ENABLE change nothing. */
	WR32(MBLIT_REG_RING_TAIL, RD32(MBLIT_REG_RING_TAIL));
	mb_sleep_ms(10);
	EXPECT_EQ(st, RD32(MBLIT_REG_STATUS));
	WR32(MBLIT_REG_CTRL, 0);
	EXPECT_EQ(st, RD32(MBLIT_REG_STATUS)) TH_LOG("%s: after ENABLE := 0",
						     c->name);
	EXPECT_EQ(c->addr, RD64(MBLIT_REG_ERR_ADDR));
	EXPECT_EQ(want_head, RD32(MBLIT_REG_ERR_INDEX));

	/*
	 * Memory: after a decode error nothing was written; after an
	 * execution error at most the destination.
	 */
	if (c->prep == PREP_DESC_PARTIAL) {
		uint64_t lo = c->x.dst, hi = c->x.dst + c->x.len;

		if (hi > MB_IOVA_END)
			hi = MB_IOVA_END;
		memcpy(d->mg + (lo - MB_IOVA), d->buf + (lo - MB_IOVA), hi - lo);
	}
	mb_check_guest(_metadata, d, c->name);

	/* Engine reset: registers back, interrupt gone, pins released. */
	mb_engine_reset(_metadata, d);
	mb_expect_reset_regs(_metadata, d, c->name);
	EXPECT_FALSE(mb_irq_pending(_metadata, d));
	EXPECT_EQ(0, mb_debugfs(_metadata, d, "pinned_pages"))
		TH_LOG("%s: pinned_pages after CTRL.RESET", c->name);

	/* And a good command works. */
	mb_ring_setup(_metadata, d, 8);
	x[0] = mb_fill(G(3 * MB_PAGE - 5), 11, (uint32_t)mb_rand(d), 0);
	x[1] = mb_fill(DEV - 7, 7, (uint32_t)mb_rand(d), DD);
	mb_run(_metadata, d, x, 2);
	expect_counts(_metadata, d, 2, 18);
	EXPECT_EQ(0, mb_efd_wait(_metadata, self->efd, 0));
	mb_engine_reset(_metadata, d);
}

/*
 * Regression (found by uapi_fuzz.random_sequences, seed 42): SET_IRQS with
 * start 0 and count 0 on an index without interrupts returned 0.  start
 * must name one of the index's interrupts (docs/device.md §3, as in
 * vfio_set_irqs_validate_and_prepare()), so every such request is EINVAL.
 */
TEST_F_TIMEOUT(engine, set_irqs_count_0_on_index_without_irqs_is_einval, 120)
{
	struct mb_dev *d = &self->dev;
	uint32_t i;

	for (i = VFIO_PCI_MSIX_IRQ_INDEX; i <= VFIO_PCI_REQ_IRQ_INDEX; i++) {
		EXPECT_EQ(-EINVAL, mb_set_irqs(d, VFIO_IRQ_SET_DATA_NONE |
					       VFIO_IRQ_SET_ACTION_TRIGGER,
					       i, 0, 0, NULL, 0))
			TH_LOG("TRIGGER|NONE count 0 on index %u", i);
		EXPECT_EQ(-EINVAL, mb_set_irqs(d, VFIO_IRQ_SET_DATA_BOOL |
					       VFIO_IRQ_SET_ACTION_TRIGGER,
					       i, 0, 0, NULL, 0))
			TH_LOG("TRIGGER|BOOL count 0 on index %u", i);
		EXPECT_EQ(-EINVAL, mb_set_irqs(d, VFIO_IRQ_SET_DATA_NONE |
					       VFIO_IRQ_SET_ACTION_MASK,
					       i, 0, 0, NULL, 0))
			TH_LOG("MASK|NONE count 0 on index %u", i);
	}
	/* The same requests on INTx and MSI still succeed. */
	EXPECT_EQ(0, mb_set_irqs(d, VFIO_IRQ_SET_DATA_NONE |
				 VFIO_IRQ_SET_ACTION_TRIGGER,
				 VFIO_PCI_INTX_IRQ_INDEX, 0, 0, NULL, 0));
	EXPECT_EQ(0, mb_set_irqs(d, VFIO_IRQ_SET_DATA_NONE |
				 VFIO_IRQ_SET_ACTION_TRIGGER,
				 VFIO_PCI_MSI_IRQ_INDEX, 0, 0, NULL, 0));
}

TEST_F_TIMEOUT(engine, errors, 600)
{
	struct mb_dev *d = &self->dev;
	uint64_t errors = 0;
	unsigned int i;

	self->efd = mb_eventfd(_metadata);
	ASSERT_EQ(0, mb_set_trigger(d, VFIO_PCI_MSI_IRQ_INDEX, self->efd))
		TH_LOG("SET_IRQS MSI trigger: %s", strerror(errno));
	ASSERT_EQ(0, mb_debugfs(_metadata, d, "errors"));

	for (i = 0; i < ARRAY_SIZE(err_cases); i++)
		run_err_case(_metadata, self, &err_cases[i], &errors);
	mb_check_dev(_metadata, d, 0, d->mem, "device memory");

	/* Valid extremes at enable: ring sizes 1 and 4096. */
	WR32(MBLIT_REG_RING_SIZE, MBLIT_RING_SIZE_MAX);
	WR32(MBLIT_REG_CTRL, MBLIT_CTRL_ENABLE);
	mb_sleep_ms(10);
	EXPECT_EQ(0, RD32(MBLIT_REG_STATUS));
	mb_engine_reset(_metadata, d);
	{
		struct mblit_desc x = mb_fence(G(0), 42, 0);

		mb_ring_setup(_metadata, d, 1);
		mb_run(_metadata, d, &x, 1);
		mb_run(_metadata, d, &x, 1);
		EXPECT_EQ(2, RD32(MBLIT_REG_RING_HEAD));
	}
}

/* ---- stopping ----------------------------------------------------------- */

struct snap {
	uint8_t *g, *m;
	uint32_t head;
	uint64_t cmds, bytes;
};

static void take_snap(struct __test_metadata *_metadata, struct mb_dev *d,
		      struct snap *s, uint64_t dev_span)
{
	s->g = malloc(MB_BUF_SIZE);
	s->m = malloc(dev_span);
	ASSERT_TRUE(s->g && s->m);
	memcpy(s->g, d->buf, MB_BUF_SIZE);
	mb_bar2_rd(_metadata, d, 0, s->m, dev_span);
	s->head = RD32(MBLIT_REG_RING_HEAD);
	s->cmds = RD64(MBLIT_REG_CMD_COUNT);
	s->bytes = RD64(MBLIT_REG_BYTE_COUNT);
}

static void free_snap(struct snap *s)
{
	free(s->g);
	free(s->m);
}

/* A workload of 1 MiB commands: FILL and COPY, guest and device. */
static unsigned int big_workload(struct mb_dev *d, struct mblit_desc *x,
				 unsigned int n)
{
	unsigned int i, k;

	for (i = 0; i < n; i++) {
		k = i / 4;
		switch (i % 4) {
		case 0:
			x[i] = mb_fill((k % 6) * MB_MIB, MB_MIB,
				       0x01010101U * (i + 1), DD);
			break;
		case 1:
			x[i] = mb_fill(G((k % 3) * MB_MIB), MB_MIB,
				       0x02020202U * (i + 1), 0);
			break;
		case 2:
			x[i] = mb_copy((6 + k % 2) * MB_MIB, G((k % 3) * MB_MIB),
				       MB_MIB, DD);
			break;
		default:
			x[i] = mb_copy(G((3 + k % 3) * MB_MIB), (k % 6) * MB_MIB,
				       MB_MIB, SD);
		}
	}
	return n;
}

TEST_F_TIMEOUT(engine, disable_stops, 300)
{
	struct mb_dev *d = &self->dev;
	const unsigned int n = 120;
	const uint64_t span = 8 * MB_MIB;
	struct mblit_desc *x = calloc(n + 1, sizeof(*x));
	struct snap a, b;

	ASSERT_NE(NULL, x);
	big_workload(d, x, n);
	x[n] = mb_fence(G(6 * MB_MIB), 0xd15ab1e, 0);
	mb_ring_setup(_metadata, d, 256);
	mb_submit(_metadata, d, x, n + 1);
	mb_wait_head(_metadata, d, 3);

	WR32(MBLIT_REG_CTRL, 0);
	/* The command in progress finishes; give it time. */
	mb_sleep_ms(200);
	take_snap(_metadata, d, &a, span);
	mb_sleep_ms(100);
	take_snap(_metadata, d, &b, span);
	TH_LOG("stopped at head %u of %u", a.head, n + 1);
	ASSERT_GT(n + 1, a.head) TH_LOG("the workload finished before the stop");
	EXPECT_EQ(0, RD32(MBLIT_REG_STATUS)) TH_LOG("STATUS with ENABLE 0");
	EXPECT_EQ(a.head, b.head);
	EXPECT_EQ(a.cmds, b.cmds);
	EXPECT_EQ(a.head, a.cmds);
	EXPECT_EQ(a.bytes, b.bytes);
	EXPECT_EQ(0, memcmp(a.g, b.g, MB_BUF_SIZE))
		TH_LOG("guest memory changed with ENABLE 0");
	EXPECT_EQ(0, memcmp(a.m, b.m, span))
		TH_LOG("device memory changed with ENABLE 0");
	/* The ring is not configurable while ENABLE is 1 only: head stays. */
	EXPECT_EQ(n + 1, RD32(MBLIT_REG_RING_TAIL));
	free_snap(&a);
	free_snap(&b);

	/* Re-enable: continues from head and finishes. */
	WR32(MBLIT_REG_CTRL, MBLIT_CTRL_ENABLE);
	mb_wait_done(_metadata, d);
	EXPECT_EQ(n + 1, RD32(MBLIT_REG_RING_HEAD));
	EXPECT_EQ(n + 1, RD64(MBLIT_REG_CMD_COUNT));
	EXPECT_EQ((uint64_t)n * MB_MIB, RD64(MBLIT_REG_BYTE_COUNT));
	EXPECT_EQ(0xd15ab1e, RD64(MBLIT_REG_FENCE_LAST));
	mb_check_guest(_metadata, d, "disable_stops");
	mb_check_dev(_metadata, d, 0, d->mem, "disable_stops device memory");

	/*
	 * Bus master gates the engine too (docs/device.md §4, §7): the
	 * engine runs while ENABLE, bus master, no error and work hold, so
	 * setting bus master again resumes it.
	 */
	mb_set_command(_metadata, d, 0, PCI_COMMAND_MASTER);
	x[0] = mb_fill(G(0), 64, PAT2, 0);
	mb_submit(_metadata, d, x, 1);
	mb_sleep_ms(200);
	EXPECT_EQ(n + 1, RD32(MBLIT_REG_RING_HEAD))
		TH_LOG("the engine ran without bus master");
	EXPECT_EQ(MBLIT_STATUS_BUSY, RD32(MBLIT_REG_STATUS));
	mb_set_command(_metadata, d, PCI_COMMAND_MASTER, 0);
	{
		uint64_t end = mb_now_ms() + 2000;

		while (RD32(MBLIT_REG_RING_HEAD) != d->tail &&
		       mb_now_ms() < end)
			mb_sleep_ms(1);
		EXPECT_EQ(d->tail, RD32(MBLIT_REG_RING_HEAD))
			TH_LOG("setting bus master did not resume the engine");
	}
	WR32(MBLIT_REG_RING_TAIL, d->tail);	/* doorbell, to go on */
	mb_wait_done(_metadata, d);
	mb_check_guest(_metadata, d, "after bus master");
	free(x);
}

/*
 * Map a separate buffer of @size at MB_EXTRA_IOVA (random content).
 */
static void extra_map(struct __test_metadata *_metadata,
		      FIXTURE_DATA(engine) *self, size_t size)
{
	struct mb_dev *d = &self->dev;

	if (self->extra)
		munmap(self->extra, self->extra_size);
	self->extra_size = size;
	self->extra = mmap(NULL, size, PROT_READ | PROT_WRITE,
			   MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
	ASSERT_NE(MAP_FAILED, self->extra);
	mb_rand_fill(d, self->extra, size);
	ASSERT_EQ(0, vfio_mdev_dma_map(&d->v, self->extra, MB_EXTRA_IOVA, size))
		TH_LOG("%s", mdev_lib_error());
	self->extra_mapped = true;
}

/*
 * Unmap a range while the engine works on it.  The driver's dma_unmap
 * callback must drop every pin in the range before returning, also in the
 * middle of a command (docs/device.md §8).  Which error the engine stops
 * with depends on where the unmap lands, so exactly these are accepted:
 *  - ERR_UNMAPPED: a command was using pages of the range when it went
 *    away (ERR_ADDR = start of the unmapped range);
 *  - ERR_IOVA_FAULT: a page of the range could not be pinned because
 *    the unmap came first: between commands, or while the command was
 *    still pinning its pages (ERR_ADDR = that page, in the unmapped data
 *    range);
 *  - ERR_RING_FETCH: (ring in the range) the next descriptor could not be
 *    fetched (ERR_ADDR = that descriptor's IOVA).
 * Nothing stays pinned between commands (docs/device.md §8), so afterwards
 * pinned_pages is 0.
 */
TEST_F_TIMEOUT(engine, unmap_during_work, 600)
{
	static const struct {
		bool ring_in_range, src_in_range;
		unsigned int delay_ms;
	} runs[] = {
		{ true, false, 0 },	/* ring + destination unmapped */
		{ true, false, 20 },
		{ false, false, 0 },	/* destination only */
		{ false, true, 5 },	/* source only */
	};
	struct mb_dev *d = &self->dev;
	const unsigned int n = 128;
	const uint64_t ex = MB_EXTRA_IOVA, ex_size = 2 * MB_MIB;
	const uint64_t ex_data = ex + MB_MIB;	/* 1 MiB of data */
	struct mblit_desc x;
	unsigned int r, i;
	uint32_t st, code, head;
	uint64_t addr, pinned;

	for (r = 0; r < ARRAY_SIZE(runs); r++) {
		bool ring_in = runs[r].ring_in_range;

		extra_map(_metadata, self, ex_size);
		if (ring_in)
			mb_ring_setup_at(_metadata, d, ex, self->extra, 256);
		else
			mb_ring_setup(_metadata, d, 256);
		for (i = 0; i < n; i++) {
			if (runs[r].src_in_range)
				x = mb_copy(G(i % 2 ? 0 : 2 * MB_MIB), ex_data,
					    MB_MIB, 0);
			else
				x = mb_copy(ex_data, G(i % 2 ? 0 : 2 * MB_MIB),
					    MB_MIB, 0);
			mb_ring_put(d, i, &x);
		}
		/* The model does not follow (the copies may not finish). */
		d->tail = n;
		__atomic_thread_fence(__ATOMIC_SEQ_CST);
		WR32(MBLIT_REG_RING_TAIL, d->tail);
		mb_wait_head(_metadata, d, 2);
		if (runs[r].delay_ms)
			mb_sleep_ms(runs[r].delay_ms);

		ASSERT_EQ(0, vfio_mdev_dma_unmap(&d->v, ex, ex_size))
			TH_LOG("%s", mdev_lib_error());
		self->extra_mapped = false;

		st = mb_wait_error(_metadata, d);
		code = MBLIT_STATUS_ERR_CODE(st);
		head = RD32(MBLIT_REG_RING_HEAD);
		addr = RD64(MBLIT_REG_ERR_ADDR);
		TH_LOG("run %u: stopped at %u of %u with code %#x, ERR_ADDR %#llx",
		       r, head, n, code, (unsigned long long)addr);
		EXPECT_GT(n, head);
		EXPECT_EQ(head, RD32(MBLIT_REG_ERR_INDEX));
		EXPECT_EQ(head, RD64(MBLIT_REG_CMD_COUNT));
		switch (code) {
		case MBLIT_ERR_UNMAPPED:
			EXPECT_EQ(ex, addr);
			break;
		case MBLIT_ERR_IOVA_FAULT:
			/*
			 * The first page that could not be pinned: the
			 * first of the range if the unmap came between
			 * commands, a later one if it came while the
			 * command was still pinning its pages.
			 */
			EXPECT_TRUE(addr >= ex_data && addr < ex_data + MB_MIB &&
				    !(addr % MB_PAGE))
				TH_LOG("IOVA_FAULT at %#llx, outside the unmapped data range",
				       (unsigned long long)addr);
			break;
		case MBLIT_ERR_RING_FETCH:
			EXPECT_TRUE(ring_in)
				TH_LOG("RING_FETCH with the ring still mapped");
			EXPECT_EQ(ex + (head % 256) * MBLIT_DESC_SIZE, addr);
			break;
		default:
			EXPECT_TRUE(false) TH_LOG("unexpected error code %#x",
						  code);
		}
		/* Nothing is pinned once the engine stopped. */
		pinned = mb_debugfs(_metadata, d, "pinned_pages");
		EXPECT_EQ(0, pinned) TH_LOG("ring %s the range",
					    ring_in ? "in" : "outside");

		mb_engine_reset(_metadata, d);
		EXPECT_EQ(0, mb_debugfs(_metadata, d, "pinned_pages"));
		EXPECT_EQ(0, RD32(MBLIT_REG_STATUS));
		/* Nothing of ours was written outside the destinations. */
		if (runs[r].src_in_range) {
			for (i = 0; i < 2; i++)
				memcpy(d->mg + MB_DATA_OFF + i * 2 * MB_MIB,
				       d->buf + MB_DATA_OFF + i * 2 * MB_MIB,
				       MB_MIB);
		}
		mb_check_guest(_metadata, d, "after unmap");
	}

	/* The device still works, and the range can be mapped again. */
	extra_map(_metadata, self, ex_size);
	mb_ring_setup(_metadata, d, 8);
	x = mb_copy(ex_data + 3, G(5 * MB_MIB), 10000, 0);
	mb_run(_metadata, d, &x, 1);
	EXPECT_EQ(0, memcmp(self->extra + MB_MIB + 3, d->buf + 6 * MB_MIB,
			    10000));
	mb_engine_reset(_metadata, d);
	ASSERT_EQ(0, vfio_mdev_dma_unmap(&d->v, ex, ex_size));
	self->extra_mapped = false;
	EXPECT_EQ(0, mb_debugfs(_metadata, d, "pinned_pages"));
}

/* ---- the ring area ------------------------------------------------------ */

/*
 * The guest-memory check covers the ring area (the buffer's first MiB,
 * where mb_ring_setup puts rings), not only the data after it.  Commands
 * writing into the ring area outside the descriptors -- right after the
 * ring's slots, across a page, at the last bytes before the data, a FENCE,
 * over a descriptor already executed -- are modelled and pass the check;
 * the same kind of write made without telling the model (stray DMA) is
 * caught, exactly its bytes, and only in the ring area.
 */
TEST_F_TIMEOUT(engine, stray_dma_into_the_ring_area_is_caught, 300)
{
	struct mb_dev *d = &self->dev;
	const uint64_t r = MB_IOVA + MB_RING_OFF;
	const uint64_t end = MB_IOVA + MB_DATA_OFF;
	struct mblit_desc x[5], y;
	uint64_t v, old;
	size_t bad, first = SIZE_MAX, n;

	dev_random(_metadata, d, 0, MB_PAGE);
	/* 8 slots: [r, r + 256). */
	mb_ring_setup(_metadata, d, 8);
	x[0] = mb_fill(r + 8 * MBLIT_DESC_SIZE, 100, PAT1, 0);
	x[1] = mb_copy(r + 2 * MB_PAGE - 3, G(0x2000), 9, 0);
	x[2] = mb_copy(end - 64, 0, 64, MBLIT_FLAG_SRC_DEV);
	x[3] = mb_fence(r + 0x800, 0x0123456789abcdefULL, 0);
	/* Over slot 0, whose descriptor (x[0]) has run by then. */
	x[4] = mb_fill(r, MBLIT_DESC_SIZE, PAT2, 0);
	mb_run(_metadata, d, x, 5);
	mb_check_guest(_metadata, d, "modelled writes into the ring area");

	/* Stray: a FILL in the ring area that the model does not know. */
	y = mb_fill(r + 3 * MB_PAGE + 5, 77, PAT2, 0);
	mb_ring_put(d, d->tail, &y);
	d->tail++;
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	WR32(MBLIT_REG_RING_TAIL, d->tail);
	mb_wait_done(_metadata, d);
	bad = mb_guest_diff(_metadata, d, 0, MB_BUF_SIZE, &first, 0, "stray");
	EXPECT_EQ(77, bad) TH_LOG("bytes the check found");
	EXPECT_EQ(3 * MB_PAGE + 5, first);
	EXPECT_EQ(0, mb_guest_diff(_metadata, d, MB_DATA_OFF, MB_BUF_SIZE, NULL,
				   0, "data area"))
		TH_LOG("the stray write is not in the data area");
	mb_model_apply(d, &y);
	mb_check_guest(_metadata, d, "once modelled");

	/*
	 * Stray over a descriptor: a FENCE rewrites the dst field of slot 1
	 * (executed) with its complement, all 8 bytes different.
	 */
	memcpy(&old, d->buf + MB_RING_OFF + MBLIT_DESC_SIZE + 8, 8);
	v = ~old;
	y = mb_fence(r + MBLIT_DESC_SIZE + 8, v, 0);
	ASSERT_NE(1, d->tail % d->ring_size);	/* not its own slot */
	mb_ring_put(d, d->tail, &y);
	d->tail++;
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	WR32(MBLIT_REG_RING_TAIL, d->tail);
	mb_wait_done(_metadata, d);
	first = SIZE_MAX;
	bad = mb_guest_diff(_metadata, d, 0, MB_BUF_SIZE, &first, 0, "stray");
	EXPECT_EQ(8, bad);
	EXPECT_EQ(MBLIT_DESC_SIZE + 8, first);
	mb_model_apply(d, &y);
	mb_check_guest(_metadata, d, "once modelled");

	/* The last byte before the data, alone. */
	y = mb_fill(end - 1, 1, 0xffffffff, 0);
	n = d->buf[MB_DATA_OFF - 1] != 0xff;
	mb_ring_put(d, d->tail, &y);
	d->tail++;
	WR32(MBLIT_REG_RING_TAIL, d->tail);
	mb_wait_done(_metadata, d);
	first = SIZE_MAX;
	bad = mb_guest_diff(_metadata, d, 0, MB_BUF_SIZE, &first, 0, "stray");
	EXPECT_EQ(n, bad);
	if (n)
		EXPECT_EQ(MB_DATA_OFF - 1, first);
	mb_model_apply(d, &y);
	mb_check_guest(_metadata, d, "once modelled");
	mb_check_dev(_metadata, d, 0, MB_PAGE, "device memory");
}

/* ---- debugfs and pins --------------------------------------------------- */

TEST_F_TIMEOUT(engine, debugfs_counters, 300)
{
	static const char *const files[] = {
		"commands", "bytes", "pinned_pages", "pin_budget", "errors",
	};
	struct mb_dev *d = &self->dev;
	struct mblit_desc x[130];
	uint64_t bytes = 0;
	unsigned int i;

	for (i = 0; i < ARRAY_SIZE(files); i++) {
		uint64_t v;
		int ret = mb_debugfs_try(d, files[i], &v);

		ASSERT_EQ(0, ret) TH_LOG("debugfs %s/%s/%s: %s", MB_DEBUGFS,
					 d->uuid, files[i], strerror(-ret));
	}
	EXPECT_EQ(1024, mb_debugfs(_metadata, d, "pin_budget"));
	EXPECT_EQ(0, mb_debugfs(_metadata, d, "commands"));
	EXPECT_EQ(0, mb_debugfs(_metadata, d, "bytes"));
	EXPECT_EQ(0, mb_debugfs(_metadata, d, "pinned_pages"));
	EXPECT_EQ(0, mb_debugfs(_metadata, d, "errors"));

	/* 256 slots = 2 pages; 130 commands fetch from both. */
	mb_ring_setup(_metadata, d, 256);
	EXPECT_EQ(0, mb_debugfs(_metadata, d, "pinned_pages"))
		TH_LOG("pins before any fetch");
	for (i = 0; i < 130; i++)
		x[i] = i % 3 ? mb_nop() : random_cmd(d, 3 * MB_PAGE, MB_MIB);
	x[129] = mb_fence(G(64), 77, 0);
	bytes = mb_run(_metadata, d, x, 130);
	expect_counts(_metadata, d, 130, bytes);
	EXPECT_EQ(RD64(MBLIT_REG_CMD_COUNT), mb_debugfs(_metadata, d, "commands"));
	EXPECT_EQ(RD64(MBLIT_REG_BYTE_COUNT), mb_debugfs(_metadata, d, "bytes"));
	EXPECT_EQ(0, mb_debugfs(_metadata, d, "pinned_pages"))
		TH_LOG("idle with the ring enabled: nothing stays pinned between commands");
	mb_check_guest(_metadata, d, "debugfs_counters");

	/* Disabling and enabling pins nothing. */
	WR32(MBLIT_REG_CTRL, 0);
	EXPECT_EQ(0, mb_debugfs(_metadata, d, "pinned_pages"));
	WR32(MBLIT_REG_CTRL, MBLIT_CTRL_ENABLE);
	EXPECT_EQ(0, mb_debugfs(_metadata, d, "pinned_pages"));
	x[0] = mb_nop();
	mb_run(_metadata, d, x, 1);	/* slot 130: the second page */
	EXPECT_EQ(0, mb_debugfs(_metadata, d, "pinned_pages"));
	EXPECT_EQ(131, mb_debugfs(_metadata, d, "commands"));
	WR32(MBLIT_REG_CTRL, 0);
	EXPECT_EQ(0, mb_debugfs(_metadata, d, "pinned_pages"));

	/* An error stop counts. */
	WR32(MBLIT_REG_CTRL, MBLIT_CTRL_ENABLE);
	x[0] = RAW(0x42, 0, 0, 0, 0, 0, 0);
	mb_submit_bad(_metadata, d, x, 1);
	mb_wait_error(_metadata, d);
	EXPECT_EQ(1, mb_debugfs(_metadata, d, "errors"));
	EXPECT_EQ(131, mb_debugfs(_metadata, d, "commands"));
	mb_engine_reset(_metadata, d);
	EXPECT_EQ(0, mb_debugfs(_metadata, d, "pinned_pages"));
	EXPECT_EQ(1024, mb_debugfs(_metadata, d, "pin_budget"));
}

TEST_F_TIMEOUT(engine, reset_releases_pins, 300)
{
	struct mb_dev *d = &self->dev;
	struct mblit_desc x[200];
	struct snap a, b;
	unsigned int i;

	/* Idle with the ring enabled: nothing is pinned between commands. */
	mb_ring_setup(_metadata, d, 256);
	for (i = 0; i < 130; i++)
		x[i] = mb_nop();
	x[0] = mb_fill(100, 5000, PAT1, DD);
	x[1] = mb_fence(G(0), 5, MBLIT_FLAG_IRQ);
	WR64(MBLIT_REG_SCRATCH0, 0x1234);
	mb_run(_metadata, d, x, 130);
	mb_wait_int(_metadata, d, MBLIT_INT_FENCE);
	EXPECT_EQ(0, mb_debugfs(_metadata, d, "pinned_pages"));

	/* Device reset: pins, registers, config space, device memory. */
	ASSERT_EQ(0, ioctl(d->v.device_fd, VFIO_DEVICE_RESET))
		TH_LOG("VFIO_DEVICE_RESET: %s", strerror(errno));
	EXPECT_EQ(0, mb_debugfs(_metadata, d, "pinned_pages"));
	mb_expect_reset_regs(_metadata, d, "after VFIO_DEVICE_RESET");
	EXPECT_EQ(0, mb_cfg_rd16(_metadata, d, PCI_COMMAND));
	EXPECT_FALSE(mb_irq_pending(_metadata, d));
	memset(d->md, 0, d->mem);
	mb_check_dev(_metadata, d, 0, 2 * MB_PAGE, "device memory after reset");

	/* Engine reset: registers back, bus master kept, no pins. */
	mb_set_command(_metadata, d, PCI_COMMAND_MASTER, 0);
	d->tail = 0;
	mb_ring_setup(_metadata, d, 8);
	x[0] = mb_nop();
	mb_run(_metadata, d, x, 1);
	EXPECT_EQ(0, mb_debugfs(_metadata, d, "pinned_pages"));
	mb_engine_reset(_metadata, d);
	EXPECT_EQ(0, mb_debugfs(_metadata, d, "pinned_pages"));
	mb_expect_reset_regs(_metadata, d, "after CTRL.RESET");
	EXPECT_EQ(PCI_COMMAND_MASTER, mb_cfg_rd16(_metadata, d, PCI_COMMAND));

	/* Device reset in the middle of a workload: everything stops. */
	mb_ring_setup(_metadata, d, 256);
	big_workload(d, x, 200);
	mb_submit_bad(_metadata, d, x, 200);	/* results are not modelled */
	mb_wait_head(_metadata, d, 2);
	ASSERT_EQ(0, ioctl(d->v.device_fd, VFIO_DEVICE_RESET))
		TH_LOG("VFIO_DEVICE_RESET: %s", strerror(errno));
	EXPECT_EQ(0, mb_debugfs(_metadata, d, "pinned_pages"));
	mb_expect_reset_regs(_metadata, d, "after VFIO_DEVICE_RESET mid-work");
	take_snap(_metadata, d, &a, 8 * MB_MIB);
	mb_sleep_ms(100);
	take_snap(_metadata, d, &b, 8 * MB_MIB);
	EXPECT_EQ(0, memcmp(a.g, b.g, MB_BUF_SIZE))
		TH_LOG("guest memory changed after VFIO_DEVICE_RESET");
	EXPECT_EQ(0, memcmp(a.m, b.m, 8 * MB_MIB))
		TH_LOG("device memory changed after VFIO_DEVICE_RESET");
	for (i = 0; i < 8 * MB_MIB && !a.m[i]; i++)
		;
	EXPECT_EQ(8 * MB_MIB, i) TH_LOG("device memory not zero after reset");
	free_snap(&a);
	free_snap(&b);

	/* The device works again. */
	memcpy(d->mg, d->buf, MB_BUF_SIZE);
	memset(d->md, 0, d->mem);
	mb_set_command(_metadata, d, PCI_COMMAND_MASTER, 0);
	d->tail = 0;
	mb_ring_setup(_metadata, d, 8);
	x[0] = mb_fill(G(12345), 3333, PAT1, 0);
	x[1] = mb_copy(777, G(12345), 3333, DD);
	mb_run(_metadata, d, x, 2);
	mb_check_guest(_metadata, d, "after reset");
	mb_check_dev(_metadata, d, 0, MB_MIB, "after reset");
}

TEST_HARNESS_MAIN
