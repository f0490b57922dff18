/* The daemon's configuration: one table of keys (type, default, doc) behind the JSON file, the flags and --help. */
#ifndef EMBD_CONFIG_H
#define EMBD_CONFIG_H

#include <stdint.h>
#include <stdio.h>
#include <sys/un.h>

typedef struct embd_config {
	char listen_address[256];
	int64_t listen_port;
	char listen_unix[sizeof(((struct sockaddr_un *)0)->sun_path)]; /* longer: refused as a config error */
	int64_t listen_unix_mode;
	int64_t threads;

	char matrix_path[4096];
	char matrix_format[16];
	char matrix_tensor[1024];
	char matrix_vocab[4096];
	int64_t matrix_rows;
	int64_t matrix_dim;
	char matrix_dtype[16];
	int64_t matrix_offset;
	int matrix_populate;
	int matrix_mlock;
	char matrix_advice[16];

	int64_t request_bytes;
	int64_t inflight_bytes;
	int64_t max_ids;
	int64_t max_body_bytes;
	int64_t connections;
	int64_t connection_memory;
	int64_t connections_per_ip;
	int64_t timeout_s;
	int64_t retry_after_s;
	int64_t request_timeout_s;
	int64_t shutdown_s;
	int64_t generations;
	int64_t generation_drain_s;
	int64_t min_send_rate;
	int64_t send_rate_window_s;
	int64_t large_responses;
	int64_t large_response_bytes;

	int64_t compute_threads;
	int64_t compute_queue;
	int64_t compute_inflight_bytes;
	int64_t compute_timeout_s;
	int64_t compute_nice;
	int64_t work;

	int64_t iov_max_segments;
	int64_t iov_min_run_bytes;
	int64_t pool_bytes;

	char admin_token_file[4096];

	int log_access;
	char log_file[4096];
	char log_level[8];
} embd_config;

/* Every key at its default. */
void embd_config_defaults(embd_config *c);

/*
 * Read a JSON config file over c. Unknown keys, wrong types and bad values
 * are errors; msg (cap bytes) gets "file: key: reason". Returns 0 or -1.
 */
int embd_config_load(embd_config *c, const char *path, char *msg, size_t cap);

/*
 * Set one key from text (a flag's value): name is the dotted key
 * ("limits.max_ids") or a short alias ("port"). Returns 0, or -1 with msg.
 */
int embd_config_set(embd_config *c, const char *name, const char *value, char *msg, size_t cap);

/* Is name a known key or alias, and does it take a value (bools may stand alone)? */
int embd_config_known(const char *name, int *is_bool);

/* Write the keys, their defaults and their docs (for --help). */
void embd_config_help(FILE *out);

/* Write the whole configuration as JSON (config/embd.json is this output for the defaults). */
void embd_config_dump(const embd_config *c, FILE *out);

#endif
