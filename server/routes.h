/* The route table: each route's path, id, metrics name, methods and handler, named once here. */
#ifndef EMBD_ROUTES_H
#define EMBD_ROUTES_H

#include "error.h"

/* One per route, and R_OTHER for requests no route took (unknown paths, malformed requests). */
enum route_id {
	R_INFO,
	R_ROW,
	R_ROWS,
	R_SIMILAR,
	R_SIMILARITY,
	R_POOL,
	R_HEALTHZ,
	R_METRICS,
	R_ADMIN,
	R_OTHER,
	R_COUNT
};

enum method { M_GET, M_HEAD, M_POST, M_OTHER };

struct req;

/*
 * A handler builds its answer in the request (r->resp, r->type, r->status)
 * and returns 0, or returns an EMBD_E code with e saying why, and the
 * dispatcher answers once, at its exit: the body, or the JSON error. A
 * handler whose work goes on elsewhere while its connection is suspended
 * returns EMBD_PENDING and is called again when the connection resumes.
 */
#define EMBD_PENDING 1
/* A handler's answer for a client known to be gone: the connection is closed without one (logged 499). */
#define EMBD_DROP 2
typedef int (*handler_fn)(struct req *r, embd_err *e);

struct route {
	const char *path; /* exact path, or a prefix when prefix is set */
	int prefix;
	enum route_id id;
	const char *name; /* the route label of embd_requests_total */
	unsigned methods; /* bit (1 << enum method) */
	handler_fn fn;
};

/*
 * What the handlers share (server/routes.c), for handlers in other files
 * (server/vector.c). Each returns 0 or an EMBD_E code with e set.
 */
#include <jansson.h>
#include <stdint.h>

#include "resp.h"

/* Refuse query parameters not in allowed (NULL-terminated): 400 bad_parameter naming them. */
int route_check_params(struct req *r, const char *const *allowed, embd_err *e);
/* A small JSON answer: v (stolen) as the body. */
int route_json_answer(struct req *r, json_t *v, embd_err *e);
/* The parameters of a rows answer (params allowed; format, Accept, dtype, normalize) into q; stored: the rows' dtype.
 */
int route_rows_opts(struct req *r, const char *const *params, embd_dtype stored, embd_rows_query *q, embd_err *e);
/* The rows of q, read from m (kept alive by the caller until the response is done), as the body. */
int route_rows_answer(struct req *r, const embd_matrix_info *m, const embd_rows_query *q, embd_err *e);
/* A decimal, non-negative query integer: 0 and *out, 1 when absent, or EMBD_EBADSLICE. */
int route_arg_u64(struct req *r, const char *name, uint64_t *out, embd_err *e);
/* 413 too_many_ids when n is over limits.max_ids (counted); who names them ("the body"), what they are. */
int route_check_max_ids(struct req *r, size_t n, const char *who, const char *what, embd_err *e);

/* The route for url; NULL: no such path. */
const struct route *embd_route_find(const char *url);

/* The metrics name of a route id ("rows", ..., "other"). */
const char *embd_route_name(enum route_id id);

#endif
