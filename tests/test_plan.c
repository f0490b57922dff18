/* Unit tests of the planner: runs, the zero-copy/gather rule and gathering. */
#include "fixture.h"

#include "plan.h"

static embd_ids view64(const int64_t *v, size_t n)
{
	return (embd_ids){(const unsigned char *)v, n, 8};
}

static void merges_consecutive_ids(void **state)
{
	(void)state;
	int64_t v[] = {3, 4, 5, 9, 10, 2, 2, 3};
	embd_ids ids = view64(v, 8);
	size_t n;
	assert_int_equal(embd_plan_runs(&ids, 100, 0, NULL, &n, NULL), 0);
	assert_int_equal(n, 4); /* a repeated id starts a new run: rows go out in request order */
	embd_run runs[4];
	assert_int_equal(embd_plan_runs(&ids, 100, 0, runs, &n, NULL), 0);
	const embd_run want[] = {{3, 3}, {9, 2}, {2, 1}, {2, 2}};
	for (size_t i = 0; i < 4; i++) {
		assert_int_equal(runs[i].start, want[i].start);
		assert_int_equal(runs[i].count, want[i].count);
	}
	assert_int_equal(embd_plan_rows(runs, 4), 8);
}

static void validates_ids(void **state)
{
	(void)state;
	int64_t v[] = {1, 100};
	embd_ids ids = view64(v, 2);
	size_t n;
	embd_err e;
	assert_int_equal(embd_plan_runs(&ids, 100, 0, NULL, &n, &e), EMBD_ERANGE);
	assert_string_equal(e.msg, "id 100 is out of range [0, 100)");
	int32_t w[] = {4, -7};
	embd_ids ids32 = {(const unsigned char *)w, 2, 4};
	assert_int_equal(embd_plan_runs(&ids32, 100, 0, NULL, &n, &e), EMBD_EBADID);
	assert_non_null(strstr(e.msg, "id -7 at position 1 is negative"));
}

static void chooses_the_path(void **state)
{
	(void)state;
	embd_plan_cfg cfg = {.iov_max_segments = 4, .iov_min_run_bytes = 1024};
	assert_int_equal(embd_plan_choose(&cfg, 1, 1000, 256, 0), EMBD_PATH_ZEROCOPY);
	assert_int_equal(embd_plan_choose(&cfg, 1, 1000, 256, 1), EMBD_PATH_GATHER);
	/* 3 runs of 8 rows x 256 B = 2 KiB each: few and large enough. */
	assert_int_equal(embd_plan_choose(&cfg, 3, 24, 256, 0), EMBD_PATH_ZEROCOPY);
	/* 3 runs of 1 row: too small per run. */
	assert_int_equal(embd_plan_choose(&cfg, 3, 3, 256, 0), EMBD_PATH_GATHER);
	/* 5 runs: too many segments. */
	assert_int_equal(embd_plan_choose(&cfg, 5, 500, 256, 0), EMBD_PATH_GATHER);
	assert_string_equal(embd_path_name(EMBD_PATH_ZEROCOPY), "zero-copy");
	assert_string_equal(embd_path_name(EMBD_PATH_GATHER), "gather");
}

static void gathers_exact_bytes(void **state)
{
	(void)state;
	float data[10 * 3];
	for (int i = 0; i < 30; i++)
		data[i] = (float)i;
	embd_matrix_info m = {.data = (const unsigned char *)data, .rows = 10, .dim = 3, .row_bytes = 12};
	embd_run runs[] = {{7, 2}, {1, 1}};
	float out[9];
	embd_plan_gather(&m, runs, 2, out);
	const float want[9] = {21, 22, 23, 24, 25, 26, 3, 4, 5};
	assert_memory_equal(out, want, sizeof want);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(merges_consecutive_ids),
	    cmocka_unit_test(validates_ids),
	    cmocka_unit_test(chooses_the_path),
	    cmocka_unit_test(gathers_exact_bytes),
	};
	return cmocka_run_group_tests_name("plan", tests, NULL, NULL);
}
