// SPDX-License-Identifier: GPL-2.0
/*
 * mblit under concurrency and under random input (issue 10, items 1 and 2).
 *
 * stress.concurrent_surface: NWORKERS threads, for MBLIT_STRESS_SECS
 *   (default 45) seconds, pick random operations from the whole uAPI
 *   surface of three mdevs (A: mblit-16m on type1, B: mblit-1m on iommufd,
 *   C: mblit-1m that another thread removes while it is open, then
 *   recreates) and race each other on them.  Every call must return
 *   success or an errno the table below allows for it; no thread may go
 *   WATCHDOG_MS without progress; at the end every device, reset, runs a
 *   known workload byte-exact against the model of mblit_dev.h with no page
 *   left pinned, available_instances is what the module budget gives, and
 *   MemAvailable is back within MEM_SLACK of where it started.
 *
 * uapi_fuzz.random_sequences: one thread, for MBLIT_FUZZ_SECS (default 30)
 *   seconds, seeded random sequences of VFIO and mblit calls with random
 *   arguments (short, huge and garbage argsz, unknown flags and ioctls,
 *   edge counts and offsets up to 2^64, fds that are no eventfd or closed,
 *   user buffers that fault part-way) on two mdevs (mblit-1m on type1,
 *   mblit-16m on iommufd).  A model of the device (migration state, the
 *   run-control byte, interrupt triggers, DMA logging, config space and
 *   scratch registers, the v2 streams) predicts every result: the errno,
 *   or the exact value where the test can know it (config space and
 *   scratch bytes, GET_*INFO and the region capability, the DEVICE_STATE
 *   header and snapshot bytes, the framing of every stream read, the
 *   count of a transfer that faults, PRECOPY_INFO and MIG_DATA_SIZE
 *   against the bytes the stream then delivers, device memory after a
 *   resume against the source's, loopback interrupts).  Every FUZZ_CHECK_EVERY
 *   calls, and at the end, every device is reset and must run the known
 *   workload byte-exact with nothing pinned.
 *
 * Both read MBLIT_SEED (decimal; default: from time and pid), print it
 * first, and on any failure print the command that replays the run.  Each
 * thread derives its own random stream from the seed.  Operation counts
 * per kind, with their results, are printed at the end.
 *
 * Semantics relied on (docs/device.md §3, §10-§12, docs/migration.md §3):
 * BAR0/BAR2 writes while stopped fail with EBUSY; a second concurrent read
 * of one data_fd fails with EBUSY; a data_fd of an ended migration fails
 * with ENODEV; a data_fd read/write that faults after some bytes returns
 * the short count; every open starts from the reset state; dma_unmap
 * never fails and returns with the range unpinned; engine errors are
 * reported in STATUS, never as errnos.
 *
 * Errnos each stress operation allows (anything else fails the run, with
 * the operation and its arguments; "exactly" means one result only):
 *
 *   doorbell, CTRL.RESET, BAR0 write   EBUSY (stopped); an access the
 *                                      register map refuses: exactly EINVAL
 *   BAR0, config, BAR2 read            none; out of range: exactly EINVAL;
 *                                      a faulting buffer: exactly EFAULT
 *   BAR2 write                         EBUSY; a faulting buffer: EFAULT or
 *                                      EBUSY; out of range: exactly EINVAL
 *   config write                       none; out of range: exactly EINVAL
 *   VFIO_DEVICE_RESET, GET_*INFO       none, and the information is exact
 *   SET_IRQS                           setting INTx or MSI: EINVAL (the
 *                                      other is set); removing, disabling,
 *                                      mask/unmask, loopback: none; MSI-X,
 *                                      MSI mask, a non-eventfd fd: exactly
 *                                      EINVAL; a closed fd: exactly EBADF
 *   MAP/UNMAP (type1, IOAS)            none, and an unmap is complete;
 *                                      unmapping everything leaves nothing
 *                                      pinned; type1 unmap with the dirty
 *                                      bitmap: EINVAL (not tracking); a
 *                                      second map EEXIST/EINVAL, unaligned
 *                                      exactly EINVAL, unmapping nothing
 *                                      ENOENT (IOAS) or 0 bytes (type1)
 *   MIG_DEVICE_STATE SET               EINVAL, EBUSY, ENOMEM; a state
 *                                      number >= 8: exactly EINVAL
 *   data_fd read                       ENOMSG, EBUSY, ENODEV, ENOMEM (and
 *                                      EFAULT if the first byte faults);
 *                                      a count <= the bytes before a fault;
 *                                      ended file: exactly ENODEV; resume
 *                                      file: exactly EBADF
 *   data_fd write                      EINVAL, EPROTONOSUPPORT (a damaged
 *                                      version), ENODEV, ENOMEM (and EFAULT if
 *                                      the first byte faults, but exactly
 *                                      EINVAL once the stream is poisoned
 *                                      or complete); otherwise
 *                                      the whole count, or exactly the bytes
 *                                      before a fault; ended file: ENODEV
 *                                      (EFAULT if the first byte faults);
 *                                      save file: exactly EBADF
 *   a whole STOP_COPY stream           ENODEV, EBUSY, ENOMEM (others ended
 *     (to its end, then resumed)       it); when read to its end it is a
 *                                      well-formed stream
 *   PRECOPY_INFO                       EINVAL (not in pre-copy); resume
 *                                      file: exactly ENOTTY; ended save
 *                                      file: exactly EINVAL
 *   MIGRATION, MIG_DATA_SIZE           none (flags and size sane)
 *   run-control write                  STOPPED: EBUSY, ENOMEM; RUNNING:
 *                                      EBUSY, EINVAL or EPROTONOSUPPORT
 *                                      (refused state),
 *                                      ENOMEM; other values: exactly EINVAL
 *   run-control read                   EBUSY
 *   snapshot save and restore          EBUSY, EINVAL, ENOMEM; a snapshot
 *                                      read whole is one well-formed record
 *   state region elsewhere             control page read: none; write:
 *                                      exactly EINVAL; across parts or past
 *                                      the end: exactly EINVAL; state area
 *                                      read: EBUSY, EINVAL; write: EBUSY,
 *                                      ENOMEM
 *   DMA_LOGGING_START                  EBUSY, ENOMEM; the core's refusals
 *                                      exactly (EINVAL, E2BIG, EOVERFLOW);
 *                                      2^28 + 1 pages: E2BIG or EBUSY
 *   DMA_LOGGING_REPORT / STOP          EINVAL (not logging) / none
 *   type1 DIRTY_PAGES                  START: ENOMEM; STOP: none;
 *                                      GET_BITMAP: EINVAL (not tracking)
 *   an access held in userfaultfd      as the same access unheld
 *   close + reopen                     none, and the device is at reset
 *   mdev remove while open             blocks until the close, then 0 (or
 *                                      fails with the mdev left intact)
 *   delete_module(mblit, O_NONBLOCK)   exactly EWOULDBLOCK or EBUSY
 *
 * The fuzzer predicts each result from its model instead: one errno, or
 * success, except where the documents leave the order of two checks open
 * (a faulting buffer on a write that is refused: EFAULT or the refusal).
 */
#include <malloc.h>
#include <pthread.h>
#include <stdarg.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>

#include <linux/iommufd.h>
#include <linux/userfaultfd.h>

#include "kselftest_harness.h"
#include "dirty_log.h"
#include "held_access.h"
#include "mblit_cfg.h"
#include "mblit_dev.h"
#include "mblit_state_fmt.h"
#include "mig_v2.h"

#define STRESS_SECS_DEFAULT	45
#define FUZZ_SECS_DEFAULT	30
#define TIMEOUT_MARGIN		900	/* s beyond the duration */
#define NWORKERS		6
#define WATCHDOG_MS		60000	/* no progress for that long: a hang */
#define MEM_SLACK		(64 * MB_MIB)
#define MEM_WAIT_MS		30000
#define FUZZ_CHECK_EVERY	250
#define BUDGET_DEFAULT_MIB	512

#define DFD(s)			((s)->d.v.device_fd)
#define RUNNING			MBLIT_RUNCTL_RUNNING
#define STOPPED			MBLIT_RUNCTL_STOPPED
#define AREA			MBLIT_STATE_AREA_OFFSET
#define DD			MBLIT_FLAG_DST_DEV
#define SD			MBLIT_FLAG_SRC_DEV

/* The guest buffer is mapped as NCHUNK separate 1 MiB mappings. */
#define NCHUNK			8
#define CHUNK			MB_MIB
#define XRING_BIT		NCHUNK		/* the extra ring's mapping */
#define ALL_MAPPED		((1u << (NCHUNK + 1)) - 1)
#define XRING_IOVA		MB_EXTRA_IOVA
#define XRING_LEN		(64 * 1024)
#define G_LO			(MB_IOVA + MB_DATA_OFF)	/* guest data area */
#define G_HI			(MB_IOVA + MB_BUF_SIZE)

/* Each worker's transfer buffer, followed by a PROT_NONE guard page. */
#define BIG_LEN			(4 * MB_MIB)

#define NSTALE			6
#define FD_SAVE			1
#define FD_RESUME		2

/* The state format (docs/migration.md §1). */
#define REC_HDR			32
#define REC_DEV_MAGIC		0x5653424dU
#define REC_PAGES_MAGIC		0x4750424dU
#define REC_DEV_LEN(n)		(556ULL + (n) * 4104ULL)
#define REC_PAGES_LEN(n)	(36ULL + (n) * 4104ULL)

/* ---- run parameters ------------------------------------------------------ */

static uint64_t g_seed;
static unsigned int g_secs;

static uint64_t env_u64(const char *name, uint64_t def, bool *given)
{
	const char *v = getenv(name);
	char *end;
	uint64_t x;

	if (given)
		*given = false;
	if (!v || !*v)
		return def;
	errno = 0;
	x = strtoull(v, &end, 10);
	if (errno || *end) {
		ksft_print_msg("%s=%s is not a decimal number; using %llu\n",
			       name, v, (unsigned long long)def);
		return def;
	}
	if (given)
		*given = true;
	return x;
}

static uint64_t splitmix64(uint64_t *x)
{
	uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

/* The seed and the duration, printed before anything else. */
static void run_params(struct __test_metadata *_metadata, const char *secs_env,
		       unsigned int secs_default)
{
	struct timespec ts;
	bool given;
	uint64_t x;

	clock_gettime(CLOCK_REALTIME, &ts);
	x = (uint64_t)ts.tv_sec * 1000000000ULL + ts.tv_nsec;
	x ^= (uint64_t)getpid() << 32;
	x = splitmix64(&x);
	g_seed = env_u64("MBLIT_SEED", x, &given);
	g_secs = env_u64(secs_env, secs_default, NULL);
	if (!g_secs)
		g_secs = 1;
	TH_LOG("seed %llu (%s), %u s (%s)", (unsigned long long)g_seed,
	       given ? "MBLIT_SEED" : "from time and pid", g_secs, secs_env);
}

static void print_replay(void)
{
	ksft_print_msg("replay: make stress SEED=%llu DURATION=%u\n",
		       (unsigned long long)g_seed, g_secs);
}

/* ---- random numbers: xoshiro256**, one stream per thread ------------------ */

struct rng {
	uint64_t s[4];
};

static void rng_init(struct rng *r, uint64_t seed, uint64_t stream)
{
	uint64_t x = seed ^ (stream * 0xd1b54a32d192ed03ULL);
	int i;

	for (i = 0; i < 4; i++)
		r->s[i] = splitmix64(&x);
}

static inline uint64_t rotl64(uint64_t x, int k)
{
	return (x << k) | (x >> (64 - k));
}

static uint64_t rnd(struct rng *r)
{
	uint64_t *s = r->s, res = rotl64(s[1] * 5, 7) * 9, t = s[1] << 17;

	s[2] ^= s[0];
	s[3] ^= s[1];
	s[1] ^= s[2];
	s[0] ^= s[3];
	s[2] ^= t;
	s[3] = rotl64(s[3], 45);
	return res;
}

/* [0, n) (0 when n is 0). */
static uint64_t below(struct rng *r, uint64_t n)
{
	return n ? rnd(r) % n : 0;
}

/* [lo, hi] */
static uint64_t between(struct rng *r, uint64_t lo, uint64_t hi)
{
	if (hi <= lo)
		return lo;
	if (hi - lo == UINT64_MAX)
		return rnd(r);
	return lo + below(r, hi - lo + 1);
}

static bool pct(struct rng *r, unsigned int p)
{
	return below(r, 100) < p;
}

static void rnd_fill(struct rng *r, void *p, size_t n)
{
	uint8_t *b = p;
	uint64_t v = 0;
	size_t i;

	for (i = 0; i < n; i++) {
		if (!(i & 7))
			v = rnd(r);
		b[i] = v >> (8 * (i & 7));
	}
}

/* An index by weight. */
static unsigned int pick(struct rng *r, const unsigned int *w, unsigned int n)
{
	unsigned int i, total = 0;
	uint64_t x;

	for (i = 0; i < n; i++)
		total += w[i];
	x = below(r, total);
	for (i = 0; i < n; i++) {
		if (x < w[i])
			return i;
		x -= w[i];
	}
	return n - 1;
}

/* ---- results per operation kind ------------------------------------------ */

enum {
	B_OK, B_SHORT, B_EOF, B_EINVAL, B_EBUSY, B_ENODEV, B_EFAULT, B_ENOMSG,
	B_EAGAIN, B_ENOMEM, B_EBADF, B_ENOTTY, B_E2BIG, B_EOVERFLOW, B_EEXIST,
	B_ENOENT, B_ESPIPE, B_EPROTONOSUPPORT, B_OTHER, NBUCKETS
};

static const char *const bucket_name[NBUCKETS] = {
	"ok", "short", "eof", "EINVAL", "EBUSY", "ENODEV", "EFAULT", "ENOMSG",
	"EAGAIN", "ENOMEM", "EBADF", "ENOTTY", "E2BIG", "EOVERFLOW", "EEXIST",
	"ENOENT", "ESPIPE", "EPROTONOSUPPORT", "other",
};

static int bucket_of_errno(int e)
{
	switch (e) {
	case EINVAL: return B_EINVAL;
	case EBUSY: return B_EBUSY;
	case ENODEV: return B_ENODEV;
	case EFAULT: return B_EFAULT;
	case ENOMSG: return B_ENOMSG;
	case EAGAIN: return B_EAGAIN;
	case ENOMEM: return B_ENOMEM;
	case EBADF: return B_EBADF;
	case ENOTTY: return B_ENOTTY;
	case E2BIG: return B_E2BIG;
	case EOVERFLOW: return B_EOVERFLOW;
	case EEXIST: return B_EEXIST;
	case ENOENT: return B_ENOENT;
	case ESPIPE: return B_ESPIPE;
	case EPROTONOSUPPORT: return B_EPROTONOSUPPORT;
	}
	return B_OTHER;
}

#define MAXOPS	32

struct stats {
	const char *const *names;
	unsigned int nops;
	uint64_t ops[MAXOPS];			/* invocations */
	uint64_t calls[MAXOPS][NBUCKETS];	/* the calls they made */
};

static void stat_add(struct stats *st, unsigned int op, int bucket)
{
	__atomic_fetch_add(&st->calls[op][bucket], 1, __ATOMIC_RELAXED);
}

static void stats_print(const struct stats *st, const char *what)
{
	uint64_t total_ops = 0, total_calls = 0, n;
	char line[512];
	unsigned int op, b;
	int len;

	for (op = 0; op < st->nops; op++) {
		total_ops += st->ops[op];
		for (b = 0; b < NBUCKETS; b++)
			total_calls += st->calls[op][b];
	}
	ksft_print_msg("%s: %llu operations, %llu calls\n", what,
		       (unsigned long long)total_ops,
		       (unsigned long long)total_calls);
	for (op = 0; op < st->nops; op++) {
		if (!st->ops[op])
			continue;
		len = snprintf(line, sizeof(line), "  %-14s %7llu:", st->names[op],
			       (unsigned long long)st->ops[op]);
		for (b = 0; b < NBUCKETS; b++) {
			n = st->calls[op][b];
			if (n && len < (int)sizeof(line) - 32)
				len += snprintf(line + len, sizeof(line) - len,
						" %s %llu", bucket_name[b],
						(unsigned long long)n);
		}
		ksft_print_msg("%s\n", line);
	}
}

/* ---- logging from any thread ---------------------------------------------- */

static pthread_mutex_t g_log_lock = PTHREAD_MUTEX_INITIALIZER;

static __printf(1, 2) void logmsg(const char *fmt, ...)
{
	va_list ap;

	pthread_mutex_lock(&g_log_lock);
	fputs("# ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	fflush(stderr);
	pthread_mutex_unlock(&g_log_lock);
}

static const char *err_str(long ret)
{
	static __thread char buf[64];

	if (ret >= 0) {
		snprintf(buf, sizeof(buf), "%ld", ret);
		return buf;
	}
	snprintf(buf, sizeof(buf), "%s (%ld)", strerror(-ret), -ret);
	return buf;
}

/* ---- the v2 stream's framing ----------------------------------------------- */

/*
 * Check the records of a v2 stream (or a DEVICE_STATE snapshot) in
 * p[from, len): header fields, length, CRC.  Returns the offset after the
 * last complete record, or -1 (message in @msg).  @complete: the bytes
 * must end with the device record (and *@ndev counts device records).
 */
static long stream_check(const uint8_t *p, size_t len, size_t from,
			 uint32_t type_id, uint64_t vram, bool complete,
			 int *ndev, char *msg, size_t ml)
{
	size_t off = from;
	uint64_t total, n;
	uint32_t magic, count, crc, got;

	while (len - off >= REC_HDR) {
		const uint8_t *h = p + off;

		magic = mig_le32(h);
		count = mig_le32(h + 12);
		total = mig_le64(h + 24);
		if (magic != REC_DEV_MAGIC && magic != REC_PAGES_MAGIC) {
			snprintf(msg, ml, "record at %zu: magic %#x", off, magic);
			return -1;
		}
		if (mig_le32(h + 4) != 1 || mig_le32(h + 8) != type_id ||
		    mig_le64(h + 16) != vram) {
			snprintf(msg, ml, "record at %zu: version %u type %u vram %#llx",
				 off, mig_le32(h + 4), mig_le32(h + 8),
				 (unsigned long long)mig_le64(h + 16));
			return -1;
		}
		if (magic == REC_PAGES_MAGIC) {
			if (count > 256 || total != REC_PAGES_LEN(count)) {
				snprintf(msg, ml, "pages record at %zu: count %u length %llu",
					 off, count, (unsigned long long)total);
				return -1;
			}
		} else {
			if (count != 5 || total < REC_DEV_LEN(0) ||
			    (total - REC_DEV_LEN(0)) % 4104) {
				snprintf(msg, ml, "device record at %zu: count %u length %llu",
					 off, count, (unsigned long long)total);
				return -1;
			}
		}
		if (total > len - off)
			break;
		memcpy(&crc, h + total - 4, 4);
		got = crc32_le(h, total - 4);
		if (crc != got) {
			snprintf(msg, ml, "record at %zu (%s, %llu bytes): CRC %#x, computed %#x",
				 off, magic == REC_DEV_MAGIC ? "device" : "pages",
				 (unsigned long long)total, crc, got);
			return -1;
		}
		if (magic == REC_DEV_MAGIC) {
			n = mig_le64(h + 544);
			if (total != REC_DEV_LEN(n)) {
				snprintf(msg, ml, "device record at %zu: %llu pages, length %llu",
					 off, (unsigned long long)n,
					 (unsigned long long)total);
				return -1;
			}
			if (ndev)
				(*ndev)++;
			if (off + total != len && complete) {
				snprintf(msg, ml, "device record at %zu is not the last (%zu bytes follow)",
					 off, len - off - (size_t)total);
				return -1;
			}
		}
		off += total;
	}
	if (complete && (off != len || !ndev || *ndev != 1)) {
		snprintf(msg, ml, "incomplete: %zu of %zu bytes in whole records, %d device records",
			 off, len, ndev ? *ndev : -1);
		return -1;
	}
	return off;
}

/* A complete stream (or snapshot), shared between threads. */
struct blob {
	int refs;
	size_t len;
	uint8_t data[];
};

static struct blob *blob_new(const void *p, size_t len)
{
	struct blob *b = malloc(sizeof(*b) + len);

	if (!b)
		return NULL;
	b->refs = 1;
	b->len = len;
	memcpy(b->data, p, len);
	return b;
}

static struct blob *blob_get(struct blob *b)
{
	if (b)
		__atomic_fetch_add(&b->refs, 1, __ATOMIC_RELAXED);
	return b;
}

static void blob_put(struct blob *b)
{
	if (b && __atomic_sub_fetch(&b->refs, 1, __ATOMIC_ACQ_REL) == 0)
		free(b);
}

/* ---- a device under test ---------------------------------------------------- */

struct sdev {
	char name[8];
	const char *type;
	struct mb_dev d;		/* uuid, VFIO handles, regions, buffer, model */
	struct vfio_region_info sr;	/* the DEVICE_STATE region */
	uint8_t *xring;			/* a separately mapped ring area */
	uint64_t npages;		/* device memory pages */
	bool open, exists;
	unsigned int incarnation;

	/* Read-held by every operation on the device; write-held to close it. */
	pthread_rwlock_t life;

	pthread_mutex_t map_lock;	/* which chunks are mapped */
	uint32_t mapped;

	pthread_mutex_t ring_lock;	/* where the test put the ring */
	uint64_t ring_iova;
	uint8_t *ring_va;
	uint32_t ring_size;

	/*
	 * The migration files.  Every SET of MIG_DEVICE_STATE and every
	 * reset and close is made under mig_lock, so a file in stale[] has
	 * ended (a newer one was handed out after it, or the device was
	 * reset or closed): reads and writes of it must fail with ENODEV.
	 */
	pthread_mutex_t mig_lock;
	int cur_fd, cur_kind;
	int stale_fd[NSTALE], stale_kind[NSTALE], nstale;
	struct blob *saved;		/* the last complete v2 stream */
};

static void sdev_init(struct sdev *s, const char *name, const char *type)
{
	pthread_rwlockattr_t a;
	int i;

	memset(s, 0, sizeof(*s));
	mb_init(&s->d);
	snprintf(s->name, sizeof(s->name), "%s", name);
	s->type = type;
	pthread_rwlockattr_init(&a);
	/* Writers first: a close must not starve behind the operations. */
	pthread_rwlockattr_setkind_np(&a,
				      PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
	pthread_rwlock_init(&s->life, &a);
	pthread_rwlockattr_destroy(&a);
	pthread_mutex_init(&s->map_lock, NULL);
	pthread_mutex_init(&s->ring_lock, NULL);
	pthread_mutex_init(&s->mig_lock, NULL);
	s->cur_fd = -1;
	for (i = 0; i < NSTALE; i++)
		s->stale_fd[i] = -1;
}

static const char *be_name(const struct sdev *s)
{
	return vfio_backend_name(s->d.v.backend);
}

/* MAP_DMA / IOAS_MAP of [iova, iova + len) at @va: 0 or -errno. */
static int s_map(struct sdev *s, void *va, uint64_t iova, uint64_t len)
{
	struct vfio_mdev *v = &s->d.v;

	struct vfio_iommu_type1_dma_map t1 = {
		.argsz = sizeof(t1),
		.flags = VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE,
		.vaddr = (uintptr_t)va, .iova = iova, .size = len,
	};
	struct iommu_ioas_map ioas = {
		.size = sizeof(ioas),
		.flags = IOMMU_IOAS_MAP_FIXED_IOVA |
			 IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE,
		.ioas_id = v->ioas_id, .user_va = (uintptr_t)va,
		.length = len, .iova = iova,
	};

	if (v->backend == VFIO_BACKEND_TYPE1)
		return ioctl(v->container_fd, VFIO_IOMMU_MAP_DMA, &t1) ? -errno : 0;
	return ioctl(v->iommufd, IOMMU_IOAS_MAP, &ioas) ? -errno : 0;
}

/* UNMAP_DMA / IOAS_UNMAP: 0 or -errno, the bytes unmapped in *done. */
static int s_unmap(struct sdev *s, uint64_t iova, uint64_t len, uint64_t *done)
{
	struct vfio_mdev *v = &s->d.v;
	int ret;

	if (v->backend == VFIO_BACKEND_TYPE1) {
		struct vfio_iommu_type1_dma_unmap u = {
			.argsz = sizeof(u), .iova = iova, .size = len,
		};

		ret = ioctl(v->container_fd, VFIO_IOMMU_UNMAP_DMA, &u) ? -errno : 0;
		*done = u.size;
	} else {
		struct iommu_ioas_unmap u = {
			.size = sizeof(u), .ioas_id = v->ioas_id,
			.iova = iova, .length = len,
		};

		ret = ioctl(v->iommufd, IOMMU_IOAS_UNMAP, &u) ? -errno : 0;
		*done = u.length;
	}
	return ret;
}

/* Unmap everything (type1 UNMAP_FLAG_ALL, IOAS unmap of all): -errno. */
static int s_unmap_all(struct sdev *s)
{
	struct vfio_mdev *v = &s->d.v;
	struct vfio_iommu_type1_dma_unmap t1 = {
		.argsz = sizeof(t1), .flags = VFIO_DMA_UNMAP_FLAG_ALL,
	};
	struct iommu_ioas_unmap ioas = {
		.size = sizeof(ioas), .ioas_id = v->ioas_id,
		.iova = 0, .length = UINT64_MAX,
	};

	if (v->backend == VFIO_BACKEND_TYPE1)
		return ioctl(v->container_fd, VFIO_IOMMU_UNMAP_DMA, &t1) ? -errno : 0;
	return ioctl(v->iommufd, IOMMU_IOAS_UNMAP, &ioas) ? -errno : 0;
}

/* Where mapping @bit lives: chunk i of the guest buffer, or the extra ring. */
static void map_range(struct sdev *s, unsigned int bit, uint8_t **va,
		      uint64_t *iova, uint64_t *len)
{
	if (bit == XRING_BIT) {
		*va = s->xring;
		*iova = XRING_IOVA;
		*len = XRING_LEN;
	} else {
		*va = s->d.buf + bit * CHUNK;
		*iova = MB_IOVA + bit * CHUNK;
		*len = CHUNK;
	}
}

/* A region access: the count, or -errno. */
static long racc(struct sdev *s, const struct vfio_region_info *r, bool wr,
		 uint64_t off, void *buf, size_t len)
{
	return mb_acc(&s->d, r, wr, off, buf, len);
}

static long rd_reg(struct sdev *s, uint32_t off, int w, uint64_t *v)
{
	*v = 0;
	return racc(s, &s->d.bar0, false, off, v, w);
}

static long wr_reg(struct sdev *s, uint32_t off, int w, uint64_t v)
{
	return racc(s, &s->d.bar0, true, off, &v, w);
}

static uint64_t debugfs_val(struct sdev *s, const char *name, int *err)
{
	uint64_t v = 0;
	int ret = mb_debugfs_try(&s->d, name, &v);

	if (err)
		*err = ret;
	return v;
}

/*
 * Open the (existing) mdev through @be, map the guest buffer chunk by
 * chunk and the extra ring, and set bus master: 0 or -errno (@err says
 * what failed).  The buffers exist already.
 */
static int sdev_open(struct sdev *s, enum vfio_backend be, char *err,
		     size_t errlen)
{
	struct mb_dev *d = &s->d;
	uint8_t *va;
	uint64_t iova, len;
	uint16_t cmd = 0;
	unsigned int bit;
	long n;
	int ret;

	ret = vfio_mdev_open(&d->v, d->uuid, be);
	if (ret) {
		snprintf(err, errlen, "open through %s: %s",
			 vfio_backend_name(be), mdev_lib_error());
		return ret;
	}
	ret = vfio_mdev_pci_regions(&d->v, &d->cfg, &d->bar0, &d->bar2);
	if (ret) {
		snprintf(err, errlen, "%s", mdev_lib_error());
		goto fail;
	}
	d->mem = d->bar2.size;
	s->npages = d->mem / MB_PAGE;
	ret = mb_find_region_by_type(d, MBLIT_REGION_TYPE_DEVICE_STATE,
				     MBLIT_REGION_SUBTYPE_DEVICE_STATE, &s->sr);
	if (ret != 1) {
		snprintf(err, errlen, "%d DEVICE_STATE regions", ret);
		ret = ret < 0 ? ret : -ENOENT;
		goto fail;
	}
	for (bit = 0; bit <= XRING_BIT; bit++) {
		map_range(s, bit, &va, &iova, &len);
		ret = s_map(s, va, iova, len);
		if (ret) {
			snprintf(err, errlen, "map [%#llx, +%#llx): %s",
				 (unsigned long long)iova,
				 (unsigned long long)len, strerror(-ret));
			goto fail;
		}
	}
	s->mapped = ALL_MAPPED;
	n = racc(s, &d->cfg, false, PCI_COMMAND, &cmd, 2);
	if (n == 2) {
		cmd |= PCI_COMMAND_MASTER;
		n = racc(s, &d->cfg, true, PCI_COMMAND, &cmd, 2);
	}
	if (n != 2) {
		snprintf(err, errlen, "config command: %s", err_str(n));
		ret = n < 0 ? (int)n : -EIO;
		goto fail;
	}
	s->open = true;
	return 0;
fail:
	vfio_mdev_close(&d->v);
	s->mapped = 0;
	return ret;
}

/* Create the mdev: 0 or -errno. */
static int sdev_create(struct sdev *s)
{
	int ret = mdev_create(s->type, s->d.uuid);

	if (!ret) {
		s->exists = true;
		s->d.created = true;
		s->incarnation++;
	}
	return ret;
}

/* The memory the device needs on our side (once). */
static int sdev_alloc(struct sdev *s, struct rng *r, uint64_t mem)
{
	struct mb_dev *d = &s->d;

	d->buf = mmap(NULL, MB_BUF_SIZE, PROT_READ | PROT_WRITE,
		      MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
	s->xring = mmap(NULL, XRING_LEN, PROT_READ | PROT_WRITE,
			MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
	if (d->buf == MAP_FAILED || s->xring == MAP_FAILED) {
		d->buf = NULL;
		s->xring = NULL;
		return -ENOMEM;
	}
	rnd_fill(r, d->buf, MB_BUF_SIZE);
	memset(d->buf, 0, MB_DATA_OFF);		/* the ring area */
	d->mg = malloc(MB_BUF_SIZE);
	d->md = calloc(1, mem);
	if (!d->mg || !d->md)
		return -ENOMEM;
	return 0;
}

/* Move the current migration file to the ended ones (mig_lock held). */
static void stale_push(struct sdev *s)
{
	if (s->cur_fd < 0)
		return;
	if (s->nstale == NSTALE) {
		close(s->stale_fd[0]);
		memmove(s->stale_fd, s->stale_fd + 1,
			(NSTALE - 1) * sizeof(s->stale_fd[0]));
		memmove(s->stale_kind, s->stale_kind + 1,
			(NSTALE - 1) * sizeof(s->stale_kind[0]));
		s->nstale--;
	}
	s->stale_fd[s->nstale] = s->cur_fd;
	s->stale_kind[s->nstale] = s->cur_kind;
	s->nstale++;
	s->cur_fd = -1;
	s->cur_kind = 0;
}

static void sdev_close_fds(struct sdev *s)
{
	int i;

	if (s->cur_fd >= 0)
		close(s->cur_fd);
	s->cur_fd = -1;
	for (i = 0; i < s->nstale; i++)
		close(s->stale_fd[i]);
	s->nstale = 0;
}

/* Close the device, remove the mdev, free our side: best effort. */
static void sdev_destroy(struct sdev *s)
{
	struct mb_dev *d = &s->d;

	sdev_close_fds(s);
	vfio_mdev_close(&d->v);
	s->open = false;
	if (s->exists && mdev_remove(d->uuid))
		fprintf(stderr, "# cleanup %s: %s\n", s->name, mdev_lib_error());
	s->exists = false;
	d->created = false;
	if (d->buf)
		munmap(d->buf, MB_BUF_SIZE);
	if (s->xring)
		munmap(s->xring, XRING_LEN);
	d->buf = NULL;
	s->xring = NULL;
	free(d->mg);
	free(d->md);
	d->mg = d->md = NULL;
	blob_put(s->saved);
	s->saved = NULL;
}

/* ---- what the documents say an access does --------------------------------- */

enum { W4 = 1, W48 = 2, WALL = 3 };

static const struct reg {
	uint32_t off, size;
	int widths;
	const char *name;
} regmap[] = {
	{ MBLIT_REG_ID, 4, W4, "ID" },
	{ MBLIT_REG_VERSION, 4, W4, "VERSION" },
	{ MBLIT_REG_CTRL, 4, W4, "CTRL" },
	{ MBLIT_REG_STATUS, 4, W4, "STATUS" },
	{ MBLIT_REG_RING_BASE, 8, W48, "RING_BASE" },
	{ MBLIT_REG_RING_SIZE, 4, W4, "RING_SIZE" },
	{ MBLIT_REG_RING_HEAD, 4, W4, "RING_HEAD" },
	{ MBLIT_REG_RING_TAIL, 4, W4, "RING_TAIL" },
	{ MBLIT_REG_INT_STATUS, 4, W4, "INT_STATUS" },
	{ MBLIT_REG_INT_MASK, 4, W4, "INT_MASK" },
	{ MBLIT_REG_FENCE_LAST, 8, W48, "FENCE_LAST" },
	{ MBLIT_REG_CMD_COUNT, 8, W48, "CMD_COUNT" },
	{ MBLIT_REG_BYTE_COUNT, 8, W48, "BYTE_COUNT" },
	{ MBLIT_REG_ERR_INDEX, 4, W4, "ERR_INDEX" },
	{ MBLIT_REG_ERR_ADDR, 8, W48, "ERR_ADDR" },
	{ MBLIT_REG_SCRATCH0, 8, WALL, "SCRATCH0" },
	{ MBLIT_REG_SCRATCH1, 8, WALL, "SCRATCH1" },
	{ MBLIT_REG_SCRATCH2, 8, WALL, "SCRATCH2" },
	{ MBLIT_REG_SCRATCH3, 8, WALL, "SCRATCH3" },
};
#define NREGS	ARRAY_SIZE(regmap)

/* docs/device.md §5 "Access rules": the register, or NULL (EINVAL). */
static const struct reg *bar0_decode(uint64_t off, size_t w)
{
	unsigned int i;

	if (off >= MBLIT_BAR0_SIZE || w > MBLIT_BAR0_SIZE - off)
		return NULL;
	if (w != 1 && w != 2 && w != 4 && w != 8)
		return NULL;
	if (off % w)
		return NULL;
	for (i = 0; i < NREGS; i++) {
		const struct reg *r = &regmap[i];

		if (off < r->off || off >= r->off + r->size)
			continue;
		if (off + w > r->off + r->size)
			return NULL;
		switch (r->widths) {
		case W4:
			return w == 4 ? r : NULL;
		case W48:
			return w == 4 || w == 8 ? r : NULL;
		default:
			return r;
		}
	}
	return NULL;
}

/* A random BAR0 access: mostly at registers, sometimes anywhere. */
static void rand_bar0(struct rng *r, uint64_t *off, size_t *w)
{
	static const size_t widths[] = { 4, 4, 8, 8, 1, 2, 4, 8, 3, 0, 16, 6 };
	const struct reg *g = &regmap[below(r, NREGS)];

	*w = widths[below(r, pct(r, 90) ? 8 : 12)];
	if (pct(r, 75))
		*off = g->off + (pct(r, 70) ? 0 : below(r, g->size + 1));
	else
		*off = below(r, MBLIT_BAR0_SIZE + 16);
}

/* The bytes of config space the device owns (status bit 3). */
static uint8_t cfg_volatile(unsigned int i)
{
	return i == PCI_STATUS ? PCI_STATUS_INTERRUPT : 0;
}

/* A config space access length: mostly 1, 2 or 4, sometimes out of range. */
static size_t rand_cfg_len(struct rng *r)
{
	static const size_t bad_len[] = { 0, 257, 300 };

	switch (below(r, 6)) {
	case 0:
		return 1;
	case 1:
		return 2;
	case 2:
		return 4;
	case 3:
		return between(r, 1, MBLIT_CONFIG_SIZE);
	case 4:
		return bad_len[below(r, ARRAY_SIZE(bad_len))];
	default:
		return between(r, 1, 8);
	}
}

/* ---- descriptors ----------------------------------------------------------- */

static uint32_t rand_len(struct rng *r, uint64_t max)
{
	unsigned int k = below(r, 100);
	uint64_t len;

	if (k < 50)
		len = between(r, 1, 4096);
	else if (k < 85)
		len = between(r, 1, 65536);
	else if (k < 97)
		len = between(r, 1, 262144);
	else
		len = between(r, 1, MBLIT_XFER_MAX);
	return len > max ? max : len;
}

static uint64_t rand_guest(struct rng *r, uint32_t len)
{
	return G_LO + below(r, G_HI - G_LO - len + 1);
}

/* Two non-overlapping ranges of @len in [lo, hi) (2 * len <= hi - lo). */
static void rand_pair(struct rng *r, uint64_t lo, uint64_t hi, uint32_t len,
		      uint64_t *a, uint64_t *b)
{
	int i;

	for (i = 0; i < 16; i++) {
		*a = lo + below(r, hi - lo - len + 1);
		*b = lo + below(r, hi - lo - len + 1);
		if (*a + len <= *b || *b + len <= *a)
			return;
	}
	*a = lo;
	*b = lo + len;
}

/* A descriptor the engine must execute (the model can follow it). */
static struct mblit_desc valid_desc(struct rng *r, uint64_t mem)
{
	const uint64_t glen = G_HI - G_LO;
	uint64_t a, b;
	uint32_t len;

	switch (below(r, 8)) {
	case 0:
		return mb_nop();
	case 1:
		len = rand_len(r, glen);
		return mb_fill(rand_guest(r, len), len, rnd(r), 0);
	case 2:
		len = rand_len(r, mem);
		return mb_fill(below(r, mem - len + 1), len, rnd(r), DD);
	case 3:
		len = rand_len(r, glen / 2);
		rand_pair(r, G_LO, G_HI, len, &a, &b);
		return mb_copy(a, b, len, 0);
	case 4:
		len = rand_len(r, mem);
		return mb_copy(below(r, mem - len + 1), rand_guest(r, len), len, DD);
	case 5:
		len = rand_len(r, mem);
		return mb_copy(rand_guest(r, len), below(r, mem - len + 1), len, SD);
	case 6:
		len = rand_len(r, mem / 2);
		rand_pair(r, 0, mem, len, &a, &b);
		return mb_copy(a, b, len, DD | SD);
	default:
		return mb_fence(G_LO + 8 * below(r, glen / 8), rnd(r),
				pct(r, 50) ? MBLIT_FLAG_IRQ : 0);
	}
}

/* A descriptor that stops the engine with an error (docs/device.md §8). */
static struct mblit_desc bad_desc(struct rng *r, uint64_t mem)
{
	struct mblit_desc x = valid_desc(r, mem);
	uint32_t len;

	if (x.opcode == MBLIT_OP_NOP || x.opcode == MBLIT_OP_FENCE)
		x = mb_fill(G_LO, 64, 0x5a5a5a5a, 0);
	switch (below(r, 12)) {
	case 0:
		x.opcode = pct(r, 30) ? 0 : between(r, 5, 255);
		break;
	case 1:
		x.flags |= 0x08 << below(r, 5);
		break;
	case 2:
		x.rsvd0 = between(r, 1, 0xffff);
		break;
	case 3:
		x.rsvd1 = rnd(r) | 1;
		break;
	case 4:
		x.len = 0;
		break;
	case 5:
		x.len = between(r, MBLIT_XFER_MAX + 1, UINT32_MAX);
		break;
	case 6:
		x = mb_fence(G_LO + 8 * below(r, 1000) + between(r, 1, 7), 1, 0);
		break;
	case 7:
		len = x.len < 16 ? 16 : x.len;
		x = mb_fill(pct(r, 50) ? mem - len / 2 : mem + below(r, 1ULL << 30),
			    len, 1, DD);
		break;
	case 8:
		x.dst = MB_UNMAPPED_IOVA + below(r, MB_MIB);
		x.flags &= ~DD;
		break;
	case 9:
		len = x.len < 16 ? 16 : x.len;
		x = mb_fill(0 - (uint64_t)len / 2, len, 1, 0);
		break;
	case 10:
		len = x.len < 2 ? 2 : x.len;
		x = mb_copy(G_LO + 4096, G_LO + 4096 + between(r, 1, len - 1),
			    len, 0);
		break;
	default:
		x = mb_fill(G_LO, 64, 0, 0);
		x.src = (rnd(r) | 1ULL << 40);
		break;
	}
	return x;
}

/* ---- helpers for the main thread ---------------------------------------------- */

static long module_budget_mib(void)
{
	long v;

	if (!sysfs_read_long("/sys/module/mblit/parameters/mem_budget_mib", &v))
		return v;
	return -1;
}

/*
 * The device's consistency check: after a device reset, with migration
 * (both protocols), logging and interrupt triggers off and the whole
 * guest buffer mapped again, every register is at reset and nothing is
 * pinned; then a known workload (48 random valid commands in every
 * direction) runs, and guest memory, device memory and the counters match
 * the model byte for byte, with nothing pinned afterwards.
 */
static void verify_device(struct __test_metadata *_metadata, struct sdev *s,
			  struct rng *r, const char *what)
{
	struct mb_dev *d = &s->d;
	struct mblit_desc x[16];
	uint64_t bytes = 0, fence = 0, iova, len, off;
	unsigned int bit, b, i, n = 0;
	bool fenced = false;
	uint8_t *va, *p;
	int ret;

	ASSERT_TRUE(s->open) TH_LOG("%s: %s is not open", what, s->name);
	ret = ioctl(DFD(s), VFIO_DEVICE_RESET) ? -errno : 0;
	ASSERT_EQ(0, ret) TH_LOG("%s: %s VFIO_DEVICE_RESET: %s", what, s->name,
				 err_str(ret));
	ret = mig_set(DFD(s), VFIO_DEVICE_STATE_RUNNING, NULL);
	EXPECT_EQ(0, ret) TH_LOG("%s: %s SET RUNNING: %s", what, s->name,
				 err_str(ret));
	EXPECT_EQ(VFIO_DEVICE_STATE_RUNNING, mig_get(DFD(s)))
		TH_LOG("%s: %s v2 state after a reset", what, s->name);
	ret = mb_runctl_set(d, &s->sr, RUNNING);
	EXPECT_EQ(0, ret) TH_LOG("%s: %s run-control RUNNING: %s", what,
				 s->name, err_str(ret));
	EXPECT_EQ(RUNNING, mb_runctl_get(d, &s->sr))
		TH_LOG("%s: %s run-control after a reset", what, s->name);
	EXPECT_EQ(0, dl_stop(d));
	if (d->v.backend == VFIO_BACKEND_TYPE1)
		EXPECT_EQ(0, t1_dirty(d, VFIO_IOMMU_DIRTY_PAGES_FLAG_STOP));
	EXPECT_EQ(0, mb_set_irqs(d, VFIO_IRQ_SET_DATA_NONE |
				 VFIO_IRQ_SET_ACTION_TRIGGER,
				 VFIO_PCI_MSI_IRQ_INDEX, 0, 0, NULL, 0));
	EXPECT_EQ(0, mb_set_irqs(d, VFIO_IRQ_SET_DATA_NONE |
				 VFIO_IRQ_SET_ACTION_TRIGGER,
				 VFIO_PCI_INTX_IRQ_INDEX, 0, 0, NULL, 0));
	for (bit = 0; bit <= XRING_BIT; bit++) {
		if (s->mapped & (1u << bit))
			continue;
		map_range(s, bit, &va, &iova, &len);
		ret = s_map(s, va, iova, len);
		EXPECT_EQ(0, ret) TH_LOG("%s: %s map [%#llx, +%#llx): %s", what,
					 s->name, (unsigned long long)iova,
					 (unsigned long long)len, err_str(ret));
	}
	s->mapped = ALL_MAPPED;
	mb_expect_reset_regs(_metadata, d, what);
	EXPECT_EQ(0, debugfs_val(s, "pinned_pages", NULL))
		TH_LOG("%s: %s pages pinned after a reset", what, s->name);

	/* Device memory is zero after a device reset. */
	p = malloc(MB_MIB);
	ASSERT_NE(NULL, p);
	for (off = 0; off < d->mem; off += MB_MIB) {
		mb_bar2_rd(_metadata, d, off, p, MB_MIB);
		for (i = 0; i < MB_MIB && !p[i]; i++)
			;
		EXPECT_EQ(MB_MIB, i) TH_LOG("%s: %s device byte %#llx is %#x after a reset",
					    what, s->name,
					    (unsigned long long)(off + i),
					    i < MB_MIB ? p[i] : 0);
	}
	free(p);

	/* The workload, against the model. */
	mb_set_command(_metadata, d, PCI_COMMAND_MASTER, 0);
	memcpy(d->mg, d->buf, MB_BUF_SIZE);
	memset(d->md, 0, d->mem);
	d->tail = 0;
	mb_ring_setup(_metadata, d, 64);
	for (b = 0; b < 3; b++) {
		for (i = 0; i < 16; i++) {
			x[i] = valid_desc(r, d->mem);
			if (x[i].opcode == MBLIT_OP_FENCE) {
				fence = x[i].src;
				fenced = true;
			}
		}
		bytes += mb_run(_metadata, d, x, 16);
		n += 16;
	}
	EXPECT_EQ(n, RD64(MBLIT_REG_CMD_COUNT)) TH_LOG("%s: %s", what, s->name);
	EXPECT_EQ(bytes, RD64(MBLIT_REG_BYTE_COUNT)) TH_LOG("%s: %s", what, s->name);
	if (fenced)
		EXPECT_EQ(fence, RD64(MBLIT_REG_FENCE_LAST))
			TH_LOG("%s: %s", what, s->name);
	mb_check_guest(_metadata, d, what);
	mb_check_dev(_metadata, d, 0, d->mem, what);
	EXPECT_EQ(0, debugfs_val(s, "pinned_pages", NULL))
		TH_LOG("%s: %s pages pinned after the workload", what, s->name);
	mb_engine_reset(_metadata, d);
}

/*
 * =========================================================================
 * stress.concurrent_surface
 * =========================================================================
 */

enum {
	OP_DOORBELL, OP_BAR0, OP_BAR2, OP_CFG, OP_RESET, OP_IRQS, OP_MAP,
	OP_MIG_SET, OP_MIG_READ, OP_MIG_WRITE, OP_MIG_ROUND, OP_MIG_INFO,
	OP_RUNCTL, OP_STATE_SAVE, OP_STATE_AREA, OP_DMA_LOG, OP_T1_DIRTY,
	OP_INFO, OP_UFFD, OP_REOPEN, OP_REMOVE, OP_RMMOD, NSOPS
};

static const char *const sop_name[NSOPS] = {
	"doorbell", "bar0", "bar2", "config", "reset", "set_irqs", "map_unmap",
	"mig_set", "mig_read", "mig_write", "mig_roundtrip", "mig_info",
	"runctl", "state_save", "state_area", "dma_logging", "type1_dirty",
	"get_info", "uffd_held", "close_reopen", "remove_open", "rmmod",
};

static const unsigned int sop_weight[NSOPS] = {
	[OP_DOORBELL] = 16, [OP_BAR0] = 10, [OP_BAR2] = 8, [OP_CFG] = 5,
	[OP_RESET] = 3, [OP_IRQS] = 4, [OP_MAP] = 5, [OP_MIG_SET] = 7,
	[OP_MIG_READ] = 6, [OP_MIG_WRITE] = 4, [OP_MIG_ROUND] = 2,
	[OP_MIG_INFO] = 3, [OP_RUNCTL] = 4, [OP_STATE_SAVE] = 2,
	[OP_STATE_AREA] = 2, [OP_DMA_LOG] = 4, [OP_T1_DIRTY] = 2, [OP_INFO] = 3,
	[OP_UFFD] = 1, [OP_REOPEN] = 1, [OP_REMOVE] = 1, [OP_RMMOD] = 1,
};

#define NSDEV	3	/* A, B, C */

struct worker {
	int idx;
	pid_t tid;
	pthread_t th;
	struct rng r;
	uint64_t beat;		/* ms of the last progress */
	int op;
	char args[320];		/* what the current operation is doing */
	int done;
	uint8_t *big;		/* BIG_LEN bytes, then a PROT_NONE page */
	uint64_t nops;
};

static struct {
	struct sdev dev[NSDEV];
	struct worker w[NWORKERS];
	struct stats st;
	int stop, failed;
	/* At most one device is closed or being removed at any time. */
	pthread_mutex_t close_lock;
	int avail1m_without_c;	/* mblit-1m available while C is gone */
	pid_t remover_tid;
	/* What completed despite the others. */
	uint64_t n_streams, n_roundtrips, n_snapshots, n_restores, n_removals,
		 n_reopens;
} S;

#define COUNT(x)	__atomic_fetch_add(&(x), 1, __ATOMIC_RELAXED)

#define E(...)	((const int[]){ __VA_ARGS__, 0 })
#define NONE	E(0)

static void beat(struct worker *w)
{
	__atomic_store_n(&w->beat, mb_now_ms(), __ATOMIC_RELEASE);
}

static bool stopping(void)
{
	return __atomic_load_n(&S.stop, __ATOMIC_ACQUIRE);
}

static __printf(4, 5) void wop(struct worker *w, int op, struct sdev *s,
				const char *fmt, ...)
{
	va_list ap;
	int n = 0;

	w->op = op;
	if (s)
		n = snprintf(w->args, sizeof(w->args), "%s (%s#%u, %s): ", s->name,
			     s->type, s->incarnation, be_name(s));
	va_start(ap, fmt);
	vsnprintf(w->args + n, sizeof(w->args) - n, fmt, ap);
	va_end(ap);
	beat(w);
}

static __printf(2, 3) void wfail(struct worker *w, const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	logmsg("FAIL [worker %d] %s: %s -- in %s", w->idx, sop_name[w->op],
	       msg, w->args);
	__atomic_store_n(&S.failed, 1, __ATOMIC_RELEASE);
	__atomic_store_n(&S.stop, 1, __ATOMIC_RELEASE);
}

/*
 * Count a call's result; false (and the run fails) if it is an errno
 * not in @allowed.
 */
static __printf(4, 5) bool check(struct worker *w, long ret,
				 const int *allowed, const char *fmt, ...)
{
	char what[256], list[128];
	va_list ap;
	int i, n = 0;

	if (ret >= 0) {
		stat_add(&S.st, w->op, B_OK);
		return true;
	}
	for (i = 0; allowed[i]; i++)
		if (allowed[i] == -ret) {
			stat_add(&S.st, w->op, bucket_of_errno(-ret));
			return true;
		}
	stat_add(&S.st, w->op, bucket_of_errno(-ret));
	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	list[0] = 0;
	for (i = 0; allowed[i] && n < (int)sizeof(list) - 16; i++)
		n += snprintf(list + n, sizeof(list) - n, "%s%s", i ? ", " : "",
			      strerror(allowed[i]));
	wfail(w, "%s: %s, allowed: %s", what, err_str(ret),
	      list[0] ? list : "none");
	return false;
}

/* Exactly @want (an errno, or 0 for success). */
static bool check_is(struct worker *w, long ret, int want, const char *what)
{
	stat_add(&S.st, w->op, ret >= 0 ? B_OK : bucket_of_errno(-ret));
	if ((ret >= 0 && !want) || ret == -want)
		return true;
	wfail(w, "%s: %s, expected %s", what, err_str(ret),
	      want ? strerror(want) : "success");
	return false;
}

/* Take the device for an operation: false if it is closed (removed). */
static bool enter(struct sdev *s)
{
	pthread_rwlock_rdlock(&s->life);
	if (s->open)
		return true;
	pthread_rwlock_unlock(&s->life);
	return false;
}

static void leave(struct sdev *s)
{
	pthread_rwlock_unlock(&s->life);
}

/* The worker's buffer, or (@fault) one whose byte @k is PROT_NONE. */
static uint8_t *wbuf(struct worker *w, bool fault, size_t k)
{
	/* The guard page follows BIG_LEN. */
	return fault ? w->big + BIG_LEN - k : w->big;
}

/* ---- engine ------------------------------------------------------------- */

static void op_doorbell(struct worker *w, struct sdev *s)
{
	static const uint32_t bad_size[] = { 0, 3, 5000, 8192 };
	struct rng *r = &w->r;
	struct mb_dev *d = &s->d;
	uint64_t ctrl, st, tail, head, iova, end;
	uint32_t size, n, i, slot;
	struct mblit_desc x;
	uint16_t cmd;
	uint8_t *va;
	long ret;

	if (!enter(s))
		return;
	pthread_mutex_lock(&s->ring_lock);
	wop(w, OP_DOORBELL, s, "read CTRL/STATUS");
	ret = rd_reg(s, MBLIT_REG_CTRL, 4, &ctrl);
	if (!check(w, ret, NONE, "read CTRL"))
		goto out;
	ret = rd_reg(s, MBLIT_REG_STATUS, 4, &st);
	if (!check(w, ret, NONE, "read STATUS"))
		goto out;
	if (!(ctrl & MBLIT_CTRL_ENABLE) || (st & MBLIT_STATUS_ERROR) ||
	    !s->ring_size || pct(r, 5)) {
		/* A new ring: in the guest buffer's first chunk or on its own. */
		if (pct(r, 75)) {
			iova = MB_IOVA;
			va = d->buf;
			size = 1u << below(r, 13);
		} else {
			iova = XRING_IOVA;
			va = s->xring;
			size = 1u << below(r, 12);
		}
		if (pct(r, 4))
			size = bad_size[below(r, ARRAY_SIZE(bad_size))];
		wop(w, OP_DOORBELL, s, "program a ring of %u at %#llx", size,
		    (unsigned long long)iova);
		ret = wr_reg(s, MBLIT_REG_CTRL, 4, MBLIT_CTRL_RESET);
		if (!check(w, ret, E(EBUSY), "CTRL.RESET"))
			goto out;
		ret = wr_reg(s, MBLIT_REG_RING_BASE, 8, iova);
		if (!check(w, ret, E(EBUSY), "write RING_BASE"))
			goto out;
		ret = wr_reg(s, MBLIT_REG_RING_SIZE, 4, size);
		if (!check(w, ret, E(EBUSY), "write RING_SIZE"))
			goto out;
		cmd = 0;
		ret = racc(s, &d->cfg, false, PCI_COMMAND, &cmd, 2);
		if (!check(w, ret, NONE, "read config command"))
			goto out;
		cmd |= PCI_COMMAND_MASTER;
		ret = racc(s, &d->cfg, true, PCI_COMMAND, &cmd, 2);
		if (!check(w, ret, NONE, "write config command"))
			goto out;
		ret = wr_reg(s, MBLIT_REG_CTRL, 4, MBLIT_CTRL_ENABLE);
		if (!check(w, ret, E(EBUSY), "CTRL.ENABLE"))
			goto out;
		if (size && size <= MBLIT_RING_SIZE_MAX && !(size & (size - 1))) {
			s->ring_iova = iova;
			s->ring_va = va;
			s->ring_size = size;
		} else {
			s->ring_size = 0;
		}
	}
	if (!s->ring_size)
		goto out;
	ret = rd_reg(s, MBLIT_REG_RING_TAIL, 4, &tail);
	if (!check(w, ret, NONE, "read RING_TAIL"))
		goto out;
	n = 1 + below(r, s->ring_size < 16 ? s->ring_size : 16);
	for (i = 0; i < n; i++) {
		x = pct(r, 80) ? valid_desc(r, d->mem) : bad_desc(r, d->mem);
		if (pct(r, 3) && x.opcode != MBLIT_OP_NOP && !(x.flags & DD)) {
			/* Stray DMA into a ring area. */
			x.dst = pct(r, 50) ? MB_IOVA + 8 * below(r, CHUNK / 8 - 1024) :
					     XRING_IOVA + 8 * below(r, XRING_LEN / 8 - 1024);
			if (x.opcode == MBLIT_OP_COPY && x.len > 8192)
				x.len = 8192;
			if (x.opcode == MBLIT_OP_FILL && x.len > 8192)
				x.len = 8192;
		}
		slot = (uint32_t)(tail + i) % s->ring_size;
		memcpy(s->ring_va + (uint64_t)slot * MBLIT_DESC_SIZE, &x,
		       MBLIT_DESC_SIZE);
	}
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	tail = (uint32_t)(tail + n);
	if (pct(r, 2))
		tail = rnd(r);		/* BAD_TAIL */
	wop(w, OP_DOORBELL, s, "doorbell: %u descriptors, tail %u", n,
	    (uint32_t)tail);
	ret = wr_reg(s, MBLIT_REG_RING_TAIL, 4, (uint32_t)tail);
	if (!check(w, ret, E(EBUSY), "write RING_TAIL"))
		goto out;
	pthread_mutex_unlock(&s->ring_lock);
	if (pct(r, 30)) {
		/* Let it run a little (no assertion: others race it). */
		end = mb_now_ms() + 200;
		do {
			ret = rd_reg(s, MBLIT_REG_RING_HEAD, 4, &head);
			if (!check(w, ret, NONE, "read RING_HEAD"))
				break;
			if ((uint32_t)head == (uint32_t)tail)
				break;
			mb_sleep_ms(2);
		} while (mb_now_ms() < end);
	}
	leave(s);
	return;
out:
	pthread_mutex_unlock(&s->ring_lock);
	leave(s);
}

/* ---- regions ------------------------------------------------------------- */

static void op_bar0(struct worker *w, struct sdev *s)
{
	struct rng *r = &w->r;
	uint8_t buf[16];
	const struct reg *g;
	uint64_t off;
	size_t width;
	bool wr = pct(r, 50);
	long ret;

	if (!enter(s))
		return;
	rand_bar0(r, &off, &width);
	g = bar0_decode(off, width);
	rnd_fill(r, buf, sizeof(buf));
	if (wr && g && g->off == MBLIT_REG_CTRL && pct(r, 80))
		buf[0] &= MBLIT_CTRL_ENABLE;	/* fewer resets than random bits */
	wop(w, OP_BAR0, s, "%s %zu bytes at BAR0+%#llx (%s)",
	    wr ? "write" : "read", width, (unsigned long long)off,
	    g ? g->name : "invalid");
	ret = racc(s, &s->d.bar0, wr, off, buf, width);
	if (!g)
		check_is(w, ret, EINVAL, "invalid BAR0 access");
	else if (check(w, ret, wr ? E(EBUSY) : NONE, "BAR0 access") &&
		 ret >= 0 && ret != (long)width)
		wfail(w, "BAR0 access of %zu bytes returned %ld", width, ret);
	if (!wr && g && ret == 4 && g->off == MBLIT_REG_ID &&
	    mig_le32(buf) != MBLIT_ID_MAGIC)
		wfail(w, "ID reads %#x", mig_le32(buf));
	leave(s);
}

static void op_bar2(struct worker *w, struct sdev *s)
{
	struct rng *r = &w->r;
	uint64_t mem = s->d.mem, off;
	size_t len, k = 0;
	bool wr = pct(r, 50), fault = false, valid = true;
	unsigned int kind = below(r, 100);
	uint8_t *buf;
	long ret;

	if (!enter(s))
		return;
	if (kind < 40) {
		len = between(r, 1, 4096);
	} else if (kind < 70) {
		len = between(r, 1, 256 * 1024);
	} else if (kind < 85) {
		len = between(r, 1, BIG_LEN);	/* multi-MiB */
	} else {
		len = 0;
		valid = false;
	}
	if (len > mem)
		len = mem;
	off = valid ? below(r, mem - len + 1) : 0;
	if (!valid) {
		switch (below(r, 5)) {
		case 0:
			len = 0;
			off = below(r, mem);
			break;
		case 1:
			len = between(r, 1, 4096);
			off = mem - len + between(r, 1, len);
			break;
		case 2:
			len = 1;
			off = mem;
			break;
		case 3:
			len = between(r, 2, 65536);
			off = (1ULL << 40) - 1 - below(r, len - 1);	/* past the region */
			break;
		default:
			len = between(r, mem + 1, BIG_LEN > mem ? BIG_LEN : mem + 1);
			off = 0;
			break;
		}
	}
	if (valid && pct(r, 10) && len > 1) {
		fault = true;
		k = below(r, len < 8192 ? len : 8192);
	}
	buf = wbuf(w, fault, k);
	if (wr && !fault)
		rnd_fill(r, buf, len < 4096 ? len : 4096);
	wop(w, OP_BAR2, s, "%s %zu bytes at BAR2+%#llx%s, buffer faults after %zd",
	    wr ? "write" : "read", len, (unsigned long long)off,
	    valid ? "" : " (invalid)", fault ? (ssize_t)k : (ssize_t)-1);
	ret = racc(s, &s->d.bar2, wr, off, buf, len);
	if (!valid)
		check_is(w, ret, EINVAL, "out-of-range BAR2 access");
	else if (fault && ret >= 0)
		wfail(w, "a BAR2 access whose buffer faults returned %ld", ret);
	else if (fault)
		check(w, ret, wr ? E(EFAULT, EBUSY) : E(EFAULT), "faulting BAR2 access");
	else if (check(w, ret, wr ? E(EBUSY) : NONE, "BAR2 access") && ret >= 0 &&
		 ret != (long)len)
		wfail(w, "BAR2 access of %zu bytes returned %ld", len, ret);
	leave(s);
}

static void op_cfg(struct worker *w, struct sdev *s)
{
	struct rng *r = &w->r;
	uint8_t buf[300];
	bool wr = pct(r, 40), valid;
	uint64_t off = below(r, 264);
	size_t len;
	long ret;

	if (!enter(s))
		return;
	len = rand_cfg_len(r);
	if (off == 263)
		off = 256 - len;	/* ends at the last byte (or wraps: invalid) */
	valid = len >= 1 && len <= MBLIT_CONFIG_SIZE && off + len <= MBLIT_CONFIG_SIZE;
	rnd_fill(r, buf, sizeof(buf));
	if (wr && off <= PCI_COMMAND + 1 && off + len > PCI_COMMAND && pct(r, 80))
		buf[PCI_COMMAND - off] |= PCI_COMMAND_MASTER;	/* mostly */
	wop(w, OP_CFG, s, "%s %zu bytes at config+%#llx", wr ? "write" : "read",
	    len, (unsigned long long)off);
	ret = racc(s, &s->d.cfg, wr, off, buf, len);
	if (!valid)
		check_is(w, ret, EINVAL, "out-of-range config access");
	else if (check(w, ret, NONE, "config access") && ret != (long)len)
		wfail(w, "config access of %zu bytes returned %ld", len, ret);
	if (!wr && valid && ret > 0 && off == 0 && len >= 2 &&
	    (buf[0] | buf[1] << 8) != MBLIT_VENDOR_ID)
		wfail(w, "vendor id reads %#x", buf[0] | buf[1] << 8);
	leave(s);
}

/* ---- resets and interrupts ---------------------------------------------- */

static void op_reset(struct worker *w, struct sdev *s)
{
	long ret;

	if (!enter(s))
		return;
	if (pct(&w->r, 50)) {
		wop(w, OP_RESET, s, "CTRL.RESET");
		ret = wr_reg(s, MBLIT_REG_CTRL, 4, MBLIT_CTRL_RESET |
			     (pct(&w->r, 50) ? MBLIT_CTRL_ENABLE : 0));
		check(w, ret, E(EBUSY), "CTRL.RESET");
	} else {
		wop(w, OP_RESET, s, "VFIO_DEVICE_RESET");
		/* It ends the migration: its file joins the ended ones. */
		pthread_mutex_lock(&s->mig_lock);
		ret = ioctl(DFD(s), VFIO_DEVICE_RESET) ? -errno : 0;
		if (check(w, ret, NONE, "VFIO_DEVICE_RESET"))
			stale_push(s);
		pthread_mutex_unlock(&s->mig_lock);
	}
	leave(s);
}

static void op_irqs(struct worker *w, struct sdev *s)
{
	struct rng *r = &w->r;
	struct mb_dev *d = &s->d;
	uint32_t trig = VFIO_IRQ_SET_ACTION_TRIGGER;
	int efd = -1, fd, ret;
	uint8_t b;

	if (!enter(s))
		return;
	switch (below(r, 12)) {
	case 0:
	case 1:
		efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
		wop(w, OP_IRQS, s, "MSI trigger eventfd");
		ret = mb_set_trigger(d, VFIO_PCI_MSI_IRQ_INDEX, efd);
		check(w, ret, E(EINVAL), "SET_IRQS MSI trigger");
		break;
	case 2:
	case 3:
		efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
		wop(w, OP_IRQS, s, "INTx trigger eventfd");
		ret = mb_set_trigger(d, VFIO_PCI_INTX_IRQ_INDEX, efd);
		check(w, ret, E(EINVAL), "SET_IRQS INTx trigger");
		break;
	case 4:
		fd = -1;
		wop(w, OP_IRQS, s, "remove a trigger (fd -1)");
		ret = mb_set_trigger(d, pct(r, 50) ? VFIO_PCI_MSI_IRQ_INDEX :
				     VFIO_PCI_INTX_IRQ_INDEX, fd);
		check_is(w, ret, 0, "SET_IRQS trigger fd -1");
		break;
	case 5:
		wop(w, OP_IRQS, s, "disable an index (DATA_NONE, count 0)");
		ret = mb_set_irqs(d, VFIO_IRQ_SET_DATA_NONE | trig,
				  pct(r, 50) ? VFIO_PCI_MSI_IRQ_INDEX :
				  VFIO_PCI_INTX_IRQ_INDEX, 0, 0, NULL, 0);
		check_is(w, ret, 0, "SET_IRQS disable");
		break;
	case 6:
		wop(w, OP_IRQS, s, "INTx mask/unmask");
		ret = mb_intx_action(d, pct(r, 50) ? VFIO_IRQ_SET_ACTION_MASK :
				     VFIO_IRQ_SET_ACTION_UNMASK);
		check_is(w, ret, 0, "SET_IRQS INTx mask/unmask");
		break;
	case 7:
		b = pct(r, 70);
		wop(w, OP_IRQS, s, "loopback trigger (%s)", b ? "bool 1" : "none");
		ret = b ? mb_set_irqs(d, VFIO_IRQ_SET_DATA_BOOL | trig,
				      pct(r, 50) ? VFIO_PCI_MSI_IRQ_INDEX :
				      VFIO_PCI_INTX_IRQ_INDEX, 0, 1, &b, 1) :
			  mb_set_irqs(d, VFIO_IRQ_SET_DATA_NONE | trig,
				      VFIO_PCI_MSI_IRQ_INDEX, 0, 1, NULL, 0);
		check_is(w, ret, 0, "SET_IRQS loopback");
		break;
	case 8:
		wop(w, OP_IRQS, s, "MSI-X trigger (no such irq)");
		efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
		ret = mb_set_trigger(d, VFIO_PCI_MSIX_IRQ_INDEX, efd);
		check_is(w, ret, EINVAL, "SET_IRQS MSI-X");
		break;
	case 9:
		wop(w, OP_IRQS, s, "MSI mask (unsupported)");
		ret = mb_set_irqs(d, VFIO_IRQ_SET_DATA_NONE |
				  VFIO_IRQ_SET_ACTION_MASK,
				  VFIO_PCI_MSI_IRQ_INDEX, 0, 1, NULL, 0);
		check_is(w, ret, EINVAL, "SET_IRQS MSI mask");
		break;
	case 10:
		/* Our own device fd: no eventfd. */
		wop(w, OP_IRQS, s, "trigger with a non-eventfd fd");
		ret = mb_set_trigger(d, VFIO_PCI_MSI_IRQ_INDEX, DFD(s));
		check_is(w, ret, EINVAL, "SET_IRQS non-eventfd");
		break;
	default:
		/* Closed: above RLIMIT_NOFILE, so no other thread can open it. */
		fd = 1 << 20;
		wop(w, OP_IRQS, s, "trigger with a closed fd %d", fd);
		ret = mb_set_trigger(d, VFIO_PCI_INTX_IRQ_INDEX, fd);
		check_is(w, ret, EBADF, "SET_IRQS closed fd");
		break;
	}
	if (efd >= 0)
		close(efd);	/* the device keeps its own reference */
	leave(s);
}

/* ---- IOMMU mappings under the ring ---------------------------------------- */

static void op_map(struct worker *w, struct sdev *s)
{
	struct rng *r = &w->r;
	unsigned int bit = pct(r, 30) ? 0 : pct(r, 25) ? XRING_BIT :
			   between(r, 1, NCHUNK - 1);
	uint64_t iova, len, done = 0;
	uint8_t *va;
	int ret;

	if (!enter(s))
		return;
	pthread_mutex_lock(&s->map_lock);
	map_range(s, bit, &va, &iova, &len);
	if (pct(r, 3)) {
		wop(w, OP_MAP, s, "unmap everything (mapped: %#x)", s->mapped);
		ret = s_unmap_all(s);
		if (check(w, ret, NONE, "unmap all")) {
			uint64_t pinned = debugfs_val(s, "pinned_pages", NULL);

			/* Nothing is mapped (map_lock): nothing can be pinned. */
			if (pinned)
				wfail(w, "%llu pages pinned after unmapping everything",
				      (unsigned long long)pinned);
			s->mapped = 0;
		}
	} else if (pct(r, 10)) {
		switch (below(r, 3)) {
		case 0:
			if (!(s->mapped & (1u << bit)))
				break;
			wop(w, OP_MAP, s, "map [%#llx, +%#llx) again",
			    (unsigned long long)iova, (unsigned long long)len);
			ret = s_map(s, va, iova, len);
			if (!ret)
				wfail(w, "mapping a mapped range succeeded");
			else
				check(w, ret, E(EEXIST, EINVAL), "mapping a mapped range");
			break;
		case 1:
			wop(w, OP_MAP, s, "map unaligned [%#llx, +%#llx)",
			    (unsigned long long)iova + 1, (unsigned long long)len);
			ret = s_map(s, va + 1, iova + 1, len);
			check_is(w, ret, EINVAL, "unaligned map");
			break;
		default:
			wop(w, OP_MAP, s, "unmap never-mapped [%#llx, +1 MiB)",
			    (unsigned long long)MB_UNMAPPED_IOVA);
			ret = s_unmap(s, MB_UNMAPPED_IOVA, MB_MIB, &done);
			if (check(w, ret, E(ENOENT), "unmapping nothing") && !ret &&
			    done)
				wfail(w, "unmapping nothing unmapped %#llx bytes",
				      (unsigned long long)done);
			break;
		}
	} else if (s->mapped & (1u << bit)) {
		bool dirty = s->d.v.backend == VFIO_BACKEND_TYPE1 && pct(r, 20);

		wop(w, OP_MAP, s, "unmap [%#llx, +%#llx)%s%s",
		    (unsigned long long)iova, (unsigned long long)len,
		    bit == 0 || bit == XRING_BIT ? " (a ring area)" : "",
		    dirty ? " with GET_DIRTY_BITMAP" : "");
		if (dirty) {
			/* EINVAL when the container is not tracking. */
			ret = t1_unmap_bitmap(&s->d, iova, len, (uint64_t *)w->big,
					      (len / MB_PAGE + 63) / 64 * 8, &done);
			if (ret == -EINVAL) {
				stat_add(&S.st, w->op, B_EINVAL);
				goto unlock;
			}
		} else {
			ret = s_unmap(s, iova, len, &done);
		}
		if (check(w, ret, NONE, "dma unmap")) {
			if (done != len)
				wfail(w, "unmapped %#llx of %#llx bytes",
				      (unsigned long long)done,
				      (unsigned long long)len);
			s->mapped &= ~(1u << bit);
		}
	} else {
		wop(w, OP_MAP, s, "map [%#llx, +%#llx)", (unsigned long long)iova,
		    (unsigned long long)len);
		ret = s_map(s, va, iova, len);
		if (check(w, ret, NONE, "dma map"))
			s->mapped |= 1u << bit;
	}
unlock:
	pthread_mutex_unlock(&s->map_lock);
	leave(s);
}

/* ---- migration v2 ---------------------------------------------------------- */

static const uint32_t mig_targets[] = {
	VFIO_DEVICE_STATE_RUNNING, VFIO_DEVICE_STATE_RUNNING,
	VFIO_DEVICE_STATE_STOP, VFIO_DEVICE_STATE_PRE_COPY,
	VFIO_DEVICE_STATE_PRE_COPY, VFIO_DEVICE_STATE_PRE_COPY_P2P,
	VFIO_DEVICE_STATE_RUNNING_P2P, VFIO_DEVICE_STATE_STOP_COPY,
	VFIO_DEVICE_STATE_STOP_COPY, VFIO_DEVICE_STATE_RESUMING,
	VFIO_DEVICE_STATE_RESUMING, VFIO_DEVICE_STATE_ERROR,
};

/*
 * SET under mig_lock (caller holds it and the device): -errno or 0.  With
 * @own, a data_fd it hands out is the caller's (in *own) and no other
 * thread reads or writes it; else it becomes the current one.
 */
static int mig_set_locked(struct worker *w, struct sdev *s, uint32_t target,
			  int *own)
{
	int nfd = -1, ret = mig_set(DFD(s), target, &nfd);

	if (own)
		*own = -1;
	if (target >= MIG_NSTATES) {
		check_is(w, ret, EINVAL, "SET of an invalid state");
		return ret;
	}
	if (!check(w, ret, E(EINVAL, EBUSY, ENOMEM), "SET %s",
		   mig_state_name(target)))
		return ret ? ret : -EIO;
	if (!ret && nfd >= 0 && own) {
		/* The current file ended, as every file before this one. */
		*own = nfd;
	} else if (!ret && nfd >= 0) {
		stale_push(s);
		s->cur_fd = nfd;
		s->cur_kind = target == VFIO_DEVICE_STATE_RESUMING ? FD_RESUME :
								     FD_SAVE;
	}
	return ret;
}

static void op_mig_set(struct worker *w, struct sdev *s)
{
	static const uint32_t bad_target[] = { 8, 0xff, 0xffffffff };
	struct rng *r = &w->r;
	uint32_t target = pct(r, 4) ? bad_target[below(r, ARRAY_SIZE(bad_target))] :
			  mig_targets[below(r, ARRAY_SIZE(mig_targets))];

	if (!enter(s))
		return;
	wop(w, OP_MIG_SET, s, "SET %s (%u)", mig_state_name(target), target);
	pthread_mutex_lock(&s->mig_lock);
	mig_set_locked(w, s, target, NULL);
	pthread_mutex_unlock(&s->mig_lock);
	leave(s);
}

/*
 * A dup of the current (or an ended) migration file: fd, or -1.  A
 * current file of the other direction than @prefer is mostly passed over.
 */
static int grab_fd(struct worker *w, struct sdev *s, int prefer, int *kind,
		   bool *stale)
{
	int fd = -1, i;

	pthread_mutex_lock(&s->mig_lock);
	if (s->cur_fd >= 0 && prefer && s->cur_kind != prefer && pct(&w->r, 75)) {
		pthread_mutex_unlock(&s->mig_lock);
		return -1;
	}
	if (s->nstale && (s->cur_fd < 0 || pct(&w->r, 20))) {
		i = below(&w->r, s->nstale);
		fd = dup(s->stale_fd[i]);
		*kind = s->stale_kind[i];
		*stale = true;
	} else if (s->cur_fd >= 0) {
		fd = dup(s->cur_fd);
		*kind = s->cur_kind;
		*stale = false;
	}
	pthread_mutex_unlock(&s->mig_lock);
	return fd;
}

static void op_mig_read(struct worker *w, struct sdev *s)
{
	static const size_t sizes[] = { 1, 7, 4096, 4104, 65536, MB_MIB, BIG_LEN };
	struct rng *r = &w->r;
	size_t len = sizes[below(r, 7)], k = 0;
	bool stale = false, fault = pct(r, 15);
	int kind = 0, fd;
	uint8_t *buf;
	ssize_t n;
	long ret;

	fd = grab_fd(w, s, FD_SAVE, &kind, &stale);
	if (fd < 0)
		return;
	if (fault) {
		k = below(r, len < 3 * 4104 ? len : 3 * 4104);
		len = k + between(r, 1, 4096);
	}
	buf = wbuf(w, fault, k);
	wop(w, OP_MIG_READ, s, "read %zu bytes of %s %s data_fd, buffer faults after %zd",
	    len, stale ? "an ended" : "the current",
	    kind == FD_SAVE ? "save" : "resume", fault ? (ssize_t)k : (ssize_t)-1);
	n = read(fd, buf, len);
	ret = n < 0 ? -errno : n;
	if (kind == FD_RESUME)
		check_is(w, ret, EBADF, "read of a resume data_fd");
	else if (stale)
		check_is(w, ret, ENODEV, "read of an ended data_fd");
	else if (check(w, ret, fault && !k ? E(ENOMSG, EBUSY, ENODEV, ENOMEM, EFAULT) :
				     E(ENOMSG, EBUSY, ENODEV, ENOMEM),
		       "data_fd read") && ret >= 0) {
		if ((size_t)ret > (fault ? k : len))
			wfail(w, "read of %zu bytes (fault after %zu) returned %ld",
			      len, k, ret);
		if (ret == 0)
			stat_add(&S.st, w->op, B_EOF);
		else if ((size_t)ret < len)
			stat_add(&S.st, w->op, B_SHORT);
	}
	close(fd);
}

static void op_mig_write(struct worker *w, struct sdev *s)
{
	static const char *const variant_name[] = {
		"stream", "stream piece", "corrupted stream", "garbage",
	};
	struct rng *r = &w->r;
	struct blob *src;
	bool stale = false, fault = pct(r, 10);
	size_t len, k = 0, start = 0;
	int kind = 0, fd, variant;
	uint8_t *buf;
	ssize_t n;
	long ret;

	fd = grab_fd(w, s, FD_RESUME, &kind, &stale);
	if (fd < 0)
		return;
	pthread_mutex_lock(&s->mig_lock);
	src = blob_get(s->saved);
	pthread_mutex_unlock(&s->mig_lock);
	variant = src ? below(r, 4) : 3;
	switch (variant) {
	case 0:		/* the stream, from its start, whole or truncated */
		len = src->len;
		if (len > BIG_LEN || pct(r, 50))
			len = between(r, 1, len < BIG_LEN ? len : BIG_LEN);
		memcpy(w->big, src->data, len);
		break;
	case 1:		/* a piece from the middle */
		start = below(r, src->len);
		len = between(r, 1, src->len - start);
		if (len > BIG_LEN)
			len = BIG_LEN;
		memcpy(w->big, src->data + start, len);
		break;
	case 2:		/* corrupted */
		len = src->len < BIG_LEN ? src->len : BIG_LEN;
		memcpy(w->big, src->data, len);
		w->big[below(r, len)] ^= 1 << below(r, 8);
		break;
	default:	/* garbage, sometimes behind a plausible header */
		len = between(r, 1, 65536);
		rnd_fill(r, w->big, len);
		if (len >= 4 && pct(r, 50))
			memcpy(w->big, (uint32_t[]){ REC_PAGES_MAGIC }, 4);
		break;
	}
	blob_put(src);
	buf = w->big;
	if (fault && len > 1) {
		k = below(r, len < 65536 ? len : 65536);
		memmove(w->big + BIG_LEN - k, w->big, k);
		buf = w->big + BIG_LEN - k;
	} else {
		fault = false;
	}
	wop(w, OP_MIG_WRITE, s, "write %zu bytes (%s) to %s %s data_fd, buffer faults after %zd",
	    len, variant_name[variant],
	    stale ? "an ended" : "the current",
	    kind == FD_SAVE ? "save" : "resume", fault ? (ssize_t)k : (ssize_t)-1);
	n = write(fd, buf, len);
	ret = n < 0 ? -errno : n;
	if (kind == FD_SAVE)
		check_is(w, ret, EBADF, "write of a save data_fd");
	else if (stale && fault && !k)
		/* Copied in first: a fault at the first byte may come first. */
		check(w, ret ? ret : -EIO, E(ENODEV, EFAULT), "write of an ended data_fd");
	else if (stale)
		check_is(w, ret, ENODEV, "write of an ended data_fd");
	else if (check(w, ret, fault && !k ?
				E(EINVAL, EPROTONOSUPPORT, ENODEV, ENOMEM, EFAULT) :
				E(EINVAL, EPROTONOSUPPORT, ENODEV, ENOMEM),
		       "data_fd write") &&
		 ret >= 0 && (size_t)ret != (fault ? k : len))
		wfail(w, "write of %zu bytes (fault after %zu) returned %ld",
		      len, fault ? k : len, ret);
	close(fd);
}

/*
 * A whole migration of the device into itself: STOP_COPY, the stream to
 * its end (which must be well-formed), STOP, RESUMING, the stream back,
 * STOP, RUNNING.  Others race every step (their SETs, resets and closes
 * end the stream: ENODEV), but nobody else reads or writes its data_fds,
 * so a stream read to its end is a whole one.  A step that fails as
 * allowed ends the operation.
 */
static void op_mig_roundtrip(struct worker *w, struct sdev *s)
{
	struct rng *r = &w->r;
	uint64_t bound = mig_mblit_stream_len(s->npages) + REC_DEV_LEN(0);
	struct mig_buf b = { 0 };
	size_t off, want;
	int fd = -1, ndev = 0, ret;
	char msg[200];
	ssize_t n;
	long end;

	if (!enter(s))
		return;
	wop(w, OP_MIG_ROUND, s, "SET STOP_COPY");
	pthread_mutex_lock(&s->mig_lock);
	mig_set_locked(w, s, VFIO_DEVICE_STATE_STOP_COPY, &fd);
	pthread_mutex_unlock(&s->mig_lock);
	if (fd < 0)
		goto out;
	wop(w, OP_MIG_ROUND, s, "read the STOP_COPY stream (bound %llu bytes)",
	    (unsigned long long)bound);
	for (;;) {
		want = mig_odd_sizes[below(r, MIG_NODD)];
		if (mig_buf_reserve(&b, want))
			goto out;
		n = read(fd, b.p + b.len, want);
		beat(w);
		ret = n < 0 ? -errno : 0;
		if (n < 0) {
			/* Others ended it, or read it at the same time. */
			check(w, ret, E(ENODEV, EBUSY, ENOMEM), "STOP_COPY read");
			goto out;
		}
		if (!n)
			break;
		b.len += n;
		if (b.len > bound) {
			wfail(w, "the STOP_COPY stream is longer than %llu bytes",
			      (unsigned long long)bound);
			goto out;
		}
	}
	stat_add(&S.st, w->op, B_EOF);
	end = stream_check(b.p, b.len, 0, s->d.mem / MB_MIB, s->d.mem, true,
			   &ndev, msg, sizeof(msg));
	if (end < 0) {
		wfail(w, "the STOP_COPY stream (%zu bytes) is malformed: %s",
		      b.len, msg);
		goto out;
	}
	COUNT(S.n_streams);
	pthread_mutex_lock(&s->mig_lock);
	blob_put(s->saved);
	s->saved = blob_new(b.p, b.len);
	pthread_mutex_unlock(&s->mig_lock);
	close(fd);
	fd = -1;

	wop(w, OP_MIG_ROUND, s, "STOP, RESUMING with the %zu-byte stream", b.len);
	pthread_mutex_lock(&s->mig_lock);
	ret = mig_set_locked(w, s, VFIO_DEVICE_STATE_STOP, NULL);
	if (!ret)
		mig_set_locked(w, s, VFIO_DEVICE_STATE_RESUMING, &fd);
	pthread_mutex_unlock(&s->mig_lock);
	if (fd < 0)
		goto out;
	for (off = 0; off < b.len; off += n) {
		want = mig_odd_sizes[below(r, MIG_NODD)];
		if (want > b.len - off)
			want = b.len - off;
		n = write(fd, b.p + off, want);
		beat(w);
		if (n <= 0) {
			ret = n < 0 ? -errno : -EIO;
			check(w, ret, E(EINVAL, ENODEV, ENOMEM), "RESUMING write");
			goto out;
		}
	}
	wop(w, OP_MIG_ROUND, s, "STOP (end of the stream), RUNNING");
	pthread_mutex_lock(&s->mig_lock);
	if (!mig_set_locked(w, s, VFIO_DEVICE_STATE_STOP, NULL))
		COUNT(S.n_roundtrips);
	mig_set_locked(w, s, VFIO_DEVICE_STATE_RUNNING, NULL);
	pthread_mutex_unlock(&s->mig_lock);
out:
	if (fd >= 0)
		close(fd);
	mig_buf_free(&b);
	leave(s);
}

static void op_mig_info(struct worker *w, struct sdev *s)
{
	uint64_t flags = 0, size = 0, initial = 0, dirty = 0;
	uint64_t full = mig_mblit_stream_len(s->npages);
	bool stale = false;
	int kind = 0, fd, ret;

	if (!enter(s))
		return;
	wop(w, OP_MIG_INFO, s, "GET MIGRATION");
	ret = mig_flags(DFD(s), &flags);
	if (check_is(w, ret, 0, "GET MIGRATION") &&
	    flags != (VFIO_MIGRATION_STOP_COPY | VFIO_MIGRATION_P2P |
		      VFIO_MIGRATION_PRE_COPY))
		wfail(w, "migration flags %#llx", (unsigned long long)flags);
	wop(w, OP_MIG_INFO, s, "GET MIG_DEVICE_STATE");
	ret = mig_get(DFD(s));
	if (check(w, ret, NONE, "GET MIG_DEVICE_STATE") && ret >= MIG_NSTATES)
		wfail(w, "device state %d", ret);
	wop(w, OP_MIG_INFO, s, "MIG_DATA_SIZE");
	ret = mig_data_size(DFD(s), &size);
	/* 0 once a STOP_COPY stream has been read to its end. */
	if (check_is(w, ret, 0, "MIG_DATA_SIZE") &&
	    size > full + REC_PAGES_LEN(256) + REC_DEV_LEN(0))
		wfail(w, "MIG_DATA_SIZE %llu (device memory needs at most %llu)",
		      (unsigned long long)size, (unsigned long long)full);
	leave(s);

	fd = grab_fd(w, s, 0, &kind, &stale);
	if (fd < 0)
		return;
	wop(w, OP_MIG_INFO, s, "PRECOPY_INFO on %s %s data_fd",
	    stale ? "an ended" : "the current", kind == FD_SAVE ? "save" : "resume");
	ret = mig_precopy_info(fd, &initial, &dirty);
	if (kind == FD_RESUME)
		check_is(w, ret, ENOTTY, "PRECOPY_INFO on a resume data_fd");
	else if (stale)
		check_is(w, ret, EINVAL, "PRECOPY_INFO on an ended data_fd");
	else if (check(w, ret, E(EINVAL), "PRECOPY_INFO") && !ret &&
		 (initial > full + REC_PAGES_LEN(256) ||
		  dirty > full + REC_PAGES_LEN(256)))
		wfail(w, "PRECOPY_INFO initial %llu dirty %llu (device memory needs at most %llu)",
		      (unsigned long long)initial, (unsigned long long)dirty,
		      (unsigned long long)full);
	close(fd);
}

/* ---- the DEVICE_STATE region -------------------------------------------------- */

/* Run-control values the device refuses. */
static const uint8_t bad_runctl[] = { 0, 3, 0x81, 0xff };

static void op_runctl(struct worker *w, struct sdev *s)
{
	struct rng *r = &w->r;
	uint8_t v;
	long ret;

	if (!enter(s))
		return;
	switch (below(r, 5)) {
	case 0:
	case 1:
		wop(w, OP_RUNCTL, s, "write STOPPED");
		ret = mb_runctl_set(&s->d, &s->sr, STOPPED);
		check(w, ret, E(EBUSY, ENOMEM), "run-control STOPPED");
		break;
	case 2:
	case 3:
		wop(w, OP_RUNCTL, s, "write RUNNING");
		ret = mb_runctl_set(&s->d, &s->sr, RUNNING);
		check(w, ret, E(EBUSY, EINVAL, EPROTONOSUPPORT, ENOMEM),
		      "run-control RUNNING");
		break;
	default:
		if (pct(r, 50)) {
			v = bad_runctl[below(r, ARRAY_SIZE(bad_runctl))];
			wop(w, OP_RUNCTL, s, "write %#x", v);
			ret = mb_runctl_set(&s->d, &s->sr, v);
			check_is(w, ret, EINVAL, "run-control invalid value");
		} else {
			wop(w, OP_RUNCTL, s, "read");
			ret = mb_runctl_get(&s->d, &s->sr);
			if (check(w, ret, E(EBUSY), "run-control read") &&
			    ret >= 0 && ret != RUNNING && ret != STOPPED)
				wfail(w, "run-control reads %ld", ret);
		}
		break;
	}
	leave(s);
}

/* The region header's fixed fields (docs/device.md §10). */
static bool check_header(struct worker *w, struct sdev *s, uint64_t *size,
			 uint64_t *gen)
{
	uint8_t h[MBLIT_STATE_HEADER_END];
	long ret = racc(s, &s->sr, false, 8, h + 8, sizeof(h) - 8);

	if (!check(w, ret, NONE, "DEVICE_STATE header read"))
		return false;
	if (mig_le32(h + MBLIT_STATE_OFF_MAGIC) != 0x5453424d ||
	    mig_le32(h + MBLIT_STATE_OFF_VERSION) != 1 ||
	    mig_le32(h + MBLIT_STATE_OFF_TYPE) != s->d.mem / MB_MIB) {
		wfail(w, "DEVICE_STATE header: magic %#x version %u type %u",
		      mig_le32(h + MBLIT_STATE_OFF_MAGIC),
		      mig_le32(h + MBLIT_STATE_OFF_VERSION),
		      mig_le32(h + MBLIT_STATE_OFF_TYPE));
		return false;
	}
	*size = mig_le64(h + MBLIT_STATE_OFF_SIZE);
	*gen = mig_le64(h + MBLIT_STATE_OFF_GENERATION);
	if (*size > s->sr.size - AREA) {
		wfail(w, "state size %llu in a region of %llu",
		      (unsigned long long)*size, (unsigned long long)s->sr.size);
		return false;
	}
	return true;
}

/* Stop, read the snapshot, write it back (maybe damaged), run again. */
static void op_state_save(struct worker *w, struct sdev *s)
{
	struct rng *r = &w->r;
	uint64_t size, gen, size2, gen2;
	uint8_t *snap = NULL;
	int variant = below(r, 5), ndev = 0;
	char msg[200];
	long ret;

	if (!enter(s))
		return;
	wop(w, OP_STATE_SAVE, s, "run-control STOPPED");
	ret = mb_runctl_set(&s->d, &s->sr, STOPPED);
	if (!check(w, ret, E(EBUSY, ENOMEM), "run-control STOPPED") || ret)
		goto out;
	if (!check_header(w, s, &size, &gen) || !size)
		goto out;
	snap = malloc(size);
	if (!snap)
		goto out;
	wop(w, OP_STATE_SAVE, s, "read the %llu-byte snapshot (generation %llu)",
	    (unsigned long long)size, (unsigned long long)gen);
	ret = racc(s, &s->sr, false, AREA, snap, size);
	if (!check(w, ret, E(EBUSY, EINVAL), "state area read") || ret < 0)
		goto out;
	if (!check_header(w, s, &size2, &gen2))
		goto out;
	if (gen2 == gen && size2 == size) {
		if (stream_check(snap, size, 0, s->d.mem / MB_MIB, s->d.mem, true,
				 &ndev, msg, sizeof(msg)) < 0) {
			wfail(w, "the snapshot (generation %llu) is malformed: %s",
			      (unsigned long long)gen, msg);
			goto out;
		}
		COUNT(S.n_snapshots);
	}
	if (variant == 3)
		snap[below(r, size)] ^= 1 << below(r, 8);
	if (variant == 4)
		size = below(r, size);
	wop(w, OP_STATE_SAVE, s, "write it back (%s, %llu bytes), RUNNING",
	    variant < 3 ? "as read" : variant == 3 ? "one bit flipped" : "truncated",
	    (unsigned long long)size);
	if (size) {
		ret = racc(s, &s->sr, true, AREA, snap, size);
		if (!check(w, ret, E(EBUSY, ENOMEM), "state area write"))
			goto out;
	}
	ret = mb_runctl_set(&s->d, &s->sr, RUNNING);
	if (check(w, ret, E(EBUSY, EINVAL, EPROTONOSUPPORT, ENOMEM),
		  "run-control RUNNING") &&
	    !ret && variant < 3 && size)
		COUNT(S.n_restores);
out:
	free(snap);
	leave(s);
}

/* Accesses anywhere in the DEVICE_STATE region, valid or not. */
static void op_state_area(struct worker *w, struct sdev *s)
{
	static const uint8_t runctl_value[] = { RUNNING, STOPPED, 0, 7 };
	struct rng *r = &w->r;
	uint64_t R = s->sr.size, off;
	size_t len;
	bool wr = pct(r, 40), valid;
	uint8_t *buf = w->big;
	long ret;

	if (!enter(s))
		return;
	switch (below(r, 8)) {
	case 0:
		off = 0;
		len = 1;
		break;
	case 1:
		off = 0;
		len = between(r, 2, 16);
		break;
	case 2:
		off = between(r, 1, 0xff0);
		len = between(r, 1, 0x1000 - off);
		break;
	case 3:
		off = between(r, 0xf00, 0xfff);
		len = between(r, 0x1000 - off + 1, 0x200);
		break;
	case 4:
		off = AREA + below(r, 65536);
		len = between(r, 1, 65536);
		break;
	case 5:
		off = R - below(r, 4);
		len = between(r, 1, 8);
		break;
	case 6:
		off = AREA + below(r, R - AREA);
		len = 0;
		break;
	default:
		off = AREA;
		len = between(r, 1, 4096);
		break;
	}
	valid = len && off + len <= R &&
		(off ? (off + len <= AREA || off >= AREA) : len == 1);
	rnd_fill(r, buf, len < 4096 ? len : 4096);
	if (off == 0 && len == 1 && wr)
		buf[0] = runctl_value[below(r, ARRAY_SIZE(runctl_value))];
	wop(w, OP_STATE_AREA, s, "%s %zu bytes at DEVICE_STATE+%#llx",
	    wr ? "write" : "read", len, (unsigned long long)off);
	ret = racc(s, &s->sr, wr, off, buf, len);
	if (!valid)
		check_is(w, ret, EINVAL, "DEVICE_STATE access across parts or past the end");
	else if (off == 0 && wr && buf[0] != RUNNING && buf[0] != STOPPED)
		check_is(w, ret, EINVAL, "run-control invalid value");
	else if (off == 0)
		check(w, ret, wr ? E(EBUSY, EINVAL, ENOMEM) : E(EBUSY), "run-control");
	else if (off < AREA)
		check_is(w, ret, wr ? EINVAL : 0, "DEVICE_STATE control page");
	else
		check(w, ret, wr ? E(EBUSY, ENOMEM) : E(EBUSY, EINVAL),
		      "state area");
	leave(s);
}

/* ---- dirty tracking --------------------------------------------------------- */

static void op_dma_log(struct worker *w, struct sdev *s)
{
	struct vfio_device_feature_dma_logging_range rg[300];
	struct rng *r = &w->r;
	unsigned int k = below(r, 100), n, i, c;
	uint64_t *bm = (uint64_t *)w->big;
	int ret;

	if (!enter(s))
		return;
	if (k < 35) {
		n = between(r, 1, 3);
		c = between(r, 0, NCHUNK - n);
		for (i = 0; i < n; i++) {
			rg[i].iova = MB_IOVA + (c + i) * CHUNK;
			rg[i].length = CHUNK;
		}
		wop(w, OP_DMA_LOG, s, "START %u chunk ranges from chunk %u", n, c);
		ret = dl_start(&s->d, rg, n, MB_PAGE);
		check(w, ret, E(EBUSY, ENOMEM), "DMA_LOGGING_START");
	} else if (k < 45) {
		rg[0] = (struct vfio_device_feature_dma_logging_range){ G_LO, 0x3000 };
		rg[1] = (struct vfio_device_feature_dma_logging_range){ G_LO + 0x2000, 0x2000 };
		switch (below(r, 6)) {
		case 0:
			wop(w, OP_DMA_LOG, s, "START with no ranges");
			check_is(w, dl_start(&s->d, rg, 0, MB_PAGE), EINVAL, "START, no ranges");
			break;
		case 1:
			wop(w, OP_DMA_LOG, s, "START overlapping ranges");
			check_is(w, dl_start(&s->d, rg, 2, MB_PAGE), EINVAL, "START overlapping");
			break;
		case 2:
			rg[0].iova = G_LO + 0x800;
			wop(w, OP_DMA_LOG, s, "START unaligned");
			check_is(w, dl_start(&s->d, rg, 1, MB_PAGE), EINVAL, "START unaligned");
			break;
		case 3:
			rg[0] = (struct vfio_device_feature_dma_logging_range){
				0xfffffffffffff000ULL, 0x2000 };
			wop(w, OP_DMA_LOG, s, "START overflowing");
			check_is(w, dl_start(&s->d, rg, 1, MB_PAGE), EOVERFLOW, "START overflow");
			break;
		case 4:
			rg[0] = (struct vfio_device_feature_dma_logging_range){
				0, (1ULL << 40) + MB_PAGE };
			wop(w, OP_DMA_LOG, s, "START 2^28 + 1 pages");
			ret = dl_start(&s->d, rg, 1, MB_PAGE);
			if (!ret)
				wfail(w, "START of 2^28 + 1 pages succeeded");
			else
				check(w, ret, E(E2BIG, EBUSY), "START 2^28 + 1 pages");
			break;
		default:
			for (i = 0; i < 257; i++)
				rg[i] = (struct vfio_device_feature_dma_logging_range){
					MB_IOVA + 2 * i * MB_PAGE, MB_PAGE };
			wop(w, OP_DMA_LOG, s, "START 257 ranges");
			check_is(w, dl_start(&s->d, rg, 257, MB_PAGE), E2BIG, "START 257 ranges");
			break;
		}
	} else if (k < 75) {
		wop(w, OP_DMA_LOG, s, "REPORT the guest buffer");
		ret = dl_report(&s->d, MB_IOVA, MB_BUF_SIZE, MB_PAGE, bm);
		check(w, ret, E(EINVAL), "DMA_LOGGING_REPORT");
	} else if (k < 80) {
		wop(w, OP_DMA_LOG, s, "REPORT with page size 2048");
		check_is(w, dl_report(&s->d, MB_IOVA, MB_BUF_SIZE, 2048, bm), EINVAL,
			 "REPORT page size 2048");
	} else {
		wop(w, OP_DMA_LOG, s, "STOP");
		check_is(w, dl_stop(&s->d), 0, "DMA_LOGGING_STOP");
	}
	leave(s);
}

static void op_t1_dirty(struct worker *w, struct sdev *s)
{
	struct rng *r = &w->r;
	unsigned int k = below(r, 3);
	int ret;

	if (!enter(s))
		return;
	if (s->d.v.backend != VFIO_BACKEND_TYPE1) {
		leave(s);
		return;
	}
	if (k == 0) {
		wop(w, OP_T1_DIRTY, s, "DIRTY_PAGES START");
		ret = t1_dirty(&s->d, VFIO_IOMMU_DIRTY_PAGES_FLAG_START);
		check(w, ret, E(ENOMEM), "DIRTY_PAGES START");
	} else if (k == 1) {
		wop(w, OP_T1_DIRTY, s, "DIRTY_PAGES GET_BITMAP");
		ret = t1_get_bitmap(&s->d, MB_IOVA, MB_BUF_SIZE, (uint64_t *)w->big,
				    MB_BUF_SIZE / MB_PAGE / 8);
		check(w, ret, E(EINVAL), "DIRTY_PAGES GET_BITMAP");
	} else {
		wop(w, OP_T1_DIRTY, s, "DIRTY_PAGES STOP");
		ret = t1_dirty(&s->d, VFIO_IOMMU_DIRTY_PAGES_FLAG_STOP);
		check_is(w, ret, 0, "DIRTY_PAGES STOP");
	}
	leave(s);
}

/* ---- information ioctls (exact) ------------------------------------------ */

/* What GET_REGION_INFO must say about region @i (docs/device.md §3). */
static void region_expect(const struct sdev *s, uint32_t i, uint64_t *size,
			  uint32_t *flags)
{
	const uint32_t rw = VFIO_REGION_INFO_FLAG_READ | VFIO_REGION_INFO_FLAG_WRITE;

	*size = 0;
	*flags = 0;
	switch (i) {
	case VFIO_PCI_BAR0_REGION_INDEX:
		*size = MBLIT_BAR0_SIZE;
		break;
	case VFIO_PCI_BAR2_REGION_INDEX:
		*size = s->d.mem;
		break;
	case VFIO_PCI_CONFIG_REGION_INDEX:
		*size = MBLIT_CONFIG_SIZE;
		break;
	case MBLIT_STATE_REGION_INDEX:
		*size = AREA + REC_DEV_LEN(s->npages);
		*flags = rw | VFIO_REGION_INFO_FLAG_CAPS;
		return;
	}
	if (*size)
		*flags = rw;
}

static void op_info(struct worker *w, struct sdev *s)
{
	struct vfio_device_info di = { .argsz = sizeof(di) };
	struct vfio_region_info ri = { .argsz = sizeof(ri) };
	struct vfio_irq_info ii = { .argsz = sizeof(ii) };
	uint32_t i = below(&w->r, 11), flags;
	uint64_t size;
	int ret;

	if (!enter(s))
		return;
	wop(w, OP_INFO, s, "GET_INFO");
	ret = ioctl(DFD(s), VFIO_DEVICE_GET_INFO, &di) ? -errno : 0;
	if (check_is(w, ret, 0, "GET_INFO") &&
	    (di.flags != (VFIO_DEVICE_FLAGS_PCI | VFIO_DEVICE_FLAGS_RESET) ||
	     di.num_regions != 10 || di.num_irqs != VFIO_PCI_NUM_IRQS))
		wfail(w, "GET_INFO: flags %#x regions %u irqs %u", di.flags,
		      di.num_regions, di.num_irqs);
	wop(w, OP_INFO, s, "GET_REGION_INFO %u", i);
	ri.index = i;
	ret = ioctl(DFD(s), VFIO_DEVICE_GET_REGION_INFO, &ri) ? -errno : 0;
	if (i >= 10) {
		check_is(w, ret, EINVAL, "GET_REGION_INFO of index 10");
	} else if (check_is(w, ret, 0, "GET_REGION_INFO")) {
		region_expect(s, i, &size, &flags);
		if (ri.size != size || ri.flags != flags ||
		    ri.offset != (uint64_t)i << 40)
			wfail(w, "region %u: size %#llx flags %#x offset %#llx, expected %#llx %#x %#llx",
			      i, (unsigned long long)ri.size, ri.flags,
			      (unsigned long long)ri.offset,
			      (unsigned long long)size, flags,
			      (unsigned long long)i << 40);
	}
	i = below(&w->r, 6);
	wop(w, OP_INFO, s, "GET_IRQ_INFO %u", i);
	ii.index = i;
	ret = ioctl(DFD(s), VFIO_DEVICE_GET_IRQ_INFO, &ii) ? -errno : 0;
	if (i >= VFIO_PCI_NUM_IRQS)
		check_is(w, ret, EINVAL, "GET_IRQ_INFO of index 5");
	else if (check_is(w, ret, 0, "GET_IRQ_INFO") &&
		 ii.count != (i <= VFIO_PCI_MSI_IRQ_INDEX))
		wfail(w, "irq %u: count %u", i, ii.count);
	leave(s);
}

/* ---- an access held in its user copy (userfaultfd) -------------------------- */

/*
 * One access whose user buffer is missing pages (userfaultfd): another
 * thread makes it, this one waits until it is inside the copy, lets the
 * others race it for a moment, then supplies the pages.
 */
static void op_uffd(struct worker *w, struct sdev *s)
{
	struct uffdio_api api = { .api = UFFD_API };
	struct uffdio_register reg = { .mode = UFFDIO_REGISTER_MODE_MISSING };
	struct rng *r = &w->r;
	struct held h = { .fd = -1 };
	size_t alen = between(r, 1, 8) * MB_PAGE;
	int uffd = -1, kind = 0, which = below(r, 5);
	bool stale = false, started = false, entered;
	uint8_t *area = MAP_FAILED;
	uint64_t end;
	long ret;
	static const int a_none[] = { 0 }, a_busy[] = { EBUSY, 0 },
		a_stale[] = { ENODEV, 0 }, a_res[] = { EINVAL, ENODEV, ENOMEM, 0 },
		a_save[] = { ENOMSG, EBUSY, ENODEV, ENOMEM, 0 };
	const int *allowed;

	if (!enter(s))
		return;
	entered = true;
	uffd = syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
	if (uffd < 0 || ioctl(uffd, UFFDIO_API, &api))
		goto out;
	area = mmap(NULL, alen, PROT_READ | PROT_WRITE,
		    MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (area == MAP_FAILED)
		goto out;
	reg.range.start = (uintptr_t)area;
	reg.range.len = alen;
	if (ioctl(uffd, UFFDIO_REGISTER, &reg))
		goto out;
	h.buf = area;
	h.len = alen;
	h.positional = true;
	h.fd = DFD(s);
	switch (which) {
	case 0:
		h.off = s->d.bar2.offset + below(r, s->d.mem - alen + 1);
		allowed = a_none;
		break;
	case 1:
		h.write = true;
		h.off = s->d.bar2.offset + below(r, s->d.mem - alen + 1);
		allowed = a_busy;
		break;
	case 2:
		h.write = true;
		h.len = 8;
		h.off = s->d.bar0.offset + MBLIT_REG_SCRATCH0 + 8 * below(r, 4);
		allowed = a_busy;
		break;
	case 3:
		h.write = pct(r, 50);
		h.len = between(r, 1, MBLIT_CONFIG_SIZE);
		h.off = s->d.cfg.offset + below(r, MBLIT_CONFIG_SIZE - h.len + 1);
		allowed = a_none;
		break;
	default:
		h.fd = grab_fd(w, s, 0, &kind, &stale);
		if (h.fd < 0)
			goto out;
		/* A data_fd is its own file: the device may close meanwhile. */
		leave(s);
		entered = false;
		h.positional = false;
		h.write = kind == FD_RESUME;
		/* Ended files fail at once; the others may end meanwhile. */
		allowed = stale ? a_stale : h.write ? a_res : a_save;
		break;
	}
	wop(w, OP_UFFD, s, "%s of %zu bytes at %#llx%s, buffer in userfaultfd",
	    h.write ? "write" : "read", h.len, (unsigned long long)h.off,
	    which == 4 ? " (data_fd)" : "");
	if (pthread_create(&h.th, NULL, held_fn, &h))
		goto out;
	started = true;
	/* Wait until it faults (or returns without faulting). */
	end = mb_now_ms() + 30000;
	while (!__atomic_load_n(&h.done, __ATOMIC_ACQUIRE)) {
		struct pollfd p = { .fd = uffd, .events = POLLIN };

		if (poll(&p, 1, 20) > 0)
			break;
		if (mb_now_ms() > end)
			break;
		beat(w);
	}
	mb_sleep_ms(below(r, 50));	/* others race the held access */
	beat(w);
	{
		struct uffdio_zeropage z = {
			.range = { .start = (uintptr_t)area, .len = alen },
		};

		if (ioctl(uffd, UFFDIO_ZEROPAGE, &z) && errno != EEXIST)
			wfail(w, "UFFDIO_ZEROPAGE: %s", strerror(errno));
	}
	end = mb_now_ms() + WATCHDOG_MS;
	while (!__atomic_load_n(&h.done, __ATOMIC_ACQUIRE)) {
		if (mb_now_ms() > end) {
			wfail(w, "the held access did not return once its pages were there");
			goto out;	/* the watchdog reports the hang */
		}
		mb_sleep_ms(2);
		beat(w);
	}
	pthread_join(h.th, NULL);
	started = false;
	ret = h.ret < 0 ? -h.err : h.ret;
	if (check(w, ret, allowed, "held access") && ret >= 0 &&
	    (size_t)ret != h.len && which != 4)
		wfail(w, "held access of %zu bytes returned %ld", h.len, ret);
out:
	if (started) {
		/* Never leave the thread behind: it uses the area. */
		while (!__atomic_load_n(&h.done, __ATOMIC_ACQUIRE))
			mb_sleep_ms(10);
		pthread_join(h.th, NULL);
	}
	if (which == 4 && h.fd >= 0)
		close(h.fd);
	if (area != MAP_FAILED)
		munmap(area, alen);
	if (uffd >= 0)
		close(uffd);
	if (entered)
		leave(s);
}

/* ---- close and reopen; remove while open; module unload --------------------- */

/*
 * Right after an open, before anything else touches it: the device is at
 * its reset state (docs/device.md §11, "Every open starts from the reset
 * state").  Runs with the device write-held.
 */
static void check_fresh(struct worker *w, struct sdev *s)
{
	uint8_t img[MBLIT_CONFIG_SIZE], got[MBLIT_CONFIG_SIZE];
	uint8_t *p = w->big;
	unsigned int i, k;
	uint64_t v, off;
	long ret;

	for (i = 0; i < NREGS; i++) {
		const struct reg *g = &regmap[i];
		uint64_t want = g->off == MBLIT_REG_ID ? MBLIT_ID_MAGIC :
				g->off == MBLIT_REG_VERSION ? MBLIT_DEVICE_VERSION : 0;

		ret = rd_reg(s, g->off, g->widths == W4 ? 4 : 8, &v);
		if (!check(w, ret, NONE, "read %s", g->name))
			return;
		if (v != want)
			wfail(w, "reopened: %s is %#llx, reset value %#llx", g->name,
			      (unsigned long long)v, (unsigned long long)want);
	}
	ret = racc(s, &s->d.cfg, false, 0, got, sizeof(got));
	if (!check(w, ret, NONE, "read config space"))
		return;
	/* Bus master is what sdev_open() set. */
	cfg_reset_image(img, s->d.mem / MB_MIB);
	img[PCI_COMMAND] |= PCI_COMMAND_MASTER;
	for (i = 0; i < MBLIT_CONFIG_SIZE; i++)
		if ((got[i] ^ img[i]) & ~cfg_volatile(i)) {
			wfail(w, "reopened: config byte %#x is %#x, reset value %#x",
			      i, got[i], img[i]);
			break;
		}
	ret = mig_get(DFD(s));
	if (ret != VFIO_DEVICE_STATE_RUNNING)
		wfail(w, "reopened: v2 state %s", err_str(ret));
	ret = mb_runctl_get(&s->d, &s->sr);
	if (ret != RUNNING)
		wfail(w, "reopened: run-control %s", err_str(ret));
	ret = dl_report(&s->d, MB_IOVA, MB_PAGE, MB_PAGE, p);
	if (ret != -EINVAL)
		wfail(w, "reopened: DMA logging REPORT %s (logging must be off)",
		      err_str(ret));
	ret = debugfs_val(s, "pinned_pages", NULL);
	if (ret)
		wfail(w, "reopened: %ld pages pinned", ret);
	for (k = 0; k < 4; k++) {
		off = below(&w->r, s->d.mem - 65536 + 1) & ~4095ULL;
		ret = racc(s, &s->d.bar2, false, off, p, 65536);
		if (!check(w, ret, NONE, "read BAR2"))
			return;
		for (i = 0; i < 65536 && !p[i]; i++)
			;
		if (i < 65536) {
			wfail(w, "reopened: device byte %#llx is %#x (the previous user's)",
			      (unsigned long long)(off + i), p[i]);
			return;
		}
	}
}

static void op_reopen(struct worker *w, struct sdev *s)
{
	enum vfio_backend be = pct(&w->r, 50) ? VFIO_BACKEND_TYPE1 :
						VFIO_BACKEND_IOMMUFD;
	char err[256];
	int ret;

	pthread_mutex_lock(&S.close_lock);
	pthread_rwlock_wrlock(&s->life);
	if (!s->open)
		goto out;
	wop(w, OP_REOPEN, s, "close, reopen through %s", vfio_backend_name(be));
	pthread_mutex_lock(&s->mig_lock);
	vfio_mdev_close(&s->d.v);	/* ends the migration */
	s->open = false;
	stale_push(s);
	pthread_mutex_unlock(&s->mig_lock);
	s->mapped = 0;
	ret = sdev_open(s, be, err, sizeof(err));
	if (!check(w, ret, NONE, "reopen: %s", err))
		goto out;
	COUNT(S.n_reopens);
	check_fresh(w, s);
out:
	pthread_rwlock_unlock(&s->life);
	pthread_mutex_unlock(&S.close_lock);
}

struct remover {
	char uuid[MDEV_UUID_LEN + 1];
	int ret;
	uint64_t at;		/* when it returned */
	int done;
	pthread_t th;
};

static void *remover_fn(void *arg)
{
	struct remover *rm = arg;
	char path[MDEV_PATH_MAX];
	int fd;
	ssize_t n;

	S.remover_tid = syscall(SYS_gettid);
	snprintf(path, sizeof(path), MDEV_BUS_DEVICES "/%s/remove", rm->uuid);
	fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0) {
		rm->ret = -errno;
	} else {
		n = write(fd, "1", 1);
		rm->ret = n == 1 ? 0 : n < 0 ? -errno : -EIO;
		close(fd);
	}
	rm->at = mb_now_ms();
	__atomic_store_n(&rm->done, 1, __ATOMIC_RELEASE);
	return NULL;
}

/*
 * C is removed from another thread while it is open (and the others use
 * it): the removal must wait for the close (or fail and leave C as it
 * was); once closed, C goes away with its budget and debugfs directory,
 * its migration files fail with ENODEV, and a new C takes its place.
 */
static void op_remove(struct worker *w, struct sdev *s)
{
	enum vfio_backend be = pct(&w->r, 50) ? VFIO_BACKEND_TYPE1 :
						VFIO_BACKEND_IOMMUFD;
	struct remover rm = { .ret = 1 };
	char path[MDEV_PATH_MAX], err[256];
	uint64_t closed_at, end;
	int ret, avail;

	pthread_mutex_lock(&S.close_lock);
	if (!s->open)
		goto unlock;
	memcpy(rm.uuid, s->d.uuid, sizeof(rm.uuid));
	wop(w, OP_REMOVE, s, "remove %s while it is open", rm.uuid);
	if (pthread_create(&rm.th, NULL, remover_fn, &rm))
		goto unlock;
	/* The others keep using C meanwhile. */
	end = mb_now_ms() + between(&w->r, 10, 300);
	while (mb_now_ms() < end) {
		mb_sleep_ms(5);
		beat(w);
	}
	if (__atomic_load_n(&rm.done, __ATOMIC_ACQUIRE)) {
		if (!rm.ret)
			wfail(w, "removing the open mdev returned 0 before it was closed");
		else if (!mdev_exists(rm.uuid))
			wfail(w, "removing the open mdev failed (%s) but it is gone",
			      err_str(rm.ret));
		else
			logmsg("worker %d: removing the open %s failed cleanly: %s",
			       w->idx, s->name, err_str(rm.ret));
	}

	wop(w, OP_REMOVE, s, "close %s with its removal pending", rm.uuid);
	pthread_rwlock_wrlock(&s->life);
	pthread_mutex_lock(&s->mig_lock);
	vfio_mdev_close(&s->d.v);
	s->open = false;
	stale_push(s);
	pthread_mutex_unlock(&s->mig_lock);
	s->mapped = 0;
	closed_at = mb_now_ms();

	end = closed_at + WATCHDOG_MS;
	while (!__atomic_load_n(&rm.done, __ATOMIC_ACQUIRE)) {
		if (mb_now_ms() > end) {
			wfail(w, "the removal did not return %d ms after the device was closed",
			      WATCHDOG_MS);
			/* Leave the lock held: nothing may close the others now. */
			pthread_rwlock_unlock(&s->life);
			return;
		}
		mb_sleep_ms(5);
		beat(w);
	}
	pthread_join(rm.th, NULL);
	if (rm.ret) {
		/* It failed cleanly: remove it now that it is closed. */
		rm.ret = mdev_remove(rm.uuid);
		if (!check(w, rm.ret, NONE, "removing the closed mdev: %s",
			   mdev_lib_error()))
			goto unlock_dev;
	} else {
		stat_add(&S.st, w->op, B_OK);
	}
	COUNT(S.n_removals);
	if (mdev_exists(rm.uuid))
		wfail(w, "the mdev exists after its removal returned");
	snprintf(path, sizeof(path), MB_DEBUGFS "/%s", rm.uuid);
	if (path_exists(path))
		wfail(w, "%s exists after the removal", path);
	s->exists = false;
	s->d.created = false;
	avail = mdev_type_available("mblit-1m");
	if (avail != S.avail1m_without_c)
		wfail(w, "mblit-1m available_instances %d with C removed, expected %d",
		      avail, S.avail1m_without_c);

	wop(w, OP_REMOVE, s, "create a new C, open it through %s",
	    vfio_backend_name(be));
	ret = sdev_create(s);
	if (!check(w, ret, NONE, "creating C again: %s", mdev_lib_error()))
		goto unlock_dev;
	ret = sdev_open(s, be, err, sizeof(err));
	if (check(w, ret, NONE, "opening the new C: %s", err))
		check_fresh(w, s);
unlock_dev:
	pthread_rwlock_unlock(&s->life);
unlock:
	pthread_mutex_unlock(&S.close_lock);
}

/* Any device: @s is not used. */
static void op_rmmod(struct worker *w, struct sdev *s)
{
	long ret;

	/* close_lock keeps at least two of A, B and C open meanwhile. */
	wop(w, OP_RMMOD, NULL, "delete_module(mblit, O_NONBLOCK) with devices open");
	ret = syscall(SYS_delete_module, "mblit", O_NONBLOCK) ? -errno : 0;
	if (!ret) {
		wfail(w, "mblit was unloaded while its devices were open");
		return;
	}
	check(w, ret, E(EWOULDBLOCK, EBUSY), "delete_module");
}

/* ---- the workers ---------------------------------------------------------- */

/* Always C, whichever device the worker picked. */
static void op_remove_c(struct worker *w, struct sdev *s)
{
	op_remove(w, &S.dev[2]);
}

static void (*const sop_fn[NSOPS])(struct worker *w, struct sdev *s) = {
	[OP_DOORBELL] = op_doorbell,
	[OP_BAR0] = op_bar0,
	[OP_BAR2] = op_bar2,
	[OP_CFG] = op_cfg,
	[OP_RESET] = op_reset,
	[OP_IRQS] = op_irqs,
	[OP_MAP] = op_map,
	[OP_MIG_SET] = op_mig_set,
	[OP_MIG_READ] = op_mig_read,
	[OP_MIG_WRITE] = op_mig_write,
	[OP_MIG_ROUND] = op_mig_roundtrip,
	[OP_MIG_INFO] = op_mig_info,
	[OP_RUNCTL] = op_runctl,
	[OP_STATE_SAVE] = op_state_save,
	[OP_STATE_AREA] = op_state_area,
	[OP_DMA_LOG] = op_dma_log,
	[OP_T1_DIRTY] = op_t1_dirty,
	[OP_INFO] = op_info,
	[OP_UFFD] = op_uffd,
	[OP_REOPEN] = op_reopen,
	[OP_REMOVE] = op_remove_c,
	[OP_RMMOD] = op_rmmod,
};

static void *worker_fn(void *arg)
{
	struct worker *w = arg;
	struct sdev *s;
	unsigned int op, k;

	w->tid = syscall(SYS_gettid);
	while (!stopping()) {
		beat(w);
		op = pick(&w->r, sop_weight, NSOPS);
		k = below(&w->r, 100);
		s = &S.dev[k < 45 ? 0 : k < 80 ? 1 : 2];
		__atomic_fetch_add(&S.st.ops[op], 1, __ATOMIC_RELAXED);
		sop_fn[op](w, s);
		w->nops++;
	}
	__atomic_store_n(&w->done, 1, __ATOMIC_RELEASE);
	return NULL;
}

/* What a thread that made no progress is doing, in the kernel too. */
static void dump_task(const char *who, pid_t tid)
{
	char path[128], buf[4096];
	int fd;
	ssize_t n;

	snprintf(path, sizeof(path), "/proc/self/task/%d/stack", tid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		logmsg("%s (tid %d): no %s: %s", who, tid, path, strerror(errno));
		return;
	}
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	buf[n > 0 ? n : 0] = 0;
	logmsg("%s (tid %d) kernel stack:\n%s", who, tid, buf);
}

/* ---- the test ---------------------------------------------------------------- */

static const char *const stress_types[3] = { "mblit-1m", "mblit-16m", "mblit-256m" };
static const unsigned int stress_type_mib[3] = { 1, 16, 256 };

FIXTURE(stress) {
	int unused;
};

FIXTURE_SETUP(stress)
{
}

FIXTURE_TEARDOWN(stress)
{
	int i;

	if (_metadata->exit_code != KSFT_PASS)
		print_replay();
	for (i = 0; i < NSDEV; i++)
		if (S.dev[i].type)
			sdev_destroy(&S.dev[i]);
}

TEST_F_TIMEOUT(stress, concurrent_surface, STRESS_SECS_DEFAULT + TIMEOUT_MARGIN)
{
	static const char *const names[NSDEV] = { "A", "B", "C" };
	static const char *const types[NSDEV] = { "mblit-16m", "mblit-1m", "mblit-1m" };
	struct rng r;
	uint64_t mem0, mem, deadline, now, t0, end;
	int avail0[3], avail, i, budget, free0;
	enum vfio_backend be;
	bool stuck = false;
	char err[256], what[64];
	long b;

	run_params(_metadata, "MBLIT_STRESS_SECS", STRESS_SECS_DEFAULT);
	mallopt(M_MMAP_THRESHOLD, 256 * 1024);	/* big buffers go back at free() */
	crc32_init();
	rng_init(&r, g_seed, 1000);
	memset(&S, 0, sizeof(S));
	S.st.names = sop_name;
	S.st.nops = NSOPS;
	pthread_mutex_init(&S.close_lock, NULL);
	ASSERT_TRUE(module_loaded("mblit")) TH_LOG("mblit is not loaded");

	/* The budget, before anything exists. */
	b = module_budget_mib();
	budget = b > 0 ? b : BUDGET_DEFAULT_MIB;
	for (i = 0; i < 3; i++) {
		avail0[i] = mdev_type_available(stress_types[i]);
		ASSERT_LE(0, avail0[i]) TH_LOG("%s", mdev_lib_error());
	}
	TH_LOG("budget %d MiB (%s); available: %d x 1m, %d x 16m, %d x 256m",
	       budget, b > 0 ? "mem_budget_mib" : "default, parameter not readable",
	       avail0[0], avail0[1], avail0[2]);
	for (i = 0; i < 3; i++) {
		EXPECT_EQ(budget / (int)stress_type_mib[i], avail0[i])
			TH_LOG("%s available_instances before the test", stress_types[i]);
	}
	free0 = avail0[0];	/* MiB not in use */
	mem0 = mb_mem_available();
	TH_LOG("MemAvailable %llu MiB", (unsigned long long)(mem0 / MB_MIB));

	for (i = 0; i < NSDEV; i++) {
		struct sdev *s = &S.dev[i];

		sdev_init(s, names[i], types[i]);
		s->d.rng = rnd(&r) | 1;
		ASSERT_EQ(0, sdev_create(s)) TH_LOG("create %s: %s", types[i],
						    mdev_lib_error());
		ASSERT_EQ(0, sdev_alloc(s, &r, i ? MB_MIB : 16 * MB_MIB));
		be = i == 0 ? VFIO_BACKEND_TYPE1 : i == 1 ? VFIO_BACKEND_IOMMUFD :
		     pct(&r, 50) ? VFIO_BACKEND_TYPE1 : VFIO_BACKEND_IOMMUFD;
		ASSERT_EQ(0, sdev_open(s, be, err, sizeof(err)))
			TH_LOG("%s: %s", names[i], err);
	}
	for (i = 0; i < 3; i++) {
		avail = mdev_type_available(stress_types[i]);
		EXPECT_EQ((free0 - 18) / (int)stress_type_mib[i], avail)
			TH_LOG("%s available_instances with A, B and C", stress_types[i]);
	}
	S.avail1m_without_c = free0 - 17;

	for (i = 0; i < NWORKERS; i++) {
		struct worker *w = &S.w[i];

		w->idx = i;
		rng_init(&w->r, g_seed, i + 1);
		w->big = mmap(NULL, BIG_LEN + MB_PAGE, PROT_READ | PROT_WRITE,
			      MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		ASSERT_NE(MAP_FAILED, w->big);
		ASSERT_EQ(0, mprotect(w->big + BIG_LEN, MB_PAGE, PROT_NONE));
		w->beat = mb_now_ms();
		ASSERT_EQ(0, pthread_create(&w->th, NULL, worker_fn, w));
	}

	/* The watchdog. */
	t0 = mb_now_ms();
	deadline = t0 + g_secs * 1000ULL;
	for (;;) {
		bool all_done = true;

		now = mb_now_ms();
		if (now >= deadline)
			__atomic_store_n(&S.stop, 1, __ATOMIC_RELEASE);
		for (i = 0; i < NWORKERS; i++) {
			struct worker *w = &S.w[i];
			uint64_t last = __atomic_load_n(&w->beat, __ATOMIC_ACQUIRE);

			if (__atomic_load_n(&w->done, __ATOMIC_ACQUIRE))
				continue;
			all_done = false;
			if (now > last + WATCHDOG_MS) {
				logmsg("FAIL worker %d made no progress for %llu ms in %s: %s",
				       i, (unsigned long long)(now - last),
				       sop_name[w->op], w->args);
				snprintf(what, sizeof(what), "worker %d", i);
				dump_task(what, w->tid);
				stuck = true;
			}
		}
		if (stuck) {
			if (S.remover_tid)
				dump_task("the last mdev remover", S.remover_tid);
			stats_print(&S.st, "stress (hung)");
			print_replay();
			fflush(NULL);
			/* Threads stuck in the kernel cannot be joined. */
			_exit(KSFT_FAIL);
		}
		if (all_done)
			break;
		mb_sleep_ms(200);
	}
	for (i = 0; i < NWORKERS; i++) {
		pthread_join(S.w[i].th, NULL);
		munmap(S.w[i].big, BIG_LEN + MB_PAGE);
	}
	TH_LOG("%u s of stress done in %llu ms", g_secs,
	       (unsigned long long)(mb_now_ms() - t0));
	stats_print(&S.st, "stress");
	ksft_print_msg("stress: %llu whole STOP_COPY streams checked, %llu round trips resumed, %llu snapshots checked, %llu restores (some of flipped snapshots), %llu reopens checked, %llu mdevs removed while open\n",
		       (unsigned long long)S.n_streams,
		       (unsigned long long)S.n_roundtrips,
		       (unsigned long long)S.n_snapshots,
		       (unsigned long long)S.n_restores,
		       (unsigned long long)S.n_reopens,
		       (unsigned long long)S.n_removals);
	EXPECT_EQ(0, S.failed) TH_LOG("a worker failed (see FAIL above)");

	/* Every device works, from its reset state. */
	for (i = 0; i < NSDEV; i++) {
		struct sdev *s = &S.dev[i];

		sdev_close_fds(s);
		snprintf(what, sizeof(what), "%s after the stress", s->name);
		verify_device(_metadata, s, &r, what);
	}

	/* Everything goes, and so do its budget and memory. */
	for (i = 0; i < NSDEV; i++) {
		char path[MDEV_PATH_MAX], uuid[MDEV_UUID_LEN + 1];

		memcpy(uuid, S.dev[i].d.uuid, sizeof(uuid));
		sdev_destroy(&S.dev[i]);
		snprintf(path, sizeof(path), MB_DEBUGFS "/%s", uuid);
		EXPECT_FALSE(mdev_exists(uuid));
		EXPECT_FALSE(path_exists(path));
	}
	for (i = 0; i < 3; i++) {
		EXPECT_EQ(avail0[i], mdev_type_available(stress_types[i]))
			TH_LOG("%s available_instances after the removal",
			       stress_types[i]);
	}
	malloc_trim(0);
	end = mb_now_ms() + MEM_WAIT_MS;
	while ((mem = mb_mem_available()) + MEM_SLACK < mem0 && mb_now_ms() < end)
		mb_sleep_ms(200);
	TH_LOG("MemAvailable %llu MiB (%llu MiB before; the bound is %llu MiB less)",
	       (unsigned long long)(mem / MB_MIB),
	       (unsigned long long)(mem0 / MB_MIB),
	       (unsigned long long)(MEM_SLACK / MB_MIB));
	EXPECT_LE(mem0, mem + MEM_SLACK)
		TH_LOG("%llu MiB less available than before the test",
		       (unsigned long long)((mem0 - mem) / MB_MIB));
}

/*
 * =========================================================================
 * uapi_fuzz.random_sequences
 * =========================================================================
 */

enum {
	F_BAR0, F_BAR2, F_CFG, F_STATE, F_STATE_RESTORE, F_BADOFF, F_GET_INFO,
	F_REGION_INFO, F_IRQ_INFO, F_SET_IRQS, F_RESET, F_FEATURE, F_MIG_SET,
	F_DATA_READ, F_DATA_WRITE, F_PRECOPY, F_DFD_MISC, F_IOCTL, F_DOORBELL,
	F_MAP, F_DMA_LOG, F_REOPEN, NFOPS
};

static const char *const fop_name[NFOPS] = {
	"bar0", "bar2", "config", "state_region", "state_restore", "bad_offset",
	"get_info", "region_info", "irq_info", "set_irqs", "reset", "feature",
	"mig_set", "data_read", "data_write", "precopy_info", "data_fd_misc",
	"unknown_ioctl", "doorbell", "map_unmap", "dma_logging", "close_reopen",
};

static const unsigned int fop_weight[NFOPS] = {
	[F_BAR0] = 10, [F_BAR2] = 6, [F_CFG] = 8, [F_STATE] = 7,
	[F_STATE_RESTORE] = 2, [F_BADOFF] = 4, [F_GET_INFO] = 3,
	[F_REGION_INFO] = 4, [F_IRQ_INFO] = 3, [F_SET_IRQS] = 8, [F_RESET] = 2,
	[F_FEATURE] = 8, [F_MIG_SET] = 9, [F_DATA_READ] = 8, [F_DATA_WRITE] = 7,
	[F_PRECOPY] = 3, [F_DFD_MISC] = 2, [F_IOCTL] = 3, [F_DOORBELL] = 5,
	[F_MAP] = 3, [F_DMA_LOG] = 4, [F_REOPEN] = 1,
};

#define NFDEV		2
#define HIST		24
#define SCRATCH_PAGES	512	/* the fuzzer's buffer (2 MiB), then a guard page */

/* The state machine of the VFIO core: the next state from [cur] to [target]. */
static const uint8_t fsm_next[MIG_NSTATES][MIG_NSTATES] = {
	/*                ERR STOP RUN SC RES RP2P PC PCP2P */
	/* ERROR */      { 0, 0, 0, 0, 0, 0, 0, 0 },
	/* STOP */       { 0, 1, 5, 3, 4, 5, 5, 5 },
	/* RUNNING */    { 0, 5, 2, 5, 5, 5, 6, 5 },
	/* STOP_COPY */  { 0, 1, 1, 3, 1, 1, 0, 0 },
	/* RESUMING */   { 0, 1, 1, 1, 4, 1, 1, 1 },
	/* RUNNING_P2P */{ 0, 1, 2, 1, 1, 5, 2, 7 },
	/* PRE_COPY */   { 0, 2, 2, 7, 2, 2, 6, 7 },
	/* PRE_COPY_P2P */{ 0, 5, 5, 3, 5, 5, 6, 7 },
};

/* What the fuzzer knows about a device. */
struct fdev {
	struct sdev s;
	uint32_t v2;			/* the v2 migration state */
	bool stopped;			/* run-control STOPPED */
	int intx_efd, msi_efd;		/* the trigger eventfds (ours), or -1 */
	bool logging;

	/* The current data_fd (live), or -1. */
	int dfd, dkind;
	bool save_stopped;		/* its save stream is in STOP_COPY */
	bool expect_eof;		/* it returned less than asked in STOP_COPY */
	struct mig_buf rec;		/* everything read from it */
	size_t rec_ok;			/* ... checked up to here */
	int rec_ndev;
	uint8_t *sc_vram;		/* device memory when STOP_COPY began */

	/* Feeding RESUMING: bytes of @stream fed, and whether all were good. */
	size_t fed;
	int rs_bad;			/* 0 clean, 1 bad bytes fed, 2 EINVAL seen */

	/* A complete stream of this device and the device memory it carries. */
	struct blob *stream;
	uint8_t *stream_vram;

	/* The DEVICE_STATE region. */
	uint8_t *snap;			/* the snapshot of the current stop */
	size_t snap_len;
	/*
	 * What was written to the state area since the stop: 0 nothing, 1
	 * the snapshot, 2 anything else, 3 unknown (a write that faulted may
	 * have stored some of its bytes); the end of the bytes surely
	 * written, and of those maybe written.
	 */
	int incoming;
	uint64_t incoming_hi, incoming_maybe;
	uint64_t gen;
	bool gen_known;

	/* Config space and the scratch registers. */
	uint8_t cfg[MBLIT_CONFIG_SIZE], wmask[MBLIT_CONFIG_SIZE];
	bool cfg_known;
	uint64_t scratch[4];
	bool scratch_known;
};

struct fuzz {
	struct __test_metadata *md;
	struct rng r;
	struct fdev f[NFDEV];
	struct stats st;
	uint64_t ncall;
	char hist[HIST][240];
	bool failed;
	uint8_t *buf;			/* SCRATCH_PAGES pages, then PROT_NONE */
	uint8_t *ro;			/* one read-only page (writable on demand) */
	int null_fd;
	/* What the fuzzer verified beyond errnos. */
	uint64_t n_streams, n_resumed, n_refused, n_restored, n_snapshots;
};


/* The current call, for the history and failure messages. */
static __printf(3, 4) void fcall(struct fuzz *z, struct fdev *F,
				 const char *fmt, ...)
{
	char *h = z->hist[z->ncall % HIST];
	va_list ap;
	int n;

	n = snprintf(h, sizeof(z->hist[0]), "#%llu %s(%s, %s, v2 %s%s): ",
		     (unsigned long long)z->ncall, F->s.name, F->s.type,
		     be_name(&F->s), mig_state_name(F->v2),
		     F->stopped ? ", STOPPED" : "");
	va_start(ap, fmt);
	vsnprintf(h + n, sizeof(z->hist[0]) - n, fmt, ap);
	va_end(ap);
}

static __printf(2, 3) void ffail(struct fuzz *z, const char *fmt, ...)
{
	struct __test_metadata *_metadata = z->md;
	char msg[400];
	va_list ap;
	uint64_t i, from;

	if (z->failed)
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	from = z->ncall >= HIST ? z->ncall - HIST + 1 : 0;
	for (i = from; i < z->ncall; i++)
		TH_LOG("  before: %s", z->hist[i % HIST]);
	TH_LOG("FAIL in %s", z->hist[z->ncall % HIST]);
	TH_LOG("  %s", msg);
	z->failed = true;
	_metadata->exit_code = KSFT_FAIL;
}

/* The call's result against the one expected (errno, or 0 for success). */
static bool fexpect(struct fuzz *z, unsigned int op, long ret, int want,
		    const char *what)
{
	stat_add(&z->st, op, ret >= 0 ? B_OK : bucket_of_errno(-ret));
	if ((ret >= 0 && !want) || ret == -want)
		return true;
	ffail(z, "%s: %s, expected %s", what, err_str(ret),
	      want ? strerror(want) : "success");
	return false;
}

/* One of several results (a 0-terminated errno list; SUCCESS for >= 0). */
#define SUCCESS	1000
static bool fexpect_any(struct fuzz *z, unsigned int op, long ret,
			const int *allowed, const char *what)
{
	int i;

	stat_add(&z->st, op, ret >= 0 ? B_OK : bucket_of_errno(-ret));
	for (i = 0; allowed[i]; i++)
		if ((ret >= 0 && allowed[i] == SUCCESS) || ret == -allowed[i])
			return true;
	ffail(z, "%s: %s, not one of the results allowed", what, err_str(ret));
	return false;
}

static bool writable(const struct fdev *F)
{
	return !F->stopped &&
	       (F->v2 == VFIO_DEVICE_STATE_RUNNING ||
		F->v2 == VFIO_DEVICE_STATE_RUNNING_P2P ||
		F->v2 == VFIO_DEVICE_STATE_PRE_COPY ||
		F->v2 == VFIO_DEVICE_STATE_PRE_COPY_P2P);
}

/* The current migration file ended: it joins the ended ones. */
static void fz_end_stream(struct fdev *F)
{
	struct sdev *s = &F->s;

	if (F->dfd >= 0) {
		s->cur_fd = F->dfd;
		s->cur_kind = F->dkind;
		stale_push(s);
	}
	F->dfd = -1;
	F->dkind = 0;
	F->save_stopped = F->expect_eof = false;
	mig_buf_free(&F->rec);
	F->rec_ok = 0;
	F->rec_ndev = 0;
	free(F->sc_vram);
	F->sc_vram = NULL;
}

static void fz_model_reset(struct fdev *F, bool new_user)
{
	fz_end_stream(F);
	F->v2 = VFIO_DEVICE_STATE_RUNNING;
	F->stopped = false;
	free(F->snap);
	F->snap = NULL;
	F->snap_len = 0;
	F->incoming = 0;
	F->incoming_hi = F->incoming_maybe = 0;
	cfg_reset_image(F->cfg, F->s.d.mem / MB_MIB);
	F->cfg_known = true;
	memset(F->scratch, 0, sizeof(F->scratch));
	F->scratch_known = true;
	F->gen_known = false;
	if (new_user) {
		if (F->intx_efd >= 0)
			close(F->intx_efd);
		if (F->msi_efd >= 0)
			close(F->msi_efd);
		F->intx_efd = F->msi_efd = -1;
		F->logging = false;
	}
}

/* Read config space and scratch again where the model lost them. */
static void fz_resync(struct fuzz *z, struct fdev *F)
{
	struct sdev *s = &F->s;
	long ret;
	int i;

	if (!F->cfg_known) {
		ret = racc(s, &s->d.cfg, false, 0, F->cfg, MBLIT_CONFIG_SIZE);
		if (ret != MBLIT_CONFIG_SIZE)
			ffail(z, "reading config space: %s", err_str(ret));
		F->cfg_known = true;
	}
	if (!F->scratch_known) {
		for (i = 0; i < 4; i++) {
			ret = rd_reg(s, MBLIT_REG_SCRATCH0 + 8 * i, 8, &F->scratch[i]);
			if (ret != 8)
				ffail(z, "reading SCRATCH%d: %s", i, err_str(ret));
		}
		F->scratch_known = true;
	}
}

/* A buffer for an access: good, faulting after @k bytes, or read-only. */
enum { BUF_GOOD, BUF_FAULT, BUF_RO };

static const char *const buf_kind_name[] = {
	[BUF_GOOD] = "good", [BUF_FAULT] = "faulting at", [BUF_RO] = "read-only",
};

static uint8_t *fz_buf(struct fuzz *z, int kind, size_t len, size_t k)
{
	size_t cap = SCRATCH_PAGES * MB_PAGE;

	if (kind == BUF_FAULT)
		return z->buf + cap - k;
	if (kind == BUF_RO)
		return z->ro;
	return len <= cap ? z->buf : NULL;
}

static int fz_bufkind(struct fuzz *z, size_t len, size_t *k)
{
	unsigned int x = below(&z->r, 100);

	*k = 0;
	if (x < 8 && len > 0) {
		*k = below(&z->r, len < SCRATCH_PAGES * MB_PAGE ? len :
			      SCRATCH_PAGES * MB_PAGE);
		return BUF_FAULT;
	}
	if (x < 12 && len <= MB_PAGE)
		return BUF_RO;
	return BUF_GOOD;
}

/* Capture device memory (allowed to read while stopped). */
static uint8_t *fz_read_vram(struct fuzz *z, struct fdev *F)
{
	struct sdev *s = &F->s;
	uint8_t *m = malloc(s->d.mem);
	uint64_t off;
	long ret;

	if (!m)
		return NULL;
	for (off = 0; off < s->d.mem; off += MB_MIB) {
		ret = racc(s, &s->d.bar2, false, off, m + off, MB_MIB);
		if (ret != MB_MIB) {
			ffail(z, "reading BAR2+%#llx: %s", (unsigned long long)off,
			      err_str(ret));
			free(m);
			return NULL;
		}
	}
	return m;
}

/* ---- migration v2: the model of a SET ------------------------------------- */

struct set_outcome {
	int err;		/* expected errno, 0 */
	int new_kind;		/* the file the last arc hands out: FD_* or 0 */
	bool ended;		/* the current stream ended on the way */
	bool stop_copy;		/* the save stream entered STOP_COPY */
	bool resumed;		/* RESUMING -> STOP applied the stream */
	bool refused;		/* ... refused it: the device is in ERROR */
};

/* Walk the arcs from the model's state to @target, as mblit does. */
static struct set_outcome fz_set_model(struct fdev *F, uint32_t target)
{
	struct set_outcome o = { 0 };
	uint32_t cur = F->v2, next;

	if (target >= MIG_NSTATES) {
		o.err = EINVAL;
		return o;
	}
	if (target != VFIO_DEVICE_STATE_RUNNING && F->stopped) {
		o.err = EBUSY;
		return o;
	}
	if (cur == VFIO_DEVICE_STATE_ERROR) {
		o.err = target == VFIO_DEVICE_STATE_ERROR ? 0 : EINVAL;
		return o;
	}
	while (cur != target) {
		next = fsm_next[cur][target];
		if (next == VFIO_DEVICE_STATE_ERROR) {
			o.err = EINVAL;
			break;
		}
		o.new_kind = 0;
		switch (cur * 16 + next) {
		case VFIO_DEVICE_STATE_STOP * 16 + VFIO_DEVICE_STATE_STOP_COPY:
			o.new_kind = FD_SAVE;
			o.stop_copy = true;
			break;
		case VFIO_DEVICE_STATE_RUNNING * 16 + VFIO_DEVICE_STATE_PRE_COPY:
		case VFIO_DEVICE_STATE_RUNNING_P2P * 16 + VFIO_DEVICE_STATE_PRE_COPY_P2P:
			o.new_kind = FD_SAVE;
			break;
		case VFIO_DEVICE_STATE_STOP * 16 + VFIO_DEVICE_STATE_RESUMING:
			o.new_kind = FD_RESUME;
			break;
		case VFIO_DEVICE_STATE_PRE_COPY_P2P * 16 + VFIO_DEVICE_STATE_STOP_COPY:
			o.stop_copy = true;
			break;
		case VFIO_DEVICE_STATE_STOP_COPY * 16 + VFIO_DEVICE_STATE_STOP:
		case VFIO_DEVICE_STATE_PRE_COPY * 16 + VFIO_DEVICE_STATE_RUNNING:
		case VFIO_DEVICE_STATE_PRE_COPY_P2P * 16 + VFIO_DEVICE_STATE_RUNNING_P2P:
			o.ended = true;
			break;
		case VFIO_DEVICE_STATE_RESUMING * 16 + VFIO_DEVICE_STATE_STOP:
			o.ended = true;
			if (F->rs_bad || !F->stream || F->fed != F->stream->len) {
				cur = VFIO_DEVICE_STATE_ERROR;
				o.err = EINVAL;
				o.refused = true;
				goto done;
			}
			o.resumed = true;
			break;
		}
		cur = next;
	}
done:
	F->v2 = cur;
	return o;
}

/*
 * After a SET whose result was as the model said (@o): the files, the
 * device memory a stream carried, what the model knows.  @nfd is the
 * data_fd the SET returned (or -1).
 */
static void fz_after_set(struct fuzz *z, struct fdev *F, uint32_t target,
			 const struct set_outcome *o, long ret, int nfd)
{
	struct sdev *s = &F->s;

	if (o->ended || o->new_kind)
		fz_end_stream(F);
	if (!ret && (nfd >= 0) != (o->new_kind != 0)) {
		ffail(z, "SET %s: data_fd %d, the model expects %s",
		      mig_state_name(target), nfd, o->new_kind ? "one" : "none");
		if (nfd >= 0)
			close(nfd);
		return;
	}
	if (ret && nfd != -1) {
		ffail(z, "a failed SET returned data_fd %d (not -1)", nfd);
		return;
	}
	if (o->refused) {
		/* A refused stream: the device is as after a reset, in ERROR. */
		cfg_reset_image(F->cfg, s->d.mem / MB_MIB);
		F->cfg_known = true;
		memset(F->scratch, 0, sizeof(F->scratch));
		F->scratch_known = true;
		z->n_refused++;
	}
	if (nfd >= 0) {
		F->dfd = nfd;
		F->dkind = o->new_kind;
		F->fed = 0;
		F->rs_bad = 0;
	}
	if (o->stop_copy && F->dkind == FD_SAVE) {
		F->save_stopped = true;
		F->sc_vram = fz_read_vram(z, F);
	}
	if (o->resumed) {
		uint8_t *now = fz_read_vram(z, F);
		uint64_t i;

		if (now && F->stream_vram) {
			for (i = 0; i < s->d.mem && now[i] == F->stream_vram[i]; i++)
				;
			if (i < s->d.mem)
				ffail(z, "resumed: device byte %#llx is %#x, the stream carries %#x",
				      (unsigned long long)i, now[i], F->stream_vram[i]);
			else
				z->n_resumed++;
		}
		free(now);
		F->cfg_known = F->scratch_known = false;
		fz_resync(z, F);
	}
}

/* The vfio_device_feature_mig_state SET, as the model predicts it. */
static void fz_do_set(struct fuzz *z, unsigned int op, struct fdev *F,
		      uint32_t target)
{
	struct set_outcome o;
	int nfd = -1, ret;

	o = fz_set_model(F, target);
	ret = mig_set(DFD(&F->s), target, &nfd);
	if (!fexpect(z, op, ret, o.err, "SET MIG_DEVICE_STATE")) {
		if (nfd >= 0)
			close(nfd);
		return;
	}
	fz_after_set(z, F, target, &o, ret, nfd);
}

/* ---- region accesses ------------------------------------------------------ */

static void fz_bar0(struct fuzz *z, struct fdev *F)
{
	struct sdev *s = &F->s;
	struct rng *r = &z->r;
	const struct reg *g;
	uint64_t off, v = 0;
	size_t w, k;
	bool wr = pct(r, 50);
	int kind, want;
	uint8_t val[16], *buf;
	long ret;

	rand_bar0(r, &off, &w);
	g = bar0_decode(off, w);
	kind = fz_bufkind(z, w, &k);
	if (kind == BUF_RO && wr)
		kind = BUF_GOOD;
	rnd_fill(r, val, sizeof(val));
	if (wr && g && g->off == MBLIT_REG_CTRL && pct(r, 85))
		val[0] &= pct(r, 30) ? 3 : 1;	/* sometimes a reset */
	if (wr && g && g->off == MBLIT_REG_RING_TAIL && pct(r, 80))
		memset(val, 0, 4);
	buf = fz_buf(z, kind, w, k);
	if (kind != BUF_RO)
		memcpy(buf, val, kind == BUF_FAULT && k < w ? k : w);
	fcall(z, F, "%s %zu bytes at BAR0+%#llx (%s), buffer %s %zu",
	      wr ? "write" : "read", w, (unsigned long long)off,
	      g ? g->name : "invalid", buf_kind_name[kind], k);
	ret = racc(s, &s->d.bar0, wr, off, buf, w);
	if (!g)
		want = EINVAL;
	else if (kind == BUF_RO && !wr)
		want = EFAULT;
	else if (kind == BUF_FAULT && k < w)
		want = EFAULT;
	else if (wr && !writable(F))
		want = EBUSY;
	else
		want = 0;
	if (!fexpect(z, F_BAR0, ret, want, "BAR0 access") || ret < 0)
		return;
	if (ret != (long)w) {
		ffail(z, "BAR0 access of %zu bytes returned %ld", w, ret);
		return;
	}
	memcpy(&v, buf, w);
	if (!wr) {
		uint64_t full = 0;
		bool known = true;

		if (g->off == MBLIT_REG_ID)
			full = MBLIT_ID_MAGIC;
		else if (g->off == MBLIT_REG_VERSION)
			full = MBLIT_DEVICE_VERSION;
		else if (g->off >= MBLIT_REG_SCRATCH0 && F->scratch_known)
			full = F->scratch[(g->off - MBLIT_REG_SCRATCH0) / 8];
		else
			known = false;
		full >>= 8 * (off - g->off);
		if (w < 8)
			full &= (1ULL << (8 * w)) - 1;
		if (known && v != full)
			ffail(z, "%s reads %#llx, expected %#llx", g->name,
			      (unsigned long long)v, (unsigned long long)full);
		return;
	}
	if (g->off >= MBLIT_REG_SCRATCH0) {
		uint8_t *p = (uint8_t *)&F->scratch[(g->off - MBLIT_REG_SCRATCH0) / 8];

		memcpy(p + (off - g->off), &v, w);
	} else if (g->off == MBLIT_REG_CTRL && (v & MBLIT_CTRL_RESET)) {
		memset(F->scratch, 0, sizeof(F->scratch));
		F->scratch_known = true;
	}
}

/*
 * The user buffer of a region access of @len bytes: a random kind (good,
 * faulting after *@k bytes, read-only; a write never gets a read-only
 * one), random bytes in a good one to write.
 */
static uint8_t *fz_region_buf(struct fuzz *z, size_t len, bool wr, int *kind,
			      size_t *k)
{
	uint8_t *buf;

	*kind = fz_bufkind(z, len, k);
	if (*kind == BUF_RO && wr)
		*kind = BUF_GOOD;
	buf = fz_buf(z, *kind, len, *k);
	if (*kind == BUF_GOOD && wr)
		rnd_fill(&z->r, buf, len);
	return buf;
}

static void fz_bar2(struct fuzz *z, struct fdev *F)
{
	struct sdev *s = &F->s;
	struct rng *r = &z->r;
	uint64_t mem = s->d.mem, off;
	size_t len, k, cap = SCRATCH_PAGES * MB_PAGE;
	bool wr = pct(r, 50), valid = true;
	int kind, want;
	uint8_t *buf;
	long ret;

	len = pct(r, 70) ? between(r, 1, 4096) : between(r, 1, cap);
	if (len > mem)
		len = mem;
	off = below(r, mem - len + 1);
	switch (below(r, 10)) {
	case 0:
		len = 0;
		valid = false;
		break;
	case 1:
		off = mem - between(r, 0, len - 1 < 64 ? len - 1 : 64);
		valid = off + len <= mem;
		break;
	case 2:
		off = mem + below(r, 1ULL << 39);
		valid = false;
		break;
	}
	buf = fz_region_buf(z, len, wr, &kind, &k);
	fcall(z, F, "%s %zu bytes at BAR2+%#llx, buffer %s %zu",
	      wr ? "write" : "read", len, (unsigned long long)off,
	      buf_kind_name[kind], k);
	ret = racc(s, &s->d.bar2, wr, off, buf, len);
	if (!valid)
		want = EINVAL;
	else if (kind != BUF_GOOD) {
		/* Checked after the bytes are in: stopped, EBUSY may come first. */
		if (wr && !writable(F)) {
			fexpect_any(z, F_BAR2, ret, E(EFAULT, EBUSY), "BAR2 write");
			return;
		}
		want = EFAULT;
	} else if (wr && !writable(F))
		want = EBUSY;
	else
		want = 0;
	if (fexpect(z, F_BAR2, ret, want, "BAR2 access") && ret >= 0 &&
	    ret != (long)len)
		ffail(z, "BAR2 access of %zu bytes returned %ld", len, ret);
}

static void fz_cfg(struct fuzz *z, struct fdev *F)
{
	struct sdev *s = &F->s;
	struct rng *r = &z->r;
	uint64_t off = below(r, 270);
	size_t len, k, i;
	bool wr = pct(r, 45), valid;
	uint8_t val[300], *buf;
	int kind, want;
	long ret;

	len = rand_cfg_len(r);
	if (pct(r, 20))
		off = MBLIT_CONFIG_SIZE - len + below(r, 2);	/* at the end */
	valid = len && len <= MBLIT_CONFIG_SIZE && off + len <= MBLIT_CONFIG_SIZE;
	kind = fz_bufkind(z, len, &k);
	if (kind == BUF_RO && (wr || len > MB_PAGE))
		kind = BUF_GOOD;
	rnd_fill(r, val, sizeof(val));
	/* Keep bus master on mostly: the engine should get to run. */
	if (wr && off <= PCI_COMMAND && off + len > PCI_COMMAND && pct(r, 85))
		val[PCI_COMMAND - off] |= PCI_COMMAND_MASTER;
	buf = fz_buf(z, kind, len, k);
	if (kind != BUF_RO && len)
		memcpy(buf, val, kind == BUF_FAULT ? k : len);
	fcall(z, F, "%s %zu bytes at config+%#llx, buffer %s %zu",
	      wr ? "write" : "read", len, (unsigned long long)off,
	      buf_kind_name[kind], k);
	ret = racc(s, &s->d.cfg, wr, off, buf, len);
	if (!valid && kind != BUF_GOOD && wr && len && len <= MBLIT_CONFIG_SIZE) {
		/* The bytes come in before the range is checked. */
		fexpect_any(z, F_CFG, ret, E(EINVAL, EFAULT), "config write");
		return;
	}
	want = !valid ? EINVAL : kind != BUF_GOOD ? EFAULT : 0;
	if (!fexpect(z, F_CFG, ret, want, "config access") || ret < 0)
		return;
	if (ret != (long)len) {
		ffail(z, "config access of %zu bytes returned %ld", len, ret);
		return;
	}
	if (wr) {
		for (i = 0; i < len; i++)
			F->cfg[off + i] = (F->cfg[off + i] & ~F->wmask[off + i]) |
					  (val[i] & F->wmask[off + i]);
		return;
	}
	if (!F->cfg_known)
		return;
	for (i = 0; i < len; i++)
		if ((buf[i] ^ F->cfg[off + i]) & ~cfg_volatile(off + i)) {
			ffail(z, "config byte %#llx reads %#x, expected %#x",
			      (unsigned long long)(off + i), buf[i], F->cfg[off + i]);
			return;
		}
}

/* ---- the DEVICE_STATE region ------------------------------------------------ */

/* After a STOPPED that took a snapshot: read it, check it, keep it. */
static void fz_take_snapshot(struct fuzz *z, struct fdev *F)
{
	struct sdev *s = &F->s;
	uint8_t h[MBLIT_STATE_HEADER_END];
	int ndev = 0;
	char msg[200];
	uint64_t size, gen;
	long ret;

	ret = racc(s, &s->sr, false, 8, h + 8, sizeof(h) - 8);
	if (ret != (long)sizeof(h) - 8) {
		ffail(z, "DEVICE_STATE header: %s", err_str(ret));
		return;
	}
	size = mig_le64(h + MBLIT_STATE_OFF_SIZE);
	gen = mig_le64(h + MBLIT_STATE_OFF_GENERATION);
	if (F->gen_known && gen != F->gen + 1)
		ffail(z, "generation %llu after a stop, the one before was %llu",
		      (unsigned long long)gen, (unsigned long long)F->gen);
	F->gen = gen;
	F->gen_known = true;
	free(F->snap);
	F->snap = malloc(size ? size : 1);
	F->snap_len = size;
	F->incoming = 0;
	F->incoming_hi = F->incoming_maybe = 0;
	if (!size || size > s->sr.size - AREA) {
		ffail(z, "state size %llu after a stop", (unsigned long long)size);
		return;
	}
	ret = racc(s, &s->sr, false, AREA, F->snap, size);
	if (ret != (long)size) {
		ffail(z, "reading the %llu-byte snapshot: %s",
		      (unsigned long long)size, err_str(ret));
		return;
	}
	if (stream_check(F->snap, size, 0, s->d.mem / MB_MIB, s->d.mem, true,
			 &ndev, msg, sizeof(msg)) < 0)
		ffail(z, "the snapshot is malformed: %s", msg);
	else
		z->n_snapshots++;
}

/* run-control write of @v, as the model predicts it. */
static void fz_runctl(struct fuzz *z, struct fdev *F, uint8_t v, int kind,
		      unsigned int op)
{
	struct sdev *s = &F->s;
	uint8_t *buf = fz_buf(z, kind, 1, 0);
	int want;
	long ret;

	if (kind == BUF_GOOD)
		buf[0] = v;
	ret = racc(s, &s->sr, true, 0, buf, 1);
	if (kind == BUF_FAULT)
		want = EFAULT;
	else if (v != RUNNING && v != STOPPED)
		want = EINVAL;
	else if (F->v2 != VFIO_DEVICE_STATE_RUNNING)
		want = EBUSY;
	else if (v == STOPPED || !F->stopped || F->incoming < 2)
		want = 0;
	else if (F->incoming == 2)
		want = -2;		/* the incoming state is refused */
	else
		want = -1;		/* refused, or there was none */
	if (want == -2) {
		/* EPROTONOSUPPORT if the damage made the version newer. */
		if (!fexpect_any(z, op, ret, E(EINVAL, EPROTONOSUPPORT),
				 "run-control RUNNING with a damaged state"))
			return;
		want = EINVAL;
	} else if (want < 0) {
		if (!fexpect_any(z, op, ret, E(SUCCESS, EINVAL, EPROTONOSUPPORT),
				 "run-control RUNNING after a faulting state write"))
			return;
		want = ret < 0 ? EINVAL : 0;
		if (ret >= 0)	/* maybe restored: read them again */
			F->cfg_known = F->scratch_known = false;
	} else if (!fexpect(z, op, ret, want, "run-control write")) {
		return;
	}
	if (want == EFAULT || want == EBUSY || (v != RUNNING && v != STOPPED))
		return;
	if (v == STOPPED) {
		if (!F->stopped) {
			F->stopped = true;
			fz_take_snapshot(z, F);
		}
		return;
	}
	if (!F->stopped)
		return;
	if (want == EINVAL) {
		F->incoming = 0;	/* dropped; still stopped */
		F->incoming_hi = F->incoming_maybe = 0;
		return;
	}
	if (F->incoming == 1) {
		F->cfg_known = F->scratch_known = false;
		z->n_restored++;
	}
	F->stopped = false;
	free(F->snap);
	F->snap = NULL;
	F->snap_len = 0;
	F->incoming = 0;
	F->incoming_hi = F->incoming_maybe = 0;
	fz_resync(z, F);
}

/* The control page's bytes (docs/device.md §10). */
static void fz_header(const struct fdev *F, uint8_t h[AREA])
{
	memset(h, 0, AREA);
	put32(h + MBLIT_STATE_OFF_MAGIC, 0x5453424d);
	put32(h + MBLIT_STATE_OFF_VERSION, 1);
	put32(h + MBLIT_STATE_OFF_TYPE, F->s.d.mem / MB_MIB);
	put32(h + MBLIT_STATE_OFF_SIZE, F->stopped ? F->snap_len : 0);
	put32(h + MBLIT_STATE_OFF_SIZE + 4, (uint64_t)(F->stopped ? F->snap_len : 0) >> 32);
	put32(h + MBLIT_STATE_OFF_GENERATION, F->gen);
	put32(h + MBLIT_STATE_OFF_GENERATION + 4, F->gen >> 32);
}

static void fz_state(struct fuzz *z, struct fdev *F)
{
	struct sdev *s = &F->s;
	struct rng *r = &z->r;
	uint64_t R = s->sr.size, off, sl = F->snap_len;
	size_t len, k = 0, i;
	bool wr = pct(r, 40);
	int kind = BUF_GOOD, want;
	uint8_t *buf, hdr[AREA];
	long ret;

	switch (below(r, 10)) {
	case 0:
	case 1: {
		uint8_t v = pct(r, 85) ? (pct(r, 50) ? RUNNING : STOPPED) :
			    bad_runctl[below(r, ARRAY_SIZE(bad_runctl))];

		kind = pct(r, 10) ? BUF_FAULT : BUF_GOOD;
		fcall(z, F, "run-control write %#x%s", v,
		      kind == BUF_FAULT ? " (buffer faults)" : "");
		fz_runctl(z, F, v, kind, F_STATE);
		return;
	}
	case 2:
		fcall(z, F, "run-control read");
		ret = mb_runctl_get(&s->d, &s->sr);
		if (F->v2 != VFIO_DEVICE_STATE_RUNNING)
			fexpect(z, F_STATE, ret, EBUSY, "run-control read");
		else if (fexpect(z, F_STATE, ret, 0, "run-control read") &&
			 ret != (F->stopped ? STOPPED : RUNNING))
			ffail(z, "run-control reads %ld", ret);
		return;
	case 3:		/* the control page */
		off = between(r, 1, AREA - 1);
		len = between(r, 1, AREA - off);
		break;
	case 4:		/* across parts */
		off = pct(r, 50) ? 0 : between(r, AREA - 64, AREA - 1);
		len = off ? between(r, AREA - off + 1, AREA - off + 64) : between(r, 2, 64);
		break;
	case 5:		/* past the end, or nothing */
		off = R - below(r, 8);
		len = pct(r, 50) ? between(r, 9, 64) : 0;
		if (!len)
			off = AREA + below(r, R - AREA);
		break;
	default:	/* the state area */
		off = AREA + (pct(r, 50) && sl ? below(r, sl) : below(r, R - AREA));
		len = between(r, 1, R - off < 16384 ? R - off : 16384);
		break;
	}
	buf = fz_region_buf(z, len, wr, &kind, &k);
	fcall(z, F, "%s %zu bytes at DEVICE_STATE+%#llx, buffer %s %zu",
	      wr ? "write" : "read", len, (unsigned long long)off,
	      buf_kind_name[kind], k);
	ret = racc(s, &s->sr, wr, off, buf, len);
	if (!len || off + len > R || (off == 0 && len != 1) ||
	    (off && off < AREA && off + len > AREA)) {
		fexpect(z, F_STATE, ret, EINVAL, "DEVICE_STATE access across parts");
		return;
	}
	if (off < AREA) {
		want = wr ? EINVAL : kind != BUF_GOOD ? EFAULT : 0;
		if (!fexpect(z, F_STATE, ret, want, "control page") || ret < 0)
			return;
		if (ret != (long)len) {
			ffail(z, "control page read of %zu returned %ld", len, ret);
			return;
		}
		if (!F->gen_known && off <= MBLIT_STATE_OFF_GENERATION &&
		    off + len >= MBLIT_STATE_OFF_GENERATION + 8) {
			F->gen = mig_le64(buf + MBLIT_STATE_OFF_GENERATION - off);
			F->gen_known = true;
		}
		fz_header(F, hdr);
		for (i = 0; i < len; i++) {
			if (!F->gen_known && off + i >= MBLIT_STATE_OFF_GENERATION &&
			    off + i < MBLIT_STATE_OFF_GENERATION + 8)
				continue;
			if (buf[i] != hdr[off + i]) {
				ffail(z, "control page byte %#llx reads %#x, expected %#x",
				      (unsigned long long)(off + i), buf[i], hdr[off + i]);
				return;
			}
		}
		return;
	}
	/* The state area. */
	off -= AREA;
	if (wr) {
		if (kind != BUF_GOOD && (!F->stopped || F->v2 != VFIO_DEVICE_STATE_RUNNING)) {
			fexpect_any(z, F_STATE, ret, E(EFAULT, EBUSY), "state area write");
		} else {
			want = kind != BUF_GOOD ? EFAULT : !F->stopped ? EBUSY : 0;
			fexpect(z, F_STATE, ret, want, "state area write");
		}
		if (F->stopped && kind == BUF_GOOD) {
			/* Whatever arrived is an incoming state now, a bad one. */
			F->incoming = 2;
			if (off + len > F->incoming_hi)
				F->incoming_hi = off + len;
		} else if (F->stopped) {
			/* Some of it may have been stored. */
			if (F->incoming != 2)
				F->incoming = 3;
			if (off + len > F->incoming_maybe)
				F->incoming_maybe = off + len;
		}
		return;
	}
	if (!F->stopped)
		want = EBUSY;
	else if (off + len > sl)
		want = EINVAL;
	else if (kind != BUF_GOOD)
		want = EFAULT;
	else
		want = 0;
	if (fexpect(z, F_STATE, ret, want, "state area read") && !want &&
	    F->snap && memcmp(buf, F->snap + off, len))
		ffail(z, "state area [%#llx, +%zu) differs from the snapshot",
		      (unsigned long long)off, len);
}

/* Stop, write the snapshot back (maybe damaged), RUNNING. */
static void fz_state_restore(struct fuzz *z, struct fdev *F)
{
	static const char *const variant_name[] = {
		"as read", "as read", "one bit flipped", "truncated",
	};
	struct sdev *s = &F->s;
	struct rng *r = &z->r;
	size_t off, n, len;
	int variant = below(r, 4);
	uint8_t *copy;
	long ret;

	if (!F->stopped) {
		fcall(z, F, "run-control STOPPED (to restore)");
		fz_runctl(z, F, STOPPED, BUF_GOOD, F_STATE_RESTORE);
	}
	if (!F->stopped || !F->snap || z->failed)
		return;
	len = F->snap_len;
	copy = malloc(len);
	if (!copy)
		return;
	memcpy(copy, F->snap, len);
	if (variant == 2)
		copy[below(r, len)] ^= 1 << below(r, 8);
	if (variant == 3)
		len = below(r, len);
	fcall(z, F, "write the %zu-byte snapshot back (%s) in pieces, then RUNNING",
	      len, variant_name[variant]);
	for (off = 0; off < len; off += n) {
		n = between(r, 1, len - off < 300000 ? len - off : 300000);
		ret = racc(s, &s->sr, true, AREA + off, copy + off, n);
		if (!fexpect(z, F_STATE_RESTORE, ret, 0, "state area write"))
			break;
	}
	free(copy);
	if (z->failed)
		return;
	/*
	 * The incoming state is the bytes up to the highest one written:
	 * the whole snapshot unchanged is valid, unless bytes past its end
	 * were written before.
	 */
	if (len > F->incoming_hi)
		F->incoming_hi = len;
	if (!len)
		;
	else if (variant >= 2 || F->incoming_hi > F->snap_len)
		F->incoming = 2;
	else if (F->incoming_maybe > F->snap_len)
		F->incoming = 3;
	else
		F->incoming = 1;
	fz_runctl(z, F, RUNNING, BUF_GOOD, F_STATE_RESTORE);
}

/* pread/pwrite where no region is, or at offsets the VFS refuses. */
static void fz_badoff(struct fuzz *z, struct fdev *F)
{
	static const uint32_t empty_region[] = { 1, 3, 4, 5, 6, 8 };
	static const uint32_t some_region[] = { 0, 2, 7, 9 };
	struct sdev *s = &F->s;
	struct rng *r = &z->r;
	uint64_t pos;
	size_t len = between(r, 1, 64);
	bool wr = pct(r, 50);
	static uint8_t lowbuf[64];
	uint8_t *buf = z->buf;
	ssize_t n;
	long ret;

	switch (below(r, 6)) {
	case 0:		/* near 2^64: negative as loff_t */
		pos = UINT64_MAX - below(r, 1ULL << 41);
		break;
	case 1:		/* pos + count past 2^63 */
		pos = INT64_MAX - below(r, len - 1 ? len - 1 : 1);
		len = len < 2 ? 2 : len;
		break;
	case 2:		/* regions of size 0 */
		pos = (uint64_t)empty_region[below(r, ARRAY_SIZE(empty_region))] << 40;
		pos += below(r, 4096);
		break;
	case 3:		/* no such region */
		pos = (10 + below(r, (1 << 22) - 10)) << 40;
		pos += below(r, 4096);
		break;
	case 4:		/* count 0 at a valid offset */
		pos = (uint64_t)some_region[below(r, ARRAY_SIZE(some_region))] << 40;
		len = 0;
		break;
	default:	/* a huge count (clamped to MAX_RW_COUNT) */
		pos = (uint64_t)some_region[below(r, ARRAY_SIZE(some_region))] << 40;
		len = (size_t)1 << between(r, 31, 40);
		buf = lowbuf;	/* low: buf + count stays a user address */
		break;
	}
	fcall(z, F, "%s of %zu bytes at offset %#llx", wr ? "pwrite" : "pread",
	      len, (unsigned long long)pos);
	errno = 0;
	n = wr ? pwrite(DFD(s), buf, len, (off_t)pos) :
		 pread(DFD(s), buf, len, (off_t)pos);
	ret = n < 0 ? -errno : n;
	fexpect(z, F_BADOFF, ret, EINVAL, "access at a bad offset");
}

/* ---- information ioctls --------------------------------------------------------- */

/*
 * The argument of an info ioctl: in a good buffer, NULL, in the
 * read-only page, or straddling the guard page (only @m bytes readable).
 */
enum { ARG_GOOD, ARG_NULL, ARG_RO, ARG_STRADDLE };

static const char *const arg_kind_name[] = {
	[ARG_GOOD] = "good", [ARG_NULL] = "NULL", [ARG_RO] = "read-only",
	[ARG_STRADDLE] = "straddling",
};

static void *fz_arg(struct fuzz *z, int kind, const void *src, size_t len,
		    size_t m)
{
	uint8_t *p;

	switch (kind) {
	case ARG_NULL:
		return NULL;
	case ARG_RO:
		mprotect(z->ro, MB_PAGE, PROT_READ | PROT_WRITE);
		memcpy(z->ro, src, len);
		mprotect(z->ro, MB_PAGE, PROT_READ);
		return z->ro;
	case ARG_STRADDLE:
		p = z->buf + SCRATCH_PAGES * MB_PAGE - m;
		memcpy(p, src, m);
		return p;
	default:
		memset(z->buf, 0, 4096);
		memcpy(z->buf, src, len);
		return z->buf;
	}
}

static int fz_argkind(struct fuzz *z)
{
	unsigned int x = below(&z->r, 100);

	return x < 85 ? ARG_GOOD : x < 90 ? ARG_NULL : x < 95 ? ARG_RO :
	       ARG_STRADDLE;
}

static uint32_t fz_argsz(struct fuzz *z, uint32_t minsz, uint32_t full)
{
	switch (below(&z->r, 8)) {
	case 0: return 0;
	case 1: return minsz - 1 - below(&z->r, minsz);
	case 2: return 4096;
	case 3: return UINT32_MAX;
	case 4: return rnd(&z->r);
	default: return full;
	}
}

static void fz_get_info(struct fuzz *z, struct fdev *F)
{
	struct vfio_device_info in = { 0 }, *out;
	int kind = fz_argkind(z), want;
	size_t m = between(&z->r, 1, 15);
	long ret;

	in.argsz = fz_argsz(z, 16, sizeof(in));
	out = fz_arg(z, kind, &in, sizeof(in), m);
	fcall(z, F, "GET_INFO argsz %u, argument %s", in.argsz,
	      arg_kind_name[kind]);
	ret = ioctl(DFD(&F->s), VFIO_DEVICE_GET_INFO, out) ? -errno : 0;
	if (kind == ARG_NULL || kind == ARG_STRADDLE)
		want = EFAULT;
	else if (in.argsz < 16)
		want = EINVAL;
	else
		want = kind == ARG_RO ? EFAULT : 0;
	if (!fexpect(z, F_GET_INFO, ret, want, "GET_INFO") || ret)
		return;
	if (out->argsz != in.argsz ||
	    out->flags != (VFIO_DEVICE_FLAGS_PCI | VFIO_DEVICE_FLAGS_RESET) ||
	    out->num_regions != 10 || out->num_irqs != VFIO_PCI_NUM_IRQS)
		ffail(z, "GET_INFO: argsz %u flags %#x regions %u irqs %u",
		      out->argsz, out->flags, out->num_regions, out->num_irqs);
}

static void fz_region_info(struct fuzz *z, struct fdev *F)
{
	static const uint32_t bad_index[] = { 11, 255, 1u << 31, UINT32_MAX };
	struct vfio_region_info in = { 0 }, *out;
	struct vfio_region_info_cap_type *cap;
	struct rng *r = &z->r;
	int kind = fz_argkind(z), want;
	size_t m = between(r, 1, 31);
	uint32_t flags, need = sizeof(in) + sizeof(*cap);
	uint64_t size;
	long ret;

	in.index = pct(r, 85) ? below(r, 11) :
		   bad_index[below(r, ARRAY_SIZE(bad_index))];
	in.argsz = pct(r, 30) ? need - below(r, 2) : fz_argsz(z, sizeof(in), sizeof(in));
	in.cap_offset = rnd(r);
	out = fz_arg(z, kind, &in, sizeof(in), m);
	fcall(z, F, "GET_REGION_INFO index %u argsz %u, argument %s", in.index,
	      in.argsz,
	      arg_kind_name[kind]);
	ret = ioctl(DFD(&F->s), VFIO_DEVICE_GET_REGION_INFO, out) ? -errno : 0;
	if (kind == ARG_NULL || kind == ARG_STRADDLE)
		want = EFAULT;
	else if (in.argsz < sizeof(in) || in.index >= 10)
		want = EINVAL;
	else
		want = kind == ARG_RO ? EFAULT : 0;
	if (!fexpect(z, F_REGION_INFO, ret, want, "GET_REGION_INFO") || ret)
		return;
	region_expect(&F->s, in.index, &size, &flags);
	if (out->size != size || out->flags != flags ||
	    out->offset != (uint64_t)in.index << 40) {
		ffail(z, "region %u: size %#llx flags %#x offset %#llx, expected %#llx %#x %#llx",
		      in.index, (unsigned long long)out->size, out->flags,
		      (unsigned long long)out->offset, (unsigned long long)size,
		      flags, (unsigned long long)in.index << 40);
		return;
	}
	if (in.index != MBLIT_STATE_REGION_INDEX) {
		if (out->argsz != in.argsz)
			ffail(z, "region %u: argsz %u became %u", in.index, in.argsz,
			      out->argsz);
		return;
	}
	/* The type capability, or the room it needs. */
	if (in.argsz < need) {
		if (out->argsz != need || out->cap_offset)
			ffail(z, "state region, argsz %u: argsz %u cap_offset %u, expected %u and 0",
			      in.argsz, out->argsz, out->cap_offset, need);
		return;
	}
	cap = (void *)((uint8_t *)out + sizeof(*out));
	if (out->cap_offset != sizeof(*out) ||
	    cap->header.id != VFIO_REGION_INFO_CAP_TYPE || cap->header.next ||
	    cap->type != MBLIT_REGION_TYPE_DEVICE_STATE ||
	    cap->subtype != MBLIT_REGION_SUBTYPE_DEVICE_STATE)
		ffail(z, "state region capability: offset %u id %u next %u type %#x subtype %u",
		      out->cap_offset, cap->header.id, cap->header.next,
		      cap->type, cap->subtype);
}

static void fz_irq_info(struct fuzz *z, struct fdev *F)
{
	static const uint32_t flags[VFIO_PCI_NUM_IRQS] = {
		VFIO_IRQ_INFO_EVENTFD | VFIO_IRQ_INFO_MASKABLE | VFIO_IRQ_INFO_AUTOMASKED,
		VFIO_IRQ_INFO_EVENTFD | VFIO_IRQ_INFO_NORESIZE,
	};
	struct vfio_irq_info in = { 0 }, *out;
	int kind = fz_argkind(z), want;
	size_t m = between(&z->r, 1, 15);
	long ret;

	in.index = pct(&z->r, 85) ? below(&z->r, 6) : rnd(&z->r);
	in.argsz = fz_argsz(z, 16, sizeof(in));
	out = fz_arg(z, kind, &in, sizeof(in), m);
	fcall(z, F, "GET_IRQ_INFO index %u argsz %u, argument %s", in.index,
	      in.argsz,
	      arg_kind_name[kind]);
	ret = ioctl(DFD(&F->s), VFIO_DEVICE_GET_IRQ_INFO, out) ? -errno : 0;
	if (kind == ARG_NULL || kind == ARG_STRADDLE)
		want = EFAULT;
	else if (in.argsz < 16 || in.index >= VFIO_PCI_NUM_IRQS)
		want = EINVAL;
	else
		want = kind == ARG_RO ? EFAULT : 0;
	if (!fexpect(z, F_IRQ_INFO, ret, want, "GET_IRQ_INFO") || ret)
		return;
	if (out->count != (in.index <= VFIO_PCI_MSI_IRQ_INDEX) ||
	    out->flags != flags[in.index] || out->index != in.index)
		ffail(z, "irq %u: count %u flags %#x", in.index, out->count,
		      out->flags);
}

/* ---- interrupts ------------------------------------------------------------- */

static void fz_set_irqs(struct fuzz *z, struct fdev *F)
{
	static const uint32_t dtypes[] = { VFIO_IRQ_SET_DATA_NONE,
					   VFIO_IRQ_SET_DATA_BOOL,
					   VFIO_IRQ_SET_DATA_EVENTFD,
					   VFIO_IRQ_SET_DATA_EVENTFD };
	static const uint32_t actions[] = { VFIO_IRQ_SET_ACTION_TRIGGER,
					    VFIO_IRQ_SET_ACTION_TRIGGER,
					    VFIO_IRQ_SET_ACTION_MASK,
					    VFIO_IRQ_SET_ACTION_UNMASK };
	static const uint32_t bad_index[] = { 5, 6, 255, UINT32_MAX };
	static const uint32_t bad_count[] = { 2, 3, UINT32_MAX };
	struct rng *r = &z->r;
	uint8_t raw[64] = { 0 };
	struct vfio_irq_set *set = (void *)raw;
	uint32_t dt = dtypes[below(r, 4)], ac = actions[below(r, 4)];
	uint32_t flags = dt | ac, index, start = 0, count, argsz, dsize, max;
	int fdkind = -1, efd = -1, want = 0, ret, *trig;
	bool null_arg = pct(r, 3), fire = false;
	const char *fdwhat = "";
	int32_t fd = -1;
	uint8_t b = 0;
	uint64_t cnt;

	index = pct(r, 85) ? below(r, VFIO_PCI_NUM_IRQS) :
		bad_index[below(r, ARRAY_SIZE(bad_index))];
	if (pct(r, 12))
		flags = pct(r, 50) ? (uint32_t)rnd(r) : flags | 1u << between(r, 6, 31);
	count = pct(r, 85) ? (pct(r, 75) ? 1 : 0) :
		bad_count[below(r, ARRAY_SIZE(bad_count))];
	if (pct(r, 5))
		start = pct(r, 50) ? 1 : UINT32_MAX;
	if (dt == VFIO_IRQ_SET_DATA_EVENTFD) {
		fdkind = below(r, 10);
		switch (fdkind) {
		case 0:
			fd = -1;
			fdwhat = "fd -1";
			break;
		case 1:
			fd = 1 << 20;	/* above RLIMIT_NOFILE: closed */
			fdwhat = "a closed fd";
			break;
		case 2:
			fd = pct(r, 50) ? DFD(&F->s) : z->null_fd;
			fdwhat = "a non-eventfd fd";
			break;
		default:
			efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
			fd = efd;
			fdwhat = "an eventfd";
			break;
		}
		memcpy(set->data, &fd, 4);
	} else if (dt == VFIO_IRQ_SET_DATA_BOOL) {
		b = pct(r, 70) ? 1 : pct(r, 50) ? 0 : between(r, 2, 255);
		set->data[0] = b;
	}
	dsize = (dt == VFIO_IRQ_SET_DATA_NONE ? 0 :
		 dt == VFIO_IRQ_SET_DATA_BOOL ? 1 : 4) * (count <= 1 ? count : 1);
	argsz = sizeof(*set) + dsize;
	if (!pct(r, 85)) {
		const uint32_t bad_argsz[] = {
			0, sizeof(*set) - 1, argsz - 1, sizeof(raw), UINT32_MAX,
		};

		argsz = bad_argsz[below(r, ARRAY_SIZE(bad_argsz))];
	}
	set->argsz = argsz;
	set->flags = flags;
	set->index = index;
	set->start = start;
	set->count = count;
	fcall(z, F, "SET_IRQS argsz %u flags %#x index %u start %u count %u %s%s",
	      argsz, flags, index, start, count, fdwhat,
	      null_arg ? " (argument NULL)" : "");
	ret = ioctl(DFD(&F->s), VFIO_DEVICE_SET_IRQS, null_arg ? NULL : set) ?
	      -errno : 0;

	/* docs/device.md §3, "Interrupts", and vfio-pci. */
	max = index <= VFIO_PCI_MSI_IRQ_INDEX ? 1 : 0;
	trig = index == VFIO_PCI_MSI_IRQ_INDEX ? &F->msi_efd : &F->intx_efd;
	if (null_arg)
		want = EFAULT;
	else if (argsz < sizeof(*set) || (flags & ~0x3fu) ||
		 __builtin_popcount(flags & 7) != 1 ||
		 __builtin_popcount(flags & 0x38) != 1)
		want = EINVAL;
	else if (index >= VFIO_PCI_NUM_IRQS || !max)
		want = EINVAL;	/* no such irq (MSI-X, ERR, REQ have none) */
	else if (start || count > max)
		want = EINVAL;
	else if (argsz < sizeof(*set) + dsize)
		want = EINVAL;
	else if (ac == VFIO_IRQ_SET_ACTION_TRIGGER) {
		if (dt == VFIO_IRQ_SET_DATA_EVENTFD) {
			if (!count)
				want = EINVAL;
			else if (fdkind == 1)
				want = EBADF;
			else if (fdkind == 2)
				want = EINVAL;
			else if (fd >= 0 && (index == VFIO_PCI_MSI_IRQ_INDEX ?
					     F->intx_efd >= 0 : F->msi_efd >= 0))
				want = EINVAL;	/* only one of INTx and MSI */
		} else if (dt == VFIO_IRQ_SET_DATA_BOOL && !count) {
			/* Not specified: vfio-pci refuses it, mblit may not. */
			fexpect_any(z, F_SET_IRQS, ret, E(SUCCESS, EINVAL),
				    "SET_IRQS TRIGGER|BOOL count 0");
			goto out;
		} else {
			fire = count && (dt == VFIO_IRQ_SET_DATA_NONE || b);
		}
	} else if (index != VFIO_PCI_INTX_IRQ_INDEX ||
		   dt == VFIO_IRQ_SET_DATA_EVENTFD) {
		want = EINVAL;	/* mask/unmask: INTx, no eventfds */
	}
	if (!fexpect(z, F_SET_IRQS, ret, want, "SET_IRQS") || ret)
		goto out;
	if (ac == VFIO_IRQ_SET_ACTION_TRIGGER && dt == VFIO_IRQ_SET_DATA_EVENTFD) {
		if (*trig >= 0)
			close(*trig);
		*trig = efd;		/* or -1: removed */
		efd = -1;
	} else if (ac == VFIO_IRQ_SET_ACTION_TRIGGER &&
		   dt == VFIO_IRQ_SET_DATA_NONE && !count) {
		if (*trig >= 0)
			close(*trig);
		*trig = -1;
	} else if (fire && *trig >= 0) {
		/* A loopback trigger signals the eventfd set for the index. */
		if (read(*trig, &cnt, 8) != 8 || !cnt)
			ffail(z, "the %s eventfd was not signalled by a loopback trigger",
			      index == VFIO_PCI_MSI_IRQ_INDEX ? "MSI" : "INTx");
	}
out:
	if (efd >= 0)
		close(efd);
}

static void fz_reset(struct fuzz *z, struct fdev *F)
{
	long ret;

	fcall(z, F, "VFIO_DEVICE_RESET");
	ret = ioctl(DFD(&F->s), VFIO_DEVICE_RESET) ? -errno : 0;
	if (fexpect(z, F_RESET, ret, 0, "VFIO_DEVICE_RESET"))
		fz_model_reset(F, false);
}

/* ---- VFIO_DEVICE_FEATURE ------------------------------------------------------ */

/* How the core checks a feature (vfio_check_feature): its ops and minsz. */
static bool feature_spec(uint32_t fi, uint32_t *ops, uint32_t *minsz)
{
	const uint32_t G = VFIO_DEVICE_FEATURE_GET, S_ = VFIO_DEVICE_FEATURE_SET;

	switch (fi) {
	case VFIO_DEVICE_FEATURE_MIGRATION:
		*ops = G;
		*minsz = 8;
		return true;
	case VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE:
		*ops = G | S_;
		*minsz = 8;
		return true;
	case VFIO_DEVICE_FEATURE_DMA_LOGGING_START:
		*ops = S_;
		*minsz = 24;
		return true;
	case VFIO_DEVICE_FEATURE_DMA_LOGGING_STOP:
		*ops = S_;
		*minsz = 0;
		return true;
	case VFIO_DEVICE_FEATURE_DMA_LOGGING_REPORT:
		*ops = G;
		*minsz = 32;
		return true;
	case VFIO_DEVICE_FEATURE_MIG_DATA_SIZE:
		*ops = G;
		*minsz = 8;
		return true;
	case 12:	/* VFIO_DEVICE_FEATURE_MIG_PRECOPY_INFOv2 */
		*ops = S_;
		*minsz = 0;
		return true;
	}
	return false;
}

/* DMA_LOGGING_START's argument: valid, or broken as @bad says. */
static uint32_t fz_log_ranges(struct fuzz *z,
			      struct vfio_device_feature_dma_logging_range *rg,
			      int bad, uint64_t *page_size, int *want_core,
			      int *want_drv)
{
	struct rng *r = &z->r;
	uint32_t n = between(r, 1, 3), c = below(r, NCHUNK - n + 1), i;

	*page_size = MB_PAGE;
	*want_core = 0;
	*want_drv = 0;
	for (i = 0; i < n; i++) {
		rg[i].iova = MB_IOVA + (c + i) * CHUNK + (pct(r, 30) ? 0x10000 : 0);
		rg[i].length = pct(r, 50) ? CHUNK / 2 : 0x4000;
	}
	switch (bad) {
	case 1:
		*want_core = EINVAL;
		return 0;
	case 2:
		rg[1] = rg[0];
		rg[1].iova += MB_PAGE;
		*want_core = EINVAL;	/* overlap */
		return 2;
	case 3:
		rg[0].iova += 0x800;
		*want_core = EINVAL;
		return n;
	case 4:
		rg[0] = (struct vfio_device_feature_dma_logging_range){
			0xfffffffffffff000ULL, 0x2000 };
		*want_core = EOVERFLOW;
		return 1;
	case 5:
		rg[0] = (struct vfio_device_feature_dma_logging_range){
			0, (1ULL << 40) + MB_PAGE };
		*want_drv = E2BIG;
		return 1;
	case 6:
		/* Aligned as the core checks it: (x & 0x2fff) == 0. */
		rg[0] = (struct vfio_device_feature_dma_logging_range){ G_LO, 0x4000 };
		*page_size = 0x3000;
		*want_drv = EINVAL;	/* not a power of two */
		return 1;
	case 7:
		*want_core = E2BIG;
		return MB_PAGE / 16 + 1;
	}
	return n;
}

static void fz_feature(struct fuzz *z, struct fdev *F)
{
	static const uint32_t fis[] = {
		VFIO_DEVICE_FEATURE_MIGRATION, VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE,
		VFIO_DEVICE_FEATURE_DMA_LOGGING_START,
		VFIO_DEVICE_FEATURE_DMA_LOGGING_STOP,
		VFIO_DEVICE_FEATURE_DMA_LOGGING_REPORT,
		VFIO_DEVICE_FEATURE_MIG_DATA_SIZE, 12, 0, 3, 4, 5, 10, 11, 13,
		0x7fff, 0xffff,
	};
	static const uint64_t bad_page_size[] = { 2048, 0x3000, 0 };
	const uint32_t G = VFIO_DEVICE_FEATURE_GET, S_ = VFIO_DEVICE_FEATURE_SET,
		       P = VFIO_DEVICE_FEATURE_PROBE;
	static struct vfio_device_feature_dma_logging_range rg[MB_PAGE / 16 + 2];
	struct rng *r = &z->r;
	uint64_t raw[(sizeof(struct vfio_device_feature) + 64) / 8 + 1] = { 0 };
	struct vfio_device_feature *f = (void *)raw;
	uint32_t fi = fis[below(r, ARRAY_SIZE(fis))];
	uint32_t ops = 0, minsz = 0, flags, argsz, target = 0;
	uint64_t page_size = MB_PAGE, *p64 = (uint64_t *)f->data, bm[4];
	int kind, want = 0, wcore = 0, wdrv = 0, bad = 0;
	bool known = feature_spec(fi, &ops, &minsz), ro = false;
	long ret;

	switch (below(r, 10)) {
	case 0:
		flags = G | P;
		break;
	case 1:
		flags = S_ | P;
		break;
	case 2:
		flags = P;
		break;
	case 3:
		flags = G | S_;
		break;
	case 4:
		flags = 0;
		break;
	default:
		flags = known ? (ops == S_ ? S_ : ops == G ? G : pct(r, 50) ? G : S_) :
			pct(r, 50) ? G : S_;
		break;
	}
	if (pct(r, 5))
		flags = pct(r, 50) ? G : S_;	/* the wrong one, often */
	if (pct(r, 6))
		flags |= 1u << between(r, 19, 31);
	flags |= fi;
	argsz = sizeof(*f) + minsz;
	if (!pct(r, 80)) {
		const uint32_t bad_argsz[] = {
			0, 4, 7, sizeof(*f), argsz - 1, 4096, UINT32_MAX,
		};

		argsz = bad_argsz[below(r, ARRAY_SIZE(bad_argsz))];
	}
	f->argsz = argsz;
	f->flags = flags;
	rnd_fill(r, f->data, 40);

	/* Payloads of the features the driver acts on. */
	if (fi == VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE) {
		target = pct(r, 90) ? below(r, MIG_NSTATES) : rnd(r);
		((struct vfio_device_feature_mig_state *)f->data)->device_state = target;
		((struct vfio_device_feature_mig_state *)f->data)->data_fd = -2;
	} else if (fi == VFIO_DEVICE_FEATURE_DMA_LOGGING_START) {
		struct vfio_device_feature_dma_logging_control *c = (void *)f->data;

		bad = pct(r, 60) ? 0 : between(r, 1, 7);
		c->num_ranges = fz_log_ranges(z, rg, bad, &page_size, &wcore, &wdrv);
		c->page_size = page_size;
		c->ranges = (uintptr_t)rg;
		c->__reserved = 0;
	} else if (fi == VFIO_DEVICE_FEATURE_DMA_LOGGING_REPORT) {
		struct vfio_device_feature_dma_logging_report *rp = (void *)f->data;

		rp->iova = MB_IOVA;
		rp->length = pct(r, 80) ? 0x10000 : 0x8000;
		rp->page_size = pct(r, 85) ? MB_PAGE :
				bad_page_size[below(r, ARRAY_SIZE(bad_page_size))];
		rp->bitmap = (uintptr_t)bm;
		if (pct(r, 5)) {
			rp->iova = 0xfffffffffffff000ULL;
			rp->length = 0x2000;
		}
	}
	kind = pct(r, 4) ? ARG_NULL : pct(r, 4) && fi != VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE ?
	       ARG_RO : ARG_GOOD;
	if (kind == ARG_RO) {
		mprotect(z->ro, MB_PAGE, PROT_READ | PROT_WRITE);
		memcpy(z->ro, raw, sizeof(raw));
		mprotect(z->ro, MB_PAGE, PROT_READ);
		ro = true;
	}
	fcall(z, F, "FEATURE %#x flags %#x argsz %u%s%s (payload %#llx %#llx)",
	      fi, flags & ~0xffffu, argsz, kind == ARG_NULL ? ", argument NULL" : "",
	      ro ? ", read-only" : "", (unsigned long long)p64[0],
	      (unsigned long long)p64[1]);

	/* vfio_ioctl_device_feature() and vfio_check_feature(). */
	if (kind == ARG_NULL)
		want = EFAULT;
	else if (argsz < sizeof(*f) ||
		 (flags & ~(VFIO_DEVICE_FEATURE_MASK | G | S_ | P)))
		want = EINVAL;
	else if (!(flags & P) && (flags & S_) && (flags & G))
		want = EINVAL;
	else if (!known)
		want = ENOTTY;
	else if ((flags & (G | S_)) & ~ops)
		want = EINVAL;
	else if (flags & P)
		want = 0;
	else if (!(flags & (G | S_)))
		want = EINVAL;
	else if (argsz - sizeof(*f) < minsz)
		want = EINVAL;
	else {
		switch (fi) {
		case VFIO_DEVICE_FEATURE_MIGRATION:
		case VFIO_DEVICE_FEATURE_MIG_DATA_SIZE:
			want = ro ? EFAULT : 0;
			break;
		case VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE:
			if (flags & S_) {
				/* The model of the SET, through this ioctl. */
				struct set_outcome o = fz_set_model(F, target);
				int nfd;

				ret = ioctl(DFD(&F->s), VFIO_DEVICE_FEATURE, f) ? -errno : 0;
				nfd = ((struct vfio_device_feature_mig_state *)f->data)->data_fd;
				if (!fexpect(z, F_FEATURE, ret, o.err, "SET MIG_DEVICE_STATE")) {
					if (!ret && nfd >= 0)
						close(nfd);
					return;
				}
				fz_after_set(z, F, target, &o, ret, nfd);
				return;
			}
			want = ro ? EFAULT : 0;
			break;
		case VFIO_DEVICE_FEATURE_DMA_LOGGING_START:
			want = wcore ? wcore : F->logging ? EBUSY : wdrv ? wdrv : ro ? EFAULT : 0;
			break;
		case VFIO_DEVICE_FEATURE_DMA_LOGGING_STOP:
			want = 0;
			break;
		case VFIO_DEVICE_FEATURE_DMA_LOGGING_REPORT: {
			struct vfio_device_feature_dma_logging_report *rp = (void *)f->data;

			if (rp->page_size < 4096 || (rp->page_size & (rp->page_size - 1)))
				want = EINVAL;
			else if (rp->iova + rp->length < rp->iova)
				want = EOVERFLOW;
			else
				want = F->logging ? 0 : EINVAL;
			break;
		}
		default:
			want = 0;
			break;
		}
	}
	ret = ioctl(DFD(&F->s), VFIO_DEVICE_FEATURE, ro ? (void *)z->ro :
		    kind == ARG_NULL ? NULL : (void *)f) ? -errno : 0;
	if (!fexpect(z, F_FEATURE, ret, want, "VFIO_DEVICE_FEATURE") || ret)
		return;
	if (flags & P)
		return;
	switch (fi) {
	case VFIO_DEVICE_FEATURE_MIGRATION:
		if (p64[0] != (VFIO_MIGRATION_STOP_COPY | VFIO_MIGRATION_P2P |
			       VFIO_MIGRATION_PRE_COPY))
			ffail(z, "migration flags %#llx", (unsigned long long)p64[0]);
		break;
	case VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE:
		if ((uint32_t)p64[0] != F->v2)
			ffail(z, "GET MIG_DEVICE_STATE %u, the model has %s",
			      (uint32_t)p64[0], mig_state_name(F->v2));
		break;
	case VFIO_DEVICE_FEATURE_MIG_DATA_SIZE:
		/*
		 * In STOP_COPY, what is left: less than a device record
		 * once that is being read, 0 at the end of the stream.
		 */
		if ((p64[0] < REC_DEV_LEN(0) && !F->save_stopped) ||
		    p64[0] > 2 * mig_mblit_stream_len(F->s.npages) + REC_DEV_LEN(0) +
			     REC_PAGES_LEN(256))
			ffail(z, "MIG_DATA_SIZE %llu", (unsigned long long)p64[0]);
		break;
	case VFIO_DEVICE_FEATURE_DMA_LOGGING_START:
		F->logging = true;
		break;
	case VFIO_DEVICE_FEATURE_DMA_LOGGING_STOP:
		F->logging = false;
		break;
	}
}

static void fz_dma_log(struct fuzz *z, struct fdev *F)
{
	static struct vfio_device_feature_dma_logging_range rg[MB_PAGE / 16 + 2];
	struct rng *r = &z->r;
	uint64_t page_size, bm[MB_BUF_SIZE / MB_PAGE / 64];
	unsigned int k = below(r, 10);
	int wcore, wdrv, bad, want;
	uint32_t n;
	long ret;

	if (k < 4) {
		bad = pct(r, 30) ? between(r, 1, 7) : 0;
		n = fz_log_ranges(z, rg, bad, &page_size, &wcore, &wdrv);
		fcall(z, F, "DMA_LOGGING_START %u ranges page size %#llx (case %d)",
		      n, (unsigned long long)page_size, bad);
		ret = dl_start(&F->s.d, rg, n, page_size);
		want = wcore ? wcore : F->logging ? EBUSY : wdrv;
		if (fexpect(z, F_DMA_LOG, ret, want, "DMA_LOGGING_START") && !ret)
			F->logging = true;
	} else if (k < 8) {
		fcall(z, F, "DMA_LOGGING_REPORT of the guest buffer");
		ret = dl_report(&F->s.d, MB_IOVA, MB_BUF_SIZE, MB_PAGE, bm);
		fexpect(z, F_DMA_LOG, ret, F->logging ? 0 : EINVAL,
			"DMA_LOGGING_REPORT");
	} else {
		fcall(z, F, "DMA_LOGGING_STOP");
		ret = dl_stop(&F->s.d);
		if (fexpect(z, F_DMA_LOG, ret, 0, "DMA_LOGGING_STOP"))
			F->logging = false;
	}
}

/* ---- migration v2 ------------------------------------------------------------- */

static void fz_data_write(struct fuzz *z, struct fdev *F);
static void fz_sizes_exact(struct fuzz *z, struct fdev *F, uint64_t pending);

static void fz_mig_set(struct fuzz *z, struct fdev *F)
{
	static const uint32_t t[] = {
		VFIO_DEVICE_STATE_RUNNING, VFIO_DEVICE_STATE_RUNNING,
		VFIO_DEVICE_STATE_STOP, VFIO_DEVICE_STATE_STOP_COPY,
		VFIO_DEVICE_STATE_STOP_COPY, VFIO_DEVICE_STATE_RESUMING,
		VFIO_DEVICE_STATE_RESUMING, VFIO_DEVICE_STATE_PRE_COPY,
		VFIO_DEVICE_STATE_PRE_COPY, VFIO_DEVICE_STATE_PRE_COPY_P2P,
		VFIO_DEVICE_STATE_RUNNING_P2P, VFIO_DEVICE_STATE_ERROR,
	};
	static const uint32_t bad_target[] = { 8, 9, 0x100, UINT32_MAX };
	struct rng *r = &z->r;
	uint32_t target = pct(r, 4) ? bad_target[below(r, ARRAY_SIZE(bad_target))] :
			  t[below(r, ARRAY_SIZE(t))];

	/* Mostly finish what is going on: a resume fed completely. */
	if (F->v2 == VFIO_DEVICE_STATE_RESUMING && F->stream && !F->rs_bad &&
	    F->dfd >= 0) {
		if (F->fed == F->stream->len && pct(r, 70)) {
			target = VFIO_DEVICE_STATE_STOP;
		} else if (F->fed < F->stream->len && pct(r, 70)) {
			fz_data_write(z, F);
			return;
		}
	}
	fcall(z, F, "SET %s (%u)", mig_state_name(target), target);
	fz_do_set(z, F_MIG_SET, F, target);
}

/* The framing of what was read so far (complete: the stream ended). */
static void fz_rec_check(struct fuzz *z, struct fdev *F, bool complete)
{
	struct sdev *s = &F->s;
	char msg[200];
	long end;

	end = stream_check(F->rec.p, F->rec.len, F->rec_ok, s->d.mem / MB_MIB,
			   s->d.mem, complete, &F->rec_ndev, msg, sizeof(msg));
	if (end < 0) {
		ffail(z, "the save stream (%zu bytes read) is malformed: %s",
		      F->rec.len, msg);
		return;
	}
	F->rec_ok = end;
	if (!complete || !F->sc_vram)	/* taken at the first end already */
		return;
	/* A whole stream: the source of later RESUMING runs. */
	z->n_streams++;
	blob_put(F->stream);
	free(F->stream_vram);
	F->stream = blob_new(F->rec.p, F->rec.len);
	F->stream_vram = F->sc_vram;
	F->sc_vram = NULL;
}

/* An ended data_fd (or the current one), for reads and writes. */
static int fz_pick_fd(struct fuzz *z, struct fdev *F, int *kind, bool *stale)
{
	struct sdev *s = &F->s;
	int i;

	if (F->dfd >= 0 && (!s->nstale || pct(&z->r, 80))) {
		*kind = F->dkind;
		*stale = false;
		return F->dfd;
	}
	if (!s->nstale)
		return -1;
	i = below(&z->r, s->nstale);
	*kind = s->stale_kind[i];
	*stale = true;
	return s->stale_fd[i];
}

static void fz_data_read(struct fuzz *z, struct fdev *F)
{
	static const size_t sizes[] = { 1, 3, 31, 4096, 4104, 4099, 65536,
					1050660, MB_MIB };
	struct rng *r = &z->r;
	size_t len = sizes[below(r, 9)], k, lim;
	int kind, fkind, fd;
	bool stale;
	uint8_t *buf;
	ssize_t n;
	long ret;

	fd = fz_pick_fd(z, F, &kind, &stale);
	if (fd < 0)
		return;
	if (fd == F->dfd && F->dkind == FD_SAVE && F->save_stopped &&
	    !F->expect_eof && pct(r, 10)) {
		fz_sizes_exact(z, F, 0);
		return;
	}
	fkind = pct(r, 12) ? BUF_FAULT : BUF_GOOD;
	k = fkind == BUF_FAULT ? below(r, len < 3 * 4104 ? len : 3 * 4104) : 0;
	buf = fz_buf(z, fkind, len, k);
	lim = fkind == BUF_FAULT ? k : len;
	fcall(z, F, "read %zu bytes from %s %s data_fd, buffer %s %zu", len,
	      stale ? "an ended" : "the current", kind == FD_SAVE ? "save" : "resume",
	      fkind == BUF_FAULT ? "faulting at" : "good", k);
	n = read(fd, buf, len);
	ret = n < 0 ? -errno : n;
	if (kind == FD_RESUME) {
		fexpect(z, F_DATA_READ, ret, EBADF, "read of a resume data_fd");
		return;
	}
	if (stale) {
		fexpect(z, F_DATA_READ, ret, ENODEV, "read of an ended data_fd");
		return;
	}
	if (F->save_stopped) {
		if (F->expect_eof) {
			if (!fexpect(z, F_DATA_READ, ret, 0, "read after a short read") ||
			    ret)
				ffail(z, "STOP_COPY: a read returned less than it could, yet %ld bytes followed",
				      ret);
		} else if (!fexpect_any(z, F_DATA_READ, ret,
					lim ? E(SUCCESS) : E(SUCCESS, EFAULT),
					"STOP_COPY read")) {
			return;
		}
	} else if (!fexpect_any(z, F_DATA_READ, ret,
				lim ? E(SUCCESS, ENOMSG) : E(ENOMSG, EFAULT),
				"PRE_COPY read")) {
		return;
	}
	if (ret < 0)
		return;
	if ((size_t)ret > lim) {
		ffail(z, "read of %zu (%zu before the fault) returned %ld", len, lim, ret);
		return;
	}
	if (!F->save_stopped && !ret) {
		ffail(z, "end of stream (0) in pre-copy");
		return;
	}
	if (ret == 0) {
		stat_add(&z->st, F_DATA_READ, B_EOF);
		fz_rec_check(z, F, true);
		F->expect_eof = false;
		return;
	}
	if ((size_t)ret < lim) {
		stat_add(&z->st, F_DATA_READ, B_SHORT);
		if (F->save_stopped)
			F->expect_eof = true;
	}
	if (mig_buf_append(&F->rec, buf, ret))
		return;
	fz_rec_check(z, F, false);
}

static void fz_data_write(struct fuzz *z, struct fdev *F)
{
	static const char *const variant_name[] = {
		"the stream", "the stream, damaged", "bytes after the end",
		"garbage",
	};
	struct rng *r = &z->r;
	struct blob *src = F->stream;
	size_t cap = SCRATCH_PAGES * MB_PAGE, len, k, lim, rest;
	int kind, fkind, variant, want = 0;
	bool stale;
	uint8_t *buf, *data = z->buf;
	ssize_t n;
	long ret;
	int fd;

	fd = fz_pick_fd(z, F, &kind, &stale);
	if (fd < 0)
		return;
	rest = src && src->len > F->fed ? src->len - F->fed : 0;
	if (!src)
		variant = 3;
	else if (!rest)
		variant = pct(r, 20) ? 2 : 3;	/* bytes after the end */
	else
		variant = pct(r, 93) ? 0 : pct(r, 50) ? 1 : 3;
	switch (variant) {
	case 0:		/* the next bytes of the stream */
	case 1:		/* ... with one of them changed */
		len = pct(r, 50) ? between(r, 1, rest < 8192 ? rest : 8192) :
			between(r, 1, rest < cap ? rest : cap);
		memcpy(data, src->data + F->fed, len);
		if (variant == 1)
			data[below(r, len)] ^= 1 << below(r, 8);
		break;
	default:	/* garbage, or anything after the end */
		len = between(r, 1, 8192);
		rnd_fill(r, data, len);
		if (len >= 4 && pct(r, 50))
			memcpy(data, (uint32_t[]){ pct(r, 50) ? REC_PAGES_MAGIC :
						   REC_DEV_MAGIC }, 4);
		break;
	}
	fkind = pct(r, 10) ? BUF_FAULT : BUF_GOOD;
	k = fkind == BUF_FAULT ? below(r, len < cap ? len : cap) : 0;
	buf = data;
	if (fkind == BUF_FAULT) {
		memmove(z->buf + cap - k, data, k);
		buf = z->buf + cap - k;
	}
	lim = fkind == BUF_FAULT ? k : len;
	fcall(z, F, "write %zu bytes (%s) to %s %s data_fd at stream offset %zu, buffer %s %zu",
	      len, variant_name[variant],
	      stale ? "an ended" : "the current", kind == FD_SAVE ? "save" : "resume",
	      F->fed, fkind == BUF_FAULT ? "faulting at" : "good", k);
	n = write(fd, buf, len);
	ret = n < 0 ? -errno : n;
	if (kind == FD_SAVE) {
		fexpect(z, F_DATA_WRITE, ret, EBADF, "write of a save data_fd");
		return;
	}
	if (stale) {
		/* Copied in first: a fault at the first byte may come first. */
		if (!lim)
			fexpect_any(z, F_DATA_WRITE, ret, E(ENODEV, EFAULT),
				    "write of an ended data_fd");
		else
			fexpect(z, F_DATA_WRITE, ret, ENODEV, "write of an ended data_fd");
		return;
	}
	/*
	 * A stream that refuses every write refuses it before it reads the
	 * buffer (docs/migration.md §3.2): EINVAL even if the first byte
	 * faults.
	 */
	if (F->rs_bad == 2)
		want = EINVAL;		/* poisoned */
	else if (src && !rest && !F->rs_bad)
		want = EINVAL;		/* after the device record */
	else if (!lim)
		want = EFAULT;
	else if (variant == 0 && !F->rs_bad)
		want = 0;
	else
		want = -1;		/* damaged data: taken, or refused */
	if (want >= 0) {
		if (!fexpect(z, F_DATA_WRITE, ret, want, "RESUMING write"))
			return;
	} else if (!fexpect_any(z, F_DATA_WRITE, ret,
				E(SUCCESS, EINVAL, EPROTONOSUPPORT),
				"RESUMING write of damaged data")) {
		return;
	}
	if (ret == -EINVAL || ret == -EPROTONOSUPPORT) {
		F->rs_bad = 2;
		return;
	}
	if (ret < 0)
		return;
	if ((size_t)ret != lim) {
		ffail(z, "write of %zu bytes (%zu before the fault) returned %ld",
		      len, lim, ret);
		return;
	}
	if (ret < (long)len)
		stat_add(&z->st, F_DATA_WRITE, B_SHORT);
	if (variant != 0)
		F->rs_bad = 1;
	F->fed += ret;
}

/*
 * With nothing changing device memory (the engine idle, one thread),
 * what PRECOPY_INFO (@pending, pre-copy) or MIG_DATA_SIZE (STOP_COPY)
 * announced is exactly what the stream delivers up to its (temporary)
 * end: docs/migration.md §3.1.
 */
static void fz_sizes_exact(struct fuzz *z, struct fdev *F, uint64_t pending)
{
	struct sdev *s = &F->s;
	uint64_t st = 0, size = 0, got = 0;
	ssize_t n;
	long ret;

	ret = rd_reg(s, MBLIT_REG_STATUS, 4, &st);
	if (ret != 4 || (st & MBLIT_STATUS_BUSY))
		return;		/* the engine may write device memory */
	if (F->save_stopped) {
		/*
		 * Anywhere in the stream, the device record half read or
		 * read out included: what is left (it once counted the
		 * device record again after it had been queued).
		 */
		ret = mig_data_size(DFD(s), &size);
		if (!fexpect(z, F_PRECOPY, ret, 0, "MIG_DATA_SIZE"))
			return;
		pending = size;
	}
	fcall(z, F, "read the %s to its end: %llu bytes announced",
	      F->save_stopped ? "STOP_COPY stream (MIG_DATA_SIZE)" :
			       "pre-copy stream (PRECOPY_INFO)",
	      (unsigned long long)pending);
	for (;;) {
		n = read(F->dfd, z->buf, MB_MIB);
		if (n <= 0)
			break;
		got += n;
		if (mig_buf_append(&F->rec, z->buf, n))
			return;
	}
	ret = n < 0 ? -errno : 0;
	if (!fexpect(z, F_PRECOPY, ret, F->save_stopped ? 0 : ENOMSG,
		     "reading to the end of the stream"))
		return;
	fz_rec_check(z, F, F->save_stopped);
	if (got != pending)
		ffail(z, "%llu bytes announced, %llu read", (unsigned long long)pending,
		      (unsigned long long)got);
}

static void fz_precopy(struct fuzz *z, struct fdev *F)
{
	static const uint32_t bad_argsz[] = { 0, 23, 4096, UINT32_MAX };
	struct vfio_precopy_info in = { .argsz = sizeof(in) }, *out;
	uint64_t bound = mig_mblit_stream_len(F->s.npages) + REC_PAGES_LEN(256);
	int kind, akind = fz_argkind(z), want, fd;
	bool stale;
	long ret;

	fd = fz_pick_fd(z, F, &kind, &stale);
	if (fd < 0)
		return;
	if (akind == ARG_STRADDLE)
		akind = ARG_GOOD;
	if (pct(&z->r, 10))
		in.argsz = bad_argsz[below(&z->r, ARRAY_SIZE(bad_argsz))];
	in.flags = rnd(&z->r);
	out = fz_arg(z, akind, &in, sizeof(in), 0);
	fcall(z, F, "PRECOPY_INFO argsz %u on %s %s data_fd, argument %s",
	      in.argsz, stale ? "an ended" : "the current",
	      kind == FD_SAVE ? "save" : "resume",
	      arg_kind_name[akind]);
	ret = ioctl(fd, VFIO_MIG_GET_PRECOPY_INFO, out) ? -errno : 0;
	if (kind == FD_RESUME)
		want = ENOTTY;
	else if (akind == ARG_NULL)
		want = EFAULT;
	else if (in.argsz < 24)
		want = EINVAL;
	else if (stale || F->save_stopped)
		want = EINVAL;		/* only in PRE_COPY(_P2P) */
	else
		want = akind == ARG_RO ? EFAULT : 0;
	if (!fexpect(z, F_PRECOPY, ret, want, "PRECOPY_INFO") || ret)
		return;
	if (out->flags || out->initial_bytes > bound || out->dirty_bytes > bound)
		ffail(z, "PRECOPY_INFO: flags %#x initial %llu dirty %llu (bound %llu)",
		      out->flags, (unsigned long long)out->initial_bytes,
		      (unsigned long long)out->dirty_bytes,
		      (unsigned long long)bound);
	else if (fd == F->dfd && pct(&z->r, 40))
		fz_sizes_exact(z, F, out->initial_bytes + out->dirty_bytes);
}

static void fz_dfd_misc(struct fuzz *z, struct fdev *F)
{
	static const char *const what_name[] = {
		"pread", "pwrite", "lseek", "an unknown ioctl", "poll",
	};
	struct rng *r = &z->r;
	uint8_t b[16] = { 0 };
	int kind, fd, what = below(r, 5);
	bool stale;
	long ret;

	fd = fz_pick_fd(z, F, &kind, &stale);
	if (fd < 0)
		return;
	fcall(z, F, "%s on %s %s data_fd",
	      what_name[what],
	      stale ? "an ended" : "the current", kind == FD_SAVE ? "save" : "resume");
	switch (what) {
	case 0:
		ret = pread(fd, b, sizeof(b), below(r, 1 << 20)) < 0 ? -errno : 0;
		fexpect(z, F_DFD_MISC, ret, ESPIPE, "pread of a data_fd");
		break;
	case 1:
		ret = pwrite(fd, b, sizeof(b), below(r, 1 << 20)) < 0 ? -errno : 0;
		fexpect(z, F_DFD_MISC, ret, ESPIPE, "pwrite of a data_fd");
		break;
	case 2:
		ret = lseek(fd, below(r, 1 << 20), SEEK_SET) < 0 ? -errno : 0;
		fexpect(z, F_DFD_MISC, ret, ESPIPE, "lseek of a data_fd");
		break;
	case 3:
		ret = ioctl(fd, _IOWR(';', 100 + below(r, 50), uint64_t), b) ? -errno : 0;
		fexpect(z, F_DFD_MISC, ret, ENOTTY, "unknown ioctl on a data_fd");
		break;
	default:
		ret = mig_poll(fd, POLLIN | POLLOUT, 0);
		stat_add(&z->st, F_DFD_MISC, ret < 0 ? bucket_of_errno(-ret) : B_OK);
		if (!stale && ret >= 0 &&
		    !(ret & (kind == FD_SAVE ? POLLIN : POLLOUT)))
			ffail(z, "poll of a live %s data_fd: %#lx",
			      kind == FD_SAVE ? "save" : "resume", ret);
		break;
	}
}

/* Ioctls nobody implements: ENOTTY (no generic VFS ones). */
static void fz_ioctl(struct fuzz *z, struct fdev *F)
{
	static const uint32_t vfio_unused[] = { 12, 13, 14, 15, 16, 21, 22, 23,
						 24, 25, 30, 40, 63, 100, 255 };
	struct rng *r = &z->r;
	uint8_t arg[256] = { 0 };
	uint32_t cmd, type;
	long ret;

	if (pct(r, 50)) {
		cmd = _IO(VFIO_TYPE, VFIO_BASE + vfio_unused[below(r, 15)]);
		if (pct(r, 30))
			cmd = _IOC(below(r, 3) + 1, VFIO_TYPE, VFIO_BASE + below(r, 24),
				   between(r, 1, 255));
	} else {
		do {
			type = below(r, 256);
		} while (type == 0 || type == 'T' || type == 'X' || type == 'f' ||
			 type == 0x94 || type == 0x15 || type == VFIO_TYPE);
		cmd = _IOC(below(r, 4), type, below(r, 256), below(r, 256));
	}
	fcall(z, F, "ioctl %#x", cmd);
	ret = ioctl(DFD(&F->s), cmd, arg) ? -errno : 0;
	fexpect(z, F_IOCTL, ret, ENOTTY, "unknown ioctl");
}

/* ---- the engine and the mappings ------------------------------------------------ */

static void fz_doorbell(struct fuzz *z, struct fdev *F)
{
	struct sdev *s = &F->s;
	struct rng *r = &z->r;
	struct mblit_desc x;
	uint64_t tail = 0, iova = MB_IOVA;
	uint32_t size = 1u << below(r, 8), n, i;
	int want = writable(F) ? 0 : EBUSY;
	uint8_t *va = s->d.buf;
	long ret;

	if (pct(r, 30)) {
		iova = XRING_IOVA;
		va = s->xring;
	}
	fcall(z, F, "program a ring of %u at %#llx, submit", size,
	      (unsigned long long)iova);
	ret = wr_reg(s, MBLIT_REG_CTRL, 4, MBLIT_CTRL_RESET);
	if (!fexpect(z, F_DOORBELL, ret, want, "CTRL.RESET") || ret < 0)
		return;
	memset(F->scratch, 0, sizeof(F->scratch));
	F->scratch_known = true;
	ret = wr_reg(s, MBLIT_REG_RING_BASE, 8, iova);
	if (!fexpect(z, F_DOORBELL, ret, 0, "RING_BASE"))
		return;
	ret = wr_reg(s, MBLIT_REG_RING_SIZE, 4, size);
	if (!fexpect(z, F_DOORBELL, ret, 0, "RING_SIZE"))
		return;
	ret = wr_reg(s, MBLIT_REG_CTRL, 4, MBLIT_CTRL_ENABLE);
	if (!fexpect(z, F_DOORBELL, ret, 0, "CTRL.ENABLE"))
		return;
	n = 1 + below(r, size < 8 ? size : 8);
	for (i = 0; i < n; i++) {
		x = pct(r, 85) ? valid_desc(r, s->d.mem) : bad_desc(r, s->d.mem);
		memcpy(va + (uint64_t)(i % size) * MBLIT_DESC_SIZE, &x,
		       MBLIT_DESC_SIZE);
	}
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	tail = n;
	ret = wr_reg(s, MBLIT_REG_RING_TAIL, 4, tail);
	fexpect(z, F_DOORBELL, ret, 0, "RING_TAIL");
}

static void fz_map(struct fuzz *z, struct fdev *F)
{
	struct sdev *s = &F->s;
	struct rng *r = &z->r;
	unsigned int bit = pct(r, 30) ? 0 : pct(r, 25) ? XRING_BIT :
			   between(r, 1, NCHUNK - 1);
	uint64_t iova, len, done = 0;
	bool type1 = s->d.v.backend == VFIO_BACKEND_TYPE1;
	uint8_t *va;
	long ret;

	map_range(s, bit, &va, &iova, &len);
	if (pct(r, 12)) {
		fcall(z, F, "unmap never-mapped [%#llx, +1 MiB)",
		      (unsigned long long)MB_UNMAPPED_IOVA);
		ret = s_unmap(s, MB_UNMAPPED_IOVA, MB_MIB, &done);
		if (fexpect(z, F_MAP, ret, type1 ? 0 : ENOENT, "unmapping nothing") &&
		    !ret && done)
			ffail(z, "unmapping nothing unmapped %#llx bytes",
			      (unsigned long long)done);
	} else if (s->mapped & (1u << bit)) {
		if (pct(r, 15)) {
			fcall(z, F, "map [%#llx, +%#llx) again", (unsigned long long)iova,
			      (unsigned long long)len);
			ret = s_map(s, va, iova, len);
			fexpect_any(z, F_MAP, ret, E(EEXIST, EINVAL), "mapping a mapped range");
			return;
		}
		fcall(z, F, "unmap [%#llx, +%#llx)", (unsigned long long)iova,
		      (unsigned long long)len);
		ret = s_unmap(s, iova, len, &done);
		if (fexpect(z, F_MAP, ret, 0, "dma unmap")) {
			if (done != len)
				ffail(z, "unmapped %#llx of %#llx bytes",
				      (unsigned long long)done, (unsigned long long)len);
			s->mapped &= ~(1u << bit);
		}
	} else {
		fcall(z, F, "map [%#llx, +%#llx)", (unsigned long long)iova,
		      (unsigned long long)len);
		ret = s_map(s, va, iova, len);
		if (fexpect(z, F_MAP, ret, 0, "dma map"))
			s->mapped |= 1u << bit;
	}
}

/* ---- close and reopen ---------------------------------------------------------- */

static void fz_reopen(struct fuzz *z, struct fdev *F)
{
	struct sdev *s = &F->s;
	enum vfio_backend be = pct(&z->r, 50) ? VFIO_BACKEND_TYPE1 :
						VFIO_BACKEND_IOMMUFD;
	uint8_t img[MBLIT_CONFIG_SIZE], got[MBLIT_CONFIG_SIZE];
	char err[256];
	uint64_t v;
	unsigned int i;
	long ret;

	fcall(z, F, "close, reopen through %s", vfio_backend_name(be));
	vfio_mdev_close(&s->d.v);
	s->open = false;
	fz_model_reset(F, true);
	ret = sdev_open(s, be, err, sizeof(err));
	if (!fexpect(z, F_REOPEN, ret, 0, err))
		return;
	F->cfg[PCI_COMMAND] |= PCI_COMMAND_MASTER;	/* sdev_open() sets it */
	cfg_reset_image(img, s->d.mem / MB_MIB);
	img[PCI_COMMAND] |= PCI_COMMAND_MASTER;
	ret = racc(s, &s->d.cfg, false, 0, got, sizeof(got));
	if (!fexpect(z, F_REOPEN, ret, 0, "config read"))
		return;
	for (i = 0; i < MBLIT_CONFIG_SIZE; i++)
		if ((got[i] ^ img[i]) & ~cfg_volatile(i)) {
			ffail(z, "reopened: config byte %#x is %#x, reset value %#x",
			      i, got[i], img[i]);
			return;
		}
	for (i = 0; i < NREGS; i++) {
		const struct reg *g = &regmap[i];
		uint64_t want = g->off == MBLIT_REG_ID ? MBLIT_ID_MAGIC :
				g->off == MBLIT_REG_VERSION ? MBLIT_DEVICE_VERSION : 0;

		ret = rd_reg(s, g->off, g->widths == W4 ? 4 : 8, &v);
		if (ret < 0 || v != want) {
			ffail(z, "reopened: %s reads %#llx (%s), reset value %#llx",
			      g->name, (unsigned long long)v, err_str(ret),
			      (unsigned long long)want);
			return;
		}
	}
	if (mig_get(DFD(s)) != VFIO_DEVICE_STATE_RUNNING ||
	    mb_runctl_get(&s->d, &s->sr) != RUNNING)
		ffail(z, "reopened: v2 %d, run-control %d", mig_get(DFD(s)),
		      mb_runctl_get(&s->d, &s->sr));
}

/* ---- the fuzzer's devices -------------------------------------------------------- */

/* After verify_device(): the device is at reset with bus master on. */
static void fz_settle(struct fuzz *z, struct fdev *F, const char *what)
{
	struct __test_metadata *_metadata = z->md;

	fz_end_stream(F);
	sdev_close_fds(&F->s);
	verify_device(_metadata, &F->s, &z->r, what);
	fz_model_reset(F, true);
	F->cfg[PCI_COMMAND] |= PCI_COMMAND_MASTER;
}

/* A whole stream of the device (STOP_COPY to its end), for RESUMING. */
static void fz_seed(struct fuzz *z, struct fdev *F)
{
	struct sdev *s = &F->s;
	uint8_t *page = z->buf;
	unsigned int i;
	ssize_t n;
	long ret;

	for (i = 0; i < 12; i++) {
		rnd_fill(&z->r, page, MB_PAGE);
		fcall(z, F, "seed: write page %u", i);
		ret = racc(s, &s->d.bar2, true, below(&z->r, s->npages) * MB_PAGE,
			   page, MB_PAGE);
		fexpect(z, F_BAR2, ret, 0, "BAR2 write");
	}
	fcall(z, F, "seed: SET STOP_COPY");
	fz_do_set(z, F_MIG_SET, F, VFIO_DEVICE_STATE_STOP_COPY);
	while (!z->failed && F->dfd >= 0 && F->save_stopped) {
		fcall(z, F, "seed: read the stream");
		n = read(F->dfd, z->buf, MB_MIB);
		if (n < 0) {
			ffail(z, "reading the STOP_COPY stream: %s", strerror(errno));
			break;
		}
		if (!n) {
			fz_rec_check(z, F, true);
			break;
		}
		mig_buf_append(&F->rec, z->buf, n);
	}
	fcall(z, F, "seed: SET RUNNING");
	fz_do_set(z, F_MIG_SET, F, VFIO_DEVICE_STATE_RUNNING);
	if (!z->failed && !F->stream)
		ffail(z, "no complete stream from STOP_COPY");
}

static void (*const fop_fn[NFOPS])(struct fuzz *z, struct fdev *F) = {
	[F_BAR0] = fz_bar0,
	[F_BAR2] = fz_bar2,
	[F_CFG] = fz_cfg,
	[F_STATE] = fz_state,
	[F_STATE_RESTORE] = fz_state_restore,
	[F_BADOFF] = fz_badoff,
	[F_GET_INFO] = fz_get_info,
	[F_REGION_INFO] = fz_region_info,
	[F_IRQ_INFO] = fz_irq_info,
	[F_SET_IRQS] = fz_set_irqs,
	[F_RESET] = fz_reset,
	[F_FEATURE] = fz_feature,
	[F_MIG_SET] = fz_mig_set,
	[F_DATA_READ] = fz_data_read,
	[F_DATA_WRITE] = fz_data_write,
	[F_PRECOPY] = fz_precopy,
	[F_DFD_MISC] = fz_dfd_misc,
	[F_IOCTL] = fz_ioctl,
	[F_DOORBELL] = fz_doorbell,
	[F_MAP] = fz_map,
	[F_DMA_LOG] = fz_dma_log,
	[F_REOPEN] = fz_reopen,
};

FIXTURE(uapi_fuzz) {
	struct fuzz *z;
};

FIXTURE_SETUP(uapi_fuzz)
{
	self->z = NULL;
}

FIXTURE_TEARDOWN(uapi_fuzz)
{
	struct fuzz *z = self->z;
	int i;

	if (_metadata->exit_code != KSFT_PASS)
		print_replay();
	if (!z)
		return;
	for (i = 0; i < NFDEV; i++) {
		fz_end_stream(&z->f[i]);
		if (z->f[i].s.type)
			sdev_destroy(&z->f[i].s);
	}
}

TEST_F_TIMEOUT(uapi_fuzz, random_sequences, FUZZ_SECS_DEFAULT + TIMEOUT_MARGIN)
{
	static const char *const types[NFDEV] = { "mblit-1m", "mblit-16m" };
	static const enum vfio_backend bes[NFDEV] = { VFIO_BACKEND_TYPE1,
						       VFIO_BACKEND_IOMMUFD };
	struct fuzz *z;
	uint64_t deadline, t0, checks = 0;
	unsigned int op, i;
	char err[256], what[96];

	run_params(_metadata, "MBLIT_FUZZ_SECS", FUZZ_SECS_DEFAULT);
	mallopt(M_MMAP_THRESHOLD, 256 * 1024);
	crc32_init();
	ASSERT_TRUE(module_loaded("mblit")) TH_LOG("mblit is not loaded");
	z = calloc(1, sizeof(*z));
	ASSERT_NE(NULL, z);
	self->z = z;
	z->md = _metadata;
	rng_init(&z->r, g_seed, 2000);
	z->st.names = fop_name;
	z->st.nops = NFOPS;
	z->buf = mmap(NULL, (SCRATCH_PAGES + 1) * MB_PAGE, PROT_READ | PROT_WRITE,
		      MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	ASSERT_NE(MAP_FAILED, z->buf);
	ASSERT_EQ(0, mprotect(z->buf + SCRATCH_PAGES * MB_PAGE, MB_PAGE, PROT_NONE));
	z->ro = mmap(NULL, MB_PAGE, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	ASSERT_NE(MAP_FAILED, z->ro);
	z->null_fd = open("/dev/null", O_RDWR | O_CLOEXEC);
	ASSERT_LE(0, z->null_fd);

	for (i = 0; i < NFDEV; i++) {
		struct fdev *F = &z->f[i];
		struct sdev *s = &F->s;

		sdev_init(s, i ? "F2" : "F1", types[i]);
		s->d.rng = rnd(&z->r) | 1;
		F->dfd = -1;
		F->intx_efd = F->msi_efd = -1;
		ASSERT_EQ(0, sdev_create(s)) TH_LOG("create %s: %s", types[i],
						    mdev_lib_error());
		ASSERT_EQ(0, sdev_alloc(s, &z->r, i ? 16 * MB_MIB : MB_MIB));
		ASSERT_EQ(0, sdev_open(s, bes[i], err, sizeof(err)))
			TH_LOG("%s: %s", s->name, err);
		fz_model_reset(F, true);
		F->cfg[PCI_COMMAND] |= PCI_COMMAND_MASTER;
		cfg_write_mask(F->wmask, s->d.mem);
		fz_seed(z, F);
		ASSERT_FALSE(z->failed);
	}

	t0 = mb_now_ms();
	deadline = t0 + g_secs * 1000ULL;
	while (!z->failed && mb_now_ms() < deadline) {
		struct fdev *F = &z->f[below(&z->r, NFDEV)];

		z->ncall++;
		snprintf(z->hist[z->ncall % HIST], sizeof(z->hist[0]),
			 "#%llu: nothing to do", (unsigned long long)z->ncall);
		op = pick(&z->r, fop_weight, NFOPS);
		/* A migration under way goes on more often than chance says. */
		if (F->dfd >= 0 && pct(&z->r, 25))
			op = F->dkind == FD_SAVE ? F_DATA_READ :
			     F->stream && F->fed == F->stream->len && !F->rs_bad ?
			     F_MIG_SET : F_DATA_WRITE;
		z->st.ops[op]++;
		fop_fn[op](z, F);
		if (!z->failed && !(z->ncall % FUZZ_CHECK_EVERY)) {
			for (i = 0; i < NFDEV; i++) {
				snprintf(what, sizeof(what), "%s after call %llu",
					 z->f[i].s.name, (unsigned long long)z->ncall);
				fz_settle(z, &z->f[i], what);
			}
			checks++;
		}
	}
	TH_LOG("%llu calls in %llu ms, %llu consistency checks",
	       (unsigned long long)z->ncall,
	       (unsigned long long)(mb_now_ms() - t0), (unsigned long long)checks);
	stats_print(&z->st, "fuzz");
	ksft_print_msg("fuzz: %llu whole save streams checked, %llu streams resumed byte-exact, %llu damaged or short streams refused, %llu snapshots checked, %llu restored\n",
		       (unsigned long long)z->n_streams,
		       (unsigned long long)z->n_resumed,
		       (unsigned long long)z->n_refused,
		       (unsigned long long)z->n_snapshots,
		       (unsigned long long)z->n_restored);
	ASSERT_FALSE(z->failed) TH_LOG("see FAIL above");
	for (i = 0; i < NFDEV; i++) {
		snprintf(what, sizeof(what), "%s at the end", z->f[i].s.name);
		fz_settle(z, &z->f[i], what);
	}
}

/* The harness's timeouts follow the durations asked for. */
static void __attribute__((constructor(KSELFTEST_PRIO_TEST + 10)))
set_timeouts(void)
{
	_stress_concurrent_surface_object->timeout =
		env_u64("MBLIT_STRESS_SECS", STRESS_SECS_DEFAULT, NULL) + TIMEOUT_MARGIN;
	_uapi_fuzz_random_sequences_object->timeout =
		env_u64("MBLIT_FUZZ_SECS", FUZZ_SECS_DEFAULT, NULL) + TIMEOUT_MARGIN;
}

TEST_HARNESS_MAIN
