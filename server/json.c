/* Small JSON bodies through jansson, with jansson's allocations charged to the request they are made for. */
#include "json.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "encode.h"

/* Compact ASCII; reals (timings, sizes in /v1/info) to 6 significant digits, not jansson's 17. */
#define EMBD_JSON_FLAGS (JSON_COMPACT | JSON_ENSURE_ASCII | JSON_REAL_PRECISION(6))

/* The accountant this thread's jansson allocations are charged to; NULL outside a request. */
static _Thread_local embd_acct *bound;

/* Each allocation remembers who was charged (NULL: nobody) and how much, so that free gives back the same. */
struct jhdr {
	embd_acct *acct;
	size_t charged;
};
#define JHDR_SIZE 16
_Static_assert(sizeof(struct jhdr) <= JHDR_SIZE, "the header keeps 16-byte alignment");

static void *json_alloc(size_t n)
{
	if (n > SIZE_MAX - JHDR_SIZE)
		return NULL;
	embd_acct *a = bound;
	/*
	 * From the reserve: these are a few small values that live only while a
	 * handler runs, and the error answers that use them must be possible
	 * whatever the load; the per-request limit still applies.
	 */
	uint64_t bytes = embd_acct_heap_bytes(n + JHDR_SIZE);
	if (a != NULL && embd_acct_charge_reserved(a, bytes) != 0)
		return NULL;
	struct jhdr *h = malloc(n + JHDR_SIZE);
	if (h == NULL) {
		if (a != NULL)
			embd_acct_uncharge(a, bytes);
		return NULL;
	}
	h->acct = a;
	h->charged = a != NULL ? bytes : 0;
	return (char *)h + JHDR_SIZE;
}

static void json_free(void *p)
{
	if (p == NULL)
		return;
	struct jhdr *h = (struct jhdr *)((char *)p - JHDR_SIZE);
	if (h->acct != NULL)
		embd_acct_uncharge(h->acct, h->charged);
	free(h);
}

void embd_json_init(void)
{
	json_set_alloc_funcs(json_alloc, json_free);
}

void embd_json_bind(embd_acct *a)
{
	bound = a;
}

int embd_json_body(embd_resp *b, json_t *v)
{
	if (v == NULL)
		return -ENOMEM;
	size_t n = json_dumpb(v, NULL, 0, EMBD_JSON_FLAGS);
	char *buf;
	int rc = n == 0 ? -ENOMEM : embd_resp_buffer(b, n + 1, (void **)&buf);
	if (rc == 0) {
		json_dumpb(v, buf, n, EMBD_JSON_FLAGS);
		buf[n] = '\n'; /* a JSON body is a line: curl's output and `jq -c` habits expect the newline */
	}
	json_decref(v);
	return rc;
}

json_t *embd_json_text(const char *s, size_t max)
{
	char clean[4096];
	size_t n = embd_utf8_sanitize(clean, max + 1 < sizeof clean ? max + 1 : sizeof clean, s);
	return json_stringn(clean, n);
}
