/* Turns for large responses: a few are sent at once, the rest wait in line, their connections suspended. */
#ifndef EMBD_TURNS_H
#define EMBD_TURNS_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

struct req;

/*
 * Why: a client reading many large answers at once (a load generator, a data
 * loader with many connections) reads each socket's queue in turn, and a queue
 * holds what its TCP receive window allows. A connection whose window has not
 * grown yet (its first large answer, arriving while the client is already
 * saturated) gets ~93 KB a round where the others get ~1.5 MB: its answer took
 * seconds while the others took a tenth (measured with ss: its receive queue
 * pinned at 95,232 bytes, rwnd-limited 100% of the time, for 7 s). Sending a
 * few large answers at a time, first come first served, keeps the client's
 * rounds short, so a small window still drains fast and grows, and no answer
 * overtakes another by more than a few turns.
 *
 * A turn ends when its response is done, or when it has been held for
 * slice_ns (a slow reader keeps sending, but no longer holds up the line).
 */
#define EMBD_TURN_SLICE_NS 250000000u /* a quarter of a second: the sweep's tick */

struct turn {
	struct req *r; /* NULL: free */
	uint64_t since_ns;
};

typedef struct embd_turns {
	pthread_mutex_t lock;
	unsigned limit;          /* turns at once; 0: no turns, every answer sends at once */
	uint64_t min_bytes;      /* bodies this large take a turn */
	uint64_t slice_ns;       /* a turn held this long goes to the next in line */
	struct turn *held;       /* limit of them */
	struct req *head, *tail; /* waiting, first come first */
	int stopped;             /* stopping: nothing waits any more */
	atomic_ullong waited;    /* answers that waited for a turn (embd_large_responses_waited_total) */
	atomic_uint waiting;     /* answers waiting now */
} embd_turns;

/* 0, or -1 without memory. limit 0 turns them off. */
int embd_turns_init(embd_turns *t, unsigned limit, uint64_t min_bytes, uint64_t slice_ns);
void embd_turns_destroy(embd_turns *t);

/*
 * Whether r's answer of len bytes may be sent now (1), or waits for a turn (0):
 * then r's connection has been suspended and r is in line; when its turn
 * comes, the connection is resumed and the request handler called again, to
 * queue the answer it kept (r->turn_resp). Call from r's request handler.
 */
int embd_turns_take(embd_turns *t, struct req *r, uint64_t len);

/* r's answer is done (sent, or dropped): its turn, if it holds one, goes to the next in line. Any thread. */
void embd_turns_give(embd_turns *t, struct req *r);

/* Turns held longer than slice_ns go to the next in line; call every fraction of a second. */
void embd_turns_sweep(embd_turns *t, uint64_t now_ns);

/* From now on nothing waits: every answer in line is resumed, and later ones send at once. */
void embd_turns_stop(embd_turns *t);

#endif
