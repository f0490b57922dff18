/* The daemon: its shared state, the request record and the response helpers handlers use. */
#ifndef EMBD_SERVER_H
#define EMBD_SERVER_H

#include <microhttpd.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/types.h>

#include "acct.h"
#include "clock.h"
#include "compute.h"
#include "config.h"
#include "error.h"
#include "gen.h"
#include "matrix.h"
#include "metrics.h"
#include "conns.h"
#include "plan.h"
#include "resp.h"
#include "routes.h"
#include "reload.h"
#include "turns.h"

#define EMBD_VERSION "0.1.0"

typedef struct embd_server {
	embd_config cfg;
	embd_gen_current current; /* the generation new requests take */
	embd_budget budget;
	embd_pool pool;
	embd_metrics metrics;
	embd_plan_cfg plan;
	struct MHD_Daemon *daemon;
	uint16_t port;
	/*
	 * listen.unix's daemon (NULL: none): the same handlers, options and
	 * threads on a Unix-domain socket, sharing everything else (connections
	 * table, budget, turns, compute). The socket file, identified by device
	 * and inode, is ours to remove at shutdown once bound.
	 */
	struct MHD_Daemon *daemon_unix;
	int unix_bound;
	dev_t unix_dev;
	ino_t unix_ino;
	char admin_token[256];     /* empty: the admin endpoints are off */
	atomic_long requests_live; /* request records not yet finished */
	embd_compute compute;      /* the pool every vector operation runs on */
	embd_reloader reloader;    /* the thread every reload runs on */
	embd_conns conns;
	embd_turns turns; /* large responses take turns (limits.large_responses) */
} embd_server;

/*
 * One request. It is referenced by the connection (until libmicrohttpd
 * reports the request completed) and by its response (until libmicrohttpd
 * destroys it). Every byte it holds beyond this record belongs to its
 * accountant (body, parsed ids, the response's buffers and segment list,
 * jansson's values), so the last reference closes the accountant and with it
 * frees everything, and drops the generation, on every path.
 */
struct req {
	atomic_int refs;
	embd_server *srv;
	struct MHD_Connection *conn;
	struct conn_slot *slot; /* the connection's, for the request deadline; may be NULL */
	embd_acct acct;
	embd_gen *gen; /* retained for the whole request */
	enum route_id route;
	enum method method;
	const char *url; /* libmicrohttpd's, valid for the request */
	const char *method_name;
	const struct route *handler;
	char *body;
	size_t body_len, body_cap;
	/*
	 * Refused, to be answered on a later call: from its headers (a request
	 * without a body; see on_request), or when its body broke a limit while
	 * arriving (answered once the body has gone by). why says what.
	 */
	int refused;
	embd_err why;
	/* the answer a handler builds (see handler_fn) */
	embd_resp resp;   /* the body: views into the generation and buffers of the accountant */
	const char *type; /* its media type */
	int rows;         /* a rows body: add the X-Embd-* row headers */
	uint64_t nrows;
	embd_dtype dtype;
	int scratch;             /* a vector operation's answer: add X-Embd-Accounted-Bytes */
	int by_tokens;           /* asked by token: add X-Embd-Unknown-Tokens */
	uint64_t unknown_tokens; /* tokens the vocabulary lacks (answered as zeros or left out) */
	/* filled when the response is queued */
	int status;
	uint64_t body_bytes;
	uint64_t copied;
	const char *path_taken;
	uint64_t t0_ns;
	int termination;
	char errbuf[1024]; /* the JSON error body; part of the request's fixed charge */
	void *job;         /* a handler's work running elsewhere while the connection is suspended */
	/*
	 * The generation the answer is about, when it is not the one the request
	 * holds (an admin reload answers about the one it loaded); 0: r->gen's.
	 * X-Embd-Generation and the access log name it.
	 */
	uint64_t answer_gen;
	/* For the access line (filled only when it is written): the client's address and the query string as sent. */
	char client[46]; /* INET6_ADDRSTRLEN */
	char query[EMBD_ACCESS_QUERY_BYTES];
	/* A large answer waiting for its turn (turns.h): kept here, queued when the connection is resumed. */
	struct MHD_Response *turn_resp;
	uint64_t turn_len;
	embd_turn_waiter turn; /* its place in line or its turn (arg: this record) */
};

/*
 * Say why a charge for `what` failed (rc from embd_acct_* or embd_resp_*):
 * 413 or 503 with the figures, in e; counts the refusal. Returns rc.
 */
int embd_req_charge_error(struct req *r, int rc, const char *what, embd_err *e);

/*
 * What the budget's reserve keeps per connection for /healthz: its body's
 * block (under 100 bytes) and jansson's values while it is built (object,
 * hashtable, keys: a few hundred bytes), with room to spare.
 */
#define EMBD_HEALTHZ_BYTES 1024

/* Query argument, or NULL. */
const char *embd_arg(struct req *r, const char *name);

/* Start and stop the HTTP side. start prints nothing; msg gets the reason on failure. */
int embd_http_start(embd_server *s, char *msg, size_t cap);
/*
 * Stop accepting, stop the reloader, wait up to deadline_s for the requests in
 * flight, then close every connection. 0, or -1 if a reload was still opening
 * its file at the deadline: it was abandoned (its client answered), and the
 * caller should exit non-zero rather than wait for it.
 */
int embd_http_stop(embd_server *s, unsigned deadline_s);

/* Time out requests still arriving after limits.request_timeout_s (408); call every fraction of a second. */
void embd_http_sweep(embd_server *s);

#endif
