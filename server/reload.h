/* Loading the configured matrix as a generation, at start-up and on reload (SIGHUP, POST /v1/admin/reload). */
#ifndef EMBD_RELOAD_H
#define EMBD_RELOAD_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "matrix.h"

struct embd_server;

/* The matrix spec cfg describes (path borrowed from cfg). 0, or -1 with msg ("key: reason"). */
int embd_spec_from_config(const embd_config *cfg, embd_matrix_spec *spec, char *msg, size_t cap);

/*
 * Load path (NULL: the configured matrix.path) as the next generation and
 * make it current; in-flight responses finish from the generation they hold,
 * which is unmapped when the last of them completes. On failure the current
 * generation goes on serving and msg says why. On success matrix.path
 * becomes path, so that the next SIGHUP reloads it. Thread-safe: reloads are
 * serialised. Returns 0 with *generation the new generation's number, or -1.
 */
int embd_server_reload(struct embd_server *s, const char *path, uint64_t *generation, char *msg, size_t cap);

#endif
