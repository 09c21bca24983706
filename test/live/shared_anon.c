// SPDX-License-Identifier: MIT
/*
 * A 4 MiB MAP_SHARED|MAP_ANONYMOUS region shared by the root and two children it forked
 * after filling it.  Page 0 is a control block, the rest a pattern.  Before ready each child
 * says hello through the control block (so the sharing works before the dump).
 *
 * After SIGTERM /proc/PID/maps must show the region in all three at the same address, shared,
 * with one and the same shmem inode; every task checks the pattern.  Then, with the control
 * block as the only channel: the root says go; child 1 writes page 1 with a new pattern and a
 * value into the control block; child 2 must see both, and writes page 2; child 1 must see
 * page 2; the root must see everything.  A region that a restore duplicated instead of
 * sharing never passes the go on, and the root reports who saw nothing.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "testlib.h"

#define PAGE 4096ul
#define REGION (4ul << 20)
#define NPAGES (REGION / PAGE)
#define SEED 0x5348414e00000000ull
#define SEED1 0x6368696c64310000ull
#define SEED2 0x6368696c64320000ull
#define VALUE1 0xc0ffee01u
#define GO 0x60606060u
#define SETUP_NS (5 * TL_NSEC_PER_SEC)
#define STEP_NS (5 * TL_NSEC_PER_SEC)

struct ctl {
	pid_t hello[2];
	unsigned int go;
	unsigned int value1;
	unsigned int c1_done, c2_done;
};

static char *region;
static struct ctl *ctl;

static void sleep_ms(unsigned int ms)
{
	struct timespec ts = {ms / 1000, (ms % 1000) * 1000000l};

	nanosleep(&ts, NULL);
}

static uint64_t page_seed(size_t page)
{
	return SEED + page * 0x10001ull;
}

/* First pattern page in [from, NPAGES) that differs, or -1. */
static ssize_t bad_page(size_t from)
{
	for (size_t p = from; p < NPAGES; p++)
		if (tl_check_fill(region + p * PAGE, PAGE, page_seed(p)) >= 0)
			return p;
	return -1;
}

static unsigned int load(unsigned int *p)
{
	return __atomic_load_n(p, __ATOMIC_ACQUIRE);
}

/* Wait for *p == want by the deadline. */
static bool wait_for(unsigned int *p, unsigned int want, uint64_t deadline)
{
	while (load(p) != want) {
		if (tl_now_ns() >= deadline)
			return false;
		sleep_ms(1);
	}
	return true;
}

/* A child: idle until go (leaving if orphaned), then do its part; exit 0 or 1. */
static void __attribute__((noreturn)) child(int n, pid_t parent)
{
	uint64_t deadline;
	ssize_t p;

	__atomic_store_n(&ctl->hello[n - 1], getpid(), __ATOMIC_RELEASE);
	while (load(&ctl->go) != GO) {
		if (getppid() != parent) {
			tl_log("child %d: parent is now %d, not %d: leaving", n, getppid(), parent);
			_exit(2);
		}
		sleep_ms(5);
	}
	deadline = tl_now_ns() + STEP_NS;
	/* Pages 1 and 2 change now; the rest must be as the root wrote them. */
	p = bad_page(3);
	if (p >= 0) {
		tl_log("child %d: page %zd differs", n, p);
		_exit(1);
	}
	if (n == 1) {
		tl_fill(region + PAGE, PAGE, SEED1);
		__atomic_store_n(&ctl->value1, VALUE1, __ATOMIC_RELEASE);
		__atomic_store_n(&ctl->c1_done, 1, __ATOMIC_RELEASE);
		if (!wait_for(&ctl->c2_done, 1, deadline)) {
			tl_log("child 1: never saw child 2's write");
			_exit(1);
		}
		if (tl_check_fill(region + 2 * PAGE, PAGE, SEED2) >= 0) {
			tl_log("child 1: page 2 is not what child 2 wrote");
			_exit(1);
		}
		_exit(0);
	}
	if (!wait_for(&ctl->c1_done, 1, deadline)) {
		tl_log("child 2: never saw child 1's write");
		_exit(1);
	}
	if (load(&ctl->value1) != VALUE1 || tl_check_fill(region + PAGE, PAGE, SEED1) >= 0) {
		tl_log("child 2: value %#x, page 1 %s", load(&ctl->value1),
		       tl_check_fill(region + PAGE, PAGE, SEED1) >= 0 ? "differs" : "good");
		_exit(1);
	}
	tl_fill(region + 2 * PAGE, PAGE, SEED2);
	__atomic_store_n(&ctl->c2_done, 1, __ATOMIC_RELEASE);
	_exit(0);
}

/* "dev inode" of the mapping at region in /proc/PID/maps, with its perms checked. */
static bool region_inode(pid_t pid, char *out, size_t size)
{
	static char text[65536];
	char path[64], head[32], perms[8], dev[16];
	unsigned long ino;
	const char *line;

	snprintf(path, sizeof(path), "/proc/%d/maps", pid);
	tl_read_file(path, text, sizeof(text));
	snprintf(head, sizeof(head), "%lx-%lx ", (unsigned long)region,
		 (unsigned long)region + REGION);
	line = text;
	while (line && strncmp(line, head, strlen(head))) {
		line = strchr(line, '\n');
		if (line)
			line++;
	}
	if (!line || sscanf(line + strlen(head), "%7s %*s %15s %lu", perms, dev, &ino) != 3)
		return false;
	if (strcmp(perms, "rw-s"))
		return false;
	snprintf(out, size, "%s %lu", dev, ino);
	return true;
}

/* Reap our child by the deadline: its status, -1 when not ours, -2 when late (SIGKILLed). */
static int reap(pid_t pid, uint64_t deadline)
{
	int st;
	pid_t r;

	for (;;) {
		r = waitpid(pid, &st, WNOHANG);
		if (r == pid)
			return st;
		if (r < 0 && errno != EINTR)
			return -1;
		if (!r && tl_now_ns() >= deadline) {
			kill(pid, SIGKILL); /* our unreaped child: the PID is ours */
			while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
				;
			return -2;
		}
		sleep_ms(5);
	}
}

int main(void)
{
	char mine[48], theirs[48];
	uint64_t deadline;
	pid_t kids[2];
	ssize_t p;
	int st;

	tl_init();
	region = mmap(NULL, REGION, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (region == MAP_FAILED)
		tl_fail("mmap: %m");
	ctl = (struct ctl *)region;
	for (size_t pg = 1; pg < NPAGES; pg++)
		tl_fill(region + pg * PAGE, PAGE, page_seed(pg));

	fflush(stdout);
	for (int i = 0; i < 2; i++) {
		pid_t parent = getpid();

		kids[i] = fork();
		if (kids[i] < 0)
			tl_fail("fork: %m");
		if (!kids[i])
			child(i + 1, parent);
	}
	deadline = tl_now_ns() + SETUP_NS;
	for (int i = 0; i < 2; i++) {
		while (__atomic_load_n(&ctl->hello[i], __ATOMIC_ACQUIRE) != kids[i]) {
			if (tl_now_ns() >= deadline || waitpid(-1, &st, WNOHANG) > 0)
				tl_fail("child %d never said hello", i + 1);
			sleep_ms(1);
		}
	}
	if (!region_inode(getpid(), mine, sizeof(mine)))
		tl_fail("the region is not in /proc/self/maps as rw-s");
	tl_log("region %p, shmem %s, children %d and %d", (void *)region, mine, kids[0], kids[1]);

	tl_ready();
	tl_wait_term();

	if (tl_expect(region_inode(getpid(), mine, sizeof(mine)),
		      "the region is not in our maps as rw-s")) {
		for (int i = 0; i < 2; i++) {
			bool ok = region_inode(kids[i], theirs, sizeof(theirs));

			if (tl_expect(ok, "the region is not in child %d's maps as rw-s", i + 1))
				tl_expect(!strcmp(mine, theirs),
					  "child %d maps shmem %s, the root %s", i + 1, theirs,
					  mine);
		}
	}
	p = bad_page(1);
	tl_expect(p < 0, "root: page %zd differs", p);

	__atomic_store_n(&ctl->go, GO, __ATOMIC_RELEASE);
	deadline = tl_now_ns() + STEP_NS;
	if (tl_expect(wait_for(&ctl->c1_done, 1, deadline),
		      "child 1 never wrote (did it see the go?)") &&
	    tl_expect(wait_for(&ctl->c2_done, 1, deadline),
		      "child 2 never wrote (did it see the go and child 1's write?)")) {
		tl_expect(load(&ctl->value1) == VALUE1, "root: value %#x", load(&ctl->value1));
		tl_expect(tl_check_fill(region + PAGE, PAGE, SEED1) < 0,
			  "root: page 1 is not what child 1 wrote");
		tl_expect(tl_check_fill(region + 2 * PAGE, PAGE, SEED2) < 0,
			  "root: page 2 is not what child 2 wrote");
	}
	deadline = tl_now_ns() + STEP_NS;
	for (int i = 0; i < 2; i++) {
		st = reap(kids[i], deadline);
		tl_expect(st == 0, "child %d (%d) ended with %s %#x", i + 1, kids[i],
			  st == -1   ? "not our child"
			  : st == -2 ? "a hang"
				     : "status",
			  st);
	}
	tl_expect(waitpid(-1, &st, WNOHANG) < 0 && errno == ECHILD, "children left over");
	tl_done();
}
