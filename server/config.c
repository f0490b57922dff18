/* The configuration table, the JSON file reader, flag setting and --help. */
#include "config.h"

#include <errno.h>
#include <jansson.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "encode.h"
#include "matrix.h"

enum type { T_STR, T_INT, T_SIZE, T_BOOL, T_MODE };

struct key {
	const char *name;  /* dotted: section.key */
	const char *alias; /* short flag name, or NULL */
	enum type type;
	size_t offset;
	size_t size; /* T_STR: buffer size */
	const char *def;
	int64_t min, max;
	const char *doc;
	/* T_STR with a fixed set of values: the list (for --help and errors) and whether value is one of them. */
	size_t (*choices)(char *buf, size_t cap);
	int (*accepts)(const char *value);
};

#define STR(name, alias, field, def, doc)                                                                              \
	{                                                                                                              \
		name, alias, T_STR, offsetof(embd_config, field), sizeof(((embd_config *)0)->field), def, 0, 0, doc,   \
		    NULL, NULL                                                                                         \
	}
#define INT(name, alias, field, def, min, max, doc)                                                                    \
	{                                                                                                              \
		name, alias, T_INT, offsetof(embd_config, field), 0, def, min, max, doc, NULL, NULL                    \
	}
#define SIZE(name, alias, field, def, min, doc)                                                                        \
	{                                                                                                              \
		name, alias, T_SIZE, offsetof(embd_config, field), 0, def, min, INT64_MAX, doc, NULL, NULL             \
	}
#define CHOICE(name, alias, field, def, choices, accepts, doc)                                                         \
	{                                                                                                              \
		name, alias, T_STR, offsetof(embd_config, field), sizeof(((embd_config *)0)->field), def, 0, 0, doc,   \
		    choices, accepts                                                                                   \
	}
/* Permissions, in octal as chmod(1) takes them ("0660"); a string in the JSON file, which has no octal numbers. */
#define MODE(name, alias, field, def, doc)                                                                             \
	{                                                                                                              \
		name, alias, T_MODE, offsetof(embd_config, field), 0, def, 0, 0777, doc, NULL, NULL                    \
	}
#define BOOL(name, alias, field, def, doc)                                                                             \
	{                                                                                                              \
		name, alias, T_BOOL, offsetof(embd_config, field), 0, def, 0, 1, doc, NULL, NULL                       \
	}

/* matrix.format takes the names of the format table (lib/format.c), which owns them. */
static int format_accepts(const char *value)
{
	embd_format f;
	return embd_format_parse(value, &f) == 0;
}

static const struct key keys[] = {
    STR("listen.address", "listen", listen_address, "127.0.0.1",
        "address to bind (IPv4 or IPv6 literal); 0.0.0.0 exposes the daemon to the network"),
    INT("listen.port", "port", listen_port, "8080", 0, 65535, "TCP port; 0 picks a free one and prints it"),
    STR("listen.unix", "unix", listen_unix, "",
        "also serve on this Unix-domain socket path (same-host clients: no TCP cost); a stale socket file is "
        "replaced, a live one or any other file is refused; removed at shutdown; at most 107 bytes (a socket "
        "address's limit); empty: none"),
    MODE("listen.unix_mode", NULL, listen_unix_mode, "0660",
         "permissions of the listen.unix socket file, octal (connecting needs write permission)"),
    INT("listen.threads", "threads", threads, "0", 0, 256, "request threads; 0: one per core"),
    STR("matrix.path", "matrix", matrix_path, "",
        "matrix file: .npy, .safetensors, GloVe .txt, word2vec/fastText .vec, word2vec .bin, or raw with "
        "matrix.dim and matrix.dtype; empty: the built-in demo matrix"),
    CHOICE("matrix.format", "format", matrix_format, "auto", embd_format_names, format_accepts,
           "the file's format; auto: by magic bytes, then the first line, then the name (.npy, .safetensors; "
           "raw if matrix.dim is given; .txt, .vec, .bin) (demo: the built-in matrix, no file)"),
    STR("matrix.vocab", "vocab", matrix_vocab, "",
        "vocabulary file for ?tokens=: one token per line, line i names row i (npy, safetensors, raw); "
        "GloVe and word2vec files carry their own words; empty: none"),
    STR("matrix.tensor", "tensor", matrix_tensor, "",
        "safetensors: the name of the tensor to serve; empty: the file's only 2-D tensor"),
    INT("matrix.rows", "rows", matrix_rows, "0", 0, INT64_MAX, "raw only: rows; 0: as many as the file holds"),
    INT("matrix.dim", "dim", matrix_dim, "0", 0, INT64_MAX, "raw only: elements per row"),
    STR("matrix.dtype", "dtype", matrix_dtype, "", "raw only: f32 | f16 | bf16; empty: f32"),
    SIZE("matrix.offset", "offset", matrix_offset, "0", 0, "raw only: bytes to skip before row 0"),
    BOOL("matrix.populate", "populate", matrix_populate, "false",
         "fault every page in at start-up (MAP_POPULATE) instead of on first use"),
    BOOL("matrix.mlock", "mlock", matrix_mlock, "false", "lock the matrix in RAM (needs RLIMIT_MEMLOCK)"),
    STR("matrix.advice", "advice", matrix_advice, "normal", "madvise hint: normal | random | willneed | sequential"),
    SIZE("limits.request_bytes", NULL, request_bytes, "64MiB", 4096,
         "memory one request may hold (body, ids, buffers); more: 413"),
    SIZE("limits.inflight_bytes", NULL, inflight_bytes, "512MiB", 4096,
         "memory all requests in flight may hold together; more: 503 with Retry-After"),
    INT("limits.max_ids", NULL, max_ids, "65536", 1, INT64_MAX, "ids one request may name; more: 413"),
    SIZE("limits.max_body_bytes", NULL, max_body_bytes, "16MiB", 1,
         "largest request body; a larger Content-Length is refused (413) before the body is read"),
    INT("limits.connections", NULL, connections, "512", 1, 1000000,
        "concurrent connections served; past it, a surplus (an eighth more, at least 16) is answered 503 and "
        "closed at once"),
    INT("limits.connections_per_ip", NULL, connections_per_ip, "128", 0, 1000000,
        "concurrent connections from one IP address, so that one client cannot take them all (the excess is "
        "answered 503 too_many_connections and closed); 0: no limit"),
    SIZE("limits.connection_memory", NULL, connection_memory, "32KiB", 8192,
         "libmicrohttpd's per-connection buffer: the request line, its headers and the answer's headers must "
         "fit; a target longer than it less 2KiB is answered 414 uri_too_long (32KiB: ?ids= of at most 4,377 "
         "six-digit ids: POST larger batches), past all of it libmicrohttpd answers 414 or 431 itself; it is zeroed "
         "between requests, and over 32KiB it is mmap'd afresh for every connection"),
    INT("limits.timeout_s", NULL, timeout_s, "30", 0, 86400, "idle connection timeout, seconds; 0: none"),
    INT("limits.request_timeout_s", NULL, request_timeout_s, "20", 0, 86400,
        "a request (line, headers, body) must arrive within this many seconds of its first line (slowloris), or "
        "its connection is closed without an answer (libmicrohttpd can queue none while a body arrives; nginx "
        "too closes without a word), logged and counted as a 408; 0: no limit"),
    INT("limits.retry_after_s", NULL, retry_after_s, "1", 0, 3600, "Retry-After on 503 answers, seconds"),
    INT("limits.shutdown_s", NULL, shutdown_s, "10", 0, 3600,
        "on SIGTERM/SIGINT: seconds to let requests in flight finish before closing them"),
    INT("compute.threads", NULL, compute_threads, "0", 0, 256,
        "threads of the compute pool that runs similarity, pooling and norms (never the request threads); 0: "
        "one per core"),
    INT("compute.queue", NULL, compute_queue, "16", 1, 100000,
        "vector operations admitted at once (queued or running); more: 503 compute_busy with Retry-After"),
    SIZE("compute.inflight_bytes", NULL, compute_inflight_bytes, "256MiB", 0,
         "memory the vector operations admitted at once may hold together (charged up front, while queued), so "
         "that lookups keep the rest of limits.inflight_bytes; more: 503 compute_busy; 0: no limit"),
    INT("compute.timeout_s", NULL, compute_timeout_s, "30", 0, 86400,
        "a vector operation not finished this many seconds after it was admitted is stopped and answered 503 "
        "deadline_exceeded; 0: no limit"),
    INT("compute.nice", NULL, compute_nice, "10", 0, 19,
        "added to the compute threads' nice value, so that lookups run first when every core is busy"),
    SIZE("limits.work", NULL, work, "64G", 1,
         "multiply-adds one vector operation may ask for (queries x rows x dim for a search); more: 413 "
         "too_much_work before anything runs (suffixes count in powers of 2: 64G = 2^36)"),
    INT("limits.generations", NULL, generations, "3", 2, 16,
        "matrix generations alive at once: the current one, one kept for its readers, one draining; a reload "
        "past it first waits for the oldest one's readers (limits.generation_drain_s)"),
    INT("limits.generation_drain_s", NULL, generation_drain_s, "30", 0, 3600,
        "a reload past limits.generations waits this many seconds for the oldest generation's readers, then "
        "closes their connections and loads"),
    SIZE("limits.min_send_rate", NULL, min_send_rate, "1KiB", 0,
         "bytes a second a client must take a response at, averaged over limits.send_rate_window_s; slower: "
         "its connection is closed; 0: no minimum"),
    INT("limits.send_rate_window_s", NULL, send_rate_window_s, "30", 1, 3600,
        "the window limits.min_send_rate is averaged over, seconds"),
    INT("limits.large_responses", NULL, large_responses, "8", 0, 1000000,
        "large responses sent at once; the others wait in line, first come first served, so that none "
        "overtakes another (a turn held past 0.25 s goes to the next in line); 0: all at once"),
    SIZE("limits.large_response_bytes", NULL, large_response_bytes, "4MiB", 1,
         "from this many body bytes, a response is large (limits.large_responses)"),
    INT("plan.iov_max_segments", NULL, iov_max_segments, "256", 1, 1024,
        "scattered runs sent zero-copy as an I/O vector at most; more runs are gathered "
        "(loadtest/results/iov_threshold.md)"),
    SIZE("plan.iov_min_run_bytes", NULL, iov_min_run_bytes, "3KiB", 0,
         "mean bytes per run below which scattered runs are gathered rather than sent as an I/O vector"),
    SIZE("plan.pool_bytes", NULL, pool_bytes, "128MiB", 0,
         "idle request buffers kept warm for reuse (not charged to requests)"),
    STR("admin.token_file", "admin-token-file", admin_token_file, "",
        "file holding the bearer token for /v1/admin/*; empty: the admin endpoints are off"),
    BOOL("log.access", "access-log", log_access, "true", "one access-log line per request"),
    STR("log.file", "log-file", log_file, "", "log file; empty: standard error"),
    STR("log.level", "log-level", log_level, "info",
        "error, warn, notice (start, reloads, stop) or info (also one line per request)"),
};

#define NKEYS (sizeof keys / sizeof keys[0])

static const struct key *find(const char *name)
{
	for (size_t i = 0; i < NKEYS; i++)
		if (strcmp(keys[i].name, name) == 0 || (keys[i].alias != NULL && strcmp(keys[i].alias, name) == 0))
			return &keys[i];
	return NULL;
}

/* "64MiB", "4096", "1G": bytes. Returns 0 or -1. */
static int parse_size(const char *s, int64_t *out)
{
	errno = 0;
	char *end;
	long long v = strtoll(s, &end, 10);
	if (end == s || errno != 0 || v < 0)
		return -1;
	static const struct {
		const char *suffix;
		int shift;
	} units[] = {{"", 0},    {"B", 0},  {"K", 10},   {"KiB", 10}, {"KB", 10}, {"M", 20},   {"MiB", 20},
	             {"MB", 20}, {"G", 30}, {"GiB", 30}, {"GB", 30},  {"T", 40},  {"TiB", 40}, {"TB", 40}};
	for (size_t i = 0; i < sizeof units / sizeof units[0]; i++) {
		if (strcmp(end, units[i].suffix) == 0) {
			if (v > (INT64_MAX >> units[i].shift))
				return -1;
			*out = (int64_t)v << units[i].shift;
			return 0;
		}
	}
	return -1;
}

static int set_text(embd_config *c, const struct key *k, const char *value, char *msg, size_t cap)
{
	char *field = (char *)c + k->offset;
	int64_t v;
	switch (k->type) {
	case T_STR:
		if (strlen(value) >= k->size) {
			snprintf(msg, cap, "%s: longer than %zu bytes", k->name, k->size - 1);
			return -1;
		}
		if (k->accepts != NULL && !k->accepts(value)) {
			char list[256];
			k->choices(list, sizeof list);
			snprintf(msg, cap, "%s: '%s' is not one of %s", k->name, value, list);
			return -1;
		}
		memcpy(field, value, strlen(value) + 1);
		return 0;
	case T_BOOL:
		if (strcmp(value, "true") == 0 || strcmp(value, "1") == 0 || strcmp(value, "yes") == 0)
			*(int *)field = 1;
		else if (strcmp(value, "false") == 0 || strcmp(value, "0") == 0 || strcmp(value, "no") == 0)
			*(int *)field = 0;
		else {
			snprintf(msg, cap, "%s: '%s' is not true or false", k->name, value);
			return -1;
		}
		return 0;
	case T_MODE: {
		/* Octal digits only, as chmod(1) takes them: "660" and "0660" alike, never a sign or a suffix. */
		char *end;
		errno = 0;
		long long m = value[0] >= '0' && value[0] <= '7' ? strtoll(value, &end, 8) : -1;
		if (m < 0 || *end != '\0' || errno != 0 || m > k->max) {
			snprintf(msg, cap, "%s: '%s' is not a permission mode (octal, 0000 to 0777, e.g. 0660)",
			         k->name, value);
			return -1;
		}
		*(int64_t *)field = m;
		return 0;
	}
	case T_INT:
	case T_SIZE: {
		int bad;
		if (k->type == T_SIZE) {
			bad = parse_size(value, &v) != 0;
		} else {
			char *end;
			errno = 0;
			long long ll = strtoll(value, &end, 10);
			bad = end == value || *end != '\0' || errno != 0;
			v = ll;
		}
		if (bad) {
			snprintf(msg, cap, "%s: '%s' is not %s", k->name, value,
			         k->type == T_SIZE ? "a size (bytes, or with K/M/G/T or KiB/MiB/GiB/TiB)"
			                           : "an integer");
			return -1;
		}
		if (v < k->min || v > k->max) {
			snprintf(msg, cap, "%s: %lld is outside [%lld, %lld]", k->name, (long long)v, (long long)k->min,
			         (long long)k->max);
			return -1;
		}
		*(int64_t *)field = v;
		return 0;
	}
	}
	return -1;
}

void embd_config_defaults(embd_config *c)
{
	char msg[256];
	memset(c, 0, sizeof *c);
	for (size_t i = 0; i < NKEYS; i++)
		if (set_text(c, &keys[i], keys[i].def, msg, sizeof msg) != 0)
			abort(); /* a default that does not parse is a bug in the table */
}

int embd_config_set(embd_config *c, const char *name, const char *value, char *msg, size_t cap)
{
	const struct key *k = find(name);
	if (k == NULL) {
		snprintf(msg, cap, "unknown option '%s' (see --help)", name);
		return -1;
	}
	return set_text(c, k, value, msg, cap);
}

int embd_config_known(const char *name, int *is_bool)
{
	const struct key *k = find(name);
	if (k != NULL && is_bool != NULL)
		*is_bool = k->type == T_BOOL;
	return k != NULL;
}

static int load_value(embd_config *c, const char *path, const struct key *k, json_t *v, char *msg, size_t cap)
{
	char text[64];
	const char *s = text;
	int ok = 1;
	switch (k->type) {
	case T_STR:
		ok = json_is_string(v);
		if (ok)
			s = json_string_value(v);
		break;
	case T_BOOL:
		ok = json_is_boolean(v);
		if (ok)
			s = json_is_true(v) ? "true" : "false";
		break;
	case T_INT:
		ok = json_is_integer(v);
		if (ok)
			snprintf(text, sizeof text, "%lld", (long long)json_integer_value(v));
		break;
	case T_MODE: /* a string: JSON has no octal numbers, and 660 read as decimal would be another mode */
		ok = json_is_string(v);
		if (ok)
			s = json_string_value(v);
		break;
	case T_SIZE:
		if (json_is_integer(v))
			snprintf(text, sizeof text, "%lld", (long long)json_integer_value(v));
		else if (json_is_string(v))
			s = json_string_value(v);
		else
			ok = 0;
		break;
	}
	if (!ok) {
		static const char *const want[] = {"a string", "an integer", "a size (integer or \"64MiB\")",
		                                   "true or false", "an octal mode as a string (\"0660\")"};
		snprintf(msg, cap, "%s: %s: must be %s", path, k->name, want[k->type]);
		return -1;
	}
	char why[256];
	if (set_text(c, k, s, why, sizeof why) != 0) {
		snprintf(msg, cap, "%s: %s", path, why);
		return -1;
	}
	return 0;
}

static int load_object(embd_config *c, const char *path, const char *prefix, json_t *obj, char *msg, size_t cap)
{
	const char *name;
	json_t *v;
	json_object_foreach(obj, name, v)
	{
		char full[256];
		snprintf(full, sizeof full, "%s%s%s", prefix, *prefix ? "." : "", name);
		const struct key *k = NULL;
		for (size_t i = 0; i < NKEYS; i++)
			if (strcmp(keys[i].name, full) == 0)
				k = &keys[i];
		if (k != NULL) {
			if (load_value(c, path, k, v, msg, cap) != 0)
				return -1;
		} else if (json_is_object(v) && *prefix == '\0') {
			if (load_object(c, path, full, v, msg, cap) != 0)
				return -1;
		} else if (strcmp(full, "_comment") != 0 && strncmp(name, "_", 1) != 0) {
			snprintf(msg, cap, "%s: %s: unknown key (see embd serve --help)", path, full);
			return -1;
		}
	}
	return 0;
}

int embd_config_load(embd_config *c, const char *path, char *msg, size_t cap)
{
	json_error_t err;
	json_t *root = json_load_file(path, JSON_REJECT_DUPLICATES, &err);
	if (root == NULL) {
		if (err.line > 0)
			snprintf(msg, cap, "%s:%d:%d: %s", path, err.line, err.column, err.text);
		else
			snprintf(msg, cap, "%s: %s", path, err.text);
		return -1;
	}
	int rc = -1;
	if (!json_is_object(root))
		snprintf(msg, cap, "%s: the top level must be an object", path);
	else
		rc = load_object(c, path, "", root, msg, cap);
	json_decref(root);
	return rc;
}

void embd_config_help(FILE *out)
{
	for (size_t i = 0; i < NKEYS; i++) {
		const struct key *k = &keys[i];
		char flag[96];
		if (k->alias != NULL)
			snprintf(flag, sizeof flag, "--%s, --%s", k->alias, k->name);
		else
			snprintf(flag, sizeof flag, "--%s", k->name);
		char list[256] = "";
		if (k->choices != NULL) {
			snprintf(list, sizeof list, "; one of ");
			k->choices(list + strlen(list), sizeof list - strlen(list));
		}
		fprintf(out, "  %-38s %s%s (default: %s)\n", flag, k->doc, list, *k->def ? k->def : "\"\"");
	}
}

void embd_config_dump(const embd_config *c, FILE *out)
{
	json_t *root = json_object();
	for (size_t i = 0; i < NKEYS; i++) {
		const struct key *k = &keys[i];
		char section[64];
		const char *dot = strchr(k->name, '.');
		snprintf(section, sizeof section, "%.*s", (int)(dot - k->name), k->name);
		json_t *obj = json_object_get(root, section);
		if (obj == NULL) {
			obj = json_object();
			json_object_set_new(root, section, obj);
		}
		const char *field = (const char *)c + k->offset;
		if (k->type == T_SIZE) {
			/* Sizes read best the way people write them: "64MiB", not 67108864. */
			int64_t n = *(const int64_t *)field;
			static const char *const units[] = {"KiB", "MiB", "GiB", "TiB"};
			int u = -1;
			while (u < 3 && n != 0 && n % 1024 == 0) {
				n /= 1024;
				u++;
			}
			char text[32];
			snprintf(text, sizeof text, "%lld%s", (long long)n, u >= 0 ? units[u] : "");
			json_object_set_new(obj, dot + 1, u >= 0 ? json_string(text) : json_integer(n));
			continue;
		}
		char text[4096];
		if (k->type == T_MODE) {
			snprintf(text, sizeof text, "%04llo", (unsigned long long)*(const int64_t *)field);
			json_object_set_new(obj, dot + 1, json_string(text));
			continue;
		}
		if (k->type == T_STR) /* jansson takes only UTF-8; a path need not be */
			embd_utf8_sanitize(text, sizeof text, field);
		json_t *v = k->type == T_STR    ? json_string(text)
		            : k->type == T_BOOL ? json_boolean(*(const int *)field)
		                                : json_integer(*(const int64_t *)field);
		json_object_set_new(obj, dot + 1, v);
	}
	json_dumpf(root, out, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
	fputc('\n', out);
	json_decref(root);
}
