/* Turns for large responses: a few are sent at once, the rest wait in line (see turns.h for why). */
#include "turns.h"

#include <stdlib.h>

#include "server.h"

int embd_turns_init(embd_turns *t, unsigned limit, uint64_t min_bytes, uint64_t slice_ns)
{
	t->limit = limit;
	t->min_bytes = min_bytes;
	t->slice_ns = slice_ns;
	t->head = t->tail = NULL;
	t->stopped = 0;
	atomic_init(&t->waited, 0);
	atomic_init(&t->waiting, 0);
	t->held = limit != 0 ? calloc(limit, sizeof *t->held) : NULL;
	if (limit != 0 && t->held == NULL)
		return -1;
	pthread_mutex_init(&t->lock, NULL);
	return 0;
}

void embd_turns_destroy(embd_turns *t)
{
	pthread_mutex_destroy(&t->lock);
	free(t->held);
	t->held = NULL;
}

static struct turn *free_turn(embd_turns *t)
{
	for (unsigned i = 0; i < t->limit; i++)
		if (t->held[i].r == NULL)
			return &t->held[i];
	return NULL;
}

int embd_turns_take(embd_turns *t, struct req *r, uint64_t len)
{
	if (t->limit == 0 || len < t->min_bytes)
		return 1;
	pthread_mutex_lock(&t->lock);
	struct turn *h = t->stopped ? NULL : free_turn(t);
	if (h != NULL || t->stopped) {
		if (h != NULL) {
			h->r = r;
			h->since_ns = embd_now_ns();
			r->turn = h;
		}
		pthread_mutex_unlock(&t->lock);
		return 1;
	}
	/*
	 * Suspended before it is in line, under the lock: whoever takes it out
	 * of the line resumes it, and a resume must never come before its
	 * suspend.
	 */
	MHD_suspend_connection(r->conn);
	r->turn_next = NULL;
	if (t->tail != NULL)
		t->tail->turn_next = r;
	else
		t->head = r;
	t->tail = r;
	atomic_fetch_add(&t->waited, 1);
	atomic_fetch_add(&t->waiting, 1);
	pthread_mutex_unlock(&t->lock);
	return 0;
}

/* Give turn h (held, or just freed, under the lock) to the first in line, if any; returns it, to be resumed. */
static struct req *pass_on(embd_turns *t, struct turn *h, uint64_t now_ns)
{
	struct req *w = t->head;
	h->r = w;
	if (w == NULL)
		return NULL;
	t->head = w->turn_next;
	if (t->head == NULL)
		t->tail = NULL;
	w->turn_next = NULL;
	w->turn = h;
	h->since_ns = now_ns;
	atomic_fetch_sub(&t->waiting, 1);
	return w;
}

void embd_turns_give(embd_turns *t, struct req *r)
{
	if (t->limit == 0)
		return;
	pthread_mutex_lock(&t->lock);
	struct turn *h = r->turn;
	struct req *w = NULL;
	r->turn = NULL;
	if (h != NULL && h->r == r) { /* its turn may have been passed on already (sweep) */
		w = pass_on(t, h, embd_now_ns());
	} else if (h == NULL) {
		/* Still in line (its request ended without its turn): out of the line, so that none resumes it. */
		for (struct req **p = &t->head, *prev = NULL; *p != NULL; prev = *p, p = &(*p)->turn_next) {
			if (*p == r) {
				*p = r->turn_next;
				if (t->tail == r)
					t->tail = prev;
				r->turn_next = NULL;
				atomic_fetch_sub(&t->waiting, 1);
				break;
			}
		}
	}
	pthread_mutex_unlock(&t->lock);
	if (w != NULL)
		MHD_resume_connection(w->conn);
}

void embd_turns_sweep(embd_turns *t, uint64_t now_ns)
{
	if (t->limit == 0)
		return;
	for (;;) {
		struct req *w = NULL;
		pthread_mutex_lock(&t->lock);
		for (unsigned i = 0; i < t->limit && w == NULL; i++) {
			struct turn *h = &t->held[i];
			if (h->r != NULL && t->head != NULL && now_ns > h->since_ns &&
			    now_ns - h->since_ns > t->slice_ns) {
				h->r->turn = NULL; /* it goes on sending, without a turn */
				w = pass_on(t, h, now_ns);
			}
		}
		pthread_mutex_unlock(&t->lock);
		if (w == NULL)
			return;
		MHD_resume_connection(w->conn);
	}
}

void embd_turns_stop(embd_turns *t)
{
	if (t->limit == 0)
		return;
	pthread_mutex_lock(&t->lock);
	t->stopped = 1;
	struct req *w = t->head;
	t->head = t->tail = NULL;
	pthread_mutex_unlock(&t->lock);
	while (w != NULL) {
		struct req *next = w->turn_next;
		w->turn_next = NULL;
		atomic_fetch_sub(&t->waiting, 1);
		MHD_resume_connection(w->conn);
		w = next;
	}
}
