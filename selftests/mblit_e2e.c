// SPDX-License-Identifier: GPL-2.0
/*
 * make e2e, inside the test VM: QEMU 10 runs the e2e guest (e2e/guest/) on
 * an mblit mdev, and is live-migrated, while the guest's DMA runs, into a
 * second QEMU holding a second mdev; the guest goes on there and verifies
 * every byte of guest and device memory against its own model.
 *
 * One scenario per IOMMU back-end and dirty tracking mode (see scenarios[]);
 * each prints a TAP line and a report row ("# |" lines, which scripts/e2e
 * gathers into its table). Runs as /selftests/mblit_e2e when /init sees
 * mblitvm=e2e; QEMU and the guest image are under /e2e (scripts/e2e).
 *
 * Environment: MBLIT_E2E_ONLY (comma-separated scenario names). With -l it
 * lists the TAP names of its scenarios and exits.
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "kselftest.h"
#include "mdev_lib.h"

#define QEMU		"/e2e/qemu-system-x86_64"
#define GUEST		"/e2e/mblit-e2e-guest.elf"
#define RUN_DIR		"/tmp/e2e"
#define TYPE		"mblit-1m"
#define DEBUGFS		"/sys/kernel/debug/mblit"

/* The guest's status block (e2e/guest/guest.c, struct e2e_status). */
#define STATUS_PA	0x00200000u
#define STATUS_MAGIC	0x53453245u
/* Word indices: magic first, rung (the last RING_TAIL written) 11th. */
enum { ST_MAGIC = 0, ST_RUNG = 10, ST_WORDS };

/* Batches the guest must have run on A before the move, and on B after. */
#define BUSY_BATCHES	64
#define AFTER_BATCHES	64

/* The dirty tracking QEMU used, as its trace shows (trace_facts()). */
#define TRACK_DEVICE	"device DMA logging"
#define TRACK_CONTAINER	"container"
#define TRACK_NONE	"none"

enum expect {
	EXPECT_BYTE_EXACT,	/* migrates, and B verifies byte-exact */
	EXPECT_REFUSED,		/* QEMU refuses to migrate */
	EXPECT_LOSS,		/* migrates and loses DMA writes: B must see it */
};

struct scenario {
	const char *name;	/* TAP name after "e2e." */
	enum vfio_backend backend;
	bool device_tracking_off;	/* x-device-dirty-page-tracking=off */
	bool force_migration;		/* enable-migration=on */
	enum expect expect;
	const char *tracking;	/* the dirty tracking QEMU must use */
};

/*
 * QEMU's default, enable-migration=auto, migrates a VFIO device only with
 * device dirty tracking (mblit's DMA log) or IOMMU dirty tracking (iommufd
 * with hardware that has it); the type1 container's dirty bitmap does not
 * count, so using it takes enable-migration=on.
 */
static const struct scenario scenarios[] = {
	{ "type1.device_dirty_tracking.byte_exact_after_move",
	  VFIO_BACKEND_TYPE1, false, false, EXPECT_BYTE_EXACT, TRACK_DEVICE },
	{ "type1.no_device_dirty_tracking.auto_refuses_migration",
	  VFIO_BACKEND_TYPE1, true, false, EXPECT_REFUSED, TRACK_NONE },
	{ "type1.container_dirty_tracking.forced_byte_exact_after_move",
	  VFIO_BACKEND_TYPE1, true, true, EXPECT_BYTE_EXACT, TRACK_CONTAINER },
	{ "iommufd.device_dirty_tracking.byte_exact_after_move",
	  VFIO_BACKEND_IOMMUFD, false, false, EXPECT_BYTE_EXACT, TRACK_DEVICE },
	{ "iommufd.no_dirty_tracking.auto_refuses_migration",
	  VFIO_BACKEND_IOMMUFD, true, false, EXPECT_REFUSED, TRACK_NONE },
	{ "iommufd.no_dirty_tracking.forced_migration_loss_is_seen",
	  VFIO_BACKEND_IOMMUFD, true, true, EXPECT_LOSS, TRACK_NONE },
};

/* What the guest said in its last VERIFY/DONE lines, and what we saw. */
struct guest_view {
	unsigned long batches, submitted;
	unsigned long verifies, verified_bytes;
	unsigned long bad_guest, bad_dev, fence_lost;
	bool ready, done, failed;
};

struct vm {
	char name[8];		/* "A" or "B" */
	pid_t pid;
	int qmp, ser;
	char qbuf[1 << 16];
	size_t qlen;
	char sbuf[4096];
	size_t slen;
	FILE *log;		/* the guest's serial lines and QMP traffic */
	struct guest_view g;
	char last_verify[4096];
};

struct result {
	const char *verdict;	/* PASS, FAIL, expected-loss */
	char why[256];
	unsigned long cmds_a, cmds_b, inflight;
	unsigned long long downtime_ms, total_ms, vfio_bytes, ram_bytes;
	unsigned long long dirty_pages;
	const char *tracking;	/* as QEMU's trace says */
	unsigned long verified_bytes;
};

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void failf(struct result *r, const char *fmt, ...)
{
	va_list ap;

	if (r->why[0])
		return;	/* the first reason is the one to report */
	va_start(ap, fmt);
	vsnprintf(r->why, sizeof(r->why), fmt, ap);
	va_end(ap);
}

/* ---- processes and sockets ------------------------------------------- */

static pid_t spawn(char *const argv[], const char *logpath)
{
	pid_t pid = fork();

	if (pid == 0) {
		int fd = open(logpath, O_WRONLY | O_CREAT | O_TRUNC, 0644);

		if (fd >= 0) {
			dup2(fd, 1);
			dup2(fd, 2);
			close(fd);
		}
		execv(argv[0], argv);
		_exit(127);
	}
	return pid;
}

static int connect_unix(const char *path, double timeout)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	double end = now_s() + timeout;

	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	while (now_s() < end) {
		int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

		if (fd < 0)
			return -errno;
		if (!connect(fd, (struct sockaddr *)&sa, sizeof(sa)))
			return fd;
		close(fd);
		usleep(50 * 1000);
	}
	return -ETIMEDOUT;
}

/* ---- the guest's serial line ----------------------------------------- */

static unsigned long field(const char *line, const char *key)
{
	const char *p = strstr(line, key);

	return p ? strtoul(p + strlen(key), NULL, 0) : 0;
}

static void serial_line(struct vm *vm, char *line)
{
	struct guest_view *g = &vm->g;

	fprintf(vm->log, "serial: %s\n", line);
	if (!strncmp(line, "E2E READY", 9)) {
		g->ready = true;
	} else if (!strncmp(line, "E2E PROGRESS", 12)) {
		g->batches = field(line, "batches=");
		g->submitted = field(line, "submitted=");
	} else if (!strncmp(line, "E2E VERIFY", 10)) {
		g->verifies++;
		g->verified_bytes += field(line, "guest_bytes=") +
				     field(line, "dev_bytes=");
		g->bad_guest += field(line, "bad_guest=");
		g->bad_dev += field(line, "bad_dev=");
		g->fence_lost = field(line, "fence_lost=");
		g->batches = field(line, "batches=");
		snprintf(vm->last_verify, sizeof(vm->last_verify), "%s", line);
	} else if (!strncmp(line, "E2E DONE", 8)) {
		g->done = true;
		g->fence_lost = field(line, "fence_lost=");
	} else if (!strncmp(line, "E2E FAIL", 8)) {
		g->failed = true;
		printf("# %s: guest: %s\n", vm->name, line);
	} else if (!strncmp(line, "E2E FENCE-LOST", 14)) {
		printf("# %s: guest: %s\n", vm->name, line);
	}
}

/* Reads what the serial socket has, within timeout_ms; 0 or -errno. */
static int serial_pump(struct vm *vm, int timeout_ms)
{
	struct pollfd p = { .fd = vm->ser, .events = POLLIN };
	ssize_t n;
	char *nl;

	if (vm->ser < 0)
		return -EBADF;
	if (poll(&p, 1, timeout_ms) <= 0)
		return 0;
	n = read(vm->ser, vm->sbuf + vm->slen, sizeof(vm->sbuf) - 1 - vm->slen);
	if (n <= 0)
		return -EPIPE;
	vm->slen += n;
	vm->sbuf[vm->slen] = 0;
	while ((nl = strchr(vm->sbuf, '\n'))) {
		*nl = 0;
		if (nl > vm->sbuf && nl[-1] == '\r')
			nl[-1] = 0;
		serial_line(vm, vm->sbuf);
		vm->slen -= nl + 1 - vm->sbuf;
		memmove(vm->sbuf, nl + 1, vm->slen + 1);
	}
	if (vm->slen == sizeof(vm->sbuf) - 1)
		vm->slen = 0;	/* a line too long: drop it */
	return 0;
}

/* Pumps both serial lines until cond(vm) holds; false on timeout/failure. */
static bool serial_wait(struct vm *vm, struct vm *other,
			bool (*cond)(struct vm *, unsigned long),
			unsigned long arg, double timeout)
{
	double end = now_s() + timeout;

	while (now_s() < end) {
		if (cond(vm, arg))
			return true;
		if (vm->g.failed)
			return false;
		if (serial_pump(vm, 50) < 0)
			return cond(vm, arg);
		if (other)
			serial_pump(other, 0);
	}
	return cond(vm, arg);
}

static bool is_ready(struct vm *vm, unsigned long arg)
{
	return vm->g.ready && vm->g.verifies >= arg;
}

static bool batches_at_least(struct vm *vm, unsigned long arg)
{
	return vm->g.batches >= arg;
}

static bool verifies_at_least(struct vm *vm, unsigned long arg)
{
	return vm->g.verifies >= arg;
}

static bool is_done(struct vm *vm, unsigned long arg)
{
	(void)arg;
	return vm->g.done;
}

static int serial_send(struct vm *vm, char c)
{
	return write(vm->ser, &c, 1) == 1 ? 0 : -EPIPE;
}

/* ---- QMP ----------------------------------------------------------------- */

/* One line from QMP (events are logged and skipped by qmp()). */
static int qmp_line(struct vm *vm, char *out, size_t len, double timeout)
{
	double end = now_s() + timeout;

	for (;;) {
		char *nl = memchr(vm->qbuf, '\n', vm->qlen);
		struct pollfd p = { .fd = vm->qmp, .events = POLLIN };
		ssize_t n;

		if (nl) {
			size_t l = nl - vm->qbuf;

			snprintf(out, len, "%.*s", (int)l, vm->qbuf);
			vm->qlen -= l + 1;
			memmove(vm->qbuf, nl + 1, vm->qlen);
			return 0;
		}
		if (now_s() >= end)
			return -ETIMEDOUT;
		/* Keep the guest's serial line flowing while we wait. */
		serial_pump(vm, 0);
		if (poll(&p, 1, 50) <= 0)
			continue;
		n = read(vm->qmp, vm->qbuf + vm->qlen,
			 sizeof(vm->qbuf) - vm->qlen);
		if (n <= 0)
			return -EPIPE;
		vm->qlen += n;
	}
}

/* Runs one QMP command; the reply line in out; 0, -EIO (error) or -errno. */
static int qmp(struct vm *vm, const char *cmd, char *out, size_t len)
{
	int ret;

	fprintf(vm->log, "qmp> %s\n", cmd);
	if (write(vm->qmp, cmd, strlen(cmd)) < 0 || write(vm->qmp, "\n", 1) < 0)
		return -errno;
	for (;;) {
		ret = qmp_line(vm, out, len, 120);
		if (ret)
			return ret;
		fprintf(vm->log, "qmp< %s\n", out);
		if (strstr(out, "\"return\""))
			return 0;
		if (strstr(out, "\"error\""))
			return -EIO;
	}
}

static unsigned long long json_num(const char *s, const char *key)
{
	char k[64];
	const char *p;

	snprintf(k, sizeof(k), "\"%s\": ", key);
	p = strstr(s, k);
	return p ? strtoull(p + strlen(k), NULL, 10) : 0;
}

static void json_str(const char *s, const char *key, char *out, size_t len)
{
	char k[64];
	const char *p, *q;

	snprintf(k, sizeof(k), "\"%s\": \"", key);
	p = strstr(s, k);
	out[0] = 0;
	if (!p)
		return;
	p += strlen(k);
	q = strchr(p, '"');
	snprintf(out, len, "%.*s", q ? (int)(q - p) : 0, p);
}

/* ---- one VM -------------------------------------------------------------- */

static int vm_start(struct vm *vm, const char *name, const struct scenario *s,
		    const char *uuid, bool incoming)
{
	char sysfsdev[160], dev[320], ser[256], qmpopt[256], serpath[128];
	char qmppath[128], log[128], trace[128], incoming_uri[128];
	char *argv[48];
	int a = 0, ret;
	char line[4096];

	memset(vm, 0, sizeof(*vm));
	vm->qmp = vm->ser = -1;
	snprintf(vm->name, sizeof(vm->name), "%s", name);
	snprintf(serpath, sizeof(serpath), RUN_DIR "/%s.serial", name);
	snprintf(qmppath, sizeof(qmppath), RUN_DIR "/%s.qmp", name);
	snprintf(log, sizeof(log), RUN_DIR "/%s.log", name);
	vm->log = fopen(log, "w");
	if (!vm->log)
		return -errno;
	setvbuf(vm->log, NULL, _IOLBF, 0);
	snprintf(trace, sizeof(trace), RUN_DIR "/%s.trace", name);
	snprintf(sysfsdev, sizeof(sysfsdev), MDEV_BUS_DEVICES "/%s", uuid);
	snprintf(dev, sizeof(dev), "vfio-pci,id=mblit0,addr=04.0,sysfsdev=%s%s%s%s",
		 sysfsdev,
		 s->backend == VFIO_BACKEND_IOMMUFD ? ",iommufd=iommufd0" : "",
		 s->device_tracking_off ? ",x-device-dirty-page-tracking=off" : "",
		 s->force_migration ? ",enable-migration=on" : "");
	snprintf(ser, sizeof(ser), "socket,id=ser0,path=%s,server=on,wait=on",
		 serpath);
	snprintf(qmpopt, sizeof(qmpopt), "unix:%s,server=on,wait=off", qmppath);
	snprintf(incoming_uri, sizeof(incoming_uri), "unix:" RUN_DIR "/mig.sock");

	argv[a++] = QEMU;
	argv[a++] = "-accel";
	argv[a++] = "tcg";
	argv[a++] = "-machine";
	argv[a++] = "pc";
	argv[a++] = "-m";
	argv[a++] = "32";
	argv[a++] = "-nodefaults";
	argv[a++] = "-no-user-config";
	argv[a++] = "-display";
	argv[a++] = "none";
	argv[a++] = "-chardev";
	argv[a++] = ser;
	argv[a++] = "-serial";
	argv[a++] = "chardev:ser0";
	argv[a++] = "-qmp";
	argv[a++] = qmpopt;
	argv[a++] = "-kernel";
	argv[a++] = GUEST;
	if (s->backend == VFIO_BACKEND_IOMMUFD) {
		argv[a++] = "-object";
		argv[a++] = "iommufd,id=iommufd0";
	}
	argv[a++] = "-device";
	argv[a++] = dev;
	argv[a++] = "-D";
	argv[a++] = trace;
	argv[a++] = "-trace";
	argv[a++] = "vfio_get_dirty_bitmap";
	argv[a++] = "-trace";
	argv[a++] = "vfio_device_dirty_tracking_start";
	if (incoming) {
		argv[a++] = "-incoming";
		argv[a++] = incoming_uri;
	}
	argv[a] = NULL;

	{
		char cmdline[2048] = "";

		for (int i = 0; argv[i]; i++) {
			strncat(cmdline, argv[i], sizeof(cmdline) - strlen(cmdline) - 2);
			strcat(cmdline, " ");
		}
		printf("# %s: %s\n", name, cmdline);
		fprintf(vm->log, "cmd: %s\n", cmdline);
	}
	snprintf(log, sizeof(log), RUN_DIR "/%s.stderr", name);
	vm->pid = spawn(argv, log);
	if (vm->pid < 0)
		return -errno;
	vm->ser = connect_unix(serpath, 60);
	if (vm->ser < 0)
		return vm->ser;
	vm->qmp = connect_unix(qmppath, 120);
	if (vm->qmp < 0)
		return vm->qmp;
	ret = qmp_line(vm, line, sizeof(line), 120);	/* the greeting */
	if (ret)
		return ret;
	return qmp(vm, "{\"execute\": \"qmp_capabilities\"}", line, sizeof(line));
}

static void vm_stop(struct vm *vm)
{
	char line[4096];
	int status, i;

	if (vm->qmp >= 0)
		qmp(vm, "{\"execute\": \"quit\"}", line, sizeof(line));
	for (i = 0; vm->pid > 0 && i < 200; i++) {
		if (waitpid(vm->pid, &status, WNOHANG) == vm->pid) {
			vm->pid = 0;
			break;
		}
		usleep(50 * 1000);
	}
	if (vm->pid > 0) {
		kill(vm->pid, SIGKILL);
		waitpid(vm->pid, &status, 0);
	}
	if (vm->qmp >= 0)
		close(vm->qmp);
	if (vm->ser >= 0)
		close(vm->ser);
	if (vm->log)
		fclose(vm->log);
	vm->qmp = vm->ser = -1;
	vm->log = NULL;
}

/* The guest's status block, read while the VM is stopped. */
static int guest_status(struct vm *vm, uint32_t st[ST_WORDS])
{
	char cmd[256], line[4096], path[128];
	int fd, ret;

	snprintf(path, sizeof(path), RUN_DIR "/%s.status", vm->name);
	snprintf(cmd, sizeof(cmd),
		 "{\"execute\": \"pmemsave\", \"arguments\": {\"val\": %u, \"size\": %zu, \"filename\": \"%s\"}}",
		 STATUS_PA, ST_WORDS * sizeof(uint32_t), path);
	ret = qmp(vm, cmd, line, sizeof(line));
	if (ret)
		return ret;
	fd = open(path, O_RDONLY);
	if (fd < 0)
		return -errno;
	ret = read(fd, st, ST_WORDS * sizeof(uint32_t)) ==
	      (ssize_t)(ST_WORDS * sizeof(uint32_t)) ? 0 : -EIO;
	close(fd);
	if (!ret && st[ST_MAGIC] != STATUS_MAGIC)
		ret = -EINVAL;
	return ret;
}

static unsigned long debugfs(const char *uuid, const char *file)
{
	char path[256];
	long v = -1;

	snprintf(path, sizeof(path), DEBUGFS "/%s/%s", uuid, file);
	if (sysfs_read_long(path, &v))
		return (unsigned long)-1;
	return v;
}

/*
 * Sums "dirty_pages=N" over QEMU's vfio_get_dirty_bitmap trace lines (one
 * per dirty bitmap QEMU fetched, from the device's log or the container),
 * and names the tracking that produced them.
 */
static void trace_facts(const char *name, struct result *r)
{
	char path[128], line[512];
	bool device = false, bitmap = false;
	FILE *f;

	snprintf(path, sizeof(path), RUN_DIR "/%s.trace", name);
	f = fopen(path, "r");
	r->dirty_pages = 0;
	r->tracking = "none";
	if (!f)
		return;
	while (fgets(line, sizeof(line), f)) {
		const char *p = strstr(line, "dirty_pages=");

		if (strstr(line, "vfio_get_dirty_bitmap") && p) {
			r->dirty_pages += strtoull(p + 12, NULL, 10);
			bitmap = true;
		}
		if (strstr(line, "vfio_device_dirty_tracking_start"))
			device = true;
	}
	fclose(f);
	/* Bitmaps without device logging come from the container. */
	r->tracking = device ? TRACK_DEVICE : bitmap ? TRACK_CONTAINER : TRACK_NONE;
}

/* The last lines of a QEMU's output, after a failure. */
static void dump_tail(const char *path)
{
	char lines[16][256], line[256];
	unsigned int n = 0, i;
	FILE *f = fopen(path, "r");

	if (!f)
		return;
	while (fgets(line, sizeof(line), f))
		snprintf(lines[n++ % 16], sizeof(lines[0]), "%s", line);
	fclose(f);
	for (i = n > 16 ? n - 16 : 0; i < n; i++)
		printf("# %s: %s", path, lines[i % 16]);
}

/* ---- one scenario --------------------------------------------------------- */

static void migrate(struct vm *a, struct vm *b, const struct scenario *s,
		    struct result *r)
{
	char line[8192], status[32], err[256];
	double start = now_s();
	int ret;

	ret = qmp(a, "{\"execute\": \"migrate\", \"arguments\": {\"uri\": \"unix:" RUN_DIR "/mig.sock\"}}",
		  line, sizeof(line));
	if (s->expect == EXPECT_REFUSED) {
		if (ret != -EIO) {
			failf(r, "QEMU did not refuse the migration");
			return;
		}
		json_str(line, "desc", err, sizeof(err));
		printf("# refused: %s\n", err);
		return;
	}
	if (ret) {
		json_str(line, "desc", err, sizeof(err));
		failf(r, "migrate: %s", ret == -EIO ? err : strerror(-ret));
		return;
	}
	for (;;) {
		if (now_s() - start > 300) {
			failf(r, "migration did not complete in 300 s");
			return;
		}
		serial_pump(b, 0);
		ret = qmp(a, "{\"execute\": \"query-migrate\"}", line, sizeof(line));
		if (ret) {
			failf(r, "query-migrate: %d", ret);
			return;
		}
		json_str(line, "status", status, sizeof(status));
		if (!strcmp(status, "completed"))
			break;
		if (!strcmp(status, "failed") || !strcmp(status, "cancelled")) {
			json_str(line, "error-desc", err, sizeof(err));
			failf(r, "migration %s: %s", status, err);
			return;
		}
		serial_pump(a, 200);
	}
	r->downtime_ms = json_num(line, "downtime");
	r->total_ms = json_num(line, "total-time");
	{
		const char *ram = strstr(line, "\"ram\"");
		const char *vfio = strstr(line, "\"vfio\"");

		r->ram_bytes = ram ? json_num(ram, "transferred") : 0;
		r->vfio_bytes = vfio ? json_num(vfio, "transferred") : 0;
	}
	printf("# migrated in %llu ms, downtime %llu ms\n", r->total_ms,
	       r->downtime_ms);
}

static void run_scenario(int n, const struct scenario *s)
{
	char uuid_a[MDEV_UUID_LEN + 1] = "", uuid_b[MDEV_UUID_LEN + 1] = "";
	struct vm *a = calloc(1, sizeof(*a)), *b = calloc(1, sizeof(*b));
	struct result r = { .verdict = "FAIL", .tracking = "-" };
	bool have_b = s->expect != EXPECT_REFUSED, ok;
	unsigned long bad;
	int ret;

	printf("# ---- e2e.%s\n", s->name);
	fflush(stdout);
	unlink(RUN_DIR "/mig.sock");
	unlink(RUN_DIR "/A.stderr");
	unlink(RUN_DIR "/B.stderr");
	if (!a || !b || mdev_create(TYPE, uuid_a) || mdev_create(TYPE, uuid_b)) {
		failf(&r, "creating the mdevs: %s", mdev_lib_error());
		goto out;
	}
	if (have_b) {
		ret = vm_start(b, "B", s, uuid_b, true);
		if (ret) {
			failf(&r, "starting B: %s", strerror(-ret));
			goto out;
		}
	}
	ret = vm_start(a, "A", s, uuid_a, false);
	if (ret) {
		failf(&r, "starting A: %s", strerror(-ret));
		goto out;
	}
	if (!serial_wait(a, have_b ? b : NULL, is_ready, 1, 240)) {
		failf(&r, "the guest on A did not start the workload");
		goto out;
	}
	if (!serial_wait(a, have_b ? b : NULL, batches_at_least, BUSY_BATCHES, 240)) {
		failf(&r, "the guest on A ran %lu batches, not %d", a->g.batches,
		      BUSY_BATCHES);
		goto out;
	}
	migrate(a, b, s, &r);
	if (r.why[0])
		goto out;
	if (s->expect == EXPECT_REFUSED) {
		/* The workload goes on, and verifies, on A. */
		if (serial_send(a, 'q') ||
		    !serial_wait(a, NULL, is_done, 0, 240)) {
			failf(&r, "the guest on A did not finish after the refusal");
			goto out;
		}
		r.cmds_a = debugfs(uuid_a, "commands");
		r.verified_bytes = a->g.verified_bytes;
		if (a->g.bad_guest || a->g.bad_dev || a->g.fence_lost)
			failf(&r, "A lost data: %s", a->last_verify);
		else
			r.verdict = "PASS";
		goto out;
	}
	r.cmds_a = debugfs(uuid_a, "commands");
	{
		uint32_t st[ST_WORDS];

		/* Rung (RING_TAIL written) and not completed at the stop. */
		if (!guest_status(a, st))
			r.inflight = st[ST_RUNG] - r.cmds_a;
		if (debugfs(uuid_a, "pinned_pages") != 0)
			failf(&r, "A's mdev has pages pinned after the move");
	}
	/* On B: verify at once, run on, verify again and finish. */
	if (serial_send(b, 'v') ||
	    !serial_wait(b, NULL, verifies_at_least, 1, 240)) {
		failf(&r, "the guest on B did not verify after the move");
		goto out;
	}
	printf("# B, right after the move: %s\n", b->last_verify);
	if (!serial_wait(b, NULL, batches_at_least,
			 b->g.batches + AFTER_BATCHES, 240) ||
	    serial_send(b, 'q') || !serial_wait(b, NULL, is_done, 0, 240)) {
		failf(&r, "the guest on B did not run on and finish");
		goto out;
	}
	printf("# B, at the end: %s\n", b->last_verify);
	r.cmds_b = debugfs(uuid_b, "commands");
	r.verified_bytes = a->g.verified_bytes + b->g.verified_bytes;
	bad = b->g.bad_guest + b->g.bad_dev + b->g.fence_lost;
	ok = !a->g.bad_guest && !a->g.bad_dev && !a->g.fence_lost;
	if (!ok)
		failf(&r, "A's own verification failed: %s", a->last_verify);
	else if (s->expect == EXPECT_BYTE_EXACT && bad)
		failf(&r, "B lost %lu guest bytes, %lu device bytes, %lu fence writes",
		      b->g.bad_guest, b->g.bad_dev, b->g.fence_lost);
	else if (s->expect == EXPECT_LOSS && !bad)
		failf(&r, "no loss seen where QEMU migrates without dirty tracking");
	else if (s->expect == EXPECT_LOSS)
		r.verdict = "expected-loss";
	else
		r.verdict = "PASS";
	if (s->expect == EXPECT_LOSS && bad)
		printf("# expected loss: B found %lu guest bytes, %lu device bytes, %lu fence writes unlike its model\n",
		       b->g.bad_guest, b->g.bad_dev, b->g.fence_lost);
out:
	if (a->pid > 0 || a->log)
		vm_stop(a);
	if (b->pid > 0 || b->log)
		vm_stop(b);
	trace_facts("A", &r);
	if (strcmp(r.tracking, s->tracking))
		failf(&r, "QEMU's dirty tracking was %s, not %s", r.tracking,
		      s->tracking);
	if (uuid_b[0] && debugfs(uuid_b, "pinned_pages") != 0 &&
	    mdev_exists(uuid_b))
		failf(&r, "B's mdev has pages pinned after QEMU quit");
	if (mdev_exists(uuid_a) && mdev_remove(uuid_a))
		failf(&r, "removing A's mdev: %s", mdev_lib_error());
	if (mdev_exists(uuid_b) && mdev_remove(uuid_b))
		failf(&r, "removing B's mdev: %s", mdev_lib_error());
	if (r.why[0]) {
		r.verdict = "FAIL";
		dump_tail(RUN_DIR "/A.stderr");
		dump_tail(RUN_DIR "/B.stderr");
	}
	printf("%s %d e2e.%s\n", strcmp(r.verdict, "FAIL") ? "ok" : "not ok", n,
	       s->name);
	if (r.why[0])
		printf("# FAIL: %s\n", r.why);
	printf("# | %s | %s | %s | %lu | %lu | %lu | %lu | %llu | %llu | %llu | %llu |\n",
	       s->name, r.verdict, r.tracking, r.cmds_a, r.cmds_b, r.inflight,
	       r.verified_bytes, r.downtime_ms, r.vfio_bytes, r.ram_bytes,
	       r.dirty_pages);
	fflush(stdout);
	free(a);
	free(b);
}

static bool selected(const char *name)
{
	const char *only = getenv("MBLIT_E2E_ONLY");
	char list[512];

	if (!only || !*only)
		return true;
	snprintf(list, sizeof(list), ",%s,", only);
	for (char *t = strtok(list, ","); t; t = strtok(NULL, ","))
		if (!strcmp(t, name))
			return true;
	return false;
}

int main(int argc, char **argv)
{
	int n = 0, total = 0;
	size_t i;

	if (argc > 1 && !strcmp(argv[1], "-l")) {
		for (i = 0; i < ARRAY_SIZE(scenarios); i++)
			printf("e2e.%s\n", scenarios[i].name);
		return 0;
	}

	setvbuf(stdout, NULL, _IOLBF, 0);
	signal(SIGPIPE, SIG_IGN);
	mkdir(RUN_DIR, 0755);
	for (i = 0; i < ARRAY_SIZE(scenarios); i++)
		total += selected(scenarios[i].name);
	printf("TAP version 13\n1..%d\n", total);
	printf("# | scenario | result | dirty tracking (QEMU trace) | commands on A | commands on B | in flight at the stop | bytes verified | downtime ms | device state bytes | RAM bytes | dirty pages QEMU got |\n");
	for (i = 0; i < ARRAY_SIZE(scenarios); i++)
		if (selected(scenarios[i].name))
			run_scenario(++n, &scenarios[i]);
	return 0;
}
