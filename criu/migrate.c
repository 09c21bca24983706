// SPDX-License-Identifier: MIT
/*
 * Live migration: crest migrate on the source, and the requests a page server started with
 * --migrate (the agent) takes on the destination.
 *
 * The source drives everything over the page server's protocol, one connection a request:
 *
 *   1. CHECK     the agent can run the tree: same architecture and vdso, every PID and TID
 *                free.
 *   2. SYNC      (--root, --fs-sync rsync) the agent starts an rsync daemon on its address,
 *                port+1, for its own --root; the source copies its root there while the tree
 *                runs (first pass).
 *   3. rounds    pre-dump rounds to the agent's page server while the tree runs, each on top
 *                of the last, until the convergence policy says stop (below).
 *   4. final     the final dump, pages and state, to the agent; the tree stays frozen and
 *                its connections locked while dump.c calls back here (before_kill) for:
 *   5.           the second file pass (only what changed), or the DRBD switch (secondary
 *                here, FS: primary there),
 *   6. RESTORE   the agent restores the final round; its OK means the tree runs there.
 *   7.           Only then does the dump kill the tree here; a failure anywhere before
 *                makes the dump release it (connections out of repair mode, lock gone), the
 *                tracking is stopped, ABORT tells the agent to drop what it stored.
 *
 * Convergence: after each round, the downtime a final dump would cost now is estimated as the
 * round's own freeze plus the time to send its dirty bytes at the rate the round achieved.
 * The final dump comes when that estimate is within --downtime-target, when the dirty set
 * stopped shrinking (a round copied at least 90% of the pages of the one before: the workload
 * dirties as fast as we copy), or at --max-rounds.  Every decision is printed.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "crest.h"
#include "internal.h"
#include "log.h"
#include "net-lock.h"
#include "page-server.h"
#include "transport.h"

extern char **environ;

int open_images_dir(const char *dir, bool create); /* dump.c */

#define DEFAULT_PORT 7000
#define DEFAULT_ROUNDS 8
#define DEFAULT_DOWNTIME_MS 100
#define RSYNC_MODULE "crest"

struct migration {
	const struct crest_opts *o;
	int dirfd; /* the local -D: command output (rsync-1.out, ...) goes there */
	char host[256];
	int port;
	int rsync_port;	      /* the agent's rsync daemon, 0: none */
	const char *drbd;     /* --fs-sync drbd:RESOURCE */
	int rounds;	      /* pre-copy rounds done */
	uint64_t bytes;	      /* pages sent in all rounds */
	time_t pass1_started; /* wall clock: files changed since get a checksum pass */
	int done_rounds;      /* pre-copy rounds completed (tracking lives in the last) */
	char id[32];	      /* names this migration's rounds: ID-1, ..., ID-final */
	uint64_t mem_bytes;   /* the first round's copy: what a restore fills */
	double rate;	      /* the best copy rate of a round so far, bytes per ms */
	uint64_t t0;
	struct crest_round_stats final; /* the final dump's numbers */
	double fs1_ms, fs2_ms, restore_ms, downtime_ms;
	pid_t dest_pid; /* the root, running on the destination */
};

static void progress(const struct migration *m, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void progress(const struct migration *m, const char *fmt, ...)
{
	char line[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	pr_info("migrate: %s", line);
	if (m->o->progress_fd > 0)
		dprintf(m->o->progress_fd, "%s\n", line);
}

static double ms_since(uint64_t t)
{
	return (now_ns(CLOCK_MONOTONIC) - t) / 1e6;
}

/* One request to the agent: 1 OK (reply in buf), 0 refused (reason in buf), -1 no answer. */
static int request(const struct migration *m, uint32_t type, const void *payload, size_t len,
		   char *reply, size_t rlen)
{
	struct xport *x = xport_connect(m->host, m->port, m->o);
	int rc;

	if (!x) {
		snprintf(reply, rlen, "cannot reach the destination agent at %s:%d", m->host,
			 m->port);
		return -1;
	}
	xport_set_timeout(x, 600);
	if (ps_send_frame(x, type, 0, payload, len, NULL, 0)) {
		snprintf(reply, rlen, "%s", xport_error(x));
		xport_close(x);
		return -1;
	}
	rc = ps_recv_reply(x, reply, rlen);
	xport_close(x);
	return rc;
}

/* Append the TIDs of pid and of all its descendants to buf (comma separated). */
static int tree_tids(pid_t pid, char *buf, size_t size, int depth)
{
	char path[64], *children;
	struct dirent *de;
	DIR *dir;

	if (depth > 64)
		return -1;
	snprintf(path, sizeof(path), "/proc/%d/task", pid);
	dir = opendir(path);
	if (!dir)
		return -1;
	while ((de = readdir(dir))) {
		size_t len = strlen(buf);

		if (de->d_name[0] == '.')
			continue;
		if (len + strlen(de->d_name) + 2 >= size) {
			closedir(dir);
			return -1;
		}
		snprintf(buf + len, size - len, "%s%s", len ? "," : "", de->d_name);
		snprintf(path, sizeof(path), "/proc/%d/task/%s/children", pid, de->d_name);
		children = read_file_at(AT_FDCWD, path, NULL);
		for (char *p = children, *end; p && *p; p = end) {
			long child = strtol(p, &end, 10);

			if (end == p)
				break;
			if (tree_tids(child, buf, size, depth + 1)) {
				free(children);
				closedir(dir);
				return -1;
			}
		}
		free(children);
	}
	closedir(dir);
	return 0;
}

static void hex(const unsigned char *b, size_t n, char *out)
{
	for (size_t i = 0; i < n; i++)
		sprintf(out + 2 * i, "%02x", b[i]);
}

/* What the destination must match: "key=value" lines. */
static int host_facts(char *buf, size_t size, pid_t root)
{
	unsigned char digest[32];
	char vdso[65] = "";
	struct utsname u;
	size_t len;
	int n;

	uname(&u);
	if (!vdso_digest(digest, &len))
		hex(digest, sizeof(digest), vdso);
	n = snprintf(buf, size, "arch=%s\nrelease=%s\nvdso=%s\ntids=", u.machine, u.release, vdso);
	if (root && tree_tids(root, buf + n, size - n - 1, 0)) {
		pr_err("cannot list the threads of the tree of %d", root);
		return -1;
	}
	strcat(buf, "\n");
	return 0;
}

static const char *fact(const char *facts, const char *key, char *out, size_t size)
{
	size_t klen = strlen(key);

	for (const char *p = facts; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL) {
		if (!strncmp(p, key, klen) && p[klen] == '=') {
			snprintf(out, size, "%.*s", (int)strcspn(p + klen + 1, "\n"), p + klen + 1);
			return out;
		}
	}
	out[0] = 0;
	return out;
}

/*
 * Run argv, its output in DIR/name.out; 0 when it exits 0 (or also_ok, when not 0).  On
 * failure, its first line.
 */
static int run_logged(int dirfd, const char *name, char *const argv[], int also_ok, char *why,
		      size_t wlen)
{
	char path[64], *text;
	int out, rc;

	snprintf(path, sizeof(path), "%s.out", name);
	out = openat(dirfd, path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (out < 0) {
		snprintf(why, wlen, "cannot create %s: %s", path, strerror(errno));
		return -1;
	}
	rc = run_wait(argv, out);
	close(out);
	if (!rc || (also_ok && rc == also_ok))
		return 0;
	if (rc < 0) {
		snprintf(why, wlen, "cannot run %s: %s", argv[0], strerror(errno));
		return -1;
	}
	text = read_file_at(dirfd, path, NULL);
	snprintf(why, wlen, "%s failed: %.*s", argv[0], text ? (int)strcspn(text, "\n") : 0,
		 text ? text : "");
	free(text);
	return -1;
}

/* The words of $CREST_DRBDADM (default "drbdadm"), then the action and the resource. */
static int drbdadm(int dirfd, const char *action, const char *res, char *why, size_t wlen)
{
	const char *cmd = getenv("CREST_DRBDADM");
	char words[512], *argv[32];
	int n = 0;

	snprintf(words, sizeof(words), "%s", cmd && *cmd ? cmd : "drbdadm");
	for (char *save, *w = strtok_r(words, " ", &save); w && n < 29;
	     w = strtok_r(NULL, " ", &save))
		argv[n++] = w;
	argv[n++] = (char *)action;
	argv[n++] = (char *)res;
	argv[n] = NULL;
	return run_logged(dirfd, action, argv, 0, why, wlen);
}

/* nftw() has no argument for its callback: the pass being listed. */
static FILE *recent_list;
static time_t recent_since;
static size_t recent_root_len;

static int note_recent(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
	if (type == FTW_F && st->st_mtime >= recent_since && path[recent_root_len])
		fprintf(recent_list, "%s\n", path + recent_root_len + 1);
	return 0;
}

/*
 * rsync's quick check (size and mtime) misses a file rewritten with the same size within the
 * timestamp granularity of the pass 1 copy; pass 2 runs with the tree frozen and must miss
 * nothing, so files modified since pass 1 began are compared by content (--checksum).  The
 * migration test's same-size rewrites showed it every time.  1: none to check.
 */
static int list_recent(struct migration *m, char *path, size_t size)
{
	int fd;

	snprintf(path, size, "%s/pass2-recent.txt", m->o->images_dir);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	recent_list = fd >= 0 ? fdopen(fd, "w") : NULL;
	if (!recent_list) {
		if (fd >= 0)
			close(fd);
		pr_perror("cannot write %s", path);
		return -1;
	}
	recent_since = m->pass1_started - 2;
	recent_root_len = strlen(m->o->root);
	nftw(m->o->root, note_recent, 64, FTW_PHYS | FTW_MOUNT);
	long len = ftell(recent_list);

	fclose(recent_list);
	return len > 0 ? 0 : 1;
}

static int rsync_pass(struct migration *m, int pass, double *ms)
{
	char src[PATH_MAX], dst[512], why[512], from[PATH_MAX + 64], list[PATH_MAX + 32];
	char *argv[] = {"rsync", "-aH", "--delete", "--numeric-ids", src, dst, NULL};
	char *again[] = {"rsync", "-aH", "--numeric-ids", "--checksum", from, src, dst, NULL};
	uint64_t t = now_ns(CLOCK_MONOTONIC);
	char name[16];
	int rc;

	snprintf(src, sizeof(src), "%s/", m->o->root);
	snprintf(dst, sizeof(dst), "rsync://%s:%d/" RSYNC_MODULE "/", m->host, m->rsync_port);
	snprintf(name, sizeof(name), "rsync-%d", pass);
	if (pass == 1)
		m->pass1_started = time(NULL);
	/* files vanishing while the tree runs (exit 24) are normal in pass 1 */
	if (run_logged(m->dirfd, name, argv, pass == 1 ? 24 : 0, why, sizeof(why))) {
		pr_err("file system pass %d: %s", pass, why);
		return -1;
	}
	if (pass == 2) {
		rc = list_recent(m, list, sizeof(list));
		snprintf(from, sizeof(from), "--files-from=%s", list);
		if (rc < 0 ||
		    (!rc && run_logged(m->dirfd, "rsync-2-checksum", again, 0, why, sizeof(why)))) {
			pr_err("file system pass 2: %s", rc < 0 ? "cannot list recent files" : why);
			return -1;
		}
	}
	*ms = ms_since(t);
	progress(m, "file system pass %d: %s synced in %.0f ms", pass, m->o->root, *ms);
	return 0;
}

/* Steps 5 and 6, the tree frozen: called back by the final dump. */
static int finish_on_destination(void *arg)
{
	struct migration *m = arg;
	char reply[PS_MSG_MAX + 1], why[512];
	uint64_t t;
	int rc;

	if (m->rsync_port && rsync_pass(m, 2, &m->fs2_ms))
		return -1;
	if (m->drbd) {
		t = now_ns(CLOCK_MONOTONIC);
		if (drbdadm(m->dirfd, "secondary", m->drbd, why, sizeof(why))) {
			pr_err("DRBD: %s", why);
			return -1;
		}
		rc = request(m, PS_FS, m->drbd, strlen(m->drbd), reply, sizeof(reply));
		if (rc != 1) {
			pr_err("DRBD: the destination cannot become primary: %s", reply);
			drbdadm(m->dirfd, "primary", m->drbd, why, sizeof(why));
			return -1;
		}
		m->fs2_ms = ms_since(t);
		progress(m, "DRBD resource %s switched to the destination in %.0f ms", m->drbd,
			 m->fs2_ms);
	}
	t = now_ns(CLOCK_MONOTONIC);
	snprintf(why, sizeof(why), "%s-final%s", m->id, m->o->lazy_pages ? " lazy" : "");
	rc = request(m, PS_RESTORE, why, strlen(why), reply, sizeof(reply));
	if (rc != 1) {
		pr_err("the destination could not restore the tree: %s", reply);
		return -1;
	}
	m->restore_ms = ms_since(t);
	m->dest_pid = atoi(reply);
	m->downtime_ms = ms_since(m->final.frozen_at_ns);
	progress(m, "restored on the destination in %.0f ms: the tree runs there as pid %d",
		 m->restore_ms, m->dest_pid);
	return 0;
}

/* Does the last round say: dump now?  Prints why either way. */
static bool converged(struct migration *m, const struct crest_round_stats *s, uint64_t prev_pages)
{
	double rate = s->total_ms > 0 ? s->bytes_written / s->total_ms : 0; /* bytes per ms */
	double est;

	/* small rounds are all overhead: the link's rate shows in the big ones */
	if (rate > m->rate)
		m->rate = rate;
	if (m->rounds == 1)
		m->mem_bytes = s->bytes_written;
	/*
	 * The final dump: freeze as this round's, its dirty pages (as many again) sent, and the
	 * restore there: filling the whole memory (about 1 ms a MiB), unless it is lazy.
	 */
	est = s->frozen_ms + (m->rate > 0 ? s->bytes_written / m->rate : 0) +
	      (m->o->lazy_pages ? 20 : m->mem_bytes / 1048576.0);
	int target = m->o->downtime_target_ms ?: DEFAULT_DOWNTIME_MS;
	int max = m->o->max_rounds ?: DEFAULT_ROUNDS;

	progress(m,
		 "round %d: %llu pages (%.1f MiB) in %.0f ms, %.0f MiB/s, frozen %.1f ms; "
		 "estimated downtime %.0f ms",
		 m->rounds, (unsigned long long)s->pages_written, s->bytes_written / 1048576.0,
		 s->total_ms, rate * 1000 / 1048576.0, s->frozen_ms, est);
	if (m->rounds >= 2 && est <= target) {
		progress(m, "  -> within the %d ms target: final dump", target);
		return true;
	}
	if (m->rounds >= 2 && s->pages_written * 10 >= prev_pages * 9) {
		progress(m,
			 "  -> the dirty set stopped shrinking (%llu pages after %llu): final "
			 "dump",
			 (unsigned long long)s->pages_written, (unsigned long long)prev_pages);
		return true;
	}
	if (m->rounds >= max) {
		progress(m, "  -> %d rounds, the most allowed: final dump", max);
		return true;
	}
	progress(m, "  -> another round");
	return false;
}

static int parse_target(struct migration *m)
{
	const char *to = m->o->migrate_to, *colon;

	if (!to || !*to) {
		pr_err("migrate needs --to HOST[:PORT]");
		return -1;
	}
	colon = strrchr(to, ':');
	snprintf(m->host, sizeof(m->host), "%.*s", colon ? (int)(colon - to) : (int)strlen(to), to);
	m->port = colon ? atoi(colon + 1) : DEFAULT_PORT;
	if (!m->host[0] || m->port <= 0 || m->port > 65535) {
		pr_err("bad --to '%s' (HOST[:PORT])", to);
		return -1;
	}
	if (m->o->fs_sync && strcmp(m->o->fs_sync, "rsync") && strcmp(m->o->fs_sync, "shared") &&
	    strncmp(m->o->fs_sync, "drbd:", 5)) {
		pr_err("bad --fs-sync '%s' (rsync, drbd:RESOURCE or shared)", m->o->fs_sync);
		return -1;
	}
	if (m->o->fs_sync && !strncmp(m->o->fs_sync, "drbd:", 5))
		m->drbd = m->o->fs_sync + 5;
	if (m->o->fs_sync && !strcmp(m->o->fs_sync, "rsync") && !m->o->root) {
		pr_err("--fs-sync rsync needs --root DIR");
		return -1;
	}
	return 0;
}

/* Steps 1 and 2. */
static int prepare(struct migration *m)
{
	char facts[PS_MSG_MAX], reply[PS_MSG_MAX + 1];
	int rc;

	if (host_facts(facts, sizeof(facts), m->o->pid))
		return -1;
	rc = request(m, PS_CHECK, facts, strlen(facts), reply, sizeof(reply));
	if (rc != 1) {
		pr_err("%s: %s", rc ? "the destination cannot take the tree" : "check refused",
		       reply);
		return -1;
	}
	progress(m, "destination %s:%d checked: same architecture and vdso, pids free", m->host,
		 m->port);
	if (!m->o->root || m->drbd || (m->o->fs_sync && !strcmp(m->o->fs_sync, "shared")))
		return 0;
	rc = request(m, PS_SYNC, NULL, 0, reply, sizeof(reply));
	if (rc != 1) {
		pr_err("the destination cannot receive files: %s", reply);
		return -1;
	}
	m->rsync_port = atoi(reply);
	return rsync_pass(m, 1, &m->fs1_ms);
}

/* Step 3: pre-copy rounds into DIR/1, DIR/2, ... */
static int precopy(struct migration *m)
{
	uint64_t prev_pages = 0;

	for (;;) {
		struct crest_opts ro = *m->o;
		struct crest_round_stats s = {0};
		char dir[PATH_MAX], prev[64];

		m->rounds++;
		snprintf(dir, sizeof(dir), "%s/%s-%d", m->o->images_dir, m->id, m->rounds);
		snprintf(prev, sizeof(prev), "../%s-%d", m->id, m->rounds - 1);
		ro.images_dir = dir;
		ro.prev_images_dir = m->rounds > 1 ? prev : NULL;
		ro.page_server = true;
		ro.address = m->host;
		ro.port = m->port;
		ro.track_mem = true;
		ro.round_stats = &s;
		if (crest_pre_dump(&ro))
			return -1;
		m->done_rounds = m->rounds;
		m->bytes += s.bytes_written;
		if (converged(m, &s, prev_pages))
			return 0;
		prev_pages = s.pages_written;
	}
}

static void abort_destination(struct migration *m)
{
	char names[PS_MSG_MAX], reply[PS_MSG_MAX + 1];
	size_t len = 0;

	for (int i = 1; i <= m->rounds && len + 64 < sizeof(names); i++)
		len += snprintf(names + len, sizeof(names) - len, "%s-%d", m->id, i) + 1;
	len += snprintf(names + len, sizeof(names) - len, "%s-final", m->id) + 1;
	if (request(m, PS_ABORT, names, len, reply, sizeof(reply)) != 1)
		pr_warn("the destination did not confirm the abort: %s", reply);
}

int crest_migrate(const struct crest_opts *o)
{
	struct migration m = {.o = o, .dirfd = -1, .t0 = now_ns(CLOCK_MONOTONIC)};
	struct crest_opts fo = *o;
	char dir[PATH_MAX], prev[64], saved[1024];

	error_reset();
	/* rounds are named after the migration: a retry never meets an earlier one's */
	snprintf(m.id, sizeof(m.id), "m%llx", (unsigned long long)(now_ns(CLOCK_REALTIME) / 1000));
	if (o->pid <= 0 || !o->images_dir) {
		pr_err("migrate needs -t PID and -D DIR (where the source keeps its images)");
		return -1;
	}
	if (parse_target(&m) || (m.dirfd = open_images_dir(o->images_dir, true)) < 0 ||
	    prepare(&m) || precopy(&m))
		goto fail;
	/* step 4: the final dump; 5 and 6 happen in its callback, 7 is its kill */
	snprintf(dir, sizeof(dir), "%s/%s-final", o->images_dir, m.id);
	snprintf(prev, sizeof(prev), "../%s-%d", m.id, m.rounds);
	fo.images_dir = dir;
	fo.prev_images_dir = prev;
	fo.page_server = true;
	fo.address = m.host;
	fo.port = m.port;
	fo.track_mem = true;
	fo.tcp_established = true;
	fo.leave_running = false;
	fo.round_stats = &m.final;
	fo.before_kill = finish_on_destination;
	fo.before_kill_arg = &m;
	progress(&m, "final dump: freezing the tree");
	if (crest_dump(&fo))
		goto fail;
	m.bytes += m.final.bytes_written;
	/* the tree's connections are the destination's now: nothing left to lock here */
	if (o->network_lock && netlock_parse(o->network_lock) < 0)
		pr_warn("unknown --network-lock %s", o->network_lock);
	else if (netlock_release(o->network_lock ? netlock_parse(o->network_lock)
						 : NETLOCK_NFTABLES,
				 o->pid))
		pr_warn("the source's network lock of %d stays", o->pid);
	progress(&m,
		 "migrated in %.0f ms: %d pre-copy rounds, %.1f MiB of pages sent, downtime %.0f "
		 "ms (final dump %.0f ms frozen, %llu pages; file pass %.0f ms; restore %.0f ms)",
		 ms_since(m.t0), m.rounds, m.bytes / 1048576.0, m.downtime_ms, m.final.frozen_ms,
		 (unsigned long long)m.final.pages_written, m.fs2_ms, m.restore_ms);
	close(m.dirfd);
	return 0;
fail:
	snprintf(saved, sizeof(saved), "%s", error_get());
	if (m.rounds) {
		struct crest_opts so = *o;

		/* the tracking lives on in the last round that completed */
		if (m.done_rounds) {
			snprintf(dir, sizeof(dir), "%s/%s-%d", o->images_dir, m.id, m.done_rounds);
			so.images_dir = dir;
			crest_stop_tracking(&so);
		}
		abort_destination(&m);
	}
	error_reset();
	error_set("%s", saved);
	progress(&m, "migration failed: %s; the tree runs on here", saved);
	if (m.dirfd >= 0)
		close(m.dirfd);
	return -1;
}

/* ---- the agent: page-server --migrate ---- */

static pid_t rsyncd_pid;
static char rsyncd_conf[64]; /* read again at every connection: removed at the end */
static pid_t restored_pid;

static int reply(struct xport *x, bool ok, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static int reply(struct xport *x, bool ok, const char *fmt, ...)
{
	char text[PS_MSG_MAX];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	if (!ok)
		pr_err("migrate agent: %s", text);
	ps_send_frame(x, ok ? PS_OK : PS_ERR, 0, text, strlen(text), NULL, 0);
	return 0;
}

static int serve_check(struct xport *x, const char *facts)
{
	static char mine[PS_MSG_MAX], tids[PS_MSG_MAX];
	char a[256], b[256];

	host_facts(mine, sizeof(mine), 0);
	if (strcmp(fact(facts, "arch", a, sizeof(a)), fact(mine, "arch", b, sizeof(b))))
		return reply(x, false, "the source is %s, this host %s", a, b);
	if (strcmp(fact(facts, "vdso", a, sizeof(a)), fact(mine, "vdso", b, sizeof(b))))
		return reply(x, false,
			     "this kernel's vdso differs from the source's (kernel %s "
			     "here): a restore would be refused",
			     fact(mine, "release", b, sizeof(b)));
	fact(facts, "tids", tids, sizeof(tids));
	for (char *p = tids, *end; *p; p = *end ? end + 1 : end) {
		long tid = strtol(p, &end, 10);
		char path[64];

		if (end == p)
			break;
		snprintf(path, sizeof(path), "/proc/%ld", tid);
		if (!access(path, F_OK))
			return reply(x, false, "pid %ld is taken on the destination", tid);
	}
	return reply(x, true, "%s", "");
}

static int start_rsyncd(const struct crest_opts *o, int port)
{
	char conf[] = "/tmp/crest-rsyncd-XXXXXX", caddr[300], cport[32], cconf[96];
	char *argv[] = {"rsync", "--daemon", "--no-detach", cport, cconf, NULL, NULL};
	FILE *f;
	int fd = mkstemp(conf);

	if (fd < 0 || !(f = fdopen(fd, "w"))) {
		if (fd >= 0)
			close(fd);
		return -1;
	}
	/*
	 * Chrooted into the module: without a chroot the daemon rewrites absolute symbolic
	 * links to keep them inside the module, and a container's tree is full of them
	 * (busybox's applets), meant for its own root.  numeric ids: no user lookups there.
	 */
	fprintf(f,
		"use chroot = yes\nnumeric ids = yes\nuid = 0\ngid = 0\n"
		"[" RSYNC_MODULE "]\n  path = %s\n  read only = false\n",
		o->root);
	fclose(f);
	snprintf(cport, sizeof(cport), "--port=%d", port);
	snprintf(cconf, sizeof(cconf), "--config=%s", conf);
	if (o->address) {
		snprintf(caddr, sizeof(caddr), "--address=%s", o->address);
		argv[5] = caddr;
	}
	snprintf(rsyncd_conf, sizeof(rsyncd_conf), "%s", conf);
	if (posix_spawnp(&rsyncd_pid, "rsync", NULL, NULL, argv, environ)) {
		rsyncd_pid = 0;
		unlink(conf);
		rsyncd_conf[0] = 0;
		return -1;
	}
	/* the daemon reads its configuration at start; it listens within moments */
	for (int i = 0; i < 100; i++) {
		char probe[64];
		FILE *p;

		snprintf(probe, sizeof(probe), "/proc/%d/net/tcp", rsyncd_pid);
		p = fopen(probe, "r");
		if (p) {
			char line[256], want[16];
			bool up = false;

			snprintf(want, sizeof(want), ":%04X ", port);
			while (!up && fgets(line, sizeof(line), p))
				up = strstr(line, want) && strstr(line, " 0A ");
			fclose(p);
			if (up)
				break;
		}
		usleep(20000);
	}
	return 0;
}

void migrate_agent_fini(void)
{
	int status;

	if (rsyncd_pid > 0) {
		kill(rsyncd_pid, SIGTERM);
		waitpid(rsyncd_pid, &status, 0);
		rsyncd_pid = 0;
	}
	if (rsyncd_conf[0])
		unlink(rsyncd_conf);
	rsyncd_conf[0] = 0;
}

static int serve_restore(const struct crest_opts *o, struct xport *x, char *round)
{
	struct crest_opts ro = *o;
	char dir[PATH_MAX + PS_MSG_MAX + 2], *lazy = strchr(round, ' ');
	pid_t pid;

	/* "NAME" or "NAME lazy" */
	if (lazy) {
		*lazy++ = 0;
		ro.lazy_pages = !strcmp(lazy, "lazy");
	}
	if (!*round || strchr(round, '/') || round[0] == '.')
		return reply(x, false, "bad round name");
	snprintf(dir, sizeof(dir), "%s/%s", o->images_dir, round);
	ro.images_dir = dir;
	ro.restore_detached = true;
	ro.migrate = false;
	if (crest_restore(&ro, &pid)) {
		reply(x, false, "%s", crest_last_error());
		return 0;
	}
	restored_pid = pid;
	pr_info("migrate agent: round %s restored, root pid %d", round, pid);
	reply(x, true, "%d", pid);
	return 2;
}

static int serve_abort(int rootfd, struct xport *x, const char *names, size_t len)
{
	if (restored_pid > 0)
		kill(restored_pid, SIGKILL);
	for (size_t off = 0; off < len; off += strlen(names + off) + 1)
		if (names[off] && !strchr(names + off, '/') && names[off] != '.')
			ps_remove_round(rootfd, names + off);
	pr_info("migrate agent: the source gave up; its rounds are removed");
	reply(x, true, "%s", "");
	return 2;
}

int migrate_serve(const struct crest_opts *o, int rootfd, struct xport *x, const struct ps_frame *f)
{
	char msg[PS_MSG_MAX + 1], why[512];

	if (f->len > PS_MSG_MAX || (f->len && xport_recv(x, msg, f->len) <= 0)) {
		pr_err("migrate agent: a bad request from %s", xport_peer(x));
		return 0;
	}
	msg[f->len] = 0;
	switch (f->type) {
	case PS_CHECK:
		return serve_check(x, msg);
	case PS_SYNC:
		if (!o->root)
			return reply(x, false, "this agent has no --root to receive files into");
		if (!rsyncd_pid && start_rsyncd(o, o->port + 1))
			return reply(x, false, "cannot start the rsync daemon");
		return reply(x, true, "%d", o->port + 1);
	case PS_FS:
		if (drbdadm(rootfd, "primary", msg, why, sizeof(why)))
			return reply(x, false, "%s", why);
		return reply(x, true, "%s", "");
	case PS_RESTORE:
		return serve_restore(o, x, msg);
	case PS_ABORT:
		return serve_abort(rootfd, x, msg, f->len);
	}
	return reply(x, false, "unknown request %u", f->type);
}
