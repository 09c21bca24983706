// SPDX-License-Identifier: MIT
/*
 * hostinit: PID 1 of a test "host" (a PID namespace of its own): reaps every orphan that
 * comes to it.  It ends by SIGKILL from outside, taking the namespace and all left in it.
 */
#include <sys/wait.h>
#include <unistd.h>

int main(void)
{
	for (;;) {
		while (waitpid(-1, NULL, WNOHANG) > 0)
			;
		usleep(50000);
	}
}
