/* Connection slots, the connection limit and the request deadline (see conns.h). */
#include "conns.h"

#include <errno.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include "server.h"

int embd_conns_init(embd_conns *t, unsigned limit, unsigned surplus, atomic_long *open)
{
	t->open = open;
	t->n = limit + surplus;
	t->limit = limit;
	t->held = 0;
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

void embd_conns_notify(void *cls, struct MHD_Connection *c, void **socket_context,
                       enum MHD_ConnectionNotificationCode code)
{
	embd_conns *t = cls;
	pthread_mutex_lock(&t->lock);
	if (code == MHD_CONNECTION_NOTIFY_STARTED) {
		atomic_fetch_add(t->open, 1);
		*socket_context = NULL;
		const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
		for (unsigned i = 0; ci != NULL && i < t->n; i++) {
			struct conn_slot *s = &t->slots[i];
			if (!s->used) {
				s->used = 1;
				s->fd = ci->connect_fd;
				s->surplus = t->held >= t->limit;
				if (!s->surplus)
					t->held++;
				s->opened_ns = embd_now_ns();
				atomic_store(&s->since_ns, s->opened_ns);
				atomic_store(&s->state, CONN_IDLE);
				*socket_context = s;
				break;
			}
		}
	} else {
		atomic_fetch_sub(t->open, 1);
		/* libmicrohttpd closes the socket after this returns, so the sweep never sees a reused fd. */
		struct conn_slot *s = *socket_context;
		if (s != NULL) {
			if (!s->surplus)
				t->held--;
			s->used = 0;
			s->fd = -1;
			*socket_context = NULL;
		}
	}
	pthread_mutex_unlock(&t->lock);
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

void embd_conn_idle(struct conn_slot *slot, uint64_t now_ns)
{
	if (slot == NULL)
		return;
	atomic_store(&slot->since_ns, now_ns);
	atomic_store(&slot->state, CONN_IDLE);
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

unsigned embd_conns_sweep(embd_conns *t, uint64_t now_ns, uint64_t request_ns, uint64_t wait_ns,
                          atomic_ullong *timed_out_total)
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
	}
	pthread_mutex_unlock(&t->lock);
	return timed_out;
}
