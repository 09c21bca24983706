// SPDX-License-Identifier: MIT
/*
 * Identity: the PID (and thread id) must be the very same after a restore, in every place it
 * shows, and the process must still lead its own session and process group.  The parent may
 * differ (a restored process is reparented), so it is not checked.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "testlib.h"

static char buf[8192];

static void check_ids(pid_t pid, const char *when)
{
	char field[64];
	int stat_pid = 0;

	tl_expect(getpid() == pid, "%s: getpid %d, not %d", when, getpid(), pid);
	tl_expect(gettid() == pid, "%s: gettid %d, not %d", when, gettid(), pid);
	tl_expect(getsid(0) == pid, "%s: session %d, not %d", when, getsid(0), pid);
	tl_expect(getpgrp() == pid, "%s: process group %d, not %d", when, getpgrp(), pid);
	tl_read_file("/proc/self/stat", buf, sizeof(buf));
	sscanf(buf, "%d", &stat_pid);
	tl_expect(stat_pid == pid, "%s: /proc/self/stat says pid %d", when, stat_pid);
	tl_read_file("/proc/self/status", buf, sizeof(buf));
	snprintf(field, sizeof(field), "%d", pid);
	for (const char *key = "Pid"; key; key = !strcmp(key, "Pid") ? "Tgid" : NULL) {
		char val[64] = "";

		tl_status_field(buf, key, val, sizeof(val));
		tl_expect(!strcmp(val, field), "%s: %s %s in /proc/self/status", when, key, val);
	}
	/* A single pid namespace level: NSpid is just the pid. */
	{
		char val[64] = "";

		tl_status_field(buf, "NSpid", val, sizeof(val));
		tl_expect(!strcmp(val, field), "%s: NSpid %s", when, val);
	}
}

int main(void)
{
	pid_t pid;

	tl_init();
	pid = getpid();
	check_ids(pid, "before");
	if (tl_failures())
		tl_fail("ids inconsistent before the dump");
	tl_ready();
	tl_wait_term();
	check_ids(pid, "after");
	tl_done();
}
