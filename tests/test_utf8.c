/* Unit tests of the one UTF-8 validator: sequences by Table 3-7, valid prefixes, repair. */
#include "fixture.h"

#include "utf8.h"

/* Each sequence's length, or 0 with the length of its maximal ill-formed subpart. */
static void sequences(void **state)
{
	(void)state;
	static const struct {
		const char *s;
		size_t avail, len, bad;
	} cases[] = {
	    {"\xc3\xb6", 2, 2, 0},         {"\xe2\x82\xac", 3, 3, 0},
	    {"\xf0\x9f\x98\x80", 4, 4, 0}, {"\xf4\x8f\xbf\xbf", 4, 4, 0}, /* U+10FFFF */
	    {"\xc0\xaf", 2, 0, 1},                                        /* overlong lead */
	    {"\xe0\x80\xaf", 3, 0, 1},                                    /* overlong: E0 takes A0-BF */
	    {"\xed\xa0\x80", 3, 0, 1},                                    /* a surrogate */
	    {"\xf4\x90\x80\x80", 4, 0, 1},                                /* past U+10FFFF */
	    {"\xf5\x80\x80\x80", 4, 0, 1}, {"\x80", 1, 0, 1},
	    {"\xe2\x82x", 3, 0, 2},        {"\xf0\x9f\x98", 3, 0, 3}, /* cut short by the bytes left */
	    {"\xe2\x82\xac", 2, 0, 2}, /* the same, with the bytes there but not allowed */
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		size_t bad = 0;
		size_t n = embd_utf8_seq((const unsigned char *)cases[i].s, cases[i].avail, &bad);
		if (n != cases[i].len || (n == 0 && bad != cases[i].bad))
			fail_msg("case %zu: got %zu (bad %zu), want %zu (bad %zu)", i, n, bad, cases[i].len,
			         cases[i].bad);
	}
}

static void utf8_valid_len(void **state)
{
	(void)state;
	assert_int_equal(embd_utf8_valid_len("abc", 3), 3);
	assert_int_equal(embd_utf8_valid_len("a\0c", 3), 1);
	assert_int_equal(embd_utf8_valid_len("k\xc3\xb6ln", 5), 5);
	assert_int_equal(embd_utf8_valid_len("k\xc3", 2), 1);        /* truncated */
	assert_int_equal(embd_utf8_valid_len("\xe0\x80\xaf", 3), 0); /* overlong */
	assert_int_equal(embd_utf8_valid_len("x\xed\xa0\x80", 4), 1);
	assert_int_equal(embd_utf8_valid_len("\xf0\x9f\x98\x80", 4), 4);
	assert_int_equal(embd_utf8_valid_len("\xf4\x90\x80\x80", 4), 0);
	assert_int_equal(embd_utf8_valid_len("\x80", 1), 0);
}

/* The sanitizer keeps valid UTF-8 as it is and puts one U+FFFD for each ill-formed subpart, never half a character. */
static void sanitizes_utf8(void **state)
{
	(void)state;
	char out[64];
	assert_int_equal(embd_utf8_sanitize(out, sizeof out, "k\xc3\xb6nig \xe2\x82\xac \xf0\x9f\x98\x80"), 15);
	assert_string_equal(out, "k\xc3\xb6nig \xe2\x82\xac \xf0\x9f\x98\x80");
	embd_utf8_sanitize(out, sizeof out,
	                   "a\xe0\x80\xaf"
	                   "b"); /* overlong: three subparts */
	assert_string_equal(out, "a\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"
	                         "b");
	embd_utf8_sanitize(out, sizeof out, "\xed\xa0\x80|\xf4\x90\x80\x80|\xe2\x82|\xff");
	assert_string_equal(out,
	                    "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd|\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd|"
	                    "\xef\xbf\xbd|\xef\xbf\xbd");
	assert_int_equal(embd_utf8_sanitize(out, 4, "ab\xe2\x82\xac"), 2); /* the euro sign does not fit whole */
	assert_string_equal(out, "ab");
	assert_int_equal(embd_utf8_sanitize(out, 0, "x"), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(sequences),
	    cmocka_unit_test(utf8_valid_len),
	    cmocka_unit_test(sanitizes_utf8),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
