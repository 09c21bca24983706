// SPDX-License-Identifier: MIT
/*
 * Lazy pages (restore --lazy-pages): the tree runs before its memory is filled.
 *
 * Filling fresh memory is what a restore spends most of its time on (every page is a page
 * fault; about 0.8 ms a MiB here), and during a migration that time is downtime.  With lazy
 * pages, a task's private anonymous memory that came from the images is not written at
 * restore: its VMAs are registered with a userfaultfd (made in the task, taken by crest,
 * closed in the task), and once the tree runs, a server process ("crest-lazy") fills a page
 * the moment the task touches it (UFFDIO_COPY from the images, or UFFDIO_ZEROPAGE for a page
 * that had no data) and, meanwhile, copies everything else in the background.  When every
 * page is in place it closes the userfaultfds, which unregisters them, and exits.
 *
 * What the task does meanwhile is followed through the userfaultfd's events: a fork hands us
 * the child's userfaultfd (its missing pages are filled from the same images); madvise()
 * dropping pages, munmap() and mremap() are recorded so that dropped pages stay zero and moved
 * ones are filled where they went.  Pages the task already has (it wrote them, or a fault
 * brought them) are never overwritten: UFFDIO_COPY refuses (EEXIST) and the copy moves on.
 *
 * Only tasks without children in the tree go lazy (a child forked from a task must find its
 * memory there); a VMA it inherited from its parent does too: the pages it shares with the
 * parent are kept, all others were dropped (pages_drop_inherited) and are missing like those
 * of a fresh VMA.  Compressed pages and everything else are filled at restore as always.
 * Servers serve faults from the start but copy in the background only once crest is done
 * (the restore needs the CPUs; during a migration it is downtime), at the lowest priority.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "compat/uffd.h"
#include "image.h"
#include "internal.h"
#include "log.h"

#define LAZY_CHUNK (256u << 10) /* bytes copied in the background per step */
#define FAULT_AHEAD (64u << 10) /* bytes brought in around a faulting address */

struct range {
	uint64_t start, end;
};

struct remap {
	uint64_t from, to, len;
};

/* One userfaultfd: a restored task, or a child it forked since. */
struct lazy_client {
	int uffd;
	pid_t pid;		     /* 0 for a forked child */
	const struct page_seg *segs; /* shared, sorted by vaddr (image addresses) */
	size_t nsegs;
	size_t seg; /* background cursor: segment, and offset in it */
	uint64_t off;
	struct vec removed; /* struct range: current addresses, left zero */
	struct vec remaps;  /* struct remap, oldest first */
	bool done;
};

static int start_server(struct restore_ctx *r);

/*
 * Private anonymous, its own, writable, and not locked (mlock() would fault it all in).  Nor
 * the one holding the arguments and environment (the stack): others read those through
 * /proc/PID/cmdline and environ, and a read from outside does not wait for a missing page,
 * it fails (ps would show the task without its command line until the page came).
 */
static bool lazy_vma(const struct restore_ctx *r, const VmaEntry *v)
{
	const MmEntry *mm = r->mm;

	if ((mm->arg_start < v->end && mm->env_end > v->start))
		return false;
	return v->kind == VMA_KIND__VMA_ANON_PRIVATE && (v->prot & PROT_WRITE) &&
	       !(v->madv & (VMA_MADV__MADV_BIT_LOCKED | VMA_MADV__MADV_BIT_LOCKONFAULT));
}

static const VmaEntry *vma_of(const struct restore_ctx *r, uint64_t addr)
{
	for (size_t i = 0; i < r->mm->n_vmas; i++)
		if (addr >= r->mm->vmas[i]->start && addr < r->mm->vmas[i]->end)
			return r->mm->vmas[i];
	return NULL;
}

/* A userfaultfd of the task's own mm, in crest's hands. */
static int task_uffd(struct restore_ctx *r)
{
	struct uffdio_api api = {
		.api = UFFD_API,
		.features = UFFD_FEATURE_EVENT_FORK | UFFD_FEATURE_EVENT_REMAP |
			    UFFD_FEATURE_EVENT_REMOVE | UFFD_FEATURE_EVENT_UNMAP,
	};
	int fd = rsys_take_fd(&r->rs, r->pid,
			      rsys1(&r->rs, SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK));

	if (fd < 0 || ioctl(fd, UFFDIO_API, &api)) {
		pr_perror("task %d: cannot set up its userfaultfd", r->pid);
		if (fd >= 0)
			close(fd);
		return -1;
	}
	return fd;
}

/*
 * Before the task's pages are filled: take the segments lazy pages will bring, out of
 * r->segs, and register their VMAs.  Nothing to do (0) without --lazy-pages.
 */
int lazy_take(struct restore_ctx *r)
{
	struct vec keep = {.elem = sizeof(struct page_seg)};
	const VmaEntry *registered = NULL;

	if (!r->opts->lazy_pages || restore_has_children(r))
		return 0;
	r->lazy_segs = (struct vec){.elem = sizeof(struct page_seg)};
	/*
	 * A VMA goes lazy whole or not at all: an eager write into a registered one would wait
	 * for a server that does not run yet.  Compressed pages are written eagerly, so a task
	 * with any in a VMA that could go lazy stays eager, simply.
	 */
	for (size_t i = 0; i < r->segs.len; i++) {
		const struct page_seg *s = vec_at(&r->segs, struct page_seg, i);

		for (uint64_t a = s->vaddr; a < s->vaddr + s->len;) {
			const VmaEntry *v = vma_of(r, a);

			if (!v)
				break;
			if (s->clen && lazy_vma(r, v))
				return 0;
			a = v->end;
		}
	}
	/* runs may span adjacent VMAs: split them where the VMAs meet */
	for (size_t i = 0; i < r->segs.len; i++) {
		const struct page_seg *s = vec_at(&r->segs, struct page_seg, i);
		uint64_t a = s->vaddr, end = s->vaddr + s->len;

		while (a < end) {
			const VmaEntry *v = vma_of(r, a);
			uint64_t b = v && v->end < end ? v->end : end;
			struct page_seg *slot =
				vec_push(v && lazy_vma(r, v) ? &r->lazy_segs : &keep);

			if (!slot)
				return -1;
			*slot = *s;
			slot->vaddr = a;
			slot->len = b - a;
			if (s->clen)
				slot->skip += a - s->vaddr;
			else
				slot->off += a - s->vaddr;
			a = b;
		}
	}
	vec_free(&r->segs);
	r->segs = keep;
	if (!r->lazy_segs.len)
		return 0;
	r->uffd = task_uffd(r);
	if (r->uffd < 0)
		return -1;
	for (size_t i = 0; i < r->lazy_segs.len; i++) {
		const VmaEntry *v = vma_of(r, vec_at(&r->lazy_segs, struct page_seg, i)->vaddr);
		struct uffdio_register reg = {
			.range = {.start = v->start, .len = v->end - v->start},
			.mode = UFFDIO_REGISTER_MODE_MISSING,
		};

		if (v == registered)
			continue;
		registered = v;
		if (ioctl(r->uffd, UFFDIO_REGISTER, &reg)) {
			pr_perror("task %d: cannot register %#llx-%#llx for lazy pages", r->pid,
				  (unsigned long long)v->start, (unsigned long long)v->end);
			return -1;
		}
	}
	pr_info("task %d: %zu runs of pages left to lazy pages", r->pid, r->lazy_segs.len);
	return start_server(r);
}

/* The tree runs (or the restore failed): servers may copy in the background now. */
void lazy_release(struct restore_tree *t)
{
	for (int i = 0; i < 2; i++) {
		if (t->lazy_go[i] >= 0)
			close(t->lazy_go[i]);
		t->lazy_go[i] = -1;
	}
}

/* ---- the server ---- */

/* The address a page has now (after mremaps), from its image address; 0: unmapped. */
static uint64_t now_addr(const struct lazy_client *c, uint64_t a)
{
	for (size_t i = 0; i < c->remaps.len; i++) {
		const struct remap *m = vec_at(&c->remaps, struct remap, i);

		if (a >= m->from && a < m->from + m->len)
			a = a - m->from + m->to;
	}
	return a;
}

/* And back: the image address of what is now at a. */
static uint64_t image_addr(const struct lazy_client *c, uint64_t a)
{
	for (size_t i = c->remaps.len; i-- > 0;) {
		const struct remap *m = vec_at(&c->remaps, struct remap, i);

		if (a >= m->to && a < m->to + m->len)
			a = a - m->to + m->from;
	}
	return a;
}

static bool removed(const struct lazy_client *c, uint64_t a)
{
	for (size_t i = 0; i < c->removed.len; i++) {
		const struct range *r = vec_at(&c->removed, struct range, i);

		if (a >= r->start && a < r->end)
			return true;
	}
	return false;
}

static const struct page_seg *seg_at(const struct lazy_client *c, uint64_t a)
{
	size_t lo = 0, hi = c->nsegs;

	while (lo < hi) {
		size_t mid = (lo + hi) / 2;

		if (c->segs[mid].vaddr + c->segs[mid].len <= a)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo < c->nsegs && c->segs[lo].vaddr <= a ? &c->segs[lo] : NULL;
}

/*
 * Copy len bytes of segment s from image address a to where they are now; pages the task
 * has already are skipped.  0 done, 1 try again once the pending events are read (the task
 * is changing its mappings), -1 the task is gone.
 */
static int copy_out(struct lazy_client *c, const struct page_seg *s, uint64_t a, uint64_t len,
		    char *buf)
{
	uint64_t dst = now_addr(c, a);

	if (!dst || removed(c, dst))
		return 0;
	/* offsets count from the pages image's data, after its header */
	if (pread(s->fd, buf, len, IMG_PAGES_HDR_SIZE + s->off + (a - s->vaddr)) != (ssize_t)len)
		return 0; /* the image is cut short: the pages stay missing, faults zero them */
	for (uint64_t done = 0; done < len;) {
		struct uffdio_copy cp = {
			.dst = dst + done, .src = (uintptr_t)buf + done, .len = len - done};

		if (!ioctl(c->uffd, UFFDIO_COPY, &cp))
			break;
		if (errno == EEXIST)
			done += (cp.copy > 0 ? cp.copy : 0) + PAGE_SIZE;
		else if (errno == EAGAIN && cp.copy > 0)
			done += cp.copy;
		else if (errno == EAGAIN)
			return 1; /* the task is changing its mappings: its event comes first */
		else if (errno == ESRCH)
			return -1;
		else
			break; /* unmapped since (ENOENT): nothing to fill */
	}
	return 0;
}

static void zero_page(struct lazy_client *c, uint64_t addr)
{
	struct uffdio_zeropage z = {.range = {.start = addr, .len = PAGE_SIZE}};

	if (ioctl(c->uffd, UFFDIO_ZEROPAGE, &z) && errno == ESRCH)
		c->done = true;
}

static void on_fault(struct lazy_client *c, uint64_t addr, char *buf)
{
	uint64_t a = image_addr(c, addr & ~(uint64_t)(PAGE_SIZE - 1));
	const struct page_seg *s = removed(c, addr) ? NULL : seg_at(c, a);
	uint64_t len;

	if (!s) {
		zero_page(c, addr & ~(uint64_t)(PAGE_SIZE - 1));
		return;
	}
	len = s->vaddr + s->len - a;
	if (len > FAULT_AHEAD)
		len = FAULT_AHEAD;
	if (copy_out(c, s, a, len, buf) < 0)
		c->done = true;
	else {
		/* still missing (a short image): never leave the task hanging */
		struct uffdio_range wake = {.start = addr & ~(uint64_t)(PAGE_SIZE - 1),
					    .len = PAGE_SIZE};

		ioctl(c->uffd, UFFDIO_WAKE, &wake);
	}
}

static struct lazy_client *add_client(struct vec *clients, int uffd, const struct page_seg *segs,
				      size_t n)
{
	struct lazy_client *c = vec_push(clients);

	if (!c)
		return NULL;
	*c = (struct lazy_client){.uffd = uffd,
				  .segs = segs,
				  .nsegs = n,
				  .removed = VEC_INIT(struct range),
				  .remaps = VEC_INIT(struct remap)};
	return c;
}

/* Read and act on every message waiting on client i. */
static void drain_events(struct vec *clients, size_t i, char *buf)
{
	struct uffd_msg msg;

	while (read(vec_at(clients, struct lazy_client, i)->uffd, &msg, sizeof(msg)) ==
	       sizeof(msg)) {
		struct lazy_client *c = vec_at(clients, struct lazy_client, i);

		switch (msg.event) {
		case UFFD_EVENT_PAGEFAULT:
			on_fault(c, msg.arg.pagefault.address, buf);
			break;
		case UFFD_EVENT_FORK: {
			const struct page_seg *segs = c->segs;
			size_t n = c->nsegs;
			struct vec removed = c->removed, remaps = c->remaps;
			struct lazy_client *child = add_client(clients, msg.arg.fork.ufd, segs, n);

			/* the child has the parent's view of moved and dropped pages */
			if (child) {
				for (size_t k = 0; k < removed.len; k++)
					*(struct range *)vec_push(&child->removed) =
						*vec_at(&removed, struct range, k);
				for (size_t k = 0; k < remaps.len; k++)
					*(struct remap *)vec_push(&child->remaps) =
						*vec_at(&remaps, struct remap, k);
			}
			break;
		}
		case UFFD_EVENT_REMAP: {
			struct remap *m = vec_push(&c->remaps);

			if (m)
				*m = (struct remap){msg.arg.remap.from, msg.arg.remap.to,
						    msg.arg.remap.len};
			break;
		}
		case UFFD_EVENT_REMOVE:
		case UFFD_EVENT_UNMAP: {
			struct range *r = vec_push(&c->removed);

			if (r)
				*r = (struct range){msg.arg.remove.start, msg.arg.remove.end};
			break;
		}
		}
	}
}

/* One background step for client c: false when it has nothing left. */
static bool background_step(struct lazy_client *c, char *buf)
{
	while (!c->done && c->seg < c->nsegs) {
		const struct page_seg *s = &c->segs[c->seg];
		uint64_t len = s->len - c->off;

		if (!len) {
			c->seg++;
			c->off = 0;
			continue;
		}
		if (len > LAZY_CHUNK)
			len = LAZY_CHUNK;
		switch (copy_out(c, s, s->vaddr + c->off, len, buf)) {
		case -1:
			c->done = true;
			break;
		case 0:
			c->off += len;
			break;
		}
		return true; /* 1: the same chunk again, after the events */
	}
	c->done = true;
	return false;
}

/*
 * A fault is served at the server's own priority; the background copy runs at the lowest,
 * behind the tree it serves (and behind a hundred other servers' copies, which is what a tree
 * of a hundred lazy tasks has).
 */
static void background_priority(bool *idle, bool want)
{
	if (*idle != want && !setpriority(PRIO_PROCESS, 0, want ? 19 : 0))
		*idle = want;
}

/*
 * Faults first; the background copy only when none is waiting, and only once the tree runs
 * (go_fd reads EOF): until then the restore needs the CPUs, and a migration's downtime is the
 * restore.
 */
static void __attribute__((noreturn)) serve(struct restore_ctx *r, int go_fd)
{
	struct vec clients = VEC_INIT(struct lazy_client);
	char *buf = malloc(LAZY_CHUNK > FAULT_AHEAD ? LAZY_CHUNK : FAULT_AHEAD);
	uint64_t t0 = now_ns(CLOCK_MONOTONIC);
	bool go = false, idle = false;

	prctl(PR_SET_NAME, "crest-lazy", 0, 0, 0);
	if (!buf || !add_client(&clients, r->uffd, r->lazy_segs.data, r->lazy_segs.len))
		_exit(1);
	/* from the start: a hundred servers woken at once by go_fd must not preempt crest */
	background_priority(&idle, true);
	for (;;) {
		struct pollfd pfd[clients.len + 1];
		bool busy = false;

		for (size_t i = 0; i < clients.len; i++) {
			struct lazy_client *c = vec_at(&clients, struct lazy_client, i);

			pfd[i] = (struct pollfd){.fd = c->done ? -1 : c->uffd, .events = POLLIN};
			busy |= !c->done;
		}
		pfd[clients.len] = (struct pollfd){.fd = go ? -1 : go_fd, .events = POLLIN};
		if (!busy)
			break;
		if (poll(pfd, clients.len + 1, go ? 0 : -1) > 0) {
			if (pfd[clients.len].revents)
				go = true;
			background_priority(&idle, false);
			for (size_t i = 0; i < clients.len; i++)
				if (pfd[i].revents & POLLIN)
					drain_events(&clients, i, buf);
			continue;
		}
		background_priority(&idle, true);
		for (size_t i = 0; i < clients.len; i++)
			if (background_step(vec_at(&clients, struct lazy_client, i), buf))
				break;
	}
	/* events that came with the last copies (a late fork) were handled above */
	for (size_t i = 0; i < clients.len; i++)
		close(vec_at(&clients, struct lazy_client, i)->uffd);
	pr_info("lazy pages of %d: %zu address spaces filled in %.0f ms", r->pid, clients.len,
		(now_ns(CLOCK_MONOTONIC) - t0) / 1e6);
	_exit(0);
}

/*
 * Start the task's server, at once: from now on anything touching its memory (the restore's
 * own next steps, rseq registration, mlock...) may fault.  The server keeps only the
 * userfaultfd, the pages images and the log; crest's other fds (the tasks' files among them)
 * must not outlive the restore in it.
 */
static int start_server(struct restore_ctx *r)
{
	struct restore_tree *t = r->tree;
	pid_t pid, *slot = vec_push(&t->lazy_pids);

	if (!slot)
		return -1;
	if (t->lazy_go[0] < 0 && pipe2(t->lazy_go, O_CLOEXEC)) {
		pr_perror("cannot make a pipe");
		t->lazy_pids.len--;
		return -1;
	}
	fflush(NULL);
	pid = fork();
	if (pid < 0) {
		pr_perror("cannot start the lazy pages server");
		t->lazy_pids.len--;
		return -1;
	}
	if (pid == 0) {
		static char keep[65536];
		int max = sizeof(keep);

		restore_unpin(t); /* serves the tree on any CPU */
		keep[r->uffd] = 1;
		for (size_t j = 0; j < r->lazy_segs.len; j++) {
			int fd = vec_at(&r->lazy_segs, struct page_seg, j)->fd;

			if (fd >= 0 && fd < max)
				keep[fd] = 1;
		}
		keep[log_fd()] = 1;
		keep[t->lazy_go[0]] = 1;
		for (int fd = 3; fd < max;) {
			int end = fd;

			while (end < max && !keep[end])
				end++;
			if (end > fd)
				syscall(SYS_close_range, fd, end - 1, 0);
			fd = end + 1;
		}
		syscall(SYS_close_range, max, ~0U, 0);
		setsid();
		serve(r, t->lazy_go[0]);
	}
	*slot = pid;
	pr_info("task %d: lazy pages server %d fills the rest", r->pid, pid);
	return 0;
}
