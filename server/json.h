/*
 * Small JSON bodies (info, healthz, reload answers, errors) are built with
 * jansson. While a request's handler runs on a thread, jansson's allocations
 * on that thread are charged to the request's accountant (bound with
 * embd_json_bind), so they count in the in-flight total like every other
 * byte a request holds; outside a request (config files) they are plain
 * malloc. A handler frees every jansson value before it returns.
 */
#ifndef EMBD_JSON_H
#define EMBD_JSON_H

#include <jansson.h>
#include <stddef.h>

#include "acct.h"
#include "resp.h"

/* Route jansson's allocations through embd_json_bind's accountant. Call once, before any thread starts. */
void embd_json_init(void);

/* Charge this thread's jansson allocations to a (borrowed; NULL: stop charging). */
void embd_json_bind(embd_acct *a);

/*
 * Append v, compact and ending in a newline (as every JSON body embd sends),
 * as an owned buffer of b; steals v's reference (it is
 * freed either way). Errors: those of embd_acct_alloc, or -ENOMEM when v is
 * NULL (a jansson constructor that failed).
 */
int embd_json_body(embd_resp *b, json_t *v);

/*
 * The first at most max bytes of s (cut on a character boundary; max < 4096)
 * as a JSON string: invalid UTF-8 becomes U+FFFD (jansson takes only valid
 * UTF-8). NULL: out of memory.
 */
json_t *embd_json_text(const char *s, size_t max);

#endif
