/* Unit tests of memory accounting: limits, the budget, block sizes, the pool, ownership and concurrency. */
#include "fixture.h"

#include <pthread.h>

#include "acct.h"

#define HDR  ((uint64_t)EMBD_ACCT_HDR_BYTES)
#define KiB  ((size_t)1 << 10)
#define MiB  ((size_t)1 << 20)
#define GiB  ((size_t)1 << 30)
#define NCLS ((30 - 12) * 4 + 1) /* written out: four classes per power of two, 4 KiB to 1 GiB */

/*
 * The class payloads, written out independently of lib/acct.c: 1, 1.25, 1.5
 * and 1.75 x 2^k for 4 KiB <= 2^k < 1 GiB, then 1 GiB itself.
 */
static size_t classes[NCLS];

static int make_classes(void **state)
{
	(void)state;
	int i = 0;
	for (int k = 12; k < 30; k++)
		for (size_t m = 4; m < 8; m++)
			classes[i++] = m << (k - 2);
	classes[i++] = GiB;
	assert_int_equal(i, NCLS);
	return 0;
}

/* What a buffer of n bytes must charge: its header and the smallest class that holds n (plain size outside). */
/* What glibc's malloc(x) takes, written out here independently of lib: x + 8 rounded to 16 (at least 32), or pages from
 * 128 KiB. */
static uint64_t chunk(uint64_t x)
{
	if (x >= 128 * 1024)
		return (x + 16 + 4095) / 4096 * 4096;
	uint64_t c = (x + 8 + 15) / 16 * 16;
	return c < 32 ? 32 : c;
}

static uint64_t expected_block(size_t n)
{
	if (n >= classes[0] && n <= classes[NCLS - 1])
		for (int i = 0; i < NCLS; i++)
			if (classes[i] >= n)
				return chunk(HDR + classes[i]);
	return chunk(HDR + n);
}

static void charges_and_limits(void **state)
{
	(void)state;
	embd_budget b;
	embd_budget_init(&b, 1000);
	embd_acct a;
	embd_acct_init(&a, &b, NULL, 600);
	assert_int_equal(embd_acct_charge(&a, 500), 0);
	assert_int_equal(embd_acct_charge(&a, 101), EMBD_ETOOBIG);
	assert_int_equal(a.need, 601);
	assert_int_equal(a.held, 500);
	assert_int_equal(embd_budget_inflight(&b), 500);

	embd_acct other;
	embd_acct_init(&other, &b, NULL, 0);
	assert_int_equal(embd_acct_charge(&other, 501), EMBD_EBUSY); /* 500 + 501 > 1000 */
	assert_int_equal(embd_budget_inflight(&b), 500);             /* nothing charged */
	assert_int_equal(embd_acct_charge(&other, 500), 0);
	assert_int_equal(embd_budget_peak(&b), 1000);

	embd_acct_uncharge(&a, 200);
	assert_int_equal(a.peak, 500);
	assert_int_equal(embd_acct_close(&a), 300);
	assert_int_equal(embd_acct_close(&other), 500);
	assert_int_equal(embd_budget_inflight(&b), 0);
	assert_int_equal(embd_budget_peak(&b), 1000);
	assert_int_equal(embd_acct_charge(&other, UINT64_MAX), EMBD_EBUSY);
}

static void the_reserve_is_only_for_reserved_charges(void **state)
{
	(void)state;
	embd_budget b;
	embd_budget_init(&b, 1000);
	embd_budget_set_reserve(&b, 100);
	embd_acct a, rec;
	embd_acct_init(&a, &b, NULL, 0);
	embd_acct_init(&rec, &b, NULL, 0);
	assert_int_equal(embd_acct_charge(&a, 901), EMBD_EBUSY); /* ordinary charges stop at 900 */
	assert_int_equal(embd_acct_charge(&a, 900), 0);
	assert_int_equal(embd_acct_charge(&a, 1), EMBD_EBUSY);
	assert_int_equal(embd_acct_charge_reserved(&rec, 100), 0);        /* records may use the last 100 */
	assert_int_equal(embd_acct_charge_reserved(&rec, 1), EMBD_EBUSY); /* but never pass the limit */
	assert_int_equal(embd_budget_peak(&b), 1000);
	assert_int_equal(embd_acct_close(&a), 900);
	assert_int_equal(embd_acct_close(&rec), 100);
	embd_budget_set_reserve(&b, 1000); /* a reserve as big as the limit would leave nothing: ignored */
	assert_int_equal(embd_acct_charge(&a, 1000), 0);
	assert_int_equal(embd_acct_close(&a), 1000);
}

/* The same rule for buffers: embd_acct_alloc_reserved may use the reserve, embd_acct_alloc may not. */
static void alloc_reserved_may_use_the_reserve(void **state)
{
	(void)state;
	embd_budget b;
	embd_budget_init(&b, 100000);
	embd_budget_set_reserve(&b, 30000);
	embd_pool p;
	embd_pool_init(&p, 0);
	embd_acct a;
	embd_acct_init(&a, &b, &p, 0);
	void *x, *y = NULL, *z;
	assert_int_equal(embd_acct_alloc(&a, 56000, &x), 0); /* 56 KiB + header */
	assert_int_equal(a.held, chunk(HDR + 56 * KiB));
	assert_int_equal(embd_acct_alloc(&a, 20000, &y), EMBD_EBUSY); /* 20 KiB more would pass 70000 */
	assert_null(y);
	assert_int_equal(a.need, chunk(HDR + 56 * KiB) + chunk(HDR + 20 * KiB));
	assert_int_equal(embd_acct_alloc_reserved(&a, 20000, &y), 0); /* 78 KB, inside the reserve */
	memset(y, 1, 20000);
	assert_int_equal(embd_budget_inflight(&b), chunk(HDR + 56 * KiB) + chunk(HDR + 20 * KiB));
	assert_int_equal(embd_acct_alloc_reserved(&a, 30000, &z), EMBD_EBUSY); /* never past the limit */
	assert_int_equal(embd_budget_inflight(&b), chunk(HDR + 56 * KiB) + chunk(HDR + 20 * KiB));
	embd_acct_free(&a, y);
	embd_acct_free(&a, x);
	assert_int_equal(embd_acct_close(&a), 0);
	assert_int_equal(embd_budget_inflight(&b), 0);
	assert_int_equal(atomic_load(&p.allocated_bytes), 0);
	embd_pool_destroy(&p);
}

/* Allocate n bytes, check the charge and the gauge are exactly its block, free it. */
static void charges_exactly(embd_acct *a, embd_pool *p, size_t n, uint64_t want)
{
	uint64_t held = a->held, out = atomic_load(&p->allocated_bytes);
	void *x;
	assert_int_equal(embd_acct_alloc(a, n, &x), 0);
	if (n > 0) {
		((char *)x)[0] = 1; /* writable at both ends */
		((char *)x)[n - 1] = 1;
	}
	if (a->held - held != want)
		fail_msg("an ask of %zu bytes charged %llu, not its block of %llu", n,
		         (unsigned long long)(a->held - held), (unsigned long long)want);
	assert_int_equal(atomic_load(&p->allocated_bytes) - out, want);
	assert_int_equal(embd_budget_inflight(a->budget), a->held);
	embd_acct_free(a, x);
	assert_int_equal(a->held, held);
	assert_int_equal(atomic_load(&p->allocated_bytes), out); /* keep_bytes 0: back to the OS */
}

/* An ask is charged its block, header included: never just the asked size, and 2^k is not doubled. */
static void asks_charge_their_whole_block(void **state)
{
	(void)state;
	embd_budget b;
	embd_budget_init(&b, 0);
	embd_pool p;
	embd_pool_init(&p, 0);
	embd_acct a;
	embd_acct_init(&a, &b, &p, 0);
	/* Tiny asks: plain malloc, charged as the heap holds header + n (a glibc chunk). */
	charges_exactly(&a, &p, 0, chunk(HDR));
	charges_exactly(&a, &p, 1, chunk(HDR + 1));
	charges_exactly(&a, &p, 4095, chunk(HDR + 4095));
	/* The figures, spelled out. */
	charges_exactly(&a, &p, 4096, chunk(HDR + 4096));
	charges_exactly(&a, &p, 4097, chunk(HDR + 5 * KiB));
	charges_exactly(&a, &p, 16 * MiB, chunk(HDR + 16 * MiB));
	charges_exactly(&a, &p, 16 * MiB + 1, chunk(HDR + 20 * MiB));
	charges_exactly(&a, &p, 16 * MiB - 16, chunk(HDR + 16 * MiB));
	charges_exactly(&a, &p, 300000, chunk(HDR + 320 * KiB));
	/* Every power of two from 4 KiB to 64 MiB, one byte more, 16 bytes less. */
	for (int k = 12; k <= 26; k++) {
		size_t n = (size_t)1 << k;
		charges_exactly(&a, &p, n, chunk(HDR + n));
		charges_exactly(&a, &p, n + 1, chunk(HDR + n + n / 4));
		charges_exactly(&a, &p, n - 16, k == 12 ? chunk(HDR + n - 16) : chunk(HDR + n));
		assert_int_equal(embd_acct_block_bytes(n), chunk(HDR + n));
	}
	assert_int_equal(embd_acct_close(&a), 0);
	assert_int_equal(embd_budget_inflight(&b), 0);
	embd_pool_destroy(&p);
}

/* Each class's largest fitting ask takes that class; one byte more takes the next; waste stays under 25%. */
static void pool_class_boundaries(void **state)
{
	(void)state;
	embd_budget b;
	embd_budget_init(&b, 0);
	embd_pool p;
	embd_pool_init(&p, 0);
	embd_acct a;
	embd_acct_init(&a, &b, &p, 0);
	for (int i = 0; i < NCLS; i++) {
		size_t c = classes[i];
		uint64_t next =
		    i + 1 < NCLS ? chunk(HDR + classes[i + 1]) : chunk(HDR + c + 1); /* above 1 GiB: plain malloc */
		assert_int_equal(embd_acct_block_bytes(c), chunk(HDR + c));
		assert_int_equal(embd_acct_block_bytes(c + 1), next);
		assert_int_equal(embd_acct_block_bytes(c - 1), i == 0 ? chunk(HDR + c - 1) : chunk(HDR + c));
		assert_true((embd_acct_block_bytes(c + 1) - HDR - 4096) * 4 <= (uint64_t)(c + 1) * 5);
		if (c <= 64 * MiB) { /* real blocks too, short of allocating a gigabyte */
			charges_exactly(&a, &p, c, chunk(HDR + c));
			charges_exactly(&a, &p, c + 1, next);
		}
	}
	/* Every ask in the class range, sampled: the smallest class that fits, at most 25% over. */
	for (size_t n = 4096; n <= GiB; n += n / 7 + 1) {
		assert_int_equal(embd_acct_block_bytes(n), expected_block(n));
		assert_true((embd_acct_block_bytes(n) - HDR - 4096) * 4 <= (uint64_t)n * 5);
	}
	/* Huge asks: plain malloc of exactly their size; impossible ones cannot be charged. */
	assert_int_equal(embd_acct_block_bytes(GiB + 1), chunk(HDR + GiB + 1));
	assert_int_equal(embd_acct_block_bytes(3 * GiB), chunk(HDR + 3 * GiB));
	assert_int_equal(embd_acct_block_bytes(SIZE_MAX - HDR), SIZE_MAX);
	assert_int_equal(embd_acct_block_bytes(SIZE_MAX), UINT64_MAX);
	void *x = NULL;
	assert_int_equal(embd_acct_alloc(&a, SIZE_MAX, &x), EMBD_ETOOBIG); /* even with no limits */
	assert_null(x);
	assert_int_equal(a.need, UINT64_MAX);
	assert_int_equal(a.held, 0);
	assert_int_equal(embd_acct_close(&a), 0);
	embd_pool_destroy(&p);
}

/* The case: a 16 MiB body used to take (and hold, uncharged) a 32 MiB block. */
static void a_16_mib_body_holds_under_17_mib(void **state)
{
	(void)state;
	embd_budget b;
	embd_budget_init(&b, 0);
	embd_pool p;
	embd_pool_init(&p, 128 * MiB);
	embd_acct a;
	embd_acct_init(&a, &b, &p, 0);
	void *body;
	assert_int_equal(embd_acct_alloc(&a, 16 * MiB, &body), 0);
	assert_int_equal(a.held, chunk(HDR + 16 * MiB));
	assert_true(atomic_load(&p.allocated_bytes) < 17 * MiB);
	assert_int_equal(atomic_load(&p.allocated_bytes), a.held); /* charged = held: the gauge tells the truth */
	embd_acct_free(&a, body);
	assert_int_equal(p.idle_bytes, chunk(HDR + 16 * MiB));
	assert_int_equal(embd_acct_close(&a), 0);
	embd_pool_destroy(&p);
	assert_int_equal(atomic_load(&p.allocated_bytes), 0);
}

/* The case: a 128 KiB id body plus an 8 MiB gather left embd_pool_bytes at 16.25 MiB. */
static void ids_and_gather_hold_under_9_mib(void **state)
{
	(void)state;
	embd_budget b;
	embd_budget_init(&b, 0);
	embd_pool p;
	embd_pool_init(&p, 128 * MiB);
	embd_acct a;
	embd_acct_init(&a, &b, &p, 0);
	void *ids, *rows;
	assert_int_equal(embd_acct_alloc(&a, 128 * KiB, &ids), 0);
	assert_int_equal(embd_acct_alloc(&a, 8 * MiB, &rows), 0);
	assert_int_equal(a.held, chunk(HDR + 128 * KiB) + chunk(HDR + 8 * MiB));
	assert_int_equal(atomic_load(&p.allocated_bytes), a.held);
	assert_true(atomic_load(&p.allocated_bytes) < 9 * MiB);
	assert_int_equal(embd_acct_close(&a), 0); /* close frees both: no leak */
	assert_int_equal(p.idle_bytes, chunk(HDR + 128 * KiB) + chunk(HDR + 8 * MiB));
	assert_int_equal(atomic_load(&p.allocated_bytes), p.idle_bytes);
	embd_pool_destroy(&p);
}

/* Freed blocks are kept warm, never more than keep_bytes of them; the rest go back to the OS. */
static void idle_bytes_stay_within_keep_bytes(void **state)
{
	(void)state;
	embd_budget b;
	embd_budget_init(&b, 0);
	embd_pool p;
	embd_pool_init(&p, 1 * MiB);
	embd_acct a;
	embd_acct_init(&a, &b, &p, 0);
	uint64_t block = chunk(HDR + 320 * KiB); /* what an ask of 300000 bytes takes */
	void *x[8];
	for (int i = 0; i < 8; i++)
		assert_int_equal(embd_acct_alloc(&a, 300000, &x[i]), 0);
	assert_int_equal(atomic_load(&p.allocated_bytes), 8 * block);
	for (int i = 0; i < 8; i++) {
		embd_acct_free(&a, x[i]);
		assert_true(p.idle_bytes <= p.keep_bytes);
	}
	assert_int_equal(p.idle_bytes, 3 * block); /* a fourth would pass 1 MiB */
	assert_int_equal(atomic_load(&p.allocated_bytes), 3 * block);
	/* A warm block is reused, not malloc'd again. */
	void *y;
	assert_int_equal(embd_acct_alloc(&a, 300000, &y), 0);
	assert_true(y == x[0] || y == x[1] || y == x[2]);
	assert_int_equal(p.idle_bytes, 2 * block);
	assert_int_equal(atomic_load(&p.allocated_bytes), 3 * block);
	/* A block bigger than keep_bytes is never kept. */
	void *big;
	assert_int_equal(embd_acct_alloc(&a, 1500000, &big), 0);
	embd_acct_free(&a, big);
	assert_int_equal(p.idle_bytes, 2 * block);
	/* Tiny and huge sizes are never kept, but are counted while out. */
	void *tiny;
	assert_int_equal(embd_acct_alloc(&a, 100, &tiny), 0);
	assert_int_equal(atomic_load(&p.allocated_bytes), 3 * block + chunk(HDR + 100));
	embd_acct_free(&a, tiny);
	embd_acct_free(&a, y);
	assert_int_equal(p.idle_bytes, 3 * block);
	assert_int_equal(atomic_load(&p.allocated_bytes), 3 * block);
	assert_int_equal(embd_acct_close(&a), 0);
	embd_pool_destroy(&p);
	assert_int_equal(atomic_load(&p.allocated_bytes), 0);
}

/* The accountant owns its blocks: close frees what is still held and reports only raw charges as a leak. */
static void close_frees_held_blocks(void **state)
{
	(void)state;
	embd_budget b;
	embd_budget_init(&b, 0);
	embd_pool p;
	embd_pool_init(&p, 64 * MiB);
	embd_acct a;
	embd_acct_init(&a, &b, &p, 0);
	void *x[5];
	size_t sizes[5] = {10, 5000, 100000, 2 * MiB, 4096};
	uint64_t blocks = 0;
	for (int i = 0; i < 5; i++) {
		assert_int_equal(embd_acct_alloc(&a, sizes[i], &x[i]), 0);
		memset(x[i], 0x5a, sizes[i]);
		blocks += expected_block(sizes[i]);
	}
	assert_int_equal(a.held, blocks);
	embd_acct_free(&a, x[2]); /* from the middle of the list, then its ends */
	embd_acct_free(&a, x[4]);
	embd_acct_free(&a, x[0]);
	assert_int_equal(a.held, expected_block(5000) + expected_block(2 * MiB));
	assert_int_equal(embd_acct_alloc(&a, 100000, &x[2]), 0); /* and back in */
	assert_int_equal(embd_acct_charge(&a, 77), 0);           /* a raw charge, no block behind it */
	assert_int_equal(embd_acct_close(&a), 77);               /* the blocks are freed, not a leak */
	assert_int_equal(a.held, 0);
	assert_int_equal(embd_budget_inflight(&b), 0);
	assert_int_equal(atomic_load(&p.allocated_bytes), p.idle_bytes); /* nothing is out */
	/* The accountant may start again; a clean request closes at 0. */
	embd_acct_init(&a, &b, &p, 0);
	assert_int_equal(embd_acct_alloc(&a, 3000, &x[0]), 0);
	assert_int_equal(embd_acct_close(&a), 0);
	assert_int_equal(embd_budget_inflight(&b), 0);
	embd_pool_destroy(&p);
	assert_int_equal(atomic_load(&p.allocated_bytes), 0);
}

/*
 * Concurrency: each ask fits the per-request limit and the budget on its own,
 * but together they do not. Four threads ask at once, held in step by a
 * barrier, so every round the budget must refuse exactly the ones that do
 * not fit, with EMBD_EBUSY, and the in-flight total must never pass it.
 */
#define THREADS 4
#define ROUNDS  500
#define ASK     20000 /* a 20 KiB block: three fit the budget, four do not */

struct round_state {
	embd_budget b;
	embd_pool p;
	pthread_barrier_t step;
	_Atomic int granted[ROUNDS];
};

struct worker {
	struct round_state *s;
	int refused, wrong_code, over_budget, leaked;
};

static void *work(void *arg)
{
	struct worker *w = arg;
	struct round_state *s = w->s;
	for (int i = 0; i < ROUNDS; i++) {
		embd_acct a;
		embd_acct_init(&a, &s->b, &s->p, embd_acct_block_bytes(ASK)); /* the ask fits its own limit */
		void *x;
		int rc = embd_acct_alloc(&a, ASK, &x);
		w->over_budget += embd_budget_inflight(&s->b) > s->b.limit;
		if (rc == 0) {
			memset(x, i, ASK);
			atomic_fetch_add(&s->granted[i], 1);
		} else {
			w->refused++;
			w->wrong_code += rc != EMBD_EBUSY;
		}
		pthread_barrier_wait(&s->step); /* every thread has asked while the others hold */
		if (rc == 0)
			embd_acct_free(&a, x);
		w->leaked += embd_acct_close(&a) != 0;
		pthread_barrier_wait(&s->step); /* every thread has let go */
	}
	return NULL;
}

static void together_over_the_budget_is_refused(void **state)
{
	(void)state;
	static struct round_state s;
	uint64_t block = embd_acct_block_bytes(ASK);
	embd_budget_init(&s.b, 3 * block + block / 2);
	assert_true(block <= s.b.limit); /* alone, every ask fits */
	embd_pool_init(&s.p, 1 * MiB);
	pthread_barrier_init(&s.step, NULL, THREADS);
	for (int i = 0; i < ROUNDS; i++)
		atomic_init(&s.granted[i], 0);
	pthread_t t[THREADS];
	struct worker w[THREADS];
	for (int i = 0; i < THREADS; i++) {
		w[i] = (struct worker){&s, 0, 0, 0, 0};
		pthread_create(&t[i], NULL, work, &w[i]);
	}
	int refused = 0;
	for (int i = 0; i < THREADS; i++) {
		pthread_join(t[i], NULL);
		assert_int_equal(w[i].over_budget, 0);
		assert_int_equal(w[i].wrong_code, 0);
		assert_int_equal(w[i].leaked, 0);
		refused += w[i].refused;
	}
	for (int i = 0; i < ROUNDS; i++)
		if (atomic_load(&s.granted[i]) != 3)
			fail_msg("round %d granted %d of 4 asks; the budget fits exactly 3", i,
			         atomic_load(&s.granted[i]));
	assert_int_equal(refused, ROUNDS); /* one refused in every round */
	assert_int_equal(embd_budget_inflight(&s.b), 0);
	assert_int_equal(embd_budget_peak(&s.b), 3 * block);
	pthread_barrier_destroy(&s.step);
	embd_pool_destroy(&s.p);
}

/* A storm of mixed sizes from several threads: the pool's lists and gauges survive it and end exact. */
static void *storm(void *arg)
{
	struct round_state *s = arg;
	for (int i = 0; i < 5000; i++) {
		embd_acct a;
		embd_acct_init(&a, &s->b, &s->p, 0);
		void *x, *y;
		if (embd_acct_alloc(&a, (size_t)(i % 7) * 5000 + 1, &x) == 0)
			memset(x, 1, 1);
		if (embd_acct_alloc(&a, (size_t)(i % 5) * 70000, &y) == 0)
			embd_acct_free(&a, y);
		embd_acct_close(&a); /* frees x, if it was granted */
	}
	return NULL;
}

static void a_storm_ends_exact(void **state)
{
	(void)state;
	static struct round_state s;
	embd_budget_init(&s.b, 400000);
	embd_pool_init(&s.p, 512 * KiB);
	pthread_t t[THREADS];
	for (int i = 0; i < THREADS; i++)
		pthread_create(&t[i], NULL, storm, &s);
	for (int i = 0; i < THREADS; i++)
		pthread_join(t[i], NULL);
	assert_int_equal(embd_budget_inflight(&s.b), 0);
	assert_true(embd_budget_peak(&s.b) <= 400000);
	assert_true(s.p.idle_bytes <= s.p.keep_bytes);
	assert_int_equal(atomic_load(&s.p.allocated_bytes), s.p.idle_bytes);
	embd_pool_destroy(&s.p);
	assert_int_equal(atomic_load(&s.p.allocated_bytes), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(charges_and_limits),
	    cmocka_unit_test(the_reserve_is_only_for_reserved_charges),
	    cmocka_unit_test(alloc_reserved_may_use_the_reserve),
	    cmocka_unit_test(asks_charge_their_whole_block),
	    cmocka_unit_test(pool_class_boundaries),
	    cmocka_unit_test(a_16_mib_body_holds_under_17_mib),
	    cmocka_unit_test(ids_and_gather_hold_under_9_mib),
	    cmocka_unit_test(idle_bytes_stay_within_keep_bytes),
	    cmocka_unit_test(close_frees_held_blocks),
	    cmocka_unit_test(together_over_the_budget_is_refused),
	    cmocka_unit_test(a_storm_ends_exact),
	};
	return cmocka_run_group_tests_name("acct", tests, make_classes, NULL);
}
