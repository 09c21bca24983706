// SPDX-License-Identifier: MIT
/*
 * Credentials: uids, gids, supplementary groups, capability sets, securebits, no_new_privs.
 * Restored last of all, by remote syscalls: once a task drops privileges it can no longer do
 * what the rest of the restore needs (PR_SET_MM_MAP, mapping files crest opened for it).
 */
#include <errno.h>
#include <linux/capability.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "internal.h"
#include "log.h"

#ifndef SECBIT_NO_SETUID_FIXUP
#define SECBIT_NO_SETUID_FIXUP (1 << 2)
#endif

int creds_dump(struct dump_ctx *d)
{
	const struct proc_status *st = &d->status;
	CredsEntry *c = calloc(1, sizeof(*c));
	long secbits;

	if (!c)
		return -1;
	creds_entry__init(c);
	d->core->creds = c;
	c->uid = st->uid[0];
	c->euid = st->uid[1];
	c->suid = st->uid[2];
	c->fsuid = st->uid[3];
	c->gid = st->gid[0];
	c->egid = st->gid[1];
	c->sgid = st->gid[2];
	c->fsgid = st->gid[3];
	c->groups = calloc(st->ngroups + 1, sizeof(uint32_t));
	if (!c->groups)
		return -1;
	memcpy(c->groups, st->groups, st->ngroups * sizeof(uint32_t));
	c->n_groups = st->ngroups;
	c->cap_inh = st->cap_inh;
	c->cap_prm = st->cap_prm;
	c->cap_eff = st->cap_eff;
	c->cap_bnd = st->cap_bnd;
	c->cap_amb = st->cap_amb;
	c->no_new_privs = st->no_new_privs;
	secbits = rsys1(&d->rs, SYS_prctl, PR_GET_SECUREBITS);
	if (secbits < 0) {
		pr_err("cannot read the securebits of %d (%ld)", d->pid, secbits);
		return -1;
	}
	c->secbits = secbits;
	return 0;
}

static bool creds_equal(const CredsEntry *c, const struct proc_status *st, long secbits)
{
	unsigned int uid[4] = {c->uid, c->euid, c->suid, c->fsuid};
	unsigned int gid[4] = {c->gid, c->egid, c->sgid, c->fsgid};

	return !memcmp(uid, st->uid, sizeof(uid)) && !memcmp(gid, st->gid, sizeof(gid)) &&
	       (int)c->n_groups == st->ngroups &&
	       !memcmp(c->groups, st->groups, c->n_groups * sizeof(uint32_t)) &&
	       c->cap_inh == st->cap_inh && c->cap_prm == st->cap_prm &&
	       c->cap_eff == st->cap_eff && c->cap_bnd == st->cap_bnd &&
	       c->cap_amb == st->cap_amb && c->no_new_privs == st->no_new_privs &&
	       c->secbits == (uint32_t)secbits;
}

#define RCALL(what, call)                                                           \
	do {                                                                        \
		long __r = (call);                                                  \
		if (__r < 0) {                                                      \
			pr_err("restoring credentials of %d: %s: %s", r->pid, what, \
			       strerror((int)-__r));                                \
			return -1;                                                  \
		}                                                                   \
	} while (0)

/* Credentials are per thread in the kernel: each thread sets its own. */
int creds_restore(struct restore_ctx *r, struct restore_thread *t)
{
	const CredsEntry *c = r->core->creds;
	struct proc_status now;
	struct rsys *rs = &t->rs;
	long secbits = rsys1(rs, SYS_prctl, PR_GET_SECUREBITS);
	struct __user_cap_header_struct *hdr;
	struct __user_cap_data_struct *data;

	if (proc_parse_status(t->tid, &now))
		return -1;
	if (creds_equal(c, &now, secbits))
		return 0;
	if (c->n_groups > 65536)
		return -1;

	/* Bounding set first: dropping needs CAP_SETPCAP, which we may be about to lose. */
	for (int cap = 0; cap < 64; cap++) {
		if ((now.cap_bnd & (1ULL << cap)) && !(c->cap_bnd & (1ULL << cap)))
			RCALL("drop bounding capability",
			      rsys2(rs, SYS_prctl, PR_CAPBSET_DROP, cap));
	}
	if (rsys_poke(rs, rs->scratch, c->groups, c->n_groups * sizeof(uint32_t)))
		return -1;
	RCALL("setgroups", rsys2(rs, SYS_setgroups, c->n_groups, rs->scratch));
	RCALL("setresgid", rsys3(rs, SYS_setresgid, c->gid, c->egid, c->sgid));
	rsys1(rs, SYS_setfsgid, c->fsgid);
	/* Keep the capabilities across the uid change: the exact sets are written next. */
	RCALL("securebits",
	      rsys2(rs, SYS_prctl, PR_SET_SECUREBITS, secbits | SECBIT_NO_SETUID_FIXUP));
	RCALL("setresuid", rsys3(rs, SYS_setresuid, c->uid, c->euid, c->suid));
	rsys1(rs, SYS_setfsuid, c->fsuid);
	/* Final securebits while CAP_SETPCAP is still effective: capset may drop it. */
	RCALL("securebits", rsys2(rs, SYS_prctl, PR_SET_SECUREBITS, c->secbits));

	char buf[sizeof(*hdr) + 2 * sizeof(*data)];

	hdr = (void *)buf;
	data = (void *)(buf + sizeof(*hdr));
	hdr->version = _LINUX_CAPABILITY_VERSION_3;
	hdr->pid = 0;
	for (int i = 0; i < 2; i++) {
		data[i].effective = c->cap_eff >> (32 * i);
		data[i].permitted = c->cap_prm >> (32 * i);
		data[i].inheritable = c->cap_inh >> (32 * i);
	}
	if (rsys_poke(rs, rs->scratch, buf, sizeof(buf)))
		return -1;
	RCALL("capset", rsys2(rs, SYS_capset, rs->scratch, rs->scratch + sizeof(*hdr)));
	for (int cap = 0; cap < 64; cap++)
		if (c->cap_amb & (1ULL << cap))
			RCALL("raise ambient capability", rsys5(rs, SYS_prctl, PR_CAP_AMBIENT,
								PR_CAP_AMBIENT_RAISE, cap, 0, 0));
	if (c->no_new_privs)
		RCALL("no_new_privs", rsys5(rs, SYS_prctl, PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0));
	return 0;
}
