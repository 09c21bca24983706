// SPDX-License-Identifier: MIT
/*
 * crest show: every document must be valid JSON (checked in C, and structurally with
 * python3 when the machine has it), absent optionals omitted, addresses in hex, bit masks
 * and enums by name, bytes bounded, strings escaped, and failures leave no half document.
 */
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "crest.h"
#include "fixtures.h"
#include "log.h"

#define HDR_LEN sizeof(struct img_header) /* hand-made images: unsealed headers */

static char *tmp;
static int dfd = -1;

static void setup(void)
{
	tmp = unit_mkdtemp();
	dfd = open(tmp, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	cr_assert(dfd >= 0);
	cr_assert_eq(mkdirat(dfd, "dump", 0700), 0);
	error_reset();
}

static void teardown(void)
{
	if (dfd >= 0)
		close(dfd);
	unit_rmtree(tmp);
	free(tmp);
}

TestSuite(show, .init = setup, .fini = teardown);

static char *path_in(const char *name)
{
	static char path[PATH_MAX];

	snprintf(path, sizeof(path), "%s/%s", tmp, name);
	return path;
}

static int dump_dirfd(void)
{
	int fd = openat(dfd, "dump", O_RDONLY | O_DIRECTORY | O_CLOEXEC);

	cr_assert(fd >= 0);
	return fd;
}

/* show path, expect success and valid JSON */
static char *show_ok(const char *name)
{
	int ret;
	char *doc = unit_show(path_in(name), &ret);

	cr_assert_eq(ret, 0, "crest_show(%s): %s", name, crest_last_error());
	unit_assert_json(doc);
	return doc;
}

/* show path, expect failure naming file and problem, and nothing written */
static void show_fails(const char *name, const char *file, const char *problem)
{
	int ret;
	char *doc = unit_show(path_in(name), &ret);

	cr_assert_eq(ret, -1, "crest_show(%s) succeeded:\n%s", name, doc);
	cr_assert_str_eq(doc, "", "half a document was written");
	unit_assert_error(file, problem);
	free(doc);
}

static void assert_has(const char *doc, const char *want)
{
	cr_assert(strstr(doc, want), "missing %s in:\n%s", want, doc);
}

static int count(const char *doc, const char *what)
{
	int n = 0;

	for (const char *p = doc; (p = strstr(p, what)); p++)
		n++;
	return n;
}

/* Run python3 on script with the document as argv[1]; false when python3 is not there. */
static bool python_check(const char *doc, const char *script)
{
	char cmd[PATH_MAX * 3], out[4096];
	size_t n;
	FILE *p;
	int st;

	if (system("python3 -c pass >/dev/null 2>&1"))
		return false;
	unit_write_file(dfd, "doc.json", doc, strlen(doc));
	unit_write_file(dfd, "check.py", script, strlen(script));
	snprintf(cmd, sizeof(cmd), "python3 %s/check.py %s/doc.json 2>&1", tmp, tmp);
	p = popen(cmd, "r");
	cr_assert_not_null(p);
	n = fread(out, 1, sizeof(out) - 1, p);
	out[n] = 0;
	st = pclose(p);
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "python check failed:\n%s", out);
	return true;
}

static const char dump_check_py[] =
	"import json, sys\n"
	"d = json.load(open(sys.argv[1]))\n"
	"names = [f['file'] for f in d]\n"
	"assert names == ['core-1.img', 'fdinfo-1.img', 'files.img', 'inventory.img',\n"
	"                 'mm-1.img', 'pagemap-1.img', 'pages-1.img', 'pstree.img'], names\n"
	"by = {f['file']: f for f in d}\n"
	"assert all(set(f) == {'file', 'kind', 'entries'} for f in d\n"
	"           if f['kind'] not in ('pages', 'pagemap')), d\n"
	"core = by['core-1.img']['entries'][0]\n"
	"assert by['core-1.img']['kind'] == 'core'\n"
	"assert core['pid'] == 1000 and core['comm'] == 'task-1', core\n"
	"t0, t1 = core['threads']\n"
	"assert t0['regs']['ip'] == '0x7f12345678f4', t0['regs']\n"
	"assert t0['regs']['ax'] == 2**64 - 38 and t0['regs']['fs_base'] == '0x7f0000001740'\n"
	"assert t0['xsave']['len'] == 576 and len(t0['xsave']['hex']) == 128\n"
	"assert t0['xsave']['truncated'] is True and t0['pdeath_sig'] == -1\n"
	"assert t0['sigaltstack'] == {'sp': '0x7f00dead0000', 'size': 8192, 'flags': 0}\n"
	"assert set(t1) == {'tid', 'regs', 'blocked', 'pending', 'cpu_affinity'}, sorted(t1)\n"
	"assert t1['pending'] == [] and t1['cpu_affinity'] == []\n"
	"assert core['rlimits'][0]['max'] == 2**64 - 1\n"
	"assert core['posix_timers'][0]['id'] == -5\n"
	"assert core['creds']['groups'] == [4, 27, 4294967294]\n"
	"assert core['creds']['no_new_privs'] is True\n"
	"assert core['child_subreaper'] is False and 'thp_disable' not in core\n"
	"assert core['sigactions'][1]['handler'] == '0x401011'\n"
	"pm = by['pagemap-1.img']\n"
	"assert pm['head'] == {'nr_runs': 4, 'pages_size': 8192}, pm['head']\n"
	"assert [e['flags'] for e in pm['entries']] == \\\n"
	"       [['PRESENT'], ['ZERO'], ['PRESENT', 'LZ4'], ['PARENT', '0x100']]\n"
	"assert pm['entries'][1]['vaddr'] == '0x7f0000010000'\n"
	"assert 'off' not in pm['entries'][1] and pm['entries'][2]['clen'] == 4096\n"
	"assert by['pages-1.img'] == {'file': 'pages-1.img', 'kind': 'pages', 'data_bytes': 8192}\n"
	"files = by['files.img']['entries']\n"
	"assert files[0]['kind'] == 'FD_REG', files\n"
	"assert files[0]['reg']['path'] == '/tmp/log \"quoted\"\\twith\\ttabs'\n"
	"assert 'reg' not in files[1] and files[1]['kind'] == 'FD_CHR'\n"
	"assert [f['cloexec'] for f in by['fdinfo-1.img']['entries']] == [False, False, True]\n"
	"inv = by['inventory.img']['entries'][0]\n"
	"assert inv['vdso_sha256'] == {'len': 32, 'hex': ''.join('%02x' % (i * 8) for i in "
	"range(32))}\n"
	"assert 'boot_id' not in inv and inv['shell_job'] is False\n"
	"mm = by['mm-1.img']['entries'][0]\n"
	"assert mm['start_code'] == '0x400000' and mm['brk'] == '0x1021000'\n"
	"assert mm['vmas'][0]['kind'] == 'VMA_FILE_PRIVATE' and mm['vmas'][0]['pgoff'] == 8192\n"
	"assert mm['vmas'][0]['madv'] == [] and mm['vmas'][1]['madv'] == ['DONTFORK', 'LOCKED']\n"
	"assert mm['auxv'][0] == 3 and isinstance(mm['auxv'][1], int)\n"
	"assert [p['threads'] for p in by['pstree.img']['entries']] == [[1, 3], []]\n";

Test(show, dump_directory)
{
	int dirfd = dump_dirfd();
	char *doc;

	unit_make_dump(dirfd);
	/* things that are not images must be skipped, not shown and not fatal */
	unit_write_file(dirfd, "foo.img", "garbage", 7);
	unit_write_file(dirfd, "notes.txt", "hello", 5);
	unit_write_file(dirfd, "core-1x.img", "garbage", 7);
	cr_assert_eq(mkdirat(dirfd, "core-9.img", 0700), 0);
	close(dirfd);

	doc = show_ok("dump");
	cr_assert_eq(doc[0], '[');
	cr_assert(strstr(doc, "\"core-1.img\"") < strstr(doc, "\"fdinfo-1.img\""));
	cr_assert(strstr(doc, "\"fdinfo-1.img\"") < strstr(doc, "\"files.img\""));
	cr_assert(strstr(doc, "\"pagemap-1.img\"") < strstr(doc, "\"pages-1.img\""));
	cr_assert(strstr(doc, "\"pages-1.img\"") < strstr(doc, "\"pstree.img\""));
	cr_assert_eq(count(doc, "\"file\": "), 8);
	cr_assert_null(strstr(doc, "foo.img"));
	cr_assert_null(strstr(doc, "notes.txt"));
	cr_assert_null(strstr(doc, "core-9.img"));
	if (!python_check(doc, dump_check_py))
		cr_log_warn("python3 not found: structural checks of the JSON skipped");
	free(doc);
}

Test(show, single_file_fields)
{
	int dirfd = dump_dirfd();
	char *doc;

	unit_make_dump(dirfd);
	close(dirfd);
	doc = show_ok("dump/core-1.img");
	cr_assert_eq(doc[0], '{');
	assert_has(doc, "\"file\": \"core-1.img\"");
	assert_has(doc, "\"kind\": \"core\"");
	assert_has(doc, "\"entries\": [");
	/* addresses in hex, everything else in decimal */
	assert_has(doc, "\"ip\": \"0x7f12345678f4\"");
	assert_has(doc, "\"clear_child_tid\": \"0x7f0000001a10\"");
	assert_has(doc, "\"robust_list\": \"0x7f0000001a20\"");
	assert_has(doc, "\"robust_list_len\": 24");
	assert_has(doc, "\"ptr\": \"0x7f0000001e00\"");
	assert_has(doc, "\"restorer\": \"0x7f0000002000\"");
	assert_has(doc, "\"max\": 18446744073709551615");
	assert_has(doc, "\"cap_bnd\": 18446744073709551615");
	assert_has(doc, "\"id\": -5");
	assert_has(doc, "\"pdeath_sig\": -1");
	assert_has(doc, "\"umask\": 18");
	assert_has(doc, "\"groups\": [4, 27, 4294967294]");
	/* set-but-false optional is shown; unset ones are not; thread 1 has none of them */
	assert_has(doc, "\"child_subreaper\": false");
	cr_assert_null(strstr(doc, "thp_disable"));
	cr_assert_eq(count(doc, "\"xsave\""), 1);
	cr_assert_eq(count(doc, "\"sigaltstack\""), 1);
	cr_assert_eq(count(doc, "\"sleep_restart\""), 1);
	/* bytes: bounded hex with the real length */
	assert_has(doc, "\"xsave\": {\"len\": 576, \"hex\": \"01080f161d");
	assert_has(doc, "\"truncated\": true}");
	cr_assert_eq(count(doc, "\"len\": 128, \"hex\": \""), 2); /* two siginfo blobs */
	free(doc);

	doc = show_ok("dump/mm-1.img");
	assert_has(doc, "\"start_code\": \"0x400000\"");
	assert_has(doc, "\"end_code\": \"0x402000\"");
	assert_has(doc, "\"start_brk\": \"0x1000000\"");
	assert_has(doc, "\"brk\": \"0x1021000\"");
	assert_has(doc, "\"start_stack\": \"0x7ffc00010000\"");
	assert_has(doc, "\"env_end\": \"0x7ffc00010ff0\"");
	assert_has(doc, "\"start\": \"0x410000\"");
	assert_has(doc, "\"pgoff\": 8192");
	assert_has(doc, "\"dev\": 2051");
	assert_has(doc, "\"kind\": \"VMA_ANON_SHARED\"");
	assert_has(doc, "\"madv\": [\"DONTFORK\", \"LOCKED\"]");
	assert_has(doc, "\"madv\": []");
	assert_has(doc, "\"may_write\": true");
	free(doc);
}

Test(show, pagemap_head_then_entries)
{
	int dirfd = dump_dirfd();
	char *doc;

	unit_make_dump(dirfd);
	close(dirfd);
	doc = show_ok("dump/pagemap-1.img");
	assert_has(doc, "\"kind\": \"pagemap\"");
	assert_has(doc, "\"nr_runs\": 4");
	cr_assert(strstr(doc, "\"head\": {") < strstr(doc, "\"entries\": ["));
	assert_has(doc, "\"vaddr\": \"0x7f0000000000\"");
	assert_has(doc, "\"flags\": [\"PRESENT\"]");
	assert_has(doc, "\"flags\": [\"ZERO\"]");
	assert_has(doc, "\"flags\": [\"PRESENT\", \"LZ4\"]");
	assert_has(doc, "\"flags\": [\"PARENT\", \"0x100\"]");
	cr_assert_eq(count(doc, "\"vaddr\""), 4);
	free(doc);
}

Test(show, pages_image_size_only)
{
	int dirfd = dump_dirfd();
	char *doc;

	unit_make_dump(dirfd);
	close(dirfd);
	doc = show_ok("dump/pages-1.img");
	cr_assert_str_eq(doc, "{\n"
			      "  \"file\": \"pages-1.img\",\n"
			      "  \"kind\": \"pages\",\n"
			      "  \"data_bytes\": 8192\n"
			      "}\n");
	free(doc);
}

Test(show, strings_are_escaped)
{
	static const char comm[] = "q\"b\\s/\n\t\r\b\f\x01\x1f\x7f "
				   "\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80" /* é € U+1F600 */
				   "|\xff|\xc0\xaf|\xed\xa0\x80|\xf4\x90\x80\x80|\xe2\x82";
	static const char want[] =
		"\"comm\": \"q\\\"b\\\\s/\\n\\t\\r\\u0008\\u000c\\u0001\\u001f\x7f "
		"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80"
		"|\\ufffd|\\ufffd\\ufffd|\\ufffd\\ufffd\\ufffd"
		"|\\ufffd\\ufffd\\ufffd\\ufffd|\\ufffd\\ufffd\"";
	struct core_fixture *f = malloc(sizeof(*f));
	int dirfd = dump_dirfd();
	char *doc;

	cr_assert_not_null(f);
	core_fixture_init(f, 1);
	f->core.comm = (char *)comm;
	f->core.cwd = "";
	cr_assert_eq(img_write_one(dirfd, IMG_CORE, 1, &f->core.base), 0);
	close(dirfd);
	free(f);
	doc = show_ok("dump/core-1.img");
	assert_has(doc, want);
	assert_has(doc, "\"cwd\": \"\"");
	free(doc);
}

Test(show, bytes_short_empty_and_long)
{
	InventoryEntry inv = INVENTORY_ENTRY__INIT;
	uint8_t blob[65];
	int dirfd = dump_dirfd();
	char *doc, want[256];

	for (int i = 0; i < 65; i++)
		blob[i] = 0xf0 + i;
	inv.arch = "x86_64";
	inv.kernel_release = "6.1";
	inv.has_vdso_sha256 = true;
	inv.vdso_sha256 = (ProtobufCBinaryData){64, blob}; /* exactly the limit: not cut */
	cr_assert_eq(img_write_one(dirfd, IMG_INVENTORY, 0, &inv.base), 0);
	doc = show_ok("dump/inventory.img");
	cr_assert_null(strstr(doc, "truncated"));
	snprintf(want, sizeof(want), "{\"len\": 64, \"hex\": \"f0f1f2");
	assert_has(doc, want);
	free(doc);

	inv.vdso_sha256 = (ProtobufCBinaryData){0, NULL};
	cr_assert_eq(img_write_one(dirfd, IMG_INVENTORY, 0, &inv.base), 0);
	doc = show_ok("dump/inventory.img");
	assert_has(doc, "\"vdso_sha256\": {\"len\": 0, \"hex\": \"\"}");
	free(doc);

	inv.vdso_sha256 = (ProtobufCBinaryData){65, blob};
	cr_assert_eq(img_write_one(dirfd, IMG_INVENTORY, 0, &inv.base), 0);
	doc = show_ok("dump/inventory.img");
	assert_has(doc, "\"len\": 65, ");
	assert_has(doc, "2f\", \"truncated\": true}"); /* 64th byte is 0x2f after wrapping */
	cr_assert_eq(strstr(doc, "\", \"truncated\"") - strstr(doc, "\"hex\": \"") - 8, 128);
	close(dirfd);
	free(doc);
}

Test(show, unknown_enum_and_unknown_fields)
{
	struct mm_fixture mm;
	PstreeEntry ps = PSTREE_ENTRY__INIT;
	unsigned char body[64];
	size_t len;
	int dirfd = dump_dirfd();
	char *doc;

	/* a value a newer schema may define prints as its number */
	mm_fixture_init(&mm, 1);
	mm.vma[1].kind = 99;
	mm.vma[1].madv = 1u << 30 | VMA_MADV__MADV_BIT_RANDOM;
	cr_assert_eq(img_write_one(dirfd, IMG_MM, 1, &mm.mm.base), 0);
	doc = show_ok("dump/mm-1.img");
	assert_has(doc, "\"kind\": 99");
	assert_has(doc, "\"madv\": [\"RANDOM\", \"0x40000000\"]");
	free(doc);

	/* field 100 (varint 1) appended: a field this schema does not know */
	len = protobuf_c_message_pack(&ps.base, body + 4);
	memcpy(body + 4 + len, "\xa0\x06\x01", 3);
	len += 3;
	memcpy(body, &(uint32_t){len}, 4);
	{
		unsigned char file[HDR_LEN + sizeof(body)];

		unit_put_header(file, IMG_MAGIC, IMG_VERSION, IMG_PSTREE);
		memcpy(file + HDR_LEN, body, 4 + len);
		unit_write_file(dirfd, "pstree.img", file, HDR_LEN + 4 + len);
	}
	close(dirfd);
	doc = show_ok("dump/pstree.img");
	assert_has(doc, "\"_unknown_fields\": 1");
	free(doc);
}

Test(show, stats_and_renamed_images)
{
	unsigned char file[HDR_LEN + 10];
	int dirfd = dump_dirfd();
	char *doc;
	size_t len;
	void *core;

	/* an image kind with no schema yet: only its size */
	unit_put_header(file, IMG_MAGIC, IMG_VERSION, IMG_STATS);
	memset(file + HDR_LEN, 0x11, 10);
	unit_write_file(dirfd, "stats-dump.img", file, sizeof(file));
	unit_make_dump(dirfd);
	/* an image under another name, given explicitly: its header says what it is */
	core = unit_read_file(dirfd, "core-1.img", &len);
	unit_write_file(dirfd, "backup.bin", core, len);
	free(core);
	close(dirfd);

	doc = show_ok("dump/stats-dump.img");
	assert_has(doc, "\"kind\": \"stats\"");
	assert_has(doc, "\"data_bytes\": 10");
	free(doc);
	doc = show_ok("dump/backup.bin");
	assert_has(doc, "\"file\": \"backup.bin\"");
	assert_has(doc, "\"kind\": \"core\"");
	free(doc);
	doc = show_ok("dump");
	assert_has(doc, "\"file\": \"stats-dump.img\"");
	cr_assert_null(strstr(doc, "backup.bin"));
	free(doc);
}

Test(show, empty_directory)
{
	char *doc = show_ok("dump");

	cr_assert_str_eq(doc, "[]\n");
	free(doc);
}

Test(show, errors_leave_no_output)
{
	int dirfd = dump_dirfd();
	unsigned char hdr[HDR_LEN + 4];
	char want[64];

	unit_make_dump(dirfd);
	/* corrupt the last image in name order: the images before it were already rendered */
	unit_put_header(hdr, IMG_MAGIC, IMG_VERSION, IMG_PSTREE);
	memcpy(hdr + HDR_LEN, "\x05\0\0\0", 4);
	unit_write_file(dirfd, "pstree.img", hdr, sizeof(hdr));
	snprintf(want, sizeof(want), "truncated at offset %zu", HDR_LEN);
	show_fails("dump", "pstree.img", want);
	show_fails("dump/pstree.img", "pstree.img", "message of 5 bytes, 0 left");

	unit_put_header(hdr, 0x12345678, IMG_VERSION, IMG_CORE);
	unit_write_file(dirfd, "core-1.img", hdr, HDR_LEN);
	show_fails("dump/core-1.img", "core-1.img", "bad magic 0x12345678");

	unit_put_header(hdr, IMG_MAGIC, IMG_VERSION, IMG_PAGEMAP);
	unit_write_file(dirfd, "pagemap-1.img", hdr, HDR_LEN);
	show_fails("dump/pagemap-1.img", "pagemap-1.img", "pagemap image without a head");

	/* a pagemap whose head is fine but whose next entry is garbage */
	{
		PagemapHead head = PAGEMAP_HEAD__INIT;
		unsigned char file[HDR_LEN + 64];
		size_t len = protobuf_c_message_pack(&head.base, file + HDR_LEN + 4), off;

		memcpy(file, hdr, HDR_LEN);
		memcpy(file + HDR_LEN, &(uint32_t){len}, 4);
		off = HDR_LEN + 4 + len;
		memcpy(file + off, "\x02\0\0\0\xff\xff", 6);
		unit_write_file(dirfd, "pagemap-1.img", file, off + 6);
		snprintf(want, sizeof(want), "corrupt PagemapEntry message at offset %zu", off);
		show_fails("dump/pagemap-1.img", "pagemap-1.img", want);
	}
	close(dirfd);

	show_fails("dump/nonexistent.img", "nonexistent.img", "cannot access");
	show_fails("nothing-here", "nothing-here", "No such file or directory");
}

/* Damage a sealed image would hide from the parser is refused, whole directory included. */
Test(show, sealed_damage_is_refused)
{
	int dirfd = dump_dirfd();
	unsigned char *file;
	size_t len;

	unit_make_dump(dirfd);
	/* one payload byte of core-1.img flipped */
	file = unit_read_file(dirfd, "core-1.img", &len);
	file[len - 1] ^= 0x01;
	unit_write_file(dirfd, "core-1.img", file, len);
	show_fails("dump/core-1.img", "core-1.img", "corrupted (checksum mismatch)");
	show_fails("dump", "core-1.img", "corrupted (checksum mismatch)");
	file[len - 1] ^= 0x01;
	unit_write_file(dirfd, "core-1.img", file, len);
	free(file);
	free(show_ok("dump"));
	/* the last page of pages-1.img cut short */
	file = unit_read_file(dirfd, "pages-1.img", &len);
	unit_write_file(dirfd, "pages-1.img", file, len - 1);
	free(file);
	show_fails("dump/pages-1.img", "pages-1.img", "truncated or extended");
	show_fails("dump", "pages-1.img", "truncated or extended");
	close(dirfd);
}

Test(show, error_of_an_earlier_call_does_not_stick)
{
	int ret;
	char *doc;

	doc = unit_show(path_in("missing-a"), &ret);
	cr_assert_eq(ret, -1);
	free(doc);
	doc = unit_show(path_in("missing-b"), &ret);
	cr_assert_eq(ret, -1);
	unit_assert_error("missing-b", "cannot access");
	free(doc);
}

Test(show, output_write_failure)
{
	FILE *full = fopen("/dev/full", "w");
	int dirfd = dump_dirfd();

	cr_assert_not_null(full);
	unit_make_dump(dirfd);
	close(dirfd);
	cr_assert_eq(crest_show(path_in("dump"), full), -1);
	unit_assert_error("show", "cannot write output");
	fclose(full);
}
