// SPDX-License-Identifier: GPL-2.0
/*
 * Streams from older builds resume on this one (docs/migration.md §1.8,
 * §1.9; issue 15 item 1).
 *
 * selftests/golden/v<N>/ holds, for each format version N a released build
 * wrote, device states saved by that build ("make golden") and never
 * regenerated: <type>.stream (a v2 STOP_COPY stream), <type>.region (the
 * DEVICE_STATE region's state) and <type>.expect, what the device reported
 * when it was saved (lib/mblit_golden.h).  Each test here takes every
 * fixture of every version and resumes it into a fresh mdev of its type,
 * then checks every register, the config space, the error counter and
 * every page of device memory against the description, and that the
 * device goes on with the same ring.  A stream of a version newer than the
 * build's is refused with EPROTONOSUPPORT and a kernel log line naming
 * both versions.
 */
#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kselftest_harness.h"
#include "mblit_dev.h"
#include "mblit_golden.h"
#include "mblit_state_fmt.h"
#include "mig_v2.h"

#define MAX_CASES	32

struct golden_case {
	char name[PATH_MAX];		/* v<N>/<type> */
	struct mb_golden g;
	uint8_t *stream, *region;
	size_t stream_len, region_len;
};

static uint8_t *slurp(const char *path, size_t *len)
{
	struct stat st;
	uint8_t *p;
	int fd = open(path, O_RDONLY);

	if (fd < 0)
		return NULL;
	if (fstat(fd, &st) || st.st_size <= 0) {
		close(fd);
		return NULL;
	}
	p = malloc(st.st_size);
	if (p && read(fd, p, st.st_size) != st.st_size) {
		free(p);
		p = NULL;
	}
	close(fd);
	*len = st.st_size;
	return p;
}

/* The golden directory: next to this binary. */
static void golden_dir(char *buf, size_t len)
{
	char exe[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	char *slash;

	if (n <= 0) {
		snprintf(buf, len, "golden");
		return;
	}
	exe[n] = '\0';
	slash = strrchr(exe, '/');
	if (slash)
		*slash = '\0';
	if (snprintf(buf, len, "%s/golden", exe) >= (int)len)
		snprintf(buf, len, "golden");
}

/* Every fixture of every version; fails the test if there is none. */
static int load_cases(struct __test_metadata *_metadata,
		      struct golden_case *c, int max)
{
	char dir[PATH_MAX], vdir[PATH_MAX * 2], path[PATH_MAX * 4], err[256];
	struct dirent *v, *f;
	DIR *top, *sub;
	size_t l;
	int n = 0;

	golden_dir(dir, sizeof(dir));
	top = opendir(dir);
	ASSERT_NE(NULL, top) TH_LOG("%s: %s", dir, strerror(errno));
	while ((v = readdir(top))) {
		if (v->d_name[0] != 'v')
			continue;
		ASSERT_GT(sizeof(vdir), (size_t)snprintf(vdir, sizeof(vdir),
							 "%s/%s", dir,
							 v->d_name));
		sub = opendir(vdir);
		ASSERT_NE(NULL, sub) TH_LOG("%s: %s", vdir, strerror(errno));
		while ((f = readdir(sub))) {
			l = strlen(f->d_name);
			if (l < 8 || strcmp(f->d_name + l - 7, ".expect"))
				continue;
			ASSERT_GT(max, n);
			memset(&c[n], 0, sizeof(c[n]));
			snprintf(c[n].name, sizeof(c[n].name), "%s/%.*s",
				 v->d_name, (int)(l - 7), f->d_name);
			snprintf(path, sizeof(path), "%s/%s", vdir, f->d_name);
			ASSERT_EQ(0, mb_golden_load(path, &c[n].g, err,
						    sizeof(err)))
				TH_LOG("%s", err);
			snprintf(path, sizeof(path), "%s/%.*s.stream", vdir,
				 (int)(l - 7), f->d_name);
			c[n].stream = slurp(path, &c[n].stream_len);
			ASSERT_NE(NULL, c[n].stream) TH_LOG("%s", path);
			snprintf(path, sizeof(path), "%s/%.*s.region", vdir,
				 (int)(l - 7), f->d_name);
			c[n].region = slurp(path, &c[n].region_len);
			ASSERT_NE(NULL, c[n].region) TH_LOG("%s", path);
			n++;
		}
		closedir(sub);
	}
	closedir(top);
	ASSERT_LT(0, n) TH_LOG("no golden fixtures in %s", dir);
	return n;
}

static void free_cases(struct golden_case *c, int n)
{
	while (n--) {
		free(c[n].stream);
		free(c[n].region);
	}
}

/* Every register, the config space, the error counter and every page. */
static void check_state(struct __test_metadata *_metadata, struct mb_dev *d,
			const struct golden_case *c, const char *how)
{
	uint8_t cfg[MB_GOLDEN_CONFIG], want[MB_GOLDEN_PAGE];
	uint8_t *got = malloc(MB_MIB);
	uint64_t off, i, n, bad = 0;
	unsigned int r;

	ASSERT_NE(NULL, got);
	ASSERT_EQ(c->g.vram_size, d->mem) TH_LOG("%s", c->name);
	for (r = 0; r < MB_GOLDEN_NREGS; r++) {
		const struct mb_reg *gr = &mb_regs[r];

		EXPECT_EQ(c->g.regs[r], mb_rd(_metadata, d, gr->off, gr->w))
			TH_LOG("%s through %s: register at %#x (%s)", c->name,
			       how, gr->off, gr->name ? gr->name : "?");
	}
	MB_ACC_OK(d, &d->cfg, false, 0, cfg, sizeof(cfg));
	for (r = 0; r < MB_GOLDEN_CONFIG; r++)
		EXPECT_EQ(c->g.config[r], cfg[r])
			TH_LOG("%s through %s: config byte %#x", c->name, how, r);
	EXPECT_EQ(c->g.errors, mb_debugfs(_metadata, d, "errors"))
		TH_LOG("%s through %s: error counter", c->name, how);
	for (off = 0; off < d->mem; off += n) {
		n = d->mem - off < MB_MIB ? d->mem - off : MB_MIB;
		mb_bar2_rd(_metadata, d, off, got, n);
		for (i = 0; i < n; i += MB_GOLDEN_PAGE) {
			mb_golden_expected_page(&c->g, (off + i) / MB_GOLDEN_PAGE,
						want);
			if (memcmp(want, got + i, MB_GOLDEN_PAGE) && bad++ < 8)
				TH_LOG("%s through %s: page %llu differs",
				       c->name, how,
				       (unsigned long long)(off + i) / MB_GOLDEN_PAGE);
		}
	}
	free(got);
	EXPECT_EQ(0, bad) TH_LOG("%s through %s: %llu pages differ", c->name,
				 how, (unsigned long long)bad);
}

/* A register's value in the description (every one is there). */
static uint64_t golden_reg(const struct mb_golden *g, const char *name)
{
	unsigned int r;

	for (r = 0; r < MB_GOLDEN_NREGS; r++) {
		if (!strcmp(mb_regs[r].name, name))
			return g->regs[r];
	}
	abort();
}

/*
 * The resumed device goes on with its ring: the model takes device memory
 * from the description and the ring from the registers, then new work
 * runs byte-exact.
 */
static void go_on(struct __test_metadata *_metadata, struct mb_dev *d,
		  const struct golden_case *c)
{
	struct mblit_desc x[3];
	uint64_t i;

	for (i = 0; i < d->mem / MB_GOLDEN_PAGE; i++)
		mb_golden_expected_page(&c->g, i, d->md + i * MB_GOLDEN_PAGE);
	d->ring_iova = RD64(MBLIT_REG_RING_BASE);
	d->ring_size = RD32(MBLIT_REG_RING_SIZE);
	d->tail = RD32(MBLIT_REG_RING_TAIL);
	ASSERT_TRUE(RD32(MBLIT_REG_CTRL) & MBLIT_CTRL_ENABLE);
	ASSERT_LE(MB_IOVA, d->ring_iova);
	ASSERT_GE(MB_IOVA + MB_DATA_OFF,
		  d->ring_iova + d->ring_size * MBLIT_DESC_SIZE);
	d->ring_va = d->buf + (d->ring_iova - MB_IOVA);
	x[0] = mb_fill(20 * 4096, 4096, 0x600d600d, MBLIT_FLAG_DST_DEV);
	x[1] = mb_copy(MB_DATA_IOVA + 0x40000, 0, 8192, MBLIT_FLAG_SRC_DEV);
	x[2] = mb_fence(MB_DATA_IOVA + 0x50000, 0xa11600d, 0);
	mb_run(_metadata, d, x, 3);
	mb_check_dev(_metadata, d, 0, d->mem, c->name);
	mb_check_guest(_metadata, d, c->name);
	EXPECT_EQ(0xa11600d, RD64(MBLIT_REG_FENCE_LAST));
	EXPECT_EQ(golden_reg(&c->g, "CMD_COUNT") + 3, RD64(MBLIT_REG_CMD_COUNT))
		TH_LOG("%s: CMD_COUNT goes on from the saved one", c->name);
}

/* Resume @p (a v2 stream) into @d: STOP, RESUMING, write, STOP, RUNNING. */
static void resume_v2(struct __test_metadata *_metadata, struct mb_dev *d,
		      const uint8_t *p, size_t len, unsigned int *k)
{
	int fd;

	ASSERT_EQ(0, mig_set(d->v.device_fd, VFIO_DEVICE_STATE_STOP, NULL));
	ASSERT_EQ(0, mig_set(d->v.device_fd, VFIO_DEVICE_STATE_RESUMING, &fd));
	ASSERT_EQ(0, mig_write_stream(fd, p, len, k, NULL));
	ASSERT_EQ(0, mig_set(d->v.device_fd, VFIO_DEVICE_STATE_STOP, NULL));
	close(fd);
	ASSERT_EQ(0, mig_set(d->v.device_fd, VFIO_DEVICE_STATE_RUNNING, NULL));
}

/* Restore @p (a region state) into @d: STOPPED, write it, RUNNING. */
static void resume_region(struct __test_metadata *_metadata, struct mb_dev *d,
			  const struct vfio_region_info *sr, const uint8_t *p,
			  size_t len)
{
	ASSERT_EQ(0, mb_runctl_set(d, sr, MBLIT_RUNCTL_STOPPED));
	MB_ACC_OK(d, sr, true, MBLIT_STATE_AREA_OFFSET, (void *)p, len);
	ASSERT_EQ(0, mb_runctl_set(d, sr, MBLIT_RUNCTL_RUNNING));
}

/* No shared state: the fixture only names the tests golden.*. */
FIXTURE(golden) {
	int unused;
};

FIXTURE_SETUP(golden)
{
	self->unused = 0;
}

FIXTURE_TEARDOWN(golden)
{
}

TEST_F_TIMEOUT(golden, v2_streams_of_every_version_resume, 300)
{
	static struct golden_case c[MAX_CASES];
	int n = load_cases(_metadata, c, MAX_CASES), i;
	struct mb_dev dev, *d = &dev;
	unsigned int k = 0;

	for (i = 0; i < n; i++) {
		TH_LOG("%s: %zu-byte stream", c[i].name, c[i].stream_len);
		mb_init(d);
		mb_open(_metadata, d, c[i].g.type, VFIO_BACKEND_TYPE1);
		resume_v2(_metadata, d, c[i].stream, c[i].stream_len, &k);
		check_state(_metadata, d, &c[i], "data_fd");
		go_on(_metadata, d, &c[i]);
		mb_close(_metadata, d);
	}
	free_cases(c, n);
}

TEST_F_TIMEOUT(golden, region_states_of_every_version_resume, 300)
{
	static struct golden_case c[MAX_CASES];
	int n = load_cases(_metadata, c, MAX_CASES), i;
	struct mb_dev dev, *d = &dev;
	struct vfio_region_info sr;

	for (i = 0; i < n; i++) {
		TH_LOG("%s: %zu-byte state", c[i].name, c[i].region_len);
		mb_init(d);
		mb_open(_metadata, d, c[i].g.type, VFIO_BACKEND_TYPE1);
		mb_state_region(_metadata, d, &sr);
		resume_region(_metadata, d, &sr, c[i].region, c[i].region_len);
		check_state(_metadata, d, &c[i], "the region");
		go_on(_metadata, d, &c[i]);
		mb_close(_metadata, d);
	}
	free_cases(c, n);
}

/* Set the version of the record at @p to @version, CRC fixed. */
static void set_version(uint8_t *p, uint32_t version)
{
	put32(p + SV_OFF_VERSION, version);
	fix_crc(p, get64(p + SV_OFF_LEN));
}

/*
 * Whether the kernel log, from @fd (/dev/kmsg opened before the refusal)
 * on, has the line naming version @newer and this build's @ours.
 */
static bool kmsg_names(int fd, uint32_t newer, uint32_t ours)
{
	char want[128], rec[1024];
	ssize_t n;

	snprintf(want, sizeof(want),
		 "mblit: refused device state of format version %u: this driver reads versions",
		 newer);
	while ((n = read(fd, rec, sizeof(rec) - 1)) > 0 || errno == EPIPE) {
		if (n <= 0)
			continue;
		rec[n] = '\0';
		if (strstr(rec, want)) {
			snprintf(want, sizeof(want), "to %u", ours);
			return strstr(rec, want) != NULL;
		}
	}
	return false;
}

static int kmsg_open(void)
{
	int fd = open("/dev/kmsg", O_RDONLY | O_NONBLOCK);

	if (fd >= 0)
		lseek(fd, 0, SEEK_END);
	return fd;
}

TEST_F_TIMEOUT(golden, newer_version_is_refused_through_data_fd, 300)
{
	static struct golden_case c[MAX_CASES];
	int n = load_cases(_metadata, c, MAX_CASES), fd, kfd;
	struct mb_dev dev, *d = &dev;
	struct vfio_region_info sr;
	uint32_t ours, newer;
	uint8_t *s;

	mb_init(d);
	mb_open(_metadata, d, c[0].g.type, VFIO_BACKEND_TYPE1);
	mb_state_region(_metadata, d, &sr);
	ours = mb_state_hdr(_metadata, d, &sr, MBLIT_STATE_OFF_VERSION, 4);
	newer = ours + 1;
	s = malloc(c[0].stream_len);
	ASSERT_NE(NULL, s);
	memcpy(s, c[0].stream, c[0].stream_len);
	set_version(s, newer);

	kfd = kmsg_open();
	ASSERT_LE(0, kfd) TH_LOG("/dev/kmsg: %s", strerror(errno));
	ASSERT_EQ(0, mig_set(d->v.device_fd, VFIO_DEVICE_STATE_STOP, NULL));
	ASSERT_EQ(0, mig_set(d->v.device_fd, VFIO_DEVICE_STATE_RESUMING, &fd));
	EXPECT_EQ(-EPROTONOSUPPORT, mig_write_stream(fd, s, c[0].stream_len,
						     NULL, NULL))
		TH_LOG("a stream of version %u into a version-%u driver",
		       newer, ours);
	EXPECT_TRUE(kmsg_names(kfd, newer, ours))
		TH_LOG("no kernel log line naming versions %u and %u", newer,
		       ours);
	close(kfd);
	/* The stream is poisoned; leaving RESUMING fails, into ERROR. */
	EXPECT_EQ(-EINVAL, mig_write_stream(fd, c[0].stream, c[0].stream_len,
					    NULL, NULL));
	EXPECT_NE(0, mig_set(d->v.device_fd, VFIO_DEVICE_STATE_STOP, NULL));
	EXPECT_EQ(VFIO_DEVICE_STATE_ERROR, mig_get(d->v.device_fd));
	close(fd);

	/* A device reset makes it usable: the right stream now resumes. */
	ASSERT_EQ(0, ioctl(d->v.device_fd, VFIO_DEVICE_RESET));
	resume_v2(_metadata, d, c[0].stream, c[0].stream_len, NULL);
	check_state(_metadata, d, &c[0], "data_fd after a refused stream");
	go_on(_metadata, d, &c[0]);
	free(s);
	mb_close(_metadata, d);
	free_cases(c, n);
}

TEST_F_TIMEOUT(golden, newer_version_is_refused_through_region, 300)
{
	static struct golden_case c[MAX_CASES];
	int n = load_cases(_metadata, c, MAX_CASES), kfd;
	struct mb_dev dev, *d = &dev;
	struct vfio_region_info sr;
	uint8_t *s, *before, *after;
	size_t blen, alen;
	uint32_t ours, newer;

	mb_init(d);
	mb_open(_metadata, d, c[0].g.type, VFIO_BACKEND_TYPE1);
	mb_state_region(_metadata, d, &sr);
	ours = mb_state_hdr(_metadata, d, &sr, MBLIT_STATE_OFF_VERSION, 4);
	newer = ours + 1;
	s = malloc(c[0].region_len);
	ASSERT_NE(NULL, s);
	memcpy(s, c[0].region, c[0].region_len);
	set_version(s, newer);
	WR64(MBLIT_REG_SCRATCH2, 0x5ca7c401);

	ASSERT_EQ(0, mb_runctl_set(d, &sr, MBLIT_RUNCTL_STOPPED));
	before = mb_state_read(_metadata, d, &sr, &blen);
	MB_ACC_OK(d, &sr, true, MBLIT_STATE_AREA_OFFSET, s, c[0].region_len);
	kfd = kmsg_open();
	ASSERT_LE(0, kfd) TH_LOG("/dev/kmsg: %s", strerror(errno));
	EXPECT_EQ(-EPROTONOSUPPORT, mb_runctl_set(d, &sr, MBLIT_RUNCTL_RUNNING))
		TH_LOG("a state of version %u into a version-%u driver", newer,
		       ours);
	EXPECT_TRUE(kmsg_names(kfd, newer, ours))
		TH_LOG("no kernel log line naming versions %u and %u", newer,
		       ours);
	close(kfd);

	/* Still stopped, with the state it had. */
	EXPECT_EQ(MBLIT_RUNCTL_STOPPED, mb_runctl_get(d, &sr));
	after = mb_state_read(_metadata, d, &sr, &alen);
	ASSERT_EQ(blen, alen);
	EXPECT_EQ(0, memcmp(before, after, blen));
	ASSERT_EQ(0, mb_runctl_set(d, &sr, MBLIT_RUNCTL_RUNNING));
	EXPECT_EQ(0x5ca7c401, RD64(MBLIT_REG_SCRATCH2));

	/* The right state now restores. */
	resume_region(_metadata, d, &sr, c[0].region, c[0].region_len);
	check_state(_metadata, d, &c[0], "the region after a refused state");
	go_on(_metadata, d, &c[0]);
	free(s);
	free(before);
	free(after);
	mb_close(_metadata, d);
	free_cases(c, n);
}

TEST_HARNESS_MAIN
