// SPDX-License-Identifier: MIT
/*
 * The program break and the mm fields: the break is moved up by 4 MiB and an odd number of
 * bytes (the kernel keeps the exact, unaligned value) and the new memory is filled.  After
 * SIGTERM sbrk(0) must return the very same value, the memory must be intact, the break must
 * still grow and shrink, and the mm fields /proc/self/stat shows (code, data, brk start, stack,
 * arguments, environment), the auxiliary vector, cmdline and environ must read the same.
 * Nothing here calls malloc(): it would move the break on its own.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "testlib.h"

#define GROW (4 * 1024 * 1024 + 1234)
#define MORE (1024 * 1024)
#define SEED 0xb4c

struct mm {
	unsigned long fields[53]; /* /proc/self/stat, 1-based */
	char auxv[4096], cmdline[4096], environ[16384];
	size_t auxv_len, cmdline_len, environ_len;
};

static struct mm before, after;
static char stat_buf[4096];

/* The mm fields of /proc/PID/stat (proc(5) numbering). */
static const int mm_fields[] = {26, 27, 28, 45, 46, 47, 48, 49, 50, 51};

static void capture(struct mm *m)
{
	char *p;
	int i;

	tl_read_file("/proc/self/stat", stat_buf, sizeof(stat_buf));
	/* comm may hold spaces: count fields from after its closing parenthesis (field 2). */
	p = strrchr(stat_buf, ')');
	if (!p)
		tl_fail("odd /proc/self/stat");
	p++;
	for (i = 3; i <= 52 && *p; i++) {
		while (*p == ' ')
			p++;
		if (i != 3) /* field 3 is the state letter */
			m->fields[i] = strtoul(p, &p, 10);
		else
			p++;
	}
	m->auxv_len = tl_read_file("/proc/self/auxv", m->auxv, sizeof(m->auxv));
	m->cmdline_len = tl_read_file("/proc/self/cmdline", m->cmdline, sizeof(m->cmdline));
	m->environ_len = tl_read_file("/proc/self/environ", m->environ, sizeof(m->environ));
}

int main(void)
{
	char *start, *end, *p;

	tl_init();
	start = sbrk(0);
	if (sbrk(GROW) == (void *)-1)
		tl_fail("sbrk: %m");
	end = sbrk(0);
	if (end != start + GROW)
		tl_fail("sbrk(0) is %p, not %p", end, start + GROW);
	tl_fill(start, GROW, SEED);
	capture(&before);
	tl_log("break %p..%p", start, end);
	tl_ready();
	tl_wait_term();
	capture(&after);

	p = sbrk(0);
	tl_expect(p == end, "sbrk(0) is %p, was %p", p, end);
	tl_expect(tl_check_fill(start, GROW, SEED) < 0, "memory below the break changed at +%zd",
		  tl_check_fill(start, GROW, SEED));
	for (size_t i = 0; i < sizeof(mm_fields) / sizeof(mm_fields[0]); i++) {
		int f = mm_fields[i];

		tl_expect(before.fields[f] == after.fields[f],
			  "/proc/self/stat field %d: %#lx, was %#lx", f, after.fields[f],
			  before.fields[f]);
	}
	tl_expect(before.auxv_len == after.auxv_len &&
			  !memcmp(before.auxv, after.auxv, before.auxv_len),
		  "auxv differs");
	tl_expect(before.cmdline_len == after.cmdline_len &&
			  !memcmp(before.cmdline, after.cmdline, before.cmdline_len),
		  "cmdline differs");
	tl_expect(before.environ_len == after.environ_len &&
			  !memcmp(before.environ, after.environ, before.environ_len),
		  "environ differs");

	/* The break still moves both ways. */
	if (tl_expect(sbrk(MORE) == p, "sbrk(+%d) after restore: %m", MORE)) {
		memset(p, 0x5a, MORE);
		tl_expect(sbrk(0) == p + MORE, "sbrk(0) is %p after growing", sbrk(0));
		tl_expect(sbrk(-MORE) != (void *)-1 && sbrk(0) == p, "sbrk(-%d) failed", MORE);
	}
	tl_done();
}
