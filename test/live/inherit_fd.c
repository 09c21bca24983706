// SPDX-License-Identifier: MIT
/*
 * Files for --inherit-fd (the runner's restore_inherit_fd test): fd 3 is old.txt, opened
 * O_WRONLY|O_APPEND, which got "before\n"; fd 4 is the write end of a pipe whose read end we
 * closed.  The runner restores us with fd 3 replaced by its new.txt and fd 4 by a pipe it
 * reads.  After SIGTERM we write "after\n" to fd 3 and a line to fd 4; the runner checks
 * where they landed.  Left running, the line to fd 4 finds no reader (EPIPE), as it should.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>

#include "testlib.h"

int main(void)
{
	char path[4096];
	int p[2];
	ssize_t n;

	tl_init();
	signal(SIGPIPE, SIG_IGN);
	if (open(tl_path(path, sizeof(path), "old.txt"), O_WRONLY | O_APPEND | O_CREAT, 0644) !=
		    3 ||
	    write(3, "before\n", 7) != 7)
		tl_fail("old.txt: %m");
	/* the write end takes the read end's place: the pipe has no reader */
	if (pipe(p) || p[0] != 4 || p[1] != 5 || dup2(5, 4) != 4 || close(5))
		tl_fail("pipe: %m");
	tl_ready();
	tl_wait_term();
	tl_expect(write(3, "after\n", 6) == 6, "write to fd 3: %m");
	n = write(4, "through the pipe\n", 17);
	tl_expect(n == 17 || (n < 0 && errno == EPIPE), "write to fd 4: %m");
	tl_log("fd 4: %s", n == 17 ? "written" : "no reader");
	tl_done();
}
