// SPDX-License-Identifier: MIT
/* The network lock's names and the socket descriptions used in messages. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <string.h>

#include <criterion/criterion.h>

#include "net-lock.h"
#include "sk-inet.h"

Test(netlock, names_round_trip)
{
	cr_assert_eq(netlock_parse("nftables"), NETLOCK_NFTABLES);
	cr_assert_eq(netlock_parse("iptables"), NETLOCK_IPTABLES);
	cr_assert_eq(netlock_parse("skip"), NETLOCK_SKIP);
	for (int k = NETLOCK_NFTABLES; k <= NETLOCK_SKIP; k++)
		cr_assert_eq(netlock_parse(netlock_name(k)), k);
}

Test(netlock, unknown_names_refused)
{
	cr_assert_eq(netlock_parse("nft"), -1);
	cr_assert_eq(netlock_parse(""), -1);
	cr_assert_eq(netlock_parse("NFTABLES"), -1);
	cr_assert_str_eq(netlock_name(7), "?");
}

static void set_addr(ProtobufCBinaryData *b, int family, const char *text, uint8_t *buf)
{
	cr_assert_eq(inet_pton(family, text, buf), 1);
	b->data = buf;
	b->len = family == AF_INET ? 4 : 16;
}

Test(inet_sk, describes_a_connection)
{
	InetSkEntry e = INET_SK_ENTRY__INIT;
	uint8_t a[16], b[16];
	char buf[160];

	e.family = AF_INET;
	e.protocol = IPPROTO_TCP;
	set_addr(&e.src_addr, AF_INET, "10.0.0.1", a);
	set_addr(&e.dst_addr, AF_INET, "10.0.0.2", b);
	e.src_port = 80;
	e.dst_port = 5555;
	e.has_dst_port = true;
	cr_assert_str_eq(inet_sk_str(&e, buf, sizeof(buf)), "tcp 10.0.0.1:80 -> 10.0.0.2:5555");
}

Test(inet_sk, describes_ipv6_and_unconnected_udp)
{
	InetSkEntry e = INET_SK_ENTRY__INIT;
	uint8_t a[16];
	char buf[160];

	e.family = AF_INET6;
	e.protocol = IPPROTO_UDP;
	set_addr(&e.src_addr, AF_INET6, "fd00::2", a);
	e.src_port = 53;
	cr_assert_str_eq(inet_sk_str(&e, buf, sizeof(buf)), "udp6 [fd00::2]:53");
}

Test(inet_sk, stream_states)
{
	cr_assert(tcp_is_stream_state(TCP_ESTABLISHED));
	cr_assert(tcp_is_stream_state(TCP_CLOSE_WAIT));
	cr_assert(tcp_is_stream_state(TCP_FIN_WAIT2));
	cr_assert(tcp_is_stream_state(TCP_LAST_ACK));
	cr_assert_not(tcp_is_stream_state(TCP_LISTEN));
	cr_assert_not(tcp_is_stream_state(TCP_SYN_SENT));
	cr_assert_not(tcp_is_stream_state(TCP_CLOSE));
}
