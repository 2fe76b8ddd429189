/* hookd-craft: runs inside a test guest and tries to get a TCP SYN past
 * hookd's rules with frames the guest's own stack would never build.
 *
 *   hookd-craft IFACE MODE DST_MAC SRC_IP DST_IP DST_PORT
 *
 * MODE: plain (a normal SYN, the control), vlan (802.1Q tagged), options
 * (IPv4 with options), frag (a non-first IPv4 fragment holding a TCP header),
 * tinyfrag (a first fragment too short to hold the ports), plain6 and ext6
 * (IPv6, SRC_IP and DST_IP IPv6; ext6 hides the TCP header behind two
 * hop-by-hop option headers). It sends the
 * frame three times and listens 2 s for the peer's SYN-ACK (or RST) for that
 * port: exit 0 when one came back (the frame got through), 1 when none did,
 * 2 on errors. Mode udp uses an ordinary UDP socket instead: it sends one
 * datagram from SRC_IP to DST_IP:DST_PORT and waits 2 s for any reply
 * (exit 0) or none (exit 1). Mode udpbig does the same with a datagram
 * of 3000 bytes (sent and answered in fragments) and wants all of it back.
 * Mode udpsink listens on DST_PORT and prints "UDPSINK port=P len=N" for
 * every datagram that arrives, forever. Mode udpecho opens a UDP flow to
 * DST_IP:DST_PORT, says "hello" and echoes every datagram back until an
 * error (exit 1). Test traffic only: 192.0.2.0/24. */
#include <arpa/inet.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static uint16_t csum(const void *data, size_t len, uint32_t sum)
{
	const uint8_t *p = data;

	for (; len > 1; p += 2, len -= 2)
		sum += (uint32_t)p[0] << 8 | p[1];
	if (len)
		sum += (uint32_t)p[0] << 8;
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	return (uint16_t)~sum;
}

static int parse_mac(const char *s, uint8_t *m)
{
	return sscanf(s, "%hhx:%hhx:%hhx:%hhx:%hhx:%hhx", &m[0], &m[1], &m[2], &m[3], &m[4], &m[5]) == 6 ? 0 : -1;
}

static int open_packet_socket(const char *iface, uint8_t *src_mac)
{
	struct sockaddr_ll sll = { .sll_family = AF_PACKET, .sll_protocol = htons(ETH_P_ALL) };
	struct ifreq ifr = { 0 };
	int fd = socket(AF_PACKET, SOCK_RAW, htons(ETH_P_ALL));

	if (fd < 0)
		return -1;
	strncpy(ifr.ifr_name, iface, IFNAMSIZ - 1);
	if (ioctl(fd, SIOCGIFHWADDR, &ifr) < 0)
		return -1;
	memcpy(src_mac, ifr.ifr_hwaddr.sa_data, 6);
	if (ioctl(fd, SIOCGIFINDEX, &ifr) < 0)
		return -1;
	sll.sll_ifindex = ifr.ifr_ifindex;
	if (bind(fd, (struct sockaddr *)&sll, sizeof(sll)) < 0)
		return -1;
	return fd;
}

/* Waits 2 s for a TCP segment from SRC (4 or 16 bytes at SRC_OFF of the IP
 * header) port DPORT to port SPORT. Returns 0 when one came. */
static int await_answer(int fd, int v6, const void *peer, uint16_t dport, uint16_t sport)
{
	struct timespec t0, t;
	uint8_t buf[2048];

	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (;;) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		uint8_t *th;
		ssize_t n;

		clock_gettime(CLOCK_MONOTONIC, &t);
		if (t.tv_sec - t0.tv_sec >= 2)
			break;
		if (poll(&p, 1, 200) <= 0)
			continue;
		n = recv(fd, buf, sizeof(buf), 0);
		if (v6) {
			if (n < 14 + 40 + 20 || buf[12] != 0x86 || buf[13] != 0xdd || buf[14 + 6] != 6 ||
			    memcmp(buf + 14 + 8, peer, 16))
				continue;
			th = buf + 14 + 40;
		} else {
			if (n < 14 + 20 + 20 || buf[12] != 0x08 || buf[13] != 0x00 || buf[14 + 9] != 6 ||
			    memcmp(buf + 14 + 12, peer, 4))
				continue;
			th = buf + 14 + (buf[14] & 0xf) * 4;
		}
		if (th[0] == (dport >> 8) && th[1] == (dport & 0xff) &&
		    th[2] == (sport >> 8) && th[3] == (sport & 0xff)) {
			printf("answered: flags 0x%02x\n", th[13]);
			return 0;
		}
	}
	printf("no answer\n");
	return 1;
}

static int craft6(char **argv)
{
	uint8_t frame[256] = { 0 }, src_mac[6], dst_mac[6], *ip, *p;
	struct in6_addr src, dst;
	uint16_t dport = (uint16_t)atoi(argv[6]), sport = 40000 + (getpid() % 20000);
	int ext = !strcmp(argv[2], "ext6"), fd, i;
	size_t exthl = ext ? 16 : 0, len;

	if (parse_mac(argv[3], dst_mac) || inet_pton(AF_INET6, argv[4], &src) != 1 ||
	    inet_pton(AF_INET6, argv[5], &dst) != 1) {
		fprintf(stderr, "hookd-craft: bad IPv6 arguments\n");
		return 2;
	}
	fd = open_packet_socket(argv[1], src_mac);
	if (fd < 0) {
		perror(argv[1]);
		return 2;
	}
	memcpy(frame, dst_mac, 6);
	memcpy(frame + 6, src_mac, 6);
	frame[12] = 0x86, frame[13] = 0xdd;
	ip = frame + 14;
	ip[0] = 0x60;
	ip[4] = 0, ip[5] = (uint8_t)(exthl + 20);
	ip[6] = ext ? 0 : 6; /* hop-by-hop, or TCP */
	ip[7] = 64;
	memcpy(ip + 8, &src, 16);
	memcpy(ip + 24, &dst, 16);
	p = ip + 40;
	if (ext) {
		/* two 8-byte hop-by-hop headers with PadN options; the second
		 * one is really a destination-options header after it */
		p[0] = 60, p[1] = 0, p[2] = 1, p[3] = 4;
		p[8] = 6, p[9] = 0, p[10] = 1, p[11] = 4;
		p += 16;
	}
	p[0] = sport >> 8, p[1] = sport & 0xff, p[2] = dport >> 8, p[3] = dport & 0xff;
	p[7] = 1, p[12] = 5 << 4, p[13] = 0x02, p[14] = 0xff, p[15] = 0xff;
	{
		uint8_t pseudo[40 + 20] = { 0 };
		uint16_t c;

		memcpy(pseudo, &src, 16);
		memcpy(pseudo + 16, &dst, 16);
		pseudo[35] = 20, pseudo[39] = 6;
		memcpy(pseudo + 40, p, 20);
		c = csum(pseudo, sizeof(pseudo), 0);
		p[16] = c >> 8, p[17] = c & 0xff;
	}
	len = 14 + 40 + exthl + 20;
	for (i = 0; i < 3; i++) {
		if (send(fd, frame, len, 0) < 0) {
			perror("send");
			return 2;
		}
		usleep(200000);
	}
	return await_answer(fd, 1, &dst, dport, sport);
}

int main(int argc, char **argv)
{
	uint8_t frame[256], src_mac[6], dst_mac[6], tcp[20], *ip;
	struct in_addr src, dst;
	size_t off = 0, iphl = 20, l4len = 20;
	uint16_t dport, sport = 40000 + (getpid() % 20000);
	const char *mode;
	int fd, i;

	if (argc == 7 && (!strcmp(argv[2], "plain6") || !strcmp(argv[2], "ext6")))
		return craft6(argv);
	if (argc != 7 || parse_mac(argv[3], dst_mac) || !inet_aton(argv[4], &src) || !inet_aton(argv[5], &dst)) {
		fprintf(stderr, "usage: hookd-craft IFACE plain|vlan|options|frag|tinyfrag DST_MAC SRC_IP DST_IP DST_PORT\n");
		return 2;
	}
	mode = argv[2];
	dport = (uint16_t)atoi(argv[6]);
	if (!strcmp(mode, "udpecho")) {
		/* A UDP flow the guest opens and keeps: "hello", then every
		 * datagram back to DST_IP:DST_PORT, until an error. */
		struct sockaddr_in to = { .sin_family = AF_INET, .sin_port = htons(dport), .sin_addr = dst };
		char buf[2048];
		ssize_t n;
		int u = socket(AF_INET, SOCK_DGRAM, 0);

		if (u < 0 || connect(u, (struct sockaddr *)&to, sizeof(to)) < 0 || send(u, "hello\n", 6, 0) < 0) {
			perror("udpecho");
			return 2;
		}
		while ((n = recv(u, buf, sizeof(buf), 0)) >= 0)
			if (send(u, buf, (size_t)n, 0) < 0)
				break;
		perror("udpecho");
		return 1;
	}
	if (!strcmp(mode, "udpsink")) {
		struct sockaddr_in at = { .sin_family = AF_INET, .sin_port = htons(dport) };
		char buf[65536];
		ssize_t n;
		int u = socket(AF_INET, SOCK_DGRAM, 0);

		if (u < 0 || bind(u, (struct sockaddr *)&at, sizeof(at)) < 0) {
			perror("udpsink");
			return 2;
		}
		while ((n = recv(u, buf, sizeof(buf), 0)) >= 0) {
			printf("UDPSINK port=%u len=%zd\n", dport, n);
			fflush(stdout);
		}
		perror("udpsink");
		return 1;
	}
	if (!strcmp(mode, "udpbig")) {
		/* 3000 bytes: more than the MTU, so the kernels on both
		 * sides fragment the datagram and its echo. */
		struct sockaddr_in to = { .sin_family = AF_INET, .sin_port = htons(dport), .sin_addr = dst };
		struct timeval tv = { .tv_sec = 2 };
		static char big[3000], back[65536];
		ssize_t n;
		int u = socket(AF_INET, SOCK_DGRAM, 0);

		memset(big, 'h', sizeof(big));
		if (u < 0 || setsockopt(u, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) < 0 ||
		    sendto(u, big, sizeof(big), 0, (struct sockaddr *)&to, sizeof(to)) < 0) {
			perror("udpbig");
			return 2;
		}
		n = recv(u, back, sizeof(back), 0);
		printf("%zd bytes back\n", n);
		return n == (ssize_t)sizeof(big) && !memcmp(big, back, sizeof(big)) ? 0 : 1;
	}
	if (!strcmp(mode, "udp")) {
		struct sockaddr_in to = { .sin_family = AF_INET, .sin_port = htons(dport), .sin_addr = dst };
		struct timeval tv = { .tv_sec = 2 };
		char buf[64];
		int u = socket(AF_INET, SOCK_DGRAM, 0);

		if (u < 0 || setsockopt(u, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) < 0 ||
		    sendto(u, "hookd-udp", 9, 0, (struct sockaddr *)&to, sizeof(to)) < 0) {
			perror("udp");
			return 2;
		}
		if (recv(u, buf, sizeof(buf), 0) > 0) {
			printf("answered\n");
			return 0;
		}
		printf("no answer\n");
		return 1;
	}
	fd = open_packet_socket(argv[1], src_mac);
	if (fd < 0) {
		perror(argv[1]);
		return 2;
	}

	memset(frame, 0, sizeof(frame));
	memcpy(frame, dst_mac, 6);
	memcpy(frame + 6, src_mac, 6);
	off = 12;
	if (!strcmp(mode, "vlan")) {
		frame[off++] = 0x81, frame[off++] = 0x00;
		frame[off++] = 0x00, frame[off++] = 0x05; /* VLAN 5 */
	}
	frame[off++] = 0x08, frame[off++] = 0x00;
	ip = frame + off;
	if (!strcmp(mode, "options"))
		iphl = 24;
	if (!strcmp(mode, "tinyfrag"))
		l4len = 8; /* ports and sequence only: flags are in the next fragment */

	/* TCP SYN */
	memset(tcp, 0, sizeof(tcp));
	tcp[0] = sport >> 8, tcp[1] = sport & 0xff;
	tcp[2] = dport >> 8, tcp[3] = dport & 0xff;
	tcp[7] = 1;
	tcp[12] = 5 << 4;
	tcp[13] = 0x02;
	tcp[14] = 0xff, tcp[15] = 0xff;
	{
		uint8_t pseudo[12 + 20];
		uint16_t c;

		memcpy(pseudo, &src, 4);
		memcpy(pseudo + 4, &dst, 4);
		pseudo[8] = 0, pseudo[9] = 6, pseudo[10] = 0, pseudo[11] = 20;
		memcpy(pseudo + 12, tcp, 20);
		c = csum(pseudo, sizeof(pseudo), 0);
		tcp[16] = c >> 8, tcp[17] = c & 0xff;
	}

	/* IPv4 */
	ip[0] = 0x40 | (uint8_t)(iphl / 4);
	ip[2] = (uint8_t)((iphl + l4len) >> 8), ip[3] = (uint8_t)(iphl + l4len);
	ip[4] = 0x12, ip[5] = 0x34;
	if (!strcmp(mode, "frag"))
		ip[6] = 0x00, ip[7] = 0x03; /* offset 24 bytes: a later fragment */
	if (!strcmp(mode, "tinyfrag"))
		ip[6] = 0x20; /* more fragments, offset 0 */
	ip[8] = 64;
	ip[9] = 6;
	memcpy(ip + 12, &src, 4);
	memcpy(ip + 16, &dst, 4);
	if (iphl == 24)
		ip[20] = 1, ip[21] = 1, ip[22] = 1, ip[23] = 0; /* NOP NOP NOP EOL */
	{
		uint16_t c = csum(ip, iphl, 0);

		ip[10] = c >> 8, ip[11] = c & 0xff;
	}
	memcpy(ip + iphl, tcp, l4len);
	off += iphl + l4len;
	if (off < 60)
		off = 60;

	for (i = 0; i < 3; i++) {
		if (send(fd, frame, off, 0) < 0) {
			perror("send");
			return 2;
		}
		usleep(200000);
	}

	return await_answer(fd, 0, &dst, dport, sport);
}
