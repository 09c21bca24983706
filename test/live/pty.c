// SPDX-License-Identifier: MIT
/*
 * An interactive program in a pseudo-terminal, as under script(1): we hold the master at
 * fd 3 with a 33x77 window; a child makes itself a session leader, takes the slave as its
 * controlling terminal on fds 0-2, changes a few terminal settings (VKILL, no ECHOCTL) and
 * execs /bin/cat.  We say ready once cat echoes a line back.
 *
 * After SIGTERM the pair must be as before, though possibly with another /dev/pts number:
 * same settings and window size, the child's session owning the terminal with the child's
 * group in the foreground, the child's fds 0-2 on the slave that goes with our master (and its
 * /proc stat naming that slave as controlling terminal).  Then it must still be interactive:
 * a line typed into the master comes back echoed and copied by cat, and ^C typed into it
 * kills cat with SIGINT, which only works through the controlling terminal and foreground
 * group.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include "testlib.h"

#define FD_MASTER 3
#define WAIT_MS 5000

static pid_t child;
static struct termios tio_before;

/* Read from the master until want has been seen (anywhere in the output) or time runs out. */
static bool expect_output(const char *want, char *got, size_t size)
{
	struct pollfd p = { .fd = FD_MASTER, .events = POLLIN };
	uint64_t end = tl_now_ns() + WAIT_MS * TL_NSEC_PER_MSEC;
	size_t len = 0;

	got[0] = '\0';
	while (!strstr(got, want) && tl_now_ns() < end && len + 1 < size) {
		ssize_t n;

		if (poll(&p, 1, 100) <= 0)
			continue;
		n = read(FD_MASTER, got + len, size - 1 - len);
		if (n <= 0)
			break;
		len += n;
		got[len] = '\0';
	}
	return strstr(got, want);
}

static void run_child(const char *slave)
{
	struct termios tio;
	int fd;

	/* a shell without job control starts us with SIGINT ignored: cat must feel ^C */
	signal(SIGINT, SIG_DFL);
	if (setsid() < 0)
		_exit(10);
	fd = open(slave, O_RDWR); /* a session leader's first terminal: its controlling one */
	if (fd < 0 || dup2(fd, 0) < 0 || dup2(fd, 1) < 0 || dup2(fd, 2) < 0)
		_exit(11);
	close_range(3, ~0U, 0);
	if (tcgetattr(0, &tio))
		_exit(12);
	tio.c_cc[VKILL] = 0x0b;
	tio.c_lflag &= ~ECHOCTL;
	if (tcsetattr(0, TCSANOW, &tio))
		_exit(13);
	execl("/bin/cat", "cat", (char *)NULL);
	_exit(14);
}

static void check_terminal(void)
{
	char proc[64], link[256], want[64], stat_text[1024], out[4096];
	struct termios tio = { 0 };
	struct winsize win = { 0 };
	unsigned int index;
	const char *p;
	int tty_nr = -1, status;

	tl_expect(!tcgetattr(FD_MASTER, &tio) && tio.c_iflag == tio_before.c_iflag &&
			  tio.c_oflag == tio_before.c_oflag && tio.c_cflag == tio_before.c_cflag &&
			  tio.c_lflag == tio_before.c_lflag &&
			  !memcmp(tio.c_cc, tio_before.c_cc, sizeof(tio.c_cc)),
		  "the terminal settings changed (lflag %#x, was %#x; VKILL %#x)", tio.c_lflag,
		  tio_before.c_lflag, tio.c_cc[VKILL]);
	tl_expect(!ioctl(FD_MASTER, TIOCGWINSZ, &win) && win.ws_row == 33 && win.ws_col == 77,
		  "the window is %ux%u, not 33x77", win.ws_row, win.ws_col);
	tl_expect(tcgetsid(FD_MASTER) == child, "the terminal's session is %d, not %d",
		  tcgetsid(FD_MASTER), child);
	tl_expect(tcgetpgrp(FD_MASTER) == child, "the foreground group is %d, not %d",
		  tcgetpgrp(FD_MASTER), child);
	if (!tl_expect(!ioctl(FD_MASTER, TIOCGPTN, &index), "TIOCGPTN: %m"))
		return;
	tl_log("the slave is /dev/pts/%u", index);
	snprintf(want, sizeof(want), "/dev/pts/%u", index);
	for (int fd = 0; fd < 3; fd++) {
		ssize_t n;

		snprintf(proc, sizeof(proc), "/proc/%d/fd/%d", child, fd);
		n = readlink(proc, link, sizeof(link) - 1);
		link[n > 0 ? n : 0] = '\0';
		tl_expect(!strcmp(link, want), "the child's fd %d is %s, not %s", fd, link, want);
	}
	snprintf(proc, sizeof(proc), "/proc/%d/stat", child);
	tl_read_file(proc, stat_text, sizeof(stat_text));
	p = strrchr(stat_text, ')');
	if (p)
		sscanf(p + 2, "%*c %*d %*d %*d %d", &tty_nr);
	tl_expect(tty_nr == (int)makedev(136 + index / 256, index % 256),
		  "the child's controlling terminal is %#x, not %s", tty_nr, want);

	/* still interactive: a line comes back, echoed and copied */
	tl_expect(write(FD_MASTER, "after restore\n", 14) == 14, "write to the master: %m");
	tl_expect(expect_output("after restore\r\nafter restore\r\n", out, sizeof(out)),
		  "typed a line, got back \"%s\"", out);
	/* ^C reaches the foreground group through the controlling terminal */
	tl_expect(write(FD_MASTER, "\003", 1) == 1, "write ^C: %m");
	if (tl_expect(waitpid(child, &status, 0) == child, "waitpid: %m"))
		tl_expect(WIFSIGNALED(status) && WTERMSIG(status) == SIGINT,
			  "cat did not die of ^C (status %#x)", status);
	child = 0;
}

int main(void)
{
	struct winsize win = { .ws_row = 33, .ws_col = 77 };
	char out[4096], slave[64];
	int fd;

	tl_init();
	fd = posix_openpt(O_RDWR | O_NOCTTY);
	if (fd < 0 || (fd != FD_MASTER && dup2(fd, FD_MASTER) != FD_MASTER) || grantpt(FD_MASTER) ||
	    unlockpt(FD_MASTER) || ptsname_r(FD_MASTER, slave, sizeof(slave)))
		tl_fail("pty: %m");
	if (fd != FD_MASTER)
		close(fd);
	if (ioctl(FD_MASTER, TIOCSWINSZ, &win))
		tl_fail("TIOCSWINSZ: %m");
	child = fork();
	if (child < 0)
		tl_fail("fork: %m");
	if (!child)
		run_child(slave);
	if (write(FD_MASTER, "before\n", 7) != 7 ||
	    !expect_output("before\r\nbefore\r\n", out, sizeof(out)))
		tl_fail("cat does not answer: \"%s\"", out);
	if (tcgetattr(FD_MASTER, &tio_before))
		tl_fail("tcgetattr: %m");
	if (tio_before.c_cc[VKILL] != 0x0b)
		tl_fail("the child's settings are not there");
	tl_ready();
	tl_wait_term();
	check_terminal();
	if (child > 0) {
		kill(child, SIGKILL);
		waitpid(child, NULL, 0);
	}
	tl_done();
}
