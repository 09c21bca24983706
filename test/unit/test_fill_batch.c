// SPDX-License-Identifier: MIT
/*
 * pages.c's fill batches: pieces of one pages image read by one preadv, the gaps between them
 * read into junk memory, within the limits of one call.
 */
#include <criterion/criterion.h>

#include "internal.h"

#define JUNK 0x7000000ul
#define JUNK_LEN (48ul << 10)

static struct fill_batch b;

static struct page_seg seg(uint64_t vaddr, uint64_t len, int fd, uint64_t off)
{
	return (struct page_seg){.vaddr = vaddr, .len = len, .fd = fd, .off = off};
}

static bool add(struct page_seg s)
{
	return pages_batch_add(&b, &s, JUNK, JUNK_LEN);
}

Test(fill_batch, contiguous_pieces)
{
	b.n = 0;
	cr_assert(add(seg(0x10000, 4096, 3, 0)));
	cr_assert(add(seg(0x30000, 8192, 3, 4096)));
	cr_assert_eq(b.n, 2);
	cr_assert_eq(b.off, 0);
	cr_assert_eq(b.bytes, 12288);
	cr_assert_eq((uintptr_t)b.iov[1].iov_base, 0x30000);
	cr_assert_eq(b.next_off, 12288);
}

Test(fill_batch, gap_read_into_junk)
{
	b.n = 0;
	cr_assert(add(seg(0x10000, 4096, 3, 0)));
	/* 100 KiB of the image skipped: three junk pieces of at most 48 KiB */
	cr_assert(add(seg(0x90000, 4096, 3, 4096 + (100 << 10))));
	cr_assert_eq(b.n, 5);
	for (int i = 1; i < 4; i++)
		cr_assert_eq((uintptr_t)b.iov[i].iov_base, JUNK, "piece %d", i);
	cr_assert_eq(b.iov[1].iov_len + b.iov[2].iov_len + b.iov[3].iov_len, 100 << 10);
	cr_assert(b.iov[1].iov_len <= JUNK_LEN && b.iov[3].iov_len <= JUNK_LEN);
	cr_assert_eq(b.bytes, 8192 + (100 << 10), "the read covers the gap too");
}

Test(fill_batch, what_ends_a_batch)
{
	b.n = 0;
	cr_assert(add(seg(0x10000, 4096, 3, 8192)));
	cr_assert_not(add(seg(0x20000, 4096, 4, 12288)), "another image");
	cr_assert_not(add(seg(0x20000, 4096, 3, 4096)), "an offset behind the batch");
	cr_assert_not(add(seg(0x20000, 4096, 3, 12288 + JUNK_GAP_MAX + 4096)), "a gap too long");
	cr_assert_not(pages_batch_add(&b,
				      &(struct page_seg){
					      .vaddr = 0x20000, .len = 4096, .fd = 3, .off = 16384},
				      JUNK, 0),
		      "a gap and no junk memory");
	cr_assert_eq(b.n, 1, "nothing was added by a refusal");
	cr_assert_eq(b.bytes, 4096);
}

Test(fill_batch, iovec_limit)
{
	b.n = 0;
	for (int i = 0; i < FILL_IOV_MAX; i++)
		cr_assert(add(seg(0x100000ul + i * 8192ul, 4096, 3, i * 4096ul)), "piece %d", i);
	cr_assert_eq(b.n, FILL_IOV_MAX);
	cr_assert_not(add(seg(0x100000ul + FILL_IOV_MAX * 8192ul, 4096, 3, FILL_IOV_MAX * 4096ul)));
	/* a gap needs its junk pieces to fit as well */
	b.n = 0;
	for (int i = 0; i < FILL_IOV_MAX - 1; i++)
		cr_assert(add(seg(0x100000ul + i * 8192ul, 4096, 3, i * 4096ul)));
	cr_assert_not(add(seg(0x900000ul, 4096, 3, (FILL_IOV_MAX - 1) * 4096ul + 4096)));
	cr_assert(add(seg(0x900000ul, 4096, 3, (FILL_IOV_MAX - 1) * 4096ul)));
}
