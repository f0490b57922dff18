/* The daemon: its shared state, the request record and the response helpers handlers use. */
#ifndef EMBD_SERVER_H
#define EMBD_SERVER_H

#include <microhttpd.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include "acct.h"
#include "config.h"
#include "error.h"
#include "gen.h"
#include "matrix.h"
#include "metrics.h"
#include "conns.h"
#include "plan.h"
#include "reload.h"

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
	char admin_token[256];     /* empty: the admin endpoints are off */
	atomic_long requests_live; /* request records not yet finished */
	embd_reloader reloader;    /* the thread every reload runs on */
	embd_conns conns;
} embd_server;

enum method { M_GET, M_HEAD, M_POST, M_OTHER };

#define REQ_MAX_BUFS 6

/*
 * One request. It is referenced by the connection (until libmicrohttpd
 * reports the request completed) and by its response (until libmicrohttpd
 * destroys it); the last reference frees every buffer, drops the matrix
 * reference and closes the accountant, on every path.
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
	int body_error; /* set when the body broke a limit while arriving */
	char body_msg[256];
	void *bufs[REQ_MAX_BUFS];
	int nbufs;
	/* filled when the response is queued */
	int status;
	uint64_t body_bytes;
	uint64_t copied;
	const char *path_taken;
	uint64_t t0_ns;
	int termination;
	char errbuf[640]; /* the JSON error body; part of the request's fixed charge */
	void *job;        /* a handler's work running elsewhere while the connection is suspended */
};

typedef enum MHD_Result (*handler_fn)(struct req *r);

struct route {
	const char *path; /* exact path, or a prefix when prefix is set */
	int prefix;
	enum route_id id;
	unsigned methods; /* bit (1 << enum method) */
	handler_fn fn;
};

/* Find the route for url; NULL: no such path. */
const struct route *embd_route_find(const char *url);

/* Answer with the JSON error body for code (an EMBD_E code) and a message. */
enum MHD_Result embd_reply_error(struct req *r, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Answer with an accounted buffer the request holds (freed when the request ends). */
enum MHD_Result embd_reply_buffer(struct req *r, int status, const char *content_type, void *buf, size_t len);

/* An accounted buffer that lives as long as the request; 0 or an EMBD_E code (the caller replies). */
int embd_req_alloc(struct req *r, size_t n, void **out);

/* As embd_req_alloc, from the budget's reserve: for /healthz and /metrics, which answer whatever the load. */
int embd_req_alloc_reserved(struct req *r, size_t n, void **out);

/* Reply to a failed charge or allocation of `what` with 413/503 and the figures. */
enum MHD_Result embd_reply_charge_error(struct req *r, int rc, const char *what);

/* The most /healthz's answer takes; the budget's reserve keeps this much per connection. */
#define EMBD_HEALTHZ_BYTES 64

/* Queue a response the handler built; adds the common headers, takes it over. */
enum MHD_Result embd_reply(struct req *r, int status, struct MHD_Response *resp, uint64_t body_len);

/* A response whose bytes are not ours (the mapping): it holds a reference to r until destroyed. */
struct MHD_Response *embd_response_pinned_buffer(struct req *r, const void *data, size_t len);
struct MHD_Response *embd_response_pinned_iovec(struct req *r, const struct MHD_IoVec *iov, unsigned n);

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

/* Monotonic clock in nanoseconds. */
uint64_t embd_now_ns(void);

#endif
