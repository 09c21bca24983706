// SPDX-License-Identifier: MIT
/*
 * The page server protocol end to end on loopback: a server (crest_page_server, in a forked
 * child) and the image writer with a sink attached, as a dump uses them.  Rounds must arrive
 * whole and sealed, pages images only there, chained by their parent link; refused rounds and
 * rounds never committed must leave nothing behind.
 */
#include <arpa/inet.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "crest.h"
#include "fixtures.h"
#include "log.h"
#include "page-server.h"
#include "util.h"

#define PAGE 4096
#define NPAGES 3

static char *tmp, root[512];
static struct crest_opts opts;
static pid_t server = -1;

/* Is something listening on port? */
static bool listening(int port)
{
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port)};
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	bool ok;

	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	ok = fd >= 0 && !connect(fd, (struct sockaddr *)&sa, sizeof(sa));
	if (fd >= 0)
		close(fd);
	return ok;
}

/* A page server in a child, on a free port; the probe connection above is a round it drops. */
static void start_server(void)
{
	for (int try = 0; try < 20; try++) {
		opts.port = 20000 + (getpid() * 7 + try * 131 + time(NULL)) % 40000;
		if (listening(opts.port))
			continue;
		server = fork();
		cr_assert(server >= 0);
		if (server == 0)
			_exit(crest_page_server(&opts) ? 1 : 0);
		for (int i = 0; i < 200; i++) {
			if (listening(opts.port))
				return;
			if (waitpid(server, NULL, WNOHANG) == server)
				break;
			usleep(10000);
		}
		server = -1;
	}
	cr_assert_fail("cannot start a page server");
}

static int stop_server(int sig)
{
	int status = -1;

	if (server < 0)
		return -1;
	if (sig)
		kill(server, sig);
	waitpid(server, &status, 0);
	server = -1;
	return status;
}

static void setup(void)
{
	tmp = unit_mkdtemp();
	snprintf(root, sizeof(root), "%s/dst", tmp);
	crest_opts_init(&opts);
	opts.images_dir = root;
	opts.address = "127.0.0.1";
	opts.verbosity = 0;
	error_reset();
	start_server();
}

static void teardown(void)
{
	stop_server(SIGKILL);
	unit_rmtree(tmp);
	free(tmp);
}

TestSuite(page_server, .init = setup, .fini = teardown);

/* The local images directory of a round. */
static int round_dir(const char *name)
{
	char path[600];
	int fd;

	snprintf(path, sizeof(path), "%s/%s", tmp, name);
	mkdir(path, 0700);
	fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	cr_assert(fd >= 0);
	return fd;
}

/* A round as a dump writes it: inventory, pages and the pagemap pointing at them. */
static void write_round(int dirfd, uint32_t root_pid)
{
	InventoryEntry inv = INVENTORY_ENTRY__INIT;
	PagemapHead head = PAGEMAP_HEAD__INIT;
	PagemapEntry run = PAGEMAP_ENTRY__INIT;
	static char pages[NPAGES * PAGE];
	struct cr_img *img;

	inv.img_version = IMG_VERSION;
	inv.root_pid = root_pid;
	cr_assert_eq(img_write_one(dirfd, IMG_INVENTORY, 0, &inv.base), 0);
	for (size_t i = 0; i < sizeof(pages); i++)
		pages[i] = (char)(i * 7 + root_pid);
	img = img_open_write(dirfd, IMG_PAGES, 7);
	cr_assert_not_null(img);
	cr_assert_eq(img_write_raw(img, pages, sizeof(pages)), 0);
	cr_assert_eq(img_close(img), 0);
	img = img_open_write(dirfd, IMG_PAGEMAP, 7);
	cr_assert_not_null(img);
	head.nr_runs = 1;
	head.pages_size = sizeof(pages);
	run.vaddr = 0x10000;
	run.nr_pages = NPAGES;
	run.flags = PAGEMAP_FLAGS__PE_PRESENT;
	run.has_off = true;
	cr_assert_eq(img_write_msg(img, &head.base), 0);
	cr_assert_eq(img_write_msg(img, &run.base), 0);
	cr_assert_eq(img_close(img), 0);
}

static int stored(const char *round)
{
	char path[600];

	snprintf(path, sizeof(path), "%s/%s", root, round);
	return open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
}

Test(page_server, chain_of_rounds)
{
	int src1 = round_dir("r1"), src2 = round_dir("r2"), dst;
	struct img_sink *s;
	ProtobufCMessage *msg;
	struct cr_img *img;
	char link[64], buf[NPAGES * PAGE];
	ssize_t n;

	s = ps_client_open(&opts, src1, -1, false);
	cr_assert_not_null(s, "%s", crest_last_error());
	write_round(src1, 100);
	cr_assert_eq(ps_client_commit(s), 0, "%s", crest_last_error());
	ps_client_close(s);

	/* page data only there; the rest in both places */
	cr_assert(faccessat(src1, "pages-7.img", F_OK, 0));
	cr_assert_eq(faccessat(src1, "pagemap-7.img", F_OK, 0), 0);
	dst = stored("r1");
	cr_assert(dst >= 0);
	cr_assert_eq(img_read_one(dst, IMG_INVENTORY, 0, &inventory_entry__descriptor, &msg), 0,
		     "%s", crest_last_error());
	cr_assert_eq(((InventoryEntry *)msg)->root_pid, 100);
	protobuf_c_message_free_unpacked(msg, NULL);
	img = img_open_read(dst, IMG_PAGES, 7);
	cr_assert_not_null(img, "%s", crest_last_error());
	cr_assert_eq(img_size(img), IMG_PAGES_HDR_SIZE + sizeof(buf));
	n = pread(img_fd(img), buf, sizeof(buf), IMG_PAGES_HDR_SIZE);
	cr_assert_eq(n, (ssize_t)sizeof(buf));
	for (size_t i = 0; i < sizeof(buf); i++)
		cr_assert_eq(buf[i], (char)(i * 7 + 100));
	img_close(img);
	img = img_open_read(dst, IMG_PAGEMAP, 7);
	cr_assert_not_null(img, "%s", crest_last_error());
	img_close(img);
	close(dst);

	/* the next round names its parent, and ends the server's work */
	s = ps_client_open(&opts, src2, src1, true);
	cr_assert_not_null(s, "%s", crest_last_error());
	write_round(src2, 100);
	cr_assert_eq(ps_client_commit(s), 0, "%s", crest_last_error());
	ps_client_close(s);
	dst = stored("r2");
	cr_assert(dst >= 0);
	cr_assert_eq(readlink_at(dst, "parent", link, sizeof(link)), 0);
	cr_assert_str_eq(link, "../r1");
	close(dst);
	cr_assert_eq(stop_server(0), 0, "the server did not exit cleanly after the final round");
	close(src1);
	close(src2);
}

Test(page_server, refused_rounds)
{
	int src1 = round_dir("r1"), nosuch = round_dir("nosuch"), src3 = round_dir("r3");
	struct img_sink *s;

	/* a parent the server does not have */
	cr_assert_null(ps_client_open(&opts, src3, nosuch, false));
	unit_assert_error("nosuch", "not stored");
	error_reset();
	/* a round it already has */
	s = ps_client_open(&opts, src1, -1, false);
	cr_assert_not_null(s, "%s", crest_last_error());
	write_round(src1, 1);
	cr_assert_eq(ps_client_commit(s), 0, "%s", crest_last_error());
	ps_client_close(s);
	cr_assert_null(ps_client_open(&opts, src1, -1, false));
	unit_assert_error("r1", "already stored");
	cr_assert_eq(stored("r3"), -1);
	/* SIGTERM ends it, and that is no failure */
	cr_assert_eq(stop_server(SIGTERM), 0);
	close(src1);
	close(nosuch);
	close(src3);
}

Test(page_server, uncommitted_round_leaves_nothing)
{
	int src = round_dir("half"), i;
	struct img_sink *s;
	char path[600];

	s = ps_client_open(&opts, src, -1, false);
	cr_assert_not_null(s, "%s", crest_last_error());
	write_round(src, 5);
	ps_client_close(s); /* as a dump that failed after its images */
	snprintf(path, sizeof(path), "%s/.half.partial", root);
	for (i = 0; i < 200 && !access(path, F_OK); i++)
		usleep(10000);
	cr_assert(access(path, F_OK), "the half round is still there");
	cr_assert_eq(stored("half"), -1);
	/* and the server serves the next client */
	s = ps_client_open(&opts, src, -1, true);
	cr_assert_not_null(s, "%s", crest_last_error());
	write_round(src, 5);
	cr_assert_eq(ps_client_commit(s), 0, "%s", crest_last_error());
	ps_client_close(s);
	cr_assert_eq(stop_server(0), 0);
	close(src);
}
