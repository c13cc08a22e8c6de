// SPDX-License-Identifier: GPL-2.0
/*
 * mblit benchmarks (make bench): one test, bench.all, run in the benchmark
 * VM (scripts/bench: the non-debug kernel, 2 vCPUs, 3 GiB, QEMU TCG) with
 * mdev, mblit and mtty loaded.  It measures and reports; it fails only when
 * something does not work (a syscall fails, restored device memory is not
 * byte-exact), never because a figure misses its goal.
 *
 *  regs.*     the trapped register path: ns per pread()/pwrite() of 1, 4
 *             and 8 bytes on BAR0 (SCRATCH0) and per 4-byte config-space
 *             read, against the same calls on mtty's BAR0 (UART registers
 *             whose accesses have no side effect, DLAB set);
 *  stream.*   saving and restoring a mblit-256m device with every page
 *             written: VFIO migration v2 (PRE_COPY read to ENOMSG,
 *             STOP_COPY read to EOF; RESUMING, 1 MiB writes, STOP,
 *             RUNNING) and the DEVICE_STATE region (stop and read the
 *             state; write it and start), against memcpy() of the 256 MiB;
 *  downtime.* pre-copy loaded into a RESUMING destination, then 0, 1, 10
 *             and 100 % of the pages dirtied, then the final step timed as
 *             QEMU takes it (STOP_COPY read to EOF into the destination,
 *             STOP, RUNNING); stop-copy bytes against the format's bound;
 *  engine.*   FILL and COPY in every direction, MB/s, against memcpy();
 *  memory.*   free memory (MemFree plus the per-CPU free lists) used per
 *             idle mdev, per written byte of device memory and per pinned
 *             guest page (engines held inside a pin by a userfaultfd page,
 *             where the IOMMU back-end waits for the fault).
 *
 * MBLIT_BENCH_ROUNDS (default 5) rounds of each measurement, the mblit
 * figure and its reference back to back in each round; printed are the
 * medians, the median ratio and its spread over the rounds, as a table of
 * "# " lines and as one JSON document between MBLIT-BENCH-JSON-BEGIN and
 * MBLIT-BENCH-JSON-END.
 */
#include <dirent.h>
#include <math.h>
#include <stdarg.h>
#include <sys/syscall.h>

#include <linux/serial_reg.h>
#include <linux/userfaultfd.h>

#include "kselftest_harness.h"
#include "mblit_dev.h"
#include "mig_steps.h"
#include "mig_v2.h"

#define DD			MBLIT_FLAG_DST_DEV
#define SD			MBLIT_FLAG_SRC_DEV
#define DFD(d)			((d)->v.device_fd)

#define ROUNDS_DEFAULT		5
#define ROUNDS_MAX		50
/* Past this, sections run no further rounds (the run must stay < 20 min). */
#define SOFT_LIMIT_MS		(16 * 60 * 1000ULL)

#define SMALL_TYPE		"mblit-1m"
#define ENGINE_TYPE		"mblit-16m"
#define BIG_TYPE		"mblit-256m"

#define CHUNK			MB_MIB		/* data_fd and region I/O */
#define VRAM_WR_CHUNK		(4 * MB_MIB)	/* filling device memory */
#define SBUF_SIZE		(272 * MB_MIB)	/* a whole 256 MiB stream */

/* Register path: calls per sample, ~0.3 s each. */
#define REG_SAMPLE_NS		300000000.0
#define REG_CALLS_MIN		20000
#define REG_CALLS_MAX		200000
#define REG_CALIBRATE		2000

/* Engine: 1 MiB commands, a batch of ~0.5 s per sample. */
#define ENG_RING		64
#define ENG_CMDS_MIN		8
#define ENG_CMDS_MAX		ENG_RING
#define ENG_SRC_OFF		(1 * MB_MIB)	/* guest: read only */
#define ENG_CPY_OFF		(3 * MB_MIB)	/* guest: copy destinations */
#define ENG_FIL_OFF		(5 * MB_MIB)	/* guest: fill destinations */
#define ENG_PAT			0x5a3c96e1U
#define REF_AREAS		8		/* memcpy() reference: 8 MiB */

/* Memory */
#define MEM_READINGS		3
#define MEM_SETTLE_MS		300
#define IDLE_N			100
#define IDLE_BIG_N		2

/*
 * Pinned pages: HOLD_D mblit-1m devices, each with a 1 MiB guest->guest
 * COPY whose last source page is missing in a userfaultfd: the engine pins
 * the descriptor's page, 255 source and 255 destination pages, and waits
 * in the pin of the last one.
 */
#define HOLD_D			64
#define HOLD_PAGES		(MB_MIB / MB_PAGE)
#define HOLD_RING_IOVA		MB_EXTRA_IOVA
#define HOLD_SRC_IOVA		(MB_EXTRA_IOVA + MB_MIB)
#define HOLD_DST_IOVA		(MB_EXTRA_IOVA + 2 * MB_MIB)
/*
 * debugfs pinned_pages while a holder waits: the descriptor's page, and the
 * source and destination pages before the missing one (the page being
 * pinned shows once its pin returns).
 */
#define HOLD_PINS_SMALL		1ULL
#define HOLD_PINS_BIG		(1ULL + 2 * (HOLD_PAGES - 1))
#define HOLD_WAIT_MS		60000

#define MAX_ROWS		40

struct row {
	char name[48];
	const char *unit;
	double mb, mb_min, mb_max;	/* mblit: median, min, max */
	double ref;			/* reference: median */
	const char *ref_name;
	double ratio, rmin, rmax;	/* per-round ratio: median, min, max */
	char goal[64];			/* "" when there is none */
	int holds;			/* 1, 0, -1: not applicable */
	int rounds;
	char extra[320];		/* more JSON members: ,"k":v ... */
	char note[320];
};

struct memsnap {
	double free;	/* MemFree + pages on the per-CPU free lists, bytes */
	double slab;	/* Slab, bytes */
};

struct bench {
	int rounds;
	uint64_t deadline_ms;
	struct row rows[MAX_ROWS];
	int nrows;
	bool reported;

	struct mb_dev d[2];		/* regs, engine; stream source and dest */
	struct vfio_mdev mt;		/* mtty */
	char mt_uuid[MDEV_UUID_LEN + 1];
	bool mt_created;
	char idle[IDLE_N][MDEV_UUID_LEN + 1];
	int nidle;
	int fds[2];			/* data_fds: saving, resuming */

	/* pinned pages */
	struct mb_dev hold[HOLD_D];
	uint8_t *hold_ring, *hold_src, *hold_dst;
	int uffd;

	/* streams */
	uint64_t mem;
	uint8_t *img;			/* what the source's device memory holds */
	uint8_t *vbuf;			/* device memory read back; memcpy dest */
	uint8_t *sbuf;			/* a whole stream or state */
	uint8_t *rsrc, *rdst;		/* engine's memcpy() reference */
	struct vfio_region_info sr[2];	/* DEVICE_STATE regions */
};

/* ---- small helpers ------------------------------------------------------ */

static __printf(1, 2) void say(const char *fmt, ...)
{
	va_list ap;

	printf("# bench: ");
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
	fflush(stdout);
}

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000000000ULL + ts.tv_nsec;
}

static double ms_since(uint64_t t0)
{
	return (now_ns() - t0) / 1e6;
}

static int bench_rounds(void)
{
	const char *s = getenv("MBLIT_BENCH_ROUNDS");
	char *end;
	long v;

	if (!s || !*s)
		return ROUNDS_DEFAULT;
	v = strtol(s, &end, 10);
	if (*end || v < 1)
		return ROUNDS_DEFAULT;
	return v > ROUNDS_MAX ? ROUNDS_MAX : v;
}

/* Whether round @r (from 0) runs: the first always, others in the budget. */
static bool more_rounds(struct bench *b, int r, const char *what)
{
	if (r >= b->rounds)
		return false;
	if (!r || mb_now_ms() < b->deadline_ms)
		return true;
	say("%s: time budget of %llu s spent, %d of %d rounds run", what,
	    SOFT_LIMIT_MS / 1000, r, b->rounds);
	return false;
}

/* xorshift64 words: fast enough for 256 MiB under TCG.  @len % 8 == 0. */
static void fill_rand(uint64_t *seed, void *p, size_t len)
{
	uint64_t x = *seed, *q = p;
	size_t i;

	for (i = 0; i < len / 8; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		q[i] = x;
	}
	*seed = x;
}

/* A buffer, faulted in (free() it). */
static uint8_t *bench_alloc(struct __test_metadata *_metadata, size_t len)
{
	uint8_t *p = malloc(len);

	ASSERT_NE(NULL, p) TH_LOG("malloc(%zu): %s", len, strerror(errno));
	memset(p, 0xa5, len);
	return p;
}

static double memcpy_ms(void *dst, const void *src, size_t len)
{
	uint64_t t0 = now_ns();

	memcpy(dst, src, len);
	__asm__ __volatile__("" : : "r"(dst) : "memory");
	return ms_since(t0);
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static double median(const double *v, int n)
{
	double s[ROUNDS_MAX];	/* >= MEM_READINGS */

	if (n <= 0)
		return NAN;
	memcpy(s, v, n * sizeof(*v));
	qsort(s, n, sizeof(*s), cmp_double);
	return n % 2 ? s[n / 2] : (s[n / 2 - 1] + s[n / 2]) / 2;
}

static void minmax(const double *v, int n, double *lo, double *hi)
{
	int i;

	*lo = *hi = n > 0 ? v[0] : NAN;
	for (i = 1; i < n; i++) {
		if (v[i] < *lo)
			*lo = v[i];
		if (v[i] > *hi)
			*hi = v[i];
	}
}

/* Write @len bytes to @fd in write() calls of at most CHUNK. */
static void write_chunks(struct __test_metadata *_metadata, int fd,
			 const uint8_t *p, size_t len)
{
	size_t off = 0, n;
	ssize_t w;

	while (off < len) {
		n = len - off < CHUNK ? len - off : CHUNK;
		w = write(fd, p + off, n);
		ASSERT_LT(0, w) TH_LOG("data_fd write at %zu of %zu: %s", off,
				       len, w < 0 ? strerror(errno) : "0 bytes");
		off += w;
	}
}

/*
 * Move the stream of @in into @out through @buf, in read() calls of CHUNK:
 * to pre-copy's temporary end (ENOMSG) with @pre, else to EOF.  Bytes.
 */
static uint64_t pump(struct __test_metadata *_metadata, int in, int out,
		     uint8_t *buf, bool pre)
{
	uint64_t total = 0;
	ssize_t n;

	for (;;) {
		n = read(in, buf, CHUNK);
		if (n < 0 && pre && errno == ENOMSG)
			break;
		ASSERT_LE(0, n) TH_LOG("data_fd read: %s", strerror(errno));
		if (!n) {
			ASSERT_FALSE(pre) TH_LOG("end of stream in PRE_COPY");
			break;
		}
		write_chunks(_metadata, out, buf, n);
		total += n;
		ASSERT_GE(MIG_STREAM_MAX, total) TH_LOG("stream never ends");
	}
	return total;
}

/* Device memory of @d equals b->img, byte for byte. */
static void verify_vram(struct __test_metadata *_metadata, struct bench *b,
			struct mb_dev *d, const char *what)
{
	uint64_t i = 0;

	mb_read_vram(_metadata, d, b->vbuf);
	if (!memcmp(b->vbuf, b->img, b->mem)) {
		say("%s: destination device memory byte-exact", what);
		return;
	}
	while (i < b->mem && b->vbuf[i] == b->img[i])
		i++;
	ASSERT_TRUE(false)
		TH_LOG("%s: device memory differs from the source's, first at %#llx (%#04x, want %#04x)",
		       what, (unsigned long long)i, b->vbuf[i], b->img[i]);
}

/* ---- results ------------------------------------------------------------ */

static struct row *row_new(struct __test_metadata *_metadata, struct bench *b,
			   const char *name, const char *unit)
{
	struct row *r;

	ASSERT_GT(MAX_ROWS, b->nrows) TH_LOG("too many result rows");
	r = &b->rows[b->nrows++];
	memset(r, 0, sizeof(*r));
	snprintf(r->name, sizeof(r->name), "%s", name);
	r->unit = unit;
	r->mb = r->mb_min = r->mb_max = r->ref = NAN;
	r->ratio = r->rmin = r->rmax = NAN;
	r->holds = -1;
	return r;
}

/*
 * Per-round figures into @r: medians and spread of @mb (and @ref); the
 * ratio of each round is ref/mb with @ref_over_mb, else mb/ref.
 */
static void row_stats(struct row *r, const double *mb, const double *ref,
		      int n, bool ref_over_mb)
{
	double rat[ROUNDS_MAX];
	int i;

	r->rounds = n;
	r->mb = median(mb, n);
	minmax(mb, n, &r->mb_min, &r->mb_max);
	if (!ref)
		return;
	for (i = 0; i < n; i++)
		rat[i] = ref_over_mb ? ref[i] / mb[i] : mb[i] / ref[i];
	r->ref = median(ref, n);
	r->ratio = median(rat, n);
	minmax(rat, n, &r->rmin, &r->rmax);
}

static void row_goal_ratio(struct row *r, double min)
{
	snprintf(r->goal, sizeof(r->goal), ">= %.1f", min);
	r->holds = isnan(r->ratio) ? -1 : r->ratio >= min;
}

static void row_goal_max(struct row *r, const char *goal, double max)
{
	snprintf(r->goal, sizeof(r->goal), "%s", goal);
	r->holds = isnan(r->mb) ? -1 : r->mb <= max;
}

static __printf(2, 3) void row_extra(struct row *r, const char *fmt, ...)
{
	size_t n = strlen(r->extra);
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(r->extra + n, sizeof(r->extra) - n, fmt, ap);
	va_end(ap);
}

static int unit_prec(const char *unit)
{
	if (!strcmp(unit, "bytes/byte"))
		return 4;
	if (!strcmp(unit, "ns/call") || !strcmp(unit, "bytes"))
		return 0;
	return 1;
}

static void fmt_fig(char *buf, size_t len, double v, const char *unit)
{
	if (isnan(v))
		snprintf(buf, len, "n/a");
	else
		snprintf(buf, len, "%.*f %s", unit_prec(unit), v, unit);
}

static void json_str(const char *s)
{
	if (!s) {
		printf("null");
		return;
	}
	putchar('"');
	for (; *s; s++) {
		if (*s == '"' || *s == '\\')
			printf("\\%c", *s);
		else if ((unsigned char)*s < 0x20)
			printf("\\u%04x", *s);
		else
			putchar(*s);
	}
	putchar('"');
}

static void json_num(double v)
{
	if (isnan(v) || isinf(v))
		printf("null");
	else
		printf("%.10g", v);
}

static void json_row(const struct row *r, bool last)
{
	printf("{\"name\":");
	json_str(r->name);
	printf(",\"unit\":");
	json_str(r->unit);
	printf(",\"mblit\":");
	json_num(r->mb);
	printf(",\"reference\":");
	json_num(r->ref);
	printf(",\"reference_name\":");
	json_str(r->ref_name);
	printf(",\"ratio\":");
	json_num(r->ratio);
	printf(",\"ratio_min\":");
	json_num(r->rmin);
	printf(",\"ratio_max\":");
	json_num(r->rmax);
	printf(",\"goal\":");
	json_str(r->goal[0] ? r->goal : NULL);
	printf(",\"holds\":%s", r->holds < 0 ? "null" :
	       r->holds ? "true" : "false");
	printf(",\"rounds\":%d,\"mblit_min\":", r->rounds);
	json_num(r->mb_min);
	printf(",\"mblit_max\":");
	json_num(r->mb_max);
	printf(",\"note\":");
	json_str(r->note[0] ? r->note : NULL);
	printf("%s}%s\n", r->extra, last ? "" : ",");
}

/* The table (# lines), then the JSON document (plain lines). */
static void report(struct bench *b, bool incomplete)
{
	char mb[40], ref[64], ratio[16], spread[48];
	const struct row *r;
	int i;

	b->reported = true;
	printf("#\n# mblit benchmark%s: %d rounds; ratio = the reference's figure over mblit's for times, mblit's over the reference's for rates\n",
	       incomplete ? " (INCOMPLETE: the run failed)" : "", b->rounds);
	printf("# %-30s | %-18s | %-24s | %-6s | %-19s | %-24s | %s\n",
	       "name", "mblit", "reference", "ratio", "spread min-max",
	       "goal", "holds?");
	for (i = 0; i < b->nrows; i++) {
		r = &b->rows[i];
		fmt_fig(mb, sizeof(mb), r->mb, r->unit);
		if (r->ref_name && !isnan(r->ref))
			snprintf(ref, sizeof(ref), "%.*f %s (%s)",
				 unit_prec(r->unit), r->ref, r->unit,
				 r->ref_name);
		else
			snprintf(ref, sizeof(ref), "%s", r->ref_name ? "n/a" : "-");
		if (isnan(r->ratio)) {
			snprintf(ratio, sizeof(ratio), "-");
			if (r->rounds > 1)
				snprintf(spread, sizeof(spread), "%.*f-%.*f %s",
					 unit_prec(r->unit), r->mb_min,
					 unit_prec(r->unit), r->mb_max,
					 r->unit);
			else
				snprintf(spread, sizeof(spread), "-");
		} else {
			snprintf(ratio, sizeof(ratio), "%.2f", r->ratio);
			snprintf(spread, sizeof(spread), "%.2f-%.2f", r->rmin,
				 r->rmax);
		}
		printf("# %-30s | %-18s | %-24s | %-6s | %-19s | %-24s | %s\n",
		       r->name, mb, ref, ratio, spread,
		       r->goal[0] ? r->goal : "-",
		       r->holds < 0 ? "-" : r->holds ? "yes" : "NO");
	}
	for (i = 0; i < b->nrows; i++)
		if (b->rows[i].note[0])
			printf("#   %s: %s\n", b->rows[i].name, b->rows[i].note);
	printf("#\nMBLIT-BENCH-JSON-BEGIN\n");
	printf("{\"version\":1,\"rounds\":%d,\"complete\":%s,\"results\":[\n",
	       b->rounds, incomplete ? "false" : "true");
	for (i = 0; i < b->nrows; i++)
		json_row(&b->rows[i], i + 1 == b->nrows);
	printf("]}\nMBLIT-BENCH-JSON-END\n");
	fflush(stdout);
}

/* ---- memory readings ---------------------------------------------------- */

/*
 * Free what can be freed and fold the counters: page cache and shrinkable
 * slab (drop_caches), every slab cache's per-CPU and empty slabs
 * (/sys/kernel/slab/<cache>/shrink), the per-CPU vmstat deltas
 * (stat_refresh).  Best effort: a file that is missing is skipped.
 */
static void mem_settle(void)
{
	char path[MDEV_PATH_MAX];
	struct dirent *de;
	DIR *dir;

	sync();
	sysfs_write_str("/proc/sys/vm/drop_caches", "3");
	dir = opendir("/sys/kernel/slab");
	if (dir) {
		while ((de = readdir(dir))) {
			if (de->d_name[0] == '.')
				continue;
			snprintf(path, sizeof(path), "/sys/kernel/slab/%s/shrink",
				 de->d_name);
			sysfs_write_str(path, "1");
		}
		closedir(dir);
	}
	sysfs_write_str("/proc/sys/vm/stat_refresh", "1");
	mb_sleep_ms(MEM_SETTLE_MS);
	sysfs_write_str("/proc/sys/vm/stat_refresh", "1");
}

/*
 * MemFree and Slab.  Pages on the per-CPU free lists are free but not in
 * MemFree: their count (/proc/zoneinfo) is added, or they would be noise
 * of megabytes.
 */
static int mem_read(struct memsnap *m)
{
	unsigned long long kb, n, free_kb = 0, slab_kb = 0, pcp = 0;
	char line[256];
	FILE *f;

	f = fopen("/proc/meminfo", "re");
	if (!f)
		return -errno;
	while (fgets(line, sizeof(line), f)) {
		if (sscanf(line, "MemFree: %llu kB", &kb) == 1)
			free_kb = kb;
		else if (sscanf(line, "Slab: %llu kB", &kb) == 1)
			slab_kb = kb;
	}
	fclose(f);
	f = fopen("/proc/zoneinfo", "re");
	if (f) {
		while (fgets(line, sizeof(line), f))
			if (sscanf(line, " count: %llu", &n) == 1)
				pcp += n;
		fclose(f);
	}
	m->free = free_kb * 1024.0 + pcp * (double)MB_PAGE;
	m->slab = slab_kb * 1024.0;
	return free_kb ? 0 : -EIO;
}

/* The median of MEM_READINGS settled readings. */
static void mem_measure(struct __test_metadata *_metadata, struct memsnap *m)
{
	double fr[MEM_READINGS], sl[MEM_READINGS];
	struct memsnap s = { 0 };
	int i;

	for (i = 0; i < MEM_READINGS; i++) {
		mem_settle();
		ASSERT_EQ(0, mem_read(&s)) TH_LOG("reading /proc/meminfo");
		fr[i] = s.free;
		sl[i] = s.slab;
	}
	m->free = median(fr, MEM_READINGS);
	m->slab = median(sl, MEM_READINGS);
}

/* ---- 1. the trapped register path ---------------------------------------- */

struct reg_case {
	const char *name;
	bool wr, cfg;
	int w;
	uint32_t mb_off;	/* mblit: BAR0 or config offset */
	uint32_t mt_off;	/* mtty: BAR0 or config offset */
};

/*
 * mblit: SCRATCH0, which has no effect and takes 1, 2, 4 and 8 bytes.
 * mtty (samples/vfio-mdev/mtty.c) with LCR.DLAB set: SCR (7) stores a
 * byte; a 4-byte access at 4 is one access of MCR, which stores (0, its
 * reset value, with no interrupt enabled) or returns it; an 8-byte access
 * at 0 is split by mtty_read/mtty_write into two 4-byte ones: the divisor
 * latch (DLAB: a write ORs 0 into it) and MCR.
 */
static const struct reg_case reg_cases[] = {
	{ "regs.read.1B", false, false, 1, MBLIT_REG_SCRATCH0, UART_SCR },
	{ "regs.read.4B", false, false, 4, MBLIT_REG_SCRATCH0, UART_MCR },
	{ "regs.read.8B", false, false, 8, MBLIT_REG_SCRATCH0, UART_RX },
	{ "regs.write.1B", true, false, 1, MBLIT_REG_SCRATCH0, UART_SCR },
	{ "regs.write.4B", true, false, 4, MBLIT_REG_SCRATCH0, UART_MCR },
	{ "regs.write.8B", true, false, 8, MBLIT_REG_SCRATCH0, UART_RX },
	{ "regs.config_read.4B", false, true, 4, 0, 0 },
};

#define NREG	ARRAY_SIZE(reg_cases)

/* @n calls of one access: ns per call; NAN and *err on a failure. */
static double time_calls(int fd, bool wr, uint64_t pos, int w, long n,
			 int *err)
{
	uint64_t v = 0, t0 = now_ns();
	ssize_t r;
	long i;

	for (i = 0; i < n; i++) {
		r = wr ? pwrite(fd, &v, w, pos) : pread(fd, &v, w, pos);
		if (r != w) {
			*err = r < 0 ? errno : EIO;
			return NAN;
		}
	}
	*err = 0;
	return (double)(now_ns() - t0) / n;
}

/* Create and open an mtty mdev (type1), DLAB set: 0 or a reason in @why. */
static int mtty_open(struct bench *b, struct vfio_region_info *bar0,
		     struct vfio_region_info *cfg, char *why, size_t len)
{
	static const char *const types[] = { "mtty-1", "mtty-2" };
	uint8_t lcr = UART_LCR_DLAB;
	unsigned int i;
	int ret = -ENOENT;

	for (i = 0; i < ARRAY_SIZE(types) && ret; i++)
		ret = mdev_create(types[i], b->mt_uuid);
	if (ret) {
		snprintf(why, len, "no mtty mdev: %s", mdev_lib_error());
		return ret;
	}
	b->mt_created = true;
	ret = vfio_mdev_open(&b->mt, b->mt_uuid, VFIO_BACKEND_TYPE1);
	if (!ret)
		ret = vfio_mdev_region_info(&b->mt, VFIO_PCI_BAR0_REGION_INDEX,
					    bar0);
	if (!ret)
		ret = vfio_mdev_region_info(&b->mt,
					    VFIO_PCI_CONFIG_REGION_INDEX, cfg);
	if (ret) {
		snprintf(why, len, "mtty: %s", mdev_lib_error());
		return ret;
	}
	if (pwrite(b->mt.device_fd, &lcr, 1, bar0->offset + UART_LCR) != 1) {
		ret = -errno;
		snprintf(why, len, "mtty: setting LCR.DLAB: %s",
			 strerror(errno));
	}
	return ret;
}

static void mtty_close(struct bench *b)
{
	vfio_mdev_close(&b->mt);
	if (b->mt_created)
		mdev_remove(b->mt_uuid);
	b->mt_created = false;
}

static void bench_regs(struct __test_metadata *_metadata, struct bench *b)
{
	static double mbv[NREG][ROUNDS_MAX], mtv[NREG][ROUNDS_MAX];
	struct vfio_region_info mt_bar0, mt_cfg;
	char why[200] = "", mt_why[NREG][120];
	bool mt_ok[NREG], have_mt;
	struct mb_dev *d = &b->d[0];
	uint64_t pos;
	unsigned int c;
	double ns;
	long n;
	int r, err, nr = 0;
	struct row *row;

	say("regs: opening %s and an mtty mdev", SMALL_TYPE);
	mb_open(_metadata, d, SMALL_TYPE, VFIO_BACKEND_TYPE1);
	have_mt = !mtty_open(b, &mt_bar0, &mt_cfg, why, sizeof(why));
	if (!have_mt)
		say("regs: reference not available: %s", why);

	ns = time_calls(DFD(d), false, d->bar0.offset + MBLIT_REG_SCRATCH0, 4,
			REG_CALIBRATE, &err);
	ASSERT_EQ(0, err) TH_LOG("BAR0 read: %s", strerror(err));
	n = REG_SAMPLE_NS / ns;
	n = n < REG_CALLS_MIN ? REG_CALLS_MIN :
	    n > REG_CALLS_MAX ? REG_CALLS_MAX : n;
	say("regs: %.0f ns per 4-byte BAR0 read: %ld calls per sample", ns, n);

	for (c = 0; c < NREG; c++) {
		const struct reg_case *k = &reg_cases[c];

		mt_ok[c] = have_mt;
		snprintf(mt_why[c], sizeof(mt_why[c]), "%s", why);
		if (!have_mt)
			continue;
		pos = (k->cfg ? mt_cfg.offset : mt_bar0.offset) + k->mt_off;
		time_calls(b->mt.device_fd, k->wr, pos, k->w, 1, &err);
		if (err) {
			mt_ok[c] = false;
			snprintf(mt_why[c], sizeof(mt_why[c]),
				 "mtty refuses this access: %s",
				 strerror(err));
		}
	}

	for (r = 0; more_rounds(b, r, "regs"); r++, nr++) {
		for (c = 0; c < NREG; c++) {
			const struct reg_case *k = &reg_cases[c];

			pos = (k->cfg ? d->cfg.offset : d->bar0.offset) +
			      k->mb_off;
			mbv[c][r] = time_calls(DFD(d), k->wr, pos, k->w, n,
					       &err);
			ASSERT_EQ(0, err) TH_LOG("%s on mblit: %s", k->name,
						 strerror(err));
			if (!mt_ok[c])
				continue;
			pos = (k->cfg ? mt_cfg.offset : mt_bar0.offset) +
			      k->mt_off;
			mtv[c][r] = time_calls(b->mt.device_fd, k->wr, pos,
					       k->w, n, &err);
			if (err) {
				mt_ok[c] = false;
				snprintf(mt_why[c], sizeof(mt_why[c]),
					 "mtty failed it in round %d: %s",
					 r + 1, strerror(err));
			}
		}
		say("regs: round %d/%d: read 1/4/8B %.0f/%.0f/%.0f ns, write 1/4/8B %.0f/%.0f/%.0f ns, config %.0f ns",
		    r + 1, b->rounds, mbv[0][r], mbv[1][r], mbv[2][r],
		    mbv[3][r], mbv[4][r], mbv[5][r], mbv[6][r]);
	}

	for (c = 0; c < NREG; c++) {
		row = row_new(_metadata, b, reg_cases[c].name, "ns/call");
		row->ref_name = "mtty";
		row_stats(row, mbv[c], mt_ok[c] ? mtv[c] : NULL, nr, true);
		row_goal_ratio(row, 1.0);
		row_extra(row, ",\"calls_per_sample\":%ld", n);
		if (!mt_ok[c])
			snprintf(row->note, sizeof(row->note),
				 "reference n/a: %.119s", mt_why[c]);
		else if (reg_cases[c].w == 8)
			snprintf(row->note, sizeof(row->note),
				 "mtty splits an 8-byte access into two 4-byte register accesses; mblit makes one");
	}
	mtty_close(b);
	mb_close(_metadata, d);
	mb_init(d);
}

/* ---- 5. the engine ------------------------------------------------------- */

enum { E_FILL_G, E_FILL_D, E_COPY_GG, E_COPY_GD, E_COPY_DG, E_COPY_DD,
	E_NOPS };

static const char *const eng_names[E_NOPS] = {
	"engine.fill.guest", "engine.fill.device",
	"engine.copy.guest_to_guest", "engine.copy.guest_to_device",
	"engine.copy.device_to_guest", "engine.copy.device_to_device",
};

/* Command @i of a batch of @op: 1 MiB each, over two guest MiB or 8 MiB. */
static struct mblit_desc eng_desc(int op, unsigned int i)
{
	uint64_t g = MB_IOVA + (i % 2) * MB_MIB, dv = (i % 8) * MB_MIB;

	switch (op) {
	case E_FILL_G:
		return mb_fill(g + ENG_FIL_OFF, MB_MIB, ENG_PAT + i, 0);
	case E_FILL_D:
		return mb_fill(dv, MB_MIB, ENG_PAT + i, DD);
	case E_COPY_GG:
		return mb_copy(g + ENG_CPY_OFF, g + ENG_SRC_OFF, MB_MIB, 0);
	case E_COPY_GD:
		return mb_copy(dv, g + ENG_SRC_OFF, MB_MIB, DD);
	case E_COPY_DG:
		return mb_copy(g + ENG_CPY_OFF, dv, MB_MIB, SD);
	default:
		return mb_copy(8 * MB_MIB + dv, dv, MB_MIB, DD | SD);
	}
}

/* Run @n commands of @op in one batch: ms. */
static double eng_run(struct __test_metadata *_metadata, struct mb_dev *d,
		      int op, unsigned int n)
{
	struct mblit_desc x[ENG_CMDS_MAX];
	unsigned int i;
	uint64_t t0;

	for (i = 0; i < n; i++)
		x[i] = eng_desc(op, i);
	t0 = now_ns();
	/* Timing only: the model does not follow (eng_check checks). */
	mb_submit_bad(_metadata, d, x, n);
	mb_wait_done(_metadata, d);
	return ms_since(t0);
}

/* The last command of a batch wrote what it must. */
static void eng_check(struct __test_metadata *_metadata, struct mb_dev *d,
		      int op, unsigned int n, uint8_t *want, uint8_t *got)
{
	struct mblit_desc x = eng_desc(op, n - 1);
	uint32_t k;

	if (x.opcode == MBLIT_OP_FILL)
		for (k = 0; k < x.len; k++)
			want[k] = x.src >> (8 * (k & 3));
	else if (x.flags & SD)
		mb_bar2_rd(_metadata, d, x.src, want, x.len);
	else
		memcpy(want, d->buf + (x.src - MB_IOVA), x.len);
	if (x.flags & DD)
		mb_bar2_rd(_metadata, d, x.dst, got, x.len);
	else
		memcpy(got, d->buf + (x.dst - MB_IOVA), x.len);
	ASSERT_EQ(0, memcmp(want, got, x.len))
		TH_LOG("%s: the destination of the last command is wrong",
		       eng_names[op]);
}

static double ref_memcpy_ms(struct bench *b, unsigned int n)
{
	uint64_t t0 = now_ns();
	unsigned int i;

	for (i = 0; i < n; i++)
		memcpy(b->rdst + (i % REF_AREAS) * MB_MIB,
		       b->rsrc + ((i + 3) % REF_AREAS) * MB_MIB, MB_MIB);
	__asm__ __volatile__("" : : "r"(b->rdst) : "memory");
	return ms_since(t0);
}

static void bench_engine(struct __test_metadata *_metadata, struct bench *b)
{
	static double ev[E_NOPS][ROUNDS_MAX], rv[E_NOPS][ROUNDS_MAX];
	struct mb_dev *d = &b->d[0];
	uint8_t *want, *got;
	uint64_t seed = 0x9e3779b97f4a7c15ULL;
	double ms, mibs;
	unsigned int n;
	int op, r, nr = 0;
	struct row *row;

	say("engine: opening %s", ENGINE_TYPE);
	mb_open(_metadata, d, ENGINE_TYPE, VFIO_BACKEND_TYPE1);
	mb_ring_setup(_metadata, d, ENG_RING);
	b->rsrc = bench_alloc(_metadata, REF_AREAS * MB_MIB);
	b->rdst = bench_alloc(_metadata, REF_AREAS * MB_MIB);
	fill_rand(&seed, b->rsrc, REF_AREAS * MB_MIB);
	want = bench_alloc(_metadata, MB_MIB);
	got = bench_alloc(_metadata, MB_MIB);

	/* Calibrate: a batch of about half a second. */
	ms = eng_run(_metadata, d, E_COPY_GG, ENG_CMDS_MIN);
	mibs = ENG_CMDS_MIN / (ms / 1000);
	n = mibs / 2;
	n = n < ENG_CMDS_MIN ? ENG_CMDS_MIN : n > ENG_CMDS_MAX ? ENG_CMDS_MAX : n;
	say("engine: guest->guest COPY at %.1f MiB/s: batches of %u commands of 1 MiB",
	    mibs, n);

	for (r = 0; more_rounds(b, r, "engine"); r++, nr++) {
		for (op = 0; op < E_NOPS; op++) {
			ms = eng_run(_metadata, d, op, n);
			ev[op][r] = n * (double)MB_MIB / 1e6 / (ms / 1000);
			if (!r)
				eng_check(_metadata, d, op, n, want, got);
			ms = ref_memcpy_ms(b, n);
			rv[op][r] = n * (double)MB_MIB / 1e6 / (ms / 1000);
		}
		say("engine: round %d/%d: fill g/d %.1f/%.1f, copy gg/gd/dg/dd %.1f/%.1f/%.1f/%.1f MB/s (memcpy %.1f MB/s)",
		    r + 1, b->rounds, ev[0][r], ev[1][r], ev[2][r], ev[3][r],
		    ev[4][r], ev[5][r], rv[0][r]);
	}
	for (op = 0; op < E_NOPS; op++) {
		row = row_new(_metadata, b, eng_names[op], "MB/s");
		row->ref_name = "memcpy";
		row_stats(row, ev[op], rv[op], nr, false);
		row_extra(row, ",\"bytes_per_sample\":%llu,\"command_bytes\":%llu",
			  (unsigned long long)(n * MB_MIB),
			  (unsigned long long)MB_MIB);
	}
	free(want);
	free(got);
	free(b->rsrc);
	free(b->rdst);
	b->rsrc = b->rdst = NULL;
	mb_engine_reset(_metadata, d);
	mb_close(_metadata, d);
	mb_init(d);
}

/* ---- 6. memory ------------------------------------------------------------ */

/* @count idle (never opened) mdevs of @type. */
static void bench_mem_idle(struct __test_metadata *_metadata, struct bench *b,
			   const char *type, int count, const char *name,
			   double goal)
{
	struct memsnap m0, m1;
	struct row *row;
	int i;

	say("memory: %d idle %s mdevs", count, type);
	mem_measure(_metadata, &m0);
	for (i = 0; i < count; i++) {
		ASSERT_EQ(0, mdev_create(type, b->idle[i]))
			TH_LOG("create %s number %d: %s", type, i + 1,
			       mdev_lib_error());
		b->nidle = i + 1;
	}
	mem_measure(_metadata, &m1);
	for (i = b->nidle - 1; i >= 0; i--) {
		ASSERT_EQ(0, mdev_remove(b->idle[i])) TH_LOG("%s",
							    mdev_lib_error());
		b->nidle = i;
	}
	row = row_new(_metadata, b, name, "bytes");
	row->rounds = 1;
	row->mb = row->mb_min = row->mb_max = (m0.free - m1.free) / count;
	if (goal > 0) {
		char g[32];

		snprintf(g, sizeof(g), "<= %.0f", goal);
		row_goal_max(row, g, goal);
	}
	row_extra(row, ",\"mdevs\":%d,\"slab_per_mdev\":%.0f", count,
		  (m1.slab - m0.slab) / count);
	snprintf(row->note, sizeof(row->note),
		 "%d mdevs of %s created, none opened; free memory (MemFree + per-CPU lists) %.0f -> %.0f bytes, Slab %+.0f bytes per mdev",
		 count, type, m0.free, m1.free, (m1.slab - m0.slab) / count);
	say("memory: %s: %.0f bytes per idle mdev (Slab %+.0f)", type,
	    row->mb, (m1.slab - m0.slab) / count);
}

/* The guest memory of the held commands: returns 0 or -errno. */
static int hold_areas(struct bench *b)
{
	struct uffdio_api api = { .api = UFFD_API };
	struct uffdio_register reg = { .mode = UFFDIO_REGISTER_MODE_MISSING };
	const int prot = PROT_READ | PROT_WRITE;
	const int fl = MAP_PRIVATE | MAP_ANONYMOUS;

	if (b->uffd >= 0)
		return 0;
	b->hold_ring = mmap(NULL, HOLD_D * MB_PAGE, prot, fl | MAP_POPULATE,
			    -1, 0);
	b->hold_dst = mmap(NULL, MB_MIB, prot, fl | MAP_POPULATE, -1, 0);
	b->hold_src = mmap(NULL, MB_MIB, prot, fl, -1, 0);
	if (b->hold_ring == MAP_FAILED || b->hold_dst == MAP_FAILED ||
	    b->hold_src == MAP_FAILED)
		return -ENOMEM;
	b->uffd = syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
	if (b->uffd < 0)
		return -errno;
	if (ioctl(b->uffd, UFFDIO_API, &api))
		return -errno;
	/* The last source page only, before the others are touched. */
	reg.range.start = (uintptr_t)b->hold_src + MB_MIB - MB_PAGE;
	reg.range.len = MB_PAGE;
	if (ioctl(b->uffd, UFFDIO_REGISTER, &reg))
		return -errno;
	memset(b->hold_src, 0x5a, MB_MIB - MB_PAGE);
	memset(b->hold_dst, 0, MB_MIB);
	return 0;
}

/* Device @i of the holders: @backend, ring and both areas mapped. */
static void hold_open(struct __test_metadata *_metadata, struct bench *b,
		      int i, enum vfio_backend backend)
{
	struct mb_dev *d = &b->hold[i];
	uint8_t *ring = b->hold_ring + i * MB_PAGE;

	mb_init(d);
	mb_create_open(_metadata, d, SMALL_TYPE, backend);
	ASSERT_EQ(0, vfio_mdev_dma_map(&d->v, ring, HOLD_RING_IOVA, MB_PAGE))
		TH_LOG("%s", mdev_lib_error());
	ASSERT_EQ(0, vfio_mdev_dma_map(&d->v, b->hold_src, HOLD_SRC_IOVA,
				       MB_MIB))
		TH_LOG("%s", mdev_lib_error());
	ASSERT_EQ(0, vfio_mdev_dma_map(&d->v, b->hold_dst, HOLD_DST_IOVA,
				       MB_MIB))
		TH_LOG("%s", mdev_lib_error());
	d->mapped = true;
	mb_set_command(_metadata, d, PCI_COMMAND_MASTER, 0);
	memset(ring, 0, MB_PAGE);
	mb_ring_setup_at(_metadata, d, HOLD_RING_IOVA, ring, 4);
}

static void hold_close_all(struct __test_metadata *_metadata, struct bench *b)
{
	int i;

	for (i = 0; i < HOLD_D; i++) {
		mb_close(_metadata, &b->hold[i]);
		mb_init(&b->hold[i]);
	}
}

/*
 * A COPY that stops in the pin of the missing page: @big, 1 MiB from the
 * start of the source area (HOLD_PINS_BIG pages in debugfs when it waits),
 * else that page alone (HOLD_PINS_SMALL).  The model does not follow: the
 * IOVAs are outside the guest buffer it covers.
 */
static void hold_submit(struct __test_metadata *_metadata, struct mb_dev *d,
			bool big)
{
	struct mblit_desc x;

	if (big)
		x = mb_copy(HOLD_DST_IOVA, HOLD_SRC_IOVA, MB_MIB, 0);
	else
		x = mb_copy(HOLD_DST_IOVA, HOLD_SRC_IOVA + MB_MIB - MB_PAGE,
			    MB_PAGE, 0);
	mb_submit(_metadata, d, &x, 1);
}

/*
 * Wait until each of the first @n holders has @want pages in debugfs
 * pinned_pages: 0; the STATUS of the first that stopped on an error (its
 * index in *who); or -ETIMEDOUT.  *total: the sum at the end.
 */
static int hold_wait(struct __test_metadata *_metadata, struct bench *b,
		     int n, uint64_t want, int *who, uint64_t *total)
{
	uint64_t end = mb_now_ms() + HOLD_WAIT_MS, v;
	struct mb_dev *d;
	uint32_t st;
	int i, held;

	for (;;) {
		held = 0;
		*total = 0;
		for (i = 0; i < n; i++) {
			d = &b->hold[i];
			st = RD32(MBLIT_REG_STATUS);
			if (st & MBLIT_STATUS_ERROR) {
				*who = i;
				return st;
			}
			v = mb_debugfs(_metadata, d, "pinned_pages");
			*total += v;
			held += v == want;
		}
		if (held == n)
			return 0;
		if (mb_now_ms() > end)
			return -ETIMEDOUT;
		mb_sleep_ms(10);
	}
}

/* Resolve the missing page: the held engines go on. */
static void hold_release(struct __test_metadata *_metadata, struct bench *b)
{
	struct uffdio_copy cp = {
		.dst = (uintptr_t)b->hold_src + MB_MIB - MB_PAGE,
		.src = (uintptr_t)b->hold_dst,
		.len = MB_PAGE,
	};
	int tries = 0;

	while (ioctl(b->uffd, UFFDIO_COPY, &cp)) {
		if (errno == EEXIST)
			break;
		ASSERT_EQ(EAGAIN, errno) TH_LOG("UFFDIO_COPY: %s",
						strerror(errno));
		ASSERT_GT(1000, ++tries) TH_LOG("UFFDIO_COPY: EAGAIN");
		cp.copy = 0;
	}
}

/* After the engines finished: the page is missing again. */
static void hold_rearm(struct __test_metadata *_metadata, struct bench *b)
{
	ASSERT_EQ(0, madvise(b->hold_src + MB_MIB - MB_PAGE, MB_PAGE,
			     MADV_DONTNEED))
		TH_LOG("madvise(MADV_DONTNEED): %s", strerror(errno));
}

/* Release, let the first @n holders finish, re-arm. */
static void hold_finish(struct __test_metadata *_metadata, struct bench *b,
			int n)
{
	int i;

	hold_release(_metadata, b);
	for (i = 0; i < n; i++)
		mb_wait_done(_metadata, &b->hold[i]);
	hold_rearm(_metadata, b);
}

/*
 * Hold all HOLD_D engines with @big and measure.  0, or a reason in the
 * row's note (the engines are let go).
 */
static int hold_state(struct __test_metadata *_metadata, struct bench *b,
		      bool big, struct memsnap *m, uint64_t *pinned,
		      struct row *row)
{
	uint64_t want = big ? HOLD_PINS_BIG : HOLD_PINS_SMALL;
	int i, who = 0, ret;

	for (i = 0; i < HOLD_D; i++)
		hold_submit(_metadata, &b->hold[i], big);
	ret = hold_wait(_metadata, b, HOLD_D, want, &who, pinned);
	if (ret) {
		snprintf(row->note, sizeof(row->note),
			 "n/a: %d engines did not all hold %llu pages (%s; %llu pinned in all)",
			 HOLD_D, (unsigned long long)want,
			 ret == -ETIMEDOUT ? "timeout" : "an engine error",
			 (unsigned long long)*pinned);
		hold_release(_metadata, b);
		return ret;
	}
	mem_measure(_metadata, m);
	/* Still held as the readings were taken. */
	ret = hold_wait(_metadata, b, HOLD_D, want, &who, pinned);
	if (ret) {
		snprintf(row->note, sizeof(row->note),
			 "n/a: the engines let go of their pins during the readings (%llu pinned)",
			 (unsigned long long)*pinned);
		hold_release(_metadata, b);
		return ret;
	}
	hold_finish(_metadata, b, HOLD_D);
	return 0;
}

/*
 * Free memory per pinned guest page: HOLD_D engines held with
 * HOLD_PINS_SMALL pages each (state A), then with HOLD_PINS_BIG (state
 * B): both have the same devices, files and blocked workers, so the
 * difference is the pins alone.  A probe with one device first: where the
 * back-end does not wait for the missing page, the engine stops on an
 * error and the row is n/a with the reason.
 */
static void bench_mem_pins(struct __test_metadata *_metadata, struct bench *b,
			   enum vfio_backend backend)
{
	const char *be = vfio_backend_name(backend);
	struct memsnap ma, mbig;
	uint64_t pa = 0, pb = 0, pages;
	struct mb_dev *d;
	char name[48];
	struct row *row;
	int i, who = 0, ret;

	snprintf(name, sizeof(name), "memory.per_pinned_page.%s", be);
	row = row_new(_metadata, b, name, "bytes");
	row_goal_max(row, "<= 32", 32);
	ret = hold_areas(b);
	if (ret) {
		snprintf(row->note, sizeof(row->note),
			 "n/a: no userfaultfd to hold the engine with: %s",
			 strerror(-ret));
		say("memory: %s: %s", name, row->note);
		return;
	}

	say("memory: pins through %s: probing with one device", be);
	hold_open(_metadata, b, 0, backend);
	hold_submit(_metadata, &b->hold[0], true);
	ret = hold_wait(_metadata, b, 1, HOLD_PINS_BIG, &who, &pa);
	if (ret > 0) {
		d = &b->hold[0];
		snprintf(row->note, sizeof(row->note),
			 "n/a: %s did not wait for the userfaultfd page: the engine stopped with error %#x at ERR_ADDR %#llx (%llu pages were pinned) instead of waiting in the pin, so pins cannot be held long enough to measure (a command keeps its pins only while it runs)",
			 be, MBLIT_STATUS_ERR_CODE(ret),
			 (unsigned long long)RD64(MBLIT_REG_ERR_ADDR),
			 (unsigned long long)pa);
		mb_engine_reset(_metadata, d);
		hold_release(_metadata, b);
		hold_rearm(_metadata, b);
		hold_close_all(_metadata, b);
		say("memory: %s: %s", name, row->note);
		return;
	}
	if (ret) {
		snprintf(row->note, sizeof(row->note),
			 "n/a: %s: the engine neither held %llu pages nor stopped in %d s (%llu pinned)",
			 be, HOLD_PINS_BIG, HOLD_WAIT_MS / 1000,
			 (unsigned long long)pa);
		hold_release(_metadata, b);
		hold_close_all(_metadata, b);
		hold_rearm(_metadata, b);
		say("memory: %s: %s", name, row->note);
		return;
	}
	hold_finish(_metadata, b, 1);

	say("memory: pins through %s: %d devices, %llu then %llu pages each",
	    be, HOLD_D, HOLD_PINS_SMALL, HOLD_PINS_BIG);
	for (i = 1; i < HOLD_D; i++)
		hold_open(_metadata, b, i, backend);
	if (hold_state(_metadata, b, false, &ma, &pa, row) ||
	    hold_state(_metadata, b, true, &mbig, &pb, row)) {
		/* Released: closing waits for the commands to end. */
		hold_close_all(_metadata, b);
		hold_rearm(_metadata, b);
		say("memory: %s: %s", name, row->note);
		return;
	}
	hold_close_all(_metadata, b);

	pages = HOLD_D * (HOLD_PINS_BIG - HOLD_PINS_SMALL);
	row->rounds = 1;
	row->mb = row->mb_min = row->mb_max = (ma.free - mbig.free) / pages;
	row_goal_max(row, "<= 32", 32);
	row_extra(row, ",\"pages\":%llu,\"pinned_debugfs_a\":%llu,\"pinned_debugfs_b\":%llu,\"slab_per_page\":%.2f",
		  (unsigned long long)pages, (unsigned long long)pa,
		  (unsigned long long)pb, (mbig.slab - ma.slab) / pages);
	snprintf(row->note, sizeof(row->note),
		 "%d engines held in the pin of a userfaultfd page, debugfs pinned_pages %llu (A) then %llu (B); free memory A-B over the %llu extra pages; Slab %+.1f bytes per page",
		 HOLD_D, (unsigned long long)pa, (unsigned long long)pb,
		 (unsigned long long)pages, (mbig.slab - ma.slab) / pages);
	say("memory: %s: %.1f bytes per pinned page (pinned_pages %llu -> %llu)",
	    name, row->mb, (unsigned long long)pa, (unsigned long long)pb);
}

/* ---- 2, 3, 4: streams ------------------------------------------------------ */

/* Open source and destination, fill the source (memory per written byte). */
static void stream_setup(struct __test_metadata *_metadata, struct bench *b)
{
	struct mb_dev *src = &b->d[0], *dst = &b->d[1];
	uint64_t off, t0, seed = 0x2545f4914f6cdd1dULL;
	struct memsnap m0, m1;
	struct row *row;
	double ms;

	say("stream: opening two %s mdevs", BIG_TYPE);
	mb_open(_metadata, src, BIG_TYPE, VFIO_BACKEND_TYPE1);
	mb_open(_metadata, dst, BIG_TYPE, VFIO_BACKEND_TYPE1);
	ASSERT_EQ(src->mem, dst->mem);
	ASSERT_EQ(0, src->mem % VRAM_WR_CHUNK);
	b->mem = src->mem;
	b->img = bench_alloc(_metadata, b->mem);
	b->vbuf = bench_alloc(_metadata, b->mem);
	b->sbuf = bench_alloc(_metadata, SBUF_SIZE);
	fill_rand(&seed, b->img, b->mem);
	mb_state_region(_metadata, src, &b->sr[0]);
	mb_state_region(_metadata, dst, &b->sr[1]);

	say("stream: writing every page of the source through BAR2");
	mem_measure(_metadata, &m0);
	t0 = now_ns();
	for (off = 0; off < b->mem; off += VRAM_WR_CHUNK)
		MB_ACC_OK(src, &src->bar2, true, off, b->img + off,
			  VRAM_WR_CHUNK);
	ms = ms_since(t0);
	mem_measure(_metadata, &m1);
	row = row_new(_metadata, b, "memory.per_written_byte", "bytes/byte");
	row->rounds = 1;
	row->mb = row->mb_min = row->mb_max = (m0.free - m1.free) / b->mem;
	row_goal_max(row, "<= 1.02", 1.02);
	row_extra(row, ",\"device_bytes\":%llu,\"slab_bytes\":%.0f",
		  (unsigned long long)b->mem, m1.slab - m0.slab);
	snprintf(row->note, sizeof(row->note),
		 "%llu bytes written through BAR2 (%.1f MB/s); free memory %.0f -> %.0f bytes, Slab %+.0f bytes",
		 (unsigned long long)b->mem, b->mem / 1e3 / ms, m0.free,
		 m1.free, m1.slab - m0.slab);
	say("stream: source written in %.1f ms: %.4f bytes of memory per byte",
	    ms, row->mb);
}

static void bench_v2(struct __test_metadata *_metadata, struct bench *b)
{
	static double sv[ROUNDS_MAX], rs[ROUNDS_MAX], ref[ROUNDS_MAX];
	struct mb_dev *src = &b->d[0], *dst = &b->d[1];
	struct mig_buf sb;
	uint64_t t0, len = 0;
	int r, nr = 0;
	struct row *row;

	for (r = 0; more_rounds(b, r, "stream.v2"); r++, nr++) {
		ref[r] = memcpy_ms(b->vbuf, b->img, b->mem);

		sb = (struct mig_buf){ .p = b->sbuf, .cap = SBUF_SIZE };
		t0 = now_ns();
		set_ok(_metadata, src, VFIO_DEVICE_STATE_PRE_COPY, &b->fds[0],
		       true);
		read_enomsg(_metadata, b->fds[0], &sb, NULL);
		set_ok(_metadata, src, VFIO_DEVICE_STATE_STOP_COPY, NULL, false);
		read_eof(_metadata, b->fds[0], &sb, NULL);
		sv[r] = ms_since(t0);
		close(b->fds[0]);
		b->fds[0] = -1;
		set_ok(_metadata, src, VFIO_DEVICE_STATE_STOP, NULL, false);
		set_ok(_metadata, src, VFIO_DEVICE_STATE_RUNNING, NULL, false);
		len = sb.len;

		set_ok(_metadata, dst, VFIO_DEVICE_STATE_STOP, NULL, false);
		t0 = now_ns();
		set_ok(_metadata, dst, VFIO_DEVICE_STATE_RESUMING, &b->fds[1],
		       true);
		write_chunks(_metadata, b->fds[1], b->sbuf, sb.len);
		set_ok(_metadata, dst, VFIO_DEVICE_STATE_STOP, NULL, false);
		set_ok(_metadata, dst, VFIO_DEVICE_STATE_RUNNING, NULL, false);
		rs[r] = ms_since(t0);
		close(b->fds[1]);
		b->fds[1] = -1;

		say("stream.v2: round %d/%d: save %.1f ms, restore %.1f ms, memcpy %.1f ms, stream %llu bytes",
		    r + 1, b->rounds, sv[r], rs[r], ref[r],
		    (unsigned long long)len);
		if (!r)
			verify_vram(_metadata, b, dst, "stream.v2");
	}
	row = row_new(_metadata, b, "stream.v2.save", "ms");
	row->ref_name = "memcpy";
	row_stats(row, sv, ref, nr, true);
	row_goal_ratio(row, 0.5);
	row_extra(row, ",\"stream_bytes\":%llu,\"read_size\":%llu,\"device_bytes\":%llu",
		  (unsigned long long)len, (unsigned long long)CHUNK,
		  (unsigned long long)b->mem);
	snprintf(row->note, sizeof(row->note),
		 "PRE_COPY, read() of %llu bytes to ENOMSG, STOP_COPY, read to EOF: %llu stream bytes; memcpy() of the %llu bytes of device memory",
		 (unsigned long long)CHUNK, (unsigned long long)len,
		 (unsigned long long)b->mem);
	row = row_new(_metadata, b, "stream.v2.restore", "ms");
	row->ref_name = "memcpy";
	row_stats(row, rs, ref, nr, true);
	row_goal_ratio(row, 0.5);
	row_extra(row, ",\"stream_bytes\":%llu,\"write_size\":%llu",
		  (unsigned long long)len, (unsigned long long)CHUNK);
	snprintf(row->note, sizeof(row->note),
		 "RESUMING, write() of %llu bytes, STOP, RUNNING",
		 (unsigned long long)CHUNK);
}

static void bench_region(struct __test_metadata *_metadata, struct bench *b)
{
	static double sv[ROUNDS_MAX], rs[ROUNDS_MAX], ref[ROUNDS_MAX];
	struct mb_dev *src = &b->d[0], *dst = &b->d[1];
	struct vfio_region_info *ss = &b->sr[0], *ds = &b->sr[1];
	uint64_t t0, off, n, len = 0;
	int r, nr = 0;
	struct row *row;

	for (r = 0; more_rounds(b, r, "stream.region"); r++, nr++) {
		ref[r] = memcpy_ms(b->vbuf, b->img, b->mem);

		t0 = now_ns();
		ASSERT_EQ(0, mb_runctl_set(src, ss, MBLIT_RUNCTL_STOPPED));
		len = mb_state_hdr(_metadata, src, ss, MBLIT_STATE_OFF_SIZE, 8);
		ASSERT_GE(SBUF_SIZE, len);
		for (off = 0; off < len; off += n) {
			n = len - off < CHUNK ? len - off : CHUNK;
			MB_ACC_OK(src, ss, false, MBLIT_STATE_AREA_OFFSET + off,
				  b->sbuf + off, n);
		}
		sv[r] = ms_since(t0);
		ASSERT_EQ(0, mb_runctl_set(src, ss, MBLIT_RUNCTL_RUNNING));

		/* A fresh destination: its own stop snapshots nothing. */
		ASSERT_EQ(0, ioctl(DFD(dst), VFIO_DEVICE_RESET))
			TH_LOG("VFIO_DEVICE_RESET: %s", strerror(errno));
		ASSERT_EQ(0, mb_runctl_set(dst, ds, MBLIT_RUNCTL_STOPPED));
		t0 = now_ns();
		for (off = 0; off < len; off += n) {
			n = len - off < CHUNK ? len - off : CHUNK;
			MB_ACC_OK(dst, ds, true, MBLIT_STATE_AREA_OFFSET + off,
				  b->sbuf + off, n);
		}
		ASSERT_EQ(0, mb_runctl_set(dst, ds, MBLIT_RUNCTL_RUNNING))
			TH_LOG("the destination refused the state");
		rs[r] = ms_since(t0);

		say("stream.region: round %d/%d: save %.1f ms, restore %.1f ms, memcpy %.1f ms, state %llu bytes",
		    r + 1, b->rounds, sv[r], rs[r], ref[r],
		    (unsigned long long)len);
		if (!r)
			verify_vram(_metadata, b, dst, "stream.region");
	}
	row = row_new(_metadata, b, "stream.region.save", "ms");
	row->ref_name = "memcpy";
	row_stats(row, sv, ref, nr, true);
	row_goal_ratio(row, 0.5);
	row_extra(row, ",\"state_bytes\":%llu,\"read_size\":%llu",
		  (unsigned long long)len, (unsigned long long)CHUNK);
	snprintf(row->note, sizeof(row->note),
		 "run-control STOPPED, pread() of the %llu-byte state in %llu-byte chunks",
		 (unsigned long long)len, (unsigned long long)CHUNK);
	row = row_new(_metadata, b, "stream.region.restore", "ms");
	row->ref_name = "memcpy";
	row_stats(row, rs, ref, nr, true);
	row_goal_ratio(row, 0.5);
	row_extra(row, ",\"state_bytes\":%llu,\"write_size\":%llu",
		  (unsigned long long)len, (unsigned long long)CHUNK);
	snprintf(row->note, sizeof(row->note),
		 "into a reset destination, stopped: pwrite() in %llu-byte chunks, run-control RUNNING (validates and applies)",
		 (unsigned long long)CHUNK);
}

static const int dt_pct[] = { 0, 1, 10, 100 };

#define NDT	ARRAY_SIZE(dt_pct)

/* Dirty @k distinct pages, evenly spread, with new content (and b->img). */
static void dirty_pages(struct __test_metadata *_metadata, struct bench *b,
			struct mb_dev *src, uint64_t k, uint64_t *seed)
{
	uint64_t np = b->mem / MB_PAGE, i, off;

	if (k == np) {
		fill_rand(seed, b->img, b->mem);
		for (off = 0; off < b->mem; off += VRAM_WR_CHUNK)
			MB_ACC_OK(src, &src->bar2, true, off, b->img + off,
				  VRAM_WR_CHUNK);
		return;
	}
	for (i = 0; i < k; i++) {
		off = i * np / k * MB_PAGE;
		fill_rand(seed, b->img + off, MB_PAGE);
		MB_ACC_OK(src, &src->bar2, true, off, b->img + off, MB_PAGE);
	}
}

/*
 * The bound of the stop-copy data for @k dirty pages: k x (4096 + the
 * pages record's overhead per page) + 8192.  A pages record (docs/
 * migration.md §1.5) is a 32-byte header, 8 bytes of index per page and
 * a 4-byte CRC, for up to 256 pages.
 */
static double dt_per_page_overhead(void)
{
	return (MIG_MBLIT_ENTRY - MIG_MBLIT_PAGE) +
	       (double)mig_mblit_chunk_len(0) / MIG_MBLIT_CHUNK_MAX;
}

static double dt_bound(uint64_t k)
{
	return k * (MIG_MBLIT_PAGE + dt_per_page_overhead()) + 8192;
}

static void bench_downtime(struct __test_metadata *_metadata, struct bench *b)
{
	static double ms[NDT][ROUNDS_MAX];
	static uint64_t sc[NDT][ROUNDS_MAX], pre[NDT][ROUNDS_MAX];
	struct mb_dev *src = &b->d[0], *dst = &b->d[1];
	uint64_t np = b->mem / MB_PAGE, k, t0, seed = 0x5851f42d4c957f2dULL;
	uint64_t scmin, scmax;
	unsigned int f;
	int r, i, nr = 0;
	char what[48];
	struct row *row;

	say("downtime: bound = dirty pages x (%llu + %.6f) + 8192 bytes (pages records of <= %llu pages: %llu-byte index per page, %llu bytes of header and CRC per record)",
	    MIG_MBLIT_PAGE, dt_per_page_overhead(), MIG_MBLIT_CHUNK_MAX,
	    MIG_MBLIT_ENTRY - MIG_MBLIT_PAGE,
	    (unsigned long long)mig_mblit_chunk_len(0));
	for (r = 0; more_rounds(b, r, "downtime"); r++, nr++) {
		for (f = 0; f < NDT; f++) {
			k = np * dt_pct[f] / 100;
			set_ok(_metadata, dst, VFIO_DEVICE_STATE_STOP, NULL,
			       false);
			set_ok(_metadata, dst, VFIO_DEVICE_STATE_RESUMING,
			       &b->fds[1], true);
			set_ok(_metadata, src, VFIO_DEVICE_STATE_PRE_COPY,
			       &b->fds[0], true);
			pre[f][r] = pump(_metadata, b->fds[0], b->fds[1],
					 b->sbuf, true);
			dirty_pages(_metadata, b, src, k, &seed);

			t0 = now_ns();
			set_ok(_metadata, src, VFIO_DEVICE_STATE_STOP_COPY,
			       NULL, false);
			sc[f][r] = pump(_metadata, b->fds[0], b->fds[1],
					b->sbuf, false);
			set_ok(_metadata, dst, VFIO_DEVICE_STATE_STOP, NULL,
			       false);
			set_ok(_metadata, dst, VFIO_DEVICE_STATE_RUNNING, NULL,
			       false);
			ms[f][r] = ms_since(t0);

			close(b->fds[0]);
			close(b->fds[1]);
			b->fds[0] = b->fds[1] = -1;
			set_ok(_metadata, src, VFIO_DEVICE_STATE_STOP, NULL,
			       false);
			set_ok(_metadata, src, VFIO_DEVICE_STATE_RUNNING, NULL,
			       false);
			say("downtime: round %d/%d, %d %% dirty (%llu pages): %.1f ms, stop-copy %llu bytes (bound %.0f), pre-copy %llu bytes",
			    r + 1, b->rounds, dt_pct[f],
			    (unsigned long long)k, ms[f][r],
			    (unsigned long long)sc[f][r], dt_bound(k),
			    (unsigned long long)pre[f][r]);
			if (!r) {
				snprintf(what, sizeof(what),
					 "downtime, %d %% dirty", dt_pct[f]);
				verify_vram(_metadata, b, dst, what);
			}
		}
	}
	for (f = 0; f < NDT; f++) {
		k = np * dt_pct[f] / 100;
		snprintf(what, sizeof(what), "downtime.dirty_%dpct", dt_pct[f]);
		row = row_new(_metadata, b, what, "ms");
		row_stats(row, ms[f], NULL, nr, false);
		scmin = scmax = sc[f][0];
		for (i = 1; i < nr; i++) {
			scmin = sc[f][i] < scmin ? sc[f][i] : scmin;
			scmax = sc[f][i] > scmax ? sc[f][i] : scmax;
		}
		snprintf(row->goal, sizeof(row->goal),
			 "stop-copy <= %.0f B", dt_bound(k));
		row->holds = scmax <= dt_bound(k);
		row_extra(row, ",\"dirty_pages\":%llu,\"stopcopy_bytes\":%llu,\"stopcopy_bytes_min\":%llu,\"bound_bytes\":%.0f,\"exact_bytes\":%llu,\"precopy_bytes\":%llu",
			  (unsigned long long)k, (unsigned long long)scmax,
			  (unsigned long long)scmin, dt_bound(k),
			  (unsigned long long)(mig_mblit_stream_len(k) +
					       MIG_MBLIT_DEV_REC),
			  (unsigned long long)pre[f][0]);
		snprintf(row->note, sizeof(row->note),
			 "%llu pages dirtied in PRE_COPY; STOP_COPY read to EOF into the RESUMING destination, STOP, RUNNING; stop-copy %llu bytes (format: %llu), bound %llu x (%llu + %.6f) + 8192 = %.0f",
			 (unsigned long long)k, (unsigned long long)scmax,
			 (unsigned long long)(mig_mblit_stream_len(k) +
					      MIG_MBLIT_DEV_REC),
			 (unsigned long long)k, MIG_MBLIT_PAGE,
			 dt_per_page_overhead(), dt_bound(k));
	}
}

/* ---- the test ------------------------------------------------------------ */

static void bench_init(struct bench *b)
{
	int i;

	memset(b, 0, sizeof(*b));
	b->rounds = bench_rounds();
	b->deadline_ms = mb_now_ms() + SOFT_LIMIT_MS;
	for (i = 0; i < 2; i++) {
		mb_init(&b->d[i]);
		b->fds[i] = -1;
	}
	for (i = 0; i < HOLD_D; i++)
		mb_init(&b->hold[i]);
	b->mt.device_fd = b->mt.group_fd = -1;
	b->mt.container_fd = b->mt.iommufd = -1;
	b->uffd = -1;
}

static void bench_cleanup(struct __test_metadata *_metadata, struct bench *b)
{
	int i;

	for (i = 0; i < 2; i++)
		if (b->fds[i] >= 0)
			close(b->fds[i]);
	/* First: engines waiting for the missing page go on. */
	if (b->uffd >= 0)
		close(b->uffd);
	hold_close_all(_metadata, b);
	for (i = 0; i < 2; i++)
		mb_close(_metadata, &b->d[i]);
	mtty_close(b);
	for (i = 0; i < b->nidle; i++)
		mdev_remove(b->idle[i]);
	if (b->hold_ring && b->hold_ring != MAP_FAILED)
		munmap(b->hold_ring, HOLD_D * MB_PAGE);
	if (b->hold_src && b->hold_src != MAP_FAILED)
		munmap(b->hold_src, MB_MIB);
	if (b->hold_dst && b->hold_dst != MAP_FAILED)
		munmap(b->hold_dst, MB_MIB);
	free(b->img);
	free(b->vbuf);
	free(b->sbuf);
	free(b->rsrc);
	free(b->rdst);
}

FIXTURE(bench) {
	struct bench *b;
};

FIXTURE_SETUP(bench)
{
	self->b = malloc(sizeof(*self->b));
	ASSERT_NE(NULL, self->b);
	bench_init(self->b);
}

FIXTURE_TEARDOWN(bench)
{
	if (!self->b)
		return;
	if (!self->b->reported)
		report(self->b, true);
	bench_cleanup(_metadata, self->b);
	free(self->b);
	self->b = NULL;
}

TEST_F_TIMEOUT(bench, all, 3000)
{
	struct bench *b = self->b;
	uint64_t t0 = mb_now_ms();

	ASSERT_TRUE(module_loaded("mblit")) TH_LOG("mblit is not loaded");
	say("%d rounds (MBLIT_BENCH_ROUNDS); rounds after the first stop once %llu s have passed",
	    b->rounds, SOFT_LIMIT_MS / 1000);

	bench_regs(_metadata, b);
	bench_engine(_metadata, b);

	bench_mem_idle(_metadata, b, SMALL_TYPE, IDLE_N,
		       "memory.per_idle_mdev.1m", 65536);
	bench_mem_idle(_metadata, b, BIG_TYPE, IDLE_BIG_N,
		       "memory.per_idle_mdev.256m", 0);
	bench_mem_pins(_metadata, b, VFIO_BACKEND_TYPE1);
	bench_mem_pins(_metadata, b, VFIO_BACKEND_IOMMUFD);

	stream_setup(_metadata, b);
	bench_v2(_metadata, b);
	bench_region(_metadata, b);
	bench_downtime(_metadata, b);

	say("done in %.1f s", (mb_now_ms() - t0) / 1000.0);
	report(b, false);
}

TEST_HARNESS_MAIN
