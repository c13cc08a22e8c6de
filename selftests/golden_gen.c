// SPDX-License-Identifier: GPL-2.0
/*
 * Generates the golden device states of this build's state format version
 * (docs/migration.md §1.9).  Not a test: /init runs it for mblitvm=golden
 * (scripts/golden-gen, "make golden"), and the script turns its output
 * into selftests/golden/v<version>/.
 *
 * It brings one mblit-1m device into a state that touches every part of
 * the format: config space written (BAR addresses, cache line, interrupt
 * line, MSI address, data and enable), an engine error stop recovered by
 * CTRL.RESET (the error counter), a ring with FILL, COPY and FENCE work
 * done (counters, FENCE_LAST, INT_STATUS), INT_MASK, scratch registers,
 * pages written by the engine and through BAR2, INTx masked and an MSI
 * trigger set.  Then, with the engine idle, it saves that one state twice:
 * through the DEVICE_STATE region (one device record) and through v2
 * STOP_COPY (pages records and a device record), and describes it from
 * what the device reports (mblit_golden.h): every register, the config
 * space, every non-zero page.
 *
 * Output lines (all other lines are ignored by the script):
 *   MBLIT-GOLDEN-BEGIN <version>
 *   MBLIT-GOLDEN-FILE <name> <bytes>
 *   MBLIT-GOLDEN-HEX <name> <up to 64 bytes in hex>
 *   MBLIT-GOLDEN-TEXT <name> <one line of a text file>
 *   MBLIT-GOLDEN-END
 */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "kselftest_harness.h"
#include "mblit_dev.h"
#include "mblit_golden.h"
#include "mig_v2.h"

#define TYPE		"mblit-1m"
#define RING_SLOTS	64
#define GUEST_RAMP	(MB_DATA_IOVA + 0x10000)	/* a ramp page */
#define FENCE_IOVA	(MB_DATA_IOVA + 0x20000)

static void emit_bin(const char *name, const uint8_t *p, size_t len)
{
	size_t off, i, n;
	char line[200];
	int k;

	printf("MBLIT-GOLDEN-FILE %s %zu\n", name, len);
	for (off = 0; off < len; off += n) {
		n = len - off < 64 ? len - off : 64;
		k = snprintf(line, sizeof(line), "MBLIT-GOLDEN-HEX %s ", name);
		for (i = 0; i < n; i++)
			k += snprintf(line + k, sizeof(line) - k, "%02x",
				      p[off + i]);
		puts(line);
	}
	fflush(stdout);
}

static void emit_text(const char *name, const char *fmt, ...)
	__printf(2, 3);

static void emit_text(const char *name, const char *fmt, ...)
{
	va_list ap;

	printf("MBLIT-GOLDEN-TEXT %s ", name);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	putchar('\n');
	fflush(stdout);
}

static void cfg_wr(struct __test_metadata *_metadata, struct mb_dev *d,
		   uint32_t off, uint32_t v, int w)
{
	MB_ACC_OK(d, &d->cfg, true, off, &v, w);
}

/* What the device reports: registers, config space and every page. */
static void describe(struct __test_metadata *_metadata, struct mb_dev *d,
		     struct mb_golden *g)
{
	uint8_t page[MB_GOLDEN_PAGE];
	uint64_t i;
	int r;

	memset(g, 0, sizeof(*g));
	for (i = 0; i < MB_GOLDEN_NREGS; i++)
		g->regs[i] = mb_rd(_metadata, d, mb_regs[i].off,
				   mb_regs[i].w);
	MB_ACC_OK(d, &d->cfg, false, 0, g->config, MB_GOLDEN_CONFIG);
	g->errors = mb_debugfs(_metadata, d, "errors");
	for (i = 0; i < d->mem / MB_GOLDEN_PAGE; i++) {
		mb_bar2_rd(_metadata, d, i * MB_GOLDEN_PAGE, page, sizeof(page));
		r = mb_golden_describe(i, page, &g->pages[g->npages]);
		ASSERT_LE(0, r) TH_LOG("page %llu is no pattern",
				       (unsigned long long)i);
		if (r) {
			ASSERT_GT(MB_GOLDEN_MAX_PAGES, g->npages);
			g->npages++;
		}
	}
}

TEST(golden_gen)
{
	static const char *const pat[] = { "fill32", "ramp" };
	struct mblit_desc bad[1], work[8];
	struct mb_golden g, again;
	struct vfio_region_info sr;
	uint8_t page[MB_GOLDEN_PAGE];
	struct mig_buf stream = { 0 };
	char name[64], hex[2 * MB_GOLDEN_CONFIG + 1];
	struct mb_dev dev, *d = &dev;
	uint8_t *region;
	size_t len, got;
	uint32_t version;
	unsigned int i;
	int efd, fd;

	mb_init(d);
	mb_open(_metadata, d, TYPE, VFIO_BACKEND_TYPE1);
	mb_state_region(_metadata, d, &sr);
	version = mb_state_hdr(_metadata, d, &sr, MBLIT_STATE_OFF_VERSION, 4);

	/* Config space: what a VMM's guest writes. */
	cfg_wr(_metadata, d, PCI_COMMAND,
	       PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER, 2);
	cfg_wr(_metadata, d, PCI_CACHE_LINE_SIZE, 0x10, 1);
	cfg_wr(_metadata, d, PCI_INTERRUPT_LINE, 0x0b, 1);
	cfg_wr(_metadata, d, PCI_BASE_ADDRESS_0, 0xfebf0000, 4);
	cfg_wr(_metadata, d, PCI_BASE_ADDRESS_2, 0xfd000000, 4);
	cfg_wr(_metadata, d, PCI_BASE_ADDRESS_3, 0x00000001, 4);
	cfg_wr(_metadata, d, MBLIT_MSI_CAP_OFFSET + 4, 0xfee01000, 4);
	cfg_wr(_metadata, d, MBLIT_MSI_CAP_OFFSET + 8, 0, 4);
	cfg_wr(_metadata, d, MBLIT_MSI_CAP_OFFSET + 12, 0x4041, 2);
	cfg_wr(_metadata, d, MBLIT_MSI_CAP_OFFSET + 2, 0x0001, 2);

	/* Interrupts: an MSI trigger (INTx is masked below). */
	efd = mb_eventfd(_metadata);
	ASSERT_EQ(0, mb_set_trigger(d, VFIO_PCI_MSI_IRQ_INDEX, efd));

	/* An error stop (a FILL to an unmapped IOVA), then CTRL.RESET. */
	mb_ring_setup(_metadata, d, RING_SLOTS);
	bad[0] = mb_fill(MB_UNMAPPED_IOVA, 4096, 0x01010101, 0);
	mb_submit_bad(_metadata, d, bad, 1);
	mb_wait_error(_metadata, d);
	ASSERT_EQ(1, mb_efd_wait(_metadata, efd, MB_IRQ_WAIT_MS));
	mb_engine_reset(_metadata, d);
	ASSERT_EQ(1, mb_debugfs(_metadata, d, "errors"));
	/* INTx masked at the VFIO level (an engine reset unmasks it). */
	ASSERT_EQ(0, mb_intx_action(d, VFIO_IRQ_SET_ACTION_MASK));

	/* Work: FILL, COPY in three directions, a FENCE with its interrupt. */
	for (i = 0; i < MB_GOLDEN_PAGE; i++)
		d->buf[GUEST_RAMP - MB_IOVA + i] = (uint8_t)(0x37 + i);
	memcpy(d->mg + (GUEST_RAMP - MB_IOVA), d->buf + (GUEST_RAMP - MB_IOVA),
	       MB_GOLDEN_PAGE);
	WR32(MBLIT_REG_INT_MASK, MBLIT_INT_ERROR);
	mb_ring_setup(_metadata, d, RING_SLOTS);
	work[0] = mb_fill(0 * 4096, 4096, 0x11111111, MBLIT_FLAG_DST_DEV);
	work[1] = mb_fill(2 * 4096, 8192, 0xa5c3e1f0, MBLIT_FLAG_DST_DEV);
	work[2] = mb_copy(7 * 4096, 2 * 4096, 4096,
			  MBLIT_FLAG_SRC_DEV | MBLIT_FLAG_DST_DEV);
	work[3] = mb_copy(9 * 4096, GUEST_RAMP, 4096, MBLIT_FLAG_DST_DEV);
	work[4] = mb_copy(GUEST_RAMP + 4096, 0, 4096, MBLIT_FLAG_SRC_DEV);
	work[5] = mb_fence(FENCE_IOVA, 0xf00d0005, MBLIT_FLAG_IRQ);
	mb_run(_metadata, d, work, 6);
	ASSERT_EQ(1, mb_efd_wait(_metadata, efd, MB_IRQ_WAIT_MS));

	/* Device memory through BAR2, and the scratch registers. */
	for (i = 0; i < MB_GOLDEN_PAGE; i++)
		page[i] = (uint8_t)(0x5a + i);
	mb_bar2_wr(_metadata, d, 12 * 4096, page, sizeof(page));
	memset(page, 0, sizeof(page));
	for (i = 0; i < MB_GOLDEN_PAGE; i += 4)
		memcpy(page + i, &(uint32_t){ 0xdeadbeef }, 4);
	mb_bar2_wr(_metadata, d, d->mem - 4096, page, sizeof(page));
	WR64(MBLIT_REG_SCRATCH0, 0x0123456789abcdefULL);
	WR64(MBLIT_REG_SCRATCH1, 0xfedcba9876543210ULL);
	WR64(MBLIT_REG_SCRATCH3, 0x8000000000000001ULL);
	mb_check_dev(_metadata, d, 0, d->mem, "the generated device");
	mb_check_guest(_metadata, d, "the generated device");

	/* Save 1: the DEVICE_STATE region. */
	ASSERT_EQ(0, mb_runctl_set(d, &sr, MBLIT_RUNCTL_STOPPED));
	describe(_metadata, d, &g);
	region = mb_state_read(_metadata, d, &sr, &len);
	ASSERT_EQ(0, mb_runctl_set(d, &sr, MBLIT_RUNCTL_RUNNING));

	/* Save 2: v2 STOP_COPY, from the very same state. */
	ASSERT_EQ(0, mig_set(d->v.device_fd, VFIO_DEVICE_STATE_STOP, NULL));
	describe(_metadata, d, &again);
	ASSERT_EQ(0, memcmp(&g, &again, sizeof(g)))
		TH_LOG("the state changed between the two saves");
	ASSERT_EQ(0, mig_set(d->v.device_fd, VFIO_DEVICE_STATE_STOP_COPY, &fd));
	ASSERT_EQ(0, mig_read_stream(fd, &stream, NULL, 4 * d->mem, &got));
	close(fd);
	ASSERT_EQ(0, mig_set(d->v.device_fd, VFIO_DEVICE_STATE_STOP, NULL));
	ASSERT_EQ(0, mig_set(d->v.device_fd, VFIO_DEVICE_STATE_RUNNING, NULL));

	printf("MBLIT-GOLDEN-BEGIN %u\n", version);
	snprintf(name, sizeof(name), "%s.region", TYPE);
	emit_bin(name, region, len);
	snprintf(name, sizeof(name), "%s.stream", TYPE);
	emit_bin(name, stream.p, stream.len);
	snprintf(name, sizeof(name), "%s.expect", TYPE);
	emit_text(name, "# %s, state format version %u: written by \"make golden\"; never regenerate",
		  TYPE, version);
	emit_text(name, "# (docs/migration.md 1.9). Pages not listed are zero.");
	emit_text(name, "version %u", version);
	emit_text(name, "type %s", TYPE);
	emit_text(name, "vram_size %llu", (unsigned long long)d->mem);
	for (i = 0; i < MB_GOLDEN_NREGS; i++)
		emit_text(name, "reg %s %#llx", mb_regs[i].name,
			  (unsigned long long)g.regs[i]);
	for (i = 0; i < MB_GOLDEN_CONFIG; i++)
		snprintf(hex + 2 * i, 3, "%02x", g.config[i]);
	emit_text(name, "config %s", hex);
	emit_text(name, "errors %llu", (unsigned long long)g.errors);
	emit_text(name, "intx_masked 1");
	for (i = 0; i < g.npages; i++)
		emit_text(name, "page %llu %s %#x",
			  (unsigned long long)g.pages[i].index,
			  pat[g.pages[i].pattern], g.pages[i].value);
	printf("MBLIT-GOLDEN-END\n");
	fflush(stdout);

	free(region);
	mig_buf_free(&stream);
	close(efd);
	mb_close(_metadata, d);
}

TEST_HARNESS_MAIN
