// SPDX-License-Identifier: MIT
/*
 * criu/ipc.c against the kernel: IPC objects made in a new ipc namespace by a holder process
 * are dumped, restored into another new namespace and compared with what was made; the holder
 * checks its own afterwards (the dump must change nothing).  Only forked children enter or
 * make namespaces; their failed checks come back through a pipe.  Malformed images are refused.
 */
#include <errno.h>
#include <fcntl.h>
#include <mqueue.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ipc.h>
#include <sys/msg.h>
#include <sys/sem.h>
#include <sys/shm.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "crest.h"
#include "fixtures.h"
#include "internal.h"
#include "log.h"

#include "ipc.pb-c.h"

#define SHM_KEY 0x1234ca
#define SHM_SIZE (3 * 4096 + 100) /* a hole in page 1, a partial last page */
#define SEM_KEY 0x5e4a
#define MSG_KEY 0x3e55
#define OWNER_UID 1234
#define OWNER_GID 5678
#define CREATOR_UID 4321
#define CREATOR_GID 8765
#define MQ_NAME "/crest-test"
#define MQ_NOTIFY "/crest-notify"

/* What the holder made: the ids the restore must give back. */
struct ids {
	int shm_key, shm_priv, shm_dest, sem, msq;
};

static const unsigned short sem_vals[4] = {3, 0, 32767, 17};
static const long msg_types[5] = {5, 1, 9, 1, 300};
static const size_t msg_sizes[5] = {0, 1, 100, 2000, 7};
static const struct {
	const char *data;
	unsigned int prio;
} mq_msgs[4] = {{"a1", 1}, {"b5", 5}, {"c1", 1}, {"d0", 0}};
static const int mq_order[4] = {1, 0, 2, 3}; /* as received: priority, then arrival */

union semun_arg {
	int val;
	struct semid_ds *buf;
	unsigned short *array;
};

static char *tmp;
static int dfd = -1;
static int report_fd = -1; /* in a child: where a failed check's reason goes */

static void setup(void)
{
	tmp = unit_mkdtemp();
	dfd = open(tmp, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	cr_assert(dfd >= 0);
	error_reset();
}

static void teardown(void)
{
	if (dfd >= 0)
		close(dfd);
	unit_rmtree(tmp);
	free(tmp);
}

TestSuite(ipc, .init = setup, .fini = teardown);

__attribute__((format(printf, 2, 3), noreturn)) static void child_fail(int line, const char *fmt,
								       ...)
{
	char msg[600];
	int n = snprintf(msg, sizeof(msg), "!line %d: ", line);
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg + n, sizeof(msg) - n, fmt, ap);
	va_end(ap);
	if (write(report_fd, msg, strlen(msg)) < 0)
		_exit(2);
	_exit(1);
}

#define CHECK(cond, ...)                                   \
	do {                                               \
		if (!(cond))                               \
			child_fail(__LINE__, __VA_ARGS__); \
	} while (0)

/* Wait for a child; its report (read from fd) says why it failed. */
static void child_wait(pid_t pid, int fd)
{
	char msg[600] = "";
	ssize_t n = read(fd, msg, sizeof(msg) - 1);
	int st;

	msg[n > 0 ? n : 0] = 0;
	cr_assert_eq(waitpid(pid, &st, 0), pid);
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "child failed: %s (status %#x)",
		  msg[0] == '!' ? msg + 1 : "no reason", st);
}

/* fn(arg) in a forked child, which fails the test when one of its checks fails. */
static void in_child(void (*fn)(void *), void *arg)
{
	int p[2];
	pid_t pid;

	cr_assert_eq(pipe2(p, O_CLOEXEC), 0);
	pid = fork();
	cr_assert(pid >= 0);
	if (pid == 0) {
		close(p[0]);
		report_fd = p[1];
		error_reset();
		fn(arg);
		_exit(0);
	}
	close(p[1]);
	child_wait(pid, p[0]);
	close(p[0]);
}

static void write_sysctl(const char *path, const char *value)
{
	int fd = open(path, O_WRONLY | O_CLOEXEC);

	CHECK(fd >= 0 && write(fd, value, strlen(value)) == (ssize_t)strlen(value), "set %s: %m",
	      path);
	close(fd);
}

static long read_sysctl(const char *path)
{
	char *text = read_file_at(AT_FDCWD, path, NULL);
	long v;

	CHECK(text, "read %s: %m", path);
	v = atol(text);
	free(text);
	return v;
}

static ino_t ipcns_ino(void)
{
	struct stat st;

	CHECK(!stat("/proc/self/ns/ipc", &st), "stat ns: %m");
	return st.st_ino;
}

static unsigned char shm_byte(size_t off)
{
	return off >= 4096 && off < 8192 ? 0 : (unsigned char)(off * 31 + 7);
}

static unsigned char msg_byte(int i, size_t off)
{
	return (unsigned char)(i * 50 + off);
}

/* The first id of each kind is taken and freed: what is made next has a non-trivial id. */
static void burn_ids(void)
{
	int shm = shmget(IPC_PRIVATE, 4096, 0600), sem = semget(IPC_PRIVATE, 1, 0600);
	int msq = msgget(IPC_PRIVATE, 0600);

	CHECK(shm >= 0 && sem >= 0 && msq >= 0, "get: %m");
	CHECK(!shmctl(shm, IPC_RMID, NULL) && !semctl(sem, 0, IPC_RMID) &&
		      !msgctl(msq, IPC_RMID, NULL),
	      "rmid: %m");
}

static void make_shms(struct ids *ids)
{
	struct shmid_ds ds;
	unsigned char *p;

	ids->shm_key = shmget(SHM_KEY, SHM_SIZE, IPC_CREAT | IPC_EXCL | 0640);
	CHECK(ids->shm_key > 0, "shmget: %m");
	p = shmat(ids->shm_key, NULL, 0);
	CHECK(p != (void *)-1, "shmat: %m");
	for (size_t i = 0; i < SHM_SIZE; i++)
		if (shm_byte(i)) /* page 1 stays untouched */
			p[i] = shm_byte(i);
	shmdt(p);
	CHECK(!shmctl(ids->shm_key, IPC_STAT, &ds), "IPC_STAT: %m");
	ds.shm_perm.uid = OWNER_UID;
	ds.shm_perm.gid = OWNER_GID;
	CHECK(!shmctl(ids->shm_key, IPC_SET, &ds), "IPC_SET: %m");

	ids->shm_priv = shmget(IPC_PRIVATE, 4096, 0600);
	CHECK(ids->shm_priv >= 0, "shmget: %m");
	p = shmat(ids->shm_priv, NULL, 0);
	CHECK(p != (void *)-1, "shmat: %m");
	strcpy((char *)p, "private");
	shmdt(p);
	CHECK(!shmctl(ids->shm_priv, SHM_LOCK, NULL), "SHM_LOCK: %m");

	/* removed while attached: SHM_DEST, it lives as long as the holder */
	ids->shm_dest = shmget(IPC_PRIVATE, 8192, 0644);
	CHECK(ids->shm_dest >= 0, "shmget: %m");
	p = shmat(ids->shm_dest, NULL, 0);
	CHECK(p != (void *)-1, "shmat: %m");
	strcpy((char *)p + 5000, "doomed");
	CHECK(!shmctl(ids->shm_dest, IPC_RMID, NULL), "IPC_RMID: %m");
}

static void make_sem_msg(struct ids *ids)
{
	struct sembuf op = {1, 0, IPC_NOWAIT}; /* wait-for-zero on 0: sets sem_otime */
	struct msqid_ds ds;
	char buf[sizeof(long) + 2000];

	/* made as another user: its creator */
	CHECK(!setegid(CREATOR_GID) && !seteuid(CREATOR_UID), "seteuid: %m");
	ids->sem = semget(SEM_KEY, 4, IPC_CREAT | IPC_EXCL | 0660);
	CHECK(!seteuid(0) && !setegid(0), "seteuid back: %m");
	CHECK(ids->sem > 0, "semget: %m");
	CHECK(!semctl(ids->sem, 0, SETALL, (union semun_arg){.array = (unsigned short *)sem_vals}),
	      "SETALL: %m");
	CHECK(!semop(ids->sem, &op, 1), "semop: %m");

	ids->msq = msgget(MSG_KEY, IPC_CREAT | IPC_EXCL | 0620);
	CHECK(ids->msq > 0, "msgget: %m");
	for (int i = 0; i < 5; i++) {
		*(long *)buf = msg_types[i];
		for (size_t k = 0; k < msg_sizes[i]; k++)
			buf[sizeof(long) + k] = msg_byte(i, k);
		CHECK(!msgsnd(ids->msq, buf, msg_sizes[i], IPC_NOWAIT), "msgsnd: %m");
	}
	CHECK(!msgctl(ids->msq, IPC_STAT, &ds), "IPC_STAT: %m");
	ds.msg_qbytes = 20000;
	CHECK(!msgctl(ids->msq, IPC_SET, &ds), "IPC_SET: %m");
}

static void make_mqs(void)
{
	struct mq_attr attr = {.mq_maxmsg = 8, .mq_msgsize = 64};
	struct sigevent sev = {.sigev_notify = SIGEV_SIGNAL, .sigev_signo = SIGUSR2};
	mqd_t q = mq_open(MQ_NAME, O_CREAT | O_EXCL | O_RDWR, 0604, &attr);

	CHECK(q >= 0, "mq_open: %m");
	CHECK(!fchmod(q, 0604) && !fchown(q, OWNER_UID, OWNER_GID), "fchown: %m");
	for (int i = 0; i < 4; i++)
		CHECK(!mq_send(q, mq_msgs[i].data, 2, mq_msgs[i].prio), "mq_send: %m");
	close(q);
	/* an empty queue with a notification registered: recorded, nothing fires */
	q = mq_open(MQ_NOTIFY, O_CREAT | O_EXCL | O_RDWR, 0600, &attr);
	CHECK(q >= 0, "mq_open: %m");
	signal(SIGUSR2, SIG_IGN);
	CHECK(!mq_notify(q, &sev), "mq_notify: %m");
	/* left open: the owner's close of the queue would end the registration */
}

static void make_objects(struct ids *ids)
{
	CHECK(!unshare(CLONE_NEWIPC), "unshare: %m");
	write_sysctl("/proc/sys/kernel/msgmnb", "32768");
	write_sysctl("/proc/sys/fs/mqueue/msg_max", "20");
	burn_ids();
	make_shms(ids);
	make_sem_msg(ids);
	make_mqs();
}

static void check_shms(const struct ids *ids, bool restored)
{
	struct shmid_ds ds;
	unsigned char *p;

	CHECK(shmget(SHM_KEY, 0, 0) == ids->shm_key, "shm key %#x: not id %d", SHM_KEY,
	      ids->shm_key);
	CHECK(!shmctl(ids->shm_key, IPC_STAT, &ds), "IPC_STAT: %m");
	CHECK((ds.shm_perm.mode & 07777) == 0640 && ds.shm_perm.uid == OWNER_UID &&
		      ds.shm_perm.gid == OWNER_GID && ds.shm_segsz == SHM_SIZE,
	      "shm %d: mode %#o owner %u:%u size %zu", ids->shm_key, ds.shm_perm.mode,
	      ds.shm_perm.uid, ds.shm_perm.gid, ds.shm_segsz);
	p = shmat(ids->shm_key, NULL, SHM_RDONLY);
	CHECK(p != (void *)-1, "shmat: %m");
	for (size_t i = 0; i < SHM_SIZE; i++)
		CHECK(p[i] == shm_byte(i), "shm %d: byte %zu is %u", ids->shm_key, i, p[i]);
	shmdt(p);

	CHECK(!shmctl(ids->shm_priv, IPC_STAT, &ds), "IPC_STAT private: %m");
	CHECK(ds.shm_perm.__key == IPC_PRIVATE && (ds.shm_perm.mode & 07777) == (0600 | SHM_LOCKED),
	      "shm %d: key %#x mode %#o", ids->shm_priv, ds.shm_perm.__key, ds.shm_perm.mode);
	p = shmat(ids->shm_priv, NULL, SHM_RDONLY);
	CHECK(p != (void *)-1 && !strcmp((char *)p, "private"), "shm %d: content", ids->shm_priv);
	shmdt(p);

	/* restored, it waits for ipc_restore_fini to be removed again */
	CHECK(!shmctl(ids->shm_dest, IPC_STAT, &ds), "IPC_STAT dest: %m");
	CHECK((ds.shm_perm.mode & 07777) == (restored ? 0644 : 0644 | SHM_DEST) &&
		      ds.shm_segsz == 8192,
	      "shm %d: mode %#o", ids->shm_dest, ds.shm_perm.mode);
	p = shmat(ids->shm_dest, NULL, SHM_RDONLY);
	CHECK(p != (void *)-1 && !strcmp((char *)p + 5000, "doomed"), "shm %d: content",
	      ids->shm_dest);
	shmdt(p);
}

static void check_sem_msg(const struct ids *ids)
{
	unsigned short vals[4];
	struct semid_ds sds;
	struct msqid_ds mds;
	char buf[sizeof(long) + 4096];

	CHECK(semget(SEM_KEY, 0, 0) == ids->sem, "sem key: not id %d", ids->sem);
	CHECK(semctl(ids->sem, 0, IPC_STAT, (union semun_arg){.buf = &sds}) == 0, "IPC_STAT: %m");
	CHECK((sds.sem_perm.mode & 0777) == 0660 && sds.sem_perm.cuid == CREATOR_UID &&
		      sds.sem_perm.cgid == CREATOR_GID && sds.sem_nsems == 4 && sds.sem_otime,
	      "sem %d: mode %#o creator %u:%u nsems %lu otime %ld", ids->sem, sds.sem_perm.mode,
	      sds.sem_perm.cuid, sds.sem_perm.cgid, sds.sem_nsems, (long)sds.sem_otime);
	CHECK(semctl(ids->sem, 0, GETALL, (union semun_arg){.array = vals}) == 0, "GETALL: %m");
	for (int i = 0; i < 4; i++)
		CHECK(vals[i] == sem_vals[i], "sem %d: value %d is %u", ids->sem, i, vals[i]);

	CHECK(msgget(MSG_KEY, 0) == ids->msq, "msg key: not id %d", ids->msq);
	CHECK(!msgctl(ids->msq, IPC_STAT, &mds), "IPC_STAT: %m");
	CHECK((mds.msg_perm.mode & 0777) == 0620 && mds.msg_qbytes == 20000 && mds.msg_qnum == 5,
	      "msg %d: mode %#o qbytes %lu qnum %lu", ids->msq, mds.msg_perm.mode, mds.msg_qbytes,
	      mds.msg_qnum);
	for (int i = 0; i < 5; i++) {
		ssize_t n = msgrcv(ids->msq, buf, 4096, 0, IPC_NOWAIT);

		CHECK(n == (ssize_t)msg_sizes[i] && *(long *)buf == msg_types[i],
		      "message %d: %zd bytes, type %ld", i, n, *(long *)buf);
		for (ssize_t k = 0; k < n; k++)
			CHECK((unsigned char)buf[sizeof(long) + k] == msg_byte(i, k),
			      "message %d: byte %zd", i, k);
	}
}

static void check_mqs(void)
{
	mqd_t q = mq_open(MQ_NAME, O_RDONLY | O_NONBLOCK);
	struct mq_attr attr;
	struct stat st;
	char buf[64];

	CHECK(q >= 0 && !mq_getattr(q, &attr) && !fstat(q, &st), "mq_open: %m");
	CHECK(attr.mq_maxmsg == 8 && attr.mq_msgsize == 64 && attr.mq_curmsgs == 4,
	      "mq: %ld x %ld, %ld queued", attr.mq_maxmsg, attr.mq_msgsize, attr.mq_curmsgs);
	CHECK((st.st_mode & 07777) == 0604 && st.st_uid == OWNER_UID && st.st_gid == OWNER_GID,
	      "mq: mode %#o owner %u:%u", st.st_mode, st.st_uid, st.st_gid);
	for (int i = 0; i < 4; i++) {
		unsigned int prio;
		ssize_t n = mq_receive(q, buf, sizeof(buf), &prio);
		int want = mq_order[i];

		CHECK(n == 2 && !memcmp(buf, mq_msgs[want].data, 2) && prio == mq_msgs[want].prio,
		      "mq message %d: %zd bytes \"%.2s\" priority %u", i, n, buf, prio);
	}
	close(q);
	q = mq_open(MQ_NOTIFY, O_RDONLY);
	CHECK(q >= 0, "mq_open %s: %m", MQ_NOTIFY);
	close(q);
}

/* The objects as made (destructive: messages are received). */
static void check_objects(const struct ids *ids, bool restored)
{
	CHECK(read_sysctl("/proc/sys/kernel/msgmnb") == 32768, "msgmnb");
	CHECK(read_sysctl("/proc/sys/fs/mqueue/msg_max") == 20, "mq msg_max");
	check_shms(ids, restored);
	check_sem_msg(ids);
	check_mqs();
}

static void check_held(const struct ids *ids)
{
	check_objects(ids, false);
}

struct holder {
	pid_t pid;
	int report; /* holder -> test: 'K' and its ids, or '!' and why it failed */
	int go;	    /* test -> holder: a byte: check your objects */
	struct ids ids;
};

/* A process in a new ipc namespace: make() there, then check() once the test says so. */
static void holder_start(struct holder *h, void (*make)(struct ids *),
			 void (*check)(const struct ids *))
{
	int rp[2], gp[2];
	char buf[1 + sizeof(struct ids) + 600];

	ssize_t n;

	cr_assert(!pipe2(rp, O_CLOEXEC) && !pipe2(gp, O_CLOEXEC));
	h->pid = fork();
	cr_assert(h->pid >= 0);
	if (h->pid == 0) {
		struct ids ids = {0};

		close(rp[0]);
		close(gp[1]);
		report_fd = rp[1];
		make(&ids);
		buf[0] = 'K';
		memcpy(buf + 1, &ids, sizeof(ids));
		CHECK(write(rp[1], buf, 1 + sizeof(ids)) == 1 + sizeof(ids), "write: %m");
		if (read(gp[0], buf, 1) == 1 && check)
			check(&ids);
		_exit(0);
	}
	close(rp[1]);
	close(gp[0]);
	h->report = rp[0];
	h->go = gp[1];
	n = read(h->report, buf, sizeof(buf) - 1);
	buf[n > 0 ? n : 0] = 0;
	cr_assert(n == 1 + sizeof(struct ids) && buf[0] == 'K', "holder failed: %s",
		  n > 0 ? buf + 1 : "no reason");
	memcpy(&h->ids, buf + 1, sizeof(h->ids));
}

/* The holder checks what it holds, then exits. */
static void holder_finish(struct holder *h)
{
	cr_assert_eq(write(h->go, "c", 1), 1);
	close(h->go);
	child_wait(h->pid, h->report);
	close(h->report);
}

struct dump_arg {
	pid_t pid;
	int dirfd;
	int want; /* ipc_dump's result */
	const char *error;
};

static void dump_child(void *p)
{
	struct dump_arg *a = p;
	ino_t before = ipcns_ino();
	int ret = ipc_dump(a->dirfd, a->pid);

	CHECK(ret == a->want, "ipc_dump returned %d: %s", ret, crest_last_error());
	CHECK(!a->error || strstr(crest_last_error(), a->error), "error \"%s\" lacks \"%s\"",
	      crest_last_error(), a->error);
	CHECK(ipcns_ino() == before, "ipc_dump left the caller in another ipc namespace");
}

static void restore_child(void *p)
{
	const struct ids *ids = p;
	struct shmid_ds ds;
	void *att;

	CHECK(!unshare(CLONE_NEWIPC), "unshare: %m");
	CHECK(ipc_restore(dfd) == 0, "ipc_restore: %s", crest_last_error());
	check_objects(ids, true);
	/* a task attaches the destroyed segment again; fini marks it SHM_DEST */
	att = shmat(ids->shm_dest, NULL, 0);
	CHECK(att != (void *)-1, "shmat: %m");
	CHECK(ipc_restore_fini(dfd) == 0, "ipc_restore_fini: %s", crest_last_error());
	CHECK(!shmctl(ids->shm_dest, IPC_STAT, &ds) && (ds.shm_perm.mode & SHM_DEST),
	      "shm %d not SHM_DEST after fini", ids->shm_dest);
	shmdt(att);
	CHECK(shmctl(ids->shm_dest, IPC_STAT, &ds) < 0, "shm %d outlived its last detach",
	      ids->shm_dest);
	CHECK(shmctl(ids->shm_key, IPC_STAT, &ds) == 0, "shm %d was removed by fini", ids->shm_key);
}

/* What ipc.img says of the holder's objects: the layout, the sparse segment, the queue. */
static void check_image(const struct holder *h)
{
	ProtobufCMessage *msg;
	const IpcEntry *ie;
	const IpcShmEntry *shm = NULL;
	const IpcMqEntry *nq = NULL;

	cr_assert_eq(img_read_one(dfd, IMG_IPC, 0, &ipc_entry__descriptor, &msg), 0);
	ie = (IpcEntry *)msg;
	cr_assert_eq(ie->n_shms, 3);
	cr_assert_eq(ie->n_sems, 1);
	cr_assert_eq(ie->n_msqs, 1);
	cr_assert_eq(ie->n_mqs, 2);
	for (size_t i = 0; i < ie->n_shms; i++)
		if (ie->shms[i]->perm->id == (uint32_t)h->ids.shm_key)
			shm = ie->shms[i];
	cr_assert_not_null(shm);
	cr_assert_eq(shm->perm->key, SHM_KEY);
	/* the untouched page 1 is a hole: two runs, page 0 and the rest */
	cr_assert_eq(shm->n_runs, 4);
	cr_assert(shm->runs[0] == 0 && shm->runs[1] == 4096 && shm->runs[2] == 8192 &&
		  shm->runs[3] == SHM_SIZE - 8192);
	for (size_t i = 0; i < ie->n_mqs; i++)
		if (!strcmp(ie->mqs[i]->name, MQ_NOTIFY + 1))
			nq = ie->mqs[i];
	cr_assert_not_null(nq);
	cr_assert(nq->has_notify_pid && nq->notify_pid == (uint32_t)h->pid);
	cr_assert(nq->notify == SIGEV_SIGNAL && nq->signo == SIGUSR2);
	protobuf_c_message_free_unpacked(msg, NULL);
}

Test(ipc, dump_restore_round_trip, .timeout = 60)
{
	struct holder h;
	struct dump_arg a = {.dirfd = dfd};

	holder_start(&h, make_objects, check_held);
	a.pid = h.pid;
	in_child(dump_child, &a);
	check_image(&h);
	holder_finish(&h); /* the dump changed nothing */
	in_child(restore_child, &h.ids);
}

/* Failing inside the namespace (no image can be written), the dump still comes back out. */
Test(ipc, failed_dump_returns_to_own_namespace, .timeout = 60)
{
	struct holder h;
	struct dump_arg a = {.dirfd = -1, .want = -1, .error = "ipcshm"};

	holder_start(&h, make_objects, check_held);
	a.pid = h.pid;
	in_child(dump_child, &a);
	holder_finish(&h);
}

static void make_notified(struct ids *ids)
{
	struct mq_attr attr = {.mq_maxmsg = 4, .mq_msgsize = 16};
	struct sigevent sev = {.sigev_notify = SIGEV_NONE};
	mqd_t q;

	CHECK(!unshare(CLONE_NEWIPC), "unshare: %m");
	q = mq_open("/busy", O_CREAT | O_RDWR, 0600, &attr);
	CHECK(q >= 0 && !mq_send(q, "x", 1, 0) && !mq_notify(q, &sev), "mq: %m");
}

static void check_notified(const struct ids *ids)
{
	struct sigevent sev = {.sigev_notify = SIGEV_NONE};
	mqd_t q = mq_open("/busy", O_RDWR);
	struct mq_attr attr;

	CHECK(q >= 0 && !mq_getattr(q, &attr) && attr.mq_curmsgs == 1, "/busy: %m");
	CHECK(mq_notify(q, &sev) < 0 && errno == EBUSY, "/busy: its notification is gone");
	close(q);
}

/* Its messages cannot be read without firing the notification: refused, left as it was. */
Test(ipc, notified_nonempty_queue_refused, .timeout = 60)
{
	struct holder h;
	struct dump_arg a = {.dirfd = dfd, .want = -1, .error = "notification"};

	holder_start(&h, make_notified, check_notified);
	a.pid = h.pid;
	in_child(dump_child, &a);
	holder_finish(&h);
}

struct refuse_arg {
	const char *error;
};

static void refuse_child(void *p)
{
	const struct refuse_arg *a = p;
	struct shm_info info;

	CHECK(!unshare(CLONE_NEWIPC), "unshare: %m");
	CHECK(ipc_restore(dfd) == -1, "ipc_restore accepted a bad image");
	CHECK(strstr(crest_last_error(), a->error), "error \"%s\" lacks \"%s\"", crest_last_error(),
	      a->error);
	/* refused before anything was made */
	CHECK(shmctl(0, SHM_INFO, (struct shmid_ds *)&info) >= 0 && info.used_ids == 0,
	      "a segment was made");
}

static void expect_refused(const char *error)
{
	struct refuse_arg a = {error};

	in_child(refuse_child, &a);
}

static void write_entry(IpcEntry *ie)
{
	cr_assert_eq(img_write_one(dfd, IMG_IPC, 0, &ie->base), 0);
}

Test(ipc, truncated_or_corrupt_image_refused, .timeout = 60)
{
	struct holder h;
	struct dump_arg a = {.dirfd = dfd};
	unsigned char *buf;
	size_t len;

	holder_start(&h, make_objects, NULL);
	a.pid = h.pid;
	in_child(dump_child, &a);
	holder_finish(&h);

	buf = unit_read_file(dfd, "ipc.img", &len);
	unit_write_file(dfd, "ipc.img", buf, len - 9);
	expect_refused("ipc.img"); /* shorter than its header says */
	buf[len / 2] ^= 0x40;
	unit_write_file(dfd, "ipc.img", buf, len);
	expect_refused("ipc.img"); /* checksum */
	buf[len / 2] ^= 0x40;
	unit_unseal(buf); /* nothing to compare with: the parser finds the message cut short */
	unit_write_file(dfd, "ipc.img", buf, len - 9);
	expect_refused("ipc.img");
	unit_write_file(dfd, "ipc.img", buf, sizeof(struct img_header) + 2);
	expect_refused("ipc.img");
	free(buf);
}

/* ipcshm-5.img with len bytes of data */
static void write_shm_data(size_t len)
{
	struct cr_img *img = img_open_write(dfd, IMG_IPC_SHM, 5);
	void *zero = calloc(1, len);

	cr_assert(img && zero);
	cr_assert_eq(img_write_raw(img, zero, len), 0);
	cr_assert_eq(img_close(img), 0);
	free(zero);
}

Test(ipc, malformed_entries_refused, .timeout = 60)
{
	IpcEntry ie = IPC_ENTRY__INIT;
	IpcPermEntry perm = IPC_PERM_ENTRY__INIT;
	IpcShmEntry shm = IPC_SHM_ENTRY__INIT, *shmp = &shm;
	IpcSemEntry sem = IPC_SEM_ENTRY__INIT, *semp = &sem;
	IpcMsqEntry msq = IPC_MSQ_ENTRY__INIT, *msqp = &msq;
	IpcMsgEntry msg = IPC_MSG_ENTRY__INIT, *msgp = &msg;
	IpcMqEntry mq = IPC_MQ_ENTRY__INIT, *mqp = &mq;
	IpcMqMsgEntry mqm = IPC_MQ_MSG_ENTRY__INIT, *mqmp = &mqm;
	IpcSysctlEntry sc = IPC_SYSCTL_ENTRY__INIT, *scp = &sc;
	uint64_t runs[4] = {0, 4096, 4096, 4096};
	uint32_t vals[2] = {1, 40000};
	uint8_t data[17] = {0};

	perm.id = 5;
	perm.mode = 0600;
	mqm.data = (ProtobufCBinaryData){sizeof(data), data};
	shm.perm = &perm;
	shm.size = 8192;
	shm.runs = runs;
	shm.n_runs = 4;
	ie.shms = &shmp;
	ie.n_shms = 1;
	/* each bad entry comes with a data image as large as its runs: only its flaw is left */
	write_shm_data(4096);
	write_entry(&ie);
	expect_refused("ipcshm-5.img holds 4096 bytes, its runs 8192");
	runs[3] = 8192; /* past the end */
	write_shm_data(4096 + 8192);
	write_entry(&ie);
	expect_refused("ipc.img: shm 5: data run 1 [4096, +8192) is out of order or outside");
	runs[2] = 0; /* overlapping */
	runs[3] = 10;
	write_shm_data(4096 + 10);
	write_entry(&ie);
	expect_refused("ipc.img: shm 5: data run 1 [0, +10) is out of order or outside");
	shm.n_runs = 3;
	write_entry(&ie);
	expect_refused("ipc.img: shm 5: bad size 8192 or data runs");
	shm.n_runs = 0;
	shm.size = 0;
	write_entry(&ie);
	expect_refused("ipc.img: shm 5: bad size 0");
	shm.size = 4096;
	perm.mode = 0100000;
	write_entry(&ie);
	expect_refused("ipc.img: shm 5: bad id or mode");
	perm.mode = 0600;
	perm.id = 1u << 31;
	write_entry(&ie);
	expect_refused("bad id or mode");
	perm.id = 5;

	ie.n_shms = 0;
	sem.perm = &perm;
	ie.sems = &semp;
	ie.n_sems = 1;
	write_entry(&ie);
	expect_refused("ipc.img: sem 5: bad number of semaphores 0");
	sem.values = vals;
	sem.n_values = 2;
	write_entry(&ie);
	expect_refused("ipc.img: sem 5: value 40000 is over 32767");

	ie.n_sems = 0;
	msq.perm = &perm;
	msq.msgs = &msgp;
	msq.n_msgs = 1;
	ie.msqs = &msqp;
	ie.n_msqs = 1;
	write_entry(&ie);
	expect_refused("ipc.img: msg 5: message 0 has type 0");

	ie.n_msqs = 0;
	mq.name = "a/b";
	mq.maxmsg = 4;
	mq.msgsize = 16;
	ie.mqs = &mqp;
	ie.n_mqs = 1;
	write_entry(&ie);
	expect_refused("ipc.img: bad POSIX queue name");
	mq.name = "q";
	mq.maxmsg = 0;
	write_entry(&ie);
	expect_refused("ipc.img: mqueue /q: bad mode");
	mq.maxmsg = 4;
	mq.msgs = &mqmp;
	mq.n_msgs = 1;
	write_entry(&ie);
	expect_refused("ipc.img: mqueue /q: message 0 has 17 bytes");

	ie.n_mqs = 0;
	sc.path = "kernel/core_pattern";
	sc.value = "|/bin/sh";
	ie.sysctls = &scp;
	ie.n_sysctls = 1;
	write_entry(&ie);
	expect_refused("ipc.img: sysctl kernel/core_pattern");
}
