/* Connection slots, the connection limit and the request deadline (see conns.h). */
#include "conns.h"

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <linux/tcp.h> /* struct tcp_info with tcpi_bytes_acked (glibc's netinet/tcp.h lacks it) */
#include <netinet/in.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "log.h"
#include "server.h"

int embd_conns_init(embd_conns *t, unsigned limit, unsigned surplus, unsigned per_ip, atomic_long *open,
                    atomic_ullong *refused_per_ip)
{
	t->open = open;
	t->refused_per_ip = refused_per_ip;
	t->n = limit + surplus;
	t->limit = limit;
	t->per_ip = per_ip;
	t->held = 0;
	t->extra = 0;
	atomic_init(&t->refusal_logged_ns, 0);
	atomic_init(&t->refusals_unlogged, 0);
	t->slots = calloc(t->n, sizeof *t->slots);
	if (t->slots == NULL)
		return -ENOMEM;
	pthread_mutex_init(&t->lock, NULL);
	return 0;
}

void embd_conns_destroy(embd_conns *t)
{
	free(t->slots);
	t->slots = NULL;
	pthread_mutex_destroy(&t->lock);
}

/*
 * The peer's address of c into family and addr (16 bytes), and as text; family
 * 0 when it is neither IPv4 nor IPv6. A Unix-domain peer (listen.unix) is
 * family 0 and "unix": it is on this host, and limits.connections_per_ip,
 * which keeps one remote host from taking every connection, does not count it.
 */
static void client_address(struct MHD_Connection *c, int *family, unsigned char *addr, char *text, size_t cap)
{
	const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
	const struct sockaddr *sa = ci != NULL ? ci->client_addr : NULL;
	*family = 0;
	memset(addr, 0, 16);
	if (sa != NULL && sa->sa_family == AF_UNIX)
		snprintf(text, cap, "unix");
	if (sa != NULL && sa->sa_family == AF_INET) {
		*family = AF_INET;
		memcpy(addr, &((const struct sockaddr_in *)sa)->sin_addr, 4);
	} else if (sa != NULL && sa->sa_family == AF_INET6) {
		*family = AF_INET6;
		memcpy(addr, &((const struct sockaddr_in6 *)sa)->sin6_addr, 16);
	}
	if (*family != 0)
		inet_ntop(*family, addr, text, (socklen_t)cap);
}

/* How many connections within the limit the address holds (under the table's lock). */
static unsigned held_by(const embd_conns *t, int family, const unsigned char *addr)
{
	unsigned k = 0;
	for (unsigned i = 0; i < t->n && k < t->per_ip; i++) { /* past the limit, the exact count is not needed */
		const struct conn_slot *s = &t->slots[i];
		k += s->used && !s->surplus && s->family == family && memcmp(s->addr, addr, 16) == 0;
	}
	return k;
}

/*
 * The log line of a connection refused past limits.connections_per_ip: at
 * most one a second (a flood of connections must not become a flood of log
 * lines, each a write under the log's lock), saying how many went unlogged.
 */
static void log_refusal(embd_conns *t, int family, const unsigned char *addr, int shut_at_once)
{
	uint64_t now = embd_now_ns(), last = atomic_load(&t->refusal_logged_ns);
	if ((last != 0 && now - last < 1000000000u) ||
	    !atomic_compare_exchange_strong(&t->refusal_logged_ns, &last, now)) {
		atomic_fetch_add(&t->refusals_unlogged, 1);
		return;
	}
	unsigned long more = atomic_exchange(&t->refusals_unlogged, 0);
	char host[INET6_ADDRSTRLEN] = "?";
	if (family != 0)
		inet_ntop(family, addr, host, sizeof host);
	char since[80] = "";
	if (more != 0)
		snprintf(since, sizeof since, "; %lu more refused since the last such line", more);
	embd_log(EMBD_LOG_WARN,
	         "refused a connection from %s: it holds limits.connections_per_ip (%u) connections already (%s)%s",
	         host, t->per_ip,
	         shut_at_once ? "closed at once: the surplus is full"
	                      : "its request is answered 503 too_many_connections",
	         since);
}

void embd_conn_client_text(struct MHD_Connection *c, char *text, size_t cap)
{
	int family;
	unsigned char addr[16];
	snprintf(text, cap, "-");
	client_address(c, &family, addr, text, cap);
}

void embd_conns_notify(void *cls, struct MHD_Connection *c, void **socket_context,
                       enum MHD_ConnectionNotificationCode code)
{
	embd_conns *t = cls;
	int refused = 0, shut_at_once = 0, family = 0, counted = 0;
	unsigned char addr[16];
	char text[sizeof t->slots[0].client] = "-";
	if (code == MHD_CONNECTION_NOTIFY_STARTED) {
		client_address(c, &family, addr, text, sizeof text);
	}
	pthread_mutex_lock(&t->lock);
	if (code == MHD_CONNECTION_NOTIFY_STARTED) {
		atomic_fetch_add(t->open, 1);
		*socket_context = NULL;
		const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
		refused = t->per_ip != 0 && family != 0 && held_by(t, family, addr) >= t->per_ip;
		/*
		 * Past its address's share, a connection may only take a surplus
		 * slot; with none left, it is shut now (libmicrohttpd sees the end
		 * of the stream and closes it), so that a flood from one host never
		 * fills the table and libmicrohttpd's limit against the others.
		 */
		shut_at_once = refused && t->extra >= t->n - t->limit;
		for (unsigned i = 0; ci != NULL && !shut_at_once && i < t->n; i++) {
			struct conn_slot *s = &t->slots[i];
			if (!s->used) {
				s->used = 1;
				s->fd = ci->connect_fd;
				s->over_ip = refused;
				s->uri_refused = 0;
				s->surplus = refused || t->held >= t->limit;
				if (s->surplus)
					t->extra++;
				else
					t->held++;
				s->family = family;
				memcpy(s->addr, addr, sizeof s->addr);
				memcpy(s->client, text, sizeof s->client);
				s->opened_ns = embd_now_ns();
				atomic_store(&s->since_ns, s->opened_ns);
				atomic_store(&s->state, CONN_IDLE);
				atomic_store(&s->gen, 0);
				s->rate_since = 0;
				*socket_context = s;
				break;
			}
		}
		/*
		 * No slot left: the table is full of connections of both listeners
		 * (libmicrohttpd's limit is per daemon, the table's is for both
		 * together, listen.unix's and TCP's). Shut at once, as a flood past
		 * the surplus is: a connection is never served without its slot.
		 */
		if ((shut_at_once || *socket_context == NULL) && ci != NULL)
			shutdown(ci->connect_fd, SHUT_RDWR);
	} else {
		atomic_fetch_sub(t->open, 1);
		/* libmicrohttpd closes the socket after this returns, so the sweep never sees a reused fd. */
		struct conn_slot *s = *socket_context;
		if (s != NULL) {
			counted =
			    s->over_ip; /* refused to the end without asking anything (an answered one counted then) */
			s->over_ip = 0;
			if (s->surplus)
				t->extra--;
			else
				t->held--;
			s->used = 0;
			s->fd = -1;
			*socket_context = NULL;
		}
	}
	pthread_mutex_unlock(&t->lock);
	/*
	 * A connection kept in the surplus is counted and logged when its
	 * request is refused (embd_conn_admit_ip), or here when it closes
	 * without having asked anything: the address's other connections may
	 * close first, and then its request is served.
	 */
	if (counted || shut_at_once)
		atomic_fetch_add(t->refused_per_ip, 1);
	if (shut_at_once)
		log_refusal(t, family, addr, 1);
}

int embd_conn_admit_ip(embd_conns *t, struct conn_slot *s)
{
	if (s == NULL || !s->over_ip)
		return 0;
	pthread_mutex_lock(&t->lock);
	int over = held_by(t, s->family, s->addr) >= t->per_ip;
	if (!over) {
		/*
		 * The address's other connections have closed since: the address
		 * limit no longer refuses it. A slot of its own if the table has
		 * one; if not, it stays in the surplus and is refused for the
		 * table's limit (503 overloaded), not its address's.
		 */
		s->over_ip = 0;
		if (t->held < t->limit) {
			s->surplus = 0;
			t->extra--;
			t->held++;
		}
	}
	over = s->over_ip;
	/*
	 * Refused: counted now, as it is answered (a scrape right after the
	 * answer sees it), and no longer at its close; it stays in the surplus,
	 * and its connection closes after the answer.
	 */
	s->over_ip = 0;
	pthread_mutex_unlock(&t->lock);
	if (over) {
		atomic_fetch_add(t->refused_per_ip, 1);
		log_refusal(t, s->family, s->addr, 0);
	}
	return over;
}

struct conn_slot *embd_conn_slot(struct MHD_Connection *c)
{
	const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
	return ci != NULL ? ci->socket_context : NULL;
}

void embd_conn_receiving(struct conn_slot *slot, uint64_t now_ns)
{
	if (slot == NULL)
		return;
	atomic_store(&slot->since_ns, now_ns);
	atomic_store(&slot->state, CONN_RECEIVING);
}

int embd_conn_claim(struct conn_slot *slot)
{
	if (slot == NULL)
		return 0;
	int state = atomic_load(&slot->state);
	while (state == CONN_RECEIVING)
		if (atomic_compare_exchange_weak(&slot->state, &state, CONN_BUSY))
			return 0;
	return state == CONN_TIMED_OUT ? -1 : 0;
}

int embd_conn_expired(const struct conn_slot *slot, uint64_t now_ns, uint64_t request_ns)
{
	if (slot == NULL || request_ns == 0)
		return 0;
	int state = atomic_load(&((struct conn_slot *)slot)->state);
	uint64_t since = atomic_load(&((struct conn_slot *)slot)->since_ns);
	return state == CONN_RECEIVING && since < now_ns && now_ns - since > request_ns;
}

void embd_conn_generation(struct conn_slot *slot, uint64_t gen)
{
	if (slot != NULL)
		atomic_store(&slot->gen, gen);
}

void embd_conn_sending(struct conn_slot *slot, uint64_t now_ns)
{
	if (slot == NULL)
		return;
	atomic_store(&slot->since_ns, now_ns);
	int busy = CONN_BUSY; /* not over a claim by the sweep or a reload */
	atomic_compare_exchange_strong(&slot->state, &busy, CONN_SENDING);
}

void embd_conn_idle(struct conn_slot *slot, uint64_t now_ns)
{
	if (slot == NULL)
		return;
	atomic_store(&slot->gen, 0);
	atomic_store(&slot->since_ns, now_ns);
	atomic_store(&slot->state, CONN_IDLE);
}

/* "address:port" of the connection's peer, for the log. */
static const char *peer(int fd, char *buf, size_t cap)
{
	struct sockaddr_storage ss = {.ss_family = AF_UNSPEC};
	socklen_t len = sizeof ss;
	char host[INET6_ADDRSTRLEN] = "?";
	unsigned port = 0;
	if (getpeername(fd, (struct sockaddr *)&ss, &len) == 0) {
		if (ss.ss_family == AF_INET) {
			struct sockaddr_in *a = (struct sockaddr_in *)&ss;
			inet_ntop(AF_INET, &a->sin_addr, host, sizeof host);
			port = ntohs(a->sin_port);
		} else if (ss.ss_family == AF_INET6) {
			struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
			inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof host);
			port = ntohs(a->sin6_port);
		}
	}
	if (ss.ss_family == AF_UNIX)
		snprintf(buf, cap, "unix");
	else
		snprintf(buf, cap, ss.ss_family == AF_INET6 ? "[%s]:%u" : "%s:%u", host, port);
	return buf;
}

/* Bytes of this connection the client's TCP has acknowledged, ever. 0, or -1 (not TCP, or an old kernel). */
static int bytes_acked(int fd, uint64_t *out)
{
	struct tcp_info ti;
	socklen_t len = sizeof ti;
	memset(&ti, 0, sizeof ti);
	if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) != 0 ||
	    len < offsetof(struct tcp_info, tcpi_bytes_acked) + sizeof ti.tcpi_bytes_acked)
		return -1;
	*out = ti.tcpi_bytes_acked;
	return 0;
}

/*
 * Claim the slot from state want for the sweep and shut its socket; 1 if this
 * call did. counted (may be NULL) is incremented first: once the socket is
 * shut the client sees the end at once, and a scrape that follows must find
 * the timeout counted.
 */
static int shut(struct conn_slot *s, int want, atomic_ullong *counted)
{
	if (!atomic_compare_exchange_strong(&s->state, &want, CONN_TIMED_OUT))
		return 0; /* a worker moved it on meanwhile */
	if (counted != NULL)
		atomic_fetch_add(counted, 1);
	/* No write: libmicrohttpd sees the end of the stream, closes the connection and reports the request ended. */
	shutdown(s->fd, SHUT_RDWR);
	return 1;
}

/*
 * The send rate of a slot sending its response (under the table's lock): the
 * first look opens a window; once the window has passed, the bytes the client
 * acknowledged in it must come to rate->min_rate a second, or the connection
 * is shut; otherwise the next window opens.
 */
static void check_rate(struct conn_slot *s, uint64_t now_ns, const struct embd_send_rate *rate)
{
	uint64_t since = atomic_load(&s->since_ns), acked;
	if (bytes_acked(s->fd, &acked) != 0)
		return;
	if (s->rate_since != since || now_ns < s->rate_t0) { /* another response than the window's */
		s->rate_since = since;
		s->rate_t0 = now_ns;
		s->rate_acked0 = acked;
		return;
	}
	uint64_t span = now_ns - s->rate_t0;
	if (span < rate->window_ns)
		return;
	uint64_t got = acked - s->rate_acked0;
	double per_s = (double)got * 1e9 / (double)span;
	if (per_s >= (double)rate->min_rate) {
		s->rate_t0 = now_ns;
		s->rate_acked0 = acked;
		return;
	}
	char who[80];
	peer(s->fd, who, sizeof who);
	uint64_t gen = atomic_load(&s->gen);
	if (shut(s, CONN_SENDING, rate->cut_total))
		embd_log(EMBD_LOG_WARN,
		         "closed the connection of %s (generation %" PRIu64 "): its client took %" PRIu64
		         " bytes in %.1f s (%.0f bytes/s), under limits.min_send_rate %" PRIu64 " bytes/s",
		         who, gen, got, (double)span / 1e9, per_s, rate->min_rate);
}

unsigned embd_conns_cut_generation(embd_conns *t, uint64_t gen, atomic_ullong *counted)
{
	static const char *const states[] = {"idle", "receiving its request", "busy", "closed", "sending its response"};
	unsigned n = 0;
	uint64_t now = embd_now_ns();
	pthread_mutex_lock(&t->lock);
	for (unsigned i = 0; i < t->n; i++) {
		struct conn_slot *s = &t->slots[i];
		if (!s->used || gen == 0 || atomic_load(&s->gen) != gen)
			continue;
		/* A worker may move the slot on meanwhile (busy to sending): claim whatever state it is in. */
		uint64_t since = atomic_load(&s->since_ns);
		char who[80];
		peer(s->fd, who, sizeof who); /* before the shutdown, after which the peer may be gone */
		int state = atomic_load(&s->state), cut = 0;
		while (!cut && state != CONN_TIMED_OUT && atomic_load(&s->gen) == gen)
			if (!(cut = shut(s, state, counted)))
				state = atomic_load(&s->state);
		if (!cut)
			continue;
		embd_log(EMBD_LOG_WARN, "generation %" PRIu64 ": closed the connection of %s (%s for %.1f s)", gen, who,
		         states[state], since < now ? (double)(now - since) / 1e9 : 0.0);
		n++;
	}
	pthread_mutex_unlock(&t->lock);
	return n;
}

unsigned embd_conns_sweep(embd_conns *t, uint64_t now_ns, uint64_t request_ns, uint64_t wait_ns,
                          atomic_ullong *timed_out_total, const struct embd_send_rate *rate)
{
	unsigned timed_out = 0;
	pthread_mutex_lock(&t->lock);
	for (unsigned i = 0; i < t->n; i++) {
		struct conn_slot *s = &t->slots[i];
		if (!s->used)
			continue;
		int state = atomic_load(&s->state);
		if (s->surplus && state != CONN_BUSY && state != CONN_TIMED_OUT && now_ns > s->opened_ns &&
		    now_ns - s->opened_ns > EMBD_CONN_SURPLUS_NS) {
			shut(s, state, NULL);
			continue;
		}
		/* A worker may have stamped the slot after now_ns was read: that is age 0, not 2^64 - 1. */
		uint64_t since = atomic_load(&s->since_ns);
		uint64_t age = since < now_ns ? now_ns - since : 0;
		if (state == CONN_IDLE && wait_ns != 0 && age > wait_ns)
			shut(s, CONN_IDLE, NULL);
		else if (state == CONN_RECEIVING && request_ns != 0 && age > request_ns)
			timed_out += (unsigned)shut(s, CONN_RECEIVING, timed_out_total);
		else if (state == CONN_SENDING && rate != NULL && rate->min_rate != 0)
			check_rate(s, now_ns, rate);
	}
	pthread_mutex_unlock(&t->lock);
	return timed_out;
}
