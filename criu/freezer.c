// SPDX-License-Identifier: MIT
/*
 * The cgroup freezer: with the tree in a cgroup of its own, freezing it stops every task at
 * once, so none can fork or clone while crest seizes them one by one.  cgroup v1 has a
 * freezer controller (freezer.state), cgroup v2 a cgroup.freeze file in every cgroup.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"
#include "log.h"

#define FREEZE_TIMEOUT_MS 5000

static bool is_v2(const char *cg)
{
	char path[4096];

	snprintf(path, sizeof(path), "%s/cgroup.freeze", cg);
	return !access(path, F_OK);
}

static int write_knob(const char *cg, const char *knob, const char *val)
{
	char path[4096];
	int fd, ret = 0;

	snprintf(path, sizeof(path), "%s/%s", cg, knob);
	fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0 || write(fd, val, strlen(val)) < 0) {
		pr_perror("cannot write %s to %s", val, path);
		ret = -1;
	}
	if (fd >= 0)
		close(fd);
	return ret;
}

/* Is the cgroup frozen yet? 1 yes, 0 not yet, -1 error. */
static int frozen(const char *cg)
{
	char path[4096], *text;
	const char *p;
	int ret;

	snprintf(path, sizeof(path), "%s/%s", cg, is_v2(cg) ? "cgroup.events" : "freezer.state");
	text = read_file_at(AT_FDCWD, path, NULL);
	if (!text) {
		pr_perror("cannot read %s", path);
		return -1;
	}
	if (is_v2(cg)) {
		p = strstr(text, "frozen ");
		ret = p && p[7] == '1';
	} else {
		ret = !strncmp(text, "FROZEN", 6);
	}
	free(text);
	return ret;
}

int freezer_freeze(const char *cg)
{
	char path[4096];

	snprintf(path, sizeof(path), "%s/freezer.state", cg);
	if (!is_v2(cg) && access(path, F_OK)) {
		pr_err("%s is neither a cgroup v2 directory nor a v1 freezer cgroup", cg);
		return -1;
	}
	if (write_knob(cg, is_v2(cg) ? "cgroup.freeze" : "freezer.state",
		       is_v2(cg) ? "1" : "FROZEN"))
		return -1;
	for (int ms = 0; ms < FREEZE_TIMEOUT_MS; ms++) {
		int r = frozen(cg);

		if (r)
			return r < 0 ? -1 : 0;
		usleep(1000);
	}
	pr_err("cgroup %s did not freeze within %d ms", cg, FREEZE_TIMEOUT_MS);
	freezer_thaw(cg);
	return -1;
}

int freezer_thaw(const char *cg)
{
	return write_knob(cg, is_v2(cg) ? "cgroup.freeze" : "freezer.state",
			  is_v2(cg) ? "0" : "THAWED");
}
