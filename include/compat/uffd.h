/* SPDX-License-Identifier: MIT */
/*
 * userfaultfd UAPI newer than the Linux 6.1 headers Debian 12 ships.  crest tracks dirty pages
 * with write-protect in async mode (UFFD_FEATURE_WP_ASYNC): the kernel resolves the WP fault
 * itself and only records the page as written, which PAGEMAP_SCAN then reports.  Each value is
 * guarded so that newer system headers win.
 */
#ifndef CREST_COMPAT_UFFD_H
#define CREST_COMPAT_UFFD_H

#include <linux/ioctl.h>
#include <linux/types.h>
#include <linux/userfaultfd.h>

/* WP also applies to pages not populated yet (none ptes); Linux 6.4. */
#ifndef UFFD_FEATURE_WP_UNPOPULATED
#define UFFD_FEATURE_WP_UNPOPULATED (1 << 13)
#endif

/* UFFDIO_POISON is available; Linux 6.6. */
#ifndef UFFD_FEATURE_POISON
#define UFFD_FEATURE_POISON (1 << 14)
#endif

/* Write faults on WP-registered ranges are resolved by the kernel without a message; the
 * written state is readable through PAGEMAP_SCAN (PAGE_IS_WRITTEN); Linux 6.7. */
#ifndef UFFD_FEATURE_WP_ASYNC
#define UFFD_FEATURE_WP_ASYNC (1 << 15)
#endif

/* UFFDIO_MOVE is available; Linux 6.8. */
#ifndef UFFD_FEATURE_MOVE
#define UFFD_FEATURE_MOVE (1 << 16)
#endif

/* /dev/userfaultfd (USERFAULTFD_IOC_NEW) appeared in Linux 6.1; kept for older headers. */
#ifndef USERFAULTFD_IOC
#define USERFAULTFD_IOC 0xAA
#define USERFAULTFD_IOC_NEW _IO(USERFAULTFD_IOC, 0x00)
#endif

#endif
