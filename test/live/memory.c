// SPDX-License-Identifier: MIT
/*
 * Every kind of memory a plain program has, each filled with a known pattern:
 *
 *   heap (brk) and a large malloc (mmap), .data and .bss, the stack;
 *   64 MiB of private anonymous memory: random bytes, written zeros, and pages never touched;
 *   a private file mapping at a file offset, some pages written (COW), some only read, some
 *   never touched; a shared file mapping with written pages; shared anonymous memory;
 *   a read-only region, a PROT_NONE guard, MADV_DONTFORK, MADV_WIPEONFORK and mlock()ed memory.
 *
 * After SIGTERM: /proc/self/maps must list the same VMAs, smaps the same VmFlags, every byte
 * must be as it was, and the regions must still behave as their kind (a child sees the shared
 * memory, does not get the DONTFORK region, gets the WIPEONFORK one zeroed, faults on the
 * read-only and guard regions; the shared file mapping still writes through to the file).
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "testlib.h"

#define PAGE 4096ul
#define KiB 1024ul
#define MiB (1024ul * 1024)

#define ANON_SIZE (64 * MiB)
#define ANON_RANDOM (48 * MiB)	 /* [0, 48M): pattern */
#define ANON_ZERO_END (52 * MiB) /* [48M, 52M): written zeros; then every other page */
#define FILE_PAGES 20		 /* the backing files */
#define FPRIV_PGOFF 2		 /* private mapping: file pages [2, 18) */
#define FPRIV_PAGES 16
#define FSHARED_PAGES 16
#define SHANON_SIZE (1 * MiB)
#define RO_SIZE (256 * KiB)
#define GUARD_SIZE (64 * KiB)
#define DONTFORK_SIZE (256 * KiB)
#define WIPE_SIZE (256 * KiB)
#define LOCK_SIZE (16 * KiB)
#define NR_SMALL 64
#define SMALL_SIZE 4000
#define BIG_MALLOC (2 * MiB)

enum {
	SEED_ANON = 0x1000,
	SEED_FILE_PRIV,
	SEED_PRIV_COW,
	SEED_FILE_SHARED,
	SEED_SHARED_DIRTY,
	SEED_SHANON,
	SEED_RO,
	SEED_DONTFORK,
	SEED_WIPE,
	SEED_LOCK,
	SEED_SMALL,
	SEED_BIG,
	SEED_DATA,
	SEED_BSS,
	SEED_STACK,
};

struct vma {
	unsigned long start, end, pgoff, inode;
	char perms[8], dev[16], path[256], flags[128];
};

#define MAX_VMAS 256

static struct vma before[MAX_VMAS], after[MAX_VMAS];
static int nr_before, nr_after;
static char procbuf[1 << 20];

static unsigned char *anon, *fpriv, *fshared, *shanon, *ro, *guard, *dontfork, *wipe, *locked;
static unsigned char *small[NR_SMALL], *big;
static int fpriv_fd, fshared_fd;
static char fpriv_path[4096], fshared_path[4096];

/* Initialized, so it lives in .data: a private file mapping of the binary, modified (COW). */
static uint64_t data_arr[2048] = {1, 2, 3};
static uint64_t bss_arr[4096];

/* Every file mapping page gets a pattern of its own, so a page in the wrong place shows. */
static uint64_t page_seed(uint64_t seed, unsigned long page)
{
	return seed * 1000003 + page;
}

static void *map_at(unsigned long *next, size_t size, int prot, int flags, int fd, off_t off)
{
	void *want = (void *)*next, *p;

	/*
	 * Fixed addresses with a page of hole between regions: neighbours with equal flags would
	 * otherwise merge into one VMA, and the layout would depend on mmap()'s choices.
	 */
	p = mmap(want, size, prot, flags | MAP_FIXED_NOREPLACE, fd, off);
	if (p == MAP_FAILED)
		tl_fail("mmap %zu bytes at %p: %m", size, want);
	if (p != want)
		tl_fail("mmap at %p gave %p", want, p);
	*next += size + PAGE;
	return p;
}

static int make_file(char *path, size_t size, const char *name, uint64_t seed)
{
	static unsigned char buf[FILE_PAGES * PAGE];
	int fd;

	tl_path(path, 4096, name);
	for (unsigned long i = 0; i < FILE_PAGES; i++)
		tl_fill(buf + i * PAGE, PAGE, page_seed(seed, i));
	tl_write_file(path, buf, sizeof(buf));
	fd = open(path, O_RDWR);
	if (fd < 0)
		tl_fail("open %s: %m", path);
	return fd;
}

static void build(void)
{
	unsigned long total, next;
	void *probe;

	for (int i = 0; i < NR_SMALL; i++) {
		small[i] = malloc(SMALL_SIZE);
		if (!small[i])
			tl_fail("malloc");
		tl_fill(small[i], SMALL_SIZE, SEED_SMALL + i);
	}
	big = malloc(BIG_MALLOC);
	if (!big)
		tl_fail("malloc");
	tl_fill(big, BIG_MALLOC, SEED_BIG);
	tl_fill(data_arr, sizeof(data_arr), SEED_DATA);
	tl_fill(bss_arr, sizeof(bss_arr), SEED_BSS);

	fpriv_fd = make_file(fpriv_path, FILE_PAGES * PAGE, "private.bin", SEED_FILE_PRIV);
	fshared_fd = make_file(fshared_path, FILE_PAGES * PAGE, "shared.bin", SEED_FILE_SHARED);

	total = ANON_SIZE + (FPRIV_PAGES + FSHARED_PAGES) * PAGE + SHANON_SIZE + RO_SIZE +
		GUARD_SIZE + DONTFORK_SIZE + WIPE_SIZE + LOCK_SIZE + 16 * PAGE;
	probe = mmap(NULL, total, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (probe == MAP_FAILED)
		tl_fail("mmap probe: %m");
	munmap(probe, total);
	next = (unsigned long)probe + PAGE;

	anon = map_at(&next, ANON_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	tl_fill(anon, ANON_RANDOM, SEED_ANON);
	memset(anon + ANON_RANDOM, 0, ANON_ZERO_END - ANON_RANDOM);
	for (unsigned long off = ANON_ZERO_END; off < ANON_SIZE; off += 2 * PAGE)
		tl_fill(anon + off, PAGE, page_seed(SEED_ANON, off / PAGE));

	fpriv = map_at(&next, FPRIV_PAGES * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE, fpriv_fd,
		       FPRIV_PGOFF * PAGE);
	for (unsigned long i = 0; i < FPRIV_PAGES - 2; i++) {
		if (i % 2)
			tl_fill(fpriv + i * PAGE, PAGE, page_seed(SEED_PRIV_COW, i));
		else
			(void)*(volatile unsigned char *)(fpriv + i * PAGE);
	}

	fshared = map_at(&next, FSHARED_PAGES * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED,
			 fshared_fd, 0);
	for (unsigned long i = 0; i < FSHARED_PAGES; i += 3)
		tl_fill(fshared + i * PAGE, PAGE, page_seed(SEED_SHARED_DIRTY, i));

	shanon = map_at(&next, SHANON_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1,
			0);
	tl_fill(shanon, SHANON_SIZE, SEED_SHANON);

	ro = map_at(&next, RO_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	tl_fill(ro, RO_SIZE, SEED_RO);
	if (mprotect(ro, RO_SIZE, PROT_READ))
		tl_fail("mprotect: %m");

	guard = map_at(&next, GUARD_SIZE, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	dontfork = map_at(&next, DONTFORK_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
			  -1, 0);
	tl_fill(dontfork, DONTFORK_SIZE, SEED_DONTFORK);
	if (madvise(dontfork, DONTFORK_SIZE, MADV_DONTFORK))
		tl_fail("MADV_DONTFORK: %m");

	wipe = map_at(&next, WIPE_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	tl_fill(wipe, WIPE_SIZE, SEED_WIPE);
	if (madvise(wipe, WIPE_SIZE, MADV_WIPEONFORK))
		tl_fail("MADV_WIPEONFORK: %m");

	locked = map_at(&next, LOCK_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1,
			0);
	tl_fill(locked, LOCK_SIZE, SEED_LOCK);
	if (mlock(locked, LOCK_SIZE))
		tl_fail("mlock: %m");
}

/*
 * Checksums of whole regions, taken before ready: one line per changed region, next to the
 * pattern checks that say where exactly a region differs.
 */
struct sum {
	const char *what;
	const void *p;
	size_t len;
	uint64_t hash;
};

static struct sum sums[16];
static int nr_sums;

static void take_sums(void)
{
	const struct sum list[] = {
		{"anon", anon, ANON_SIZE},
		{"private file map", fpriv, FPRIV_PAGES * PAGE},
		{"shared file map", fshared, FSHARED_PAGES * PAGE},
		{"shared anon", shanon, SHANON_SIZE},
		{"read-only", ro, RO_SIZE},
		{"dontfork", dontfork, DONTFORK_SIZE},
		{"wipeonfork", wipe, WIPE_SIZE},
		{"mlocked", locked, LOCK_SIZE},
		{"big malloc", big, BIG_MALLOC},
		{".data", data_arr, sizeof(data_arr)},
		{".bss", bss_arr, sizeof(bss_arr)},
	};

	for (nr_sums = 0; nr_sums < (int)(sizeof(list) / sizeof(list[0])); nr_sums++) {
		sums[nr_sums] = list[nr_sums];
		sums[nr_sums].hash = tl_hash(list[nr_sums].p, list[nr_sums].len);
	}
}

static void check_sums(void)
{
	for (int i = 0; i < nr_sums; i++) {
		uint64_t h = tl_hash(sums[i].p, sums[i].len);

		tl_expect(h == sums[i].hash, "%s: checksum %016llx, was %016llx", sums[i].what,
			  (unsigned long long)h, (unsigned long long)sums[i].hash);
	}
}

static void check_fill(const void *p, size_t len, uint64_t seed, const char *what)
{
	ssize_t bad = tl_check_fill(p, len, seed);

	tl_expect(bad < 0, "%s: byte %zd of %zu differs", what, bad, len);
}

static void check_zero(const unsigned char *p, size_t len, const char *what)
{
	for (size_t i = 0; i < len; i++)
		if (p[i]) {
			tl_expect(false, "%s: byte %zu is %#x, not 0", what, i, p[i]);
			return;
		}
}

/* The expected content of page i of the private mapping (file page FPRIV_PGOFF + i). */
static uint64_t fpriv_seed(unsigned long i)
{
	if (i % 2 && i < FPRIV_PAGES - 2)
		return page_seed(SEED_PRIV_COW, i);
	return page_seed(SEED_FILE_PRIV, FPRIV_PGOFF + i);
}

static uint64_t fshared_seed(unsigned long i)
{
	if (i % 3 == 0 && i < FSHARED_PAGES)
		return page_seed(SEED_SHARED_DIRTY, i);
	return page_seed(SEED_FILE_SHARED, i);
}

static void check_file(int fd, const char *what, uint64_t (*seed_of)(unsigned long))
{
	static unsigned char buf[PAGE];
	char name[64];

	for (unsigned long i = 0; i < FILE_PAGES; i++) {
		if (pread(fd, buf, PAGE, i * PAGE) != (ssize_t)PAGE) {
			tl_expect(false, "%s: pread page %lu: %m", what, i);
			return;
		}
		snprintf(name, sizeof(name), "%s page %lu", what, i);
		check_fill(buf, PAGE, seed_of(i), name);
	}
}

static uint64_t file_priv_seed(unsigned long i)
{
	return page_seed(SEED_FILE_PRIV, i);
}

static void check_contents(void)
{
	char name[64];

	for (int i = 0; i < NR_SMALL; i++) {
		snprintf(name, sizeof(name), "malloc chunk %d", i);
		check_fill(small[i], SMALL_SIZE, SEED_SMALL + i, name);
	}
	check_fill(big, BIG_MALLOC, SEED_BIG, "big malloc");
	check_fill(data_arr, sizeof(data_arr), SEED_DATA, ".data");
	check_fill(bss_arr, sizeof(bss_arr), SEED_BSS, ".bss");

	check_fill(anon, ANON_RANDOM, SEED_ANON, "anon");
	check_zero(anon + ANON_RANDOM, ANON_ZERO_END - ANON_RANDOM, "anon written zeros");
	for (unsigned long off = ANON_ZERO_END; off < ANON_SIZE; off += PAGE) {
		snprintf(name, sizeof(name), "anon page %lu", off / PAGE);
		if ((off - ANON_ZERO_END) % (2 * PAGE))
			check_zero(anon + off, PAGE, name);
		else
			check_fill(anon + off, PAGE, page_seed(SEED_ANON, off / PAGE), name);
	}

	for (unsigned long i = 0; i < FPRIV_PAGES; i++) {
		snprintf(name, sizeof(name), "private file map page %lu", i);
		check_fill(fpriv + i * PAGE, PAGE, fpriv_seed(i), name);
	}
	/* Private writes must never have reached the file. */
	check_file(fpriv_fd, "private.bin", file_priv_seed);

	for (unsigned long i = 0; i < FSHARED_PAGES; i++) {
		snprintf(name, sizeof(name), "shared file map page %lu", i);
		check_fill(fshared + i * PAGE, PAGE, fshared_seed(i), name);
	}
	check_file(fshared_fd, "shared.bin", fshared_seed);

	check_fill(shanon, SHANON_SIZE, SEED_SHANON, "shared anon");
	check_fill(ro, RO_SIZE, SEED_RO, "read-only");
	check_fill(dontfork, DONTFORK_SIZE, SEED_DONTFORK, "dontfork");
	check_fill(wipe, WIPE_SIZE, SEED_WIPE, "wipeonfork");
	check_fill(locked, LOCK_SIZE, SEED_LOCK, "mlocked");
}

static void parse_smaps(struct vma *v, int *nr)
{
	char *line = procbuf, *next, *nl, *path;
	struct vma *cur = NULL;
	int n = 0, pos;

	tl_read_file("/proc/self/smaps", procbuf, sizeof(procbuf));
	for (; *line; line = next) {
		nl = strchr(line, '\n');
		next = nl ? nl + 1 : line + strlen(line);
		if (nl)
			*nl = '\0';
		if (!strncmp(line, "VmFlags:", 8)) {
			if (cur)
				snprintf(cur->flags, sizeof(cur->flags), "%s", line + 9);
			continue;
		}
		if (n == MAX_VMAS)
			tl_fail("more than %d VMAs", MAX_VMAS);
		/* Only a VMA header, "start-end perms offset dev inode [path]", has six fields. */
		cur = &v[n];
		memset(cur, 0, sizeof(*cur));
		if (sscanf(line, "%lx-%lx %7s %lx %15s %lu%n", &cur->start, &cur->end, cur->perms,
			   &cur->pgoff, cur->dev, &cur->inode, &pos) != 6) {
			cur = n ? &v[n - 1] : NULL;
			continue;
		}
		for (path = line + pos; *path == ' '; path++)
			;
		snprintf(cur->path, sizeof(cur->path), "%s", path);
		n++;
	}
	*nr = n;
}

static const char *vma_str(const struct vma *v, char *buf, size_t size)
{
	snprintf(buf, size, "%lx-%lx %s %08lx %s %lu %s [%s]", v->start, v->end, v->perms, v->pgoff,
		 v->dev, v->inode, v->path, v->flags);
	return buf;
}

/*
 * VmFlags that may differ without the program being able to tell: "ac" and "nr" are commit
 * charge bookkeeping (a region mapped read-only at restore has no charge, one made read-only
 * with mprotect keeps it), "sd" is soft-dirty (not in this kernel), "um"/"uw"/"ui" are
 * userfaultfd registrations, which only the engine could have made.
 */
static const char *const ignored_flags[] = {"ac", "nr", "sd", "um", "uw", "ui"};

static void strip_flags(const char *in, char *out, size_t size)
{
	char tok[8];
	int len = 0, n;

	out[0] = '\0';
	while (sscanf(in, "%7s%n", tok, &n) == 1) {
		bool skip = false;

		in += n;
		for (size_t i = 0; i < sizeof(ignored_flags) / sizeof(ignored_flags[0]); i++)
			skip |= !strcmp(tok, ignored_flags[i]);
		if (!skip)
			len += snprintf(out + len, size - len, "%s%s", len ? " " : "", tok);
	}
}

static bool same_vma(const struct vma *a, const struct vma *b)
{
	char fa[128], fb[128];

	if (a->start != b->start || a->end != b->end || strcmp(a->perms, b->perms) ||
	    a->pgoff != b->pgoff || strcmp(a->path, b->path))
		return false;
	/*
	 * dev:inode names the file of a file mapping and must match; shared anonymous memory
	 * ("/dev/zero (deleted)") gets a fresh shmem inode whenever it is recreated.
	 */
	if (a->path[0] == '/' && !strstr(a->path, "(deleted)") &&
	    (strcmp(a->dev, b->dev) || a->inode != b->inode))
		return false;
	strip_flags(a->flags, fa, sizeof(fa));
	strip_flags(b->flags, fb, sizeof(fb));
	return !strcmp(fa, fb);
}

/* Both lists are sorted by address: walk them side by side so one odd VMA is one report. */
static void compare_vmas(void)
{
	char sa[512], sb[512];
	int i = 0, j = 0;

	while (i < nr_before || j < nr_after) {
		const struct vma *a = i < nr_before ? &before[i] : NULL;
		const struct vma *b = j < nr_after ? &after[j] : NULL;

		if (a && b && a->start == b->start) {
			tl_expect(same_vma(a, b), "VMA was %s, now %s", vma_str(a, sa, sizeof(sa)),
				  vma_str(b, sb, sizeof(sb)));
			i++;
			j++;
		} else if (a && (!b || a->start < b->start)) {
			tl_expect(false, "VMA gone: %s", vma_str(a, sa, sizeof(sa)));
			i++;
		} else {
			tl_expect(false, "VMA new: %s", vma_str(b, sb, sizeof(sb)));
			j++;
		}
	}
}

static const struct vma *find_vma(const struct vma *v, int nr, const void *addr)
{
	for (int i = 0; i < nr; i++)
		if (v[i].start == (unsigned long)addr)
			return &v[i];
	return NULL;
}

static bool has_flag(const char *flags, const char *flag)
{
	size_t len = strlen(flag);

	for (const char *p = flags; (p = strstr(p, flag)); p += len)
		if ((p == flags || p[-1] == ' ') && (p[len] == ' ' || p[len] == '\0'))
			return true;
	return false;
}

static void check_flag(const void *addr, const char *flag, const char *what)
{
	const struct vma *v = find_vma(after, nr_after, addr);

	if (tl_expect(v != NULL, "%s region %p is no VMA start", what, addr))
		tl_expect(has_flag(v->flags, flag), "%s region lost VmFlag %s: [%s]", what, flag,
			  v->flags);
}

/* Run fn in a child; the child's exit status or terminating signal comes back. */
static int in_child(int (*fn)(void), int *sig)
{
	int status;
	pid_t pid;

	fflush(stdout);
	pid = fork();
	if (pid < 0)
		tl_fail("fork: %m");
	if (!pid)
		_exit(fn());
	if (waitpid(pid, &status, 0) != pid)
		tl_fail("waitpid: %m");
	*sig = WIFSIGNALED(status) ? WTERMSIG(status) : 0;
	return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

enum {
	CHILD_WIPE_NOT_ZERO = 1,
	CHILD_DONTFORK_PRESENT = 2,
	CHILD_CANNOT_READ_MAPS = 4,
};

static int child_inherit(void)
{
	char want[32];
	int ret = 0;

	for (size_t i = 0; i < WIPE_SIZE; i++)
		if (wipe[i]) {
			ret |= CHILD_WIPE_NOT_ZERO;
			break;
		}
	snprintf(want, sizeof(want), "\n%lx-", (unsigned long)dontfork);
	if (tl_read_file("/proc/self/maps", procbuf, sizeof(procbuf)) == 0)
		ret |= CHILD_CANNOT_READ_MAPS;
	else if (strstr(procbuf, want))
		ret |= CHILD_DONTFORK_PRESENT;
	/* Write through the shared mapping for the parent to see. */
	memset(shanon, 0xa5, PAGE);
	return ret;
}

static int child_write_ro(void)
{
	*(volatile unsigned char *)ro = 1;
	return 0;
}

static int child_read_guard(void)
{
	return *(volatile unsigned char *)guard;
}

static void check_behaviour(void)
{
	int ret, sig;

	check_flag(dontfork, "dc", "MADV_DONTFORK");
	check_flag(wipe, "wf", "MADV_WIPEONFORK");
	check_flag(locked, "lo", "mlock");

	ret = in_child(child_inherit, &sig);
	tl_expect(ret >= 0, "inheritance child killed by signal %d", sig);
	if (ret > 0) {
		tl_expect(!(ret & CHILD_WIPE_NOT_ZERO), "child saw WIPEONFORK memory not wiped");
		tl_expect(!(ret & CHILD_DONTFORK_PRESENT), "child inherited the DONTFORK region");
	}
	tl_expect(shanon[0] == 0xa5 && shanon[PAGE - 1] == 0xa5,
		  "a child's write to shared anon memory is not visible to the parent");
}

/*
 * Grow the stack VMA now past anything the checks will use, so [stack] has the same extent in
 * both snapshots.
 */
static void __attribute__((noinline)) grow_stack(void)
{
	volatile unsigned char deep[512 * KiB];

	for (size_t i = 0; i < sizeof(deep); i += PAGE)
		deep[i] = 0;
}

int main(void)
{
	unsigned char stack_arr[16 * KiB];
	int sig;

	tl_init();
	grow_stack();

	build();
	tl_fill(stack_arr, sizeof(stack_arr), SEED_STACK);
	take_sums();
	parse_smaps(before, &nr_before);
	tl_ready();
	tl_wait_term();
	parse_smaps(after, &nr_after);

	compare_vmas();
	check_sums();
	check_contents();
	check_fill(stack_arr, sizeof(stack_arr), SEED_STACK, "stack");

	check_behaviour();
	tl_expect(in_child(child_write_ro, &sig) < 0 && sig == SIGSEGV,
		  "writing the read-only region did not fault");
	tl_expect(in_child(child_read_guard, &sig) < 0 && sig == SIGSEGV,
		  "reading the PROT_NONE guard did not fault");

	/* The shared file mapping must still write through to the file. */
	fshared[5] = 0x5a;
	{
		unsigned char c = 0;

		tl_expect(pread(fshared_fd, &c, 1, 5) == 1 && c == 0x5a,
			  "a write to the shared file mapping does not reach the file");
	}
	tl_done();
}
