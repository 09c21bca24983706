// SPDX-License-Identifier: MIT
/*
 * ctr-service: the sample container's service (scripts/container.sh), built statically.
 *
 * A TCP listener on 0.0.0.0:7000; per connection it reads one line and answers one line.
 * State, created at start:
 *   - a SysV shared memory segment (key 0x43525354, one page, 0600) holding a request counter
 *   - a SysV message queue (same key): each request adds one message (mtype N, "req N"),
 *     the oldest taken out when it is full (msgmnb, 16 KiB: some 1800 messages)
 *   - a SysV semaphore set (same key, 2 semaphores set to 7 and 11): the first +1 per request
 *   - a POSIX message queue /ctr (maxmsg 16, msgsize 64): one message per request, at most
 *     10 kept (the oldest is received when full)
 *   - /tmp/state: "req N" appended per request; /run/started: the start time, written once
 *   - /data/log: "req N" appended per request (the container's volume, a bind mount);
 *     /var/lib/ctr/last: "req N", rewritten per request (a file on the container's root)
 *
 * Commands:
 *   get    count one request (everything above), then answer as peek does
 *   peek   answer without changing anything:
 *          counter=N shm=N sem=A,B msgs=M mq=K file_lines=L started=T hostname=H pid=P
 *          mqattr=MAXMSG/MSGSIZE
 *          counter is the process's own count, everything else is read back from the
 *          kernel objects and files
 * Anything else gets "error ...".  Single-threaded; EINTR is retried; it runs forever.
 */
#include <errno.h>
#include <fcntl.h>
#include <mqueue.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ipc.h>
#include <sys/msg.h>
#include <sys/sem.h>
#include <sys/shm.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define KEY 0x43525354
#define PORT 7000
#define MQ_NAME "/ctr"
#define MQ_MAXMSG 16
#define MQ_MSGSIZE 64
#define MQ_KEEP 10
#define STATE_FILE "/tmp/state"
#define STARTED_FILE "/run/started"
#define DATA_LOG "/data/log"
#define LAST_FILE "/var/lib/ctr/last"

union semun {
	int val;
	struct semid_ds *buf;
	unsigned short *array;
};

struct ctr_msg {
	long mtype;
	char mtext[32];
};

static unsigned long counter; /* this process's own count of "get" requests */
static volatile unsigned long *shm_counter;
static int msqid = -1, semid = -1;

static void logmsg(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	fprintf(stderr, "ctr-service[%d]: ", getpid());
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
}

static void die(const char *what)
{
	logmsg("%s: %s", what, strerror(errno));
	exit(1);
}

/* write all of buf, retrying EINTR and partial writes */
static int write_all(int fd, const char *buf, size_t len, int is_socket)
{
	while (len) {
		ssize_t n = is_socket ? send(fd, buf, len, MSG_NOSIGNAL) : write(fd, buf, len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		buf += n;
		len -= (size_t)n;
	}
	return 0;
}

static int open_retry(const char *path, int flags, mode_t mode)
{
	int fd;

	do
		fd = open(path, flags | O_CLOEXEC, mode);
	while (fd < 0 && errno == EINTR);
	return fd;
}

static int write_file(const char *path, int flags, const char *text)
{
	int fd = open_retry(path, O_WRONLY | O_CREAT | flags, 0644), ret;

	if (fd < 0) {
		logmsg("open %s: %s", path, strerror(errno));
		return -1;
	}
	ret = write_all(fd, text, strlen(text), 0);
	if (ret)
		logmsg("write %s: %s", path, strerror(errno));
	close(fd);
	return ret;
}

/* Number of lines in a file (0 when it does not exist). */
static long count_lines(const char *path)
{
	char buf[4096];
	long lines = 0;
	ssize_t n;
	int fd = open_retry(path, O_RDONLY, 0);

	if (fd < 0)
		return errno == ENOENT ? 0 : -1;
	for (;;) {
		n = read(fd, buf, sizeof(buf));
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		for (ssize_t i = 0; i < n; i++)
			lines += buf[i] == '\n';
	}
	close(fd);
	return n < 0 ? -1 : lines;
}

/* The first line of a small file, without its newline ("?" when unreadable). */
static void read_first_line(const char *path, char *out, size_t size)
{
	ssize_t n;
	int fd = open_retry(path, O_RDONLY, 0);

	snprintf(out, size, "?");
	if (fd < 0)
		return;
	do
		n = read(fd, out, size - 1);
	while (n < 0 && errno == EINTR);
	close(fd);
	if (n <= 0)
		return;
	out[n] = 0;
	out[strcspn(out, "\r\n")] = 0;
}

static mqd_t mq_open_retry(int flags)
{
	mqd_t mq;

	do
		mq = mq_open(MQ_NAME, flags);
	while (mq == (mqd_t)-1 && errno == EINTR);
	return mq;
}

static int semop_retry(struct sembuf *op)
{
	int ret;

	do
		ret = semop(semid, op, 1);
	while (ret < 0 && errno == EINTR);
	return ret;
}

/* Count one request in every object. */
static void count_request(void)
{
	struct ctr_msg m = {0};
	struct sembuf op = {.sem_num = 0, .sem_op = 1, .sem_flg = IPC_NOWAIT};
	struct mq_attr attr;
	char line[64], old[MQ_MSGSIZE];
	unsigned long n;
	mqd_t mq;
	int ret;

	counter++;
	n = ++*shm_counter;

	m.mtype = (long)n;
	snprintf(m.mtext, sizeof(m.mtext), "req %lu", n);
	/* when the queue is full, make room by taking the oldest messages (a few at most:
	 * the new one is at most a few bytes longer than any of them) */
	for (int tries = 0; tries < 16; tries++) {
		struct ctr_msg drop;

		do
			ret = msgsnd(msqid, &m, strlen(m.mtext) + 1, IPC_NOWAIT);
		while (ret < 0 && errno == EINTR);
		if (ret == 0 || errno != EAGAIN)
			break;
		while (msgrcv(msqid, &drop, sizeof(drop.mtext), 0, IPC_NOWAIT | MSG_NOERROR) < 0 &&
		       errno == EINTR)
			;
	}
	if (ret)
		logmsg("msgsnd: %s", strerror(errno));

	if (semop_retry(&op)) {
		if (errno == ERANGE) { /* at SEMVMX: start over from 7 */
			union semun arg = {.val = 7};
			semctl(semid, 0, SETVAL, arg);
		} else {
			logmsg("semop: %s", strerror(errno));
		}
	}

	mq = mq_open_retry(O_RDWR | O_NONBLOCK);
	if (mq == (mqd_t)-1) {
		logmsg("mq_open %s: %s", MQ_NAME, strerror(errno));
	} else {
		if (mq_getattr(mq, &attr) == 0 && attr.mq_curmsgs >= MQ_KEEP) {
			while (mq_receive(mq, old, sizeof(old), NULL) < 0 && errno == EINTR)
				;
		}
		while ((ret = mq_send(mq, m.mtext, strlen(m.mtext) + 1, 0)) < 0 && errno == EINTR)
			;
		if (ret)
			logmsg("mq_send: %s", strerror(errno));
		mq_close(mq);
	}

	snprintf(line, sizeof(line), "req %lu\n", n);
	write_file(STATE_FILE, O_APPEND, line);
	write_file(DATA_LOG, O_APPEND, line);
	write_file(LAST_FILE, O_TRUNC, line);
}

/* The answer, read back from the kernel objects. */
static void describe(char *out, size_t size)
{
	struct msqid_ds mds;
	struct mq_attr attr = {0};
	char started[64], host[128] = "?";
	long qnum = -1, curmsgs = -1, maxmsg = -1, msgsize = -1;
	int s0, s1;
	mqd_t mq;

	s0 = semctl(semid, 0, GETVAL);
	s1 = semctl(semid, 1, GETVAL);
	if (msgctl(msqid, IPC_STAT, &mds) == 0)
		qnum = (long)mds.msg_qnum;
	mq = mq_open_retry(O_RDONLY | O_NONBLOCK);
	if (mq != (mqd_t)-1) {
		if (mq_getattr(mq, &attr) == 0) {
			curmsgs = attr.mq_curmsgs;
			maxmsg = attr.mq_maxmsg;
			msgsize = attr.mq_msgsize;
		}
		mq_close(mq);
	}
	read_first_line(STARTED_FILE, started, sizeof(started));
	if (gethostname(host, sizeof(host) - 1))
		snprintf(host, sizeof(host), "?");
	snprintf(out, size,
		 "counter=%lu shm=%lu sem=%d,%d msgs=%ld mq=%ld file_lines=%ld started=%s "
		 "hostname=%s pid=%d mqattr=%ld/%ld",
		 counter, *shm_counter, s0, s1, qnum, curmsgs, count_lines(STATE_FILE), started,
		 host, getpid(), maxmsg, msgsize);
}

static void setup(void)
{
	unsigned short vals[2] = {7, 11};
	union semun arg = {.array = vals};
	struct mq_attr attr = {.mq_maxmsg = MQ_MAXMSG, .mq_msgsize = MQ_MSGSIZE};
	char line[64];
	void *addr;
	mqd_t mq;
	int shmid;

	shmid = shmget(KEY, 4096, IPC_CREAT | 0600);
	if (shmid < 0)
		die("shmget");
	addr = shmat(shmid, NULL, 0);
	if (addr == (void *)-1)
		die("shmat");
	shm_counter = addr;
	msqid = msgget(KEY, IPC_CREAT | 0600);
	if (msqid < 0)
		die("msgget");
	semid = semget(KEY, 2, IPC_CREAT | 0600);
	if (semid < 0)
		die("semget");
	if (semctl(semid, 0, SETALL, arg))
		die("semctl SETALL");
	mq = mq_open(MQ_NAME, O_RDWR | O_CREAT, 0600, &attr);
	if (mq == (mqd_t)-1)
		die("mq_open " MQ_NAME);
	mq_close(mq);
	snprintf(line, sizeof(line), "%lld\n", (long long)time(NULL));
	if (write_file(STARTED_FILE, O_TRUNC, line))
		exit(1);
}

static int listener(void)
{
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(PORT)};
	int one = 1, fd;

	fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		die("socket");
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)))
		die("SO_REUSEADDR");
	sa.sin_addr.s_addr = htonl(INADDR_ANY);
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)))
		die("bind 0.0.0.0:7000");
	if (listen(fd, 16))
		die("listen");
	return fd;
}

/* One line from the client (without its newline); -1 when none came. */
static int read_line(int fd, char *buf, size_t size)
{
	size_t len = 0;

	while (len < size - 1) {
		ssize_t n = recv(fd, buf + len, size - 1 - len, 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		len += (size_t)n;
		if (memchr(buf, '\n', len))
			break;
	}
	buf[len] = 0;
	buf[strcspn(buf, "\r\n")] = 0;
	return len ? 0 : -1;
}

static void serve(int cfd)
{
	/* a client that says nothing must not hold up the others for long */
	struct timeval tv = {.tv_sec = 2};
	char req[128], ans[512];

	setsockopt(cfd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(cfd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	if (read_line(cfd, req, sizeof(req)))
		return;
	if (!strcmp(req, "get")) {
		count_request();
		describe(ans, sizeof(ans));
	} else if (!strcmp(req, "peek")) {
		describe(ans, sizeof(ans));
	} else {
		snprintf(ans, sizeof(ans), "error unknown command (get, peek)");
	}
	strcat(ans, "\n");
	write_all(cfd, ans, strlen(ans), 1);
}

int main(void)
{
	int lfd, cfd;

	signal(SIGPIPE, SIG_IGN);
	setvbuf(stderr, NULL, _IOLBF, 0);
	setup();
	lfd = listener();
	logmsg("listening on 0.0.0.0:%d", PORT);
	for (;;) {
		cfd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
		if (cfd < 0) {
			if (errno != EINTR && errno != ECONNABORTED)
				logmsg("accept: %s", strerror(errno));
			if (errno == EMFILE || errno == ENFILE || errno == ENOMEM)
				usleep(100000); /* nothing to do but wait for resources */
			continue;
		}
		serve(cfd);
		close(cfd);
	}
}
