// SPDX-License-Identifier: GPL-2.0
/*
 * mdev sysfs helpers: find a type, read its attributes, create and remove
 * instances; module state helpers.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "mdev_lib.h"
#include "mdev_lib_internal.h"

static char last_error[512];

const char *mdev_lib_error(void)
{
	return last_error[0] ? last_error : "no error recorded";
}

int lib_fail(int err, const char *fmt, ...)
{
	size_t n;
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(last_error, sizeof(last_error), fmt, ap);
	va_end(ap);
	n = strlen(last_error);
	if (err)
		snprintf(last_error + n, sizeof(last_error) - n, ": %s (%d)",
			 strerror(err), err);
	return err ? -err : -EINVAL;
}

bool path_exists(const char *path)
{
	struct stat st;

	return lstat(path, &st) == 0;
}

int sysfs_read_str(const char *path, char *buf, size_t len)
{
	ssize_t n;
	int fd;

	if (!len)
		return lib_fail(EINVAL, "read %s: empty buffer", path);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return lib_fail(errno, "open %s", path);
	n = read(fd, buf, len - 1);
	if (n < 0) {
		int err = errno;

		close(fd);
		return lib_fail(err, "read %s", path);
	}
	close(fd);
	buf[n] = '\0';
	while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == ' '))
		buf[--n] = '\0';
	return n;
}

int sysfs_read_long(const char *path, long *val)
{
	char buf[64], *end;
	int ret;

	ret = sysfs_read_str(path, buf, sizeof(buf));
	if (ret < 0)
		return ret;
	errno = 0;
	*val = strtol(buf, &end, 0);
	if (errno || end == buf || *end)
		return lib_fail(EINVAL, "%s: not a number: '%s'", path, buf);
	return 0;
}

int sysfs_write_str(const char *path, const char *str)
{
	size_t len = strlen(str);
	ssize_t n;
	int fd;

	fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return lib_fail(errno, "open %s", path);
	n = write(fd, str, len);
	if (n < 0) {
		int err = errno;

		close(fd);
		return lib_fail(err, "write '%s' to %s", str, path);
	}
	close(fd);
	if ((size_t)n != len)
		return lib_fail(EIO, "short write to %s (%zd of %zu)", path,
				n, len);
	return 0;
}

/* Find /sys/class/mdev_bus/<parent>/mdev_supported_types/<type>. */
int mdev_type_dir(const char *type, char *buf, size_t len)
{
	char path[MDEV_PATH_MAX];
	struct dirent *de;
	int found = 0;
	DIR *dir;

	if (!*type || strchr(type, '/'))
		return lib_fail(EINVAL, "bad mdev type name '%s'", type);
	dir = opendir(MDEV_BUS_CLASS);
	if (!dir)
		return lib_fail(errno, "opendir " MDEV_BUS_CLASS);
	while ((de = readdir(dir))) {
		if (de->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path),
			 MDEV_BUS_CLASS "/%s/mdev_supported_types/%s",
			 de->d_name, type);
		if (!path_exists(path))
			continue;
		if (found++)
			continue;
		if (strlen(path) >= len) {
			closedir(dir);
			return lib_fail(ENAMETOOLONG, "mdev type path of %s",
					type);
		}
		strcpy(buf, path);
	}
	closedir(dir);
	if (!found)
		return lib_fail(ENOENT, "mdev type %s not found under "
				MDEV_BUS_CLASS "/*/mdev_supported_types", type);
	if (found > 1)
		return lib_fail(EEXIST, "mdev type %s found under %d parents",
				type, found);
	return 0;
}

int mdev_type_attr(const char *type, const char *attr, char *buf, size_t len)
{
	char dir[MDEV_PATH_MAX], path[MDEV_PATH_MAX + 64];
	int ret;

	ret = mdev_type_dir(type, dir, sizeof(dir));
	if (ret)
		return ret;
	snprintf(path, sizeof(path), "%s/%s", dir, attr);
	return sysfs_read_str(path, buf, len);
}

int mdev_type_available(const char *type)
{
	char dir[MDEV_PATH_MAX], path[MDEV_PATH_MAX + 64];
	long val;
	int ret;

	ret = mdev_type_dir(type, dir, sizeof(dir));
	if (ret)
		return ret;
	snprintf(path, sizeof(path), "%s/available_instances", dir);
	ret = sysfs_read_long(path, &val);
	if (ret)
		return ret;
	if (val < 0 || val > 1000000)
		return lib_fail(ERANGE, "%s: implausible value %ld", path, val);
	return val;
}

void mdev_uuid_generate(char uuid[MDEV_UUID_LEN + 1])
{
	unsigned char b[16];
	size_t got = 0;

	while (got < sizeof(b)) {
		ssize_t n = getrandom(b + got, sizeof(b) - got, 0);

		if (n > 0)
			got += n;
	}
	b[6] = (b[6] & 0x0f) | 0x40;	/* version 4 */
	b[8] = (b[8] & 0x3f) | 0x80;	/* RFC 4122 variant */
	snprintf(uuid, MDEV_UUID_LEN + 1,
		 "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
		 b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9],
		 b[10], b[11], b[12], b[13], b[14], b[15]);
}

int mdev_create_uuid(const char *type, const char *uuid)
{
	char dir[MDEV_PATH_MAX], path[MDEV_PATH_MAX + 64];
	int ret;

	ret = mdev_type_dir(type, dir, sizeof(dir));
	if (ret)
		return ret;
	snprintf(path, sizeof(path), "%s/create", dir);
	return sysfs_write_str(path, uuid);
}

int mdev_create(const char *type, char uuid[MDEV_UUID_LEN + 1])
{
	mdev_uuid_generate(uuid);
	return mdev_create_uuid(type, uuid);
}

int mdev_remove(const char *uuid)
{
	char path[MDEV_PATH_MAX];

	snprintf(path, sizeof(path), MDEV_BUS_DEVICES "/%s/remove", uuid);
	return sysfs_write_str(path, "1");
}

bool mdev_exists(const char *uuid)
{
	char path[MDEV_PATH_MAX];

	snprintf(path, sizeof(path), MDEV_BUS_DEVICES "/%s", uuid);
	return path_exists(path);
}

/* The type an existing mdev was created from, e.g. "mtty-2". */
int mdev_device_type(const char *uuid, char *buf, size_t len)
{
	char path[MDEV_PATH_MAX], link[MDEV_PATH_MAX];
	const char *base;
	ssize_t n;

	snprintf(path, sizeof(path), MDEV_BUS_DEVICES "/%s/mdev_type", uuid);
	n = readlink(path, link, sizeof(link) - 1);
	if (n < 0)
		return lib_fail(errno, "readlink %s", path);
	link[n] = '\0';
	base = strrchr(link, '/');
	base = base ? base + 1 : link;
	if (strlen(base) >= len)
		return lib_fail(ENAMETOOLONG, "type name of %s", uuid);
	strcpy(buf, base);
	return 0;
}

bool module_loaded(const char *name)
{
	char line[512];
	size_t len = strlen(name);
	bool found = false;
	FILE *f;

	f = fopen("/proc/modules", "re");
	if (!f)
		return false;
	while (fgets(line, sizeof(line), f)) {
		if (!strncmp(line, name, len) && line[len] == ' ') {
			found = true;
			break;
		}
	}
	fclose(f);
	return found;
}

int module_refcnt(const char *name)
{
	char path[MDEV_PATH_MAX];
	long val;
	int ret;

	snprintf(path, sizeof(path), "/sys/module/%s/refcnt", name);
	ret = sysfs_read_long(path, &val);
	if (ret)
		return ret;
	return val;
}

/* delete_module(name, O_NONBLOCK), as rmmod does. */
int module_unload(const char *name)
{
	if (syscall(SYS_delete_module, name, O_NONBLOCK))
		return lib_fail(errno, "delete_module(%s)", name);
	return 0;
}

/* system(@cmd): its exit status, or a negative errno if it did not exit. */
int run_cmd(const char *cmd)
{
	int status = system(cmd);

	if (status == -1)
		return -errno;
	if (!WIFEXITED(status))
		return -EINTR;
	return WEXITSTATUS(status);
}

/* Arm fail-nth for the @n-th allocation (0: disarm): 0 or -errno. */
int fail_nth_set(int fd, unsigned int n)
{
	char buf[16];
	int len = snprintf(buf, sizeof(buf), "%u", n);

	return pwrite(fd, buf, len, 0) == len ? 0 : -errno;
}

/* fail-nth as it reads now (>= 0), or -errno (-EIO: nothing read). */
int fail_nth_get(int fd)
{
	char buf[16];
	ssize_t n = pread(fd, buf, sizeof(buf) - 1, 0);

	if (n <= 0)
		return n < 0 ? -errno : -EIO;
	buf[n] = '\0';
	return atoi(buf);
}
