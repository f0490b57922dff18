/* Helpers the unit tests share: temporary fixture files and .npy builders. */
#ifndef EMBD_TEST_FIXTURE_H
#define EMBD_TEST_FIXTURE_H

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

/* Write len bytes to a new temporary file; returns its path (static storage per slot). */
static inline const char *fixture_file(int slot, const void *data, size_t len)
{
	static char paths[16][64];
	snprintf(paths[slot], sizeof paths[slot], "/tmp/embd-test-XXXXXX");
	int fd = mkstemp(paths[slot]);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, data, len), (ssize_t)len);
	close(fd);
	return paths[slot];
}

/* A version 1 .npy header with the given dict text, padded to 64 bytes; returns its length. */
static inline size_t npy_header_v1(unsigned char *dst, const char *dict)
{
	size_t n = strlen(dict);
	size_t total = (10 + n + 1 + 63) / 64 * 64;
	memcpy(dst, "\x93NUMPY\x01\x00", 8);
	dst[8] = (unsigned char)((total - 10) & 0xff);
	dst[9] = (unsigned char)((total - 10) >> 8);
	memcpy(dst + 10, dict, n);
	memset(dst + 10 + n, ' ', total - 10 - n - 1);
	dst[total - 1] = '\n';
	return total;
}

#endif
