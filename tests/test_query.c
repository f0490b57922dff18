/* Unit tests of the request-text parsers: percent-decoding, decimal integers, Accept negotiation. */
#include "fixture.h"

#include <errno.h>

#include "query.h"

static void unescape_decodes_and_keeps_nul_encoded(void **state)
{
	(void)state;
	static const struct {
		const char *in, *out;
	} cases[] = {
	    {"", ""},
	    {"abc", "abc"},
	    {"%41%62", "Ab"},
	    {"1%2C2%2c3", "1,2,3"},
	    {"1%002", "1\xc0\x80"
	              "2"},       /* a NUL becomes C0 80: no digit, no valid UTF-8 */
	    {"%", "%"},           /* a lone '%' */
	    {"%4", "%4"},         /* one hex digit at the end */
	    {"%zz%41", "%zzA"},   /* not hex, then hex */
	    {"%%41", "%A"},       /* '%' then an escape */
	    {"a+b", "a+b"},       /* '+' is not a space here */
	    {"%ff%0a", "\xff\n"}, /* any byte but NUL */
	    {"%25%30%30", "%00"}, /* decoded once, not twice */
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		char buf[64];
		snprintf(buf, sizeof buf, "%s", cases[i].in);
		size_t n = embd_query_unescape(buf);
		if (strcmp(buf, cases[i].out) != 0 || n != strlen(cases[i].out))
			fail_msg("'%s': got '%s' (%zu), want '%s'", cases[i].in, buf, n, cases[i].out);
	}
}

static void u64_parses_all_of_the_string(void **state)
{
	(void)state;
	uint64_t v = 7;
	assert_int_equal(embd_query_u64("0", &v), 0);
	assert_int_equal(v, 0);
	assert_int_equal(embd_query_u64("000123", &v), 0);
	assert_int_equal(v, 123);
	assert_int_equal(embd_query_u64("18446744073709551615", &v), 0);
	assert_true(v == UINT64_MAX);
	v = 7;
	assert_int_equal(embd_query_u64("18446744073709551616", &v), -ERANGE);
	assert_int_equal(embd_query_u64("99999999999999999999999", &v), -ERANGE);
	assert_true(v == 7); /* untouched on error */
	static const char *const bad[] = {"",   "-1",   "+1",  " 1",  "1 ",
	                                  "1x", "0x10", "1e3", "1.0", "99999999999999999999x"};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		if (embd_query_u64(bad[i], &v) != -EINVAL)
			fail_msg("'%s' was not refused as -EINVAL", bad[i]);
	}
	assert_true(v == 7);
}

static void accept_picks_the_highest_q_then_the_first(void **state)
{
	(void)state;
	static const char *const t[] = {"application/json", "application/octet-stream", "application/x-npy"};
	static const struct {
		const char *accept;
		int want;
	} cases[] = {
	    {"application/json", 0},
	    {"application/octet-stream", 1},
	    {"APPLICATION/X-NPY", 2},
	    {"*/*", 0},
	    {"application/*", 0},
	    {"Application/*", 0},
	    {"text/*", -1},
	    {"text/html", -1},
	    {"", -1},
	    {" , ,", -1},
	    {"text/html, application/x-npy", 2},
	    {"application/x-npy;q=0.5, application/octet-stream", 1},
	    {"application/x-npy;q=0.9, application/octet-stream;q=0.9", 2}, /* a tie goes to the first listed */
	    {"application/json;q=0", -1},
	    {"application/json;q=0.000", -1},
	    {"application/json;q=0, */*;q=0.1", 1}, /* the exact range rules JSON out; the wildcard names the rest */
	    {"*/*;q=0.1, application/json;q=0", 1}, /* whatever the order */
	    {"application/*;q=0.2, application/x-npy;q=0.5", 2},
	    {"application/*;q=0.5, application/x-npy;q=0.2", 0},
	    {"*/*, application/x-npy", 0}, /* equal q: the range listed first */
	    {"application/x-npy, */*", 2},
	    {"application/json;q=1, application/json;q=0", 0}, /* the first of two equal ranges stands */
	    {"application/json;q=2", -1},                      /* not a qvalue: ignored, as if q=0 */
	    {"application/json;q=nan", -1},
	    {"application/json;q=0.0001", -1},
	    {"application/json;q=", -1},
	    {"application/json ; q=0.5 ; charset=utf-8", 0},
	    {"application/json;Q=1.000", 0},
	    {"application/json;level=1;q=0.2,application/x-npy;q=0.3", 2},
	    {"application/jsonx", -1},
	    {"application/json/", -1},
	    {"application", -1},
	    {"*/json", -1},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		int got = embd_query_accept(cases[i].accept, t, 3);
		if (got != cases[i].want)
			fail_msg("Accept '%s': got %d, want %d", cases[i].accept, got, cases[i].want);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(unescape_decodes_and_keeps_nul_encoded),
	    cmocka_unit_test(u64_parses_all_of_the_string),
	    cmocka_unit_test(accept_picks_the_highest_q_then_the_first),
	};
	return cmocka_run_group_tests_name("query", tests, NULL, NULL);
}
