/* Unit tests of generations: refcounts, the live gauge and the lock-free current pointer under concurrent swaps. */
#include "fixture.h"

#include <errno.h>
#include <pthread.h>

#include "gen.h"
#include "vocab.h"

static embd_gen *demo(uint64_t number, embd_gen_list *live)
{
	embd_matrix_spec spec = {0};
	embd_gen *g = NULL;
	embd_err e;
	assert_int_equal(embd_gen_open(&spec, number, live, &g, &e), 0);
	return g;
}

static void refcount_and_current(void **state)
{
	(void)state;
	embd_gen_list live;
	embd_gen_list_init(&live);
	embd_gen *a = demo(1, &live), *b = demo(2, &live);
	assert_int_equal(embd_gen_list_live(&live), 2);

	embd_gen_current cur;
	embd_gen_current_init(&cur, a);
	embd_gen *pinned = embd_gen_current_acquire(&cur); /* like an in-flight zero-copy response */
	assert_ptr_equal(pinned, a);
	assert_int_equal(embd_gen_refs(a), 2);

	embd_gen_current_swap(&cur, b);
	/* The old generation lives on while the response pins it... */
	assert_int_equal(embd_gen_list_live(&live), 2);
	assert_int_equal(embd_gen_refs(a), 1);
	assert_int_equal(embd_gen_number(pinned), 1);
	assert_int_equal(embd_gen_matrix(pinned)->rows, EMBD_DEMO_ROWS);
	embd_gen *now = embd_gen_current_acquire(&cur);
	assert_int_equal(embd_gen_number(now), 2);
	embd_gen_release(now);
	/* ...and is unmapped when the last one lets go. */
	embd_gen_release(pinned);
	assert_int_equal(embd_gen_list_live(&live), 1);
	embd_gen_current_destroy(&cur);
	assert_int_equal(embd_gen_list_live(&live), 0);
	embd_gen_release(NULL);
}

/* The list names every live generation, oldest first, with what it holds and its references, until it goes. */
static void list_stats(void **state)
{
	(void)state;
	embd_gen_list live;
	embd_gen_list_init(&live);
	embd_gen_stat st[4];
	assert_int_equal(embd_gen_list_stats(&live, st, 4), 0);
	embd_gen *a = demo(1, &live), *b = demo(2, &live), *c = demo(3, &live);
	const uint64_t rows = (uint64_t)EMBD_DEMO_ROWS * EMBD_DEMO_DIM * sizeof(float);
	assert_int_equal(embd_gen_bytes(a), rows);
	embd_gen_retain(b);
	assert_int_equal(embd_gen_list_stats(&live, st, 4), 3);
	for (int i = 0; i < 3; i++) {
		assert_int_equal(st[i].number, (uint64_t)i + 1);
		assert_int_equal(st[i].bytes, rows);
		assert_int_equal(st[i].refs, i == 1 ? 2 : 1);
	}
	/* The norms count once computed. */
	const float *n;
	embd_err e;
	assert_int_equal(embd_gen_norms(c, &n, &e), 0);
	assert_int_equal(embd_gen_bytes(c), rows + EMBD_DEMO_ROWS * sizeof(float));
	/* Leaving from the middle, the oldest and the newest keeps the order; cap limits what is written. */
	embd_gen_release(b);
	embd_gen_release(b);
	assert_int_equal(embd_gen_list_stats(&live, st, 1), 2);
	assert_int_equal(st[0].number, 1);
	embd_gen_release(a);
	assert_int_equal(embd_gen_list_stats(&live, st, 4), 1);
	assert_int_equal(st[0].number, 3);
	assert_int_equal(st[0].bytes, rows + EMBD_DEMO_ROWS * sizeof(float));
	embd_gen *d = demo(4, &live);
	assert_int_equal(embd_gen_list_stats(&live, st, 4), 2);
	assert_int_equal(st[1].number, 4);
	embd_gen_release(c);
	embd_gen_release(d);
	assert_int_equal(embd_gen_list_stats(&live, st, 4), 0);
	assert_int_equal(embd_gen_list_live(&live), 0);
	embd_gen_list_destroy(&live);
}

static void failed_open_writes_nothing(void **state)
{
	(void)state;
	embd_gen_list live;
	embd_gen_list_init(&live);
	embd_matrix_spec spec = {.path = "/nonexistent/embd/matrix.npy"};
	embd_gen *g = (embd_gen *)&live; /* a canary: a failed open must leave *out alone */
	embd_err e;
	assert_int_equal(embd_gen_open(&spec, 3, &live, &g, &e), -ENOENT);
	assert_ptr_equal(g, (embd_gen *)&live);
	assert_int_equal(embd_gen_list_live(&live), 0);
}

/*
 * Readers acquire, read the whole first row and release while a writer swaps
 * generations as fast as it can: a reader must never retain a generation
 * whose last reference is already gone (AddressSanitizer and ThreadSanitizer
 * see a use after free; the row check sees a reused mapping), every
 * generation is freed by the end, and the live gauge returns to 0.
 */
struct race {
	embd_gen_current *cur;
	embd_gen_list *live;
	atomic_int stop;
	atomic_long reads;
	atomic_long bad;
};

static void *reader(void *arg)
{
	struct race *r = arg;
	while (!atomic_load(&r->stop)) {
		embd_gen *g = embd_gen_current_acquire(r->cur);
		const embd_matrix_info *m = embd_gen_matrix(g);
		const float *row = (const float *)m->data + 5 * m->dim;
		for (size_t j = 0; j < m->dim; j++)
			if (row[j] != 5.0f + (float)j / 1000.0f)
				atomic_fetch_add(&r->bad, 1);
		if (embd_gen_refs(g) < 1)
			atomic_fetch_add(&r->bad, 1);
		embd_gen_release(g);
		atomic_fetch_add(&r->reads, 1);
	}
	return NULL;
}

/* /metrics and /v1/info read the list while generations come and go. */
static void *lister(void *arg)
{
	struct race *r = arg;
	while (!atomic_load(&r->stop)) {
		embd_gen_stat st[8];
		size_t n = embd_gen_list_stats(r->live, st, 8);
		for (size_t i = 0; i < n && i < 8; i++)
			if (st[i].refs < 1 || st[i].bytes != (uint64_t)EMBD_DEMO_ROWS * EMBD_DEMO_DIM * sizeof(float))
				atomic_fetch_add(&r->bad, 1);
	}
	return NULL;
}

struct swapper {
	embd_gen_current *cur;
	embd_gen_list *live;
	uint64_t first;
};

static void *swapper(void *arg)
{
	struct swapper *sw = arg;
	for (uint64_t n = sw->first; n < sw->first + 200; n++)
		embd_gen_current_swap(sw->cur, demo(n, sw->live));
	return NULL;
}

static void concurrent_swaps(void **state)
{
	(void)state;
	embd_gen_list live;
	embd_gen_list_init(&live);
	embd_gen_current cur;
	embd_gen_current_init(&cur, demo(1, &live));
	struct race r = {.cur = &cur, .live = &live};
	atomic_init(&r.stop, 0);
	atomic_init(&r.reads, 0);
	atomic_init(&r.bad, 0);
	pthread_t t[4], w;
	for (int i = 0; i < 3; i++)
		assert_int_equal(pthread_create(&t[i], NULL, reader, &r), 0);
	assert_int_equal(pthread_create(&t[3], NULL, lister, &r), 0);
	/* Two swappers at once: swaps are serialised, and each waits only for its own epoch's readers. */
	struct swapper sw = {&cur, &live, 201};
	assert_int_equal(pthread_create(&w, NULL, swapper, &sw), 0);
	for (uint64_t n = 2; n <= 200; n++)
		embd_gen_current_swap(&cur, demo(n, &live));
	pthread_join(w, NULL);
	atomic_store(&r.stop, 1);
	for (int i = 0; i < 4; i++)
		pthread_join(t[i], NULL);
	assert_int_equal(atomic_load(&r.bad), 0);
	assert_true(atomic_load(&r.reads) > 0);
	embd_gen *g = embd_gen_current_acquire(&cur);
	assert_true(embd_gen_number(g) == 200 || embd_gen_number(g) == 400); /* whichever swapper came last */
	embd_gen_release(g);
	assert_int_equal(embd_gen_list_live(&live), 1);
	embd_gen_current_destroy(&cur);
	assert_int_equal(embd_gen_list_live(&live), 0);
}

/* The generation owns the vocabulary: from a vocabulary file (its line count checked), or the file's own words. */
static void vocabulary(void **state)
{
	(void)state;
	float data[3 * 2] = {0, 1, 2, 3, 4, 5};
	unsigned char buf[512];
	size_t n = npy_header_v1(buf, "{'descr': '<f4', 'fortran_order': False, 'shape': (3, 2), }");
	memcpy(buf + n, data, sizeof data);
	char npy[64];
	snprintf(npy, sizeof npy, "%s", fixture_file(0, buf, n + sizeof data));
	char words[64];
	snprintf(words, sizeof words, "%s", fixture_file(1, "a\nb\nc\n", 6));
	embd_gen_list live;
	embd_gen_list_init(&live);
	embd_matrix_spec spec = {.path = npy, .vocab = words};
	embd_gen *g;
	embd_err e;
	assert_int_equal(embd_gen_open(&spec, 1, &live, &g, &e), 0);
	assert_non_null(embd_gen_vocab(g));
	assert_int_equal(embd_vocab_find(embd_gen_vocab(g), "c", 1), 2);
	embd_gen_release(g);
	assert_int_equal(embd_gen_list_live(&live), 0);

	/* Without one, none. */
	spec.vocab = "";
	assert_int_equal(embd_gen_open(&spec, 1, &live, &g, &e), 0);
	assert_null(embd_gen_vocab(g));
	embd_gen_release(g);

	/* A line count that is not the rows fails the generation, and leaves nothing alive. */
	snprintf(words, sizeof words, "%s", fixture_file(1, "a\nb\n", 4));
	spec.vocab = words;
	g = NULL;
	assert_int_equal(embd_gen_open(&spec, 1, &live, &g, &e), EMBD_EVOCAB);
	assert_null(g);
	assert_non_null(strstr(e.msg, "2 lines"));
	assert_int_equal(embd_gen_list_live(&live), 0);

	/* A text format carries its words: a vocabulary file besides is a configuration error. */
	char glove[64];
	snprintf(glove, sizeof glove, "%s", fixture_file(2, "x 1 2\ny 3 4\n", 12));
	spec = (embd_matrix_spec){.path = glove, .vocab = words};
	assert_int_equal(embd_gen_open(&spec, 1, &live, &g, &e), EMBD_ENOTAPPLICABLE);
	assert_non_null(strstr(e.msg, "a glove file names its rows itself"));
	spec.vocab = NULL;
	assert_int_equal(embd_gen_open(&spec, 1, &live, &g, &e), 0);
	assert_int_equal(embd_vocab_find(embd_gen_vocab(g), "y", 1), 1);
	embd_gen_release(g);
	unlink(npy);
	unlink(words);
	unlink(glove);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(refcount_and_current),
	    cmocka_unit_test(list_stats),
	    cmocka_unit_test(failed_open_writes_nothing),
	    cmocka_unit_test(concurrent_swaps),
	    cmocka_unit_test(vocabulary),
	};
	return cmocka_run_group_tests_name("gen", tests, NULL, NULL);
}
