// SPDX-License-Identifier: MIT
/*
 * The SysV and POSIX IPC objects of a tree's own ipc namespace, into ipc.img (one ipc_entry)
 * and ipcshm-ID.img (a shared memory segment's bytes): the namespace's sysctls, shared memory
 * segments, semaphore sets, message queues and POSIX message queues.
 *
 * Dump: crest enters the namespace (setns, this thread only) and reads everything with the
 * *_STAT_ANY / GETALL / MSG_COPY calls that change nothing.  POSIX queues cannot be peeked:
 * their messages are taken and sent back.  The dump must run while the tree is seized, so
 * that no task waits on a queue.
 *
 * Restore: crest, in the new namespace, makes every object again with its id (the
 * kernel.*_next_id sysctls), key, owner, creator, mode and content.
 *
 * Not restored: semaphore undo values (semadj): the kernel has no interface that reads them,
 * so a task's SEM_UNDO adjustments are lost.  The times and pids of the last operations
 * (shm_atime, sempid, msg_lspid, ...), which nothing can set.  A POSIX queue's notification
 * registration is recorded here only: it belongs to the task that made it, which registers
 * again through its fd of the queue (mqueue.c); sigev_value and a SIGEV_THREAD socket are not
 * visible at all.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <mqueue.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <sys/ipc.h>
#include <sys/mount.h>
#include <sys/msg.h>
#include <sys/sem.h>
#include <sys/shm.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "image.h"
#include "internal.h"
#include "log.h"

#include "ipc.pb-c.h"

#define SYSCTL_ROOT "/proc/sys/"
#define SEMVMX 32767	     /* the kernel's largest semaphore value */
#define MQ_PRIO_LIMIT 32768u /* POSIX queue priorities are below this (MQ_PRIO_MAX) */

/* The ipc namespace's own sysctls, the only ones ipc.img may set. */
static const char *const ipc_sysctls[] = {
	"kernel/shmmax",
	"kernel/shmall",
	"kernel/shmmni",
	"kernel/shm_rmid_forced",
	"kernel/msgmax",
	"kernel/msgmnb",
	"kernel/msgmni",
	"kernel/sem",
	"fs/mqueue/queues_max",
	"fs/mqueue/msg_max",
	"fs/mqueue/msgsize_max",
	"fs/mqueue/msg_default",
	"fs/mqueue/msgsize_default",
};

/* Written last (ipc_restore_fini): set before, it would destroy the unattached segments. */
#define RMID_FORCED "kernel/shm_rmid_forced"

enum ipc_kind { K_SHM, K_SEM, K_MSG };
static const char *const kind_name[] = {"shm", "sem", "msg"};

union ipc_semun {
	int val;
	struct semid_ds *buf;
	unsigned short *array;
	struct seminfo *info;
};

/* A new zeroed element at the end of a repeated message field (&arr, &n); NULL on OOM. */
static void *append(void *arrp, size_t *n, size_t size)
{
	void ***arr = arrp;
	void **grown = realloc(*arr, (*n + 1) * sizeof(*grown));
	void *p = NULL;

	if (grown) {
		*arr = grown;
		p = calloc(1, size);
	}
	if (!p) {
		pr_err("ipc: out of memory");
		return NULL;
	}
	(*arr)[(*n)++] = p;
	return p;
}

static void *dup_bytes(const void *buf, size_t len)
{
	void *p = malloc(len ? len : 1);

	if (!p)
		pr_err("ipc: out of memory");
	else
		memcpy(p, buf, len);
	return p;
}

/* ---- dump ---- */

static int dump_sysctls(IpcEntry *ie)
{
	for (size_t i = 0; i < ARRAY_SIZE(ipc_sysctls); i++) {
		char path[64];
		IpcSysctlEntry *e;
		char *value;

		snprintf(path, sizeof(path), SYSCTL_ROOT "%s", ipc_sysctls[i]);
		value = read_file_at(AT_FDCWD, path, NULL);
		if (!value && errno == ENOENT) /* no POSIX queues in this kernel */
			continue;
		if (!value) {
			pr_perror("ipc: cannot read %s", path);
			return -1;
		}
		e = append(&ie->sysctls, &ie->n_sysctls, sizeof(*e));
		if (!e) {
			free(value);
			return -1;
		}
		ipc_sysctl_entry__init(e);
		e->value = value;
		e->path = strdup(ipc_sysctls[i]);
		if (!e->path) {
			pr_err("ipc: out of memory");
			return -1;
		}
	}
	return 0;
}

static IpcPermEntry *dump_perm(int id, const struct ipc_perm *p)
{
	IpcPermEntry *e = calloc(1, sizeof(*e));

	if (!e) {
		pr_err("ipc: out of memory");
		return NULL;
	}
	ipc_perm_entry__init(e);
	e->id = id;
	e->key = p->__key;
	e->uid = p->uid;
	e->gid = p->gid;
	e->cuid = p->cuid;
	e->cgid = p->cgid;
	e->mode = p->mode;
	return e;
}

/* As many objects found by index as the namespace has: none missed, none came or went. */
static int check_count(const char *what, long in_use, size_t found)
{
	if (in_use < 0 || (size_t)in_use != found) {
		pr_err("ipc: %ld %s in the namespace, %zu found", in_use, what, found);
		return -1;
	}
	return 0;
}

/* The runs of data (SEEK_DATA: swapped-out pages count) of the segment's file, into img. */
static int shm_copy_runs(int fd, IpcShmEntry *e, struct cr_img *img)
{
	const size_t chunk = 1 << 20;
	char *buf = malloc(chunk);
	uint64_t off = 0;

	if (!buf) {
		pr_err("ipc: out of memory");
		return -1;
	}
	while (off < e->size) {
		off_t data = lseek(fd, off, SEEK_DATA), end;
		uint64_t *grown;

		if (data < 0 && errno == ENXIO) /* only a hole left */
			break;
		end = data < 0 ? -1 : lseek(fd, data, SEEK_HOLE);
		if (end < 0) {
			pr_perror("ipc: shm %u: cannot find its data", e->perm->id);
			goto err;
		}
		end = min_t(uint64_t, end, e->size);
		grown = realloc(e->runs, (e->n_runs + 2) * sizeof(*grown));
		if (!grown) {
			pr_err("ipc: out of memory");
			goto err;
		}
		e->runs = grown;
		e->runs[e->n_runs++] = data;
		e->runs[e->n_runs++] = end - data;
		for (off = data; off < (uint64_t)end;) {
			ssize_t n = pread(fd, buf, min_t(uint64_t, chunk, end - off), off);

			if (n <= 0) {
				pr_err("ipc: shm %u: cannot read it at %llu: %s", e->perm->id,
				       (unsigned long long)off, n ? strerror(errno) : "truncated");
				goto err;
			}
			if (img_write_raw(img, buf, n))
				goto err;
			off += n;
		}
	}
	free(buf);
	return 0;
err:
	free(buf);
	return -1;
}

/*
 * A segment's bytes, read through its shmem file: attached read-only for a moment, the file is
 * reopened from /proc/self/map_files.  Reading the file leaves holes unallocated, where
 * reading through the mapping would allocate every page of a sparse segment.
 */
static int dump_shm_data(int dirfd, IpcShmEntry *e)
{
	uint32_t id = e->perm->id;
	uint64_t len = (e->size + PAGE_SIZE - 1) & PAGE_MASK;
	struct cr_img *img;
	char path[80];
	void *addr;
	int fd, ret;

	addr = shmat(id, NULL, SHM_RDONLY);
	if (addr == (void *)-1) {
		pr_perror("ipc: cannot attach shm %u", id);
		return -1;
	}
	snprintf(path, sizeof(path), "/proc/self/map_files/%lx-%lx", (unsigned long)addr,
		 (unsigned long)addr + len);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) /* hugetlb segments end elsewhere: not supported */
		pr_perror("ipc: shm %u: cannot open its file %s", id, path);
	shmdt(addr);
	if (fd < 0)
		return -1;
	img = img_open_write(dirfd, IMG_IPC_SHM, id);
	ret = img ? shm_copy_runs(fd, e, img) : -1;
	close(fd);
	if (img_close(img))
		ret = -1;
	return ret;
}

static int dump_shms(int dirfd, IpcEntry *ie)
{
	struct shm_info info;
	int max = shmctl(0, SHM_INFO, (struct shmid_ds *)&info);

	if (max < 0) {
		pr_perror("ipc: SHM_INFO");
		return -1;
	}
	for (int i = 0; i <= max; i++) {
		struct shmid_ds ds;
		int id = shmctl(i, SHM_STAT_ANY, &ds);
		IpcShmEntry *e;

		if (id < 0 && (errno == EINVAL || errno == EIDRM)) /* a free index */
			continue;
		if (id < 0) {
			pr_perror("ipc: SHM_STAT of index %d", i);
			return -1;
		}
		e = append(&ie->shms, &ie->n_shms, sizeof(*e));
		if (!e)
			return -1;
		ipc_shm_entry__init(e);
		e->perm = dump_perm(id, &ds.shm_perm);
		e->size = ds.shm_segsz;
		if (!e->perm || dump_shm_data(dirfd, e))
			return -1;
	}
	return check_count("shm segments", info.used_ids, ie->n_shms);
}

static int dump_sems(IpcEntry *ie)
{
	struct seminfo info;
	int max = semctl(0, 0, SEM_INFO, (union ipc_semun){.info = &info});

	if (max < 0) {
		pr_perror("ipc: SEM_INFO");
		return -1;
	}
	for (int i = 0; i <= max; i++) {
		struct semid_ds ds;
		int id = semctl(i, 0, SEM_STAT_ANY, (union ipc_semun){.buf = &ds});
		unsigned short *vals;
		IpcSemEntry *e;

		if (id < 0 && (errno == EINVAL || errno == EIDRM))
			continue;
		if (id < 0) {
			pr_perror("ipc: SEM_STAT of index %d", i);
			return -1;
		}
		e = append(&ie->sems, &ie->n_sems, sizeof(*e));
		if (!e)
			return -1;
		ipc_sem_entry__init(e);
		e->perm = dump_perm(id, &ds.sem_perm);
		e->has_operated = true;
		e->operated = ds.sem_otime != 0;
		vals = calloc(ds.sem_nsems, sizeof(*vals));
		e->values = calloc(ds.sem_nsems, sizeof(*e->values));
		if (!e->perm || !vals || !e->values) {
			pr_err("ipc: out of memory");
			free(vals);
			return -1;
		}
		if (semctl(id, 0, GETALL, (union ipc_semun){.array = vals}) < 0) {
			pr_perror("ipc: cannot read the values of sem %d", id);
			free(vals);
			return -1;
		}
		for (size_t k = 0; k < ds.sem_nsems; k++)
			e->values[k] = vals[k];
		e->n_values = ds.sem_nsems;
		free(vals);
	}
	return check_count("semaphore sets", info.semusz, ie->n_sems);
}

/* The queue's messages in order, copied (MSG_COPY by index), the queue left as it is. */
static int dump_msgs(IpcMsqEntry *e, const struct msqid_ds *ds)
{
	size_t cap = max_t(size_t, ds->msg_cbytes, 1); /* no message is larger than them all */
	long *buf = malloc(sizeof(long) + cap);

	if (!buf) {
		pr_err("ipc: out of memory");
		return -1;
	}
	for (size_t k = 0; k < ds->msg_qnum; k++) {
		ssize_t n = msgrcv(e->perm->id, buf, cap, k, MSG_COPY | IPC_NOWAIT);
		IpcMsgEntry *m;

		if (n < 0) {
			pr_perror("ipc: cannot copy message %zu of msg %u", k, e->perm->id);
			goto err;
		}
		m = append(&e->msgs, &e->n_msgs, sizeof(*m));
		if (!m)
			goto err;
		ipc_msg_entry__init(m);
		m->mtype = buf[0];
		m->data.data = dup_bytes(buf + 1, n);
		m->data.len = n;
		if (!m->data.data)
			goto err;
	}
	free(buf);
	return 0;
err:
	free(buf);
	return -1;
}

static int dump_msqs(IpcEntry *ie)
{
	struct msginfo info;
	int max = msgctl(0, MSG_INFO, (struct msqid_ds *)&info);

	if (max < 0) {
		pr_perror("ipc: MSG_INFO");
		return -1;
	}
	for (int i = 0; i <= max; i++) {
		struct msqid_ds ds;
		int id = msgctl(i, MSG_STAT_ANY, &ds);
		IpcMsqEntry *e;

		if (id < 0 && (errno == EINVAL || errno == EIDRM))
			continue;
		if (id < 0) {
			pr_perror("ipc: MSG_STAT of index %d", i);
			return -1;
		}
		e = append(&ie->msqs, &ie->n_msqs, sizeof(*e));
		if (!e)
			return -1;
		ipc_msq_entry__init(e);
		e->perm = dump_perm(id, &ds.msg_perm);
		e->qbytes = ds.msg_qbytes;
		if (!e->perm || dump_msgs(e, &ds))
			return -1;
	}
	return check_count("message queues", info.msgpool, ie->n_msqs);
}

/* Send the taken messages back, in the order taken: the queue is as it was. */
static int mq_put_back(int fd, const IpcMqEntry *e)
{
	int ret = 0;

	for (size_t i = 0; i < e->n_msgs; i++) {
		const IpcMqMsgEntry *m = e->msgs[i];

		if (mq_send(fd, (const char *)m->data.data, m->data.len, m->prio) && !ret) {
			pr_perror("ipc: mqueue /%s: message %zu of %zu lost putting it back",
				  e->name, i, e->n_msgs);
			ret = -1;
		}
	}
	return ret;
}

/*
 * A POSIX queue cannot be peeked: its messages are taken in the order a receiver gets them
 * (priority, then arrival), then sent back in that order, which queues them as they were.
 * Sending into the emptied queue would fire a registered notification and end the
 * registration, so a queue with one is refused unless it is empty (nothing to take then).
 */
static int dump_mq_msgs(int fd, IpcMqEntry *e, long curmsgs)
{
	char *buf = malloc(e->msgsize);
	struct mq_attr after;
	int ret = 0;

	if (!buf) {
		pr_err("ipc: out of memory");
		return -1;
	}
	for (long i = 0; i < curmsgs && !ret; i++) {
		unsigned int prio;
		ssize_t n = mq_receive(fd, buf, e->msgsize, &prio);
		IpcMqMsgEntry *m;
		void *data;

		if (n < 0) {
			pr_perror("ipc: mqueue /%s: cannot take message %ld", e->name, i);
			ret = -1;
			break;
		}
		data = dup_bytes(buf, n);
		m = data ? append(&e->msgs, &e->n_msgs, sizeof(*m)) : NULL;
		if (!m) {
			/* out of memory: the taken ones go back, this one last */
			free(data);
			mq_put_back(fd, e);
			mq_send(fd, buf, n, prio);
			free(buf);
			return -1;
		}
		ipc_mq_msg_entry__init(m);
		m->prio = prio;
		m->data = (ProtobufCBinaryData){n, data};
	}
	free(buf);
	/* a sender waiting elsewhere has its message moved in as soon as there is room */
	if (!ret && !mq_getattr(fd, &after) && after.mq_curmsgs) {
		pr_err("ipc: mqueue /%s: a task outside the seized tree sends to it", e->name);
		ret = -1;
	}
	if (mq_put_back(fd, e))
		ret = -1;
	return ret;
}

/* One queue, name in the mqueue filesystem dfd; text is its file's "QSIZE:..." line. */
static int dump_mq(IpcEntry *ie, int dfd, const char *name)
{
	char *text = read_file_at(dfd, name, NULL);
	int notify = 0, signo = 0, notify_pid = 0, fd = -1, ret = -1;
	unsigned long qsize;
	struct mq_attr attr;
	IpcMqEntry *e;
	struct stat st;

	if (!text || sscanf(text, "QSIZE:%lu NOTIFY:%d SIGNO:%d NOTIFY_PID:%d", &qsize, &notify,
			    &signo, &notify_pid) != 4) {
		pr_err("ipc: mqueue /%s: cannot read its state", name);
		goto out;
	}
	/* an fd of the mqueue filesystem is an mqd_t */
	fd = openat(dfd, name, O_RDWR | O_NONBLOCK | O_CLOEXEC);
	if (fd < 0 || mq_getattr(fd, &attr) || fstat(fd, &st)) {
		pr_perror("ipc: cannot open mqueue /%s", name);
		goto out;
	}
	e = append(&ie->mqs, &ie->n_mqs, sizeof(*e));
	if (!e)
		goto out;
	ipc_mq_entry__init(e);
	e->name = strdup(name);
	e->uid = st.st_uid;
	e->gid = st.st_gid;
	e->mode = st.st_mode & 0777;
	e->maxmsg = attr.mq_maxmsg;
	e->msgsize = attr.mq_msgsize;
	if (notify_pid) {
		e->has_notify_pid = e->has_notify = e->has_signo = true;
		e->notify_pid = notify_pid;
		e->notify = notify;
		e->signo = signo;
	}
	if (!e->name)
		pr_err("ipc: out of memory");
	else if (notify_pid && attr.mq_curmsgs)
		pr_err("ipc: mqueue /%s: %ld messages and a notification registered by %d: "
		       "reading them would fire it",
		       name, attr.mq_curmsgs, notify_pid);
	else
		ret = attr.mq_curmsgs ? dump_mq_msgs(fd, e, attr.mq_curmsgs) : 0;
out:
	if (fd >= 0)
		close(fd);
	free(text);
	return ret;
}

/*
 * Queue names are only listed by an mqueue filesystem of the namespace: a detached mount of
 * it (fsopen/fsmount, made in the namespace crest is in), attached nowhere, so no mount
 * namespace, directory or helper process is needed and nothing can be left behind.
 */
static int dump_mqs(IpcEntry *ie)
{
	int fsfd, mnt = -1, dfd = -1, ret = 0;
	struct dirent *de;
	DIR *dir = NULL;

	fsfd = fsopen("mqueue", FSOPEN_CLOEXEC);
	if (fsfd < 0 && errno == ENODEV) /* no POSIX queues in this kernel */
		return 0;
	if (fsfd >= 0 && !fsconfig(fsfd, FSCONFIG_CMD_CREATE, NULL, NULL, 0))
		mnt = fsmount(fsfd, FSMOUNT_CLOEXEC, 0);
	if (mnt >= 0)
		dfd = openat(mnt, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd >= 0)
		dir = fdopendir(dfd);
	if (!dir) {
		pr_perror("ipc: cannot mount the mqueue filesystem");
		ret = -1;
	}
	while (!ret && (errno = 0, de = readdir(dir)))
		if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
			ret = dump_mq(ie, dfd, de->d_name);
	if (!ret && errno) {
		pr_perror("ipc: cannot list the POSIX message queues");
		ret = -1;
	}
	if (dir)
		closedir(dir); /* and dfd */
	else if (dfd >= 0)
		close(dfd);
	if (mnt >= 0)
		close(mnt);
	if (fsfd >= 0)
		close(fsfd);
	return ret;
}

int ipc_dump(int dirfd, pid_t pid)
{
	IpcEntry *ie = calloc(1, sizeof(*ie));
	int own, theirs, ret = -1;
	char path[64];

	if (!ie) {
		pr_err("ipc: out of memory");
		return -1;
	}
	ipc_entry__init(ie);
	/* thread-self: setns moves this thread alone, which may not be crest's first */
	own = open("/proc/thread-self/ns/ipc", O_RDONLY | O_CLOEXEC);
	snprintf(path, sizeof(path), "/proc/%d/ns/ipc", pid);
	theirs = open(path, O_RDONLY | O_CLOEXEC);
	if (own < 0 || theirs < 0) {
		pr_perror("ipc: cannot open %s", own < 0 ? "crest's ipc namespace" : path);
		goto out;
	}
	if (setns(theirs, CLONE_NEWIPC)) {
		pr_perror("ipc: cannot enter the ipc namespace of %d", pid);
		goto out;
	}
	if (!dump_sysctls(ie) && !dump_shms(dirfd, ie) && !dump_sems(ie) && !dump_msqs(ie) &&
	    !dump_mqs(ie))
		ret = 0;
	if (setns(own, CLONE_NEWIPC)) {
		pr_perror("ipc: cannot return to crest's own ipc namespace");
		ret = -1;
	}
	if (!ret)
		ret = img_write_one(dirfd, IMG_IPC, 0, &ie->base);
	if (!ret)
		pr_info("ipc namespace: %zu shm segments, %zu semaphore sets, %zu message queues, "
			"%zu POSIX queues",
			ie->n_shms, ie->n_sems, ie->n_msqs, ie->n_mqs);
out:
	ipc_entry__free_unpacked(ie, NULL); /* built with malloc, as unpacking does */
	if (own >= 0)
		close(own);
	if (theirs >= 0)
		close(theirs);
	return ret;
}

/* ---- restore ---- */

static bool sysctl_known(const char *path)
{
	for (size_t i = 0; i < ARRAY_SIZE(ipc_sysctls); i++)
		if (!strcmp(path, ipc_sysctls[i]))
			return true;
	return false;
}

static int check_perm(const char *what, const IpcPermEntry *p, uint32_t modes)
{
	if (p->id > INT_MAX || (p->mode & ~modes)) {
		pr_err("ipc.img: %s %u: bad id or mode %#o", what, p->id, p->mode);
		return -1;
	}
	return 0;
}

static int check_shm(const IpcShmEntry *e)
{
	uint64_t end = 0;

	if (check_perm("shm", e->perm, 0777 | SHM_DEST | SHM_LOCKED))
		return -1;
	if (!e->size || e->n_runs % 2) {
		pr_err("ipc.img: shm %u: bad size %llu or data runs", e->perm->id,
		       (unsigned long long)e->size);
		return -1;
	}
	for (size_t i = 0; i < e->n_runs; i += 2) {
		uint64_t off = e->runs[i], len = e->runs[i + 1];

		if (off < end || !len || len > e->size || off > e->size - len) {
			pr_err("ipc.img: shm %u: data run %zu [%llu, +%llu) is out of order or "
			       "outside its %llu bytes",
			       e->perm->id, i / 2, (unsigned long long)off, (unsigned long long)len,
			       (unsigned long long)e->size);
			return -1;
		}
		end = off + len;
	}
	return 0;
}

static int check_sem(const IpcSemEntry *e)
{
	if (check_perm("sem", e->perm, 0777))
		return -1;
	if (!e->n_values || e->n_values > INT_MAX) {
		pr_err("ipc.img: sem %u: bad number of semaphores %zu", e->perm->id, e->n_values);
		return -1;
	}
	for (size_t i = 0; i < e->n_values; i++)
		if (e->values[i] > SEMVMX) {
			pr_err("ipc.img: sem %u: value %u is over %d", e->perm->id, e->values[i],
			       SEMVMX);
			return -1;
		}
	return 0;
}

static int check_msq(const IpcMsqEntry *e)
{
	if (check_perm("msg", e->perm, 0777))
		return -1;
	for (size_t i = 0; i < e->n_msgs; i++)
		if (e->msgs[i]->mtype <= 0) {
			pr_err("ipc.img: msg %u: message %zu has type %lld", e->perm->id, i,
			       (long long)e->msgs[i]->mtype);
			return -1;
		}
	return 0;
}

static int check_mq(const IpcMqEntry *e)
{
	const char *n = e->name;

	if (!*n || strchr(n, '/') || strlen(n) > NAME_MAX || !strcmp(n, ".") || !strcmp(n, "..")) {
		pr_err("ipc.img: bad POSIX queue name \"%.64s\"", n);
		return -1;
	}
	if ((e->mode & ~0777u) || e->maxmsg <= 0 || e->maxmsg > INT_MAX || e->msgsize <= 0 ||
	    e->msgsize > INT_MAX || e->n_msgs > (uint64_t)e->maxmsg) {
		pr_err("ipc.img: mqueue /%s: bad mode %#o, size %lld x %lld or %zu messages", n,
		       e->mode, (long long)e->maxmsg, (long long)e->msgsize, e->n_msgs);
		return -1;
	}
	for (size_t i = 0; i < e->n_msgs; i++)
		if (e->msgs[i]->data.len > (uint64_t)e->msgsize ||
		    e->msgs[i]->prio >= MQ_PRIO_LIMIT) {
			pr_err("ipc.img: mqueue /%s: message %zu has %zu bytes or priority %u", n,
			       i, e->msgs[i]->data.len, e->msgs[i]->prio);
			return -1;
		}
	return 0;
}

/* Everything the image claims is checked before anything is made. */
static int check_entry(const IpcEntry *ie)
{
	for (size_t i = 0; i < ie->n_sysctls; i++) {
		const IpcSysctlEntry *e = ie->sysctls[i];

		if (!sysctl_known(e->path) || strlen(e->value) > 255 ||
		    strspn(e->value, "0123456789- \t\n") != strlen(e->value)) {
			pr_err("ipc.img: sysctl %.64s=%.64s is not an ipc namespace one", e->path,
			       e->value);
			return -1;
		}
	}
	for (size_t i = 0; i < ie->n_shms; i++)
		if (check_shm(ie->shms[i]))
			return -1;
	for (size_t i = 0; i < ie->n_sems; i++)
		if (check_sem(ie->sems[i]))
			return -1;
	for (size_t i = 0; i < ie->n_msqs; i++)
		if (check_msq(ie->msqs[i]))
			return -1;
	for (size_t i = 0; i < ie->n_mqs; i++)
		if (check_mq(ie->mqs[i]))
			return -1;
	return 0;
}

static IpcEntry *read_entry(int dirfd)
{
	ProtobufCMessage *msg;

	if (img_read_one(dirfd, IMG_IPC, 0, &ipc_entry__descriptor, &msg))
		return NULL;
	if (check_entry((IpcEntry *)msg)) {
		protobuf_c_message_free_unpacked(msg, NULL);
		return NULL;
	}
	return (IpcEntry *)msg;
}

static int write_sysctl(const char *path, const char *value)
{
	char full[64], *now;
	int fd, ret = 0;

	snprintf(full, sizeof(full), SYSCTL_ROOT "%s", path);
	now = read_file_at(AT_FDCWD, full, NULL);
	if (now && !strcmp(now, value)) {
		free(now);
		return 0;
	}
	free(now);
	fd = open(full, O_WRONLY | O_CLOEXEC);
	if (fd < 0 || write(fd, value, strlen(value)) < 0) {
		pr_perror("ipc: cannot set %s to %.*s", full, (int)strcspn(value, "\n"), value);
		ret = -1;
	}
	if (fd >= 0)
		close(fd);
	return ret;
}

static int restore_sysctls(const IpcEntry *ie, bool rmid_forced)
{
	for (size_t i = 0; i < ie->n_sysctls; i++) {
		const IpcSysctlEntry *e = ie->sysctls[i];

		if ((strcmp(e->path, RMID_FORCED) == 0) != rmid_forced)
			continue;
		if (write_sysctl(e->path, e->value))
			return -1;
	}
	return 0;
}

/*
 * The ids a get makes its caller creator of (cuid, cgid), which IPC_SET cannot change and which
 * keep the owner's rights: the get runs under the creator's effective ids.  Raw syscalls
 * change this thread alone (glibc's would change all of crest's); the real and saved uid stay
 * root's, so root's effective ids (and capabilities) can always be taken back.
 */
struct creator {
	uid_t euid;
	gid_t egid;
	bool uid_set, gid_set;
};

static void creator_enter(const IpcPermEntry *p, struct creator *c)
{
	uid_t ruid, euid, suid;

	*c = (struct creator){.euid = geteuid(), .egid = getegid()};
	if (getresuid(&ruid, &euid, &suid) || euid || (ruid && suid) ||
	    (p->cuid == euid && p->cgid == c->egid))
		return;
	if (p->cgid != c->egid)
		c->gid_set = !syscall(SYS_setresgid, -1, p->cgid, -1);
	if (p->cuid != euid && (p->cgid == c->egid || c->gid_set))
		c->uid_set = !syscall(SYS_setresuid, -1, p->cuid, -1);
	if ((p->cgid != c->egid && !c->gid_set) || (p->cuid != euid && !c->uid_set))
		pr_warn("ipc.img: id %u: cannot make it as its creator %u:%u: %s", p->id, p->cuid,
			p->cgid, strerror(errno));
}

static void creator_leave(struct creator *c)
{
	int saved = errno;

	if (c->uid_set && syscall(SYS_setresuid, -1, c->euid, -1))
		pr_perror("ipc: cannot take back uid %u", c->euid);
	if (c->gid_set && syscall(SYS_setresgid, -1, c->egid, -1))
		pr_perror("ipc: cannot take back gid %u", c->egid);
	errno = saved;
}

/* Make the object with its dumped id (kernel.KIND_next_id) and key; -1 on failure. */
static int ipc_create(enum ipc_kind kind, const IpcPermEntry *p, size_t arg)
{
	int flags = IPC_CREAT | IPC_EXCL | (p->mode & 0777);
	struct creator c;
	char path[32], id[16];
	int got;

	snprintf(path, sizeof(path), "kernel/%s_next_id", kind_name[kind]);
	snprintf(id, sizeof(id), "%u", p->id);
	if (write_sysctl(path, id))
		return -1;
	creator_enter(p, &c);
	if (kind == K_SHM)
		got = shmget(p->key, arg, flags);
	else if (kind == K_SEM)
		got = semget(p->key, arg, flags);
	else
		got = msgget(p->key, flags);
	creator_leave(&c);
	if (got < 0) {
		pr_perror("ipc.img: cannot make %s %u (key %#x)", kind_name[kind], p->id, p->key);
		return -1;
	}
	if ((uint32_t)got != p->id) {
		pr_err("ipc.img: %s %u was made with id %d", kind_name[kind], p->id, got);
		return -1;
	}
	return got;
}

static void set_perm(struct ipc_perm *ip, const IpcPermEntry *p)
{
	ip->uid = p->uid;
	ip->gid = p->gid;
	ip->mode = p->mode & 0777;
}

/* ipcshm-ID.img, which must hold exactly the bytes of the segment's runs; NULL: no runs. */
static int open_shm_data(int dirfd, const IpcShmEntry *e, struct cr_img **imgp)
{
	uint64_t total = 0;
	struct cr_img *img;

	*imgp = NULL;
	for (size_t i = 0; i < e->n_runs; i += 2)
		total += e->runs[i + 1];
	if (!total)
		return 0;
	img = img_open_read(dirfd, IMG_IPC_SHM, e->perm->id);
	if (!img)
		return -1;
	if (img_size(img) - IMG_PAGES_HDR_SIZE != total) {
		pr_err("ipc.img: shm %u: %s holds %llu bytes, its runs %llu", e->perm->id,
		       img_path(img), (unsigned long long)(img_size(img) - IMG_PAGES_HDR_SIZE),
		       (unsigned long long)total);
		img_close(img);
		return -1;
	}
	*imgp = img;
	return 0;
}

/* The runs of ipcshm-ID.img into the segment. */
static int restore_shm_data(int dirfd, const IpcShmEntry *e)
{
	uint64_t pos = IMG_PAGES_HDR_SIZE;
	struct cr_img *img;
	char *addr;
	int ret = 0;

	if (open_shm_data(dirfd, e, &img))
		return -1;
	if (!img) /* all zeroes */
		return 0;
	addr = shmat(e->perm->id, NULL, 0);
	if (addr == (void *)-1) {
		pr_perror("ipc: cannot attach shm %u", e->perm->id);
		img_close(img);
		return -1;
	}
	for (size_t i = 0; i < e->n_runs && !ret; i += 2) {
		uint64_t off = e->runs[i], len = e->runs[i + 1];

		for (uint64_t done = 0; done < len && !ret;) {
			ssize_t n = pread(img_fd(img), addr + off + done, len - done, pos);

			if (n <= 0) {
				pr_err("%s: cannot read it at %llu: %s", img_path(img),
				       (unsigned long long)pos, n ? strerror(errno) : "truncated");
				ret = -1;
				break;
			}
			done += n;
			pos += n;
		}
	}
	shmdt(addr);
	img_close(img);
	return ret;
}

static int restore_shm(int dirfd, const IpcShmEntry *e)
{
	struct shmid_ds ds = {0};
	int id = ipc_create(K_SHM, e->perm, e->size);

	if (id < 0)
		return -1;
	set_perm(&ds.shm_perm, e->perm);
	if (shmctl(id, IPC_SET, &ds)) {
		pr_perror("ipc: cannot set the owner and mode of shm %d", id);
		return -1;
	}
	if (restore_shm_data(dirfd, e))
		return -1;
	/* SHM_DEST waits for the tasks to attach it again (ipc_restore_fini) */
	if ((e->perm->mode & SHM_LOCKED) && shmctl(id, SHM_LOCK, NULL)) {
		pr_perror("ipc: cannot lock shm %d", id);
		return -1;
	}
	return 0;
}

static int restore_sem(const IpcSemEntry *e)
{
	unsigned short *vals = calloc(e->n_values, sizeof(*vals));
	struct semid_ds ds = {0};
	int id, ret = -1;

	if (!vals) {
		pr_err("ipc: out of memory");
		return -1;
	}
	for (size_t i = 0; i < e->n_values; i++)
		vals[i] = e->values[i];
	id = ipc_create(K_SEM, e->perm, e->n_values);
	if (id < 0)
		goto out;
	if (semctl(id, 0, SETALL, (union ipc_semun){.array = vals}) < 0) {
		pr_perror("ipc: cannot set the values of sem %d", id);
		goto out;
	}
	/*
	 * A semop that changes nothing sets sem_otime, which programs read as "initialised"
	 * (the classic race-free semget idiom waits for it).
	 */
	if (e->has_operated && e->operated) {
		short first = vals[0] ? -1 : 1;
		struct sembuf ops[2] = {{0, first, IPC_NOWAIT}, {0, -first, IPC_NOWAIT}};

		if (semop(id, ops, 2)) {
			pr_perror("ipc: cannot mark sem %d operated", id);
			goto out;
		}
	}
	set_perm(&ds.sem_perm, e->perm);
	if (semctl(id, 0, IPC_SET, (union ipc_semun){.buf = &ds}) < 0) {
		pr_perror("ipc: cannot set the owner and mode of sem %d", id);
		goto out;
	}
	ret = 0;
out:
	free(vals);
	return ret;
}

static int msq_set(int id, const IpcPermEntry *p, uint64_t qbytes)
{
	struct msqid_ds ds = {0};

	set_perm(&ds.msg_perm, p);
	ds.msg_qbytes = qbytes;
	if (msgctl(id, IPC_SET, &ds)) {
		pr_perror("ipc: cannot set the owner, mode and size of msg %d", id);
		return -1;
	}
	return 0;
}

static int restore_msq(const IpcMsqEntry *e)
{
	uint64_t room = max_t(uint64_t, e->qbytes, e->n_msgs), bytes = 0, largest = 0;
	long *buf;
	int id;

	for (size_t i = 0; i < e->n_msgs; i++) {
		bytes += e->msgs[i]->data.len;
		largest = max_t(uint64_t, largest, e->msgs[i]->data.len);
	}
	/* room for them all, even when msg_qbytes was lowered below what was queued */
	room = max_t(uint64_t, room, bytes);
	id = ipc_create(K_MSG, e->perm, 0);
	if (id < 0 || msq_set(id, e->perm, room))
		return -1;
	buf = malloc(sizeof(long) + largest);
	if (!buf) {
		pr_err("ipc: out of memory");
		return -1;
	}
	for (size_t i = 0; i < e->n_msgs; i++) {
		const IpcMsgEntry *m = e->msgs[i];

		buf[0] = m->mtype;
		if (m->data.len) /* empty: no data pointer */
			memcpy(buf + 1, m->data.data, m->data.len);
		if (msgsnd(id, buf, m->data.len, IPC_NOWAIT)) {
			pr_perror("ipc: cannot queue message %zu (%zu bytes) on msg %d", i,
				  m->data.len, id);
			free(buf);
			return -1;
		}
	}
	free(buf);
	return room != e->qbytes ? msq_set(id, e->perm, e->qbytes) : 0;
}

static int restore_mq(const IpcMqEntry *e)
{
	struct mq_attr attr = {.mq_maxmsg = e->maxmsg, .mq_msgsize = e->msgsize};
	char path[NAME_MAX + 2];
	int fd, ret = 0;

	snprintf(path, sizeof(path), "/%s", e->name);
	fd = mq_open(path, O_CREAT | O_EXCL | O_RDWR | O_NONBLOCK, e->mode, &attr);
	/* the mode again: mq_open applied crest's umask */
	if (fd < 0 || fchown(fd, e->uid, e->gid) || fchmod(fd, e->mode)) {
		pr_perror("ipc: cannot make mqueue %s", path);
		if (fd >= 0)
			close(fd);
		return -1;
	}
	for (size_t i = 0; i < e->n_msgs && !ret; i++) {
		const IpcMqMsgEntry *m = e->msgs[i];

		if (mq_send(fd, (const char *)m->data.data, m->data.len, m->prio)) {
			pr_perror("ipc: cannot queue message %zu on mqueue %s", i, path);
			ret = -1;
		}
	}
	close(fd);
	/* the registration is its owner's to make again, through its fd (mqueue.c) */
	return ret;
}

int ipc_restore(int dirfd)
{
	IpcEntry *ie = read_entry(dirfd);
	int ret = 0;

	if (!ie)
		return -1;
	/* the segments' data images too, before anything is made */
	for (size_t i = 0; !ret && i < ie->n_shms; i++) {
		struct cr_img *img;

		ret = open_shm_data(dirfd, ie->shms[i], &img);
		img_close(img);
	}
	if (!ret)
		ret = restore_sysctls(ie, false);
	for (size_t i = 0; !ret && i < ie->n_shms; i++)
		ret = restore_shm(dirfd, ie->shms[i]);
	for (size_t i = 0; !ret && i < ie->n_sems; i++)
		ret = restore_sem(ie->sems[i]);
	for (size_t i = 0; !ret && i < ie->n_msqs; i++)
		ret = restore_msq(ie->msqs[i]);
	for (size_t i = 0; !ret && i < ie->n_mqs; i++)
		ret = restore_mq(ie->mqs[i]);
	if (!ret)
		pr_info("ipc namespace restored: %zu shm segments, %zu semaphore sets, "
			"%zu message queues, %zu POSIX queues",
			ie->n_shms, ie->n_sems, ie->n_msqs, ie->n_mqs);
	ipc_entry__free_unpacked(ie, NULL);
	return ret ? -1 : 0;
}

/*
 * The segments removed while attached (SHM_DEST) are removed again, now that the tasks hold
 * them; then kernel.shm_rmid_forced, which would have removed them all while unattached.
 */
int ipc_restore_fini(int dirfd)
{
	IpcEntry *ie = read_entry(dirfd);
	int ret = 0;

	if (!ie)
		return -1;
	for (size_t i = 0; !ret && i < ie->n_shms; i++) {
		const IpcShmEntry *e = ie->shms[i];
		struct shmid_ds ds;

		if (!(e->perm->mode & SHM_DEST))
			continue;
		/* the same segment: an id of another namespace must not be removed */
		if (shmctl(e->perm->id, IPC_STAT, &ds) || ds.shm_segsz != e->size) {
			pr_err("ipc: shm %u is not the restored segment", e->perm->id);
			ret = -1;
		} else if (shmctl(e->perm->id, IPC_RMID, NULL)) {
			pr_perror("ipc: cannot remove shm %u", e->perm->id);
			ret = -1;
		}
	}
	if (!ret)
		ret = restore_sysctls(ie, true);
	ipc_entry__free_unpacked(ie, NULL);
	return ret;
}
