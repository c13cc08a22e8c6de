// SPDX-License-Identifier: GPL-2.0
/*
 * The e2e guest: a freestanding program that QEMU boots (multiboot, 32-bit
 * protected mode, paging off) and that drives an mblit device through its
 * BARs, written against docs/device.md only.
 *
 * It finds the device on bus 0, programs a ring in its own memory and keeps
 * DMA running: batches of FILL and COPY in every direction (guest to guest,
 * guest to device, device to guest, device to device), each batch ended by a
 * FENCE whose value it polls for. For every command it submits it applies
 * the same effect to its own model of guest memory and device memory, and it
 * verifies both against the model: guest memory by reading it, device memory
 * by having the engine copy it into a scratch buffer.
 *
 * Guest memory here is guest-physical: QEMU maps guest RAM at IOVA = GPA
 * (no vIOMMU), so the addresses below are what the descriptors carry. The
 * buffer G is written by the device only, never by the CPU: a DMA write
 * that the migration's dirty log misses is lost on the destination, and the
 * next verification there finds it.
 *
 * It talks on COM1 (polled): it prints "E2E ..." lines, and reads one
 * command byte between batches: 'v' verifies now, 'q' verifies, prints
 * "E2E DONE" and halts. Its counters are also in a status block at a fixed
 * address (STATUS_PA, struct e2e_status), which the host reads with QMP's
 * pmemsave while the VM is stopped.
 *
 * There is no kernel here: registers and memory the device writes are
 * reached through volatile pointers, which is what readl()/writel() and
 * READ_ONCE() come down to on x86.
 */
#include <stdint.h>
#include <stddef.h>
#include <stdarg.h>

typedef uint8_t u8;
typedef uint16_t u16;
typedef uint32_t u32;
typedef uint64_t u64;

/* Guest-physical layout (below 16 MiB; the VM has 32 MiB). */
#define STATUS_PA	0x00200000u
#define RING_PA		0x00201000u
#define FENCE_PA	0x00202000u
#define G_PA		0x00400000u	/* written by the device only */
#define G_SIZE		0x00400000u
#define GM_PA		0x00800000u	/* model of G */
#define VM_PA		0x00c00000u	/* model of device memory */
#define SCRATCH_PA	0x00d00000u	/* device memory read back */
#define SINK_PA		0x00e00000u	/* filled whole by every batch */
#define SINK_SIZE	0x00100000u
#define V_MAX		0x00100000u	/* device memory used, at most */

/* docs/device.md §2, §5, §8. */
#define MBLIT_VENDOR	0x6d62
#define MBLIT_DEVICE	0x0001
#define MBLIT_ID	0x544c424du

#define REG_ID		0x000
#define REG_CTRL	0x008
#define REG_STATUS	0x00c
#define REG_RING_BASE	0x010
#define REG_RING_SIZE	0x018
#define REG_RING_HEAD	0x01c
#define REG_RING_TAIL	0x020
#define REG_INT_MASK	0x028
#define REG_CMD_COUNT	0x038
#define REG_ERR_INDEX	0x048
#define REG_ERR_ADDR	0x050

#define CTRL_ENABLE	0x1
#define CTRL_RESET	0x2
#define STATUS_ERROR	0x2

#define OP_FILL		0x02
#define OP_COPY		0x03
#define OP_FENCE	0x04
#define FLAG_DST_DEV	0x01
#define FLAG_SRC_DEV	0x02

#define RING_SLOTS	128u
#define XFER_MAX	0x00100000u

struct desc {
	u8 opcode;
	u8 flags;
	u16 rsvd0;
	u32 len;
	u64 dst;
	u64 src;
	u64 rsvd1;
};

/* Read by the host (scripts/e2e's orchestrator) while the VM is stopped. */
struct e2e_status {
	u32 magic;		/* "E2ES" once initialised */
	u32 phase;		/* 1 running, 2 done, 3 failed */
	u32 submitted;		/* descriptors written to the ring */
	u32 batches;		/* batches completed */
	u32 verifies;
	u32 verified_kib;	/* bytes compared with the model, in KiB */
	u32 bad_guest;		/* bytes of G unlike the model, all verifies */
	u32 bad_dev;		/* bytes of device memory unlike the model */
	u32 fence_lost;		/* FENCE writes not in memory once complete */
	u32 dev_status;		/* STATUS at an error stop */
	u32 rung;		/* descriptors handed over: last RING_TAIL */
};

#define status ((volatile struct e2e_status *)STATUS_PA)

static volatile u8 *bar0;
static u32 vsize;
static u32 tail;
static u32 fence_seq;
static u32 sink_pat;		/* the sink's last FILL pattern */
static u32 rng = 0x6d626c74;

/* ---- port I/O, COM1, printing ---------------------------------------- */

static inline void outb(u16 port, u8 v)
{
	asm volatile("outb %0, %1" : : "a"(v), "Nd"(port));
}

static inline u8 inb(u16 port)
{
	u8 v;

	asm volatile("inb %1, %0" : "=a"(v) : "Nd"(port));
	return v;
}

static inline void outl(u16 port, u32 v)
{
	asm volatile("outl %0, %1" : : "a"(v), "Nd"(port));
}

static inline u32 inl(u16 port)
{
	u32 v;

	asm volatile("inl %1, %0" : "=a"(v) : "Nd"(port));
	return v;
}

#define COM1 0x3f8

static void putc_serial(char c)
{
	while (!(inb(COM1 + 5) & 0x20))
		;
	outb(COM1, (u8)c);
}

static int getc_serial(void)
{
	if (!(inb(COM1 + 5) & 0x01))
		return -1;
	return inb(COM1);
}

static void put_u32(u32 v, unsigned int base)
{
	char buf[12];
	int i = 0;

	do {
		buf[i++] = "0123456789abcdef"[v % base];
		v /= base;
	} while (v);
	while (i)
		putc_serial(buf[--i]);
}

/* %u, %x and %s only: enough for the protocol lines. */
static void print(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	for (; *fmt; fmt++) {
		if (*fmt != '%') {
			if (*fmt == '\n')
				putc_serial('\r');
			putc_serial(*fmt);
			continue;
		}
		fmt++;
		if (*fmt == 'u') {
			put_u32(va_arg(ap, u32), 10);
		} else if (*fmt == 'x') {
			put_u32(va_arg(ap, u32), 16);
		} else if (*fmt == 's') {
			for (const char *s = va_arg(ap, const char *); *s; s++)
				putc_serial(*s);
		} else {
			putc_serial('%');
			putc_serial(*fmt);
		}
	}
	va_end(ap);
}

static void halt(void)
{
	for (;;)
		asm volatile("cli; hlt");
}

/* ---- small library ----------------------------------------------------- */

void *memset(void *d, int c, size_t n)
{
	u8 *p = d;

	while (n--)
		*p++ = (u8)c;
	return d;
}

void *memcpy(void *d, const void *s, size_t n)
{
	u8 *dp = d;
	const u8 *sp = s;

	while (n--)
		*dp++ = *sp++;
	return d;
}

static u32 rnd(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 17;
	rng ^= rng << 5;
	return rng;
}

/* ---- PCI configuration (mechanism #1) --------------------------------- */

static u32 cfg_addr(u32 bdf, u32 off)
{
	return 0x80000000u | (bdf << 8) | (off & 0xfc);
}

static u32 cfg_read32(u32 bdf, u32 off)
{
	outl(0xcf8, cfg_addr(bdf, off));
	return inl(0xcfc);
}

static void cfg_write32(u32 bdf, u32 off, u32 v)
{
	outl(0xcf8, cfg_addr(bdf, off));
	outl(0xcfc, v);
}

/* ---- registers (4-byte accesses: every register allows them) ---------- */

static u32 rd32(u32 off)
{
	return *(volatile u32 *)(bar0 + off);
}

static void wr32(u32 off, u32 v)
{
	*(volatile u32 *)(bar0 + off) = v;
}

static void fail(const char *what)
{
	status->phase = 3;
	print("E2E FAIL %s status=%x head=%u tail=%u err_index=%u err_addr=%x\n",
	      what, rd32(REG_STATUS), rd32(REG_RING_HEAD), tail,
	      rd32(REG_ERR_INDEX), rd32(REG_ERR_ADDR));
	halt();
}

/* ---- the ring ------------------------------------------------------------ */

static void put(u8 op, u8 flags, u32 len, u32 dst, u32 src)
{
	volatile struct desc *d =
		(volatile struct desc *)RING_PA + (tail % RING_SLOTS);

	d->opcode = op;
	d->flags = flags;
	d->rsvd0 = 0;
	d->len = len;
	d->dst = dst;
	d->src = src;
	d->rsvd1 = 0;
	tail++;
	status->submitted++;
}

/* Ends the batch with a FENCE and rings the doorbell; returns its value. */
static u32 ring_batch(void)
{
	u32 want = ++fence_seq;

	put(OP_FENCE, 0, 0, FENCE_PA, want);
	asm volatile("" ::: "memory");
	wr32(REG_RING_TAIL, tail);
	status->rung = tail;
	return want;
}

/*
 * Polls for the FENCE value `want` in memory. When RING_HEAD says every
 * command is done but the value is not there, the FENCE's write was lost
 * (counted, not fatal: the host decides).
 */
static void wait_batch(u32 want)
{
	volatile u64 *fence = (volatile u64 *)FENCE_PA;
	u32 i;

	for (i = 0;; i++) {
		if (*fence == want)
			return;
		if ((i & 63) != 63)
			continue;
		if (rd32(REG_STATUS) & STATUS_ERROR) {
			status->dev_status = rd32(REG_STATUS);
			fail("device stopped on an error");
		}
		if (rd32(REG_RING_HEAD) == tail) {
			if (*fence == want)
				return;
			status->fence_lost++;
			print("E2E FENCE-LOST want=%u have=%u\n", want,
			      (u32)*fence);
			return;
		}
	}
}

static void run_batch(void)
{
	wait_batch(ring_batch());
}

/* ---- the model ------------------------------------------------------------ */

static void model_fill(u8 *p, u32 len, u32 pat)
{
	u32 k;

	for (k = 0; k < len; k++)
		p[k] = (u8)(pat >> (8 * (k & 3)));
}

static int overlap(u32 a, u32 b, u32 len)
{
	return a < b + len && b < a + len;
}

/*
 * A length: mostly up to 64 KiB, sometimes up to `big` (at most
 * MBLIT_XFER_MAX), never 0.
 */
static u32 pick_len(u32 big)
{
	if (big > XFER_MAX)
		big = XFER_MAX;
	if ((rnd() & 7) == 0)
		return 1 + rnd() % big;
	return 1 + rnd() % 0x10000u;
}

static u32 pick_off(u32 size, u32 len)
{
	return rnd() % (size - len + 1);
}

/* A command as the model sees it (op: 0..5, see pick_command()). */
struct cmd {
	u32 op, len, dst, src, pat;
};

/* Picks one random command and puts it in the ring; false if none. */
static int pick_command(struct cmd *c)
{
	u32 size, tries;

	c->op = rnd() % 6;
	switch (c->op) {
	case 0: /* FILL guest */
		c->len = pick_len(G_SIZE / 2);
		c->dst = pick_off(G_SIZE, c->len);
		c->pat = rnd();
		put(OP_FILL, 0, c->len, G_PA + c->dst, c->pat);
		return 1;
	case 1: /* FILL device */
		c->len = pick_len(vsize / 2);
		c->dst = pick_off(vsize, c->len);
		c->pat = rnd();
		put(OP_FILL, FLAG_DST_DEV, c->len, c->dst, c->pat);
		return 1;
	case 2: /* COPY guest to guest */
	case 5: /* COPY device to device */
		size = c->op == 2 ? G_SIZE : vsize;
		for (tries = 0; tries < 8; tries++) {
			c->len = pick_len(size / 4);
			c->dst = pick_off(size, c->len);
			c->src = pick_off(size, c->len);
			if (!overlap(c->dst, c->src, c->len))
				break;
		}
		if (tries == 8)
			return 0;
		if (c->op == 2)
			put(OP_COPY, 0, c->len, G_PA + c->dst, G_PA + c->src);
		else
			put(OP_COPY, FLAG_DST_DEV | FLAG_SRC_DEV, c->len,
			    c->dst, c->src);
		return 1;
	case 3: /* COPY guest to device */
		c->len = pick_len(vsize / 2);
		c->dst = pick_off(vsize, c->len);
		c->src = pick_off(G_SIZE, c->len);
		put(OP_COPY, FLAG_DST_DEV, c->len, c->dst, G_PA + c->src);
		return 1;
	default: /* 4: COPY device to guest */
		c->len = pick_len(vsize / 2);
		c->dst = pick_off(G_SIZE, c->len);
		c->src = pick_off(vsize, c->len);
		put(OP_COPY, FLAG_SRC_DEV, c->len, G_PA + c->dst, c->src);
		return 1;
	}
}

/* Applies a command to the model, in ring order. */
static void model_command(const struct cmd *c)
{
	u8 *gm = (u8 *)GM_PA, *vm = (u8 *)VM_PA;

	switch (c->op) {
	case 0:
		model_fill(gm + c->dst, c->len, c->pat);
		break;
	case 1:
		model_fill(vm + c->dst, c->len, c->pat);
		break;
	case 2:
		memcpy(gm + c->dst, gm + c->src, c->len);
		break;
	case 5:
		memcpy(vm + c->dst, vm + c->src, c->len);
		break;
	case 3:
		memcpy(vm + c->dst, gm + c->src, c->len);
		break;
	default:
		memcpy(gm + c->dst, vm + c->src, c->len);
		break;
	}
}

/*
 * One batch: 1 to 8 random commands, then a FILL of the whole sink, then
 * the FENCE. The doorbell rings before the CPU applies the commands to its
 * model, so the engine works meanwhile; the sink's FILL, which the model
 * holds as one pattern, keeps the engine busy longer, so that a stop often
 * finds commands in the ring.
 */
static void batch(void)
{
	struct cmd cmds[8];
	u32 n = 1 + rnd() % 8, i, k = 0, want;

	for (i = 0; i < n; i++)
		k += pick_command(&cmds[k]);
	sink_pat = rnd();
	put(OP_FILL, 0, SINK_SIZE, SINK_PA, sink_pat);
	want = ring_batch();
	for (i = 0; i < k; i++)
		model_command(&cmds[i]);
	wait_batch(want);
}

/* Bytes in [a, a+len) unlike [b, b+len); *first gets the first offset. */
static u32 compare(const u8 *a, const u8 *b, u32 len, u32 *first)
{
	const u32 *wa = (const u32 *)a, *wb = (const u32 *)b;
	u32 bad = 0, w, k;

	for (w = 0; w < len / 4; w++) {
		if (wa[w] == wb[w])
			continue;
		for (k = 4 * w; k < 4 * w + 4; k++) {
			if (a[k] != b[k]) {
				if (!bad)
					*first = k;
				bad++;
			}
		}
	}
	return bad;
}

/* Bytes of the sink unlike its last FILL; *first gets the first offset. */
static u32 compare_sink(u32 *first)
{
	const u32 *w = (const u32 *)SINK_PA;
	u32 bad = 0, i, k;

	for (i = 0; i < SINK_SIZE / 4; i++) {
		if (w[i] == sink_pat)
			continue;
		for (k = 0; k < 4; k++) {
			if (((const u8 *)&w[i])[k] != (u8)(sink_pat >> (8 * k))) {
				if (!bad)
					*first = SINK_PA - G_PA + 4 * i + k;
				bad++;
			}
		}
	}
	return bad;
}

/*
 * Verifies G, the sink and device memory against the model. Offsets in
 * guest memory (first_guest) are from G_PA; the sink's come after G's.
 */
static void verify(const char *why)
{
	u32 bad_g, bad_s, bad_v, first_g = 0, first_s = 0, first_v = 0;

	/* Device memory, read back by the engine into SCRATCH. */
	put(OP_COPY, FLAG_SRC_DEV, vsize, SCRATCH_PA, 0);
	run_batch();
	bad_v = compare((u8 *)SCRATCH_PA, (u8 *)VM_PA, vsize, &first_v);
	bad_g = compare((u8 *)G_PA, (u8 *)GM_PA, G_SIZE, &first_g);
	bad_s = compare_sink(&first_s);
	if (!bad_g)
		first_g = first_s;
	bad_g += bad_s;
	status->verifies++;
	status->verified_kib += (G_SIZE + SINK_SIZE + vsize) / 1024;
	status->bad_guest += bad_g;
	status->bad_dev += bad_v;
	print("E2E VERIFY %s batches=%u submitted=%u guest_bytes=%u dev_bytes=%u bad_guest=%u first_guest=%x bad_dev=%u first_dev=%x fence_lost=%u\n",
	      why, status->batches, status->submitted, G_SIZE + SINK_SIZE,
	      vsize, bad_g,
	      first_g, bad_v, first_v, status->fence_lost);
}

/* ---- setup ---------------------------------------------------------------- */

static u32 find_device(void)
{
	u32 dev;

	for (dev = 0; dev < 32; dev++) {
		u32 id = cfg_read32(dev << 3, 0);

		if ((id & 0xffff) == MBLIT_VENDOR && (id >> 16) == MBLIT_DEVICE)
			return dev << 3;
	}
	print("E2E FAIL no mblit device on bus 0\n");
	halt();
	return 0;
}

static void setup_device(void)
{
	u32 bdf = find_device();
	u32 mib, off;

	/* Memory space and bus master (the engine runs only with it). */
	cfg_write32(bdf, 0x04, (cfg_read32(bdf, 0x04) & 0xffff) | 0x6);
	bar0 = (volatile u8 *)(cfg_read32(bdf, 0x10) & ~0xfu);
	mib = cfg_read32(bdf, 0x2c) >> 16;
	vsize = mib * 0x100000u;
	if (vsize > V_MAX)
		vsize = V_MAX;
	if (rd32(REG_ID) != MBLIT_ID) {
		print("E2E FAIL BAR0 at %x does not read ID\n", (u32)bar0);
		halt();
	}

	wr32(REG_CTRL, CTRL_RESET);
	wr32(REG_INT_MASK, 0x3);
	wr32(REG_RING_BASE, RING_PA);
	wr32(REG_RING_BASE + 4, 0);
	wr32(REG_RING_SIZE, RING_SLOTS);
	wr32(REG_CTRL, CTRL_ENABLE);
	tail = rd32(REG_RING_HEAD);
	if (rd32(REG_STATUS) & STATUS_ERROR)
		fail("enabling the ring");

	/* A known start: G, the sink and device memory zeroed by the engine. */
	for (off = 0; off < G_SIZE; off += XFER_MAX)
		put(OP_FILL, 0, XFER_MAX, G_PA + off, 0);
	put(OP_FILL, 0, SINK_SIZE, SINK_PA, 0);
	put(OP_FILL, FLAG_DST_DEV, vsize, 0, 0);
	run_batch();
	memset((void *)GM_PA, 0, G_SIZE);
	memset((void *)VM_PA, 0, vsize);
	print("E2E READY device=%x bar0=%x vram_mib=%u used=%u\n", bdf,
	      (u32)bar0, mib, vsize);
}

void guest_main(void)
{
	memset((void *)STATUS_PA, 0, sizeof(struct e2e_status));
	status->magic = 0x53453245; /* "E2ES" */
	setup_device();
	verify("start");
	status->phase = 1;

	for (;;) {
		int c;

		batch();
		status->batches++;
		if (status->batches % 16 == 0)
			print("E2E PROGRESS batches=%u submitted=%u\n",
			      status->batches, status->submitted);
		if (status->batches % 512 == 0)
			verify("periodic");
		c = getc_serial();
		if (c == 'v') {
			verify("asked");
		} else if (c == 'q') {
			verify("final");
			status->phase = 2;
			print("E2E DONE batches=%u submitted=%u verified_kib=%u bad_guest=%u bad_dev=%u fence_lost=%u\n",
			      status->batches, status->submitted,
			      status->verified_kib, status->bad_guest,
			      status->bad_dev, status->fence_lost);
			halt();
		}
	}
}
