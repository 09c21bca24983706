// SPDX-License-Identifier: MIT
/*
 * subreaper CMD [ARG...]: become a child subreaper, then exec CMD.
 *
 * The live runner (a bash script, which cannot call prctl) runs itself under this, so a
 * restored process -- detached, its restorer gone -- is reparented to the runner and reaped
 * there instead of lingering as a zombie under a PID 1 that reaps late, holding the PID the
 * next restore needs.
 */
#include <stdio.h>
#include <sys/prctl.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: subreaper CMD [ARG...]\n");
		return 127;
	}
	if (prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)) {
		perror("subreaper: PR_SET_CHILD_SUBREAPER");
		return 127;
	}
	/*
	 * Start the runner with stdio only: a stray inherited fd (a pipe of whoever started us)
	 * would otherwise reach every test program and be dumped with it.
	 */
	close_range(3, ~0u, 0);
	execvp(argv[1], argv + 1);
	fprintf(stderr, "subreaper: exec %s: %m\n", argv[1]);
	return 127;
}
