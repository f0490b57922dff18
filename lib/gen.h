/*
 * Generations (design §7): everything derived from one loaded file, owned
 * together and refcounted as one, so that a reload swaps it all at once and
 * a response pins it all at once. Today a generation owns its matrix (the
 * mapping, and through it the format that read it), the vocabulary and the
 * per-row norms; a shard's row range belongs here too when it comes.
 */
#ifndef EMBD_GEN_H
#define EMBD_GEN_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include "error.h"
#include "matrix.h"

typedef struct embd_gen embd_gen;

/*
 * The generations alive (design §7: old ones are bounded and visible): every
 * generation opened with the list is in it, oldest first, from its open until
 * its last reference goes. A reload reads it to keep their number within a
 * limit; /metrics and /v1/info read what each holds.
 */
typedef struct embd_gen_list {
	pthread_mutex_t lock; /* taken to join, to leave and to read the list; never by a request's acquire */
	embd_gen *oldest, *newest;
	atomic_long live; /* generations alive: -1 only once the last one's memory is freed */
} embd_gen_list;

void embd_gen_list_init(embd_gen_list *l);
/* Call once no generation of the list is alive. */
void embd_gen_list_destroy(embd_gen_list *l);
/* Generations alive now. Thread-safe. */
long embd_gen_list_live(embd_gen_list *l);

/* One live generation as embd_gen_list_stats sees it. */
typedef struct embd_gen_stat {
	uint64_t number;
	uint64_t bytes; /* embd_gen_bytes */
	long refs;      /* its references: the requests (and responses) pinning it, and the server's if current */
} embd_gen_stat;

/*
 * What each live generation holds, oldest first: up to cap entries in out.
 * Returns how many are alive (may be more than cap). Thread-safe (takes the
 * list's lock, which the last release of a generation takes too).
 */
size_t embd_gen_list_stats(embd_gen_list *l, embd_gen_stat *out, size_t cap);

/*
 * Open spec's matrix, and its vocabulary (the words a GloVe or word2vec file
 * carries, or spec->vocab's file, whose line count must equal the rows; both
 * at once is EMBD_ECONFIG), as generation number `number`. list (optional,
 * borrowed for the generation's life) is joined here and left when the last
 * reference goes. On success *out is new with one reference; on failure *out
 * is not written and e says why (errors of embd_matrix_open, of
 * embd_vocab_open, or -ENOMEM). With a vocabulary file, the two are opened
 * under the pair's shared lock (pair.h): this waits while a convert renames a
 * new pair into place. Thread-safe.
 */
int embd_gen_open(const embd_matrix_spec *spec, uint64_t number, embd_gen_list *list, embd_gen **out, embd_err *e);

/* Another reference; returns g (NULL: NULL). Thread-safe (atomic). */
embd_gen *embd_gen_retain(embd_gen *g);

/* Drop a reference; the last one closes the matrix and frees. NULL is a no-op. Thread-safe. */
void embd_gen_release(embd_gen *g);

/* The generation's number (0 for NULL), and its matrix's facts; borrowed, valid while a reference is held. */
uint64_t embd_gen_number(const embd_gen *g);
const embd_matrix_info *embd_gen_matrix(const embd_gen *g);
/* The vocabulary naming the rows, or NULL; borrowed, finished (thread-safe to read) while a reference is held. */
const embd_vocab *embd_gen_vocab(const embd_gen *g);

/*
 * The L2 norm of every row (embd_vecops_norms), computed on the first call
 * (one pass over the matrix: ~35 ms for 400,000 x 100 f32) and kept, one
 * float per row, for the generation's life; later calls return at once. The
 * norms are never a normalised copy of the matrix. *out is borrowed while a
 * reference is held. Errors: -ENOMEM. Thread-safe: concurrent first callers
 * wait for one computation.
 */
int embd_gen_norms(embd_gen *g, const float **out, embd_err *e);

/* Bytes the norms hold: rows x 4 once computed, else 0. Thread-safe. */
size_t embd_gen_norms_bytes(const embd_gen *g);

/*
 * Bytes the generation holds: its rows (the mapping of a mapped file, or the
 * heap a text format was parsed into), its vocabulary and hash table, and its
 * norms once computed. Thread-safe.
 */
uint64_t embd_gen_bytes(const embd_gen *g);

/* Current reference count (for tests; racy by nature). */
long embd_gen_refs(const embd_gen *g);

/*
 * The server's current generation, readable without a lock: acquire() is
 * what every request does, so it takes no mutex and never waits for a swap.
 * A reader announces itself in one of two counters (chosen by the holder's
 * epoch), loads the pointer and retains it; swap() installs the new pointer,
 * flips the epoch and waits (briefly: a load and an increment) until the
 * readers announced under the old epoch are gone before it drops the holder's
 * reference to the old generation, so a reader never retains a freed one.
 * Readers arriving meanwhile use the other counter and see the new pointer,
 * so a stream of readers cannot starve a swap.
 */
typedef struct embd_gen_current {
	_Atomic(embd_gen *) current;
	atomic_uint epoch;
	atomic_long readers[2];
	pthread_mutex_t swap_lock; /* swaps are serialised; readers never take it */
} embd_gen_current;

/* Steals g's reference. g may be NULL: none is current until the first swap (a daemon still loading its table). */
void embd_gen_current_init(embd_gen_current *s, embd_gen *g);
/* A new reference to the current generation, or NULL while none is. Lock-free; thread-safe against swap(). */
embd_gen *embd_gen_current_acquire(embd_gen_current *s);
/* Make g current (steals its reference) and drop the holder's reference to the old one. Thread-safe. */
void embd_gen_current_swap(embd_gen_current *s, embd_gen *g);
/* Drop the holder's reference; no acquire() may run concurrently or after. */
void embd_gen_current_destroy(embd_gen_current *s);

#endif
