// SPDX-License-Identifier: MIT
/*
 * Credentials: distinct real/effective/saved uids and gids, supplementary groups, a chosen set
 * of permitted/effective/inheritable/ambient capabilities kept across the uid change with
 * PR_SET_KEEPCAPS, and a bounding set with one capability dropped.  After SIGTERM all of it,
 * the securebits and the dumpable flag (which a uid change resets) must read the same.
 */
#include <grp.h>
#include <linux/capability.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "testlib.h"

#define RUID 1111
#define EUID 65534
#define SUID 2222
#define RGID 3333
#define EGID 65534
#define SGID 4444

struct creds {
	uid_t ruid, euid, suid;
	gid_t rgid, egid, sgid;
	gid_t groups[16];
	int ngroups;
	struct __user_cap_data_struct cap[2];
	int keepcaps, securebits, dumpable;
	char status[6][64]; /* CapInh CapPrm CapEff CapBnd CapAmb NoNewPrivs */
};

static const char *const status_keys[6] = {"CapInh", "CapPrm", "CapEff",
					   "CapBnd", "CapAmb", "NoNewPrivs"};
static struct creds before, after;
static char status[8192];

static void get_caps(struct __user_cap_data_struct *data)
{
	struct __user_cap_header_struct hdr = {.version = _LINUX_CAPABILITY_VERSION_3};

	if (syscall(SYS_capget, &hdr, data))
		tl_fail("capget: %m");
}

static void capture(struct creds *c)
{
	getresuid(&c->ruid, &c->euid, &c->suid);
	getresgid(&c->rgid, &c->egid, &c->sgid);
	c->ngroups = getgroups(16, c->groups);
	get_caps(c->cap);
	c->keepcaps = prctl(PR_GET_KEEPCAPS);
	c->securebits = prctl(PR_GET_SECUREBITS);
	c->dumpable = prctl(PR_GET_DUMPABLE);
	tl_read_file("/proc/self/status", status, sizeof(status));
	for (int i = 0; i < 6; i++)
		tl_status_field(status, status_keys[i], c->status[i], sizeof(c->status[i]));
}

#define BIT(cap) (1u << (cap))

int main(void)
{
	static const gid_t groups[] = {65534, 100, 4};
	struct __user_cap_header_struct hdr = {.version = _LINUX_CAPABILITY_VERSION_3};
	struct __user_cap_data_struct data[2];

	tl_init();
	if (prctl(PR_CAPBSET_DROP, CAP_SYS_BOOT))
		tl_fail("PR_CAPBSET_DROP: %m");
	if (setgroups(3, groups))
		tl_fail("setgroups: %m");
	if (setresgid(RGID, EGID, SGID))
		tl_fail("setresgid: %m");
	if (prctl(PR_SET_KEEPCAPS, 1))
		tl_fail("PR_SET_KEEPCAPS: %m");
	if (setresuid(RUID, EUID, SUID))
		tl_fail("setresuid: %m");

	memset(data, 0, sizeof(data));
	data[0].permitted = BIT(CAP_NET_BIND_SERVICE) | BIT(CAP_KILL) | BIT(CAP_SETUID);
	data[0].effective = BIT(CAP_NET_BIND_SERVICE);
	data[0].inheritable = BIT(CAP_KILL);
	if (syscall(SYS_capset, &hdr, data))
		tl_fail("capset: %m");
	if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, CAP_KILL, 0, 0))
		tl_fail("PR_CAP_AMBIENT_RAISE: %m");

	capture(&before);
	tl_log("uids %d/%d/%d gids %d/%d/%d, %d groups, caps %#x/%#x/%#x, dumpable %d", before.ruid,
	       before.euid, before.suid, before.rgid, before.egid, before.sgid, before.ngroups,
	       before.cap[0].permitted, before.cap[0].effective, before.cap[0].inheritable,
	       before.dumpable);
	tl_ready();
	tl_wait_term();
	capture(&after);

	tl_expect(before.ruid == after.ruid && before.euid == after.euid &&
			  before.suid == after.suid,
		  "uids %d/%d/%d, were %d/%d/%d", after.ruid, after.euid, after.suid, before.ruid,
		  before.euid, before.suid);
	tl_expect(before.rgid == after.rgid && before.egid == after.egid &&
			  before.sgid == after.sgid,
		  "gids %d/%d/%d, were %d/%d/%d", after.rgid, after.egid, after.sgid, before.rgid,
		  before.egid, before.sgid);
	tl_expect(before.ngroups == after.ngroups &&
			  !memcmp(before.groups, after.groups, sizeof(gid_t) * before.ngroups),
		  "supplementary groups differ (%d, were %d)", after.ngroups, before.ngroups);
	for (int i = 0; i < 2; i++)
		tl_expect(!memcmp(&before.cap[i], &after.cap[i], sizeof(before.cap[i])),
			  "capabilities word %d: %#x/%#x/%#x, were %#x/%#x/%#x", i,
			  after.cap[i].permitted, after.cap[i].effective, after.cap[i].inheritable,
			  before.cap[i].permitted, before.cap[i].effective,
			  before.cap[i].inheritable);
	for (int i = 0; i < 6; i++)
		tl_expect(!strcmp(before.status[i], after.status[i]), "%s %s, was %s",
			  status_keys[i], after.status[i], before.status[i]);
	tl_expect(before.keepcaps == after.keepcaps, "keepcaps %d, was %d", after.keepcaps,
		  before.keepcaps);
	tl_expect(before.securebits == after.securebits, "securebits %#x, were %#x",
		  after.securebits, before.securebits);
	tl_expect(before.dumpable == after.dumpable, "dumpable %d, was %d", after.dumpable,
		  before.dumpable);
	tl_done();
}
