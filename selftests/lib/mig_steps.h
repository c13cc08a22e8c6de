/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Migration v2 steps on an mb_dev that must succeed: each asserts.
 * Include it after kselftest_harness.h.
 */
#ifndef MIG_STEPS_H
#define MIG_STEPS_H

#include "mblit_dev.h"
#include "mig_v2.h"

/* Bound on a stream these steps read. */
#define MIG_STREAM_MAX	(600ULL << 20)

/* SET @state (checked with GET); its data_fd into *@fd, or closed. */
static inline void set_ok(struct __test_metadata *_metadata, struct mb_dev *d,
			  uint32_t state, int *fd, bool want_fd)
{
	int f = -1, ret = mig_set(d->v.device_fd, state, &f);

	ASSERT_EQ(0, ret) TH_LOG("SET %s: %s", mig_state_name(state),
				 strerror(-ret));
	ASSERT_EQ((int)state, mig_get(d->v.device_fd));
	ASSERT_EQ(want_fd, f >= 0) TH_LOG("SET %s: data_fd %d",
					  mig_state_name(state), f);
	if (fd)
		*fd = f;
	else if (f >= 0)
		close(f);
}

/* Read to EOF (STOP_COPY), bounded; @k as for mig_read_stream(). */
static inline size_t read_eof(struct __test_metadata *_metadata, int fd,
			      struct mig_buf *b, unsigned int *k)
{
	size_t got = 0;
	int ret = mig_read_stream(fd, b, k, MIG_STREAM_MAX, &got);

	ASSERT_EQ(0, ret) TH_LOG("reading to EOF: %s", strerror(-ret));
	return got;
}

/* Read to pre-copy's temporary end (ENOMSG), bounded. */
static inline size_t read_enomsg(struct __test_metadata *_metadata, int fd,
				 struct mig_buf *b, unsigned int *k)
{
	size_t got = 0;
	int ret = mig_read_stream(fd, b, k, MIG_STREAM_MAX, &got);

	ASSERT_EQ(-ENOMSG, ret) TH_LOG("reading to ENOMSG: %s",
				       ret ? strerror(-ret) : "EOF in PRE_COPY");
	return got;
}

#endif /* MIG_STEPS_H */
