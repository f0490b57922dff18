/* libmicrohttpd glue: the request record's life, body intake, replies and the daemon's start and stop. */
#include <arpa/inet.h>
#include <errno.h>
#include <stddef.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <linux/sockios.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "encode.h"
#include "json.h"
#include "log.h"
#include "query.h"
#include "server.h"

/*
 * A request target too long for limits.connection_memory (libmicrohttpd's
 * per-connection pool). The request line, its headers, libmicrohttpd's record
 * of each header and query argument and then the response's header block all
 * come from that one pool: a target that leaves too little of it is read,
 * handled, and then its answer's headers find no room, and libmicrohttpd
 * closes the connection without a word ("failed to create response header"),
 * the client seeing an empty reply after the whole gather was built. The
 * reserve is what the rest needs, measured with libmicrohttpd 0.9.75 on a 32
 * KiB pool: with curl's three headers the answers began to fail 605 bytes
 * short of the pool's end, with python-requests' five 794 bytes short; 2 KiB
 * leaves room for about 1 KiB of client headers besides embd's largest
 * response header block (about 350 bytes, a rows answer's).
 */
#define URI_RESERVE 2048u
/* What libmicrohttpd takes from the pool for each query argument's record (measured bound). */
#define URI_ARG_COST 64u

/* The 414's message (one text for both ways it is sent). */
#define URI_MESSAGE_FMT                                                                                                \
	"the request target is %zu bytes; limits.connection_memory (%" PRId64                                          \
	" bytes) holds it only with %u bytes to "                                                                      \
	"spare for the headers: POST the ids in the body instead ({\"ids\": [...]}, a .npy array, or raw ids with "    \
	"?id_dtype=int64), or raise limits.connection_memory"

static enum method parse_method(const char *m)
{
	if (strcmp(m, MHD_HTTP_METHOD_GET) == 0)
		return M_GET;
	if (strcmp(m, MHD_HTTP_METHOD_HEAD) == 0)
		return M_HEAD;
	if (strcmp(m, MHD_HTTP_METHOD_POST) == 0)
		return M_POST;
	return M_OTHER;
}

/* The access line's client address and query string (as on_uri kept it), while the connection is the request's. */
static void access_fields(struct req *r)
{
	if (r->slot != NULL) { /* the address as its connection made it, once (an inet_ntop per request costs) */
		memcpy(r->client, r->slot->client, sizeof r->client);
		embd_log_safe(r->query, sizeof r->query, r->slot->query[0] != '\0' ? r->slot->query : "-");
		return;
	}
	embd_conn_client_text(r->conn, r->client, sizeof r->client);
	snprintf(r->query, sizeof r->query, "-");
}

static struct req *req_new(embd_server *s, struct MHD_Connection *c, const char *url, const char *method)
{
	struct req *r = calloc(1, sizeof *r);
	if (r == NULL)
		return NULL;
	atomic_init(&r->refs, 1);
	r->srv = s;
	r->conn = c;
	r->slot = embd_conn_slot(c);
	r->url = url;
	r->method_name = method;
	r->method = parse_method(method);
	r->route = R_OTHER;
	r->t0_ns = embd_now_ns();
	r->termination = -1;
	embd_acct_init(&r->acct, &s->budget, &s->pool, (uint64_t)s->cfg.request_bytes);
	/*
	 * The record (with room for an error body) comes from the budget's
	 * reserve, sized for one per connection: an overloaded daemon can still
	 * answer every connection 503 in JSON, and the in-flight total still never
	 * passes limits.inflight_bytes.
	 */
	if (embd_acct_charge_reserved(&r->acct, sizeof *r) != 0) {
		free(r);
		return NULL;
	}
	embd_resp_init(&r->resp, &r->acct);
	r->gen = embd_gen_current_acquire(&s->current); /* NULL while the first table loads: answered 503 loading */
	embd_conn_generation(r->slot, embd_gen_number(r->gen)); /* a reload past limits.generations may close it */
	if (s->cfg.log_access && embd_log_enabled(EMBD_LOG_INFO))
		access_fields(r);
	atomic_fetch_add(&s->requests_live, 1);
	return r;
}

/* The generation an answer names: the one its handler says it is about, else the one the request holds. */
static uint64_t answer_gen(const struct req *r)
{
	return r->answer_gen != 0 ? r->answer_gen : embd_gen_number(r->gen);
}

static void req_finish(struct req *r)
{
	embd_server *s = r->srv;
	uint64_t dur = embd_now_ns() - r->t0_ns;
	uint64_t peak = r->acct.peak;
	embd_acct_uncharge(&r->acct, sizeof *r);
	/* Frees every buffer the request held (body, ids, the response's); what is left is a raw charge never given
	 * back. */
	uint64_t leaked = embd_acct_close(&r->acct);
	char url[1024], method[64];
	if (leaked != 0 || (s->cfg.log_access && embd_log_enabled(EMBD_LOG_INFO))) {
		embd_log_safe(url, sizeof url, r->url);
		embd_log_safe(method, sizeof method, r->method_name);
	}
	if (leaked != 0)
		embd_log(EMBD_LOG_ERROR, "BUG: request %s %s ended holding %" PRIu64 " unaccounted-for bytes", method,
		         url, leaked);
	int status = r->status != 0 ? r->status : 499; /* nginx's "client closed request" */
	embd_metrics_request(&s->metrics, r->route, status, dur);
	if (s->cfg.log_access && embd_log_enabled(EMBD_LOG_INFO)) {
		static const char *const endings[] = {"ok",       "error",      "timeout",
		                                      "shutdown", "read-error", "client-abort"};
		const char *end = r->termination >= 0 && r->termination <= 5 ? endings[r->termination] : "-";
		embd_log(EMBD_LOG_INFO,
		         "access %s %s %d %" PRIu64 " path=%s copied=%" PRIu64 " accounted=%" PRIu64 " gen=%" PRIu64
		         " %.3fms %s client=%s query=%s",
		         method, url, status, r->body_bytes, r->path_taken ? r->path_taken : "-", r->copied, peak,
		         answer_gen(r), (double)dur / 1e6, end, r->client[0] != '\0' ? r->client : "-",
		         r->query[0] != '\0' ? r->query : "-");
	}
	embd_gen_release(r->gen);
	free(r);
	atomic_fetch_sub(&s->requests_live, 1);
}

static void req_unref(struct req *r)
{
	if (atomic_fetch_sub(&r->refs, 1) == 1)
		req_finish(r);
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls, enum MHD_RequestTerminationCode toe)
{
	(void)cls;
	struct req *r = *con_cls;
	/*
	 * A request the sweep cut at its deadline (its headers in, its body
	 * late) ends unanswered: it is logged and counted as a 408, as the
	 * handler's own deadline check does, whichever of the two saw it first.
	 */
	if (r != NULL && r->status == 0 && r->slot != NULL && atomic_load(&r->slot->state) == CONN_TIMED_OUT)
		r->status = 408;
	/* The request looked its slot up once; only a request MHD ended before our handler saw it has none. */
	embd_conn_idle(r != NULL ? r->slot : embd_conn_slot(c), embd_now_ns());
	if (r == NULL)
		return;
	*con_cls = NULL;
	r->termination = (int)toe;
	if (r->turn_resp != NULL) { /* ended while its answer waited for a turn: the answer goes, and its place */
		struct MHD_Response *resp = r->turn_resp;
		r->turn_resp = NULL;
		MHD_destroy_response(resp);
	}
	req_unref(r);
}

/*
 * A large answer's wait for its turn (turns.h) is its connection's suspension:
 * the turns suspend it under their lock before it is in line, and resume it
 * when its turn comes, and the handler, called again, queues the answer kept
 * in r->turn_resp.
 */
static void turn_suspend(void *arg)
{
	MHD_suspend_connection(((struct req *)arg)->conn);
}

static void turn_resume(void *arg)
{
	MHD_resume_connection(((struct req *)arg)->conn);
}

static void response_done(void *cls)
{
	struct req *r = cls;
	if (r->turn_len != 0) /* a large answer: its turn goes to the next in line */
		embd_turns_give(&r->srv->turns, &r->turn);
	req_unref(r);
}

const char *embd_arg(struct req *r, const char *name)
{
	return MHD_lookup_connection_value(r->conn, MHD_GET_ARGUMENT_KIND, name);
}

_Static_assert(sizeof(embd_seg) == sizeof(struct MHD_IoVec) &&
                   offsetof(embd_seg, base) == offsetof(struct MHD_IoVec, iov_base) &&
                   offsetof(embd_seg, len) == offsetof(struct MHD_IoVec, iov_len),
               "a response's segments are handed to libmicrohttpd as they are");

/*
 * Queue the response: its bytes (the generation's mapping, the accountant's
 * buffers) stay valid until libmicrohttpd destroys it, because the response
 * holds a reference to the request, and the request holds both.
 */
static enum MHD_Result queue(struct req *r, int status, struct MHD_Response *resp, uint64_t body_len)
{
	/* An answer ends the request's deadline, unless the sweep has shut the connection first: then none. */
	if (embd_conn_claim(r->slot) != 0) {
		MHD_destroy_response(resp);
		return MHD_NO;
	}
	char gen[24];
	snprintf(gen, sizeof gen, "%" PRIu64, answer_gen(r));
	MHD_add_response_header(resp, "X-Embd-Generation", gen);
	/* A connection past limits.connections is answered, then closed; so is one whose target was too long. */
	if (r->slot != NULL && (r->slot->surplus || r->slot->uri_refused != 0))
		MHD_add_response_header(resp, MHD_HTTP_HEADER_CONNECTION, "close");
	enum MHD_Result ret = MHD_queue_response(r->conn, (unsigned)status, resp);
	MHD_destroy_response(resp);
	if (ret == MHD_YES) {
		r->status = status;
		r->body_bytes = body_len;
		embd_conn_sending(r->slot, embd_now_ns());
	}
	return ret;
}

/* A response over segs, holding a reference to r until libmicrohttpd destroys it. */
static struct MHD_Response *pinned(struct req *r, const embd_seg *segs, size_t n, uint64_t len)
{
	struct MHD_Response *resp =
	    n == 1 ? MHD_create_response_from_buffer_with_free_callback_cls(len, (void *)segs[0].base, response_done, r)
	           : MHD_create_response_from_iovec((const struct MHD_IoVec *)segs, (unsigned)n, response_done, r);
	if (resp != NULL)
		atomic_fetch_add(&r->refs, 1);
	return resp;
}

/* The body a handler built (r->resp), with its headers; a rows body says its path and cost. */
static enum MHD_Result reply_body(struct req *r)
{
	embd_resp *b = &r->resp;
	struct MHD_Response *resp = pinned(r, b->segs, b->nsegs, b->len);
	if (resp == NULL)
		return MHD_NO;
	MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, r->type);
	if (r->rows) {
		const embd_matrix_info *m = embd_gen_matrix(r->gen);
		embd_metrics *mt = &r->srv->metrics;
		atomic_fetch_add_explicit(&mt->copied_bytes, b->copied, memory_order_relaxed);
		atomic_fetch_add_explicit(&mt->zerocopy_bytes, b->len - b->copied, memory_order_relaxed);
		r->copied = b->copied;
		r->path_taken = embd_path_name(embd_resp_path(b));
		char v[64];
		MHD_add_response_header(resp, "X-Embd-Path", r->path_taken);
		snprintf(v, sizeof v, "%" PRIu64, b->copied);
		MHD_add_response_header(resp, "X-Embd-Copied-Bytes", v);
		snprintf(v, sizeof v, "%" PRIu64, r->acct.peak);
		MHD_add_response_header(resp, "X-Embd-Accounted-Bytes", v);
		snprintf(v, sizeof v, "%" PRIu64 ",%" PRIu64, r->nrows, m->dim);
		MHD_add_response_header(resp, "X-Embd-Shape", v);
		MHD_add_response_header(resp, "X-Embd-Dtype", embd_dtype_name(r->dtype));
		if (r->by_tokens) {
			snprintf(v, sizeof v, "%" PRIu64, r->unknown_tokens);
			MHD_add_response_header(resp, "X-Embd-Unknown-Tokens", v);
		}
	}
	if (r->scratch) {
		char v[32];
		snprintf(v, sizeof v, "%" PRIu64, r->acct.peak);
		MHD_add_response_header(resp, "X-Embd-Accounted-Bytes", v);
	}
	/* A large answer may wait for its turn, its connection suspended: kept, and queued on resume. */
	embd_turns *t = &r->srv->turns;
	if (embd_turns_large(t, b->len)) {
		r->turn_resp = resp;
		r->turn_len = b->len;
		r->turn.arg = r;
		if (!embd_turns_take(t, &r->turn, b->len))
			return MHD_YES;
		r->turn_resp = NULL;
	}
	return queue(r, 200, resp, b->len);
}

/*
 * {"error":{"status":N,"code":"...","message":"..."}} and a newline (as every
 * JSON body) in the record's own buffer, through jansson (ASCII: every other
 * character escaped). A message
 * that makes the body outgrow the buffer (client text full of control
 * characters, each six bytes escaped) is cut shorter; without memory for
 * jansson's values, the body carries the code's default message.
 */
static size_t error_json(struct req *r, int status, int code, const char *msg)
{
	static const size_t cuts[] = {400, 100};
	for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
		json_t *v = json_pack("{s:{s:i,s:s,s:o}}", "error", "status", status, "code", embd_error_code(code),
		                      "message", embd_json_text(msg, cuts[i]));
		size_t room = sizeof r->errbuf - 1; /* the newline's */
		size_t n = v != NULL ? json_dumpb(v, r->errbuf, room, JSON_COMPACT | JSON_ENSURE_ASCII) : 0;
		json_decref(v);
		if (n != 0 && n <= room) {
			r->errbuf[n] = '\n';
			return n + 1;
		}
		if (v == NULL)
			break;
	}
	return (size_t)snprintf(r->errbuf, sizeof r->errbuf,
	                        "{\"error\":{\"status\":%d,\"code\":\"%s\",\"message\":\"%s\"}}\n", status,
	                        embd_error_code(code), embd_strerror(code));
}

static enum MHD_Result reply_error(struct req *r, int code, const char *msg)
{
	int status = embd_error_status(code);
	embd_seg body = {r->errbuf, error_json(r, status, code, msg)};
	struct MHD_Response *resp = pinned(r, &body, 1, body.len);
	if (resp == NULL)
		return MHD_NO;
	MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
	/* What the request held before it failed: a 413 or 503 says how far it got. */
	char held[32];
	snprintf(held, sizeof held, "%" PRIu64, r->acct.peak);
	MHD_add_response_header(resp, "X-Embd-Accounted-Bytes", held);
	if (status == 503) {
		char secs[24];
		snprintf(secs, sizeof secs, "%" PRId64, r->srv->cfg.retry_after_s);
		MHD_add_response_header(resp, MHD_HTTP_HEADER_RETRY_AFTER, secs);
	}
	if (status == 401)
		MHD_add_response_header(resp, MHD_HTTP_HEADER_WWW_AUTHENTICATE, "Bearer");
	if (status == 405 && r->handler != NULL) {
		char allow[32] = "";
		if (r->handler->methods & (1u << M_GET))
			strcat(allow, "GET, HEAD");
		if (r->handler->methods & (1u << M_POST))
			strcat(allow, *allow ? ", POST" : "POST");
		MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, allow);
	}
	return queue(r, status, resp, body.len);
}

/* The one place a request is answered: its error, or the body its handler built. */
static enum MHD_Result answer(struct req *r, int rc, const embd_err *e)
{
	if (rc == EMBD_PENDING)
		return MHD_YES;
	if (rc == EMBD_DROP)
		return MHD_NO;
	embd_json_bind(&r->acct); /* the error body's jansson values, charged to the request */
	enum MHD_Result ret = rc != 0 ? reply_error(r, rc, e->msg) : reply_body(r);
	embd_json_bind(NULL);
	return ret;
}

/* Run the route's handler, its jansson values charged to the request, and answer once. */
static enum MHD_Result dispatch(struct req *r)
{
	embd_err e;
	embd_json_bind(&r->acct);
	int rc = r->handler->fn(r, &e);
	embd_json_bind(NULL);
	return answer(r, rc, &e);
}

int embd_req_charge_error(struct req *r, int rc, const char *what, embd_err *e)
{
	embd_metrics *m = &r->srv->metrics;
	char w[128];
	snprintf(w, sizeof w, "%s", what); /* what may be e->msg itself */
	if (rc == EMBD_ETOOBIG) {
		atomic_fetch_add(&m->rejected[REJ_REQUEST_BYTES], 1);
		return embd_err_set(e, rc,
		                    "%s needs this request to hold %" PRIu64 " bytes; limits.request_bytes is %" PRIu64,
		                    w, r->acct.need, r->acct.limit);
	}
	if (rc == EMBD_EBUSY) {
		atomic_fetch_add(&m->rejected[REJ_INFLIGHT_BYTES], 1);
		return embd_err_set(e, rc,
		                    "%s needs %" PRIu64 " bytes but requests in flight hold %" PRIu64
		                    " of limits.inflight_bytes %" PRIu64 "; retry later",
		                    w, r->acct.need, embd_budget_inflight(&r->srv->budget), r->srv->budget.limit);
	}
	return embd_err_set(e, rc, "%s: %s", w, embd_strerror(rc));
}

/* The Content-Length of the request (libmicrohttpd has refused one that is not a number); 0 if it has none. */
static uint64_t body_announced(struct req *r)
{
	const char *cl = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
	uint64_t n = 0;
	if (cl == NULL || embd_query_u64(cl, &n) != 0)
		return 0;
	return n;
}

/*
 * The first call for a request with a body: refuse what can be refused before
 * reading it. Nothing is charged yet: the body is charged as it arrives (see
 * body_take), so a client announcing a large body and sending nothing holds
 * no more than its request record.
 */
static int body_start(struct req *r, embd_err *e)
{
	embd_config *cfg = &r->srv->cfg;
	uint64_t n = body_announced(r);
	if (n > (uint64_t)cfg->max_body_bytes) {
		atomic_fetch_add(&r->srv->metrics.rejected[REJ_MAX_BODY_BYTES], 1);
		return embd_err_set(e, EMBD_EBODYTOOBIG,
		                    "the body is %" PRIu64 " bytes; limits.max_body_bytes is %" PRId64, n,
		                    cfg->max_body_bytes);
	}
	return 0;
}

/* The first buffer for a body: what has come, at least 64 KiB, never more than the body announced. */
#define BODY_FIRST_BYTES ((size_t)64 << 10)

/*
 * More body bytes. The buffer grows as they come, by quarters, up to the
 * Content-Length when there is one (limits.max_body_bytes for a chunked body),
 * so what a request holds follows what it has sent. Refusals are answered once
 * the body has gone by (read and dropped, holding nothing): answering now would
 * make libmicrohttpd close the connection under a client still sending, which
 * then sees a broken pipe instead of the answer.
 */
static void body_take(struct req *r, const char *data, size_t n)
{
	embd_config *cfg = &r->srv->cfg;
	if (r->refused)
		return;
	if (r->body_len + n > (uint64_t)cfg->max_body_bytes) {
		r->refused = embd_err_set(&r->why, EMBD_EBODYTOOBIG, "the body is over limits.max_body_bytes %" PRId64,
		                          cfg->max_body_bytes);
		atomic_fetch_add(&r->srv->metrics.rejected[REJ_MAX_BODY_BYTES], 1);
		goto drop;
	}
	if (r->body_len + n > r->body_cap) {
		uint64_t top = body_announced(r);
		if (top == 0 || top > (uint64_t)cfg->max_body_bytes)
			top = (uint64_t)cfg->max_body_bytes;
		/*
		 * A quarter more each time (the pool's class step), not double: what
		 * a body is charged stays within 1.25 times what has arrived (a
		 * client cannot pin twice the bytes it sends), for about five times
		 * its size in copies, against two when doubling.
		 */
		size_t cap = r->body_cap != 0 ? r->body_cap : BODY_FIRST_BYTES;
		while (cap < r->body_len + n)
			cap += cap / 4;
		if (cap > top)
			cap = (size_t)top;
		if (cap < r->body_len + n) /* more than announced: libmicrohttpd does not pass that on; be safe */
			cap = r->body_len + n;
		char *nb;
		int rc = embd_acct_alloc(&r->acct, cap, (void **)&nb);
		if (rc != 0) {
			/* Counted and worded now, when it is refused; answered once the body has gone by. */
			r->refused = embd_req_charge_error(r, rc, "the request body", &r->why);
			goto drop;
		}
		if (r->body_len)
			memcpy(nb, r->body, r->body_len);
		embd_acct_free(&r->acct, r->body);
		r->body = nb;
		r->body_cap = cap;
	}
	memcpy(r->body + r->body_len, data, n);
	r->body_len += n;
	return;
drop:
	/* The body will not be used: give back what it held at once. */
	embd_acct_free(&r->acct, r->body);
	r->body = NULL;
	r->body_cap = r->body_len = 0;
}

static enum MHD_Result count_host(void *cls, enum MHD_ValueKind kind, const char *key, const char *value)
{
	(void)kind;
	(void)value;
	if (strcasecmp(key, MHD_HTTP_HEADER_HOST) == 0)
		++*(int *)cls;
	return MHD_YES;
}

/* The path of an absolute-form target ("http://host/v1/info" -> "/v1/info"), which HTTP/1.1 servers accept. */
static const char *origin_form(const char *url)
{
	const char *p = strncasecmp(url, "http://", 7) == 0    ? url + 7
	                : strncasecmp(url, "https://", 8) == 0 ? url + 8
	                                                       : NULL;
	if (p == NULL)
		return url;
	p = strchr(p, '/');
	return p != NULL ? p : "/";
}

/* libmicrohttpd's unescaping, except that %00 stays encoded (see embd_query_unescape). */
static size_t unescape(void *cls, struct MHD_Connection *c, char *s)
{
	(void)cls;
	(void)c;
	return embd_query_unescape(s);
}

/* Whether the request has a body still to come: a Content-Length above 0, or a chunked one. */
static int body_coming(struct req *r)
{
	return body_announced(r) > 0 ||
	       MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_TRANSFER_ENCODING) != NULL;
}

/*
 * What can be refused before the handler runs, from the request line and
 * headers alone: 0, or an EMBD_E code with e.
 */
static int admit(struct req *r, const char *version, embd_err *e)
{
	embd_server *s = r->srv;
	if (r->slot != NULL && r->slot->uri_refused == 2) /* too long a target, on a socket that had bytes pending */
		return embd_err_set(e, EMBD_EURITOOLONG, URI_MESSAGE_FMT, r->slot->uri_len, s->cfg.connection_memory,
		                    URI_RESERVE);
	if (r->gen == NULL) /* the first table is still loading: a balancer's readiness check sees 503 */
		return embd_err_set(e, EMBD_ELOADING, "the matrix is still loading; retry later");
	int hosts = 0;
	MHD_get_connection_values(r->conn, MHD_HEADER_KIND, count_host, &hosts);
	if (strcmp(version, MHD_HTTP_VERSION_1_1) == 0 && hosts != 1)
		return embd_err_set(e, EMBD_EBADREQ, "an HTTP/1.1 request needs exactly one Host header, not %d",
		                    hosts);
	r->handler = embd_route_find(r->url);
	if (r->handler == NULL)
		return embd_err_set(e, EMBD_ENOTFOUND, "no such path: %.200s", r->url);
	r->route = r->handler->id;
	if (!(r->handler->methods & (1u << r->method)))
		return embd_err_set(e, EMBD_EMETHOD, "%.20s is not allowed on %.200s", r->method_name, r->url);
	if (embd_conn_admit_ip(&s->conns, r->slot)) /* logged there, counted when it closes (conns.c) */
		return embd_err_set(e, EMBD_ETOOMANYCONNS,
		                    "this address holds limits.connections_per_ip (%" PRId64
		                    ") connections already; retry later, or on one of those",
		                    s->cfg.connections_per_ip);
	if (r->slot != NULL && r->slot->surplus) {
		atomic_fetch_add(&s->metrics.rejected[REJ_CONNECTIONS], 1);
		return embd_err_set(e, EMBD_EBUSY,
		                    "all limits.connections (%" PRId64 ") connections are in use; retry later",
		                    s->cfg.connections);
	}
	if (r->method == M_POST)
		return body_start(r, e); /* may refuse from the headers alone, before the body is read */
	return 0;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                                  const char *version, const char *upload_data, size_t *upload_data_size,
                                  void **con_cls)
{
	embd_server *s = cls;
	struct req *r = *con_cls;
	embd_err e;
	if (r == NULL) {
		const struct conn_slot *slot = embd_conn_slot(c);
		if (slot != NULL && slot->uri_refused == 1)
			return MHD_NO; /* answered 414 already (refuse_uri): close */
		r = req_new(s, c, origin_form(url), method);
		if (r == NULL)
			return MHD_NO; /* out of memory (or of reserve): drop the connection */
		*con_cls = r;
		int rc = admit(r, version, &e);
		if (rc != 0 && body_coming(r))
			return answer(r, rc, &e); /* at once, before the body is read; libmicrohttpd then closes */
		if (rc != 0) {
			/*
			 * Without a body, on the next call like every other answer: one
			 * queued on this first call makes libmicrohttpd close the
			 * connection, and requests pipelined behind it would be lost.
			 */
			r->refused = rc;
			r->why = e;
			return MHD_YES;
		}
		/*
		 * Answer on the next call, once libmicrohttpd has seen the end of the
		 * request: a response queued on this first call is sent only when
		 * something else wakes the connection's thread (measured: 10 ms p50
		 * and 2k req/s for a single row, against 0.4 ms and 47k on the next).
		 */
		return MHD_YES;
	}
	if (r->status != 0) { /* already answered; let the rest of the body go by */
		*upload_data_size = 0;
		return MHD_YES;
	}
	if (*upload_data_size == 0 && embd_conn_claim(r->slot) != 0)
		return MHD_NO; /* all of it has arrived, but too late: the sweep is shutting the connection */
	if (*upload_data_size != 0) {
		if (embd_conn_expired(r->slot, embd_now_ns(), (uint64_t)s->cfg.request_timeout_s * 1000000000u) &&
		    embd_conn_claim(r->slot) == 0) {
			/*
			 * libmicrohttpd 0.9.75 queues no response while a body is
			 * arriving, so a late body cannot be answered 408: the
			 * connection is closed without a word (as nginx does at
			 * client_body_timeout), and logged and counted as a 408.
			 */
			atomic_fetch_add(&s->metrics.rejected[REJ_REQUEST_TIMEOUT], 1);
			r->status = 408;
			return MHD_NO;
		}
		body_take(r, upload_data, *upload_data_size);
		*upload_data_size = 0;
		return MHD_YES;
	}
	if (r->turn_resp != NULL) { /* resumed: its answer's turn has come */
		struct MHD_Response *resp = r->turn_resp;
		r->turn_resp = NULL;
		return queue(r, 200, resp, r->turn_len);
	}
	if (r->refused != 0)
		return answer(r, r->refused, &r->why);
	return dispatch(r);
}

static int uri_too_long(const embd_server *s, const char *uri, size_t len)
{
	size_t args = 0;
	for (const char *q = strchr(uri, '?'); q != NULL; q = strchr(q + 1, '&'))
		args++;
	uint64_t mem = (uint64_t)s->cfg.connection_memory;
	return mem < URI_RESERVE || len + args * URI_ARG_COST > mem - URI_RESERVE;
}

/*
 * Answer a request target too long 414 in embd's JSON, at once: written on
 * the socket as the request line arrives (libmicrohttpd's pool may have no
 * room left for any answer's headers, and its own answer to headers that no
 * longer fit is a bare close), then the write side shut so that nothing
 * libmicrohttpd might try later reaches the client. The handler then closes
 * the connection without answering (on_request). Counted and logged here.
 */
static void refuse_uri(embd_server *s, struct conn_slot *slot, const char *uri, size_t len)
{
	slot->uri_len = len;
	/*
	 * Written here only on a socket with nothing still to send (a keep-alive
	 * connection's previous answer may fill its send buffer, and these bytes
	 * must go out whole): otherwise the handler answers it, as any refusal.
	 */
	int pending = 0;
	if (ioctl(slot->fd, SIOCOUTQ, &pending) != 0 || pending != 0) {
		slot->uri_refused = 2;
		return;
	}
	char msg[400], esc[480], body[640], out[900];
	snprintf(msg, sizeof msg, URI_MESSAGE_FMT, len, s->cfg.connection_memory, URI_RESERVE);
	embd_json_escape(esc, sizeof esc, msg);
	int n = snprintf(body, sizeof body, "{\"error\":{\"status\":414,\"code\":\"%s\",\"message\":\"%s\"}}\n",
	                 embd_error_code(EMBD_EURITOOLONG), esc);
	if (n < 0 || (size_t)n >= sizeof body)
		n = 0;
	char date[64];
	time_t now = time(NULL);
	struct tm tm;
	strftime(date, sizeof date, "%a, %d %b %Y %H:%M:%S GMT", gmtime_r(&now, &tm));
	int h = snprintf(out, sizeof out,
	                 "HTTP/1.1 414 URI Too Long\r\nDate: %s\r\nConnection: close\r\nContent-Type: "
	                 "application/json\r\nContent-Length: %d\r\n\r\n%.*s",
	                 date, n, n, body);
	slot->uri_refused = 1;
	embd_conn_claim(slot); /* answered: not a request still arriving, which the sweep would close and count 408 */
	/* One write: an empty send buffer takes these few hundred bytes whole. */
	if (h > 0 && (size_t)h < sizeof out)
		(void)send(slot->fd, out, (size_t)h, MSG_NOSIGNAL | MSG_DONTWAIT);
	shutdown(slot->fd, SHUT_WR);
	char path[256] = "";
	size_t plen = strcspn(uri, "?");
	const struct route *rt = NULL;
	if (plen < sizeof path) {
		memcpy(path, uri, plen);
		path[plen] = '\0';
		rt = embd_route_find(path);
	}
	embd_metrics_request(&s->metrics, rt != NULL ? rt->id : R_OTHER, 414, 0);
	if (s->cfg.log_access && embd_log_enabled(EMBD_LOG_INFO)) {
		char url[300];
		embd_log_safe(url, sizeof url, plen < sizeof path ? path : "-");
		embd_log(EMBD_LOG_INFO,
		         "access - %s 414 %d path=- copied=0 accounted=0 gen=0 0.000ms uri-too-long client=%s "
		         "query=(%zu bytes)",
		         url, n, slot->client, len - plen);
	}
}

/*
 * The request line has arrived: the request's deadline starts. uri is the
 * target as sent: its query string is kept for the access line (libmicrohttpd
 * hands the handler only the unescaped arguments).
 */
static void *on_uri(void *cls, const char *uri, struct MHD_Connection *c)
{
	embd_server *s = cls;
	struct conn_slot *slot = embd_conn_slot(c);
	embd_conn_receiving(slot, embd_now_ns());
	size_t len = strlen(uri);
	if (slot != NULL && uri_too_long(s, uri, len)) {
		refuse_uri(s, slot, uri, len);
		return NULL;
	}
	if (slot != NULL && s->cfg.log_access && embd_log_enabled(EMBD_LOG_INFO)) {
		const char *q = strchr(uri, '?');
		size_t n = q != NULL ? strlen(q + 1) : 0, cap = sizeof slot->query;
		if (n < cap)
			memcpy(slot->query, q != NULL ? q + 1 : "", n + 1);
		else
			snprintf(slot->query, cap, "%.*s...", (int)(cap - 4), q + 1);
	}
	return NULL;
}

void embd_http_sweep(embd_server *s)
{
	if (s->daemon == NULL)
		return;
	struct embd_send_rate rate = {(uint64_t)s->cfg.min_send_rate, (uint64_t)s->cfg.send_rate_window_s * 1000000000u,
	                              &s->metrics.rejected[REJ_MIN_SEND_RATE]};
	unsigned k = embd_conns_sweep(&s->conns, embd_now_ns(), (uint64_t)s->cfg.request_timeout_s * 1000000000u,
	                              (uint64_t)s->cfg.timeout_s * 1000000000u,
	                              &s->metrics.rejected[REJ_REQUEST_TIMEOUT], &rate);
	if (k != 0) {
		embd_log(EMBD_LOG_WARN, "%u request(s) still arriving after limits.request_timeout_s: closed", k);
	}
	embd_turns_sweep(&s->turns, embd_now_ns());
}

/*
 * libmicrohttpd's messages, at most one of a kind a second: some come once per
 * refused connection, and a flood of those must not become a flood of log
 * lines (each a write under the log's lock).
 */
static void mhd_log(void *cls, const char *fmt, va_list ap)
{
	static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
	static char last[512];
	static uint64_t last_ns;
	static unsigned long dropped;
	(void)cls;
	char line[512];
	vsnprintf(line, sizeof line, fmt, ap);
	size_t n = strlen(line);
	while (n > 0 && line[n - 1] == '\n')
		line[--n] = '\0';
	uint64_t now = embd_now_ns();
	pthread_mutex_lock(&lock);
	int same = strcmp(line, last) == 0 && now - last_ns < 1000000000u;
	unsigned long before = 0;
	if (same) {
		dropped++;
	} else {
		before = dropped;
		dropped = 0;
		memcpy(last, line, n + 1);
		last_ns = now;
	}
	pthread_mutex_unlock(&lock);
	if (same)
		return;
	if (before != 0)
		embd_log(EMBD_LOG_WARN, "libmicrohttpd: (%lu more of the message before)", before);
	embd_log(EMBD_LOG_WARN, "libmicrohttpd: %s", line);
}

/*
 * The listening socket, bound here rather than by libmicrohttpd, before the
 * matrix loads: a port in use is one error naming it at once (not, after a
 * table took seconds to load, libmicrohttpd's line about "port 0"), and the
 * port bound (listen.port 0: a free one) is known for the start-up line. As
 * libmicrohttpd would: SO_REUSEADDR (a restart binds while old connections
 * are in TIME_WAIT), IPv6 only on an IPv6 address, non-blocking (every
 * thread of the pool accepts), the system's largest backlog. The descriptor,
 * or -1 with msg.
 */
static int listen_socket(const struct sockaddr_storage *ss, socklen_t len, embd_server *s, char *msg, size_t cap)
{
	const embd_config *cfg = &s->cfg;
	int fd = socket(ss->ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0) {
		snprintf(msg, cap, "cannot listen on %s port %" PRId64 ": socket: %s", cfg->listen_address,
		         cfg->listen_port, strerror(errno));
		return -1;
	}
	int one = 1;
	(void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	if (ss->ss_family == AF_INET6)
		(void)setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
	struct sockaddr_storage bound;
	memset(&bound, 0, sizeof bound);
	socklen_t bound_len = sizeof bound;
	if (bind(fd, (const struct sockaddr *)ss, len) != 0 || listen(fd, SOMAXCONN) != 0 ||
	    getsockname(fd, (struct sockaddr *)&bound, &bound_len) != 0) {
		int err = errno;
		snprintf(msg, cap, "cannot listen on %s port %" PRId64 ": %s%s", cfg->listen_address, cfg->listen_port,
		         strerror(err),
		         err == EADDRINUSE      ? " (another process listens there: stop it, or choose --port)"
		         : err == EADDRNOTAVAIL ? " (not an address of this host)"
		                                : "");
		close(fd);
		return -1;
	}
	s->port = ntohs(bound.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&bound)->sin6_port
	                                            : ((struct sockaddr_in *)&bound)->sin_port);
	return fd;
}

/* Remove listen.unix's socket file if it is still the one this process bound (not one another daemon made since). */
static void unix_remove(embd_server *s)
{
	struct stat st;
	if (s->unix_bound && lstat(s->cfg.listen_unix, &st) == 0 && st.st_dev == s->unix_dev &&
	    st.st_ino == s->unix_ino)
		(void)unlink(s->cfg.listen_unix);
	s->unix_bound = 0;
}

/*
 * listen.unix's socket, bound here as the TCP one is (before the table
 * loads, so that a path in use is an error at once). A file already at the
 * path is looked at first: a socket nobody listens on (connect refused: a
 * daemon that died without removing it) is replaced; a socket someone listens
 * on (connect accepted, or its backlog full) is another process's, left to
 * it; anything else is refused and never unlinked. The socket is bound under
 * umask 0177 and then chmod'd to listen.unix_mode, so that its file is never
 * open wider than asked, even for a moment (the umask is the process's: no
 * other thread makes files this early). The descriptor, or -1 with msg.
 */
static int unix_socket(embd_server *s, char *msg, size_t cap)
{
	const char *path = s->cfg.listen_unix;
	char shown[320];
	embd_log_safe(shown, sizeof shown, path);
	struct sockaddr_un un;
	memset(&un, 0, sizeof un);
	un.sun_family = AF_UNIX;
	size_t len = strlen(path);
	if (len >= sizeof un.sun_path) {
		snprintf(msg, cap,
		         "listen.unix: '%s' is %zu bytes; a Unix socket's path holds at most %zu: choose a shorter "
		         "one",
		         shown, len, sizeof un.sun_path - 1);
		return -1;
	}
	memcpy(un.sun_path, path, len + 1);
	struct stat st;
	if (lstat(path, &st) == 0) {
		if (!S_ISSOCK(st.st_mode)) {
			snprintf(msg, cap, "cannot listen on unix:%s: it exists and is not a socket (left as it is)",
			         shown);
			return -1;
		}
		int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
		if (probe < 0) {
			snprintf(msg, cap, "cannot listen on unix:%s: socket: %s", shown, strerror(errno));
			return -1;
		}
		int rc = connect(probe, (const struct sockaddr *)&un, sizeof un), err = errno;
		close(probe);
		if (rc == 0 || err == EAGAIN) {
			snprintf(msg, cap,
			         "cannot listen on unix:%s: another process listens there (stop it, or choose another "
			         "--unix path)",
			         shown);
			return -1;
		}
		if (err != ECONNREFUSED) {
			snprintf(msg, cap, "cannot listen on unix:%s: %s", shown, strerror(err));
			return -1;
		}
		if (unlink(path) != 0 && errno != ENOENT) {
			snprintf(msg, cap, "cannot listen on unix:%s: removing the stale socket: %s", shown,
			         strerror(errno));
			return -1;
		}
		embd_log(EMBD_LOG_NOTICE, "unix:%s: replaced a stale socket (nothing listened on it)", shown);
	} else if (errno != ENOENT) {
		snprintf(msg, cap, "cannot listen on unix:%s: %s", shown, strerror(errno));
		return -1;
	}
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0) {
		snprintf(msg, cap, "cannot listen on unix:%s: socket: %s", shown, strerror(errno));
		return -1;
	}
	mode_t old = umask(0177);
	int rc = bind(fd, (const struct sockaddr *)&un, sizeof un), err = errno;
	umask(old);
	if (rc != 0) {
		snprintf(msg, cap, "cannot listen on unix:%s: %s%s", shown, strerror(err),
		         err == EADDRINUSE ? " (another process made it meanwhile)" : "");
		close(fd);
		return -1;
	}
	if (lstat(path, &st) == 0) {
		s->unix_bound = 1;
		s->unix_dev = st.st_dev;
		s->unix_ino = st.st_ino;
	}
	if (chmod(path, (mode_t)s->cfg.listen_unix_mode) != 0 || listen(fd, SOMAXCONN) != 0) {
		snprintf(msg, cap, "cannot listen on unix:%s: %s", shown, strerror(errno));
		close(fd);
		unix_remove(s);
		return -1;
	}
	return fd;
}

/* One libmicrohttpd daemon on the bound socket fd, with the options every listener of embd has. */
static struct MHD_Daemon *daemon_on(embd_server *s, unsigned flags, int fd, unsigned accepted, unsigned threads)
{
	const embd_config *cfg = &s->cfg;
	return MHD_start_daemon(flags, 0, NULL, NULL, on_request, s, MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL,
	                        MHD_OPTION_LISTEN_SOCKET, (MHD_socket)fd, MHD_OPTION_THREAD_POOL_SIZE, threads,
	                        MHD_OPTION_NOTIFY_COMPLETED, on_completed, s, MHD_OPTION_CONNECTION_LIMIT, accepted,
	                        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)cfg->timeout_s,
	                        MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)cfg->connection_memory,
	                        MHD_OPTION_UNESCAPE_CALLBACK, unescape, NULL, MHD_OPTION_NOTIFY_CONNECTION,
	                        embd_conns_notify, &s->conns, MHD_OPTION_URI_LOG_CALLBACK, on_uri, s, MHD_OPTION_END);
}

int embd_http_start(embd_server *s, char *msg, size_t cap)
{
	embd_config *cfg = &s->cfg;
	struct sockaddr_storage ss;
	memset(&ss, 0, sizeof ss);
	/* Past limits.connections, a surplus is accepted only to be refused at once (see conns.h). */
	unsigned limit = (unsigned)cfg->connections;
	unsigned surplus = limit / 8 > 16 ? limit / 8 : 16;
	unsigned accepted = limit + surplus;
	/*
	 * The reserve at the top of the budget: a request record per connection
	 * (with room for its JSON error body) and a health answer per connection,
	 * and a few metrics pages, so that every connection can be answered (if
	 * only with a 503) and /healthz and /metrics answer whatever the load,
	 * while the in-flight total never passes limits.inflight_bytes.
	 */
	uint64_t reserve = (uint64_t)accepted * (sizeof(struct req) + EMBD_HEALTHZ_BYTES) + 16 * embd_metrics_bound();
	if ((uint64_t)cfg->inflight_bytes < 2 * reserve) {
		snprintf(msg, cap,
		         "limits.inflight_bytes %" PRId64 " is too small for limits.connections %" PRId64
		         ": it needs at least twice the %" PRIu64
		         " bytes kept for the request records of %u connections "
		         "and for health and metrics answers",
		         cfg->inflight_bytes, cfg->connections, reserve, accepted);
		return -1;
	}
	embd_budget_set_reserve(&s->budget, reserve);
	if (embd_conns_init(&s->conns, limit, surplus, (unsigned)cfg->connections_per_ip, &s->metrics.connections,
	                    &s->metrics.rejected[REJ_CONNECTIONS_PER_IP]) != 0) {
		snprintf(msg, cap, "out of memory for %u connection slots", accepted);
		return -1;
	}
	if (embd_turns_init(&s->turns, (unsigned)cfg->large_responses, (uint64_t)cfg->large_response_bytes,
	                    EMBD_TURN_SLICE_NS, turn_suspend, turn_resume) != 0) {
		snprintf(msg, cap, "out of memory for %" PRId64 " large-response turns", cfg->large_responses);
		embd_conns_destroy(&s->conns);
		return -1;
	}
	/*
	 * poll(2), not epoll, in libmicrohttpd 0.9.75: its epoll loop takes at
	 * most 128 events per epoll_wait and, when it gets all 128, waits again
	 * with its full timeout before handling them; edge-triggered sockets do
	 * not report again, so a thread whose ready connections fill the batch
	 * (a full thread under load, or its clients all closing at once) slept
	 * until limits.timeout_s with work in hand (measured: wrk -c1000 against
	 * 512 connections, ~1,000 answers, then nothing for 30 s). And
	 * MHD_quiesce_daemon races a worker removing the listening socket from
	 * its epoll set (both delete it; the loser panics: "Failed to remove
	 * listen FD from epoll set", seen under SIGTERM during load). poll has
	 * neither, and measured as fast: single rows, wrk -c32, 3 interleaved
	 * rounds 111k/129k/118k req/s against epoll's 103k/123k/123k; -c1000 92k
	 * against 54k with 5 epoll threads.
	 */
	unsigned flags =
	    MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_POLL | MHD_USE_ITC | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG;
	struct sockaddr_in *v4 = (struct sockaddr_in *)&ss;
	struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)&ss;
	socklen_t ss_len;
	if (inet_pton(AF_INET, cfg->listen_address, &v4->sin_addr) == 1) {
		v4->sin_family = AF_INET;
		v4->sin_port = htons((uint16_t)cfg->listen_port);
		ss_len = sizeof *v4;
	} else if (inet_pton(AF_INET6, cfg->listen_address, &v6->sin6_addr) == 1) {
		v6->sin6_family = AF_INET6;
		v6->sin6_port = htons((uint16_t)cfg->listen_port);
		ss_len = sizeof *v6;
		flags |= MHD_USE_IPv6;
	} else {
		snprintf(msg, cap, "listen.address: '%s' is not an IPv4 or IPv6 address", cfg->listen_address);
		embd_turns_destroy(&s->turns);
		embd_conns_destroy(&s->conns);
		return -1;
	}
	int fd = listen_socket(&ss, ss_len, s, msg, cap);
	int ufd = fd >= 0 && cfg->listen_unix[0] != '\0' ? unix_socket(s, msg, cap) : -2;
	if (fd < 0 || ufd == -1) {
		if (fd >= 0)
			close(fd);
		embd_turns_destroy(&s->turns);
		embd_conns_destroy(&s->conns);
		return -1;
	}
	unsigned threads = (unsigned)cfg->threads;
	if (threads == 0) {
		long n = sysconf(_SC_NPROCESSORS_ONLN);
		threads = n > 0 ? (unsigned)n : 1;
	}
	s->daemon = daemon_on(s, flags, fd, accepted, threads);
	if (s->daemon == NULL) {
		/* The socket is not closed here: libmicrohttpd may have closed it already (the process exits anyway).
		 */
		snprintf(msg, cap, "cannot start libmicrohttpd on %s port %u", cfg->listen_address, s->port);
		if (ufd >= 0)
			close(ufd);
		unix_remove(s);
		embd_turns_destroy(&s->turns);
		embd_conns_destroy(&s->conns);
		return -1;
	}
	/*
	 * The Unix socket's daemon: its own threads (a slow reader on one side
	 * never holds a thread of the other), the same table of connections, so
	 * that limits.connections counts both. No MHD_USE_IPv6: not an IP socket.
	 */
	if (ufd >= 0) {
		s->daemon_unix = daemon_on(s, flags & ~(unsigned)MHD_USE_IPv6, ufd, accepted, threads);
		if (s->daemon_unix == NULL) {
			char shown[320];
			embd_log_safe(shown, sizeof shown, cfg->listen_unix);
			snprintf(msg, cap, "cannot start libmicrohttpd on unix:%s", shown);
			MHD_stop_daemon(s->daemon);
			close(fd);
			s->daemon = NULL;
			unix_remove(s);
			embd_turns_destroy(&s->turns);
			embd_conns_destroy(&s->conns);
			return -1;
		}
	}
	return 0;
}

int embd_http_stop(embd_server *s, unsigned deadline_s)
{
	if (s->daemon == NULL)
		return 0;
	/* Stop accepting, let the requests in flight finish (up to the deadline), then close everything. */
	MHD_socket listen_fd = MHD_quiesce_daemon(s->daemon);
	/* Quiescing leaves the socket listening: the kernel would still complete handshakes into its backlog.
	 * shutdown() makes new connects fail at once; the fd itself may only be closed after MHD_stop_daemon. */
	if (listen_fd != MHD_INVALID_SOCKET)
		shutdown(listen_fd, SHUT_RDWR);
	/*
	 * The Unix socket likewise, and its file goes now: a client finds none
	 * (as after the exit), and a new embd may bind the path while this one
	 * drains (unix_remove leaves a file that is no longer ours).
	 */
	MHD_socket unix_fd = s->daemon_unix != NULL ? MHD_quiesce_daemon(s->daemon_unix) : MHD_INVALID_SOCKET;
	if (unix_fd != MHD_INVALID_SOCKET)
		shutdown(unix_fd, SHUT_RDWR);
	unix_remove(s);
	uint64_t end = embd_now_ns() + (uint64_t)deadline_s * 1000000000u;
	/*
	 * Vector operations stop between blocks (each is answered 503
	 * shutting_down, or dropped if its client has gone), so that none holds
	 * the drain for longer than a block; the pool resumes every connection it
	 * suspended before it returns.
	 */
	embd_compute_stop(&s->compute);
	/*
	 * Answers waiting for a turn are sent during the drain. Both stop before
	 * the wait for a reload below, which may last the whole deadline: a
	 * waiting answer must not wait it out behind a stalled reader's turn.
	 */
	embd_turns_stop(&s->turns);
	/*
	 * The reloader resumes the suspended connection of the admin reload it
	 * answers: once it has stopped (or given up on a load stuck past the
	 * deadline, answering its client), nothing resumes a connection of this
	 * daemon any more, and it may be stopped.
	 */
	int rc = embd_reloader_stop(&s->reloader, end);
	if (rc != 0)
		embd_log(EMBD_LOG_ERROR,
		         "shutdown deadline (%u s) passed with a reload still opening its file: "
		         "abandoned it",
		         deadline_s);
	/* The request deadlines hold during the drain too: a body that stalls is cut at its deadline, not at ours. */
	while (atomic_load(&s->requests_live) > 0 && embd_now_ns() < end) {
		embd_http_sweep(s);
		struct timespec ts = {0, 10000000};
		nanosleep(&ts, NULL);
	}
	long left = atomic_load(&s->requests_live);
	if (left > 0)
		embd_log(EMBD_LOG_WARN, "shutdown deadline (%u s) passed with %ld requests in flight: closing them",
		         deadline_s, left);
	MHD_stop_daemon(s->daemon);
	if (listen_fd != MHD_INVALID_SOCKET)
		close(listen_fd);
	s->daemon = NULL;
	if (s->daemon_unix != NULL)
		MHD_stop_daemon(s->daemon_unix);
	if (unix_fd != MHD_INVALID_SOCKET)
		close(unix_fd);
	s->daemon_unix = NULL;
	embd_turns_destroy(&s->turns);
	embd_conns_destroy(&s->conns);
	return rc;
}
