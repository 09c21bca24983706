// SPDX-License-Identifier: MIT
/*
 * An inotify instance at fd 3, O_NONBLOCK, with watches
 *
 *   wd 1  the directory dir/: IN_CREATE | IN_DELETE
 *   wd 2  removed again (a gap: the kernel never hands it out again)
 *   wd 3  g.txt: IN_MODIFY
 *   wd 4  h.txt: IN_ATTRIB | IN_ONESHOT
 *
 * After SIGTERM fdinfo must list the same watches with the same masks and inodes, the
 * watches must report events (a file created in dir/, a write to g.txt, a chmod of h.txt,
 * then h.txt's one-shot watch ends with IN_IGNORED) under their old wds, and a new watch must
 * get wd 5, as it would have without the dump.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include "testlib.h"

#define FD 3
#define WAIT_MS 3000

static char watches_before[4096];

/* The "inotify wd:..." lines of fd 3, up to " fhandle" (the handle may differ, not the rest). */
static void watches(char *out, size_t size)
{
	static char text[8192];
	const char *line;
	size_t len = 0;

	tl_read_file("/proc/self/fdinfo/3", text, sizeof(text));
	out[0] = '\0';
	for (line = strstr(text, "inotify wd:"); line; line = strstr(line + 1, "inotify wd:")) {
		const char *end = strstr(line, " fhandle");
		size_t n = end ? (size_t)(end - line) : strcspn(line, "\n");

		len += snprintf(out + len, size - len, "%.*s\n", (int)n, line);
	}
}

/* Events read but not looked at yet: one read() may bring several. */
static char evbuf[4096] __attribute__((aligned(8)));
static size_t evpos, evlen;

/* Wait for an event of wd with mask (and name, if given); other events are skipped. */
static bool expect_event(int wd, uint32_t mask, const char *name)
{
	struct pollfd p = { .fd = FD, .events = POLLIN };
	uint64_t end = tl_now_ns() + WAIT_MS * TL_NSEC_PER_MSEC;

	while (tl_now_ns() < end) {
		struct inotify_event *ev;
		ssize_t n;

		if (evpos >= evlen) {
			evpos = evlen = 0;
			if (poll(&p, 1, 100) <= 0)
				continue;
			n = read(FD, evbuf, sizeof(evbuf));
			if (n <= 0)
				continue;
			evlen = n;
		}
		ev = (struct inotify_event *)(evbuf + evpos);
		evpos += sizeof(*ev) + ev->len;
		tl_log("event wd %d mask %#x name '%s'", ev->wd, ev->mask, ev->len ? ev->name : "");
		if (ev->wd == wd && (ev->mask & mask) && (!name || !strcmp(ev->name, name)))
			return true;
	}
	return false;
}

static void drain(void)
{
	char buf[4096];

	while (read(FD, buf, sizeof(buf)) > 0)
		;
}

int main(void)
{
	char dir[4096], g[4096], h[4096], path[4096], now[4096];
	int wd;

	tl_init();
	if (mkdir(tl_path(dir, sizeof(dir), "dir"), 0755))
		tl_fail("mkdir: %m");
	tl_write_file(tl_path(g, sizeof(g), "g.txt"), "g", 1);
	tl_write_file(tl_path(h, sizeof(h), "h.txt"), "h", 1);
	if (inotify_init1(IN_NONBLOCK) != FD)
		tl_fail("inotify_init1: %m");
	if (inotify_add_watch(FD, dir, IN_CREATE | IN_DELETE) != 1 ||
	    inotify_add_watch(FD, "/", IN_ACCESS) != 2 || inotify_rm_watch(FD, 2) ||
	    inotify_add_watch(FD, g, IN_MODIFY) != 3 ||
	    inotify_add_watch(FD, h, IN_ATTRIB | IN_ONESHOT) != 4)
		tl_fail("inotify_add_watch: %m");
	drain();
	watches(watches_before, sizeof(watches_before));
	tl_ready();
	tl_wait_term();

	watches(now, sizeof(now));
	tl_expect(!strcmp(now, watches_before), "the watches are now\n%swere\n%s", now,
		  watches_before);
	tl_expect(fcntl(FD, F_GETFL) & O_NONBLOCK, "fd 3 lost O_NONBLOCK");
	tl_write_file(tl_path(path, sizeof(path), "dir/new"), "x", 1);
	tl_expect(expect_event(1, IN_CREATE, "new"), "no IN_CREATE of dir/new on wd 1");
	tl_write_file(g, "gg", 2);
	tl_expect(expect_event(3, IN_MODIFY, NULL), "no IN_MODIFY of g.txt on wd 3");
	tl_expect(!chmod(h, 0600), "chmod: %m");
	tl_expect(expect_event(4, IN_ATTRIB, NULL), "no IN_ATTRIB of h.txt on wd 4");
	tl_expect(expect_event(4, IN_IGNORED, NULL), "h.txt's one-shot watch did not end");
	wd = inotify_add_watch(FD, path, IN_DELETE_SELF);
	tl_expect(wd == 5, "a new watch got wd %d, not 5", wd);
	tl_done();
}
