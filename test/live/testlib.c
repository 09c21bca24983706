// SPDX-License-Identifier: MIT
/* Helpers shared by the live test programs; see testlib.h for the pattern they follow. */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <linux/kcmp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "testlib.h"

volatile sig_atomic_t tl_term;

/* stdio must not malloc() its buffer lazily: see the note in testlib.h. */
static char tl_stdout_buf[BUFSIZ];
static char tl_first_failure[512];
static int tl_nr_failures;
static char tl_dir_buf[4096];
static bool tl_dir_ours; /* made by tl_dir(), not handed to us in $TL_DIR */

static void tl_on_term(int sig)
{
	tl_term = 1;
}

void tl_init(void)
{
	struct sigaction sa = {.sa_handler = tl_on_term};

	setvbuf(stdout, tl_stdout_buf, _IOLBF, sizeof(tl_stdout_buf));
	/* Whatever fds we inherited beyond stdio are no state of ours and would be dumped too. */
	close_range(3, ~0u, 0);

	/*
	 * The engine wants the dumped task to lead its own session (unless --shell-job).  The
	 * runner starts us without job control, so setsid() works; it fails for a process group
	 * leader, which an interactive shell makes of every command it starts.
	 */
	if (setsid() < 0 && getsid(0) != getpid())
		tl_fail("setsid: %m (start it from a non-interactive shell)");

	sigemptyset(&sa.sa_mask);
	if (sigaction(SIGTERM, &sa, NULL))
		tl_fail("sigaction(SIGTERM): %m");
}

void tl_ready(void)
{
	printf("ready %d\n", (int)getpid());
	fflush(stdout);
}

void tl_wait_term(void)
{
	sigset_t term, old, wait;

	/*
	 * Block SIGTERM around the flag test, or a SIGTERM landing just before sigsuspend()
	 * would be missed and we would sleep forever.
	 */
	sigemptyset(&term);
	sigaddset(&term, SIGTERM);
	sigprocmask(SIG_BLOCK, &term, &old);
	wait = old;
	sigdelset(&wait, SIGTERM);
	while (!tl_term)
		sigsuspend(&wait);
	sigprocmask(SIG_SETMASK, &old, NULL);
}

void tl_log(const char *fmt, ...)
{
	static char buf[16384];
	const char *line, *nl;
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	/* Every line gets the prefix, so no logged text can pass for a verdict. */
	for (line = buf;; line = nl + 1) {
		nl = strchrnul(line, '\n');
		printf("# %.*s\n", (int)(nl - line), line);
		if (!*nl || !nl[1])
			break;
	}
	fflush(stdout);
}

static int tl_remove(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	remove(path);
	return 0;
}

/* A scratch dir the runner gave us is the runner's to remove; one we made is ours. */
static void tl_cleanup(void)
{
	if (tl_dir_ours)
		nftw(tl_dir_buf, tl_remove, 16, FTW_DEPTH | FTW_PHYS);
}

void tl_fail(const char *fmt, ...)
{
	va_list ap;

	fputs("FAIL: ", stdout);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	fputc('\n', stdout);
	fflush(stdout);
	tl_cleanup();
	exit(1);
}

void tl_pass(void)
{
	puts("PASS");
	fflush(stdout);
	tl_cleanup();
	exit(0);
}

bool tl_expect(bool cond, const char *fmt, ...)
{
	char msg[sizeof(tl_first_failure)];
	va_list ap;

	if (cond)
		return true;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (!tl_nr_failures++)
		snprintf(tl_first_failure, sizeof(tl_first_failure), "%s", msg);
	tl_log("check failed: %s", msg);
	return false;
}

int tl_failures(void)
{
	return tl_nr_failures;
}

/*
 * The runner gives us a log file opened without O_APPEND, and nothing else writes to it while
 * we are dumped.  If the restored offset of stdout were wrong, our output would land in a hole
 * or over earlier lines; checking offset == size catches that in every test for free.
 */
static void tl_check_stdout_offset(void)
{
	struct stat st;
	off_t pos;

	fflush(stdout);
	if (fstat(STDOUT_FILENO, &st) || !S_ISREG(st.st_mode))
		return;
	if (fcntl(STDOUT_FILENO, F_GETFL) & O_APPEND)
		return;
	pos = lseek(STDOUT_FILENO, 0, SEEK_CUR);
	tl_expect(pos == st.st_size, "stdout offset %lld != log size %lld", (long long)pos,
		  (long long)st.st_size);
}

void tl_done(void)
{
	tl_check_stdout_offset();
	if (!tl_nr_failures)
		tl_pass();
	if (tl_nr_failures == 1)
		tl_fail("%s", tl_first_failure);
	tl_fail("%s (and %d more failed checks)", tl_first_failure, tl_nr_failures - 1);
}

uint64_t tl_hash(const void *buf, size_t len)
{
	const unsigned char *p = buf;
	uint64_t h = 0xcbf29ce484222325ull;
	uint64_t w;

	/* Word at a time: byte-wise FNV over the 64 MiB test regions would dominate the run. */
	for (; len >= 8; len -= 8, p += 8) {
		memcpy(&w, p, 8);
		h = (h ^ w) * 0x100000001b3ull;
		h ^= h >> 29;
	}
	for (; len; len--, p++)
		h = (h ^ *p) * 0x100000001b3ull;
	return h ^ (h >> 32);
}

/* Word i of the stream of a seed: a splitmix64 step, so any word can be checked on its own. */
static uint64_t tl_word(uint64_t seed, uint64_t i)
{
	uint64_t z = seed + (i + 1) * 0x9e3779b97f4a7c15ull;

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

void tl_fill(void *buf, size_t len, uint64_t seed)
{
	unsigned char *p = buf;
	uint64_t i, w;

	for (i = 0; len >= 8; i++, len -= 8, p += 8) {
		w = tl_word(seed, i);
		memcpy(p, &w, 8);
	}
	if (len) {
		w = tl_word(seed, i);
		memcpy(p, &w, len);
	}
}

ssize_t tl_check_fill(const void *buf, size_t len, uint64_t seed)
{
	const unsigned char *p = buf;
	uint64_t i, w;
	size_t off = 0;

	for (i = 0; len - off >= 8; i++, off += 8) {
		w = tl_word(seed, i);
		if (memcmp(p + off, &w, 8))
			goto bad;
	}
	if (len - off) {
		w = tl_word(seed, i);
		if (memcmp(p + off, &w, len - off))
			goto bad;
	}
	return -1;
bad:
	for (size_t j = 0; j < 8 && off + j < len; j++)
		if (p[off + j] != ((unsigned char *)&w)[j])
			return off + j;
	return off;
}

uint64_t tl_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * TL_NSEC_PER_SEC + ts.tv_nsec;
}

void tl_sleep_until(uint64_t deadline_ns)
{
	struct timespec ts = {
		.tv_sec = deadline_ns / TL_NSEC_PER_SEC,
		.tv_nsec = deadline_ns % TL_NSEC_PER_SEC,
	};

	/* An absolute deadline makes EINTR harmless: just go back to sleep. */
	while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL))
		;
}

const char *tl_dir(void)
{
	const char *dir;

	if (tl_dir_buf[0])
		return tl_dir_buf;
	dir = getenv("TL_DIR");
	if (dir && *dir) {
		snprintf(tl_dir_buf, sizeof(tl_dir_buf), "%s", dir);
	} else {
		snprintf(tl_dir_buf, sizeof(tl_dir_buf), "/tmp/crest-tl.XXXXXX");
		if (!mkdtemp(tl_dir_buf)) {
			tl_dir_buf[0] = '\0';
			tl_fail("mkdtemp: %m");
		}
		tl_dir_ours = true;
		tl_log("scratch dir %s", tl_dir_buf);
	}
	return tl_dir_buf;
}

char *tl_path(char *buf, size_t size, const char *name)
{
	if ((size_t)snprintf(buf, size, "%s/%s", tl_dir(), name) >= size)
		tl_fail("path too long: %s/%s", tl_dir(), name);
	return buf;
}

size_t tl_read_file(const char *path, char *buf, size_t size)
{
	size_t len = 0;
	ssize_t n;
	int fd;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		tl_fail("open %s: %m", path);
	while (len + 1 < size) {
		n = read(fd, buf + len, size - 1 - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			tl_fail("read %s: %m", path);
		if (!n)
			break;
		len += n;
	}
	close(fd);
	if (len + 1 >= size)
		tl_fail("%s does not fit in %zu bytes", path, size);
	buf[len] = '\0';
	return len;
}

void tl_write_file(const char *path, const void *buf, size_t len)
{
	const char *p = buf;
	ssize_t n;
	int fd;

	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		tl_fail("create %s: %m", path);
	while (len) {
		n = write(fd, p, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			tl_fail("write %s: %m", path);
		p += n;
		len -= n;
	}
	if (close(fd))
		tl_fail("close %s: %m", path);
}

bool tl_status_field(const char *text, const char *key, char *out, size_t size)
{
	size_t klen = strlen(key);
	const char *p = text, *end;

	while (p && *p) {
		if (!strncmp(p, key, klen) && p[klen] == ':') {
			p += klen + 1;
			while (*p == ' ' || *p == '\t')
				p++;
			end = strchrnul(p, '\n');
			snprintf(out, size, "%.*s", (int)(end - p), p);
			return true;
		}
		p = strchr(p, '\n');
		if (p)
			p++;
	}
	return false;
}

/* 1 when fds a and b are one open file description, 0 when not, -1 when either is closed */
static signed char tl_fdtab_same_file(const struct tl_fdtab *tab, int a, int b)
{
	if (!tab->fd[a].open || !tab->fd[b].open)
		return -1;
	return syscall(SYS_kcmp, getpid(), getpid(), KCMP_FILE, a, b) == 0;
}

void tl_fdtab_snap(struct tl_fdtab *tab)
{
	char link[64];
	struct stat sb;
	ssize_t n;

	for (int fd = 0; fd < TL_FDTAB_MAX; fd++) {
		struct tl_fdent *s = &tab->fd[fd];

		memset(s, 0, sizeof(*s));
		s->fdflags = fcntl(fd, F_GETFD);
		if (s->fdflags < 0)
			continue;
		s->open = true;
		s->flflags = fcntl(fd, F_GETFL);
		if (!fstat(fd, &sb)) {
			s->dev = sb.st_dev;
			s->ino = sb.st_ino;
		}
		snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
		n = readlink(link, s->kind, sizeof(s->kind) - 1);
		if (n < 0)
			tl_fail("readlink %s: %m", link);
		s->kind[n] = '\0';
		if (!strncmp(s->kind, "pipe:", 5))
			s->kind[4] = '\0';
	}
	for (int a = 0; a < TL_FDTAB_MAX; a++)
		for (int b = 0; b < TL_FDTAB_MAX; b++)
			tab->same_file[a][b] = tl_fdtab_same_file(tab, a, b);
}

static bool tl_same_inode(const struct tl_fdent *a, const struct tl_fdent *b)
{
	return a->dev == b->dev && a->ino == b->ino;
}

void tl_fdtab_compare(const struct tl_fdtab *before, const struct tl_fdtab *after,
		      const char *inode_note)
{
	for (int fd = 0; fd < TL_FDTAB_MAX; fd++) {
		const struct tl_fdent *a = &before->fd[fd], *b = &after->fd[fd];

		if (!tl_expect(a->open == b->open, "fd %d is %s", fd, b->open ? "new" : "gone") ||
		    !a->open)
			continue;
		tl_expect(!strcmp(a->kind, b->kind), "fd %d: %s, was %s", fd, b->kind, a->kind);
		tl_expect(a->fdflags == b->fdflags, "fd %d: F_GETFD %#x, was %#x", fd, b->fdflags,
			  a->fdflags);
		tl_expect(a->flflags == b->flflags, "fd %d: F_GETFL %#o, was %#o", fd, b->flflags,
			  a->flflags);
		for (int o = 0; o < fd; o++) {
			bool was_same, now_same;

			if (!before->fd[o].open || !after->fd[o].open)
				continue;
			tl_expect(before->same_file[fd][o] == after->same_file[fd][o],
				  "fds %d and %d %s share an open file description", o, fd,
				  after->same_file[fd][o] == 1 ? "now" : "no longer");
			was_same = tl_same_inode(a, &before->fd[o]);
			now_same = tl_same_inode(b, &after->fd[o]);
			tl_expect(was_same == now_same, "fds %d and %d %s the same inode%s", o, fd,
				  now_same ? "now have" : "no longer have", inode_note);
		}
	}
}
