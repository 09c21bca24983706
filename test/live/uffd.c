// SPDX-License-Identifier: MIT
/*
 * A task that uses userfaultfd itself: 16 populated pages registered for missing-page faults
 * on a userfaultfd it keeps open (fd 42).  A pre-dump must refuse it -- its tracking would
 * share the task's VMAs with our own registration -- and leave it exactly as it was.
 *
 * After SIGTERM: the registration is still there (smaps VmFlags "um"), no VMA is registered
 * for write-protection ("uw"), the fds open are the ones it had, and the data is intact.
 */
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "testlib.h"

#define PAGE 4096ul
#define NPAGES 16
#define UFFD_FD 42
#define MAX_FD 256
#define SEED 0x0ffd

static char smaps[1 << 20];
static bool open_before[MAX_FD];

/* VmFlags of the VMA that starts at addr ("" when there is none); whether any has "uw". */
static void vm_flags(unsigned long addr, char *out, size_t size, bool *any_wp)
{
	char key[32];
	const char *p = smaps, *vma = NULL;

	tl_read_file("/proc/self/smaps", smaps, sizeof(smaps));
	snprintf(key, sizeof(key), "%lx-", addr);
	out[0] = 0;
	*any_wp = false;
	for (; *p; p = strchrnul(p, '\n'), p += *p == '\n') {
		if (!strncmp(p, key, strlen(key)))
			vma = p;
		if (strncmp(p, "VmFlags:", 8))
			continue;
		const char *end = strchrnul(p, '\n');

		if (memmem(p, end - p, " uw", 3))
			*any_wp = true;
		if (vma && !out[0])
			snprintf(out, size, "%.*s", (int)(end - p), p);
		vma = NULL;
	}
}

int main(void)
{
	struct uffdio_api api = {.api = UFFD_API};
	struct uffdio_register reg = {.mode = UFFDIO_REGISTER_MODE_MISSING};
	char flags[256];
	unsigned char *mem;
	bool any_wp;
	ssize_t off;
	int fd;

	tl_init();
	mem = mmap(NULL, NPAGES * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (mem == MAP_FAILED)
		tl_fail("mmap: %m");
	tl_fill(mem, NPAGES * PAGE, SEED);
	fd = syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
	if (fd < 0)
		tl_fail("userfaultfd: %m");
	if (dup2(fd, UFFD_FD) != UFFD_FD)
		tl_fail("dup2: %m");
	close(fd);
	if (ioctl(UFFD_FD, UFFDIO_API, &api))
		tl_fail("UFFDIO_API: %m");
	reg.range.start = (unsigned long)mem;
	reg.range.len = NPAGES * PAGE;
	if (ioctl(UFFD_FD, UFFDIO_REGISTER, &reg))
		tl_fail("UFFDIO_REGISTER: %m");
	vm_flags((unsigned long)mem, flags, sizeof(flags), &any_wp);
	if (!strstr(flags, " um"))
		tl_fail("registered, but smaps says '%s'", flags);
	for (int i = 0; i < MAX_FD; i++)
		open_before[i] = fcntl(i, F_GETFD) >= 0;
	tl_ready();

	tl_wait_term();

	vm_flags((unsigned long)mem, flags, sizeof(flags), &any_wp);
	tl_expect(strstr(flags, " um"), "the region lost its registration: '%s'", flags);
	tl_expect(!any_wp, "a VMA is registered for write-protection (uw)");
	for (int i = 0; i < MAX_FD; i++)
		tl_expect(open_before[i] == (fcntl(i, F_GETFD) >= 0), "fd %d %s", i,
			  open_before[i] ? "was closed" : "appeared");
	off = tl_check_fill(mem, NPAGES * PAGE, SEED);
	tl_expect(off < 0, "the registered region differs at byte %zd", off);
	tl_done();
}
