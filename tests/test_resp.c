/* Unit tests of the response builder: views and owned buffers, the path a body takes, and structural release. */
#include "fixture.h"

#include "resp.h"

/* A 6 x 4 float32 matrix, E[i][j] = 10 i + j, as a generation's mapping would present it. */
static float data[6][4];
static const embd_matrix_info mat = {
    .data = (const unsigned char *)data, .rows = 6, .dim = 4, .dtype = EMBD_F32, .row_bytes = 16, .data_bytes = 96};

static embd_budget budget;
static embd_pool pool;

static int setup(void **state)
{
	(void)state;
	for (int i = 0; i < 6; i++)
		for (int j = 0; j < 4; j++)
			data[i][j] = (float)(10 * i + j);
	embd_budget_init(&budget, 1 << 20);
	embd_pool_init(&pool, 1 << 20);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	embd_pool_destroy(&pool);
	return 0;
}

/* The body's bytes, back to back. */
static size_t flatten(const embd_resp *b, unsigned char *out)
{
	size_t k = 0;
	for (size_t i = 0; i < b->nsegs; i++) {
		memcpy(out + k, b->segs[i].base, b->segs[i].len);
		k += b->segs[i].len;
	}
	assert_int_equal(k, b->len);
	return k;
}

static const embd_plan_cfg plan = {.iov_max_segments = 2, .iov_min_run_bytes = 16};

static void build(embd_resp *b, embd_acct *a, const embd_run *runs, size_t nruns, embd_wire wire, embd_dtype dt)
{
	embd_acct_init(a, &budget, &pool, 0);
	embd_resp_init(b, a);
	embd_rows_query q = {.runs = runs, .nruns = nruns, .wire = wire, .opts = {dt, 0}};
	embd_err e;
	assert_int_equal(embd_resp_rows(b, &mat, &plan, &q, &e), 0);
}

/* Closing the accountant frees every buffer the body holds; nothing stays charged. */
static void release(embd_acct *a)
{
	assert_int_equal(embd_acct_close(a), 0);
	assert_int_equal(embd_budget_inflight(&budget), 0);
}

static void one_run_is_one_view(void **state)
{
	(void)state;
	embd_acct a;
	embd_resp b;
	embd_run run = {2, 3};
	build(&b, &a, &run, 1, EMBD_WIRE_BIN, EMBD_F32);
	assert_int_equal(b.nsegs, 1);
	assert_ptr_equal(b.segs[0].base, data[2]);
	assert_int_equal(b.len, 48);
	assert_int_equal(b.copied, 0);
	assert_int_equal(embd_resp_path(&b), EMBD_PATH_ZEROCOPY);
	assert_int_equal(a.held, 0); /* a view costs nothing */
	release(&a);
}

static void npy_is_a_copied_header_and_views(void **state)
{
	(void)state;
	embd_acct a;
	embd_resp b;
	embd_run runs[2] = {{4, 2}, {0, 1}};
	build(&b, &a, runs, 2, EMBD_WIRE_NPY, EMBD_F32);
	assert_int_equal(b.nsegs, 3);
	assert_int_equal(b.copied, 128); /* the header: 128 bytes for a 2-D '<f4' array */
	assert_int_equal(b.len, 128 + 48);
	assert_memory_equal(b.segs[0].base, "\x93NUMPY\x01\x00", 8);
	assert_non_null(memmem(b.segs[0].base, b.segs[0].len, "'shape': (3, 4)", 15));
	assert_ptr_equal(b.segs[1].base, data[4]);
	assert_ptr_equal(b.segs[2].base, data[0]);
	assert_int_equal(embd_resp_path(&b), EMBD_PATH_ZEROCOPY);
	release(&a);
}

static void scattered_rows_are_gathered(void **state)
{
	(void)state;
	embd_acct a;
	embd_resp b;
	embd_run runs[3] = {{5, 1}, {1, 1}, {3, 1}}; /* 3 runs > iov_max_segments 2 */
	build(&b, &a, runs, 3, EMBD_WIRE_BIN, EMBD_F32);
	assert_int_equal(b.nsegs, 1);
	assert_int_equal(b.copied, 48);
	assert_int_equal(embd_resp_path(&b), EMBD_PATH_GATHER);
	unsigned char out[64];
	flatten(&b, out);
	assert_memory_equal(out, data[5], 16);
	assert_memory_equal(out + 16, data[1], 16);
	assert_memory_equal(out + 32, data[3], 16);
	assert_true(a.held >= 48); /* charged at least what it holds */
	release(&a);
}

static void converted_rows_are_gathered(void **state)
{
	(void)state;
	embd_acct a;
	embd_resp b;
	embd_run run = {1, 1};
	build(&b, &a, &run, 1, EMBD_WIRE_BIN, EMBD_F16);
	assert_int_equal(b.len, 8);
	assert_int_equal(embd_resp_path(&b), EMBD_PATH_GATHER);
	const uint16_t *h = b.segs[0].base;
	assert_int_equal(h[0], embd_f32_to_f16(10.0f));
	assert_int_equal(h[3], embd_f32_to_f16(13.0f));
	release(&a);
}

static void json_is_shrunk_to_what_was_written(void **state)
{
	(void)state;
	embd_acct a;
	embd_resp b;
	embd_run run = {1, 2};
	build(&b, &a, &run, 1, EMBD_WIRE_JSON, EMBD_F32);
	const char *want =
	    "{\"shape\":[2,4],\"dtype\":\"f32\",\"rows\":[[10,11,12,13],[20,21,22,23]]}\n"; /* every JSON body ends its
	                                                                                       line */
	assert_int_equal(b.len, strlen(want));
	assert_int_equal(b.copied, b.len);
	assert_memory_equal(b.segs[b.nsegs - 1].base, want, strlen(want));
	assert_true(a.held > b.len); /* the bound's block is still held, and still charged */
	release(&a);
}

/* Past the inline segments the list grows in accounted memory, and is released with the rest. */
static void many_views_grow_the_list(void **state)
{
	(void)state;
	embd_acct a;
	embd_acct_init(&a, &budget, &pool, 0);
	embd_resp b;
	embd_resp_init(&b, &a);
	for (int i = 0; i < 40; i++)
		assert_int_equal(embd_resp_view(&b, data[i % 6], 16), 0);
	assert_int_equal(b.nsegs, 40);
	assert_true(b.cap >= 40);
	assert_true(a.held >= 40 * sizeof(embd_seg));
	assert_int_equal(b.copied, 0);
	assert_ptr_equal(b.segs[39].base, data[39 % 6]);
	release(&a);
}

/* A charge the budget refuses leaves nothing behind and says what it was for. */
static void refused_charge_says_what(void **state)
{
	(void)state;
	embd_acct a;
	embd_acct_init(&a, &budget, &pool, 64); /* a 64-byte request limit */
	embd_resp b;
	embd_resp_init(&b, &a);
	embd_run run = {0, 6};
	embd_rows_query q = {.runs = &run, .nruns = 1, .wire = EMBD_WIRE_JSON, .opts = {EMBD_F32, 0}};
	embd_err e;
	assert_int_equal(embd_resp_rows(&b, &mat, &plan, &q, &e), EMBD_ETOOBIG);
	assert_string_equal(e.msg, "the JSON response");
	assert_true(a.need > 64);
	release(&a);
}

static void wire_names(void **state)
{
	(void)state;
	embd_wire w;
	assert_int_equal(embd_wire_parse("npy", &w), 0);
	assert_int_equal(w, EMBD_WIRE_NPY);
	assert_string_equal(embd_wire_type(w), "application/x-npy");
	assert_string_equal(embd_wire_name(EMBD_WIRE_BIN), "bin");
	assert_int_equal(embd_wire_parse("xml", &w), EMBD_EBADPARAM);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(one_run_is_one_view),
	    cmocka_unit_test(npy_is_a_copied_header_and_views),
	    cmocka_unit_test(scattered_rows_are_gathered),
	    cmocka_unit_test(converted_rows_are_gathered),
	    cmocka_unit_test(json_is_shrunk_to_what_was_written),
	    cmocka_unit_test(many_views_grow_the_list),
	    cmocka_unit_test(refused_charge_says_what),
	    cmocka_unit_test(wire_names),
	};
	return cmocka_run_group_tests_name("resp", tests, setup, teardown);
}
