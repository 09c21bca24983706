// SPDX-License-Identifier: MIT
/*
 * The workload of migrate/root (test/live/migrate.sh): a process whose files keep changing
 * while a migration copies its root directory.
 *
 *   mig_files DIR
 *
 * It makes DIR its working directory and builds a tree there: d0..d3/ holding f00..f39 (4 KiB
 * each), and "log", which it keeps open for appending.  Then, every 2 ms, one change k
 * (k = 1, 2, ...), depending on k % 8:
 *
 *   0..3  rewrite one of the f files in place with new bytes of the same size (the change a
 *         size-and-seconds comparison cannot see);
 *   4     append a line to log through the open fd;
 *   5     create (or replace, by rename) n<k % 23> with a size of its own;
 *   6     delete n<(k + 11) % 23>, if it exists;
 *   7     rename n<(k + 5) % 23>, if it exists, to m<k % 13>.
 *
 * Meanwhile it rewrites MIG_MB (default 16) MiB of memory at about 50 MB/s, 1 MiB at a time, so
 * that pre-copy rounds have pages to copy.  It keeps a model of what every file must hold.
 * SIGUSR1 stops both: "# quiet on HOSTNAME after N changes".  After SIGTERM every file of the
 * tree must be exactly as the model says, with no file missing or extra, log still open on
 * DIR/log at its end, and the memory as last written.  "# changes N" every 100 ms.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include "testlib.h"

#define NDIRS 4
#define NF 40
#define NN 23
#define NM 13
#define FSIZE 4096
#define MAXSIZE 65536
#define TICK_NS (2 * TL_NSEC_PER_MSEC)
#define CHUNK (1ul << 20)
#define CHUNK_TICKS 10 /* 1 MiB every 20 ms */
#define PROGRESS_NS (100 * TL_NSEC_PER_MSEC)

struct model {
	char name[32];
	bool exists;
	uint64_t seed;
	size_t size;
};

/* the f files, then the n files, then the m files */
static struct model files[NF + NN + NM];
static unsigned char buf[MAXSIZE], got[MAXSIZE];
static int logfd;
static uint64_t log_lines; /* lines appended after the header */
static unsigned char *mem;
static size_t nchunks;
static uint64_t gen[1024]; /* the generation each memory chunk was last written with */
static volatile sig_atomic_t quiet;

static void on_usr1(int sig)
{
	quiet = 1;
}

static struct model *f_file(uint64_t i)
{
	return &files[i % NF];
}

static struct model *n_file(uint64_t i)
{
	return &files[NF + i % NN];
}

static struct model *m_file(uint64_t i)
{
	return &files[NF + NN + i % NM];
}

static void put(const char *name, const void *data, size_t len, int flags)
{
	int fd = open(name, O_WRONLY | O_CREAT | flags, 0644);

	if (fd < 0 || pwrite(fd, data, len, 0) != (ssize_t)len || close(fd))
		tl_fail("writing %s: %m", name);
}

/* Write a whole file of the model from its seed and size (replacing it by rename). */
static void make(struct model *m, uint64_t seed, size_t size)
{
	m->seed = seed;
	m->size = size;
	m->exists = true;
	tl_fill(buf, size, seed);
	put("tmp.new", buf, size, O_TRUNC);
	if (rename("tmp.new", m->name))
		tl_fail("rename to %s: %m", m->name);
}

static void log_line(uint64_t k)
{
	char line[64];
	int n = snprintf(line, sizeof(line), "change %llu\n", (unsigned long long)k);

	if (write(logfd, line, n) != n)
		tl_fail("appending to log: %m");
	log_lines++;
}

static void change(uint64_t k)
{
	struct model *m, *to;

	switch (k % 8) {
	case 0 ... 3:
		/* the same size, in place: no rename, no truncation */
		m = f_file(k * 7 + k / 8);
		m->seed = k << 8 | 1;
		tl_fill(buf, FSIZE, m->seed);
		put(m->name, buf, FSIZE, 0);
		break;
	case 4:
		log_line(k);
		break;
	case 5:
		make(n_file(k), k << 8 | 2, 512 + (k * 997) % (MAXSIZE - 512));
		break;
	case 6:
		m = n_file(k + 11);
		if (m->exists && unlink(m->name))
			tl_fail("unlink %s: %m", m->name);
		m->exists = false;
		break;
	case 7:
		m = n_file(k + 5);
		to = m_file(k);
		if (!m->exists)
			break;
		if (rename(m->name, to->name))
			tl_fail("rename %s to %s: %m", m->name, to->name);
		to->exists = true;
		to->seed = m->seed;
		to->size = m->size;
		m->exists = false;
		break;
	}
}

static void check_file(const struct model *m)
{
	struct stat st;
	int fd;

	if (!m->exists) {
		tl_expect(lstat(m->name, &st) && errno == ENOENT, "%s exists, it should not",
			  m->name);
		return;
	}
	fd = open(m->name, O_RDONLY);
	if (!tl_expect(fd >= 0, "%s is missing: %m", m->name))
		return;
	ssize_t n = read(fd, got, sizeof(got));

	close(fd);
	tl_fill(buf, m->size, m->seed);
	tl_expect(n == (ssize_t)m->size && !memcmp(buf, got, m->size),
		  "%s holds %zd bytes, not the %zu last written (seed %llu)%s", m->name, n, m->size,
		  (unsigned long long)m->seed, n == (ssize_t)m->size ? ", and other bytes" : "");
}

/* Nothing in the tree the model does not know. */
static void check_extra(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	char path[300];

	if (!tl_expect(d != NULL, "cannot open %s: %m", dir))
		return;
	while ((de = readdir(d))) {
		bool known = false;

		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		snprintf(path, sizeof(path), "%s%s", strcmp(dir, ".") ? dir : "",
			 strcmp(dir, ".") ? "/" : "");
		strncat(path, de->d_name, sizeof(path) - strlen(path) - 1);
		if (!strcmp(path, "log") || (!strncmp(path, "d", 1) && strlen(path) == 2))
			continue;
		for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++)
			known |= files[i].exists && !strcmp(files[i].name, path);
		tl_expect(known, "%s should not exist", path);
	}
	closedir(d);
}

static void check_log(uint64_t last)
{
	static char want[1 << 20];
	size_t len = 0;
	struct stat st, lst;
	char link[64], path[4096], cwd[4096];
	ssize_t n;

	len += snprintf(want + len, sizeof(want) - len, "log of mig_files\n");
	for (uint64_t k = 1; k <= last && len + 64 < sizeof(want); k++)
		if (k % 8 == 4)
			len += snprintf(want + len, sizeof(want) - len, "change %llu\n",
					(unsigned long long)k);
	FILE *f = fopen("log", "r");
	size_t off = 0;
	int c;
	bool same = true;

	if (!tl_expect(f != NULL, "log is missing: %m"))
		return;
	while ((c = fgetc(f)) != EOF) {
		if (off >= len || want[off] != (char)c)
			same = false;
		off++;
	}
	fclose(f);
	tl_expect(same && off == len, "log holds %zu bytes, %s %zu expected", off,
		  same ? "not the" : "others than the", len);
	/* the open fd is still on DIR/log, and at its end */
	snprintf(link, sizeof(link), "/proc/self/fd/%d", logfd);
	n = readlink(link, path, sizeof(path) - 1);
	path[n > 0 ? n : 0] = 0;
	if (!getcwd(cwd, sizeof(cwd)))
		cwd[0] = 0;
	strncat(cwd, "/log", sizeof(cwd) - strlen(cwd) - 1);
	tl_expect(!strcmp(path, cwd), "the log fd is on '%s', not '%s'", path, cwd);
	tl_expect(!fstat(logfd, &st) && !stat("log", &lst) && st.st_ino == lst.st_ino,
		  "the log fd is not the file log");
	tl_expect(lseek(logfd, 0, SEEK_CUR) == (off_t)len, "the log fd is at %lld, not %zu",
		  (long long)lseek(logfd, 0, SEEK_CUR), len);
}

int main(int argc, char **argv)
{
	const char *mb_env = getenv("MIG_MB");
	size_t mb = mb_env && *mb_env ? strtoul(mb_env, NULL, 10) : 16;
	uint64_t k = 0, tick = 0, next, next_progress;
	struct sigaction sa = {.sa_handler = on_usr1};
	struct utsname u;
	char dir[8];

	tl_init();
	if (argc != 2)
		tl_fail("usage: mig_files DIR");
	sigemptyset(&sa.sa_mask);
	if (sigaction(SIGUSR1, &sa, NULL))
		tl_fail("sigaction: %m");
	if (chdir(argv[1]))
		tl_fail("chdir %s: %m", argv[1]);
	nchunks = mb < 1 ? 1 : mb > 1024 ? 1024 : mb;
	mem = mmap(NULL, nchunks * CHUNK, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1,
		   0);
	if (mem == MAP_FAILED)
		tl_fail("mmap: %m");
	for (size_t c = 0; c < nchunks; c++)
		tl_fill(mem + c * CHUNK, CHUNK, gen[c] = c << 32);
	for (int d = 0; d < NDIRS; d++) {
		snprintf(dir, sizeof(dir), "d%d", d);
		if (mkdir(dir, 0755) && errno != EEXIST)
			tl_fail("mkdir %s: %m", dir);
	}
	for (int i = 0; i < NF; i++) {
		snprintf(files[i].name, sizeof(files[i].name), "d%d/f%02d", i % NDIRS, i);
		make(&files[i], (uint64_t)i << 8, FSIZE);
	}
	for (int i = 0; i < NN; i++)
		snprintf(n_file(i)->name, sizeof(files[0].name), "n%d", i);
	for (int i = 0; i < NM; i++)
		snprintf(m_file(i)->name, sizeof(files[0].name), "m%d", i);
	logfd = open("log", O_WRONLY | O_CREAT | O_TRUNC | O_APPEND, 0644);
	if (logfd < 0 || write(logfd, "log of mig_files\n", 17) != 17)
		tl_fail("log: %m");
	tl_ready();

	next = tl_now_ns();
	next_progress = next + PROGRESS_NS;
	while (!tl_term) {
		if (!quiet) {
			change(++k);
			if (++tick % CHUNK_TICKS == 0) {
				size_t c = (tick / CHUNK_TICKS) % nchunks;

				gen[c]++;
				tl_fill(mem + c * CHUNK, CHUNK, gen[c]);
			}
		} else if (quiet == 1) {
			uname(&u);
			printf("# quiet on %s after %llu changes\n", u.nodename,
			       (unsigned long long)k);
			quiet = 2;
		}
		if (tl_now_ns() >= next_progress) {
			printf("# changes %llu\n", (unsigned long long)k);
			next_progress = tl_now_ns() + PROGRESS_NS;
		}
		next += TICK_NS;
		tl_sleep_until(next);
		if (tl_now_ns() > next + 50 * TL_NSEC_PER_MSEC)
			next = tl_now_ns(); /* held up: no burst of changes to catch up */
	}
	uname(&u);
	tl_log("%llu changes, ended on %s", (unsigned long long)k, u.nodename);
	for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++)
		check_file(&files[i]);
	check_extra(".");
	for (int d = 0; d < NDIRS; d++) {
		snprintf(dir, sizeof(dir), "d%d", d);
		check_extra(dir);
	}
	check_log(k);
	for (size_t c = 0; c < nchunks; c++)
		tl_expect(tl_check_fill(mem + c * CHUNK, CHUNK, gen[c]) < 0,
			  "memory chunk %zu is not its generation %llu", c,
			  (unsigned long long)gen[c]);
	tl_done();
}
