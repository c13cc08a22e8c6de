// SPDX-License-Identifier: GPL-2.0
/*
 * The mblit device model through its VFIO regions (docs/device.md §3-§6,
 * §11): region info, PCI config space, the BAR0 register map and its access
 * rules, BAR2 device memory, and the two resets.  Every test runs on both
 * VFIO back-ends (type1 container, iommufd cdev).  Region offsets always
 * come from VFIO_DEVICE_GET_REGION_INFO.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "uapi/linux/mblit.h"
#include <linux/pci_regs.h>

#include "kselftest_harness.h"
#include "mblit_cfg.h"
#include "mdev_lib.h"

#define MIB		(1ULL << 20)
#define MAX_DEVS	4
#define CFG_SIZE	MBLIT_CONFIG_SIZE

/*
 * VFIO_DEVICE_GET_INFO's num_regions: the PCI regions only, for now.  When
 * the DEVICE_STATE region lands this becomes MBLIT_STATE_REGION_INDEX + 1
 * (docs/device.md §3 says 10).
 */
#define EXPECTED_NUM_REGIONS	(VFIO_PCI_NUM_REGIONS + 1)	/* + DEVICE_STATE */

struct mdev_dev {
	char uuid[MDEV_UUID_LEN + 1];
	bool created;
	struct vfio_mdev v;
	uint64_t mem;			/* device memory, bytes */
	unsigned int type_id;		/* device memory, MiB */
	struct vfio_region_info cfg, bar0, bar2;
};

FIXTURE(regions) {
	struct mdev_dev devs[MAX_DEVS];
	int n;
	struct mdev_dev *d;		/* the mblit-1m device every test uses */
};

FIXTURE_VARIANT(regions) {
	enum vfio_backend backend;
};

FIXTURE_VARIANT_ADD(regions, type1) {
	.backend = VFIO_BACKEND_TYPE1,
};

FIXTURE_VARIANT_ADD(regions, iommufd) {
	.backend = VFIO_BACKEND_IOMMUFD,
};

static void dev_init(struct mdev_dev *d)
{
	memset(d, 0, sizeof(*d));
	d->v.device_fd = -1;
	d->v.group_fd = -1;
	d->v.container_fd = -1;
	d->v.iommufd = -1;
}

static void dev_put(struct __test_metadata *_metadata, struct mdev_dev *d)
{
	vfio_mdev_close(&d->v);
	if (d->created && mdev_remove(d->uuid))
		TH_LOG("cleanup: %s", mdev_lib_error());
	d->created = false;
}

/* Create an mdev of @type_id MiB, open it, and look up its regions. */
static struct mdev_dev *add_dev(struct __test_metadata *_metadata,
				FIXTURE_DATA(regions) *self,
				enum vfio_backend backend,
				unsigned int type_id)
{
	struct mdev_dev *d;
	char type[32];

	ASSERT_GT(MAX_DEVS, self->n);
	d = &self->devs[self->n++];
	dev_init(d);
	d->type_id = type_id;
	d->mem = type_id * MIB;
	snprintf(type, sizeof(type), "mblit-%um", type_id);
	ASSERT_TRUE(module_loaded("mblit")) TH_LOG("mblit is not loaded");
	ASSERT_EQ(0, mdev_create(type, d->uuid))
		TH_LOG("create %s: %s", type, mdev_lib_error());
	d->created = true;
	ASSERT_EQ(0, vfio_mdev_open(&d->v, d->uuid, backend))
		TH_LOG("%s", mdev_lib_error());
	ASSERT_EQ(0, vfio_mdev_pci_regions(&d->v, &d->cfg, &d->bar0, &d->bar2))
		TH_LOG("%s", mdev_lib_error());
	/* Everything below relies on the sizes; region_info checks flags. */
	ASSERT_EQ(CFG_SIZE, d->cfg.size);
	ASSERT_EQ(MBLIT_BAR0_SIZE, d->bar0.size);
	ASSERT_EQ(d->mem, d->bar2.size);
	return d;
}

FIXTURE_SETUP(regions)
{
	int i;

	self->n = 0;
	for (i = 0; i < MAX_DEVS; i++)
		dev_init(&self->devs[i]);
	self->d = add_dev(_metadata, self, variant->backend, 1);
}

FIXTURE_TEARDOWN(regions)
{
	int i;

	/* Removing an mdev waits until its fds are closed. */
	for (i = self->n - 1; i >= 0; i--)
		dev_put(_metadata, &self->devs[i]);
}

/* ---- access helpers: return count on success, -errno on failure ---- */

static ssize_t acc(struct mdev_dev *d, const struct vfio_region_info *r,
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

static const char *acc_err(ssize_t n)
{
	return n < 0 ? strerror(-n) : "short or over-long transfer";
}

#define ACC_OK(d, r, wr, off, buf, len) do {				\
	ssize_t __n = acc(d, r, wr, off, buf, len);			\
	ASSERT_EQ((ssize_t)(len), __n)					\
		TH_LOG("%s %zu bytes at %s+%#llx: %s",			\
		       (wr) ? "write" : "read", (size_t)(len), #r,	\
		       (unsigned long long)(off), acc_err(__n));	\
} while (0)

static uint64_t cfg_rd(struct __test_metadata *_metadata, struct mdev_dev *d,
		       uint32_t off, int w)
{
	uint64_t v = 0;

	ACC_OK(d, &d->cfg, false, off, &v, w);
	return v;
}

static void cfg_wr(struct __test_metadata *_metadata, struct mdev_dev *d,
		   uint32_t off, int w, uint64_t v)
{
	ACC_OK(d, &d->cfg, true, off, &v, w);
}

static uint64_t reg_rd(struct __test_metadata *_metadata, struct mdev_dev *d,
		       uint32_t off, int w)
{
	uint64_t v = 0;

	ACC_OK(d, &d->bar0, false, off, &v, w);
	return v;
}

static void reg_wr(struct __test_metadata *_metadata, struct mdev_dev *d,
		   uint32_t off, int w, uint64_t v)
{
	ACC_OK(d, &d->bar0, true, off, &v, w);
}

static uint64_t wmask(int w)
{
	return w == 8 ? ~0ULL : (1ULL << (8 * w)) - 1;
}

/* ---- config space model (docs/device.md §4, mblit_cfg.h) ---- */

static void cfg_expect_image(struct __test_metadata *_metadata,
			     struct mdev_dev *d, const uint8_t exp[CFG_SIZE],
			     const char *what)
{
	uint8_t got[CFG_SIZE];
	int i, bad = 0;

	memset(got, 0xa5, sizeof(got));
	ACC_OK(d, &d->cfg, false, 0, got, CFG_SIZE);
	for (i = 0; i < CFG_SIZE; i++) {
		if (got[i] != exp[i] && bad++ < 16)
			TH_LOG("%s: config byte %#04x reads %#04x, expected %#04x",
			       what, i, got[i], exp[i]);
	}
	EXPECT_EQ(0, bad) TH_LOG("%s: %d config bytes differ", what, bad);
}

/* ---- BAR0 register model (docs/device.md §5) ---- */

enum widths { W4, W48, W1248 };

struct reg {
	const char *name;
	uint32_t off, size;
	enum widths widths;
	bool ro;
	uint64_t reset;
};

static const struct reg regs[] = {
	{ "ID",		MBLIT_REG_ID,		4, W4,	  true,	 MBLIT_ID_MAGIC },
	{ "VERSION",	MBLIT_REG_VERSION,	4, W4,	  true,	 MBLIT_DEVICE_VERSION },
	{ "CTRL",	MBLIT_REG_CTRL,		4, W4,	  false, 0 },
	{ "STATUS",	MBLIT_REG_STATUS,	4, W4,	  true,	 0 },
	{ "RING_BASE",	MBLIT_REG_RING_BASE,	8, W48,	  false, 0 },
	{ "RING_SIZE",	MBLIT_REG_RING_SIZE,	4, W4,	  false, 0 },
	{ "RING_HEAD",	MBLIT_REG_RING_HEAD,	4, W4,	  true,	 0 },
	{ "RING_TAIL",	MBLIT_REG_RING_TAIL,	4, W4,	  false, 0 },
	{ "INT_STATUS",	MBLIT_REG_INT_STATUS,	4, W4,	  false, 0 },
	{ "INT_MASK",	MBLIT_REG_INT_MASK,	4, W4,	  false, 0 },
	{ "FENCE_LAST",	MBLIT_REG_FENCE_LAST,	8, W48,	  true,	 0 },
	{ "CMD_COUNT",	MBLIT_REG_CMD_COUNT,	8, W48,	  true,	 0 },
	{ "BYTE_COUNT",	MBLIT_REG_BYTE_COUNT,	8, W48,	  true,	 0 },
	{ "ERR_INDEX",	MBLIT_REG_ERR_INDEX,	4, W4,	  true,	 0 },
	{ "ERR_ADDR",	MBLIT_REG_ERR_ADDR,	8, W48,	  true,	 0 },
	{ "SCRATCH0",	MBLIT_REG_SCRATCH0,	8, W1248, false, 0 },
	{ "SCRATCH1",	MBLIT_REG_SCRATCH1,	8, W1248, false, 0 },
	{ "SCRATCH2",	MBLIT_REG_SCRATCH2,	8, W1248, false, 0 },
	{ "SCRATCH3",	MBLIT_REG_SCRATCH3,	8, W1248, false, 0 },
};

#define NREGS		ARRAY_SIZE(regs)
#define NSCRATCH	4
#define SCRATCH_BYTES	(NSCRATCH * 8)

struct access {
	uint32_t off;
	int w;
};

/* Every (offset, width) the map allows for @r; returns how many. */
static int reg_accesses(const struct reg *r, struct access a[16])
{
	int n = 0, w;
	uint32_t k;

	switch (r->widths) {
	case W4:
		a[n++] = (struct access){ r->off, 4 };
		break;
	case W48:
		a[n++] = (struct access){ r->off, 8 };
		a[n++] = (struct access){ r->off, 4 };
		a[n++] = (struct access){ r->off + 4, 4 };
		break;
	case W1248:
		for (w = 1; w <= 8; w *= 2)
			for (k = 0; k < r->size; k += w)
				a[n++] = (struct access){ r->off + k, w };
		break;
	}
	return n;
}

/*
 * Check every register at every allowed access against @vals (the full
 * value of each register, in regs[] order).
 */
static void regs_expect(struct __test_metadata *_metadata, struct mdev_dev *d,
			const uint64_t vals[NREGS], const char *what)
{
	struct access a[16];
	unsigned int i;
	int j, n;

	for (i = 0; i < NREGS; i++) {
		n = reg_accesses(&regs[i], a);
		for (j = 0; j < n; j++) {
			uint32_t sh = 8 * (a[j].off - regs[i].off);
			uint64_t exp = (vals[i] >> sh) & wmask(a[j].w);
			uint64_t got = reg_rd(_metadata, d, a[j].off, a[j].w);

			EXPECT_EQ(exp, got)
				TH_LOG("%s: %s: %d bytes at %#x read %#llx, expected %#llx",
				       what, regs[i].name, a[j].w, a[j].off,
				       (unsigned long long)got,
				       (unsigned long long)exp);
		}
	}
}

static void reset_vals(uint64_t vals[NREGS])
{
	unsigned int i;

	for (i = 0; i < NREGS; i++)
		vals[i] = regs[i].reset;
}

static unsigned int reg_index(uint32_t off)
{
	unsigned int i;

	for (i = 0; i < NREGS; i++)
		if (regs[i].off == off)
			return i;
	abort();
}

/* Write 8-byte distinct patterns to the scratch registers. */
static void scratch_fill(struct __test_metadata *_metadata, struct mdev_dev *d,
			 uint64_t vals[NREGS], uint64_t seed)
{
	int i;

	for (i = 0; i < NSCRATCH; i++) {
		uint64_t v = 0x0123456789abcdefULL * (seed + i + 1) ^
			     (0x1111111111111111ULL << i);
		uint32_t off = MBLIT_REG_SCRATCH0 + 8 * i;

		reg_wr(_metadata, d, off, 8, v);
		vals[reg_index(off)] = v;
	}
}

/* ---- device memory helpers ---- */

/* A byte pattern with no zero bytes, distinct per seed. */
static uint8_t pat(uint64_t i, unsigned int seed)
{
	uint64_t x = (i + 1) * 0x9e3779b97f4a7c15ULL ^
		     (seed + 1) * 0xbf58476d1ce4e5b9ULL;

	x ^= x >> 29;
	x *= 0x94d049bb133111ebULL;
	x ^= x >> 32;
	return (x & 0xff) | 1;
}

static void fill_pat(uint8_t *buf, uint64_t off, size_t len, unsigned int seed)
{
	size_t j;

	for (j = 0; j < len; j++)
		buf[j] = pat(off + j, seed);
}

/* Index of the first differing byte, or -1. */
static long first_diff(const uint8_t *a, const uint8_t *b, size_t len)
{
	size_t j;

	if (!memcmp(a, b, len))
		return -1;
	for (j = 0; j < len; j++)
		if (a[j] != b[j])
			return j;
	return -1;
}

/*
 * Read all of @d's device memory in chunks of varying odd lengths and
 * compare it with @shadow (NULL: all zeros).
 */
static void mem_expect(struct __test_metadata *_metadata, struct mdev_dev *d,
		       const uint8_t *shadow, const char *what)
{
	static const size_t chunks[] = { 1, 3, 4095, 4097, 65537, 8191, 2,
					 131071, 12289 };
	uint8_t *buf = malloc(131072), *zero = calloc(1, 131072);
	uint64_t off = 0;
	unsigned int c = 0;

	ASSERT_NE(NULL, buf);
	ASSERT_NE(NULL, zero);
	while (off < d->mem) {
		size_t len = chunks[c++ % ARRAY_SIZE(chunks)];
		const uint8_t *exp;
		long bad;

		if (len > d->mem - off)
			len = d->mem - off;
		/* Never in a pattern (odd bytes) nor zero. */
		memset(buf, 0x5a, len);
		ACC_OK(d, &d->bar2, false, off, buf, len);
		exp = shadow ? shadow + off : zero;
		bad = first_diff(buf, exp, len);
		EXPECT_EQ(-1, bad)
			TH_LOG("%s: BAR2 byte %#llx reads %#04x, expected %#04x (chunk of %zu at %#llx)",
			       what, (unsigned long long)(off + bad),
			       bad >= 0 ? buf[bad] : 0, bad >= 0 ? exp[bad] : 0,
			       len, (unsigned long long)off);
		if (bad >= 0)
			break;
		off += len;
	}
	free(buf);
	free(zero);
}

/* ================================ tests ================================ */

TEST_F(regions, region_info)
{
	struct vfio_device_info dinfo;
	struct vfio_region_info ri;
	struct mdev_dev *big;
	uint32_t bad_idx[] = { EXPECTED_NUM_REGIONS, 10, 0x7fffffff, 0xffffffff };
	uint32_t i;
	uint8_t b[4];

	ASSERT_EQ(0, vfio_mdev_device_info(&self->d->v, &dinfo))
		TH_LOG("%s", mdev_lib_error());
	EXPECT_EQ(VFIO_DEVICE_FLAGS_PCI | VFIO_DEVICE_FLAGS_RESET,
		  dinfo.flags & ~(uint32_t)VFIO_DEVICE_FLAGS_CAPS)
		TH_LOG("device flags %#x", dinfo.flags);
	EXPECT_EQ(EXPECTED_NUM_REGIONS, dinfo.num_regions);

	for (i = 0; i < VFIO_PCI_NUM_REGIONS; i++) {
		uint64_t size = 0;
		uint32_t flags = 0;

		switch (i) {
		case VFIO_PCI_BAR0_REGION_INDEX:
			size = MBLIT_BAR0_SIZE;
			break;
		case VFIO_PCI_BAR2_REGION_INDEX:
			size = self->d->mem;
			break;
		case VFIO_PCI_CONFIG_REGION_INDEX:
			size = CFG_SIZE;
			break;
		}
		if (size)
			flags = VFIO_REGION_INFO_FLAG_READ |
				VFIO_REGION_INFO_FLAG_WRITE;
		ASSERT_EQ(0, vfio_mdev_region_info(&self->d->v, i, &ri))
			TH_LOG("%s", mdev_lib_error());
		EXPECT_EQ(i, ri.index);
		EXPECT_EQ(size, ri.size) TH_LOG("region %u size", i);
		/* Exactly: in particular not mmappable (§3). */
		EXPECT_EQ(flags, ri.flags) TH_LOG("region %u flags", i);
		EXPECT_EQ((uint64_t)i << 40, ri.offset)
			TH_LOG("region %u offset %#llx", i,
			       (unsigned long long)ri.offset);
		/* Accesses to a region of size 0 fail with EINVAL. */
		if (!size) {
			EXPECT_EQ(-EINVAL, acc(self->d, &ri, false, 0, b, 4))
				TH_LOG("read of empty region %u", i);
			EXPECT_EQ(-EINVAL, acc(self->d, &ri, false, 0, b, 1))
				TH_LOG("read of empty region %u", i);
			memset(b, 0xff, sizeof(b));
			EXPECT_EQ(-EINVAL, acc(self->d, &ri, true, 0, b, 4))
				TH_LOG("write of empty region %u", i);
		}
	}

	/* An index past num_regions fails with EINVAL. */
	for (i = 0; i < ARRAY_SIZE(bad_idx); i++) {
		memset(&ri, 0, sizeof(ri));
		ri.argsz = sizeof(ri);
		ri.index = bad_idx[i];
		errno = 0;
		EXPECT_EQ(-1, ioctl(self->d->v.device_fd,
				    VFIO_DEVICE_GET_REGION_INFO, &ri))
			TH_LOG("GET_REGION_INFO(%u) succeeded", bad_idx[i]);
		EXPECT_EQ(EINVAL, errno) TH_LOG("index %u: %s", bad_idx[i],
						strerror(errno));
	}

	/* BAR2's size is the type's device memory. */
	big = add_dev(_metadata, self, variant->backend, 16);
	ASSERT_EQ(0, vfio_mdev_region_info(&big->v, VFIO_PCI_BAR2_REGION_INDEX,
					   &ri))
		TH_LOG("%s", mdev_lib_error());
	EXPECT_EQ(16 * MIB, ri.size);
	EXPECT_EQ(VFIO_REGION_INFO_FLAG_READ | VFIO_REGION_INFO_FLAG_WRITE,
		  ri.flags);
}

TEST_F(regions, config_ids)
{
	uint8_t img[CFG_SIZE];
	struct mdev_dev *big;
	int i;

	/* Field by field, at their natural widths... */
	EXPECT_EQ(MBLIT_VENDOR_ID, cfg_rd(_metadata, self->d, PCI_VENDOR_ID, 2));
	EXPECT_EQ(MBLIT_DEVICE_ID, cfg_rd(_metadata, self->d, PCI_DEVICE_ID, 2));
	EXPECT_EQ(MBLIT_VENDOR_ID | (MBLIT_DEVICE_ID << 16),
		  cfg_rd(_metadata, self->d, PCI_VENDOR_ID, 4));
	EXPECT_EQ(MBLIT_REVISION, cfg_rd(_metadata, self->d, PCI_REVISION_ID, 1));
	/* ... and at odd offsets and widths: the class code is 3 bytes at 9. */
	EXPECT_EQ(MBLIT_CLASS_CODE, cfg_rd(_metadata, self->d, PCI_CLASS_PROG, 3));
	EXPECT_EQ(MBLIT_REVISION | (MBLIT_CLASS_CODE << 8),
		  cfg_rd(_metadata, self->d, PCI_CLASS_REVISION, 4));
	EXPECT_EQ(0x00, cfg_rd(_metadata, self->d, PCI_HEADER_TYPE, 1));
	EXPECT_EQ(MBLIT_SUBSYS_VENDOR_ID,
		  cfg_rd(_metadata, self->d, PCI_SUBSYSTEM_VENDOR_ID, 2));
	EXPECT_EQ(1, cfg_rd(_metadata, self->d, PCI_SUBSYSTEM_ID, 2));
	EXPECT_EQ(PCI_STATUS_CAP_LIST, cfg_rd(_metadata, self->d, PCI_STATUS, 2));
	EXPECT_EQ(0x0000, cfg_rd(_metadata, self->d, PCI_COMMAND, 2));
	EXPECT_EQ(1, cfg_rd(_metadata, self->d, PCI_INTERRUPT_PIN, 1));

	/* The whole space at reset, in one read and byte by byte. */
	cfg_reset_image(img, self->d->type_id);
	cfg_expect_image(_metadata, self->d, img, "reset, 256-byte read");
	for (i = 0; i < CFG_SIZE; i++)
		EXPECT_EQ(img[i], cfg_rd(_metadata, self->d, i, 1))
			TH_LOG("byte %#x", i);

	/* The subsystem id is the type id. */
	big = add_dev(_metadata, self, variant->backend, 16);
	EXPECT_EQ(16, cfg_rd(_metadata, big, PCI_SUBSYSTEM_ID, 2));
	cfg_reset_image(img, big->type_id);
	cfg_expect_image(_metadata, big, img, "mblit-16m reset");
}

TEST_F(regions, config_readonly)
{
	static const struct { uint32_t off; int w; const char *name; } ro[] = {
		{ PCI_VENDOR_ID, 2, "vendor id" },
		{ PCI_DEVICE_ID, 2, "device id" },
		{ PCI_VENDOR_ID, 4, "vendor+device id" },
		{ PCI_STATUS, 2, "status" },
		{ PCI_REVISION_ID, 1, "revision" },
		{ PCI_CLASS_PROG, 3, "class code" },
		{ PCI_CLASS_DEVICE, 2, "class code (sub, base)" },
		{ PCI_CLASS_DEVICE + 1, 1, "class code base" },
		{ PCI_LATENCY_TIMER, 1, "latency timer" },
		{ PCI_HEADER_TYPE, 1, "header type" },
		{ PCI_BIST, 1, "BIST" },
		{ PCI_SUBSYSTEM_VENDOR_ID, 4, "subsystem ids" },
		{ PCI_CAPABILITY_LIST, 1, "capabilities pointer" },
		{ PCI_INTERRUPT_PIN, 1, "interrupt pin" },
		{ PCI_MIN_GNT, 2, "min_gnt/max_lat" },
		{ MBLIT_MSI_CAP_OFFSET + PCI_CAP_LIST_ID, 1, "MSI cap id" },
		{ MBLIT_MSI_CAP_OFFSET + PCI_CAP_LIST_NEXT, 1, "MSI next" },
		{ MBLIT_MSI_CAP_OFFSET, 2, "MSI id+next" },
		{ MBLIT_MSI_CAP_OFFSET + PCI_MSI_DATA_64 + 2, 2, "MSI ext data" },
		{ 0x50, 4, "0x50" },
		{ 0xfc, 4, "0xfc" },
	};
	uint8_t img[CFG_SIZE], m[CFG_SIZE], buf[CFG_SIZE], exp[CFG_SIZE];
	static const uint8_t fills[] = { 0xff, 0x00, 0xa5, 0x5a };
	unsigned int i, f;
	int j;

	cfg_reset_image(img, self->d->type_id);
	cfg_write_mask(m, self->d->mem);

	/* Read-only fields: the write succeeds and changes nothing (§4). */
	for (i = 0; i < ARRAY_SIZE(ro); i++) {
		uint64_t before = cfg_rd(_metadata, self->d, ro[i].off, ro[i].w);
		uint64_t vals[] = { wmask(ro[i].w), ~before & wmask(ro[i].w), 0 };

		for (j = 0; j < 3; j++) {
			cfg_wr(_metadata, self->d, ro[i].off, ro[i].w, vals[j]);
			EXPECT_EQ(before, cfg_rd(_metadata, self->d, ro[i].off,
						 ro[i].w))
				TH_LOG("%s changed by writing %#llx", ro[i].name,
				       (unsigned long long)vals[j]);
		}
	}

	/* MSI control: only the enable bit is writable. */
	cfg_wr(_metadata, self->d, MBLIT_MSI_CAP_OFFSET + PCI_MSI_FLAGS, 2,
	       0xffff);
	EXPECT_EQ(PCI_MSI_FLAGS_64BIT | PCI_MSI_FLAGS_ENABLE,
		  cfg_rd(_metadata, self->d,
			 MBLIT_MSI_CAP_OFFSET + PCI_MSI_FLAGS, 2));
	cfg_wr(_metadata, self->d, MBLIT_MSI_CAP_OFFSET + PCI_MSI_FLAGS, 2,
	       0xfffe);
	EXPECT_EQ(PCI_MSI_FLAGS_64BIT,
		  cfg_rd(_metadata, self->d,
			 MBLIT_MSI_CAP_OFFSET + PCI_MSI_FLAGS, 2));

	/*
	 * The whole space in one write: every byte becomes
	 * (reset & ~writable) | (written & writable).
	 */
	for (f = 0; f < ARRAY_SIZE(fills); f++) {
		char what[64];

		memset(buf, fills[f], sizeof(buf));
		ACC_OK(self->d, &self->d->cfg, true, 0, buf, CFG_SIZE);
		for (j = 0; j < CFG_SIZE; j++)
			exp[j] = (img[j] & ~m[j]) | (fills[f] & m[j]);
		snprintf(what, sizeof(what), "after writing %#04x everywhere",
			 fills[f]);
		cfg_expect_image(_metadata, self->d, exp, what);
	}
	/* Writing the reset image back restores it. */
	ACC_OK(self->d, &self->d->cfg, true, 0, img, CFG_SIZE);
	cfg_expect_image(_metadata, self->d, img, "after restoring");
}

TEST_F(regions, config_bounds)
{
	uint8_t buf[2 * CFG_SIZE];

	memset(buf, 0, sizeof(buf));
	ACC_OK(self->d, &self->d->cfg, false, 0, buf, CFG_SIZE);
	ACC_OK(self->d, &self->d->cfg, false, CFG_SIZE - 1, buf, 1);
	EXPECT_EQ(-EINVAL, acc(self->d, &self->d->cfg, false, 0, buf, 0));
	EXPECT_EQ(-EINVAL, acc(self->d, &self->d->cfg, true, 0, buf, 0));
	EXPECT_EQ(-EINVAL, acc(self->d, &self->d->cfg, false, 0, buf, CFG_SIZE + 1));
	EXPECT_EQ(-EINVAL, acc(self->d, &self->d->cfg, false, CFG_SIZE, buf, 1));
	EXPECT_EQ(-EINVAL, acc(self->d, &self->d->cfg, false, CFG_SIZE - 1, buf, 2));
	EXPECT_EQ(-EINVAL, acc(self->d, &self->d->cfg, false, 0xfffffff000ULL, buf, 4));

	/* A write straddling the end has no effect, not even on its start. */
	memset(buf, 0xc3, sizeof(buf));
	EXPECT_EQ(-EINVAL, acc(self->d, &self->d->cfg, true, PCI_INTERRUPT_LINE,
			       buf, CFG_SIZE - PCI_INTERRUPT_LINE + 1));
	EXPECT_EQ(0, cfg_rd(_metadata, self->d, PCI_INTERRUPT_LINE, 1));
	EXPECT_EQ(-EINVAL, acc(self->d, &self->d->cfg, true, PCI_COMMAND, buf,
			       2 * CFG_SIZE - PCI_COMMAND));
	EXPECT_EQ(0, cfg_rd(_metadata, self->d, PCI_COMMAND, 2));
	/* The same write, ending at the end, works. */
	ACC_OK(self->d, &self->d->cfg, true, PCI_INTERRUPT_LINE, buf,
	       CFG_SIZE - PCI_INTERRUPT_LINE);
	EXPECT_EQ(0xc3, cfg_rd(_metadata, self->d, PCI_INTERRUPT_LINE, 1));
}

/*
 * Regression: a config-space write outside the 256 bytes whose buffer
 * faults failed with EFAULT, not EINVAL: the range was checked after the
 * bytes were copied in.  docs/device.md §3: EINVAL, then EFAULT, then
 * EBUSY, for every region.
 */
TEST_F(regions, bad_access_with_faulting_buffer_is_einval_first)
{
	uint8_t *bad = mmap(NULL, 4096, PROT_NONE,
			    MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	const struct {
		const struct vfio_region_info *r;
		const char *name;
		uint64_t off;
		size_t len;
		int want;
	} c[] = {
		{ &self->d->cfg, "config", CFG_SIZE - 2, 4, -EINVAL },
		{ &self->d->cfg, "config", CFG_SIZE, 1, -EINVAL },
		{ &self->d->cfg, "config", 0, CFG_SIZE + 1, -EINVAL },
		{ &self->d->cfg, "config", PCI_INTERRUPT_LINE, 1, -EFAULT },
		{ &self->d->bar0, "BAR0", MBLIT_REG_SCRATCH0 + 1, 2, -EINVAL },
		{ &self->d->bar0, "BAR0", MBLIT_BAR0_SIZE, 4, -EINVAL },
		{ &self->d->bar0, "BAR0", MBLIT_REG_SCRATCH0, 8, -EFAULT },
		{ &self->d->bar2, "BAR2", self->d->bar2.size - 2, 4, -EINVAL },
		{ &self->d->bar2, "BAR2", 0, 4, -EFAULT },
	};
	unsigned int i;

	ASSERT_NE(MAP_FAILED, bad);
	for (i = 0; i < ARRAY_SIZE(c); i++) {
		EXPECT_EQ(c[i].want, acc(self->d, c[i].r, true, c[i].off, bad,
					 c[i].len))
			TH_LOG("%s write of %zu bytes at %#llx from a faulting buffer",
			       c[i].name, c[i].len,
			       (unsigned long long)c[i].off);
		EXPECT_EQ(c[i].want, acc(self->d, c[i].r, false, c[i].off, bad,
					 c[i].len))
			TH_LOG("%s read of %zu bytes at %#llx into a faulting buffer",
			       c[i].name, c[i].len,
			       (unsigned long long)c[i].off);
	}
	/* Nothing was written. */
	EXPECT_EQ(0, cfg_rd(_metadata, self->d, PCI_INTERRUPT_LINE, 1));
	munmap(bad, 4096);
}

TEST_F(regions, config_bar_sizing)
{
	struct mdev_dev *devs[2];
	int i;

	devs[0] = self->d;
	devs[1] = add_dev(_metadata, self, variant->backend, 16);
	for (i = 0; i < 2; i++) {
		struct mdev_dev *d = devs[i];
		uint32_t lo_mask = ~(uint32_t)(d->mem - 1);
		uint32_t flags2 = PCI_BASE_ADDRESS_MEM_TYPE_64 |
				  PCI_BASE_ADDRESS_MEM_PREFETCH;
		uint32_t unimpl[] = { PCI_BASE_ADDRESS_1, PCI_BASE_ADDRESS_4,
				      PCI_BASE_ADDRESS_5, PCI_ROM_ADDRESS };
		unsigned int k;

		TH_LOG("mblit-%um", d->type_id);
		/* BAR0: 4 KiB, 32-bit memory, not prefetchable. */
		EXPECT_EQ(0, cfg_rd(_metadata, d, PCI_BASE_ADDRESS_0, 4));
		cfg_wr(_metadata, d, PCI_BASE_ADDRESS_0, 4, 0xffffffff);
		EXPECT_EQ(0xfffff000, cfg_rd(_metadata, d, PCI_BASE_ADDRESS_0, 4));
		cfg_wr(_metadata, d, PCI_BASE_ADDRESS_0, 4, 0xfebc1234);
		EXPECT_EQ(0xfebc1000, cfg_rd(_metadata, d, PCI_BASE_ADDRESS_0, 4));
		/* The low byte is all read-only. */
		cfg_wr(_metadata, d, PCI_BASE_ADDRESS_0, 1, 0xff);
		EXPECT_EQ(0xfebc1000, cfg_rd(_metadata, d, PCI_BASE_ADDRESS_0, 4));
		cfg_wr(_metadata, d, PCI_BASE_ADDRESS_0, 4, 0);
		EXPECT_EQ(0, cfg_rd(_metadata, d, PCI_BASE_ADDRESS_0, 4));

		/* BAR2: 64-bit prefetchable, sized by the type. */
		EXPECT_EQ(flags2, cfg_rd(_metadata, d, PCI_BASE_ADDRESS_2, 4));
		EXPECT_EQ(0, cfg_rd(_metadata, d, PCI_BASE_ADDRESS_3, 4));
		cfg_wr(_metadata, d, PCI_BASE_ADDRESS_2, 4, 0xffffffff);
		cfg_wr(_metadata, d, PCI_BASE_ADDRESS_3, 4, 0xffffffff);
		EXPECT_EQ(lo_mask | flags2,
			  cfg_rd(_metadata, d, PCI_BASE_ADDRESS_2, 4))
			TH_LOG("BAR2 low sizing, %llu MiB",
			       (unsigned long long)(d->mem / MIB));
		EXPECT_EQ(0xffffffff, cfg_rd(_metadata, d, PCI_BASE_ADDRESS_3, 4));
		EXPECT_EQ(((uint64_t)0xffffffff << 32) | lo_mask | flags2,
			  cfg_rd(_metadata, d, PCI_BASE_ADDRESS_2, 8));
		/* Program an address (one 8-byte write), then restore. */
		cfg_wr(_metadata, d, PCI_BASE_ADDRESS_2, 8,
		       0x00000012f0000000ULL | (d->mem / 2) | 0xf);
		EXPECT_EQ(0xf0000000 | flags2,
			  cfg_rd(_metadata, d, PCI_BASE_ADDRESS_2, 4));
		EXPECT_EQ(0x12, cfg_rd(_metadata, d, PCI_BASE_ADDRESS_3, 4));
		cfg_wr(_metadata, d, PCI_BASE_ADDRESS_2, 4, flags2);
		cfg_wr(_metadata, d, PCI_BASE_ADDRESS_3, 4, 0);
		EXPECT_EQ(flags2, cfg_rd(_metadata, d, PCI_BASE_ADDRESS_2, 4));
		EXPECT_EQ(0, cfg_rd(_metadata, d, PCI_BASE_ADDRESS_3, 4));

		/* Unimplemented BARs and the ROM read 0 whatever is written. */
		for (k = 0; k < ARRAY_SIZE(unimpl); k++) {
			cfg_wr(_metadata, d, unimpl[k], 4, 0xffffffff);
			EXPECT_EQ(0, cfg_rd(_metadata, d, unimpl[k], 4))
				TH_LOG("BAR at %#x", unimpl[k]);
			cfg_wr(_metadata, d, unimpl[k], 4, 0xfe000001);
			EXPECT_EQ(0, cfg_rd(_metadata, d, unimpl[k], 4))
				TH_LOG("BAR at %#x", unimpl[k]);
		}
	}
}

TEST_F(regions, config_command)
{
	static const struct { uint16_t w, r; } cases[] = {
		{ 0xffff, 0x0406 },
		{ 0x0000, 0x0000 },
		{ PCI_COMMAND_MEMORY, PCI_COMMAND_MEMORY },
		{ PCI_COMMAND_MASTER, PCI_COMMAND_MASTER },
		{ PCI_COMMAND_INTX_DISABLE, PCI_COMMAND_INTX_DISABLE },
		{ (uint16_t)~0x0406, 0x0000 },
		{ PCI_COMMAND_IO | PCI_COMMAND_SPECIAL | PCI_COMMAND_INVALIDATE |
		  PCI_COMMAND_VGA_PALETTE | PCI_COMMAND_PARITY |
		  PCI_COMMAND_SERR | PCI_COMMAND_FAST_BACK, 0x0000 },
		{ 0x0406, 0x0406 },
	};
	unsigned int i;

	EXPECT_EQ(0, cfg_rd(_metadata, self->d, PCI_COMMAND, 2));
	for (i = 0; i < ARRAY_SIZE(cases); i++) {
		cfg_wr(_metadata, self->d, PCI_COMMAND, 2, cases[i].w);
		EXPECT_EQ(cases[i].r, cfg_rd(_metadata, self->d, PCI_COMMAND, 2))
			TH_LOG("wrote %#06x", cases[i].w);
		/* Status is read-only and unaffected. */
		EXPECT_EQ(PCI_STATUS_CAP_LIST,
			  cfg_rd(_metadata, self->d, PCI_STATUS, 2));
	}
	/* Byte writes act on their byte only. */
	cfg_wr(_metadata, self->d, PCI_COMMAND, 2, 0);
	cfg_wr(_metadata, self->d, PCI_COMMAND + 1, 1, 0xff);
	EXPECT_EQ(PCI_COMMAND_INTX_DISABLE,
		  cfg_rd(_metadata, self->d, PCI_COMMAND, 2));
	cfg_wr(_metadata, self->d, PCI_COMMAND, 1, 0xff);
	EXPECT_EQ(0x0406, cfg_rd(_metadata, self->d, PCI_COMMAND, 2));
	/* A 4-byte write at 4 writes command and leaves status alone. */
	cfg_wr(_metadata, self->d, PCI_COMMAND, 4, 0xffff0000);
	EXPECT_EQ(PCI_STATUS_CAP_LIST << 16,
		  cfg_rd(_metadata, self->d, PCI_COMMAND, 4));

	/* Memory space enable has no effect on region access (§4). */
	EXPECT_EQ(MBLIT_ID_MAGIC, reg_rd(_metadata, self->d, MBLIT_REG_ID, 4));
	reg_wr(_metadata, self->d, MBLIT_REG_SCRATCH0, 8, 0x1122334455667788ULL);
	EXPECT_EQ(0x1122334455667788ULL,
		  reg_rd(_metadata, self->d, MBLIT_REG_SCRATCH0, 8));
}

TEST_F(regions, config_msi_walk)
{
	uint32_t pos, msi = 0;
	int n = 0, found = 0;
	uint16_t ctl;

	ASSERT_TRUE(cfg_rd(_metadata, self->d, PCI_STATUS, 2) &
		    PCI_STATUS_CAP_LIST);
	pos = cfg_rd(_metadata, self->d, PCI_CAPABILITY_LIST, 1);
	EXPECT_EQ(MBLIT_MSI_CAP_OFFSET, pos);
	while (pos) {
		uint32_t id;

		ASSERT_GT(16, n++) TH_LOG("capability list loops");
		ASSERT_LE(0x40, pos) TH_LOG("capability in the header: %#x", pos);
		ASSERT_GT(CFG_SIZE - 1, pos);
		EXPECT_EQ(0, pos & 3) TH_LOG("unaligned capability at %#x", pos);
		id = cfg_rd(_metadata, self->d, pos + PCI_CAP_LIST_ID, 1);
		if (id == PCI_CAP_ID_MSI) {
			found++;
			msi = pos;
		}
		pos = cfg_rd(_metadata, self->d, pos + PCI_CAP_LIST_NEXT, 1);
	}
	EXPECT_EQ(1, n) TH_LOG("exactly one capability");
	ASSERT_EQ(1, found) TH_LOG("no MSI capability");
	EXPECT_EQ(MBLIT_MSI_CAP_OFFSET, msi);
	EXPECT_EQ(0, cfg_rd(_metadata, self->d, msi + PCI_CAP_LIST_NEXT, 1));

	ctl = cfg_rd(_metadata, self->d, msi + PCI_MSI_FLAGS, 2);
	EXPECT_EQ(0x0080, ctl);
	EXPECT_EQ(0, ctl & PCI_MSI_FLAGS_QMASK) TH_LOG("1 vector");
	EXPECT_EQ(0, ctl & PCI_MSI_FLAGS_QSIZE);
	EXPECT_TRUE(ctl & PCI_MSI_FLAGS_64BIT);
	EXPECT_FALSE(ctl & PCI_MSI_FLAGS_MASKBIT);
	EXPECT_FALSE(ctl & PCI_MSI_FLAGS_ENABLE);

	/* Trying to enable more vectors changes nothing but the enable bit. */
	cfg_wr(_metadata, self->d, msi + PCI_MSI_FLAGS, 2,
	       PCI_MSI_FLAGS_QSIZE | PCI_MSI_FLAGS_QMASK | PCI_MSI_FLAGS_ENABLE);
	EXPECT_EQ(0x0081, cfg_rd(_metadata, self->d, msi + PCI_MSI_FLAGS, 2));

	/* Address (dword aligned), high address and data are stored. */
	cfg_wr(_metadata, self->d, msi + PCI_MSI_ADDRESS_LO, 4, 0xfee01003);
	cfg_wr(_metadata, self->d, msi + PCI_MSI_ADDRESS_HI, 4, 0x12345678);
	cfg_wr(_metadata, self->d, msi + PCI_MSI_DATA_64, 2, 0xbeef);
	cfg_wr(_metadata, self->d, msi + PCI_MSI_DATA_64 + 2, 2, 0xffff);
	EXPECT_EQ(0xfee01000, cfg_rd(_metadata, self->d, msi + PCI_MSI_ADDRESS_LO, 4));
	EXPECT_EQ(0x12345678, cfg_rd(_metadata, self->d, msi + PCI_MSI_ADDRESS_HI, 4));
	EXPECT_EQ(0xbeef, cfg_rd(_metadata, self->d, msi + PCI_MSI_DATA_64, 2));
	EXPECT_EQ(0, cfg_rd(_metadata, self->d, msi + PCI_MSI_DATA_64 + 2, 2));
	/* The whole capability in one read. */
	EXPECT_EQ(0x12345678fee01000ULL,
		  cfg_rd(_metadata, self->d, msi + PCI_MSI_ADDRESS_LO, 8));
	EXPECT_EQ(0x00810005, cfg_rd(_metadata, self->d, msi, 4));
}

TEST_F(regions, regs_reset_values)
{
	uint64_t vals[NREGS], v;
	char magic[5] = { 0 };
	unsigned int i;

	reset_vals(vals);
	regs_expect(_metadata, self->d, vals, "reset");
	ACC_OK(self->d, &self->d->bar0, false, MBLIT_REG_ID, magic, 4);
	EXPECT_STREQ("MBLT", magic);

	/* Read-only registers accept writes and ignore them. */
	for (i = 0; i < NREGS; i++) {
		struct access a[16];
		int j, n;

		if (!regs[i].ro)
			continue;
		n = reg_accesses(&regs[i], a);
		for (j = 0; j < n; j++) {
			v = 0xdeadbeefcafef00dULL & wmask(a[j].w);
			reg_wr(_metadata, self->d, a[j].off, a[j].w, v);
			reg_wr(_metadata, self->d, a[j].off, a[j].w, ~0ULL);
		}
	}
	regs_expect(_metadata, self->d, vals, "after writes to read-only registers");

	/* RW registers that do not start the engine: reserved bits read 0. */
	reg_wr(_metadata, self->d, MBLIT_REG_RING_BASE, 8, ~0ULL);
	vals[reg_index(MBLIT_REG_RING_BASE)] = ~0ULL & ~(uint64_t)(MBLIT_RING_ALIGN - 1);
	reg_wr(_metadata, self->d, MBLIT_REG_RING_SIZE, 4, 3);	/* any value */
	vals[reg_index(MBLIT_REG_RING_SIZE)] = 3;
	reg_wr(_metadata, self->d, MBLIT_REG_RING_TAIL, 4, 7);	/* ENABLE is 0 */
	vals[reg_index(MBLIT_REG_RING_TAIL)] = 7;
	reg_wr(_metadata, self->d, MBLIT_REG_INT_MASK, 4, ~0ULL);
	vals[reg_index(MBLIT_REG_INT_MASK)] = MBLIT_INT_ALL;
	reg_wr(_metadata, self->d, MBLIT_REG_INT_STATUS, 4, ~0ULL);	/* W1C */
	reg_wr(_metadata, self->d, MBLIT_REG_CTRL, 4, ~0ULL &
	       ~(uint64_t)(MBLIT_CTRL_ENABLE | MBLIT_CTRL_RESET));
	regs_expect(_metadata, self->d, vals, "after RW writes");
	/* RING_BASE by halves. */
	reg_wr(_metadata, self->d, MBLIT_REG_RING_BASE, 4, 0x12345678);
	reg_wr(_metadata, self->d, MBLIT_REG_RING_BASE + 4, 4, 0x9abcdef0);
	EXPECT_EQ(0x9abcdef012345660ULL,
		  reg_rd(_metadata, self->d, MBLIT_REG_RING_BASE, 8));
}

TEST_F(regions, regs_scratch_widths)
{
	uint64_t vals[NREGS];
	uint8_t sh[SCRATCH_BYTES];
	unsigned int seq = 0;
	int i, w, k, m;

	reset_vals(vals);
	scratch_fill(_metadata, self->d, vals, 1);
	for (i = 0; i < NSCRATCH; i++)
		memcpy(sh + 8 * i, &vals[reg_index(MBLIT_REG_SCRATCH0 + 8 * i)], 8);

	for (i = 0; i < NSCRATCH; i++) {
		for (w = 1; w <= 8; w *= 2) {
			for (k = 0; k < 8; k += w) {
				uint32_t off = MBLIT_REG_SCRATCH0 + 8 * i + k;
				uint64_t v = 0;

				/* Distinct, no zero bytes, differs from the old value. */
				for (m = 0; m < w; m++)
					v |= (uint64_t)pat(seq * 8 + m, 7) << (8 * m);
				seq++;
				for (m = 0; m < w; m++)
					if ((uint8_t)(v >> (8 * m)) == sh[8 * i + k + m])
						v ^= 0x80ULL << (8 * m);
				reg_wr(_metadata, self->d, off, w, v);
				memcpy(sh + 8 * i + k, &v, w);
				EXPECT_EQ(v, reg_rd(_metadata, self->d, off, w))
					TH_LOG("%d bytes at %#x", w, off);
				/* All four scratch registers, whole. */
				for (m = 0; m < NSCRATCH; m++) {
					uint64_t exp;

					memcpy(&exp, sh + 8 * m, 8);
					EXPECT_EQ(exp, reg_rd(_metadata, self->d,
						MBLIT_REG_SCRATCH0 + 8 * m, 8))
						TH_LOG("SCRATCH%d after %d bytes at %#x",
						       m, w, off);
				}
			}
		}
	}
	/* Everything, at every allowed width: neighbours undisturbed. */
	for (i = 0; i < NSCRATCH; i++)
		memcpy(&vals[reg_index(MBLIT_REG_SCRATCH0 + 8 * i)], sh + 8 * i, 8);
	regs_expect(_metadata, self->d, vals, "after scratch writes");
}

TEST_F(regions, regs_bad_access)
{
	static const struct { uint64_t off; size_t len; const char *why; } bad[] = {
		{ 0x061, 4, "unaligned 4 in SCRATCH0" },
		{ 0x063, 2, "unaligned 2 in SCRATCH0" },
		{ 0x062, 4, "unaligned 4 in SCRATCH0" },
		{ 0x064, 8, "unaligned 8 across SCRATCH0/1" },
		{ 0x001, 4, "unaligned 4 at ID" },
		{ 0x014, 8, "unaligned 8 in RING_BASE" },
		{ 0x000, 8, "straddles ID/VERSION" },
		{ 0x008, 8, "straddles CTRL/STATUS" },
		{ 0x018, 8, "straddles RING_SIZE/RING_HEAD" },
		{ 0x048, 8, "straddles ERR_INDEX/hole" },
		{ 0x000, 2, "2 bytes at ID (4 only)" },
		{ 0x002, 2, "2 bytes at ID+2" },
		{ 0x000, 1, "1 byte at ID" },
		{ 0x003, 1, "1 byte at ID+3" },
		{ 0x008, 2, "2 bytes at CTRL" },
		{ 0x008, 1, "1 byte at CTRL" },
		{ 0x020, 2, "2 bytes at RING_TAIL" },
		{ 0x010, 2, "2 bytes at RING_BASE (4/8)" },
		{ 0x016, 2, "2 bytes at RING_BASE+6" },
		{ 0x030, 1, "1 byte at FENCE_LAST" },
		{ 0x02c, 4, "hole 0x2c" },
		{ 0x02c, 1, "hole 0x2c, 1 byte" },
		{ 0x04c, 4, "hole 0x4c" },
		{ 0x058, 8, "hole 0x58" },
		{ 0x05c, 4, "hole 0x5c" },
		{ 0x080, 8, "hole 0x80" },
		{ 0x800, 4, "hole 0x800" },
		{ 0xff8, 8, "hole 0xff8" },
		{ 0xfff, 1, "hole 0xfff" },
		{ 0x1000, 1, "past 4 KiB" },
		{ 0x1000, 4, "past 4 KiB" },
		{ 0x1008, 8, "past 4 KiB" },
		{ 0xffc, 8, "across the 4 KiB end" },
		{ 0xfffffff000ULL, 4, "far past the end" },
		{ 0x060, 0, "zero length" },
		{ 0x000, 0, "zero length at 0" },
		{ 0x060, 3, "width 3" },
		{ 0x060, 16, "width 16 (SCRATCH0+1)" },
		{ 0x060, 32, "width 32 (all scratch)" },
		{ 0x000, MBLIT_BAR0_SIZE, "the whole BAR" },
		{ 0x000, MBLIT_BAR0_SIZE + 1, "more than the BAR" },
		{ 0x060, 1 << 20, "1 MiB" },
		{ 0x000, 64 << 20, "64 MiB" },
	};
	const size_t bufsz = 64 << 20;
	uint64_t vals[NREGS];
	unsigned int i;
	uint8_t *buf;
	int wr;

	/* Never touched unless the driver ignores the bounds. */
	buf = mmap(NULL, bufsz, PROT_READ | PROT_WRITE,
		   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	ASSERT_NE(MAP_FAILED, buf);
	memset(buf, 0xff, 8192);

	reset_vals(vals);
	scratch_fill(_metadata, self->d, vals, 3);
	for (wr = 0; wr < 2; wr++) {
		for (i = 0; i < ARRAY_SIZE(bad); i++) {
			ssize_t n = acc(self->d, &self->d->bar0, wr, bad[i].off,
					buf, bad[i].len);

			EXPECT_EQ(-EINVAL, n)
				TH_LOG("%s %zu bytes at %#llx (%s): %s",
				       wr ? "write" : "read", bad[i].len,
				       (unsigned long long)bad[i].off,
				       bad[i].why, n < 0 ? strerror(-n) :
				       "succeeded");
		}
		/* No effect: every register still holds what it held. */
		regs_expect(_metadata, self->d, vals,
			    wr ? "after bad writes" : "after bad reads");
	}
	munmap(buf, bufsz);

	/* The device still works. */
	scratch_fill(_metadata, self->d, vals, 4);
	regs_expect(_metadata, self->d, vals, "scratch round trip afterwards");
}

TEST_F_TIMEOUT(regions, bar2_pattern, 120)
{
	static const struct { uint64_t off; size_t len; } rg[] = {
		{ 0, 1 },
		{ 1, 3 },
		{ 7, 4095 },			/* crosses 4096 */
		{ 3 * 4096 - 1, 4097 },		/* crosses 12288 and 16384-1 */
		{ 0x10000 - 2, 4 },
		{ 0x20001, 4097 * 3 },
		{ 512 * 1024 + 5, 65537 },
		{ MIB - 4097 - 1, 4096 },
		{ MIB - 1, 1 },			/* the last byte */
	};
	struct mdev_dev *d = self->d, *d2, *d3;
	uint8_t *shadow, *buf;
	unsigned int i;

	ASSERT_EQ(MIB, d->mem);
	shadow = calloc(1, d->mem);
	buf = malloc(d->mem);
	ASSERT_NE(NULL, shadow);
	ASSERT_NE(NULL, buf);

	/* A new device's memory is all zeros. */
	mem_expect(_metadata, d, NULL, "fresh device");

	/* Odd offsets and lengths; each range read back exactly. */
	for (i = 0; i < ARRAY_SIZE(rg); i++) {
		long bad;

		fill_pat(shadow + rg[i].off, rg[i].off, rg[i].len, i);
		ACC_OK(d, &d->bar2, true, rg[i].off, shadow + rg[i].off,
		       rg[i].len);
		memset(buf, 0, rg[i].len);
		ACC_OK(d, &d->bar2, false, rg[i].off, buf, rg[i].len);
		bad = first_diff(buf, shadow + rg[i].off, rg[i].len);
		EXPECT_EQ(-1, bad) TH_LOG("range %u (%zu at %#llx): byte +%ld",
					  i, rg[i].len,
					  (unsigned long long)rg[i].off, bad);
	}
	/* Unwritten bytes still read zero, written ones their pattern. */
	mem_expect(_metadata, d, shadow, "after odd writes");

	/* The whole memory in one write, read back in odd chunks. */
	fill_pat(shadow, 0, d->mem, 99);
	ACC_OK(d, &d->bar2, true, 0, shadow, d->mem);
	mem_expect(_metadata, d, shadow, "after a full write");
	memset(buf, 0, d->mem);
	ACC_OK(d, &d->bar2, false, 0, buf, d->mem);
	EXPECT_EQ(-1, first_diff(buf, shadow, d->mem));

	/* Another mdev never shows this one's bytes: created alongside... */
	d2 = add_dev(_metadata, self, variant->backend, 1);
	mem_expect(_metadata, d2, NULL, "second mdev while the first exists");
	/* ... or after the first is gone (its memory freed). */
	dev_put(_metadata, d);
	d3 = add_dev(_metadata, self, variant->backend, 1);
	mem_expect(_metadata, d3, NULL, "new mdev after the first was removed");
	/* The second still has only what it was given. */
	mem_expect(_metadata, d2, NULL, "second mdev, later");
	free(shadow);
	free(buf);
}

TEST_F(regions, bar2_bounds)
{
	struct mdev_dev *d = self->d, *big;
	const uint64_t S = d->mem;
	const size_t tail = 8192, bufsz = 64 << 20;
	static const struct { int64_t off_from_end; size_t len; } bad[] = {
		{ 0, 1 },		/* at the end */
		{ -1, 2 },		/* straddles the end */
		{ -4095, 4096 },
		{ -8192, 8193 },
		{ 4096, 4 },
		{ 0, 0 },
		{ -1, 0 },
	};
	uint8_t exp[8192], got[8192], *buf;
	unsigned int i;
	int wr;

	buf = mmap(NULL, bufsz, PROT_READ | PROT_WRITE,
		   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	ASSERT_NE(MAP_FAILED, buf);
	memset(buf, 0xee, 16384);

	fill_pat(exp, S - tail, tail, 5);
	ACC_OK(d, &d->bar2, true, S - tail, exp, tail);
	ACC_OK(d, &d->bar2, false, S - 1, got, 1);
	EXPECT_EQ(exp[tail - 1], got[0]);

	for (wr = 0; wr < 2; wr++) {
		for (i = 0; i < ARRAY_SIZE(bad); i++) {
			uint64_t off = S + bad[i].off_from_end;
			ssize_t n = acc(d, &d->bar2, wr, off, buf, bad[i].len);

			EXPECT_EQ(-EINVAL, n)
				TH_LOG("%s %zu bytes at %#llx: %s",
				       wr ? "write" : "read", bad[i].len,
				       (unsigned long long)off, acc_err(n));
		}
		EXPECT_EQ(-EINVAL, acc(d, &d->bar2, wr, 0, buf, S + 1));
		EXPECT_EQ(-EINVAL, acc(d, &d->bar2, wr, 0, buf, bufsz));
		EXPECT_EQ(-EINVAL, acc(d, &d->bar2, wr, 0xfffffff000ULL, buf, 1));
		EXPECT_EQ(-EINVAL, acc(d, &d->bar2, wr, 0xffffffffffULL, buf, 2));
	}
	/* The failed writes changed nothing, not even the bytes in range. */
	memset(got, 0, tail);
	ACC_OK(d, &d->bar2, false, S - tail, got, tail);
	EXPECT_EQ(-1, first_diff(got, exp, tail));
	memset(got, 0x5a, 4096);
	ACC_OK(d, &d->bar2, false, 0, got, 4096);
	memset(exp, 0, 4096);
	EXPECT_EQ(-1, first_diff(got, exp, 4096)) TH_LOG("start of BAR2");
	munmap(buf, bufsz);

	/* The bound is the type's size: 1 MiB is inside a 16 MiB device. */
	big = add_dev(_metadata, self, variant->backend, 16);
	got[0] = 0x42;
	ACC_OK(big, &big->bar2, true, MIB, got, 1);
	ACC_OK(big, &big->bar2, true, big->mem - 1, got, 1);
	got[0] = 0;
	ACC_OK(big, &big->bar2, false, big->mem - 1, got, 1);
	EXPECT_EQ(0x42, got[0]);
	EXPECT_EQ(-EINVAL, acc(big, &big->bar2, false, big->mem, got, 1));
	EXPECT_EQ(-EINVAL, acc(big, &big->bar2, true, big->mem - 1, got, 2));
}

/* Put state everywhere a reset should (or should not) clear. */
static void dirty(struct __test_metadata *_metadata, struct mdev_dev *d,
		  uint64_t vals[NREGS], uint8_t cfg[CFG_SIZE],
		  uint8_t mem_head[4096], uint8_t mem_tail[4096])
{
	const uint8_t msi = MBLIT_MSI_CAP_OFFSET;

	reset_vals(vals);
	scratch_fill(_metadata, d, vals, 9);
	reg_wr(_metadata, d, MBLIT_REG_RING_BASE, 8, 0x100000);
	vals[reg_index(MBLIT_REG_RING_BASE)] = 0x100000;
	reg_wr(_metadata, d, MBLIT_REG_RING_SIZE, 4, 16);
	vals[reg_index(MBLIT_REG_RING_SIZE)] = 16;
	reg_wr(_metadata, d, MBLIT_REG_INT_MASK, 4, MBLIT_INT_ALL);
	vals[reg_index(MBLIT_REG_INT_MASK)] = MBLIT_INT_ALL;
	regs_expect(_metadata, d, vals, "dirtied");

	cfg_wr(_metadata, d, PCI_COMMAND, 2, PCI_COMMAND_MEMORY |
	       PCI_COMMAND_INTX_DISABLE);
	cfg_wr(_metadata, d, PCI_CACHE_LINE_SIZE, 1, 0x10);
	cfg_wr(_metadata, d, PCI_BASE_ADDRESS_0, 4, 0xfe001000);
	cfg_wr(_metadata, d, PCI_BASE_ADDRESS_2, 4, 0xc0000000);
	cfg_wr(_metadata, d, PCI_BASE_ADDRESS_3, 4, 0x1);
	cfg_wr(_metadata, d, PCI_INTERRUPT_LINE, 1, 11);
	cfg_wr(_metadata, d, msi + PCI_MSI_ADDRESS_LO, 4, 0xfee00000);
	cfg_wr(_metadata, d, msi + PCI_MSI_DATA_64, 2, 0x4041);
	cfg_wr(_metadata, d, msi + PCI_MSI_FLAGS, 2, PCI_MSI_FLAGS_ENABLE);
	ACC_OK(d, &d->cfg, false, 0, cfg, CFG_SIZE);

	fill_pat(mem_head, 0, 4096, 11);
	fill_pat(mem_tail, d->mem - 4096, 4096, 12);
	ACC_OK(d, &d->bar2, true, 0, mem_head, 4096);
	ACC_OK(d, &d->bar2, true, d->mem - 4096, mem_tail, 4096);
}

TEST_F_TIMEOUT(regions, reset, 90)
{
	struct mdev_dev *d = self->d;
	uint8_t cfg[CFG_SIZE], img[CFG_SIZE], head[4096], tail[4096];
	uint8_t got[4096];
	uint64_t vals[NREGS], rv[NREGS];

	reset_vals(rv);

	/* Engine reset (CTRL.RESET): registers only (§11). */
	dirty(_metadata, d, vals, cfg, head, tail);
	/* ENABLE in the same write has no effect. */
	reg_wr(_metadata, d, MBLIT_REG_CTRL, 4,
	       MBLIT_CTRL_RESET | MBLIT_CTRL_ENABLE);
	regs_expect(_metadata, d, rv, "after CTRL.RESET");
	cfg_expect_image(_metadata, d, cfg, "config after CTRL.RESET (unchanged)");
	ACC_OK(d, &d->bar2, false, 0, got, 4096);
	EXPECT_EQ(-1, first_diff(got, head, 4096)) TH_LOG("memory after CTRL.RESET");
	ACC_OK(d, &d->bar2, false, d->mem - 4096, got, 4096);
	EXPECT_EQ(-1, first_diff(got, tail, 4096)) TH_LOG("memory after CTRL.RESET");

	/* Device reset: registers, config space, and memory zeroed. */
	dirty(_metadata, d, vals, cfg, head, tail);
	ASSERT_EQ(0, ioctl(d->v.device_fd, VFIO_DEVICE_RESET))
		TH_LOG("VFIO_DEVICE_RESET: %s", strerror(errno));
	regs_expect(_metadata, d, rv, "after VFIO_DEVICE_RESET");
	cfg_reset_image(img, d->type_id);
	cfg_expect_image(_metadata, d, img, "config after VFIO_DEVICE_RESET");
	mem_expect(_metadata, d, NULL, "memory after VFIO_DEVICE_RESET");

	/* A second reset of a clean device, and the device still works. */
	ASSERT_EQ(0, ioctl(d->v.device_fd, VFIO_DEVICE_RESET))
		TH_LOG("VFIO_DEVICE_RESET: %s", strerror(errno));
	regs_expect(_metadata, d, rv, "after a second reset");
	reset_vals(vals);
	scratch_fill(_metadata, d, vals, 13);
	regs_expect(_metadata, d, vals, "scratch after reset");
	ACC_OK(d, &d->bar2, true, 0, head, 4096);
	ACC_OK(d, &d->bar2, false, 0, got, 4096);
	EXPECT_EQ(-1, first_diff(got, head, 4096));
}

TEST_HARNESS_MAIN
