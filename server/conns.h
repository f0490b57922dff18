/*
 * Connections: their slots, the connection limit and the request deadline.
 *
 * libmicrohttpd's own timeout is an idle timeout, which a client sending one
 * byte a second never meets (slowloris). Here each connection has a slot
 * saying what it is doing and since when. From the main thread, a request
 * still arriving (line, headers or body) limits.request_timeout_s after its
 * first line has its connection shut, as has a connection that has waited
 * limits.timeout_s in all for a request line (idle keep-alive, or a line sent
 * a byte at a time: it cannot tell which). Neither gets an answer, as nginx
 * gives none at client_header_timeout and client_body_timeout: libmicrohttpd
 * 0.9.75 queues no response while a body is arriving, and nothing here writes
 * to a socket, so that a request never gets two answers. The access handler
 * closes a request whose body bytes come after its deadline at once, without
 * waiting for the sweep (embd_conn_expired).
 *
 * The slot also records which generation its request holds, so that a reload
 * past limits.generations can close the connections pinning the oldest one
 * (embd_conns_cut_generation), and when its response began to be sent, so
 * that the sweep can close a connection whose client takes the response more
 * slowly than limits.min_send_rate (measured from the bytes the client's TCP
 * has acknowledged, tcpi_bytes_acked, which counts what the client took, not
 * what we wrote into the kernel's buffer).
 *
 * The table has room for limits.connections plus a surplus: connections past
 * limits.connections are accepted into the surplus only to be answered 503 at
 * once (or, if they send nothing, shut within a second), so that a crowd of
 * clients is refused at once rather than left waiting in the listen backlog.
 *
 * limits.connections_per_ip is counted here too (not by libmicrohttpd, which
 * closes the excess without a word): a connection from an address that
 * already holds that many is a surplus connection; when its request arrives
 * the count is taken again (embd_conn_admit_ip), and a request still past
 * the share is answered 503 too_many_connections with Connection: close,
 * logged (a line a second at most) and counted when the connection closes. It never takes one of the limits.connections
 * slots, so a host flooding past its share leaves the others theirs; and the surplus is bounded (a flood connection
 * finding it full is shut at once), so the sockets open never pass limits.connections plus the surplus, and the flood
 * cannot push the others' connections into libmicrohttpd's own limit.
 */
#ifndef EMBD_CONNS_H
#define EMBD_CONNS_H

#include <microhttpd.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

/*
 * CONN_RECEIVING: the request (line, headers, body) is arriving. CONN_BUSY: it
 * has arrived, or is being answered. CONN_SENDING: its response is queued and
 * being sent. CONN_TIMED_OUT: the sweep (or a reload draining a generation)
 * has claimed the connection (shut it); nothing may be queued on it any more.
 */
enum conn_state { CONN_IDLE, CONN_RECEIVING, CONN_BUSY, CONN_TIMED_OUT, CONN_SENDING };

/* The most of a request's query string its access line shows (a longer one ends in "..."). */
#define EMBD_ACCESS_QUERY_BYTES 256

struct conn_slot {
	int fd;          /* valid while used; under the table's lock */
	int used;        /* under the table's lock */
	int surplus;     /* past limits.connections: answered 503; set before the connection is seen */
	int over_ip;     /* (and surplus) past limits.connections_per_ip, not yet answered 503 too_many_connections */
	int family;      /* the peer's address (AF_INET, AF_INET6 or 0), for limits.connections_per_ip */
	int uri_refused; /* its request target is too long (http.c): 1 answered 414 already (close, answer nothing),
	                  * 2 to be answered 414 by the handler (the socket had bytes pending) */
	size_t uri_len;  /* that target's length, for the 414's message */
	unsigned char addr[16];
	char client[46];  /* the address as text (INET6_ADDRSTRLEN), made once at connect for the access lines */
	atomic_int state; /* enum conn_state */
	_Atomic uint64_t since_ns; /* when the state began */
	uint64_t opened_ns;        /* when the connection was accepted; under the table's lock */
	_Atomic uint64_t gen;      /* the generation its request holds; 0: none */
	/* The send-rate window (the sweep's own, under the table's lock): which response, since when, acked then. */
	uint64_t rate_since, rate_t0, rate_acked0;
	/* The query string of the request arriving, as sent (cut to fit), for its access line; written on its first
	 * line, read once its headers are in, on the connection's thread. */
	char query[EMBD_ACCESS_QUERY_BYTES];
};

typedef struct embd_conns {
	pthread_mutex_t lock; /* taken when a connection opens or closes, and by the sweep */
	struct conn_slot *slots;
	unsigned n;        /* slots: the limit and the surplus */
	unsigned limit;    /* limits.connections */
	unsigned held;     /* connections within the limit now; under the lock */
	unsigned extra;    /* surplus connections now (past either limit), at most n - limit; under the lock */
	unsigned per_ip;   /* limits.connections_per_ip (0: none) */
	atomic_long *open; /* borrowed: the gauge of open connections */
	atomic_ullong *refused_per_ip; /* borrowed: counts the connections past per_ip */
	/* The log line of a refusal past per_ip, at most one a second: when the last went, and how many since. */
	_Atomic uint64_t refusal_logged_ns;
	atomic_ulong refusals_unlogged;
} embd_conns;

/*
 * A table for limit connections and surplus more (libmicrohttpd's connection
 * limit is their sum), counting them in *open, at most per_ip (0: any number)
 * of them within the limit from one address; connections past per_ip are
 * counted in *refused_per_ip. 0 or -ENOMEM.
 */
int embd_conns_init(embd_conns *t, unsigned limit, unsigned surplus, unsigned per_ip, atomic_long *open,
                    atomic_ullong *refused_per_ip);
void embd_conns_destroy(embd_conns *t);

/* MHD_OPTION_NOTIFY_CONNECTION: a slot for each connection, given back before its socket is closed. */
void embd_conns_notify(void *cls, struct MHD_Connection *c, void **socket_context,
                       enum MHD_ConnectionNotificationCode code);

/* The connection's slot (NULL if it has none: the table was full). */
struct conn_slot *embd_conn_slot(struct MHD_Connection *c);

/*
 * A request has arrived on the connection: whether it is still past
 * limits.connections_per_ip (1: log it; it is to be answered 503
 * too_many_connections) or not (0). A connection refused when it opened is
 * checked again here, and given a slot within the limit if its address's
 * other connections have closed since and there is one.
 */
/* The peer's address of c as text ("unix" for a listen.unix peer, "-" when unknown): a connection without a slot. */
void embd_conn_client_text(struct MHD_Connection *c, char *text, size_t cap);

int embd_conn_admit_ip(embd_conns *t, struct conn_slot *slot);

/* A request's first line has arrived: its clock starts. */
void embd_conn_receiving(struct conn_slot *slot, uint64_t now_ns);

/*
 * The request has arrived, or is about to be answered: no deadline any more.
 * Returns 0, or -1 if the sweep has already claimed the connection (it is
 * being shut): then nothing may be queued on it.
 */
int embd_conn_claim(struct conn_slot *slot);

/* Whether a request still arriving has passed its deadline (request_ns after its first line; 0: none). */
int embd_conn_expired(const struct conn_slot *slot, uint64_t now_ns, uint64_t request_ns);

/* The connection's request holds generation number gen (until embd_conn_idle). */
void embd_conn_generation(struct conn_slot *slot, uint64_t gen);

/* The request's response is queued: from now on it is sent, at limits.min_send_rate at least. */
void embd_conn_sending(struct conn_slot *slot, uint64_t now_ns);

/* The request is over; the connection waits for the next. */
void embd_conn_idle(struct conn_slot *slot, uint64_t now_ns);

/* How long a surplus connection may stay without having been answered. */
#define EMBD_CONN_SURPLUS_NS 1000000000u

/* The minimum send rate: a response's client must acknowledge min_rate bytes/s over each window_ns (0: none). */
struct embd_send_rate {
	uint64_t min_rate;
	uint64_t window_ns;
	atomic_ullong *cut_total; /* counts the connections closed for it */
};

/*
 * Shut (shutdown(2), no write: libmicrohttpd then closes it) every connection
 * whose request is still arriving request_ns after its first line (0: no such
 * limit), that has waited wait_ns for a request line (0: no such limit), that
 * is surplus and still there after EMBD_CONN_SURPLUS_NS, or whose response's
 * client has acknowledged fewer than rate->min_rate bytes a second over a
 * whole window (each logged, and counted in rate->cut_total before its socket
 * is shut). Returns how many requests were shut for the request deadline,
 * each counted in *timed_out_total before its socket is shut. Call from one
 * thread (the main thread, every fraction of a second).
 */
unsigned embd_conns_sweep(embd_conns *t, uint64_t now_ns, uint64_t request_ns, uint64_t wait_ns,
                          atomic_ullong *timed_out_total, const struct embd_send_rate *rate);

/*
 * Shut every connection whose request holds generation gen, logging each;
 * each is counted in *counted (may be NULL) before its socket is shut.
 * Returns how many. Thread-safe (the reload thread calls it).
 */
unsigned embd_conns_cut_generation(embd_conns *t, uint64_t gen, atomic_ullong *counted);

#endif
