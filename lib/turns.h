/* Turns for large responses: a few are sent at once, the rest wait in line, first come first served. */
#ifndef EMBD_TURNS_H
#define EMBD_TURNS_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

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
 * A turn ends when its answer is done, or when it has been held for slice_ns
 * (a slow reader keeps sending, but no longer holds up the line).
 *
 * The module knows nothing of connections: a waiter is a record the caller
 * embeds in its own (the server's request), and the caller's suspend and
 * resume callbacks park and wake what waits (the server suspends and resumes
 * the libmicrohttpd connection).
 */
#define EMBD_TURN_SLICE_NS 250000000u /* a quarter of a second: the server's sweep tick */

struct embd_turn; /* one of the limit turns (turns.c) */

/*
 * One answer that takes a turn, embedded in the caller's record. The caller
 * sets arg (what suspend and resume are called with) before embd_turns_take;
 * next and turn belong to the turns and are read and written under their lock.
 */
typedef struct embd_turn_waiter {
	void *arg;
	struct embd_turn_waiter *next; /* the next in line */
	struct embd_turn *turn;        /* the turn it holds; NULL: none (in line, or sending turnless) */
} embd_turn_waiter;

/* Park (suspend) or wake (resume) the answer whose waiter has arg. */
typedef void (*embd_turn_fn)(void *arg);

typedef struct embd_turns {
	pthread_mutex_t lock;
	unsigned limit;                /* turns at once; 0: no turns, every answer sends at once */
	uint64_t min_bytes;            /* bodies this large take a turn */
	uint64_t slice_ns;             /* a turn held this long goes to the next in line */
	embd_turn_fn suspend, resume;  /* see embd_turns_init */
	struct embd_turn *held;        /* limit of them */
	embd_turn_waiter *head, *tail; /* waiting, first come first */
	int stopped;                   /* stopping: nothing waits any more */
	atomic_ullong waited;          /* answers that waited for a turn (embd_large_responses_waited_total) */
	atomic_uint waiting;           /* answers waiting now */
} embd_turns;

/*
 * limit turns at once (0 turns them off) for answers of min_bytes or more; a
 * turn held past slice_ns passes on at the next sweep. suspend is called under
 * the turns' lock, before its waiter is in line, so that no resume can come
 * before its suspend: it must not call back into the turns. resume is called
 * outside the lock, at most once per suspend, on the thread of the give,
 * sweep or stop that passed the turn. Returns 0, or -ENOMEM.
 */
int embd_turns_init(embd_turns *t, unsigned limit, uint64_t min_bytes, uint64_t slice_ns, embd_turn_fn suspend,
                    embd_turn_fn resume);
/* Call once no answer takes or holds a turn any more. */
void embd_turns_destroy(embd_turns *t);

/* Whether an answer of len bytes takes a turn (turns on, and len at least min_bytes). Thread-safe. */
int embd_turns_large(const embd_turns *t, uint64_t len);

/*
 * Whether w's answer of len bytes may be sent now (1), or waits for a turn
 * (0): then suspend(w->arg) has been called and w is in line; when its turn
 * comes, resume(w->arg) is called, and the answer may be sent. w (borrowed
 * until embd_turns_give) need only have arg set. Thread-safe.
 */
int embd_turns_take(embd_turns *t, embd_turn_waiter *w, uint64_t len);

/*
 * w's answer is done (sent, or dropped): its turn, if it holds one, goes to
 * the next in line (resumed); if w is still in line, it leaves the line and is
 * never resumed. Call once per take of a large answer. Thread-safe.
 */
void embd_turns_give(embd_turns *t, embd_turn_waiter *w);

/* Turns held longer than slice_ns at now_ns (embd_now_ns) go to the next in line. Thread-safe. */
void embd_turns_sweep(embd_turns *t, uint64_t now_ns);

/* From now on nothing waits: every answer in line is resumed, and later ones are sent at once. Thread-safe. */
void embd_turns_stop(embd_turns *t);

#endif
