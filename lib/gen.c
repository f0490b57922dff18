/* Generations: a loaded file and all that derives from it, refcounted as one; the lock-free current pointer. */
#include "gen.h"

#include <errno.h>
#include <sched.h>
#include <stdlib.h>

#include "pair.h"
#include "vecops.h"

struct embd_gen {
	atomic_long refs;
	embd_gen_list *list;     /* borrowed; may be NULL */
	embd_gen *older, *newer; /* in list, under its lock */
	uint64_t number;
	embd_matrix *matrix; /* owned */
	embd_vocab *vocab;   /* owned; NULL without one */
	/* Row norms for cosine similarity: computed once, on first use (embd_gen_norms), then read-only. */
	pthread_mutex_t norms_lock;
	_Atomic(float *) norms;
};

void embd_gen_list_init(embd_gen_list *l)
{
	pthread_mutex_init(&l->lock, NULL);
	l->oldest = l->newest = NULL;
	atomic_init(&l->live, 0);
}

void embd_gen_list_destroy(embd_gen_list *l)
{
	pthread_mutex_destroy(&l->lock);
}

long embd_gen_list_live(embd_gen_list *l)
{
	return atomic_load(&l->live);
}

size_t embd_gen_list_stats(embd_gen_list *l, embd_gen_stat *out, size_t cap)
{
	size_t n = 0;
	pthread_mutex_lock(&l->lock);
	/* A generation whose last reference has gone waits for this lock to leave the list: it is still whole. */
	for (embd_gen *g = l->oldest; g != NULL; g = g->newer) {
		long refs = atomic_load(&g->refs);
		if (refs == 0)
			continue;
		if (n < cap)
			out[n] = (embd_gen_stat){g->number, embd_gen_bytes(g), refs};
		n++;
	}
	pthread_mutex_unlock(&l->lock);
	return n;
}

int embd_gen_open(const embd_matrix_spec *spec, uint64_t number, embd_gen_list *list, embd_gen **out, embd_err *e)
{
	embd_gen *g = calloc(1, sizeof *g);
	if (g == NULL)
		return embd_err_set(e, -ENOMEM, "out of memory");
	/*
	 * A vocabulary file and its matrix are opened under the pair's shared
	 * lock (pair.h), so that they are never the halves of two converts.
	 */
	int lock = spec->vocab != NULL && spec->vocab[0] != '\0' && spec->path != NULL && spec->path[0] != '\0'
	               ? embd_pair_lock(spec->path, 0)
	               : -1;
	int rc = embd_matrix_open(spec, &g->matrix, e);
	if (rc != 0) {
		embd_pair_unlock(lock);
		free(g);
		return rc;
	}
	/* The vocabulary comes with the file (GloVe, word2vec) or from spec->vocab, never from both (embd_matrix_open
	 * refuses a vocabulary file for a format that carries its words; this holds whatever a format row says). */
	g->vocab = embd_matrix_take_vocab(g->matrix);
	if (spec->vocab != NULL && spec->vocab[0] != '\0') {
		const embd_matrix_info *i = embd_matrix_info_get(g->matrix);
		if (g->vocab != NULL)
			rc = embd_err_set(e, EMBD_ENOTAPPLICABLE,
			                  "%s: a %s file names its rows itself; a vocabulary file (%s) is for npy, "
			                  "safetensors and raw matrices",
			                  i->source, embd_format_name(i->format), spec->vocab);
		else
			rc = embd_vocab_open(spec->vocab, i->rows, &g->vocab, e);
		if (rc == 0) /* under the pair's lock still: these two files, as they were opened */
			rc = embd_pair_check(spec->path, spec->vocab, e);
		if (rc != 0) {
			embd_pair_unlock(lock);
			embd_vocab_free(g->vocab);
			embd_matrix_close(g->matrix);
			free(g);
			return rc;
		}
	}
	embd_pair_unlock(lock);
	atomic_init(&g->refs, 1);
	pthread_mutex_init(&g->norms_lock, NULL);
	atomic_init(&g->norms, NULL);
	g->number = number;
	g->list = list;
	if (list != NULL) {
		atomic_fetch_add(&list->live, 1);
		pthread_mutex_lock(&list->lock);
		g->older = list->newest;
		if (list->newest != NULL)
			list->newest->newer = g;
		else
			list->oldest = g;
		list->newest = g;
		pthread_mutex_unlock(&list->lock);
	}
	*out = g;
	return 0;
}

embd_gen *embd_gen_retain(embd_gen *g)
{
	if (g == NULL)
		return NULL;
	atomic_fetch_add_explicit(&g->refs, 1, memory_order_relaxed);
	return g;
}

void embd_gen_release(embd_gen *g)
{
	if (g == NULL)
		return;
	if (atomic_fetch_sub_explicit(&g->refs, 1, memory_order_acq_rel) != 1)
		return;
	embd_gen_list *list = g->list;
	if (list != NULL) {
		/* Out of the list before anything is freed: embd_gen_list_stats reads it under this lock. */
		pthread_mutex_lock(&list->lock);
		if (g->older != NULL)
			g->older->newer = g->newer;
		else
			list->oldest = g->newer;
		if (g->newer != NULL)
			g->newer->older = g->older;
		else
			list->newest = g->older;
		pthread_mutex_unlock(&list->lock);
	}
	embd_vocab_free(g->vocab);
	free(atomic_load(&g->norms));
	pthread_mutex_destroy(&g->norms_lock);
	embd_matrix_close(g->matrix);
	free(g);
	if (list != NULL)
		atomic_fetch_sub(&list->live, 1);
}

uint64_t embd_gen_number(const embd_gen *g)
{
	return g != NULL ? g->number : 0;
}

const embd_matrix_info *embd_gen_matrix(const embd_gen *g)
{
	return embd_matrix_info_get(g->matrix);
}

const embd_vocab *embd_gen_vocab(const embd_gen *g)
{
	return g->vocab;
}

int embd_gen_norms(embd_gen *g, const float **out, embd_err *e)
{
	float *n = atomic_load_explicit(&g->norms, memory_order_acquire);
	if (n == NULL) {
		pthread_mutex_lock(&g->norms_lock);
		n = atomic_load_explicit(&g->norms, memory_order_relaxed);
		if (n == NULL) {
			const embd_matrix_info *m = embd_matrix_info_get(g->matrix);
			n = m->rows <= SIZE_MAX / sizeof *n ? malloc((size_t)m->rows * sizeof *n) : NULL;
			if (n != NULL) {
				embd_vecops_norms(m, 0, m->rows, n);
				atomic_store_explicit(&g->norms, n, memory_order_release);
			}
		}
		pthread_mutex_unlock(&g->norms_lock);
		if (n == NULL)
			return embd_err_set(e, -ENOMEM, "out of memory for the row norms");
	}
	*out = n;
	return 0;
}

size_t embd_gen_norms_bytes(const embd_gen *g)
{
	return atomic_load(&((embd_gen *)g)->norms) != NULL
	           ? (size_t)embd_matrix_info_get(g->matrix)->rows * sizeof(float)
	           : 0;
}

uint64_t embd_gen_bytes(const embd_gen *g)
{
	const embd_matrix_info *m = embd_matrix_info_get(g->matrix);
	/* A parsed text file's rows are in the heap (heap_bytes); a mapped file's are its mapping (the whole file). */
	uint64_t rows = m->heap_bytes != 0 ? m->heap_bytes : m->file_bytes;
	return rows + (g->vocab != NULL ? embd_vocab_bytes(g->vocab) : 0) + embd_gen_norms_bytes(g);
}

long embd_gen_refs(const embd_gen *g)
{
	return atomic_load(&((embd_gen *)g)->refs);
}

void embd_gen_current_init(embd_gen_current *s, embd_gen *g)
{
	atomic_init(&s->current, g);
	atomic_init(&s->epoch, 0);
	atomic_init(&s->readers[0], 0);
	atomic_init(&s->readers[1], 0);
	pthread_mutex_init(&s->swap_lock, NULL);
}

embd_gen *embd_gen_current_acquire(embd_gen_current *s)
{
	/*
	 * All sequentially consistent: a swap stores the pointer, then the epoch,
	 * then reads the old epoch's counter; a reader increments its counter,
	 * then re-reads the epoch, then loads the pointer. Either the swap sees
	 * this reader's increment (and waits for it), or the reader sees the new
	 * epoch (and retries under it, where it loads the new pointer).
	 */
	for (;;) {
		unsigned ep = atomic_load(&s->epoch);
		atomic_long *count = &s->readers[ep & 1];
		atomic_fetch_add(count, 1);
		if (atomic_load(&s->epoch) == ep) {
			embd_gen *g = embd_gen_retain(atomic_load(&s->current));
			atomic_fetch_sub(count, 1);
			return g;
		}
		atomic_fetch_sub(count, 1);
	}
}

void embd_gen_current_swap(embd_gen_current *s, embd_gen *g)
{
	pthread_mutex_lock(&s->swap_lock);
	embd_gen *old = atomic_exchange(&s->current, g);
	unsigned ep = atomic_fetch_add(&s->epoch, 1);
	/* Readers announced under the old epoch may have loaded old: let them take their reference first. */
	while (atomic_load(&s->readers[ep & 1]) != 0)
		sched_yield();
	pthread_mutex_unlock(&s->swap_lock);
	embd_gen_release(old);
}

void embd_gen_current_destroy(embd_gen_current *s)
{
	embd_gen_release(atomic_load(&s->current));
	atomic_store(&s->current, NULL);
	pthread_mutex_destroy(&s->swap_lock);
}
