// SPDX-License-Identifier: MIT
/*
 * Per-process odds and ends: the working directory (a scratch subdirectory, with a relative
 * path that must still resolve), the root, umask 027, lowered rlimits (RLIMIT_NOFILE soft,
 * RLIMIT_CORE 0/0, RLIMIT_FSIZE soft, RLIMIT_MSGQUEUE hard), the prctl name and the
 * personality.  After SIGTERM every one must read the same.
 */
#include <fcntl.h>
#include <string.h>
#include <sys/personality.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "testlib.h"

#define NAME "crest-cwd-test"
#define UMASK 027
/* RLIM_SAVED_* equal RLIM_INFINITY on Linux, so "leave as is" needs a value of its own. */
#define KEEP ((rlim_t)-2)

struct state {
	char cwd[4096], root[4096], comm[32], name[32], umask_line[16];
	struct stat cwd_st;
	struct rlimit rl[RLIM_NLIMITS];
	int personality;
};

static struct state before, after;
static char status[8192];

static void capture(struct state *s)
{
	ssize_t n;

	if (!getcwd(s->cwd, sizeof(s->cwd)))
		tl_fail("getcwd: %m");
	if (stat(".", &s->cwd_st))
		tl_fail("stat .: %m");
	n = readlink("/proc/self/root", s->root, sizeof(s->root) - 1);
	if (n < 0)
		tl_fail("readlink /proc/self/root: %m");
	s->root[n] = '\0';
	tl_read_file("/proc/self/comm", s->comm, sizeof(s->comm));
	if (prctl(PR_GET_NAME, s->name))
		tl_fail("PR_GET_NAME: %m");
	/* Read the umask without setting it. */
	tl_read_file("/proc/self/status", status, sizeof(status));
	if (!tl_status_field(status, "Umask", s->umask_line, sizeof(s->umask_line)))
		tl_fail("no Umask in /proc/self/status");
	for (int r = 0; r < RLIM_NLIMITS; r++)
		if (getrlimit(r, &s->rl[r]))
			tl_fail("getrlimit(%d): %m", r);
	s->personality = personality(0xffffffff);
}

static void set_limit(int res, rlim_t soft, rlim_t hard)
{
	struct rlimit rl;

	getrlimit(res, &rl);
	if (soft != KEEP)
		rl.rlim_cur = soft;
	if (hard != KEEP)
		rl.rlim_max = hard;
	if (setrlimit(res, &rl))
		tl_fail("setrlimit(%d): %m", res);
}

int main(void)
{
	char dir[4096], buf[32];
	int fd;

	tl_init();
	tl_path(dir, sizeof(dir), "cwd-dir");
	if (mkdir(dir, 0755))
		tl_fail("mkdir %s: %m", dir);
	if (chdir(dir))
		tl_fail("chdir %s: %m", dir);
	tl_write_file("marker", "here", 4);
	umask(UMASK);
	set_limit(RLIMIT_NOFILE, 200, KEEP);
	set_limit(RLIMIT_CORE, 0, 0);
	set_limit(RLIMIT_FSIZE, 1 << 30, KEEP);
	set_limit(RLIMIT_MSGQUEUE, 4096, 8192);
	if (prctl(PR_SET_NAME, NAME))
		tl_fail("PR_SET_NAME: %m");

	capture(&before);
	tl_ready();
	tl_wait_term();
	capture(&after);

	tl_expect(!strcmp(before.cwd, after.cwd), "cwd %s, was %s", after.cwd, before.cwd);
	tl_expect(before.cwd_st.st_dev == after.cwd_st.st_dev &&
			  before.cwd_st.st_ino == after.cwd_st.st_ino,
		  "cwd is another directory");
	tl_expect(!strcmp(before.root, after.root), "root %s, was %s", after.root, before.root);
	tl_expect(!strcmp(before.comm, after.comm), "comm %s, was %s", after.comm, before.comm);
	tl_expect(!strcmp(after.name, NAME), "PR_GET_NAME %s, not %s", after.name, NAME);
	tl_expect(!strcmp(before.umask_line, after.umask_line), "umask %s, was %s",
		  after.umask_line, before.umask_line);
	tl_expect(umask(UMASK) == UMASK, "umask is not %03o", UMASK);
	for (int r = 0; r < RLIM_NLIMITS; r++)
		tl_expect(!memcmp(&before.rl[r], &after.rl[r], sizeof(struct rlimit)),
			  "rlimit %d: %llu/%llu, was %llu/%llu", r,
			  (unsigned long long)after.rl[r].rlim_cur,
			  (unsigned long long)after.rl[r].rlim_max,
			  (unsigned long long)before.rl[r].rlim_cur,
			  (unsigned long long)before.rl[r].rlim_max);
	tl_expect(before.personality == after.personality, "personality %#x, was %#x",
		  after.personality, before.personality);

	/* Relative paths still resolve in the working directory. */
	fd = open("marker", O_RDONLY);
	memset(buf, 0, sizeof(buf));
	tl_expect(fd >= 0 && read(fd, buf, sizeof(buf)) == 4 && !strcmp(buf, "here"),
		  "relative path \"marker\" does not resolve in the cwd");
	if (fd >= 0)
		close(fd);
	/* And the umask still applies to new files. */
	fd = open("new", O_CREAT | O_WRONLY, 0666);
	if (tl_expect(fd >= 0, "create a file in the cwd: %m")) {
		struct stat st;

		fstat(fd, &st);
		tl_expect((st.st_mode & 0777) == (0666 & ~UMASK), "new file mode %03o",
			  st.st_mode & 0777);
		close(fd);
	}
	tl_done();
}
