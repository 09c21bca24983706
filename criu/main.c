// SPDX-License-Identifier: MIT
/*
 * The crest command line: a thin front over the entry points of include/crest.h.  It parses
 * CRIU-compatible options into struct crest_opts, resolves paths, opens the log, calls one entry
 * point and turns its result into an exit status and at most one line on stderr.  Everything
 * that touches processes lives in the engine, so the library exposes the same behaviour.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "crest.h"
#include "log.h"

/* Long options without a short form. */
enum {
	OPT_LEAVE_RUNNING = 1000,
	OPT_PIDFILE,
	OPT_SKIP_FILE_SIZE_CHECK,
	OPT_PREV_IMAGES_DIR,
	OPT_TRACK_MEM,
	OPT_TCP_ESTABLISHED,
	OPT_EXT_UNIX_SK,
	OPT_FILE_LOCKS,
	OPT_MANAGE_CGROUPS,
	OPT_ROOT,
	OPT_PAGE_SERVER,
	OPT_ADDRESS,
	OPT_PORT,
	OPT_DAEMON,
	OPT_COMPRESS,
	OPT_TLS,
	OPT_TLS_CACERT,
	OPT_TLS_CERT,
	OPT_TLS_KEY,
	OPT_TLS_NO_CN_VERIFY,
	OPT_FREEZE_CGROUP,
	OPT_GHOST_LIMIT,
	OPT_GHOST_FIEMAP,
	OPT_NO_GHOST_FIEMAP,
	OPT_LINK_REMAP,
	OPT_FORCE_IRMAP,
	OPT_IRMAP_SCAN_PATH,
	OPT_INHERIT_FD,
	OPT_STOP_TRACKING,
	OPT_STATS,
	OPT_NETWORK_LOCK,
	OPT_SKIP_IN_FLIGHT,
	OPT_EXTERNAL,
	OPT_TO,
	OPT_FS_SYNC,
	OPT_MAX_ROUNDS,
	OPT_DOWNTIME_TARGET,
	OPT_MIGRATE,
	OPT_LAZY_PAGES,
};

/* A leading ':' makes getopt report a missing argument apart from an unknown option. */
static const char short_opts[] = ":t:D:W:o:v::RjdhV";

static const struct option long_opts[] = {
	{"tree", required_argument, NULL, 't'},
	{"images-dir", required_argument, NULL, 'D'},
	{"work-dir", required_argument, NULL, 'W'},
	{"log-file", required_argument, NULL, 'o'},
	{"verbosity", optional_argument, NULL, 'v'},
	{"leave-running", no_argument, NULL, 'R'},
	{"shell-job", no_argument, NULL, 'j'},
	{"restore-detached", no_argument, NULL, 'd'},
	{"help", no_argument, NULL, 'h'},
	{"version", no_argument, NULL, 'V'},
	{"pidfile", required_argument, NULL, OPT_PIDFILE},
	{"skip-file-size-check", no_argument, NULL, OPT_SKIP_FILE_SIZE_CHECK},
	{"prev-images-dir", required_argument, NULL, OPT_PREV_IMAGES_DIR},
	{"track-mem", no_argument, NULL, OPT_TRACK_MEM},
	{"tcp-established", no_argument, NULL, OPT_TCP_ESTABLISHED},
	{"ext-unix-sk", no_argument, NULL, OPT_EXT_UNIX_SK},
	{"file-locks", no_argument, NULL, OPT_FILE_LOCKS},
	{"manage-cgroups", optional_argument, NULL, OPT_MANAGE_CGROUPS},
	{"root", required_argument, NULL, OPT_ROOT},
	{"page-server", no_argument, NULL, OPT_PAGE_SERVER},
	{"address", required_argument, NULL, OPT_ADDRESS},
	{"port", required_argument, NULL, OPT_PORT},
	{"daemon", no_argument, NULL, OPT_DAEMON},
	{"compress", no_argument, NULL, OPT_COMPRESS},
	{"tls", no_argument, NULL, OPT_TLS},
	{"tls-cacert", required_argument, NULL, OPT_TLS_CACERT},
	{"tls-cert", required_argument, NULL, OPT_TLS_CERT},
	{"tls-key", required_argument, NULL, OPT_TLS_KEY},
	{"tls-no-cn-verify", no_argument, NULL, OPT_TLS_NO_CN_VERIFY},
	{"freeze-cgroup", required_argument, NULL, OPT_FREEZE_CGROUP},
	{"ghost-limit", required_argument, NULL, OPT_GHOST_LIMIT},
	{"ghost-fiemap", no_argument, NULL, OPT_GHOST_FIEMAP},
	{"no-ghost-fiemap", no_argument, NULL, OPT_NO_GHOST_FIEMAP},
	{"link-remap", no_argument, NULL, OPT_LINK_REMAP},
	{"force-irmap", no_argument, NULL, OPT_FORCE_IRMAP},
	{"irmap-scan-path", required_argument, NULL, OPT_IRMAP_SCAN_PATH},
	{"inherit-fd", required_argument, NULL, OPT_INHERIT_FD},
	{"stop-tracking", no_argument, NULL, OPT_STOP_TRACKING},
	{"stats", no_argument, NULL, OPT_STATS},
	{"network-lock", required_argument, NULL, OPT_NETWORK_LOCK},
	{"skip-in-flight", no_argument, NULL, OPT_SKIP_IN_FLIGHT},
	{"external", required_argument, NULL, OPT_EXTERNAL},
	{"to", required_argument, NULL, OPT_TO},
	{"fs-sync", required_argument, NULL, OPT_FS_SYNC},
	{"max-rounds", required_argument, NULL, OPT_MAX_ROUNDS},
	{"downtime-target", required_argument, NULL, OPT_DOWNTIME_TARGET},
	{"migrate", no_argument, NULL, OPT_MIGRATE},
	{"lazy-pages", no_argument, NULL, OPT_LAZY_PAGES},
	{"lazy", no_argument, NULL, OPT_LAZY_PAGES},
	{NULL, 0, NULL, 0},
};

static const char usage_text[] =
	"Usage:\n"
	"  crest dump -t PID -D DIR [options]   checkpoint the tree rooted at PID into DIR\n"
	"  crest pre-dump -t PID -D DIR         copy memory while the tree runs "
	"(--prev-images-dir:\n"
	"                                       only what changed since that round)\n"
	"  crest restore -D DIR [options]       restore the tree saved in DIR\n"
	"  crest page-server -D DIR --port P    receive dumps sent with --page-server into DIR\n"
	"  crest migrate -t PID -D DIR --to HOST[:PORT]\n"
	"                                       move the tree to a page-server --migrate there\n"
	"  crest check                          report the kernel features crest relies on\n"
	"  crest show FILE|DIR                  decode an image, or all images of a dump, to JSON\n"
	"  crest help                           this text\n"
	"  crest --version                      print the version\n"
	"\n"
	"Every option is accepted by every command and ignored where it does not apply.\n"
	"\n"
	"Common options:\n"
	"  -D, --images-dir DIR     directory of the image files\n"
	"  -W, --work-dir DIR       where a relative log file goes (default: the images dir)\n"
	"  -o, --log-file FILE      write the log to FILE (relative names go into the work dir)\n"
	"  -v[N], --verbosity[=N]   log level 0..4 (0 none, 1 errors, 2 +warnings (default),\n"
	"                           3 +info, 4 +debug); a bare -v means 4\n"
	"  -j, --shell-job          the tree is a shell job: it shares crest's terminal\n"
	"  --root DIR               root directory of the tree\n"
	"  -h, --help               this text\n"
	"  -V, --version            print the version\n"
	"\n"
	"Dump options:\n"
	"  -t, --tree PID           root of the process tree to checkpoint\n"
	"  -R, --leave-running      let the tree run on after the dump\n"
	"  --track-mem              arm dirty-memory tracking for a later incremental dump\n"
	"  --prev-images-dir DIR    parent dump for an incremental dump (relative to -D)\n"
	"  --tcp-established        checkpoint established TCP connections (TCP_REPAIR)\n"
	"  --network-lock KIND      drop the dumped connections' packets until the restore:\n"
	"                           nftables (default), iptables or skip\n"
	"  --skip-in-flight         drop connections still in a listener's accept queue\n"
	"  --ext-unix-sk            allow unix sockets connected outside the tree (not yet)\n"
	"  --file-locks             checkpoint file locks (flock, POSIX, OFD) and leases\n"
	"  --ghost-limit SIZE       largest deleted-but-open file copied into the images\n"
	"                           (bytes, or with a K, M or G suffix; default 1M)\n"
	"  --ghost-fiemap           save deleted files by their data extents (default)\n"
	"  --no-ghost-fiemap        save deleted files whole, holes included\n"
	"  --link-remap             hard-link deleted files back where possible instead of\n"
	"                           copying them (the links stay until the restore)\n"
	"  --force-irmap            find the paths of inotify watches by scanning\n"
	"  --irmap-scan-path DIR    where to scan for them (repeatable; default / )\n"
	"  --freeze-cgroup PATH     freeze the tree with this cgroup's freezer (v1 or v2)\n"
	"  --stop-tracking          pre-dump: end the memory tracking of the rounds in -D\n"
	"  --stats                  write the round's page counts and times as JSON into -D\n"
	"                           (stats-dump.json, stats-predump.json)\n"
	"  --page-server            send the images to a page server: pages only there, the\n"
	"                           rest also into -D (the next round reads them)\n"
	"  --address ADDR           address of the page server\n"
	"  --port PORT              port of the page server\n"
	"  --compress               store (and send) pages compressed with lz4\n"
	"\n"
	"Page server options (page-server; the TLS ones also for --page-server):\n"
	"  --address ADDR           listen on ADDR only (default: any)\n"
	"  --port PORT              listen on PORT\n"
	"  -d, --daemon             go to the background once listening (with --pidfile)\n"
	"  --pidfile FILE           write the server's pid to FILE\n"
	"  --tls                    encrypt with TLS\n"
	"  --tls-cacert FILE        CA certificate the peer's certificate must chain to; a\n"
	"                           server with one refuses clients without such a certificate\n"
	"  --tls-cert FILE          our certificate (PEM)\n"
	"  --tls-key FILE           its private key (PEM)\n"
	"  --tls-no-cn-verify       accept a server certificate that does not name --address\n"
	"  Each dump round is stored as DIR/NAME, NAME being the last component of the client's\n"
	"  -D; the server exits once a final dump is stored.\n"
	"\n"
	"Migration options (migrate; the agent: page-server --migrate [--root DIR]):\n"
	"  --to HOST[:PORT]         the destination agent (port 7000 by default)\n"
	"  --fs-sync MODE           rsync (default with --root: two passes to the agent's\n"
	"                           --root), drbd:RESOURCE (switch roles) or shared (nothing)\n"
	"  --max-rounds N           pre-copy rounds at most (default 8)\n"
	"  --downtime-target MS     dump once the estimated downtime is this low (default 100)\n"
	"  --migrate                page-server: be a migration agent (check, sync, restore)\n"
	"  --lazy                   post-copy: the destination runs the tree before its memory\n"
	"                           is filled, and fills it on demand and in the background\n"
	"\n"
	"Restore options:\n"
	"  -d, --restore-detached   return once the tree runs instead of waiting for its root\n"
	"  --pidfile FILE           write the restored root's pid to FILE\n"
	"  --skip-file-size-check   restore files whose size changed since the dump\n"
	"  --lazy-pages             run the tree at once; its private memory is filled on\n"
	"                           demand (userfaultfd) and in the background afterwards\n"
	"  --manage-cgroups[=MODE]  put the tasks back in their cgroups, made again with their\n"
	"                           limits (MODE: soft (default), full, strict, ignore)\n"
	"  --inherit-fd fd[N]:KEY   give the restored tasks crest's fd N for the file KEY\n"
	"                           (a path without the leading '/', or pipe:[INODE])\n"
	"  --external veth[IN]:OUT[@BR]\n"
	"                           a tree with its own network namespace: the other end of\n"
	"                           its veth IN, in crest's namespace, is named OUT (and made\n"
	"                           a port of bridge BR); by default as it was at dump time\n"
	"\n"
	"Without -d, restore waits for the restored root and exits with its exit status\n"
	"(128+N when it was killed by signal N).  On failure crest prints one line on stderr\n"
	"and exits 1; details are in the log.\n";

struct cli {
	struct crest_opts opts;
	const char *verb;
	const char *arg; /* show's FILE|DIR */
	char err[256];	 /* first parse error, reported once the verb is known */
	char log_path[PATH_MAX];
	bool help;
	bool version;
	const char *irmap_paths[65]; /* NULL-terminated */
	const char *inherit[257];
	const char *external[65];
	int nr_irmap, nr_inherit, nr_external;
};

static void cli_error(struct cli *cli, const char *fmt, const char *what)
{
	if (!cli->err[0])
		snprintf(cli->err, sizeof(cli->err), fmt, what);
}

/* Print the one failure line; verb may be NULL when none was recognised. */
static int fail(const char *verb, const char *msg)
{
	if (verb)
		fprintf(stderr, "crest: %s: %s\n", verb, msg);
	else
		fprintf(stderr, "crest: %s\n", msg);
	return 1;
}

/* Strictly a positive decimal number that fits an int: "12x", "", "-1" and "0" are refused. */
static int parse_pos_int(const char *s, int max, int *out)
{
	char *end;
	long v;

	if (!s || !*s || *s == '-' || *s == '+')
		return -1;
	errno = 0;
	v = strtol(s, &end, 10);
	if (errno || *end || v <= 0 || v > max)
		return -1;
	*out = (int)v;
	return 0;
}

/* A size in bytes, with an optional K, M or G suffix (powers of 1024), below 1 PiB. */
static int parse_size(const char *s, uint64_t *out)
{
	static const char suffixes[] = "KMG";
	unsigned long long v;
	const char *unit;
	int shift = 0;
	char *end;

	if (!s || *s < '0' || *s > '9')
		return -1;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (*end && (unit = strchr(suffixes, *end))) {
		shift = 10 * (int)(unit - suffixes + 1);
		end++;
	}
	if (errno || *end || !v || v >= (1ULL << 50) >> shift)
		return -1;
	*out = v << shift;
	return 0;
}

/* -vN: N in 0..4.  A bare -v, or -vv..., asks for everything, which is 4. */
static void parse_verbosity(struct cli *cli, const char *arg)
{
	if (!arg || arg[strspn(arg, "v")] == '\0') {
		cli->opts.verbosity = LOG_DEBUG;
		return;
	}
	if (arg[0] >= '0' && arg[0] <= '4' && arg[1] == '\0')
		cli->opts.verbosity = arg[0] - '0';
	else
		cli_error(cli, "bad verbosity '%s' (expected 0..4)", arg);
}

static void parse_one(struct cli *cli, int c, const char *arg)
{
	struct crest_opts *o = &cli->opts;
	int n;

	switch (c) {
	case 't':
		if (parse_pos_int(arg, INT_MAX, &n))
			cli_error(cli, "bad pid '%s'", arg);
		else
			o->pid = n;
		break;
	case 'D':
		o->images_dir = arg;
		break;
	case 'W':
		o->work_dir = arg;
		break;
	case 'o':
		o->log_file = arg;
		break;
	case 'v':
		parse_verbosity(cli, arg);
		break;
	case 'R':
		o->leave_running = true;
		break;
	case 'j':
		o->shell_job = true;
		break;
	case 'd':
		o->restore_detached = true;
		break;
	case 'h':
		cli->help = true;
		break;
	case 'V':
		cli->version = true;
		break;
	case OPT_PIDFILE:
		o->pidfile = arg;
		break;
	case OPT_SKIP_FILE_SIZE_CHECK:
		o->skip_file_size_check = true;
		break;
	case OPT_PREV_IMAGES_DIR:
		o->prev_images_dir = arg;
		break;
	case OPT_TRACK_MEM:
		o->track_mem = true;
		break;
	case OPT_TCP_ESTABLISHED:
		o->tcp_established = true;
		break;
	case OPT_EXT_UNIX_SK:
		o->ext_unix_sk = true;
		break;
	case OPT_FILE_LOCKS:
		o->file_locks = true;
		break;
	case OPT_MANAGE_CGROUPS:
		o->manage_cgroups = true;
		o->manage_cgroups_mode = arg;
		break;
	case OPT_ROOT:
		o->root = arg;
		break;
	case OPT_FREEZE_CGROUP:
		o->freeze_cgroup = arg;
		break;
	case OPT_STOP_TRACKING:
		o->stop_tracking = true;
		break;
	case OPT_STATS:
		o->stats = true;
		break;
	case OPT_NETWORK_LOCK:
		o->network_lock = arg;
		break;
	case OPT_SKIP_IN_FLIGHT:
		o->skip_in_flight = true;
		break;
	case OPT_TO:
		o->migrate_to = arg;
		break;
	case OPT_FS_SYNC:
		o->fs_sync = arg;
		break;
	case OPT_MAX_ROUNDS:
		if (parse_pos_int(arg, 1000, &n))
			cli_error(cli, "bad --max-rounds '%s'", arg);
		else
			o->max_rounds = n;
		break;
	case OPT_DOWNTIME_TARGET:
		if (parse_pos_int(arg, 3600000, &n))
			cli_error(cli, "bad --downtime-target '%s' (milliseconds)", arg);
		else
			o->downtime_target_ms = n;
		break;
	case OPT_MIGRATE:
		o->migrate = true;
		break;
	case OPT_LAZY_PAGES:
		o->lazy_pages = true;
		break;
	case OPT_EXTERNAL:
		if (strncmp(arg, "veth[", 5) || !strstr(arg, "]:"))
			cli_error(cli, "bad --external '%s' (veth[INSIDE]:OUTSIDE)", arg);
		else if (cli->nr_external >= (int)(sizeof(cli->external) / sizeof(char *)) - 1)
			cli_error(cli, "too many --external options (at '%s')", arg);
		else
			cli->external[cli->nr_external++] = arg;
		o->externals = cli->external;
		break;
	case OPT_PAGE_SERVER:
		o->page_server = true;
		break;
	case OPT_DAEMON:
		o->daemon = true;
		break;
	case OPT_COMPRESS:
		o->compress = true;
		break;
	case OPT_TLS:
		o->tls = true;
		break;
	case OPT_TLS_CACERT:
		o->tls_cacert = arg;
		break;
	case OPT_TLS_CERT:
		o->tls_cert = arg;
		break;
	case OPT_TLS_KEY:
		o->tls_key = arg;
		break;
	case OPT_TLS_NO_CN_VERIFY:
		o->tls_no_cn_verify = true;
		break;
	case OPT_GHOST_LIMIT:
		if (parse_size(arg, &o->ghost_limit))
			cli_error(cli, "bad --ghost-limit '%s' (a size such as 4096, 512K or 2M)",
				  arg);
		break;
	case OPT_GHOST_FIEMAP:
		o->no_ghost_fiemap = false;
		break;
	case OPT_NO_GHOST_FIEMAP:
		o->no_ghost_fiemap = true;
		break;
	case OPT_LINK_REMAP:
		o->link_remap = true;
		break;
	case OPT_FORCE_IRMAP:
		o->force_irmap = true;
		break;
	case OPT_IRMAP_SCAN_PATH:
		if (cli->nr_irmap >= (int)(sizeof(cli->irmap_paths) / sizeof(char *)) - 1)
			cli_error(cli, "too many --irmap-scan-path options (at '%s')", arg);
		else
			cli->irmap_paths[cli->nr_irmap++] = arg;
		o->irmap_scan_paths = cli->irmap_paths;
		break;
	case OPT_INHERIT_FD:
		if (cli->nr_inherit >= (int)(sizeof(cli->inherit) / sizeof(char *)) - 1)
			cli_error(cli, "too many --inherit-fd options (at '%s')", arg);
		else
			cli->inherit[cli->nr_inherit++] = arg;
		o->inherit_fds = cli->inherit;
		break;
	case OPT_ADDRESS:
		o->address = arg;
		break;
	case OPT_PORT:
		if (parse_pos_int(arg, 65535, &n))
			cli_error(cli, "bad port '%s'", arg);
		else
			o->port = n;
		break;
	}
}

/*
 * Name the option getopt refused.  Long options are named as typed (without any "=value");
 * short ones by getopt's optopt, since a group like -jx has no element of its own for x.
 */
static void bad_option(struct cli *cli, int c, const char *elem)
{
	char name[64];
	bool known = false;

	if (strncmp(elem, "--", 2)) {
		snprintf(name, sizeof(name), "-%c", optopt);
		cli_error(cli, c == ':' ? "option '%s' needs an argument" : "unknown option '%s'",
			  name);
		return;
	}
	snprintf(name, sizeof(name), "%.*s", (int)strcspn(elem, "="), elem);
	for (const struct option *o = long_opts; o->name; o++)
		known |= !strcmp(name + 2, o->name);
	if (c == ':')
		cli_error(cli, "option '%s' needs an argument", name);
	else if (known)
		cli_error(cli, "option '%s' takes no argument", name);
	else
		cli_error(cli, "unknown option '%s'", name);
}

/* getopt's own messages are off: every error becomes the single "crest: verb: ..." line. */
static void parse_args(struct cli *cli, int argc, char **argv)
{
	const char *pos[3];
	int npos = 0, c;

	opterr = 0;
	while ((c = getopt_long(argc, argv, short_opts, long_opts, NULL)) != -1) {
		if (c == '?' || c == ':')
			bad_option(cli, c, argv[optind - 1]);
		else
			parse_one(cli, c, optarg);
	}
	/* getopt_long permutes, so options may come before or after the verb. */
	for (; optind < argc; optind++) {
		if (npos < 3)
			pos[npos] = argv[optind];
		npos++;
	}
	if (npos > 0)
		cli->verb = pos[0];
	if (npos > 1)
		cli->arg = pos[1];
	if (npos > 2 || (npos == 2 && strcmp(cli->verb, "show") && strcmp(cli->verb, "help")))
		cli_error(cli, "unexpected argument '%s'", pos[npos == 2 ? 1 : 2]);
}

/*
 * Like CRIU, a relative log name lands in the work dir (-W), which defaults to the images dir,
 * so "dump -D d -o dump.log" leaves the log next to the images it describes.
 */
static int resolve_log(struct cli *cli)
{
	struct crest_opts *o = &cli->opts;
	const char *dir = o->work_dir ? o->work_dir : o->images_dir;

	if (!o->log_file || o->log_file[0] == '/' || !dir)
		return 0;
	if (snprintf(cli->log_path, sizeof(cli->log_path), "%s/%s", dir, o->log_file) >=
	    (int)sizeof(cli->log_path)) {
		cli_error(cli, "log file path too long: %s", o->log_file);
		return -1;
	}
	o->log_file = cli->log_path;
	return 0;
}

/*
 * The pidfile is prepared before the restore, so an unwritable location fails the command
 * while nothing is running yet, and published by rename() afterwards, so a reader never sees
 * a partial number.
 */
struct pidfile {
	char tmp[PATH_MAX];
	int fd;
};

static int pidfile_prepare(struct pidfile *pf, const char *path)
{
	pf->fd = -1;
	if (!path)
		return 0;
	if (snprintf(pf->tmp, sizeof(pf->tmp), "%s.XXXXXX", path) >= (int)sizeof(pf->tmp)) {
		errno = ENAMETOOLONG;
		return -1;
	}
	pf->fd = mkostemp(pf->tmp, O_CLOEXEC);
	if (pf->fd < 0)
		return -1;
	if (fchmod(pf->fd, 0644)) {
		int err = errno;

		close(pf->fd);
		unlink(pf->tmp);
		pf->fd = -1;
		errno = err;
		return -1;
	}
	return 0;
}

static void pidfile_discard(struct pidfile *pf)
{
	if (pf->fd < 0)
		return;
	close(pf->fd);
	unlink(pf->tmp);
	pf->fd = -1;
}

/* CRIU writes the bare number without a newline; readers of its pidfiles expect exactly that. */
static int pidfile_publish(struct pidfile *pf, const char *path, pid_t pid)
{
	char buf[32];
	int len = snprintf(buf, sizeof(buf), "%d", pid);
	int ret = 0;

	if (pf->fd < 0)
		return 0;
	if (write(pf->fd, buf, len) != len || fsync(pf->fd) || rename(pf->tmp, path))
		ret = -1;
	if (ret) {
		int err = errno;

		pidfile_discard(pf);
		errno = err;
		return -1;
	}
	close(pf->fd);
	pf->fd = -1;
	return 0;
}

/* Wait for a process that is not our child: all we learn is that it ended. */
static int wait_foreign(pid_t pid)
{
	int pfd = syscall(SYS_pidfd_open, pid, 0);
	struct pollfd p;

	if (pfd < 0)
		return errno == ESRCH ? 0 : -1;
	p.fd = pfd;
	p.events = POLLIN;
	while (poll(&p, 1, -1) < 0 && errno == EINTR)
		;
	close(pfd);
	return 0;
}

/* Exit status of the restored root, shell style: 128+N when it died of signal N. */
static int wait_restored(pid_t pid)
{
	int status;

	for (;;) {
		pid_t r = waitpid(pid, &status, 0);

		if (r == pid)
			break;
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0 && errno == ECHILD) {
			pr_warn("restored pid %d is not our child: its exit status is unknown",
				pid);
			if (wait_foreign(pid))
				return fail("restore", "cannot wait for the restored process");
			return 0;
		}
		return fail("restore", strerror(errno));
	}
	if (WIFEXITED(status))
		return WEXITSTATUS(status);
	if (WIFSIGNALED(status))
		return 128 + WTERMSIG(status);
	return 1;
}

static int do_restore(struct cli *cli)
{
	struct crest_opts *o = &cli->opts;
	struct pidfile pf;
	pid_t pid = 0;
	char msg[PATH_MAX + 64];

	if (!o->images_dir)
		return fail("restore", "-D DIR is required");
	if (pidfile_prepare(&pf, o->pidfile)) {
		snprintf(msg, sizeof(msg), "cannot create pidfile %s: %s", o->pidfile,
			 strerror(errno));
		return fail("restore", msg);
	}
	if (crest_restore(o, &pid)) {
		pidfile_discard(&pf);
		return fail("restore", crest_last_error());
	}
	if (pidfile_publish(&pf, o->pidfile, pid)) {
		/* A failed restore leaves nothing behind, and nobody would learn this pid. */
		snprintf(msg, sizeof(msg), "cannot write pidfile %s: %s", o->pidfile,
			 strerror(errno));
		pr_err("%s; killing restored pid %d", msg, pid);
		kill(pid, SIGKILL);
		waitpid(pid, NULL, 0);
		return fail("restore", msg);
	}
	pr_info("restored root pid %d", pid);
	if (o->restore_detached)
		return 0;
	return wait_restored(pid);
}

static int do_dump(struct cli *cli)
{
	if (!cli->opts.pid)
		return fail("dump", "-t PID is required");
	if (!cli->opts.images_dir)
		return fail("dump", "-D DIR is required");
	if (crest_dump(&cli->opts))
		return fail("dump", crest_last_error());
	return 0;
}

static int do_pre_dump(struct cli *cli)
{
	if (!cli->opts.images_dir)
		return fail("pre-dump", "-D DIR is required");
	if (cli->opts.stop_tracking) {
		if (crest_stop_tracking(&cli->opts))
			return fail("pre-dump", crest_last_error());
		return 0;
	}
	if (!cli->opts.pid)
		return fail("pre-dump", "-t PID is required");
	if (crest_pre_dump(&cli->opts))
		return fail("pre-dump", crest_last_error());
	return 0;
}

static int do_page_server(struct cli *cli)
{
	struct crest_opts *o = &cli->opts;

	if (!o->images_dir)
		return fail("page-server", "-D DIR is required");
	if (!o->port)
		return fail("page-server", "--port PORT is required");
	/* as in CRIU, -d means --daemon here */
	o->daemon |= o->restore_detached;
	if (crest_page_server(o))
		return fail("page-server", crest_last_error());
	return 0;
}

static int do_migrate(struct cli *cli)
{
	struct crest_opts *o = &cli->opts;

	if (!o->pid)
		return fail("migrate", "-t PID is required");
	if (!o->images_dir)
		return fail("migrate", "-D DIR is required (the source's images)");
	if (!o->migrate_to)
		return fail("migrate", "--to HOST[:PORT] is required");
	o->progress_fd = STDOUT_FILENO;
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (crest_migrate(o))
		return fail("migrate", crest_last_error());
	return 0;
}

static int do_check(struct cli *cli)
{
	if (crest_check(stdout)) {
		fflush(stdout);
		return fail("check", crest_last_error());
	}
	return 0;
}

/* "show" takes its path as an argument; with none, it shows the -D directory. */
static int do_show(struct cli *cli)
{
	const char *path = cli->arg ? cli->arg : cli->opts.images_dir;

	if (!path)
		return fail("show", "which image? usage: crest show FILE|DIR");
	if (crest_show(path, stdout)) {
		fflush(stdout);
		return fail("show", crest_last_error());
	}
	return 0;
}

struct verb {
	const char *name;
	int (*run)(struct cli *cli); /* NULL: known but not supported yet */
};

static const struct verb verbs[] = {
	{"dump", do_dump},
	{"pre-dump", do_pre_dump},
	{"restore", do_restore},
	{"check", do_check},
	{"show", do_show},
	{"help", NULL},
	{"page-server", do_page_server},
	{"migrate", do_migrate},
};

int main(int argc, char **argv)
{
	static struct cli cli;
	const struct verb *v = NULL;
	int ret;

	crest_opts_init(&cli.opts);
	parse_args(&cli, argc, argv);

	for (size_t i = 0; cli.verb && i < sizeof(verbs) / sizeof(verbs[0]); i++)
		if (!strcmp(cli.verb, verbs[i].name))
			v = &verbs[i];

	if (cli.err[0])
		return fail(v ? v->name : NULL, cli.err);
	if (cli.version) {
		printf("crest version %s\n", CREST_VERSION);
		return 0;
	}
	if (cli.help || (v && !strcmp(v->name, "help"))) {
		fputs(usage_text, stdout);
		return 0;
	}
	if (!cli.verb)
		return fail(NULL, "no command given; see 'crest help'");
	if (!v) {
		snprintf(cli.err, sizeof(cli.err), "unknown command '%s'; see 'crest help'",
			 cli.verb);
		return fail(NULL, cli.err);
	}
	if (!v->run)
		return fail(v->name, "not supported yet");

	if (resolve_log(&cli))
		return fail(v->name, cli.err);
	/* dump and the page server create their images directory; the log may live in it */
	if (cli.opts.images_dir && (strstr(v->name, "dump") || !strcmp(v->name, "page-server") ||
				    !strcmp(v->name, "migrate")))
		mkdir(cli.opts.images_dir, 0700);
	if (log_init(cli.opts.log_file, cli.opts.verbosity))
		return fail(v->name, crest_last_error());
	ret = v->run(&cli);
	log_fini();
	return ret;
}
