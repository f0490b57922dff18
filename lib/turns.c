/* Turns for large responses: a few are sent at once, the rest wait in line (see turns.h for why). */
#include "turns.h"

#include <errno.h>
#include <stdlib.h>

#include "clock.h"

struct embd_turn {
	embd_turn_waiter *w; /* NULL: free */
	uint64_t since_ns;
};

int embd_turns_init(embd_turns *t, unsigned limit, uint64_t min_bytes, uint64_t slice_ns, embd_turn_fn suspend,
                    embd_turn_fn resume)
{
	t->limit = limit;
	t->min_bytes = min_bytes;
	t->slice_ns = slice_ns;
	t->suspend = suspend;
	t->resume = resume;
	t->head = t->tail = NULL;
	t->stopped = 0;
	atomic_init(&t->waited, 0);
	atomic_init(&t->waiting, 0);
	t->held = limit != 0 ? calloc(limit, sizeof *t->held) : NULL;
	if (limit != 0 && t->held == NULL)
		return -ENOMEM;
	pthread_mutex_init(&t->lock, NULL);
	return 0;
}

void embd_turns_destroy(embd_turns *t)
{
	pthread_mutex_destroy(&t->lock);
	free(t->held);
	t->held = NULL;
}

int embd_turns_large(const embd_turns *t, uint64_t len)
{
	return t->limit != 0 && len >= t->min_bytes;
}

static struct embd_turn *free_turn(embd_turns *t)
{
	for (unsigned i = 0; i < t->limit; i++)
		if (t->held[i].w == NULL)
			return &t->held[i];
	return NULL;
}

int embd_turns_take(embd_turns *t, embd_turn_waiter *w, uint64_t len)
{
	if (!embd_turns_large(t, len))
		return 1;
	pthread_mutex_lock(&t->lock);
	w->next = NULL;
	w->turn = NULL;
	struct embd_turn *h = t->stopped ? NULL : free_turn(t);
	if (h != NULL || t->stopped) {
		if (h != NULL) {
			h->w = w;
			h->since_ns = embd_now_ns();
			w->turn = h;
		}
		pthread_mutex_unlock(&t->lock);
		return 1;
	}
	/*
	 * Suspended before it is in line, under the lock: whoever takes it out
	 * of the line resumes it, and a resume must never come before its
	 * suspend.
	 */
	t->suspend(w->arg);
	if (t->tail != NULL)
		t->tail->next = w;
	else
		t->head = w;
	t->tail = w;
	atomic_fetch_add(&t->waited, 1);
	atomic_fetch_add(&t->waiting, 1);
	pthread_mutex_unlock(&t->lock);
	return 0;
}

/* Give turn h (held, or just freed, under the lock) to the first in line, if any; returns it, to be resumed. */
static embd_turn_waiter *pass_on(embd_turns *t, struct embd_turn *h, uint64_t now_ns)
{
	embd_turn_waiter *w = t->head;
	h->w = w;
	if (w == NULL)
		return NULL;
	t->head = w->next;
	if (t->head == NULL)
		t->tail = NULL;
	w->next = NULL;
	w->turn = h;
	h->since_ns = now_ns;
	atomic_fetch_sub(&t->waiting, 1);
	return w;
}

void embd_turns_give(embd_turns *t, embd_turn_waiter *w)
{
	if (t->limit == 0)
		return;
	pthread_mutex_lock(&t->lock);
	struct embd_turn *h = w->turn;
	embd_turn_waiter *next = NULL;
	w->turn = NULL;
	if (h != NULL && h->w == w) { /* its turn may have been passed on already (sweep) */
		next = pass_on(t, h, embd_now_ns());
	} else if (h == NULL) {
		/* Still in line (its answer was dropped before its turn): out of the line, so that none resumes it. */
		for (embd_turn_waiter **p = &t->head, *prev = NULL; *p != NULL; prev = *p, p = &(*p)->next) {
			if (*p == w) {
				*p = w->next;
				if (t->tail == w)
					t->tail = prev;
				w->next = NULL;
				atomic_fetch_sub(&t->waiting, 1);
				break;
			}
		}
	}
	pthread_mutex_unlock(&t->lock);
	if (next != NULL)
		t->resume(next->arg);
}

void embd_turns_sweep(embd_turns *t, uint64_t now_ns)
{
	if (t->limit == 0)
		return;
	for (;;) {
		embd_turn_waiter *w = NULL;
		pthread_mutex_lock(&t->lock);
		for (unsigned i = 0; i < t->limit && w == NULL; i++) {
			struct embd_turn *h = &t->held[i];
			if (h->w != NULL && t->head != NULL && now_ns > h->since_ns &&
			    now_ns - h->since_ns > t->slice_ns) {
				h->w->turn = NULL; /* it goes on sending, without a turn */
				w = pass_on(t, h, now_ns);
			}
		}
		pthread_mutex_unlock(&t->lock);
		if (w == NULL)
			return;
		t->resume(w->arg);
	}
}

void embd_turns_stop(embd_turns *t)
{
	if (t->limit == 0)
		return;
	pthread_mutex_lock(&t->lock);
	t->stopped = 1;
	embd_turn_waiter *w = t->head;
	t->head = t->tail = NULL;
	pthread_mutex_unlock(&t->lock);
	while (w != NULL) {
		/* Read before the resume: once resumed, w's answer may end and its record go. */
		embd_turn_waiter *next = w->next;
		w->next = NULL;
		atomic_fetch_sub(&t->waiting, 1);
		t->resume(w->arg);
		w = next;
	}
}
