/*
 * Connections and the request deadline. libmicrohttpd's own timeout is an
 * idle timeout, which a client sending one byte a second never meets
 * (slowloris). Here each connection has a slot saying what it is doing and
 * since when; from the main thread, a request still arriving
 * limits.request_timeout_s after its first line is answered 408 and its
 * connection shut down, and a connection that has waited limits.timeout_s
 * in all for a request line (idle keep-alive, or a line sent a byte at a
 * time: it cannot tell which) is shut down without an answer.
 */
#ifndef EMBD_CONNS_H
#define EMBD_CONNS_H

#include <microhttpd.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

enum conn_state { CONN_IDLE, CONN_RECEIVING, CONN_BUSY, CONN_TIMED_OUT };

struct conn_slot {
	int fd;                    /* valid while used; under the table's lock */
	int used;                  /* under the table's lock */
	atomic_int state;          /* enum conn_state */
	_Atomic uint64_t since_ns; /* when the state began */
};

typedef struct embd_conns {
	pthread_mutex_t lock; /* taken when a connection opens or closes, and by the sweep */
	struct conn_slot *slots;
	unsigned n;
	atomic_long *open; /* borrowed: the gauge of open connections */
} embd_conns;

/* A table for n connections (libmicrohttpd's connection limit), counting them in *open. 0 or -ENOMEM. */
int embd_conns_init(embd_conns *t, unsigned n, atomic_long *open);
void embd_conns_destroy(embd_conns *t);

/* MHD_OPTION_NOTIFY_CONNECTION: a slot for each connection, given back before its socket is closed. */
void embd_conns_notify(void *cls, struct MHD_Connection *c, void **socket_context,
                       enum MHD_ConnectionNotificationCode code);

/* The connection's slot (NULL if it has none: the table was full). */
struct conn_slot *embd_conn_slot(struct MHD_Connection *c);

/* A request's first line has arrived: its clock starts. */
void embd_conn_receiving(struct conn_slot *slot, uint64_t now_ns);

/* The request has arrived, or is being answered: no deadline (unless the sweep has just timed it out). */
void embd_conn_busy(struct conn_slot *slot);

/* The request is over; the connection waits for the next. */
void embd_conn_idle(struct conn_slot *slot, uint64_t now_ns);

/*
 * Answer every request still arriving after request_ns with reply (a whole
 * HTTP response, written directly: nothing else writes to a connection whose
 * request is still arriving) and shut its socket, so that libmicrohttpd closes
 * it; shut, without a word, every connection that has waited wait_ns for a
 * request line (0: no such limit). Returns how many requests were answered 408.
 */
unsigned embd_conns_sweep(embd_conns *t, uint64_t now_ns, uint64_t request_ns, uint64_t wait_ns, const char *reply,
                          size_t len);

#endif
