// SPDX-License-Identifier: MIT
/*
 * timerfd: clock, interval, time to the next expiry and expirations not yet read.  On the
 * same boot a periodic timer keeps its phase: the next expiry is pinned to the absolute time
 * it had, expirations missed while the task was frozen are added to its tick count.  On
 * another boot the clocks mean nothing across hosts: the remaining time is re-armed relative.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"
#include "log.h"

#ifndef TFD_IOC_SET_TICKS
#define TFD_IOC_SET_TICKS _IOW('T', 0, uint64_t) /* Linux 3.17, CONFIG_CHECKPOINT_RESTORE */
#endif

#define NSEC 1000000000ULL

static bool timerfd_match(struct dump_ctx *d, const struct fd_info *fi)
{
	return !strcmp(fi->link, "anon_inode:[timerfd]");
}

static int parse_pair(const char *p, uint64_t *ns)
{
	unsigned long long sec, nsec;

	if (!p || sscanf(p, "(%llu, %llu)", &sec, &nsec) != 2)
		return -1;
	*ns = sec * NSEC + nsec;
	return 0;
}

static int timerfd_dump(struct dump_ctx *d, const struct fd_info *fi, FileEntry *f)
{
	const char *clk = fdinfo_field(fi->fdinfo, "clockid");
	const char *ticks = fdinfo_field(fi->fdinfo, "ticks");
	const char *flags = fdinfo_field(fi->fdinfo, "settime flags");
	TimerfdEntry *e = calloc(1, sizeof(*e));

	if (!e)
		return -1;
	timerfd_entry__init(e);
	f->timerfd = e;
	if (!clk || !ticks || !flags ||
	    parse_pair(fdinfo_field(fi->fdinfo, "it_value"), &e->value_ns) ||
	    parse_pair(fdinfo_field(fi->fdinfo, "it_interval"), &e->interval_ns)) {
		pr_err("fd %d of %d: cannot parse the timerfd's fdinfo", fi->fd, d->pid);
		return -1;
	}
	e->clockid = atoi(clk);
	e->ticks = strtoull(ticks, NULL, 10);
	e->settime_flags = strtoul(flags, NULL, 8);
	/*
	 * An expired periodic timer is not re-armed until it is read, and fdinfo then shows
	 * one tick and no next expiry.  Read it through crest's copy: the kernel counts the
	 * intervals that passed and re-arms it in phase.  Then give the ticks back.
	 */
	if (e->ticks && fi->lfd >= 0) {
		struct itimerspec its;
		uint64_t n;

		if (read(fi->lfd, &n, sizeof(n)) != sizeof(n) || timerfd_gettime(fi->lfd, &its) ||
		    ioctl(fi->lfd, TFD_IOC_SET_TICKS, &n)) {
			pr_perror("fd %d of %d: cannot read the timerfd's expirations", fi->fd,
				  d->pid);
			return -1;
		}
		e->ticks = n;
		e->value_ns = its.it_value.tv_sec * NSEC + its.it_value.tv_nsec;
		e->interval_ns = its.it_interval.tv_sec * NSEC + its.it_interval.tv_nsec;
	}
	e->has_dump_clock_ns = true;
	e->dump_clock_ns = now_ns(e->clockid);
	f->has_flags = true;
	f->flags = fi->flags;
	return 0;
}

static bool same_boot(const struct restore_tree *t)
{
	char *boot = read_file_at(AT_FDCWD, "/proc/sys/kernel/random/boot_id", NULL);
	bool same = boot && t->inv->boot_id && !strncmp(boot, t->inv->boot_id, 36);

	free(boot);
	return same;
}

static int timerfd_open(struct restore_ctx *r, const FileEntry *f)
{
	const TimerfdEntry *e = f->timerfd;
	struct itimerspec its = {0};
	uint64_t ticks, next;
	int fd, flags = 0;

	if (!e || e->settime_flags & ~(TFD_TIMER_ABSTIME | TFD_TIMER_CANCEL_ON_SET)) {
		pr_err("files.img: timerfd %u is malformed", f->id);
		return -1;
	}
	ticks = e->ticks;
	fd = timerfd_create(e->clockid, TFD_CLOEXEC | (f->flags & O_NONBLOCK ? TFD_NONBLOCK : 0));
	if (fd < 0) {
		pr_perror("cannot recreate timerfd %u", f->id);
		return -1;
	}
	its.it_interval = (struct timespec){e->interval_ns / NSEC, e->interval_ns % NSEC};
	if (e->value_ns && e->has_dump_clock_ns && same_boot(r->tree)) {
		uint64_t now = now_ns(e->clockid);

		next = e->dump_clock_ns + e->value_ns;
		if (next <= now) {
			/* expirations that fell while frozen are owed to the reader */
			if (e->interval_ns) {
				uint64_t missed = (now - next) / e->interval_ns + 1;

				ticks += missed;
				next += missed * e->interval_ns;
			} else {
				ticks++;
				next = 0;
			}
		}
		if (next) {
			its.it_value = (struct timespec){next / NSEC, next % NSEC};
			flags = TFD_TIMER_ABSTIME | (e->settime_flags & TFD_TIMER_CANCEL_ON_SET);
		}
	} else if (e->value_ns) {
		its.it_value = (struct timespec){e->value_ns / NSEC, e->value_ns % NSEC};
	}
	if ((its.it_value.tv_sec || its.it_value.tv_nsec) &&
	    timerfd_settime(fd, flags, &its, NULL)) {
		pr_perror("cannot arm timerfd %u", f->id);
		close(fd);
		return -1;
	}
	if (ticks && ioctl(fd, TFD_IOC_SET_TICKS, &ticks)) {
		pr_perror("cannot restore the %llu pending expirations of timerfd %u",
			  (unsigned long long)ticks, f->id);
		close(fd);
		return -1;
	}
	return fd;
}

const struct fd_ops timerfd_fd_ops = {
	.name = "timerfd",
	.kind = FD_KIND__FD_TIMERFD,
	.match = timerfd_match,
	.dump = timerfd_dump,
	.open = timerfd_open,
};
