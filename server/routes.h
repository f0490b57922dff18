/* The route table: each route's path, id, metrics name, methods and handler, named once here. */
#ifndef EMBD_ROUTES_H
#define EMBD_ROUTES_H

#include "error.h"

/* One per route, and R_OTHER for requests no route took (unknown paths, malformed requests). */
enum route_id { R_INFO, R_ROW, R_ROWS, R_HEALTHZ, R_METRICS, R_ADMIN, R_OTHER, R_COUNT };

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
typedef int (*handler_fn)(struct req *r, embd_err *e);

struct route {
	const char *path; /* exact path, or a prefix when prefix is set */
	int prefix;
	enum route_id id;
	const char *name; /* the route label of embd_requests_total */
	unsigned methods; /* bit (1 << enum method) */
	handler_fn fn;
};

/* The route for url; NULL: no such path. */
const struct route *embd_route_find(const char *url);

/* The metrics name of a route id ("rows", ..., "other"). */
const char *embd_route_name(enum route_id id);

#endif
