// SPDX-License-Identifier: MIT
/*
 * VMA flags changed in the moment between a dump's early read of them and its freeze (the
 * runner's dump_flags_changed and dump_vmas_changed tests, through CREST_TEST_BEFORE_FREEZE).
 *
 * Three regions of 4 pages, each a VMA of its own (a PROT_NONE page between them): "plain"
 * with no flags, "dofork" under MADV_DONTFORK, "keep" mlock()ed.  On SIGUSR1 the program
 * swaps them: plain gets MADV_DONTFORK, dofork gets MADV_DOFORK, keep is munlock()ed and
 * gets MADV_DONTDUMP (each a whole VMA: the lines of /proc/PID/maps stay the same), then says
 * "flipped".  On SIGUSR2 it does the same and also maps a new mlock()ed region, which changes
 * the maps lines.  After the restore, on SIGTERM, it checks its smaps shows the flags as they
 * were last set, and its memory.
 */
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "testlib.h"

#define PAGE 4096
#define REGION (4 * PAGE)

static volatile sig_atomic_t flip_asked; /* 1: flags only, 2: and a new mapping */
static char *plain, *dofork, *keep, *added;
static char smaps[256 * 1024];

static void on_usr(int sig)
{
	flip_asked = sig == SIGUSR1 ? 1 : 2;
}

/* The VmFlags line of the VMA starting at addr, in the smaps just read. */
static const char *vmflags_of(const void *addr)
{
	char head[32];
	const char *p;

	snprintf(head, sizeof(head), "%lx-", (unsigned long)addr);
	for (p = smaps; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL) {
		if (strncmp(p, head, strlen(head)))
			continue;
		p = strstr(p, "VmFlags:");
		return p;
	}
	return NULL;
}

static bool has_flag(const void *addr, const char *flag)
{
	const char *f = vmflags_of(addr), *end;
	char want[8];

	if (!f)
		return false;
	end = strchr(f, '\n');
	snprintf(want, sizeof(want), " %s", flag);
	for (const char *q = strstr(f, want); q && (!end || q < end); q = strstr(q + 1, want))
		if (q[3] == ' ' || q[3] == '\n')
			return true;
	return false;
}

static void read_smaps(void)
{
	int fd = open("/proc/self/smaps", O_RDONLY);
	size_t n = 0;
	ssize_t r;

	if (fd < 0)
		tl_fail("open smaps: %m");
	while ((r = read(fd, smaps + n, sizeof(smaps) - 1 - n)) > 0)
		n += r;
	close(fd);
	smaps[n] = 0;
}

static void expect_flag(const void *addr, const char *name, const char *flag, bool want)
{
	tl_expect(vmflags_of(addr) != NULL, "%s: no VMA starts at %p", name, addr);
	tl_expect(has_flag(addr, flag) == want, "%s: VmFlag %s is %s", name, flag,
		  want ? "missing" : "there");
}

static void flip(void)
{
	if (madvise(plain, REGION, MADV_DONTFORK) || madvise(dofork, REGION, MADV_DOFORK) ||
	    munlock(keep, REGION) || madvise(keep, REGION, MADV_DONTDUMP))
		tl_fail("madvise/munlock: %m");
	if (flip_asked == 2) {
		added = mmap(NULL, REGION, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1,
			     0);
		if (added == MAP_FAILED || mlock(added, REGION))
			tl_fail("new region: %m");
		memset(added, 'n', REGION);
	}
	printf("flipped\n");
}

int main(void)
{
	struct sigaction sa = {.sa_handler = on_usr};
	sigset_t block, orig;
	char *base;
	int flips = 0;

	tl_init();
	sigaction(SIGUSR1, &sa, NULL);
	sigaction(SIGUSR2, &sa, NULL);
	/* guard pages between the regions keep them apart as VMAs, whatever their flags */
	base = mmap(NULL, 3 * (REGION + PAGE), PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (base == MAP_FAILED)
		tl_fail("mmap: %m");
	plain = base;
	dofork = base + REGION + PAGE;
	keep = base + 2 * (REGION + PAGE);
	if (mprotect(plain, REGION, PROT_READ | PROT_WRITE) ||
	    mprotect(dofork, REGION, PROT_READ | PROT_WRITE) ||
	    mprotect(keep, REGION, PROT_READ | PROT_WRITE))
		tl_fail("mprotect: %m");
	memset(plain, 'p', REGION);
	memset(dofork, 'd', REGION);
	memset(keep, 'k', REGION);
	if (madvise(dofork, REGION, MADV_DONTFORK) || mlock(keep, REGION))
		tl_fail("madvise/mlock: %m");
	sigemptyset(&block);
	sigaddset(&block, SIGUSR1);
	sigaddset(&block, SIGUSR2);
	sigaddset(&block, SIGTERM);
	sigprocmask(SIG_BLOCK, &block, &orig);
	tl_ready();

	/* signals blocked but in sigsuspend(): none can come between the check and the wait */
	while (!tl_term) {
		if (flip_asked && !flips++)
			flip();
		sigsuspend(&orig);
	}
	sigprocmask(SIG_SETMASK, &orig, NULL);

	read_smaps();
	expect_flag(plain, "plain", "dc", flips);
	expect_flag(dofork, "dofork", "dc", !flips);
	expect_flag(keep, "keep", "lo", !flips);
	expect_flag(keep, "keep", "dd", flips);
	if (added) {
		expect_flag(added, "added", "lo", true);
		tl_expect(added[0] == 'n' && added[REGION - 1] == 'n', "added: memory lost");
	}
	tl_expect(plain[0] == 'p' && plain[REGION - 1] == 'p', "plain: memory lost");
	tl_expect(dofork[0] == 'd' && dofork[REGION - 1] == 'd', "dofork: memory lost");
	tl_expect(keep[0] == 'k' && keep[REGION - 1] == 'k', "keep: memory lost");
	tl_expect(flips == 1, "flipped %d times, not once", flips);
	tl_done();
}
