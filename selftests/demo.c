// SPDX-License-Identifier: GPL-2.0
/*
 * mblit migration demo (make demo): a ring workload runs on one mdev, is
 * stopped mid-way through the DEVICE_STATE region, its state moves into a
 * second mdev, which finishes the workload; the result is compared with an
 * unmigrated reference run on a third mdev.
 *
 * Only the VFIO uAPI and include/uapi/linux/mblit.h are used, the way a
 * VMM would: guest memory is a buffer mapped at a fixed IOVA in each
 * mdev's container, and "migrating guest RAM" is copying that buffer.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <linux/pci_regs.h>
#include <linux/vfio.h>

#include "uapi/linux/mblit.h"
#include "mdev_lib.h"

#define TYPE		"mblit-16m"
#define MIB		(1ULL << 20)
#define IOVA		0x100000000ULL
#define BUF_SIZE	(8 * MIB)
#define RING_SLOTS	256
#define FENCE_OFF	(64 * 1024)	/* fence values land here */
#define DATA_OFF	(1 * MIB)	/* guest data from here */
#define NCMDS		240
#define WAIT_MS		120000

struct dev {
	const char *role;
	char uuid[MDEV_UUID_LEN + 1];
	struct vfio_mdev v;
	struct vfio_region_info bar0, bar2, cfg, state;
	uint8_t *buf;
};

static void die(const char *what, const struct dev *d)
{
	fprintf(stderr, "demo: %s%s%s: %s (%s)\n", d ? d->role : "",
		d ? ": " : "", what, strerror(errno), mdev_lib_error());
	exit(1);
}

static uint64_t now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000000ULL + ts.tv_nsec / 1000;
}

static void acc(struct dev *d, const struct vfio_region_info *r, bool wr,
		uint64_t off, void *p, size_t len)
{
	ssize_t n = wr ? pwrite(d->v.device_fd, p, len, r->offset + off) :
			 pread(d->v.device_fd, p, len, r->offset + off);

	if (n != (ssize_t)len)
		die(wr ? "region write" : "region read", d);
}

static uint64_t rd(struct dev *d, uint32_t reg, size_t len)
{
	uint64_t v = 0;

	acc(d, &d->bar0, false, reg, &v, len);
	return v;
}

static void wr(struct dev *d, uint32_t reg, uint64_t v, size_t len)
{
	acc(d, &d->bar0, true, reg, &v, len);
}

static void find_state_region(struct dev *d)
{
	struct vfio_device_info info = { .argsz = sizeof(info) };
	uint32_t i;

	if (ioctl(d->v.device_fd, VFIO_DEVICE_GET_INFO, &info))
		die("VFIO_DEVICE_GET_INFO", d);
	for (i = VFIO_PCI_NUM_REGIONS; i < info.num_regions; i++) {
		char buf[256] = { 0 };
		struct vfio_region_info *ri = (void *)buf;
		struct vfio_info_cap_header *h;

		ri->argsz = sizeof(buf);
		ri->index = i;
		if (ioctl(d->v.device_fd, VFIO_DEVICE_GET_REGION_INFO, ri))
			die("VFIO_DEVICE_GET_REGION_INFO", d);
		if (!(ri->flags & VFIO_REGION_INFO_FLAG_CAPS) || !ri->cap_offset)
			continue;
		for (h = (void *)(buf + ri->cap_offset);;
		     h = (void *)(buf + h->next)) {
			struct vfio_region_info_cap_type *t = (void *)h;

			if (h->id == VFIO_REGION_INFO_CAP_TYPE &&
			    t->type == MBLIT_REGION_TYPE_DEVICE_STATE &&
			    t->subtype == MBLIT_REGION_SUBTYPE_DEVICE_STATE) {
				d->state = *ri;
				return;
			}
			if (!h->next)
				break;
		}
	}
	errno = ENOENT;
	die("no DEVICE_STATE region", d);
}

static void setup(struct dev *d, const char *role)
{
	uint16_t cmd;

	d->role = role;
	if (mdev_create(TYPE, d->uuid))
		die("create " TYPE, d);
	if (vfio_mdev_open(&d->v, d->uuid, VFIO_BACKEND_TYPE1))
		die("open", d);
	if (vfio_mdev_pci_regions(&d->v, &d->cfg, &d->bar0, &d->bar2))
		die("region info", d);
	find_state_region(d);
	d->buf = mmap(NULL, BUF_SIZE, PROT_READ | PROT_WRITE,
		      MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (d->buf == MAP_FAILED)
		die("mmap", d);
	if (vfio_mdev_dma_map(&d->v, d->buf, IOVA, BUF_SIZE))
		die("DMA map", d);
	acc(d, &d->cfg, false, PCI_COMMAND, &cmd, 2);
	cmd |= PCI_COMMAND_MASTER;
	acc(d, &d->cfg, true, PCI_COMMAND, &cmd, 2);
}

static void teardown(struct dev *d)
{
	vfio_mdev_dma_unmap(&d->v, IOVA, BUF_SIZE);
	vfio_mdev_close(&d->v);
	munmap(d->buf, BUF_SIZE);
	mdev_remove(d->uuid);
}

/* The same workload for every run: deterministic from a fixed seed. */
static void workload(struct mblit_desc *cmds)
{
	uint64_t x = 0x6d626c6974ULL;
	int i;

	for (i = 0; i < NCMDS; i++) {
		struct mblit_desc *c = &cmds[i];
		uint32_t len;

		x = x * 6364136223846793005ULL + 1442695040888963407ULL;
		len = 4096 + (x >> 40) % (192 * 1024);
		memset(c, 0, sizeof(*c));
		c->len = len;
		switch (i % 6) {
		case 0:		/* fill device memory */
			c->opcode = MBLIT_OP_FILL;
			c->flags = MBLIT_FLAG_DST_DEV;
			c->dst = (x >> 8) % (15 * MIB);
			c->src = (uint32_t)(x ^ i);
			break;
		case 1:		/* guest -> device */
			c->opcode = MBLIT_OP_COPY;
			c->flags = MBLIT_FLAG_DST_DEV;
			c->dst = (x >> 12) % (15 * MIB);
			c->src = IOVA + DATA_OFF + (x >> 20) % (6 * MIB);
			break;
		case 2:		/* device -> guest */
			c->opcode = MBLIT_OP_COPY;
			c->flags = MBLIT_FLAG_SRC_DEV;
			c->dst = IOVA + DATA_OFF + (x >> 16) % (6 * MIB);
			c->src = (x >> 24) % (15 * MIB);
			break;
		case 3:		/* device -> device, never overlapping */
			c->opcode = MBLIT_OP_COPY;
			c->flags = MBLIT_FLAG_DST_DEV | MBLIT_FLAG_SRC_DEV;
			c->dst = (x >> 10) % (7 * MIB);
			c->src = 8 * MIB + (x >> 14) % (7 * MIB);
			break;
		case 4:		/* fill guest memory */
			c->opcode = MBLIT_OP_FILL;
			c->dst = IOVA + DATA_OFF + (x >> 18) % (6 * MIB);
			c->src = (uint32_t)(x >> 32);
			break;
		default:	/* fence */
			c->opcode = MBLIT_OP_FENCE;
			c->len = 0;
			c->dst = IOVA + FENCE_OFF + 8 * (i / 6);
			c->src = 0xf0000000ULL + i;
			break;
		}
	}
}

static void init_guest(struct dev *d)
{
	uint64_t x = 42;
	size_t i;

	memset(d->buf, 0, BUF_SIZE);
	for (i = DATA_OFF; i < BUF_SIZE; i += 8) {
		x = x * 6364136223846793005ULL + 1;
		memcpy(d->buf + i, &x, 8);
	}
}

/* Writes every descriptor into the ring and starts the engine. */
static void start(struct dev *d, const struct mblit_desc *cmds)
{
	memcpy(d->buf, cmds, NCMDS * sizeof(*cmds));
	wr(d, MBLIT_REG_RING_BASE, IOVA, 8);
	wr(d, MBLIT_REG_RING_SIZE, RING_SLOTS, 4);
	wr(d, MBLIT_REG_CTRL, MBLIT_CTRL_ENABLE, 4);
	wr(d, MBLIT_REG_RING_TAIL, NCMDS, 4);
}

static uint32_t wait_head(struct dev *d, uint32_t target)
{
	uint64_t t0 = now_us();
	uint32_t head;

	for (;;) {
		head = rd(d, MBLIT_REG_RING_HEAD, 4);
		if (head >= target)
			return head;
		if (rd(d, MBLIT_REG_STATUS, 4) & MBLIT_STATUS_ERROR) {
			fprintf(stderr, "demo: %s: engine error, STATUS %#llx\n",
				d->role, (unsigned long long)rd(d, MBLIT_REG_STATUS, 4));
			exit(1);
		}
		if (now_us() - t0 > WAIT_MS * 1000ULL) {
			fprintf(stderr, "demo: %s: stuck at head %u\n", d->role, head);
			exit(1);
		}
		usleep(200);
	}
}

static void run_control(struct dev *d, uint8_t v)
{
	acc(d, &d->state, true, MBLIT_STATE_OFF_RUNCTL, &v, 1);
}

struct result {
	uint8_t *guest, *vram;
	uint64_t cmds, bytes, fence;
};

static void collect(struct dev *d, struct result *r)
{
	r->guest = malloc(BUF_SIZE);
	r->vram = malloc(d->bar2.size);
	if (!r->guest || !r->vram)
		die("malloc", d);
	memcpy(r->guest, d->buf, BUF_SIZE);
	acc(d, &d->bar2, false, 0, r->vram, d->bar2.size);
	r->cmds = rd(d, MBLIT_REG_CMD_COUNT, 8);
	r->bytes = rd(d, MBLIT_REG_BYTE_COUNT, 8);
	r->fence = rd(d, MBLIT_REG_FENCE_LAST, 8);
}

int main(void)
{
	static struct mblit_desc cmds[NCMDS];
	struct dev ref = { 0 }, src = { 0 }, dst = { 0 };
	struct result want, got;
	uint64_t t_stop0, t_stop1, t_read1, t_resume1, size, gen;
	uint32_t stopped_at;
	uint8_t *state;
	bool ok;

	workload(cmds);
	printf("mblit demo: %d commands (FILL, COPY in every direction, FENCE) on %s mdevs\n",
	       NCMDS, TYPE);

	/* 1. The reference: the whole workload on one mdev, unmigrated. */
	setup(&ref, "reference");
	init_guest(&ref);
	start(&ref, cmds);
	wait_head(&ref, NCMDS);
	collect(&ref, &want);
	printf("  reference run: %llu commands, %llu bytes moved, last fence %#llx\n",
	       (unsigned long long)want.cmds, (unsigned long long)want.bytes,
	       (unsigned long long)want.fence);
	teardown(&ref);

	/* 2. The source runs the same workload and is stopped mid-way. */
	setup(&src, "source");
	setup(&dst, "destination");
	init_guest(&src);
	start(&src, cmds);
	wait_head(&src, NCMDS / 3);
	t_stop0 = now_us();
	run_control(&src, MBLIT_RUNCTL_STOPPED);
	t_stop1 = now_us();
	stopped_at = rd(&src, MBLIT_REG_RING_HEAD, 4);
	acc(&src, &src.state, false, MBLIT_STATE_OFF_SIZE, &size, 8);
	acc(&src, &src.state, false, MBLIT_STATE_OFF_GENERATION, &gen, 8);
	state = malloc(size);
	if (!state)
		die("malloc", &src);
	acc(&src, &src.state, false, MBLIT_STATE_AREA_OFFSET, state, size);
	t_read1 = now_us();
	printf("  source stopped through the run-control byte at command %u of %d (stop took %llu us)\n",
	       stopped_at, NCMDS, (unsigned long long)(t_stop1 - t_stop0));
	printf("  device state: %llu bytes (generation %llu), read in %llu us\n",
	       (unsigned long long)size, (unsigned long long)gen,
	       (unsigned long long)(t_read1 - t_stop1));

	/* 3. The destination takes guest RAM and the device state, resumes. */
	run_control(&dst, MBLIT_RUNCTL_STOPPED);
	memcpy(dst.buf, src.buf, BUF_SIZE);
	acc(&dst, &dst.state, true, MBLIT_STATE_AREA_OFFSET, state, size);
	run_control(&dst, MBLIT_RUNCTL_RUNNING);
	t_resume1 = now_us();
	printf("  destination restored and running: device downtime %llu us (stop, read, copy RAM, write, resume)\n",
	       (unsigned long long)(t_resume1 - t_stop0));
	teardown(&src);

	wait_head(&dst, NCMDS);
	collect(&dst, &got);
	printf("  destination finished: %llu commands, %llu bytes moved, last fence %#llx\n",
	       (unsigned long long)got.cmds, (unsigned long long)got.bytes,
	       (unsigned long long)got.fence);
	teardown(&dst);

	ok = true;
	if (memcmp(want.guest, got.guest, BUF_SIZE)) {
		printf("  guest memory DIFFERS from the reference run\n");
		ok = false;
	}
	if (memcmp(want.vram, got.vram, 16 * MIB)) {
		printf("  device memory DIFFERS from the reference run\n");
		ok = false;
	}
	if (want.cmds != got.cmds || want.bytes != got.bytes ||
	    want.fence != got.fence) {
		printf("  counters DIFFER from the reference run\n");
		ok = false;
	}
	if (ok)
		printf("  guest memory (8 MiB), device memory (16 MiB), counters and fences equal the reference run\n");
	printf("MBLIT-DEMO: %s\n", ok ? "OK, migrated mid-workload" : "FAILED");
	free(state);
	return ok ? 0 : 1;
}
