// SPDX-License-Identifier: GPL-2.0
/*
 * The DEVICE_STATE region through the VFIO uAPI (docs/device.md §10, §3,
 * §12; the state format of docs/migration.md §1-§2): finding the region by
 * its type capability, run-control quiescing the engine, saving a device
 * with a workload in flight and restoring it into another mdev of the same
 * type (and back), reading the state in any chunks, every class of rejected
 * restore, and no leak between mdevs.  Every test runs on both VFIO
 * back-ends (type1 container, iommufd cdev); each mdev has its own
 * container / iommufd, and its own guest buffer mapped at the same IOVA
 * (MB_IOVA), as a VMM's source and destination would.
 */
#include "kselftest_harness.h"
#include "mblit_dev.h"
#include "mblit_regs.h"
#include "mblit_state_fmt.h"

#define NDEV		3

FIXTURE(state) {
	struct mb_dev dev[NDEV];
	struct vfio_region_info sr[NDEV];
	int efd[NDEV];
};

FIXTURE_VARIANT(state) {
	enum vfio_backend backend;
};

FIXTURE_VARIANT_ADD(state, type1) {
	.backend = VFIO_BACKEND_TYPE1,
};

FIXTURE_VARIANT_ADD(state, iommufd) {
	.backend = VFIO_BACKEND_IOMMUFD,
};

FIXTURE_SETUP(state)
{
	int i;

	for (i = 0; i < NDEV; i++) {
		mb_init(&self->dev[i]);
		self->efd[i] = -1;
	}
}

FIXTURE_TEARDOWN(state)
{
	int i;

	for (i = 0; i < NDEV; i++) {
		if (self->efd[i] >= 0)
			close(self->efd[i]);
		self->efd[i] = -1;
		mb_close(_metadata, &self->dev[i]);
	}
}

#define G(off)		(MB_DATA_IOVA + (off))
#define DD		MBLIT_FLAG_DST_DEV
#define SD		MBLIT_FLAG_SRC_DEV
#define RUNNING		MBLIT_RUNCTL_RUNNING
#define STOPPED		MBLIT_RUNCTL_STOPPED
#define AREA		MBLIT_STATE_AREA_OFFSET

/* Open dev[i] as an mdev of @type, and find its DEVICE_STATE region. */
static struct mb_dev *open_dev(struct __test_metadata *_metadata,
			       FIXTURE_DATA(state) *self,
			       const FIXTURE_VARIANT(state) *variant, int i,
			       const char *type)
{
	mb_open(_metadata, &self->dev[i], type, variant->backend);
	mb_state_region(_metadata, &self->dev[i], &self->sr[i]);
	return &self->dev[i];
}

/* ---- the state format (docs/migration.md §1) --------------------------- */

/* BAR0 registers in the REGS section's order (regs::REGS). */
static const struct mb_reg *const regs = mb_regs;
#define NREGS		MB_NREGS
/* (never NULL; the check keeps gcc's format checker quiet) */
#define RNAME(i)	(regs[i].name ? regs[i].name : "?")
enum { R_ID, R_VERSION, R_CTRL, R_STATUS, R_RING_BASE, R_RING_SIZE,
       R_RING_HEAD, R_RING_TAIL, R_INT_STATUS, R_INT_MASK, R_FENCE_LAST,
       R_CMD_COUNT, R_BYTE_COUNT, R_ERR_INDEX, R_ERR_ADDR, R_SCRATCH0 };

static uint64_t blob_pages(const uint8_t *b)
{
	return get64(b + SV_VRAM_N);
}

static void read_regs(struct __test_metadata *_metadata, struct mb_dev *d,
		      uint64_t *v)
{
	unsigned int k;

	for (k = 0; k < NREGS; k++)
		v[k] = mb_rd(_metadata, d, regs[k].off, regs[k].w);
}

static void read_config(struct __test_metadata *_metadata, struct mb_dev *d,
			uint8_t *cfg)
{
	MB_ACC_OK(d, &d->cfg, false, 0, cfg, MBLIT_CONFIG_SIZE);
}

/*
 * A device record read from the stopped @d: its structure and CRC as
 * docs/migration.md §1 specifies, and its content equal to what the device
 * shows (config space, registers, device memory: carried pages equal BAR2,
 * every other page reads zero).
 */
static void check_blob(struct __test_metadata *_metadata, struct mb_dev *d,
		       const uint8_t *b, size_t len)
{
	static const uint64_t sec_len[] = { 256, 152, 16, 8 };
	static const uint32_t sec_off[] = { SV_CONFIG_SEC, SV_REGS_SEC,
					    SV_ENGINE_SEC, SV_IRQ_SEC,
					    SV_VRAM_SEC };
	uint8_t cfg[MBLIT_CONFIG_SIZE], *vram, *carried;
	uint64_t v[NREGS], n, idx, prev = 0, k, bad = 0;
	unsigned int i;

	ASSERT_LE(SV_LEN(0), len);
	n = blob_pages(b);
	ASSERT_EQ(SV_LEN(n), len) TH_LOG("state size vs %llu pages",
					 (unsigned long long)n);
	EXPECT_EQ(SV_MAGIC, get32(b));
	EXPECT_EQ(1, get32(b + SV_OFF_VERSION));
	EXPECT_EQ(d->mem / MB_MIB, get32(b + SV_OFF_TYPE));
	EXPECT_EQ(5, get32(b + SV_OFF_COUNT));
	EXPECT_EQ(d->mem, get64(b + SV_OFF_VRAMSZ));
	EXPECT_EQ(len, get64(b + SV_OFF_LEN));
	for (i = 0; i < 5; i++) {
		EXPECT_EQ(i + 1, get32(b + sec_off[i])) TH_LOG("section %u id", i);
		EXPECT_EQ(0, get32(b + sec_off[i] + 4));
		EXPECT_EQ(i < 4 ? sec_len[i] : 8 + n * SV_ENTRY,
			  get64(b + sec_off[i] + 8)) TH_LOG("section %u len", i);
	}
	ASSERT_EQ(crc32_le(b, len - 4), get32(b + len - 4)) TH_LOG("CRC32");

	read_config(_metadata, d, cfg);
	EXPECT_EQ(0, memcmp(cfg, b + SV_CONFIG, sizeof(cfg)))
		TH_LOG("CONFIG section differs from config space");
	read_regs(_metadata, d, v);
	for (i = 0; i < NREGS; i++)
		EXPECT_EQ(v[i], get64(b + SV_REG(i))) TH_LOG("REGS %s", RNAME(i));

	vram = mb_dup_vram(_metadata, d);
	carried = calloc(1, d->mem / MB_PAGE);
	ASSERT_NE(NULL, carried);
	for (k = 0; k < n; k++) {
		const uint8_t *e = b + SV_PAGES + k * SV_ENTRY;

		idx = get64(e);
		ASSERT_GT(d->mem / MB_PAGE, idx) TH_LOG("page index");
		if (k)
			ASSERT_LT(prev, idx) TH_LOG("page indices not increasing");
		prev = idx;
		carried[idx] = 1;
		if (memcmp(e + 8, vram + idx * MB_PAGE, MB_PAGE) && bad++ < 4)
			TH_LOG("VRAM page %llu differs from BAR2",
			       (unsigned long long)idx);
	}
	for (k = 0; k < d->mem / MB_PAGE; k++) {
		if (carried[k])
			continue;
		for (i = 0; i < MB_PAGE && !vram[k * MB_PAGE + i]; i++)
			;
		if (i < MB_PAGE && bad++ < 4)
			TH_LOG("page %llu not carried but not zero",
			       (unsigned long long)k);
	}
	EXPECT_EQ(0, bad);
	free(carried);
	free(vram);
}

/* Write a state into the state area in one write. */
static void state_write(struct __test_metadata *_metadata, struct mb_dev *d,
			const struct vfio_region_info *sr, const uint8_t *b,
			size_t len)
{
	MB_ACC_OK(d, sr, true, AREA, (void *)b, len);
}

/* ... in chunks of @chunk bytes, the last chunk first. */
static void state_write_rev(struct __test_metadata *_metadata,
			    struct mb_dev *d, const struct vfio_region_info *sr,
			    const uint8_t *b, size_t len, size_t chunk)
{
	size_t off = (len - 1) / chunk * chunk;

	for (;;) {
		size_t n = len - off < chunk ? len - off : chunk;

		MB_ACC_OK(d, sr, true, AREA + off, (void *)(b + off), n);
		if (!off)
			break;
		off -= chunk;
	}
}

static void set_msi(struct __test_metadata *_metadata,
		    FIXTURE_DATA(state) *self, int i)
{
	self->efd[i] = mb_eventfd(_metadata);
	ASSERT_EQ(0, mb_set_trigger(&self->dev[i], VFIO_PCI_MSI_IRQ_INDEX,
				    self->efd[i]))
		TH_LOG("SET_IRQS MSI: %s", strerror(errno));
}

/* Exactly @want MSI signals (none more within MB_QUIET_MS). */
static void expect_msi(struct __test_metadata *_metadata, int fd,
		       uint64_t want, const char *what)
{
	uint64_t got = want ? mb_efd_collect(_metadata, fd, want,
					     MB_IRQ_WAIT_MS) : 0;

	got += mb_efd_wait(_metadata, fd, MB_QUIET_MS);
	EXPECT_EQ(want, got) TH_LOG("%s: MSI signals", what);
}

/* ---- region_found ------------------------------------------------------ */

TEST_F_TIMEOUT(state, region_found, 300)
{
	static const struct { const char *type; uint64_t mib; } types[] = {
		{ "mblit-16m", 16 }, { "mblit-1m", 1 },
	};
	uint8_t page[AREA], one[64];
	unsigned int t, i;

	/* The test's own CRC against the documented check value. */
	ASSERT_EQ(0xcbf43926U, crc32_le((const uint8_t *)"123456789", 9));

	for (t = 0; t < ARRAY_SIZE(types); t++) {
		struct mb_dev *d = open_dev(_metadata, self, variant, t,
					    types[t].type);
		struct vfio_region_info *sr = &self->sr[t];
		uint64_t max = SV_LEN(types[t].mib * MB_MIB / MB_PAGE);

		TH_LOG("%s: DEVICE_STATE is region %u, size %llu", types[t].type,
		       sr->index, (unsigned long long)sr->size);
		EXPECT_EQ(VFIO_REGION_INFO_FLAG_READ | VFIO_REGION_INFO_FLAG_WRITE |
			  VFIO_REGION_INFO_FLAG_CAPS, sr->flags);
		/* 0x1000 + the type's largest state (docs/migration.md §1.4). */
		EXPECT_EQ(AREA + max, sr->size);
		EXPECT_LE(AREA + SV_LEN(0), sr->size);
		EXPECT_EQ((uint64_t)sr->index << 40, sr->offset);

		EXPECT_EQ(RUNNING, mb_runctl_get(d, sr));
		EXPECT_EQ(MBLIT_STATE_MAGIC,
			  mb_state_hdr(_metadata, d, sr, MBLIT_STATE_OFF_MAGIC, 4));
		EXPECT_EQ(MBLIT_STATE_FORMAT_VERSION,
			  mb_state_hdr(_metadata, d, sr, MBLIT_STATE_OFF_VERSION, 4));
		EXPECT_EQ(types[t].mib,
			  mb_state_hdr(_metadata, d, sr, MBLIT_STATE_OFF_TYPE, 4));
		EXPECT_EQ(0, mb_state_hdr(_metadata, d, sr, MBLIT_STATE_OFF_SIZE, 8))
			TH_LOG("state size while running");

		/* The control page: header in any chunk, reserved bytes 0. */
		memset(page, 0xee, sizeof(page));
		MB_ACC_OK(d, sr, false, 1, page + 1, AREA - 1);
		for (i = 1; i < AREA; i++) {
			if (i >= MBLIT_STATE_OFF_MAGIC && i < 0x14)
				continue;
			if (i >= MBLIT_STATE_OFF_SIZE && i < MBLIT_STATE_HEADER_END)
				continue;
			if (page[i])
				break;
		}
		EXPECT_EQ(AREA, i) TH_LOG("reserved byte %#x is %#x", i,
					  i < AREA ? page[i] : 0);
		EXPECT_EQ(0, memcmp(page + MBLIT_STATE_OFF_MAGIC, "MBST", 4));
		for (i = 1; i < MBLIT_STATE_HEADER_END + 8; i++) {
			MB_ACC_OK(d, sr, false, i, one, 1);
			EXPECT_EQ(page[i], one[0]) TH_LOG("header byte %#x", i);
		}
		MB_ACC_OK(d, sr, false, 5, one, 37);
		EXPECT_EQ(0, memcmp(one, page + 5, 37));

		/* The state area while running: EBUSY. */
		EXPECT_EQ(-EBUSY, mb_acc(d, sr, false, AREA, one, 1));
		EXPECT_EQ(-EBUSY, mb_acc(d, sr, false, AREA, one, 64));
		EXPECT_EQ(-EBUSY, mb_acc(d, sr, true, AREA, one, 8));

		/* Stopped: a state with no pages, as documented. */
		EXPECT_EQ(0, mb_runctl_set(d, sr, STOPPED));
		EXPECT_EQ(STOPPED, mb_runctl_get(d, sr));
		EXPECT_EQ(SV_LEN(0),
			  mb_state_hdr(_metadata, d, sr, MBLIT_STATE_OFF_SIZE, 8));
		{
			size_t len;
			uint8_t *b = mb_state_read(_metadata, d, sr, &len);

			check_blob(_metadata, d, b, len);
			free(b);
		}
		EXPECT_EQ(0, mb_runctl_set(d, sr, RUNNING));
		EXPECT_EQ(RUNNING, mb_runctl_get(d, sr));
		EXPECT_EQ(0, mb_state_hdr(_metadata, d, sr, MBLIT_STATE_OFF_SIZE, 8));
	}
}

/* ---- run_control_quiesces ---------------------------------------------- */

struct sample {
	uint8_t *g, *m;
	uint32_t head;
	uint64_t cmds, bytes;
};

static void take_sample(struct __test_metadata *_metadata, struct mb_dev *d,
			struct sample *s)
{
	s->g = malloc(MB_BUF_SIZE);
	ASSERT_NE(NULL, s->g);
	memcpy(s->g, d->buf, MB_BUF_SIZE);
	s->m = mb_dup_vram(_metadata, d);
	s->head = RD32(MBLIT_REG_RING_HEAD);
	s->cmds = RD64(MBLIT_REG_CMD_COUNT);
	s->bytes = RD64(MBLIT_REG_BYTE_COUNT);
}

TEST_F_TIMEOUT(state, run_control_quiesces, 600)
{
	struct mb_dev *d = open_dev(_metadata, self, variant, 0, "mblit-16m");
	const struct vfio_region_info *sr = &self->sr[0];
	const unsigned int n = 100;
	const uint64_t fence = G(6 * MB_MIB + 512 * 1024);
	struct mblit_desc x[101];
	uint8_t *mg0, *md0, *p, one[16];
	struct sample a, b;
	struct mb_dev part;
	uint64_t t0, gen, v;
	unsigned int i, k;
	uint32_t head;
	size_t len;

	/* Random device memory, so the copies move distinguishable bytes. */
	p = malloc(d->mem);
	ASSERT_NE(NULL, p);
	mb_rand_fill(d, p, d->mem);
	mb_bar2_wr(_metadata, d, 0, p, d->mem);
	free(p);
	mg0 = malloc(MB_BUF_SIZE);
	md0 = malloc(d->mem);
	ASSERT_TRUE(mg0 && md0);
	memcpy(mg0, d->mg, MB_BUF_SIZE);
	memcpy(md0, d->md, d->mem);

	/* 100 x 1 MiB COPYs, guest <-> device, then a FENCE. */
	for (i = 0; i < n; i++) {
		k = i / 2;
		if (i % 2)
			x[i] = mb_copy(G((k % 6) * MB_MIB + 8 * (k % 7)),
				       ((k + 7) % 15) * MB_MIB + 3, MB_MIB, SD);
		else
			x[i] = mb_copy((k % 15) * MB_MIB + 5 * (k % 3),
				       G(((k + 2) % 6) * MB_MIB + 1), MB_MIB, DD);
	}
	x[n] = mb_fence(fence, 0x5709ed0ff1ceULL, 0);
	mb_ring_setup(_metadata, d, 256);
	gen = mb_state_hdr(_metadata, d, sr, MBLIT_STATE_OFF_GENERATION, 8);
	mb_submit(_metadata, d, x, n + 1);
	mb_wait_head(_metadata, d, 2);

	/* While running: the state area is EBUSY, the state size 0. */
	EXPECT_EQ(-EBUSY, mb_acc(d, sr, false, AREA, one, 16));
	EXPECT_EQ(0, mb_state_hdr(_metadata, d, sr, MBLIT_STATE_OFF_SIZE, 8));

	t0 = mb_now_ms();
	ASSERT_EQ(0, mb_runctl_set(d, sr, STOPPED));
	t0 = mb_now_ms() - t0;
	/* The write returned after the command in progress: none is. */
	head = RD32(MBLIT_REG_RING_HEAD);
	EXPECT_EQ(head, RD64(MBLIT_REG_CMD_COUNT));
	EXPECT_EQ(0, mb_debugfs(_metadata, d, "pinned_pages"))
		TH_LOG("pages pinned after the STOPPED write returned");
	TH_LOG("stopped at head %u of %u in %llu ms", head, n + 1,
	       (unsigned long long)t0);
	ASSERT_GT(n, head) TH_LOG("the workload finished before the stop");
	EXPECT_EQ(STOPPED, mb_runctl_get(d, sr));
	EXPECT_NE(gen, mb_state_hdr(_metadata, d, sr,
				    MBLIT_STATE_OFF_GENERATION, 8));

	take_sample(_metadata, d, &a);
	mb_sleep_ms(100);
	take_sample(_metadata, d, &b);
	EXPECT_EQ(head, a.head);
	EXPECT_EQ(head, b.head);
	EXPECT_EQ(a.cmds, b.cmds);
	EXPECT_EQ(a.bytes, b.bytes);
	EXPECT_EQ((uint64_t)head * MB_MIB, a.bytes);
	EXPECT_EQ(0, memcmp(a.g, b.g, MB_BUF_SIZE))
		TH_LOG("guest memory changed while STOPPED");
	EXPECT_EQ(0, memcmp(a.m, b.m, d->mem))
		TH_LOG("device memory changed while STOPPED");
	EXPECT_EQ(MBLIT_STATUS_BUSY, RD32(MBLIT_REG_STATUS))
		TH_LOG("STATUS.BUSY: submitted work remains");

	/* Memory is exactly the first `head` commands' result. */
	part = *d;
	part.mg = mg0;
	part.md = md0;
	for (i = 0; i < head; i++)
		mb_model_apply(&part, &x[i]);
	EXPECT_EQ(0, memcmp(a.g + MB_DATA_OFF, mg0 + MB_DATA_OFF,
			    MB_BUF_SIZE - MB_DATA_OFF))
		TH_LOG("guest memory is not that of %u whole commands", head);
	EXPECT_EQ(0, memcmp(a.m, md0, d->mem))
		TH_LOG("device memory is not that of %u whole commands", head);

	/* BAR0 and BAR2 writes: EBUSY, and nothing changes. */
	v = d->tail + 1;
	EXPECT_EQ(-EBUSY, mb_acc(d, &d->bar0, true, MBLIT_REG_RING_TAIL, &v, 4));
	v = 0;
	EXPECT_EQ(-EBUSY, mb_acc(d, &d->bar0, true, MBLIT_REG_CTRL, &v, 4));
	v = MBLIT_CTRL_RESET;
	EXPECT_EQ(-EBUSY, mb_acc(d, &d->bar0, true, MBLIT_REG_CTRL, &v, 4));
	v = 0x1234;
	EXPECT_EQ(-EBUSY, mb_acc(d, &d->bar0, true, MBLIT_REG_SCRATCH0, &v, 8));
	EXPECT_EQ(-EBUSY, mb_acc(d, &d->bar0, true, MBLIT_REG_INT_MASK, &v, 4));
	memset(one, 0x77, sizeof(one));
	EXPECT_EQ(-EBUSY, mb_acc(d, &d->bar2, true, 4096, one, sizeof(one)));
	EXPECT_EQ(-EBUSY, mb_acc(d, &d->bar2, true, d->mem - 1, one, 1));
	EXPECT_EQ(0, RD64(MBLIT_REG_SCRATCH0));
	EXPECT_EQ(MBLIT_CTRL_ENABLE, RD32(MBLIT_REG_CTRL));
	EXPECT_EQ(n + 1, RD32(MBLIT_REG_RING_TAIL));
	mb_bar2_rd(_metadata, d, 4096, one, sizeof(one));
	EXPECT_EQ(0, memcmp(one, a.m + 4096, sizeof(one)));
	/* Config space stays writable (docs/device.md §3). */
	one[0] = 0x5a;
	MB_ACC_OK(d, &d->cfg, true, PCI_INTERRUPT_LINE, one, 1);
	one[0] = 0;
	MB_ACC_OK(d, &d->cfg, false, PCI_INTERRUPT_LINE, one, 1);
	EXPECT_EQ(0x5a, one[0]);
	one[0] = 0;
	MB_ACC_OK(d, &d->cfg, true, PCI_INTERRUPT_LINE, one, 1);

	/* The state is readable while stopped, and still nothing moved. */
	p = mb_state_read(_metadata, d, sr, &len);
	free(p);
	mb_sleep_ms(50);
	EXPECT_EQ(head, RD32(MBLIT_REG_RING_HEAD));
	EXPECT_EQ(0, memcmp(a.g, d->buf, MB_BUF_SIZE));

	/* RUNNING: the workload goes on from `head` and finishes right. */
	ASSERT_EQ(0, mb_runctl_set(d, sr, RUNNING));
	EXPECT_EQ(RUNNING, mb_runctl_get(d, sr));
	EXPECT_EQ(0, mb_state_hdr(_metadata, d, sr, MBLIT_STATE_OFF_SIZE, 8));
	EXPECT_EQ(-EBUSY, mb_acc(d, sr, false, AREA, one, 1));
	mb_wait_done(_metadata, d);
	EXPECT_EQ(n + 1, RD32(MBLIT_REG_RING_HEAD));
	EXPECT_EQ(n + 1, RD64(MBLIT_REG_CMD_COUNT));
	EXPECT_EQ((uint64_t)n * MB_MIB, RD64(MBLIT_REG_BYTE_COUNT));
	EXPECT_EQ(0x5709ed0ff1ceULL, RD64(MBLIT_REG_FENCE_LAST));
	mb_check_guest(_metadata, d, "after RUNNING");
	mb_check_dev(_metadata, d, 0, d->mem, "after RUNNING");
	free(a.g); free(a.m); free(b.g); free(b.m);
	free(mg0); free(md0);
}

/* ---- save_restore_in_flight -------------------------------------------- */

#define FENCE_AREA	G(6 * MB_MIB + 512 * 1024)
#define N1		60
#define N2		60

/* Descriptor @i of the migration workload. */
static struct mblit_desc wl_cmd(unsigned int i)
{
	unsigned int k = i / 5;

	switch (i % 5) {
	case 0:
		return mb_fill((k % 8) * MB_MIB, MB_MIB, 0x01010101U * (i + 1),
			       DD);
	case 1:
		return mb_copy((8 + k % 8) * MB_MIB,
			       G((k % 3) * MB_MIB + (k % 5) * MB_PAGE + 3),
			       MB_MIB, DD);
	case 2:
		return mb_copy(G((3 + k % 3) * MB_MIB + 5),
			       (k % 8) * MB_MIB + 7 + (k % 3) * MB_PAGE,
			       MB_MIB, SD);
	case 3:
		return mb_fill(G((k % 6) * MB_MIB + 11), 256 * 1024,
			       0x5a000000U ^ (i * 0x9e37U), 0);
	default:
		return mb_fence(FENCE_AREA + 8 * i, 0xfe00000000000000ULL | i,
				MBLIT_FLAG_IRQ);
	}
}

/* FENCE|IRQ commands among descriptors [lo, hi). */
static unsigned int wl_irqs(unsigned int lo, unsigned int hi)
{
	unsigned int i, c = 0;

	for (i = lo; i < hi; i++)
		c += i % 5 == 4;
	return c;
}

static void wl_submit(struct __test_metadata *_metadata, struct mb_dev *d,
		      unsigned int lo, unsigned int hi)
{
	struct mblit_desc x[256];
	unsigned int i;

	for (i = lo; i < hi; i++)
		x[i - lo] = wl_cmd(i);
	mb_submit(_metadata, d, x, hi - lo);
}

/* What the reference device looks like at a point of the workload. */
struct ref {
	uint8_t *g, *m;
	uint8_t cfg[MBLIT_CONFIG_SIZE];
	uint64_t regs[NREGS];
};

static void ref_take(struct __test_metadata *_metadata, struct mb_dev *d,
		     struct ref *r)
{
	r->g = malloc(MB_BUF_SIZE);
	ASSERT_NE(NULL, r->g);
	memcpy(r->g, d->buf, MB_BUF_SIZE);
	r->m = mb_dup_vram(_metadata, d);
	read_config(_metadata, d, r->cfg);
	read_regs(_metadata, d, r->regs);
}

/* @d equals the reference, byte for byte, and its own model. */
static void ref_compare(struct __test_metadata *_metadata, struct mb_dev *d,
			const struct ref *r, unsigned int upto,
			const char *what)
{
	struct ref now;
	unsigned int i;

	ref_take(_metadata, d, &now);
	EXPECT_EQ(0, memcmp(now.g, r->g, MB_BUF_SIZE))
		TH_LOG("%s: guest buffer differs from the reference run", what);
	EXPECT_EQ(0, memcmp(now.m, r->m, d->mem))
		TH_LOG("%s: device memory differs from the reference run", what);
	EXPECT_EQ(0, memcmp(now.cfg, r->cfg, MBLIT_CONFIG_SIZE))
		TH_LOG("%s: config space differs from the reference run", what);
	for (i = 0; i < NREGS; i++)
		EXPECT_EQ(r->regs[i], now.regs[i])
			TH_LOG("%s: %s differs from the reference run", what,
			       RNAME(i));
	for (i = 0; i < upto; i++) {
		struct mblit_desc x = wl_cmd(i);
		uint64_t val;

		if (x.opcode != MBLIT_OP_FENCE)
			continue;
		memcpy(&val, d->buf + (x.dst - MB_IOVA), 8);
		EXPECT_EQ(x.src, val) TH_LOG("%s: fence %u", what, i);
	}
	mb_check_guest(_metadata, d, what);
	mb_check_dev(_metadata, d, 0, d->mem, what);
	free(now.g);
	free(now.m);
}

/*
 * What a VMM does for @from -> @to: guest RAM (and, here, the test's
 * model and ring bookkeeping) follow the device state.
 */
static void move_guest(struct mb_dev *from, struct mb_dev *to)
{
	memcpy(to->buf, from->buf, MB_BUF_SIZE);
	memcpy(to->mg, from->mg, MB_BUF_SIZE);
	memcpy(to->md, from->md, to->mem);
	to->ring_iova = from->ring_iova;
	to->ring_va = to->buf + (from->ring_va - from->buf);
	to->ring_size = from->ring_size;
	to->tail = from->tail;
}

TEST_F_TIMEOUT(state, save_restore_in_flight, 900)
{
	struct mb_dev *src = open_dev(_metadata, self, variant, 0, "mblit-16m");
	struct mb_dev *dst = open_dev(_metadata, self, variant, 1, "mblit-16m");
	struct mb_dev *ref = open_dev(_metadata, self, variant, 2, "mblit-16m");
	const struct vfio_region_info *ssr = &self->sr[0], *dsr = &self->sr[1];
	struct ref r1, r2;
	uint8_t *s, *dblob, *rblob;
	uint32_t h1, h2;
	uint64_t gen;
	size_t slen, dlen, rlen;
	struct mb_dev *d;

	/* Same starting point for the source and the reference. */
	memcpy(ref->buf, src->buf, MB_BUF_SIZE);
	memcpy(ref->mg, src->mg, MB_BUF_SIZE);
	set_msi(_metadata, self, 0);
	set_msi(_metadata, self, 1);
	set_msi(_metadata, self, 2);

	/* The reference: W1, then W2, never migrated. */
	d = ref;
	mb_ring_setup(_metadata, d, 256);
	WR64(MBLIT_REG_SCRATCH0, 0x5c7a7c40);
	wl_submit(_metadata, d, 0, N1);
	mb_wait_done(_metadata, d);
	expect_msi(_metadata, self->efd[2], wl_irqs(0, N1), "reference W1");
	ref_take(_metadata, d, &r1);
	EXPECT_EQ(N1, r1.regs[R_CMD_COUNT]);
	wl_submit(_metadata, d, N1, N1 + N2);
	mb_wait_done(_metadata, d);
	expect_msi(_metadata, self->efd[2], wl_irqs(N1, N1 + N2), "reference W2");
	ref_take(_metadata, d, &r2);
	EXPECT_EQ(N1 + N2, r2.regs[R_CMD_COUNT]);
	EXPECT_EQ(MBLIT_INT_FENCE, r2.regs[R_INT_STATUS]);

	/* The source runs W1 and is stopped mid-way. */
	d = src;
	mb_ring_setup(_metadata, d, 256);
	WR64(MBLIT_REG_SCRATCH0, 0x5c7a7c40);
	wl_submit(_metadata, d, 0, N1);
	mb_wait_head(_metadata, d, 6);
	ASSERT_EQ(0, mb_runctl_set(d, ssr, STOPPED));
	h1 = RD32(MBLIT_REG_RING_HEAD);
	TH_LOG("source stopped at %u of %u", h1, N1);
	ASSERT_GT(N1, h1) TH_LOG("W1 finished before the stop");
	expect_msi(_metadata, self->efd[0], wl_irqs(0, h1), "source before the stop");
	s = mb_state_read(_metadata, d, ssr, &slen);
	check_blob(_metadata, d, s, slen);
	TH_LOG("state: %zu bytes, %llu pages", slen,
	       (unsigned long long)blob_pages(s));

	/* The destination: STOPPED, state in, guest RAM copied, RUNNING. */
	d = dst;
	ASSERT_EQ(0, mb_runctl_set(d, dsr, STOPPED));
	state_write_rev(_metadata, d, dsr, s, slen, 65537);
	move_guest(src, dst);
	ASSERT_EQ(0, mb_runctl_set(d, dsr, RUNNING));
	EXPECT_EQ(RUNNING, mb_runctl_get(d, dsr));
	mb_wait_done(_metadata, d);
	expect_msi(_metadata, self->efd[1], wl_irqs(h1, N1),
		   "destination, rest of W1");
	ref_compare(_metadata, d, &r1, N1, "destination after W1");
	/* The source stayed stopped and untouched. */
	EXPECT_EQ(STOPPED, mb_runctl_get(src, ssr));
	EXPECT_EQ(h1, mb_rd(_metadata, src, MBLIT_REG_RING_HEAD, 4));

	/* Round trip: W2 on the destination, stopped mid-way, back. */
	wl_submit(_metadata, d, N1, N1 + N2);
	mb_wait_head(_metadata, d, N1 + 6);
	ASSERT_EQ(0, mb_runctl_set(d, dsr, STOPPED));
	h2 = RD32(MBLIT_REG_RING_HEAD);
	TH_LOG("destination stopped at %u of %u", h2, N1 + N2);
	ASSERT_GT(N1 + N2, h2) TH_LOG("W2 finished before the stop");
	expect_msi(_metadata, self->efd[1], wl_irqs(N1, h2),
		   "destination before the stop");
	dblob = mb_state_read(_metadata, d, dsr, &dlen);
	check_blob(_metadata, d, dblob, dlen);

	d = src;
	gen = mb_state_hdr(_metadata, d, ssr, MBLIT_STATE_OFF_GENERATION, 8);
	ASSERT_EQ(0, mb_runctl_set(d, ssr, STOPPED));	/* already: no-op */
	EXPECT_EQ(gen, mb_state_hdr(_metadata, d, ssr,
				    MBLIT_STATE_OFF_GENERATION, 8));
	state_write(_metadata, d, ssr, dblob, dlen);
	move_guest(dst, src);
	ASSERT_EQ(0, mb_runctl_set(d, ssr, RUNNING));
	mb_wait_done(_metadata, d);
	expect_msi(_metadata, self->efd[0], wl_irqs(h2, N1 + N2),
		   "source, rest of W2");
	ref_compare(_metadata, d, &r2, N1 + N2, "source after the round trip");

	/* The engine/IRQ sections too: stop both and compare the states. */
	ASSERT_EQ(0, mb_runctl_set(src, ssr, STOPPED));
	ASSERT_EQ(0, mb_runctl_set(ref, &self->sr[2], STOPPED));
	free(s);
	s = mb_state_read(_metadata, src, ssr, &slen);
	rblob = mb_state_read(_metadata, ref, &self->sr[2], &rlen);
	check_blob(_metadata, src, s, slen);
	EXPECT_EQ(0, memcmp(s + SV_CONFIG_SEC, rblob + SV_CONFIG_SEC,
			    SV_VRAM_SEC - SV_CONFIG_SEC))
		TH_LOG("CONFIG/REGS/ENGINE/IRQ differ from the reference's");
	free(s); free(dblob); free(rblob);
	free(r1.g); free(r1.m); free(r2.g); free(r2.m);
}

/* ---- chunked_reads ----------------------------------------------------- */

TEST_F_TIMEOUT(state, chunked_reads, 600)
{
	struct mb_dev *d = open_dev(_metadata, self, variant, 0, "mblit-16m");
	const struct vfio_region_info *sr = &self->sr[0];
	static const size_t chunks[] = { 1, 7, 4095, 4097, 0 /* random */ };
	static const uint64_t pages[] = { 0, 1, 7, 100, 1000, 2049, 4094, 4095 };
	uint8_t *b, *c, *p, *b2, tmp[64];
	uint64_t g1, g2, g3, off, end;
	size_t len, len2, n, ci;
	struct mblit_desc x[3];
	unsigned int i;

	/* Some state: 24 pages of device memory, registers, a ring. */
	p = malloc(64 * 1024);
	ASSERT_NE(NULL, p);
	mb_rand_fill(d, p, 64 * 1024);
	mb_bar2_wr(_metadata, d, 4 * MB_MIB, p, 64 * 1024);
	for (i = 0; i < ARRAY_SIZE(pages); i++)
		mb_bar2_wr(_metadata, d, pages[i] * MB_PAGE + 5 * i, p + 9 * i,
			   3000);
	free(p);
	mb_ring_setup(_metadata, d, 16);
	x[0] = mb_fill(G(123), 5000, 0xc0ffee11, 0);
	x[1] = mb_nop();
	x[2] = mb_fence(G(4096), 0xabcdef, MBLIT_FLAG_IRQ);
	mb_run(_metadata, d, x, 3);
	WR64(MBLIT_REG_SCRATCH2, 0x0123456789abcdefULL);

	ASSERT_EQ(0, mb_runctl_set(d, sr, STOPPED));
	g1 = mb_state_hdr(_metadata, d, sr, MBLIT_STATE_OFF_GENERATION, 8);
	b = mb_state_read(_metadata, d, sr, &len);
	check_blob(_metadata, d, b, len);
	EXPECT_EQ(16 + ARRAY_SIZE(pages), blob_pages(b))
		TH_LOG("the pages ever written (docs/migration.md §1.1)");
	c = malloc(len);
	ASSERT_NE(NULL, c);

	/* Sequential reads in chunks, from 0 and from odd offsets. */
	for (ci = 0; ci < ARRAY_SIZE(chunks); ci++) {
		for (off = 0; off < 2; off++) {
			uint64_t start = off ? 3 : 0;

			memset(c, 0xee, len);
			for (end = start; end < len; end += n) {
				n = chunks[ci] ? chunks[ci] :
					mb_rand_range(d, 1, 9000);
				if (n > len - end)
					n = len - end;
				MB_ACC_OK(d, sr, false, AREA + end, c + end, n);
			}
			EXPECT_EQ(0, memcmp(c + start, b + start, len - start))
				TH_LOG("chunk %zu from %llu differs from one read",
				       chunks[ci], (unsigned long long)start);
			if (chunks[ci] == 1 && off == 0)
				break;	/* slow under TCG: once is enough */
		}
	}
	/* Random reads anywhere. */
	for (i = 0; i < 400; i++) {
		off = mb_rand_range(d, 0, len - 1);
		n = mb_rand_range(d, 1, len - off < 20000 ? len - off : 20000);
		MB_ACC_OK(d, sr, false, AREA + off, c, n);
		if (memcmp(c, b + off, n)) {
			EXPECT_EQ(0, memcmp(c, b + off, n))
				TH_LOG("read of %zu at %llu differs", n,
				       (unsigned long long)off);
			break;
		}
	}
	/* Past the state size: EINVAL (and at the exact end: fine). */
	MB_ACC_OK(d, sr, false, AREA + len - 1, tmp, 1);
	EXPECT_EQ(b[len - 1], tmp[0]);
	EXPECT_EQ(-EINVAL, mb_acc(d, sr, false, AREA + len - 1, tmp, 2));
	EXPECT_EQ(-EINVAL, mb_acc(d, sr, false, AREA + len, tmp, 1));
	EXPECT_EQ(-EINVAL, mb_acc(d, sr, false, AREA + len - 10, tmp, 64));
	EXPECT_EQ(-EINVAL, mb_acc(d, sr, false, AREA + len + 4096, tmp, 8));
	EXPECT_EQ(-EINVAL, mb_acc(d, sr, false, sr->size - 1, tmp, 1));
	EXPECT_EQ(-EINVAL, mb_acc(d, sr, false, sr->size - 1, tmp, 2));
	EXPECT_EQ(-EINVAL, mb_acc(d, sr, false, sr->size, tmp, 1));
	EXPECT_EQ(-EINVAL, mb_acc(d, sr, false, AREA, tmp, 0));
	/* Still the same state. */
	MB_ACC_OK(d, sr, false, AREA, c, len);
	EXPECT_EQ(0, memcmp(c, b, len));

	/* STOPPED again while stopped: the same snapshot. */
	ASSERT_EQ(0, mb_runctl_set(d, sr, STOPPED));
	EXPECT_EQ(g1, mb_state_hdr(_metadata, d, sr, MBLIT_STATE_OFF_GENERATION, 8));
	EXPECT_EQ(len, mb_state_hdr(_metadata, d, sr, MBLIT_STATE_OFF_SIZE, 8));

	/* Each new stop: a new generation. */
	ASSERT_EQ(0, mb_runctl_set(d, sr, RUNNING));
	ASSERT_EQ(0, mb_runctl_set(d, sr, STOPPED));
	g2 = mb_state_hdr(_metadata, d, sr, MBLIT_STATE_OFF_GENERATION, 8);
	EXPECT_NE(g1, g2);
	b2 = mb_state_read(_metadata, d, sr, &len2);
	EXPECT_EQ(len, len2);
	EXPECT_EQ(0, memcmp(b, b2, len)) TH_LOG("idle device, different state");
	free(b2);
	ASSERT_EQ(0, mb_runctl_set(d, sr, RUNNING));
	WR64(MBLIT_REG_SCRATCH2, 0xfeedULL);
	ASSERT_EQ(0, mb_runctl_set(d, sr, STOPPED));
	g3 = mb_state_hdr(_metadata, d, sr, MBLIT_STATE_OFF_GENERATION, 8);
	EXPECT_NE(g2, g3);
	EXPECT_NE(g1, g3);
	b2 = mb_state_read(_metadata, d, sr, &len2);
	ASSERT_EQ(len, len2);
	EXPECT_EQ(0xfeedULL, get64(b2 + SV_REG(R_SCRATCH0 + 2)));
	EXPECT_NE(0, memcmp(b, b2, len));
	/* ... read in chunks too. */
	for (end = 0; end < len2; end += n) {
		n = len2 - end < 4097 ? len2 - end : 4097;
		MB_ACC_OK(d, sr, false, AREA + end, c + end, n);
	}
	EXPECT_EQ(0, memcmp(c, b2, len2));
	ASSERT_EQ(0, mb_runctl_set(d, sr, RUNNING));
	free(b);
	free(b2);
	free(c);
}

/* ---- rejected_restores ------------------------------------------------- */

/* The destination's observable state, while it is stopped. */
struct live {
	uint8_t cfg[MBLIT_CONFIG_SIZE];
	uint64_t regs[NREGS];
	uint8_t *m;		/* the first 128 KiB and the last page */
};

#define LIVE_LO		(128 * 1024)

static void live_take(struct __test_metadata *_metadata, struct mb_dev *d,
		      struct live *l)
{
	read_config(_metadata, d, l->cfg);
	read_regs(_metadata, d, l->regs);
	l->m = malloc(LIVE_LO + MB_PAGE);
	ASSERT_NE(NULL, l->m);
	mb_bar2_rd(_metadata, d, 0, l->m, LIVE_LO);
	mb_bar2_rd(_metadata, d, d->mem - MB_PAGE, l->m + LIVE_LO, MB_PAGE);
}

static void live_compare(struct __test_metadata *_metadata, struct mb_dev *d,
			 const struct live *l, const char *what)
{
	struct live now;
	unsigned int i;

	live_take(_metadata, d, &now);
	EXPECT_EQ(0, memcmp(now.cfg, l->cfg, sizeof(now.cfg)))
		TH_LOG("%s: config space changed", what);
	for (i = 0; i < NREGS; i++)
		EXPECT_EQ(l->regs[i], now.regs[i])
			TH_LOG("%s: %s changed", what, RNAME(i));
	EXPECT_EQ(0, memcmp(now.m, l->m, LIVE_LO + MB_PAGE))
		TH_LOG("%s: device memory changed", what);
	free(now.m);
}

struct bad {
	const char *name;
	uint8_t *b;
	size_t len;
};

#define MAX_BAD		128

static void add_bad(struct __test_metadata *_metadata, struct bad *bad,
		    unsigned int *nb, const char *name, const uint8_t *b,
		    size_t len, size_t copy)
{
	ASSERT_GT(MAX_BAD, *nb);
	bad[*nb].name = name;
	bad[*nb].b = calloc(1, len);
	ASSERT_NE(NULL, bad[*nb].b);
	memcpy(bad[*nb].b, b, copy < len ? copy : len);
	bad[*nb].len = len;
	(*nb)++;
}

/* A copy of @b with @len bytes (truncated or not). */
#define BAD_COPY(name, len) add_bad(_metadata, bad, &nb, name, B, len, len)
/* A copy, then a patch (the caller's statement), then (if @crc) the CRC. */
#define BAD_PATCH(name, crc, stmt) do {					\
	uint8_t *q;							\
	add_bad(_metadata, bad, &nb, name, B, blen, blen);		\
	q = bad[nb - 1].b;						\
	stmt;								\
	if (crc)							\
		fix_crc(q, blen);					\
} while (0)
#define BAD_FLIP(name, pos, bit) BAD_PATCH(name, false, q[pos] ^= 1u << (bit))

/*
 * The errno a refused state gets (docs/migration.md §1.7, §1.8): a device
 * record header of a format version newer than the driver's is
 * EPROTONOSUPPORT (the magic is checked first, then the version); every
 * other fault is EINVAL.
 */
static int refusal(const uint8_t *b, size_t len)
{
	if (len >= 32 && get32(b) == SV_MAGIC &&
	    get32(b + SV_OFF_VERSION) > MBLIT_STATE_FORMAT_VERSION)
		return -EPROTONOSUPPORT;
	return -EINVAL;
}

TEST_F_TIMEOUT(state, rejected_restores, 900)
{
	struct mb_dev *src = open_dev(_metadata, self, variant, 0, "mblit-16m");
	struct mb_dev *dst = open_dev(_metadata, self, variant, 1, "mblit-16m");
	struct mb_dev *small = open_dev(_metadata, self, variant, 2, "mblit-1m");
	const struct vfio_region_info *ssr = &self->sr[0], *dsr = &self->sr[1];
	const struct vfio_region_info *msr = &self->sr[2];
	struct bad bad[MAX_BAD];
	unsigned int nb = 0, i;
	uint8_t *B, *S0, *W, *cur, pat[4 * MB_PAGE], tmp[64];
	size_t blen, s0len, wlen, len;
	struct mblit_desc x[4];
	struct live l0;
	uint64_t n, gen, v, sv[NREGS], dv[NREGS];
	static const size_t cut[] = { 1, 4, 31, 32, 33, 48, 300, 528, 544, 552,
				      560 };
	static char names[ARRAY_SIZE(cut)][40];
	uint8_t *sm, *dm;
	struct mb_dev *d;

	/* Source: a ring with work done, pages, an interrupt pending. */
	d = src;
	mb_ring_setup(_metadata, d, 256);
	x[0] = mb_fill(3 * MB_PAGE + 100, 2 * MB_PAGE, 0x11223344, DD);
	x[1] = mb_copy(d->mem - 1000, G(77), 1000, DD);
	x[2] = mb_fill(G(8192), 999, 0x55667788, 0);
	x[3] = mb_fence(G(64), 0x1111, MBLIT_FLAG_IRQ);
	mb_run(_metadata, d, x, 4);
	mb_wait_int(_metadata, d, MBLIT_INT_FENCE);
	WR64(MBLIT_REG_SCRATCH0, 0x5005);
	ASSERT_EQ(0, mb_runctl_set(d, ssr, STOPPED));
	B = mb_state_read(_metadata, d, ssr, &blen);
	check_blob(_metadata, d, B, blen);
	n = blob_pages(B);
	ASSERT_LE(2, n) TH_LOG("the source state needs two pages");

	/* The 1 MiB type's state. */
	ASSERT_EQ(0, mb_runctl_set(small, msr, STOPPED));
	W = mb_state_read(_metadata, small, msr, &wlen);

	/* The destination: its own, different state. */
	d = dst;
	memset(pat, 0xd5, sizeof(pat));
	mb_bar2_wr(_metadata, d, MB_PAGE, pat, sizeof(pat));
	mb_bar2_wr(_metadata, d, d->mem - MB_PAGE, pat, MB_PAGE);
	mb_ring_setup(_metadata, d, 8);
	x[0] = mb_nop();
	mb_run(_metadata, d, x, 1);
	WR64(MBLIT_REG_SCRATCH1, 0xd57);

	/* While running: state-area writes and reads are EBUSY. */
	EXPECT_EQ(-EBUSY, mb_acc(d, dsr, true, AREA, B, blen));
	EXPECT_EQ(-EBUSY, mb_acc(d, dsr, true, AREA + 100, tmp, 1));
	EXPECT_EQ(-EBUSY, mb_acc(d, dsr, false, AREA, tmp, 8));
	EXPECT_EQ(RUNNING, mb_runctl_get(d, dsr));
	EXPECT_EQ(0xd57, RD64(MBLIT_REG_SCRATCH1));

	/* Bad run-control values, control-page writes, spanning accesses. */
	for (v = 0; v < 256; v++) {
		if (v == RUNNING || v == STOPPED)
			continue;
		if (v > 5 && v != 0x80 && v != 0xff)
			continue;
		EXPECT_EQ(-EINVAL, mb_runctl_set(d, dsr, v)) TH_LOG("value %llu",
								 (unsigned long long)v);
	}
	EXPECT_EQ(RUNNING, mb_runctl_get(d, dsr));
	memset(tmp, 0, sizeof(tmp));
	tmp[0] = STOPPED;
	EXPECT_EQ(-EINVAL, mb_acc(d, dsr, true, 0, tmp, 2));
	EXPECT_EQ(-EINVAL, mb_acc(d, dsr, true, 0, tmp, 8));
	EXPECT_EQ(-EINVAL, mb_acc(d, dsr, false, 0, tmp, 2));
	EXPECT_EQ(-EINVAL, mb_acc(d, dsr, false, 0, tmp, MBLIT_STATE_HEADER_END));
	EXPECT_EQ(-EINVAL, mb_acc(d, dsr, false, 0, tmp, 0));
	EXPECT_EQ(-EINVAL, mb_acc(d, dsr, true, 0, tmp, 0));
	EXPECT_EQ(RUNNING, mb_runctl_get(d, dsr));
	EXPECT_EQ(-EINVAL, mb_acc(d, dsr, true, 1, tmp, 1));
	EXPECT_EQ(-EINVAL, mb_acc(d, dsr, true, MBLIT_STATE_OFF_MAGIC, tmp, 4));
	EXPECT_EQ(-EINVAL, mb_acc(d, dsr, true, MBLIT_STATE_OFF_SIZE, tmp, 8));
	EXPECT_EQ(-EINVAL, mb_acc(d, dsr, true, MBLIT_STATE_OFF_GENERATION, tmp, 8));
	EXPECT_EQ(-EINVAL, mb_acc(d, dsr, true, 0x800, tmp, 16));
	EXPECT_EQ(-EINVAL, mb_acc(d, dsr, true, AREA - 1, tmp, 1));
	EXPECT_EQ(-EINVAL, mb_acc(d, dsr, false, AREA - 8, tmp, 16));
	EXPECT_EQ(-EINVAL, mb_acc(d, dsr, true, AREA - 8, tmp, 16));
	EXPECT_EQ(MBLIT_STATE_MAGIC,
		  mb_state_hdr(_metadata, d, dsr, MBLIT_STATE_OFF_MAGIC, 4));
	EXPECT_EQ(0, mb_state_hdr(_metadata, d, dsr, MBLIT_STATE_OFF_SIZE, 8));

	/* Stop the destination; its snapshot and live state. */
	ASSERT_EQ(0, mb_runctl_set(d, dsr, STOPPED));
	S0 = mb_state_read(_metadata, d, dsr, &s0len);
	check_blob(_metadata, d, S0, s0len);
	live_take(_metadata, d, &l0);
	/* Stopped, the same errnos for the same accesses. */
	EXPECT_EQ(-EINVAL, mb_runctl_set(d, dsr, 0));
	EXPECT_EQ(-EINVAL, mb_runctl_set(d, dsr, 3));
	EXPECT_EQ(-EINVAL, mb_acc(d, dsr, true, MBLIT_STATE_OFF_MAGIC, tmp, 4));
	EXPECT_EQ(-EINVAL, mb_acc(d, dsr, true, AREA - 4, tmp, 8));
	EXPECT_EQ(-EINVAL, mb_acc(d, dsr, false, 0, tmp, 9));
	EXPECT_EQ(-EINVAL, mb_acc(d, dsr, true, dsr->size - 1, tmp, 2));
	EXPECT_EQ(STOPPED, mb_runctl_get(d, dsr));

	/* Truncated (every truncation is invalid). */
	for (i = 0; i < ARRAY_SIZE(cut); i++) {
		snprintf(names[i], sizeof(names[i]), "truncated to %zu", cut[i]);
		BAD_COPY(names[i], cut[i]);
	}
	BAD_COPY("truncated to half", blen / 2);
	BAD_COPY("truncated: one page entry short", blen - SV_ENTRY);
	BAD_COPY("truncated: no CRC", blen - 4);
	BAD_COPY("truncated by one byte", blen - 1);
	/* One flipped bit, CRC not recomputed. */
	BAD_FLIP("bit in magic", 0, 0);
	BAD_FLIP("bit in version", SV_OFF_VERSION + 2, 5);
	BAD_FLIP("bit in type", SV_OFF_TYPE, 4);
	BAD_FLIP("bit in count", SV_OFF_COUNT, 1);
	BAD_FLIP("bit in vram size", SV_OFF_VRAMSZ + 3, 0);
	BAD_FLIP("bit in record length", SV_OFF_LEN + 1, 3);
	BAD_FLIP("bit in section id", SV_CONFIG_SEC, 2);
	BAD_FLIP("bit in section reserved", SV_REGS_SEC + 4, 0);
	BAD_FLIP("bit in section length", SV_ENGINE_SEC + 8, 6);
	BAD_FLIP("bit in config: interrupt line", SV_CONFIG + PCI_INTERRUPT_LINE, 0);
	BAD_FLIP("bit in config: vendor id", SV_CONFIG, 7);
	BAD_FLIP("bit in config: MSI data", SV_CONFIG + 0x4c, 3);
	BAD_FLIP("bit in REGS: SCRATCH0", SV_REG(R_SCRATCH0), 7);
	BAD_FLIP("bit in REGS: RING_HEAD", SV_REG(R_RING_HEAD), 0);
	BAD_FLIP("bit in REGS: CMD_COUNT", SV_REG(R_CMD_COUNT) + 7, 7);
	BAD_FLIP("bit in REGS: FENCE_LAST", SV_REG(R_FENCE_LAST) + 2, 2);
	BAD_FLIP("bit in ENGINE: error counter", SV_ENGINE + 8, 0);
	BAD_FLIP("bit in IRQ", SV_IRQ, 0);
	BAD_FLIP("bit in VRAM page count", SV_VRAM_N, 0);
	BAD_FLIP("bit in a page index", SV_PAGES, 0);
	BAD_FLIP("bit in a page index (high)", SV_PAGES + 7, 7);
	BAD_FLIP("bit in page data", SV_PAGES + 8 + 100, 3);
	BAD_FLIP("bit in the last page's last byte", blen - 5, 0);
	BAD_FLIP("bit in a later page", SV_PAGES + SV_ENTRY + 8 + 4095, 6);
	BAD_FLIP("bit in the CRC (low)", blen - 4, 0);
	BAD_FLIP("bit in the CRC (high)", blen - 1, 7);
	/* Header values, CRC recomputed. */
	BAD_PATCH("magic MBST (the region header's)", true,
		  put32(q, MBLIT_STATE_MAGIC));
	BAD_PATCH("magic MBPG (a pages record)", true, put32(q, PG_MAGIC));
	BAD_PATCH("magic 0", true, put32(q, 0));
	BAD_PATCH("version 0", true, put32(q + SV_OFF_VERSION, 0));
	BAD_PATCH("version 2", true, put32(q + SV_OFF_VERSION, 2));
	BAD_PATCH("version 0xffffffff", true, put32(q + SV_OFF_VERSION, ~0U));
	BAD_PATCH("type 1 in a 16 MiB record", true, put32(q + SV_OFF_TYPE, 1));
	BAD_PATCH("type 256", true, put32(q + SV_OFF_TYPE, 256));
	BAD_PATCH("vram size 1 MiB", true, put64(q + SV_OFF_VRAMSZ, MB_MIB));
	BAD_PATCH("vram size + 4096", true,
		  put64(q + SV_OFF_VRAMSZ, 16 * MB_MIB + MB_PAGE));
	BAD_PATCH("count 4", true, put32(q + SV_OFF_COUNT, 4));
	BAD_PATCH("count 6", true, put32(q + SV_OFF_COUNT, 6));
	BAD_PATCH("record length + 1", true, put64(q + SV_OFF_LEN, blen + 1));
	BAD_PATCH("record length - 1", true, put64(q + SV_OFF_LEN, blen - 1));
	BAD_PATCH("record length 2^62", true, put64(q + SV_OFF_LEN, 1ULL << 62));
	BAD_PATCH("record length 0", true, put64(q + SV_OFF_LEN, 0));
	/* Sections, CRC recomputed. */
	BAD_PATCH("REGS section id 1", true, put32(q + SV_REGS_SEC, 1));
	BAD_PATCH("section id 6", true, put32(q + SV_IRQ_SEC, 6));
	BAD_PATCH("section reserved 1", true, put32(q + SV_VRAM_SEC + 4, 1));
	BAD_PATCH("CONFIG length 257", true, put64(q + SV_CONFIG_SEC + 8, 257));
	BAD_PATCH("REGS length 2^40", true, put64(q + SV_REGS_SEC + 8, 1ULL << 40));
	BAD_PATCH("IRQ length 2^64-1", true, put64(q + SV_IRQ_SEC + 8, ~0ULL));
	BAD_PATCH("VRAM length huge", true,
		  put64(q + SV_VRAM_SEC + 8, 0xffffffffffff0000ULL));
	BAD_PATCH("VRAM length + one entry", true,
		  put64(q + SV_VRAM_SEC + 8, 8 + (n + 1) * SV_ENTRY));
	BAD_PATCH("VRAM page count + 1", true, put64(q + SV_VRAM_N, n + 1));
	BAD_PATCH("VRAM page count 2^63", true, put64(q + SV_VRAM_N, 1ULL << 63));
	/* Page indices, CRC recomputed. */
	BAD_PATCH("last page index = page count (past device memory)", true,
		  put64(q + SV_PAGES + (n - 1) * SV_ENTRY, 16 * MB_MIB / MB_PAGE));
	BAD_PATCH("last page index 2^64-1", true,
		  put64(q + SV_PAGES + (n - 1) * SV_ENTRY, ~0ULL));
	BAD_PATCH("page index at 2^52 (offset wraps)", true,
		  put64(q + SV_PAGES + (n - 1) * SV_ENTRY, 1ULL << 52));
	BAD_PATCH("duplicate page index", true,
		  put64(q + SV_PAGES + SV_ENTRY, get64(q + SV_PAGES)));
	BAD_PATCH("decreasing page indices", true, {
		uint64_t i0 = get64(q + SV_PAGES);
		put64(q + SV_PAGES, get64(q + SV_PAGES + SV_ENTRY));
		put64(q + SV_PAGES + SV_ENTRY, i0);
	});
	/* Register values, CRC recomputed. */
	BAD_PATCH("REGS: ID 0", true, put64(q + SV_REG(R_ID), 0));
	BAD_PATCH("REGS: VERSION 2.0", true, put64(q + SV_REG(R_VERSION), 0x20000));
	BAD_PATCH("REGS: CTRL.RESET", true,
		  put64(q + SV_REG(R_CTRL), MBLIT_CTRL_ENABLE | MBLIT_CTRL_RESET));
	BAD_PATCH("REGS: CTRL bit 5", true,
		  put64(q + SV_REG(R_CTRL), MBLIT_CTRL_ENABLE | 0x20));
	BAD_PATCH("REGS: STATUS bit 2", true,
		  put64(q + SV_REG(R_STATUS), get64(q + SV_REG(R_STATUS)) | 4));
	BAD_PATCH("REGS: RING_BASE unaligned", true,
		  put64(q + SV_REG(R_RING_BASE), MB_IOVA + 8));
	BAD_PATCH("REGS: RING_SIZE bits 63:32", true,
		  put64(q + SV_REG(R_RING_SIZE), (1ULL << 32) | 256));
	BAD_PATCH("REGS: RING_HEAD bits 63:32", true,
		  put64(q + SV_REG(R_RING_HEAD),
			get64(q + SV_REG(R_RING_HEAD)) | (1ULL << 40)));
	BAD_PATCH("REGS: INT_STATUS bit 2", true,
		  put64(q + SV_REG(R_INT_STATUS), 4 | MBLIT_INT_FENCE));
	BAD_PATCH("REGS: INT_MASK bit 31", true,
		  put64(q + SV_REG(R_INT_MASK), 1U << 31));
	BAD_PATCH("REGS: ERR_INDEX bits 63:32", true,
		  put64(q + SV_REG(R_ERR_INDEX), 1ULL << 32));
	/* Engine, interrupts, config, CRC recomputed. */
	BAD_PATCH("ENGINE: ring_valid 2", true, q[SV_ENGINE] = 2);
	BAD_PATCH("ENGINE: ring_valid 0 with ENABLE", true, q[SV_ENGINE] = 0);
	BAD_PATCH("ENGINE: error code 0x0d", true, q[SV_ENGINE + 1] = 0x0d);
	BAD_PATCH("ENGINE: error without STATUS.ERROR", true,
		  q[SV_ENGINE + 1] = MBLIT_ERR_BAD_OPCODE);
	BAD_PATCH("ENGINE: reserved byte", true, q[SV_ENGINE + 2] = 1);
	BAD_PATCH("IRQ: flag 2", true, q[SV_IRQ] = 2);
	BAD_PATCH("IRQ: reserved byte", true, q[SV_IRQ + 7] = 0x80);
	BAD_PATCH("CONFIG: vendor id", true, q[SV_CONFIG] ^= 1);
	BAD_PATCH("CONFIG: subsystem id 1", true,
		  q[SV_CONFIG + PCI_SUBSYSTEM_ID] = 1);
	BAD_PATCH("CONFIG: header type", true,
		  q[SV_CONFIG + PCI_HEADER_TYPE] = 0x80);
	BAD_PATCH("CONFIG: BAR2 type bits", true,
		  q[SV_CONFIG + PCI_BASE_ADDRESS_2] &= ~0x8);
	BAD_PATCH("CONFIG: reserved byte 0x80", true, q[SV_CONFIG + 0x80] = 1);
	/* Whole blobs. */
	add_bad(_metadata, bad, &nb, "a 1 MiB type's state", W, wlen, wlen);
	add_bad(_metadata, bad, &nb, "zeros", B, blen, 0);
	add_bad(_metadata, bad, &nb, "a valid state and one more byte", B,
		blen + 1, blen);
	BAD_PATCH("the region header bytes", false, {
		memset(q, 0, blen);
		MB_ACC_OK(dst, dsr, false, 8, q + 8, MBLIT_STATE_HEADER_END - 8);
	});

	/* Each one: RUNNING fails, the destination stays as it was. */
	for (i = 0; i < nb; i++) {
		const char *what = bad[i].name;
		int failed = _metadata->exit_code;

		d = dst;
		state_write(_metadata, d, dsr, bad[i].b, bad[i].len);
		EXPECT_EQ(refusal(bad[i].b, bad[i].len),
			  mb_runctl_set(d, dsr, RUNNING))
			TH_LOG("%s: RUNNING accepted it", what);
		EXPECT_EQ(STOPPED, mb_runctl_get(d, dsr)) TH_LOG("%s", what);
		if (mb_runctl_get(d, dsr) != STOPPED)
			ASSERT_EQ(0, mb_runctl_set(d, dsr, STOPPED));
		EXPECT_EQ(s0len, mb_state_hdr(_metadata, d, dsr,
					      MBLIT_STATE_OFF_SIZE, 8))
			TH_LOG("%s: state size", what);
		/* Still stopped: BAR writes refused. */
		v = 1;
		EXPECT_EQ(-EBUSY, mb_acc(d, &d->bar0, true,
					 MBLIT_REG_SCRATCH3, &v, 8))
			TH_LOG("%s", what);
		live_compare(_metadata, d, &l0, what);
		cur = mb_state_read(_metadata, d, dsr, &len);
		EXPECT_EQ(s0len, len);
		EXPECT_EQ(0, memcmp(cur, S0, len < s0len ? len : s0len))
			TH_LOG("%s: the snapshot changed", what);
		free(cur);
		/*
		 * The device kept its state: it runs it (a refused state is
		 * not applied later), and a fresh stop snapshots the same.
		 */
		gen = mb_state_hdr(_metadata, d, dsr, MBLIT_STATE_OFF_GENERATION, 8);
		EXPECT_EQ(0, mb_runctl_set(d, dsr, RUNNING))
			TH_LOG("%s: RUNNING with the kept state", what);
		ASSERT_EQ(0, mb_runctl_set(d, dsr, STOPPED));
		EXPECT_NE(gen, mb_state_hdr(_metadata, d, dsr,
					    MBLIT_STATE_OFF_GENERATION, 8));
		cur = mb_state_read(_metadata, d, dsr, &len);
		EXPECT_EQ(s0len, len);
		EXPECT_EQ(0, memcmp(cur, S0, len < s0len ? len : s0len))
			TH_LOG("%s: the fresh snapshot differs", what);
		free(cur);
		if (!failed && _metadata->exit_code)
			TH_LOG("first failure at case %u: %s", i, what);
	}
	TH_LOG("%u invalid states refused", nb);

	/* The other direction: a 16 MiB state into the 1 MiB device. */
	state_write(_metadata, small, msr, B, blen);
	EXPECT_EQ(-EINVAL, mb_runctl_set(small, msr, RUNNING));
	EXPECT_EQ(STOPPED, mb_runctl_get(small, msr));
	/* Past the 1 MiB type's state area: EINVAL. */
	EXPECT_EQ(-EINVAL, mb_acc(small, msr, true, msr->size - 4, tmp, 8));

	/* Afterwards a valid state restores fine. */
	d = dst;
	state_write(_metadata, d, dsr, B, blen);
	ASSERT_EQ(0, mb_runctl_set(d, dsr, RUNNING));
	EXPECT_EQ(RUNNING, mb_runctl_get(d, dsr));
	sm = mb_dup_vram(_metadata, src);
	read_regs(_metadata, src, sv);
	read_regs(_metadata, d, dv);
	for (i = 0; i < NREGS; i++)
		EXPECT_EQ(sv[i], dv[i]) TH_LOG("restored %s", RNAME(i));
	dm = mb_dup_vram(_metadata, d);
	EXPECT_EQ(0, memcmp(sm, dm, d->mem)) TH_LOG("restored device memory");
	free(sm);
	free(dm);
	/* And it runs: a command on the restored ring. */
	memcpy(d->buf, src->buf, MB_BUF_SIZE);
	memcpy(d->mg, src->mg, MB_BUF_SIZE);
	d->ring_size = src->ring_size;
	d->ring_iova = src->ring_iova;
	d->ring_va = d->buf + (src->ring_va - src->buf);
	d->tail = src->tail;
	x[0] = mb_fence(G(72), 0x2222, 0);
	mb_run(_metadata, d, x, 1);
	EXPECT_EQ(0x2222, RD64(MBLIT_REG_FENCE_LAST));
	EXPECT_EQ(5, RD64(MBLIT_REG_CMD_COUNT));
	mb_check_guest(_metadata, d, "after the valid restore");

	for (i = 0; i < nb; i++)
		free(bad[i].b);
	free(B); free(S0); free(W); free(l0.m);
}

/* ---- no_leak ----------------------------------------------------------- */

TEST_F_TIMEOUT(state, no_leak, 600)
{
	struct mb_dev *a = open_dev(_metadata, self, variant, 0, "mblit-16m");
	struct vfio_region_info *sr = &self->sr[0];
	char uuid[MDEV_UUID_LEN + 1];
	uint8_t *p, *b, tmp[16];
	struct mblit_desc x[2];
	size_t len, i;
	uint64_t k;
	struct mb_dev *d = a;

	/* A: device memory full of a pattern, a big snapshot. */
	p = malloc(d->mem);
	ASSERT_NE(NULL, p);
	memset(p, 0xa5, d->mem);
	mb_bar2_wr(_metadata, d, 0, p, 4 * MB_MIB);
	mb_bar2_wr(_metadata, d, d->mem - MB_MIB, p, MB_MIB);
	mb_ring_setup(_metadata, d, 8);
	x[0] = mb_fill(6 * MB_MIB, MB_MIB, 0xa5a5a5a5, DD);
	x[1] = mb_fence(G(0), 0xa5a5, 0);
	mb_run(_metadata, d, x, 2);
	WR64(MBLIT_REG_SCRATCH0, 0xa5a5a5a5a5a5a5a5ULL);
	ASSERT_EQ(0, mb_runctl_set(d, sr, STOPPED));
	b = mb_state_read(_metadata, d, sr, &len);
	EXPECT_EQ(6 * MB_MIB / MB_PAGE, blob_pages(b));
	free(b);

	/* Closed while stopped, reopened: running, no snapshot reachable. */
	vfio_mdev_close(&d->v);
	ASSERT_EQ(0, vfio_mdev_open(&d->v, d->uuid, variant->backend))
		TH_LOG("%s", mdev_lib_error());
	mb_state_region(_metadata, d, sr);
	EXPECT_EQ(RUNNING, mb_runctl_get(d, sr));
	EXPECT_EQ(0, mb_state_hdr(_metadata, d, sr, MBLIT_STATE_OFF_SIZE, 8));
	EXPECT_EQ(-EBUSY, mb_acc(d, sr, false, AREA, tmp, 16));

	/* A device reset while stopped: running, memory zero, no snapshot. */
	ASSERT_EQ(0, mb_runctl_set(d, sr, STOPPED));
	ASSERT_EQ(0, ioctl(d->v.device_fd, VFIO_DEVICE_RESET))
		TH_LOG("VFIO_DEVICE_RESET: %s", strerror(errno));
	EXPECT_EQ(RUNNING, mb_runctl_get(d, sr));
	EXPECT_EQ(0, mb_state_hdr(_metadata, d, sr, MBLIT_STATE_OFF_SIZE, 8));
	EXPECT_EQ(-EBUSY, mb_acc(d, sr, false, AREA, tmp, 16));
	ASSERT_EQ(0, mb_runctl_set(d, sr, STOPPED));
	EXPECT_EQ(SV_LEN(0), mb_state_hdr(_metadata, d, sr, MBLIT_STATE_OFF_SIZE, 8));
	EXPECT_EQ(-EINVAL, mb_acc(d, sr, false, AREA + SV_LEN(0), tmp, 16));
	ASSERT_EQ(0, mb_runctl_set(d, sr, RUNNING));

	/* Fill A again, then remove it while stopped. */
	mb_bar2_wr(_metadata, d, 0, p, d->mem);
	ASSERT_EQ(0, mb_runctl_set(d, sr, STOPPED));
	memcpy(uuid, d->uuid, sizeof(uuid));
	mb_close(_metadata, d);

	/* B, same type (and the same uuid): nothing of A. */
	mb_init(d);
	ASSERT_EQ(0, mdev_create_uuid("mblit-16m", uuid))
		TH_LOG("%s", mdev_lib_error());
	memcpy(d->uuid, uuid, sizeof(uuid));
	d->created = true;
	ASSERT_EQ(0, vfio_mdev_open(&d->v, d->uuid, variant->backend))
		TH_LOG("%s", mdev_lib_error());
	ASSERT_EQ(0, vfio_mdev_region_info(&d->v, VFIO_PCI_BAR2_REGION_INDEX,
					   &d->bar2));
	ASSERT_EQ(0, vfio_mdev_region_info(&d->v, VFIO_PCI_BAR0_REGION_INDEX,
					   &d->bar0));
	ASSERT_EQ(0, vfio_mdev_region_info(&d->v, VFIO_PCI_CONFIG_REGION_INDEX,
					   &d->cfg));
	d->mem = d->bar2.size;
	mb_state_region(_metadata, d, sr);
	EXPECT_EQ(RUNNING, mb_runctl_get(d, sr));
	EXPECT_EQ(0, mb_state_hdr(_metadata, d, sr, MBLIT_STATE_OFF_SIZE, 8));
	EXPECT_EQ(-EBUSY, mb_acc(d, sr, false, AREA, tmp, 16));
	ASSERT_EQ(0, mb_runctl_set(d, sr, STOPPED));
	b = mb_state_read(_metadata, d, sr, &len);
	EXPECT_EQ(SV_LEN(0), len);
	EXPECT_EQ(0, blob_pages(b)) TH_LOG("a fresh mdev's state carries pages");
	check_blob(_metadata, d, b, len);
	for (i = 0; i + 8 <= len; i++)
		if (b[i] == 0xa5 && b[i + 1] == 0xa5 && b[i + 2] == 0xa5 &&
		    b[i + 3] == 0xa5)
			break;
	EXPECT_GT(i + 8, len) TH_LOG("A's pattern at state byte %zu", i);
	EXPECT_EQ(0, mb_rd(_metadata, d, MBLIT_REG_SCRATCH0, 8));
	EXPECT_EQ(0, mb_rd(_metadata, d, MBLIT_REG_CMD_COUNT, 8));
	EXPECT_EQ(-EINVAL, mb_acc(d, sr, false, AREA + len, tmp, 16));
	EXPECT_EQ(-EINVAL, mb_acc(d, sr, false, AREA + 6 * MB_MIB, tmp, 16));
	free(b);
	ASSERT_EQ(0, mb_runctl_set(d, sr, RUNNING));
	mb_bar2_rd(_metadata, d, 0, p, d->mem);
	for (k = 0; k < d->mem && !p[k]; k++)
		;
	EXPECT_EQ(d->mem, k) TH_LOG("device memory byte %#llx is %#x",
				    (unsigned long long)k,
				    k < d->mem ? p[k] : 0);
	free(p);
}

TEST_HARNESS_MAIN
