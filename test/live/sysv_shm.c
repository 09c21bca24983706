// SPDX-License-Identifier: MIT
/*
 * SysV shared memory attached in a parent and its child (inherited at fork), and a POSIX
 * message queue open as an fd, in crest's own ipc namespace (the objects outlive the tree).
 * After SIGTERM: the segment is attached at the same address in both, with its pattern; the
 * root writes a go word, the child must see it and answer through the segment (one object,
 * not two copies); the queue fd still reads the two queued messages in order, and the
 * notification the root registered on it (SIGUSR1) comes when a message arrives in the
 * emptied queue.
 */
#include <fcntl.h>
#include <mqueue.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/shm.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "testlib.h"

#define SEG (64ul << 10)
#define SEED 0x5359535600000000ull
#define GO 0x60606060u
#define ACK 0xacacacacu

static volatile sig_atomic_t notified;

static void on_usr1(int sig)
{
	notified = 1;
}

int main(void)
{
	struct mq_attr attr = {.mq_maxmsg = 4, .mq_msgsize = 32}, now;
	volatile unsigned int *ctl;
	char name[64], msg[32];
	unsigned int prio;
	int shmid, status;
	uint64_t deadline;
	char *seg;
	mqd_t mq;
	pid_t child;

	tl_init();
	shmid = shmget(IPC_PRIVATE, SEG, 0600);
	seg = shmid < 0 ? (char *)-1 : shmat(shmid, NULL, 0);
	if (seg == (char *)-1)
		tl_fail("shmget/shmat: %m");
	tl_fill(seg + 4096, SEG - 4096, SEED);
	ctl = (volatile unsigned int *)seg;
	snprintf(name, sizeof(name), "/crest-live-%d", getpid());
	mq = mq_open(name, O_CREAT | O_EXCL | O_RDWR, 0600, &attr);
	struct sigevent sev = {.sigev_notify = SIGEV_SIGNAL, .sigev_signo = SIGUSR1};

	signal(SIGUSR1, on_usr1);
	if (mq < 0 || mq_send(mq, "first", 6, 1) || mq_send(mq, "second", 7, 1) ||
	    mq_notify(mq, &sev))
		tl_fail("mq_open/mq_send/mq_notify %s: %m", name);
	child = fork();
	if (child == 0) {
		while (ctl[0] != GO)
			usleep(1000);
		ctl[1] = tl_check_fill(seg + 4096, SEG - 4096, SEED) < 0 ? ACK : 1;
		_exit(0);
	}
	tl_ready();
	tl_wait_term();
	tl_expect(tl_check_fill(seg + 4096, SEG - 4096, SEED) < 0, "root: pattern changed");
	ctl[0] = GO;
	deadline = tl_now_ns() + 5 * TL_NSEC_PER_SEC;
	while (ctl[1] == 0 && tl_now_ns() < deadline)
		usleep(1000);
	tl_expect(ctl[1] == ACK, "child answered %#x through the segment", ctl[1]);
	tl_expect(waitpid(child, &status, 0) == child && WIFEXITED(status), "child not reaped");
	tl_expect(!mq_getattr(mq, &now) && now.mq_curmsgs == 2 && now.mq_maxmsg == 4,
		  "queue attributes: %ld messages, max %ld", now.mq_curmsgs, now.mq_maxmsg);
	tl_expect(mq_receive(mq, msg, sizeof(msg), &prio) == 6 && !strcmp(msg, "first"),
		  "first message");
	tl_expect(mq_receive(mq, msg, sizeof(msg), &prio) == 7 && !strcmp(msg, "second"),
		  "second message");
	tl_expect(!notified, "notified before a message arrived in the empty queue");
	tl_expect(!mq_send(mq, "third", 6, 1), "mq_send: %m");
	deadline = tl_now_ns() + 2 * TL_NSEC_PER_SEC;
	while (!notified && tl_now_ns() < deadline)
		usleep(1000);
	tl_expect(notified, "no notification when a message arrived in the empty queue");
	mq_unlink(name);
	shmdt(seg);
	shmctl(shmid, IPC_RMID, NULL);
	tl_done();
}
