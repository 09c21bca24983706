// SPDX-License-Identifier: MIT
/* /proc parsers.  Every parser reports what it could not parse, naming the file. */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "log.h"
#include "proc.h"

static const struct {
	char code[3];
	unsigned int bit;
} vmflag_codes[] = {
	{"gd", VMF_GROWSDOWN},	  {"lo", VMF_LOCKED},	 {"dc", VMF_DONTCOPY},
	{"wf", VMF_WIPEONFORK},	  {"dd", VMF_DONTDUMP},	 {"hg", VMF_HUGEPAGE},
	{"nh", VMF_NOHUGEPAGE},	  {"mg", VMF_MERGEABLE}, {"mw", VMF_MAYWRITE},
	{"sr", VMF_SEQREAD},	  {"rr", VMF_RANDREAD},	 {"lf", VMF_LOCKONFAULT},
	{"io", VMF_IO},		  {"pf", VMF_PFNMAP},	 {"uw", VMF_UFFD_WP},
	{"um", VMF_UFFD_MISSING},
};

static unsigned int parse_vmflags(const char *p)
{
	unsigned int flags = 0;

	while (*p && *p != '\n') {
		while (*p == ' ')
			p++;
		for (size_t i = 0; i < ARRAY_SIZE(vmflag_codes); i++)
			if (p[0] == vmflag_codes[i].code[0] && p[1] == vmflag_codes[i].code[1])
				flags |= vmflag_codes[i].bit;
		while (*p && *p != ' ' && *p != '\n')
			p++;
	}
	return flags;
}

/* "start-end perms offset major:minor inode   path" */
static int parse_maps_line(const char *line, struct proc_vma *v)
{
	char perms[5];
	int path_off = 0;

	if (sscanf(line, "%lx-%lx %4s %lx %x:%x %lu%n", &v->start, &v->end, perms, &v->pgoff,
		   &v->dev_major, &v->dev_minor, &v->ino, &path_off) < 7)
		return -1;
	while (line[path_off] == ' ') /* not "%lu %n": that would skip the newline too */
		path_off++;
	v->prot = (perms[0] == 'r' ? PROT_READ : 0) | (perms[1] == 'w' ? PROT_WRITE : 0) |
		  (perms[2] == 'x' ? PROT_EXEC : 0);
	v->shared = perms[3] == 's';
	const char *p = line + path_off;
	const char *nl = strchr(p, '\n');
	size_t n = nl ? (size_t)(nl - p) : strlen(p);

	if (n >= sizeof(v->path))
		n = sizeof(v->path) - 1;
	memcpy(v->path, p, n);
	v->path[n] = 0;
	return 0;
}

int proc_vmas_parse(const char *text, struct vec *vmas, const char **bad_line)
{
	struct proc_vma *cur = NULL;
	const char *line;

	for (line = text; line && *line;
	     line = strchr(line, '\n') ? strchr(line, '\n') + 1 : NULL) {
		/* A VMA header starts with a hex digit; smaps fields start with a capital. */
		if (isdigit((unsigned char)line[0]) || (line[0] >= 'a' && line[0] <= 'f')) {
			cur = vec_push(vmas);
			if (!cur) {
				*bad_line = NULL;
				return -1;
			}
			if (parse_maps_line(line, cur)) {
				*bad_line = line;
				return -1;
			}
		} else if (cur && !strncmp(line, "VmFlags:", 8)) {
			cur->vmflags = parse_vmflags(line + 8);
		}
	}
	return 0;
}

int proc_read_vmas(pid_t pid, const char *file, struct vec *vmas, char *bad, size_t bad_len)
{
	const char *bad_line;
	char path[64];
	char *text;
	int ret = 0;

	snprintf(path, sizeof(path), "/proc/%d/%s", pid, file);
	text = read_file_at(AT_FDCWD, path, NULL);
	if (!text)
		return errno ? errno : EIO;
	if (proc_vmas_parse(text, vmas, &bad_line)) {
		ret = bad_line ? EINVAL : ENOMEM;
		if (bad_line && bad_len)
			snprintf(bad, bad_len, "%.*s", (int)strcspn(bad_line, "\n"), bad_line);
	}
	free(text);
	return ret;
}

/*
 * smaps has the VmFlags a dump needs, but the kernel walks every page of every VMA to count
 * what it shows: when only the layout matters (restore), maps is much cheaper.
 */
static int parse_vmas(pid_t pid, struct vec *vmas, const char *file)
{
	char bad[81] = "";
	int err = proc_read_vmas(pid, file, vmas, bad, sizeof(bad));

	if (!err)
		return 0;
	if (err == EINVAL)
		pr_err("/proc/%d/%s: cannot parse line: %s", pid, file, bad);
	else if (err == ENOMEM)
		pr_err("out of memory");
	else
		pr_err("cannot read /proc/%d/%s: %s", pid, file, strerror(err));
	return -1;
}

int proc_read_children(pid_t pid, pid_t tid, struct vec *pids)
{
	char path[64], *text, *p, *end;
	int ret = 0;

	snprintf(path, sizeof(path), "/proc/%d/task/%d/children", pid, tid);
	text = read_file_at(AT_FDCWD, path, NULL);
	if (!text)
		return -1;
	for (p = text; *p; p = end + strspn(end, " \n")) {
		long child = strtol(p, &end, 10);
		pid_t *slot;

		if (end == p)
			break;
		slot = vec_push(pids);
		if (!slot) {
			errno = ENOMEM;
			ret = -1;
			break;
		}
		*slot = (pid_t)child;
	}
	free(text);
	return ret;
}

int proc_parse_smaps(pid_t pid, struct vec *vmas)
{
	return parse_vmas(pid, vmas, "smaps");
}

int proc_parse_maps(pid_t pid, struct vec *vmas)
{
	return parse_vmas(pid, vmas, "maps");
}

int proc_parse_stat(pid_t pid, struct proc_stat *st)
{
	char path[64];
	char *text, *p;
	unsigned long v[53] = {0};
	int n = 0;

	snprintf(path, sizeof(path), "/proc/%d/stat", pid);
	text = read_file_at(AT_FDCWD, path, NULL);
	if (!text) {
		if (errno == ENOENT)
			pr_err("no such process %d", pid);
		else
			pr_perror("cannot read %s", path);
		return -1;
	}
	/* comm may hold anything, even ") ": the state follows the last ')' */
	p = strrchr(text, ')');
	if (!p || p[1] != ' ') {
		pr_err("%s: cannot parse", path);
		free(text);
		return -1;
	}
	st->state = p[2];
	p += 3;
	/* fields 4.. (1-based) */
	for (n = 4; n < 53 && *p; n++) {
		char *end;

		v[n] = strtoul(p, &end, 10);
		if (*end == '-') /* tty_nr and a few others may be negative */
			v[n] = strtol(p, &end, 10);
		if (end == p)
			break;
		p = end;
		while (*p == ' ')
			p++;
	}
	free(text);
	if (n < 53) {
		pr_err("%s: only %d fields", path, n);
		return -1;
	}
	st->ppid = v[4];
	st->pgid = v[5];
	st->sid = v[6];
	st->tty_nr = (int)v[7];
	st->num_threads = v[20];
	st->start_code = v[26];
	st->end_code = v[27];
	st->start_stack = v[28];
	st->start_data = v[45];
	st->end_data = v[46];
	st->start_brk = v[47];
	st->arg_start = v[48];
	st->arg_end = v[49];
	st->env_start = v[50];
	st->env_end = v[51];
	st->exit_code = (int)v[52];
	return 0;
}

static uint64_t hex_field(const char *text, const char *key)
{
	const char *p = proc_field(text, key);

	return p ? strtoull(p, NULL, 16) : 0;
}

int proc_parse_status(pid_t pid, struct proc_status *st)
{
	char path[64];
	char *text;
	const char *p;

	snprintf(path, sizeof(path), "/proc/%d/status", pid);
	text = read_file_at(AT_FDCWD, path, NULL);
	if (!text) {
		if (errno == ENOENT)
			pr_err("no such process %d", pid);
		else
			pr_perror("cannot read %s", path);
		return -1;
	}
	memset(st, 0, sizeof(*st));
	p = proc_field(text, "Umask");
	if (!p || sscanf(p, "%o", &st->umask) != 1)
		goto bad;
	p = proc_field(text, "Uid");
	if (!p || sscanf(p, "%u %u %u %u", &st->uid[0], &st->uid[1], &st->uid[2], &st->uid[3]) != 4)
		goto bad;
	p = proc_field(text, "Gid");
	if (!p || sscanf(p, "%u %u %u %u", &st->gid[0], &st->gid[1], &st->gid[2], &st->gid[3]) != 4)
		goto bad;
	p = proc_field(text, "Groups");
	while (p && *p && *p != '\n' && st->ngroups < (int)ARRAY_SIZE(st->groups)) {
		char *end;
		unsigned long g = strtoul(p, &end, 10);

		if (end == p)
			break;
		st->groups[st->ngroups++] = g;
		p = end;
		while (*p == ' ')
			p++;
	}
	p = proc_field(text, "Threads");
	if (!p)
		goto bad;
	st->threads = atoi(p);
	st->cap_inh = hex_field(text, "CapInh");
	st->cap_prm = hex_field(text, "CapPrm");
	st->cap_eff = hex_field(text, "CapEff");
	st->cap_bnd = hex_field(text, "CapBnd");
	st->cap_amb = hex_field(text, "CapAmb");
	st->sig_cgt = hex_field(text, "SigCgt");
	st->sig_ign = hex_field(text, "SigIgn");
	st->sig_blk = hex_field(text, "SigBlk");
	st->sig_pnd = hex_field(text, "SigPnd");
	st->shd_pnd = hex_field(text, "ShdPnd");
	p = proc_field(text, "NoNewPrivs");
	st->no_new_privs = p && atoi(p);
	p = proc_field(text, "Seccomp");
	st->seccomp = p ? atoi(p) : 0;
	free(text);
	return 0;
bad:
	pr_err("%s: cannot parse", path);
	free(text);
	return -1;
}

int proc_parse_timers(pid_t pid, struct vec *timers)
{
	char path[64], *text, *line;
	struct proc_timer *t = NULL;

	snprintf(path, sizeof(path), "/proc/%d/timers", pid);
	text = read_file_at(AT_FDCWD, path, NULL);
	if (!text) {
		pr_perror("cannot read %s", path);
		return -1;
	}
	for (line = text; line && *line;
	     line = strchr(line, '\n') ? strchr(line, '\n') + 1 : NULL) {
		char how[16];
		int tid;

		if (!strncmp(line, "ID:", 3)) {
			t = vec_push(timers);
			if (!t)
				goto err;
			t->id = atoi(line + 3);
		} else if (!t) {
			continue;
		} else if (!strncmp(line, "signal:", 7)) {
			if (sscanf(line + 7, " %d/%lx", &t->signo, &t->sigev_value) != 2)
				goto err;
		} else if (!strncmp(line, "notify:", 7)) {
			/* "signal/pid.N", "thread/tid.N", "none/pid.N"; +SIGEV_THREAD_ID */
			if (sscanf(line + 7, " %15[a-z]/%*[a-z].%d", how, &tid) != 2)
				goto err;
			t->notify_tid = tid;
			if (!strcmp(how, "none"))
				t->notify = SIGEV_NONE;
			else if (!strcmp(how, "thread"))
				t->notify = SIGEV_THREAD_ID;
			else
				t->notify = SIGEV_SIGNAL;
		} else if (!strncmp(line, "ClockID:", 8)) {
			t->clockid = atoi(line + 8);
		}
	}
	free(text);
	return 0;
err:
	pr_err("%s: cannot parse", path);
	free(text);
	return -1;
}
