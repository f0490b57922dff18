/* Unit tests of memory accounting: limits, the budget, the pool and concurrency. */
#include "fixture.h"

#include <pthread.h>

#include "acct.h"

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

static void alloc_free_and_trim(void **state)
{
	(void)state;
	embd_budget b;
	embd_budget_init(&b, 0);
	embd_pool p;
	embd_pool_init(&p, 1 << 20);
	embd_acct a;
	embd_acct_init(&a, &b, &p, 1 << 20);
	void *x, *y;
	assert_int_equal(embd_acct_alloc(&a, 100000, &x), 0);
	memset(x, 0xab, 100000);
	assert_int_equal(a.held, 100000);
	assert_int_equal(embd_acct_alloc(&a, 10, &y), 0); /* small: plain malloc */
	embd_acct_trim(&a, x, 4000);
	assert_int_equal(a.held, 4010);
	assert_int_equal(a.peak, 100010);
	embd_acct_free(&a, x);
	embd_acct_free(&a, y);
	embd_acct_free(&a, NULL);
	assert_int_equal(a.held, 0);
	assert_int_equal(embd_budget_inflight(&b), 0);
	assert_int_equal(embd_acct_alloc(&a, 2 << 20, &x), EMBD_ETOOBIG);
	assert_int_equal(embd_acct_close(&a), 0);
	embd_pool_destroy(&p);
}

static void pool_reuses_warm_buffers(void **state)
{
	(void)state;
	embd_budget b;
	embd_budget_init(&b, 0);
	embd_pool p;
	embd_pool_init(&p, 1 << 20);
	embd_acct a;
	embd_acct_init(&a, &b, &p, 0);
	void *x, *y;
	assert_int_equal(embd_acct_alloc(&a, 300000, &x), 0);
	embd_acct_free(&a, x);
	assert_int_equal(p.idle_bytes, 512 * 1024); /* kept, in its power-of-two class */
	assert_int_equal(embd_acct_alloc(&a, 400000, &y), 0);
	assert_ptr_equal(x, y); /* the same warm block */
	assert_int_equal(p.idle_bytes, 0);
	/* A block that would take the pool past keep_bytes goes back to the OS. */
	void *big;
	assert_int_equal(embd_acct_alloc(&a, 1500000, &big), 0);
	embd_acct_free(&a, big);
	embd_acct_free(&a, y);
	assert_int_equal(p.idle_bytes, 512 * 1024);
	assert_int_equal(atomic_load(&p.allocated_bytes), 512 * 1024);
	embd_pool_destroy(&p);
	assert_int_equal(atomic_load(&p.allocated_bytes), 0);
}

struct worker {
	embd_budget *b;
	embd_pool *p;
	int refused;
	int over_budget; /* times the in-flight total was seen above the limit */
	int leaked;
};

static void *work(void *arg)
{
	struct worker *w = arg;
	for (int i = 0; i < 20000; i++) {
		embd_acct a;
		embd_acct_init(&a, w->b, w->p, 0);
		void *x;
		if (embd_acct_alloc(&a, (size_t)(i % 7) * 5000 + 1, &x) == 0)
			embd_acct_free(&a, x);
		else
			w->refused++;
		w->over_budget += embd_budget_inflight(w->b) > w->b->limit;
		w->leaked += embd_acct_close(&a) != 0;
	}
	return NULL;
}

static void concurrent_requests_end_at_zero(void **state)
{
	(void)state;
	embd_budget b;
	embd_budget_init(&b, 25000); /* the 25001- and 30001-byte asks never fit */
	embd_pool p;
	embd_pool_init(&p, 1 << 20);
	pthread_t t[4];
	struct worker w[4];
	for (int i = 0; i < 4; i++) {
		w[i] = (struct worker){&b, &p, 0, 0, 0};
		pthread_create(&t[i], NULL, work, &w[i]);
	}
	int refused = 0;
	for (int i = 0; i < 4; i++) {
		pthread_join(t[i], NULL);
		assert_int_equal(w[i].over_budget, 0);
		assert_int_equal(w[i].leaked, 0);
		refused += w[i].refused;
	}
	assert_true(refused > 0); /* the budget did bite */
	assert_int_equal(embd_budget_inflight(&b), 0);
	assert_true(embd_budget_peak(&b) <= 25000);
	embd_pool_destroy(&p);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(charges_and_limits),
	    cmocka_unit_test(the_reserve_is_only_for_reserved_charges),
	    cmocka_unit_test(alloc_free_and_trim),
	    cmocka_unit_test(pool_reuses_warm_buffers),
	    cmocka_unit_test(concurrent_requests_end_at_zero),
	};
	return cmocka_run_group_tests_name("acct", tests, NULL, NULL);
}
