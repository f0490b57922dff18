/* Error codes of libembd: one table gives each its message, JSON code and HTTP status. */
#ifndef EMBD_ERROR_H
#define EMBD_ERROR_H

#include <stddef.h>

/*
 * X(name, value, http status, JSON code, default message).
 * lib functions return 0 or a negative code from this table; system errors
 * pass through as -errno (which is never in this range: see EMBD_EBASE).
 */
#define EMBD_ERRORS(X)                                                                                                 \
	X(EMBD_EBADREQ, 1, 400, "bad_request", "malformed request")                                                    \
	X(EMBD_EBADID, 2, 400, "bad_id", "ids must be non-negative decimal integers")                                  \
	X(EMBD_ERANGE, 3, 400, "id_out_of_range", "id out of range")                                                   \
	X(EMBD_EBADSLICE, 4, 400, "bad_slice", "bad slice")                                                            \
	X(EMBD_EJSON, 5, 400, "bad_json", "malformed JSON")                                                            \
	X(EMBD_EJSONTYPE, 6, 400, "wrong_json_type", "wrong JSON type")                                                \
	X(EMBD_EEMPTY, 7, 400, "empty_batch", "the batch names no ids")                                                \
	X(EMBD_EBADPARAM, 8, 400, "bad_parameter", "bad query parameter")                                              \
	X(EMBD_EBADBODY, 9, 400, "bad_body", "malformed request body")                                                 \
	X(EMBD_ENOTFOUND, 10, 404, "not_found", "no such path")                                                        \
	X(EMBD_ENOROW, 11, 404, "row_not_found", "no such row")                                                        \
	X(EMBD_EMETHOD, 12, 405, "method_not_allowed", "method not allowed")                                           \
	X(EMBD_EACCEPT, 13, 406, "not_acceptable", "no acceptable response format")                                    \
	X(EMBD_ETOOBIG, 14, 413, "request_too_large", "over the per-request memory limit")                             \
	X(EMBD_ETOOMANYIDS, 15, 413, "too_many_ids", "too many ids")                                                   \
	X(EMBD_EBODYTOOBIG, 16, 413, "body_too_large", "request body too large")                                       \
	X(EMBD_EMEDIATYPE, 17, 415, "unsupported_media_type", "unsupported Content-Type")                              \
	X(EMBD_EBUSY, 18, 503, "overloaded", "the in-flight memory budget is exhausted")                               \
	X(EMBD_ENOMEM, 19, 503, "out_of_memory", "out of memory")                                                      \
	X(EMBD_EFORMAT, 20, 500, "bad_matrix_file", "malformed matrix file")                                           \
	X(EMBD_ETRUNC, 21, 500, "truncated_file", "file is truncated")                                                 \
	X(EMBD_EDTYPE, 22, 500, "unsupported_dtype", "unsupported dtype")                                              \
	X(EMBD_EOVERFLOW, 23, 500, "size_overflow", "size overflows")                                                  \
	X(EMBD_ECONFIG, 24, 500, "bad_config", "bad configuration")                                                    \
	X(EMBD_EINTERNAL, 25, 500, "internal", "internal error")                                                       \
	X(EMBD_ETIMEOUT, 28, 408, "request_timeout", "the request did not arrive in time")                             \
	X(EMBD_EUNAUTH, 26, 401, "unauthorized", "a valid bearer token is required")                                   \
	X(EMBD_ERELOAD, 27, 500, "reload_failed", "the reload failed; the current matrix still serves")                \
	X(EMBD_EVOCAB, 29, 500, "bad_vocabulary", "malformed vocabulary")                                              \
	X(EMBD_ETOKEN, 30, 404, "token_not_found", "token not in the vocabulary")                                      \
	X(EMBD_EBADTOKEN, 31, 400, "bad_token", "tokens must be non-empty UTF-8 without NUL")                          \
	X(EMBD_ENOVOCAB, 32, 400, "no_vocabulary", "the matrix has no vocabulary")                                     \
	X(EMBD_EBADVECTOR, 33, 400, "bad_vector", "query vectors must have dim finite float32 numbers")                \
	X(EMBD_EUNKNOWNFORMAT, 34, 400, "unknown_format", "the file's format is not recognised: name it")              \
	X(EMBD_ETOOMUCHWORK, 40, 413, "too_much_work", "the work asked for is over limits.work")                       \
	X(EMBD_ECOMPUTEBUSY, 41, 503, "compute_busy", "the compute queue is full")                                     \
	X(EMBD_EDEADLINE, 42, 503, "deadline_exceeded", "the work did not finish within compute.timeout_s")            \
	X(EMBD_ESHUTDOWN, 43, 503, "shutting_down", "the server is shutting down")                                     \
	X(EMBD_ECANCELED, 44, 499, "client_closed", "the client closed the connection")                                \
	X(EMBD_ETOOMANYCONNS, 45, 503, "too_many_connections", "too many connections from this address")               \
	X(EMBD_ENOTAPPLICABLE, 50, 400, "not_applicable", "an option the file's format does not use was given")        \
	X(EMBD_ELOADING, 51, 503, "loading", "the matrix is still loading")                                            \
	X(EMBD_EURITOOLONG, 56, 414, "uri_too_long", "the request target does not fit in limits.connection_memory")

/* Codes start above every errno value so that -errno passes through unambiguously. */
#define EMBD_EBASE 10000

enum embd_error {
#define EMBD_X_ENUM(name, value, status, code, message) name = -(EMBD_EBASE + (value)),
	EMBD_ERRORS(EMBD_X_ENUM)
#undef EMBD_X_ENUM
};

/* Default message for err (an EMBD_E code or -errno). Never NULL; static storage. */
const char *embd_strerror(int err);

/* JSON code string for err; "internal" for -errno values. Never NULL. */
const char *embd_error_code(int err);

/* HTTP status for err; 500 for -errno values (503 for -ENOMEM). */
int embd_error_status(int err);

/*
 * A detailed message that goes with an error code. Functions that can say
 * more than the table's default take an optional embd_err * (may be NULL).
 */
typedef struct embd_err {
	char msg[512];
} embd_err;

/* Format into e->msg (no-op when e is NULL). Returns code, so `return embd_err_set(e, CODE, ...)`. */
int embd_err_set(embd_err *e, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

#endif
