/* Loading the configured matrix as a generation, at start-up and on reload (SIGHUP, POST /v1/admin/reload). */
#ifndef EMBD_RELOAD_H
#define EMBD_RELOAD_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "matrix.h"

struct embd_server;

/* The matrix spec cfg describes (path borrowed from cfg). 0, or -1 with msg ("key: reason"). */
int embd_spec_from_config(const embd_config *cfg, embd_matrix_spec *spec, char *msg, size_t cap);

/*
 * One reload a client waits for (POST /v1/admin/reload). The caller owns the
 * job and fills path, done and cls; the reloader fills rc, generation and msg,
 * then calls done exactly once (on the reload thread, or in
 * embd_reloader_stop), and never touches the job after that.
 */
typedef struct embd_reload_job {
	/* Borrowed until done; NULL: the file the newest generation was loaded from. Never empty (the caller refuses
	 * that). */
	const char *path;
	/*
	 * With a path, the new file starts over from the configuration (its
	 * populate, mlock and advice) and these: nothing of the last file's spec
	 * carries over. format is EMBD_FORMAT_AUTO unless the request named one;
	 * a raw file's shape (dim and dtype, rows and offset; 0 and f32 when not
	 * given). Without a path, the caller leaves them zero and they are unused.
	 */
	embd_format format;
	uint64_t rows, dim, offset;
	embd_dtype dtype;
	/*
	 * Borrowed until done; NULL: not given. With a path, the new file's tensor
	 * and vocabulary are these or none. Without one, these replace the last
	 * load's tensor / vocabulary for the reloaded file.
	 */
	const char *tensor;
	const char *vocab;
	void (*done)(struct embd_reload_job *j);
	void *cls;
	int rc;              /* 0, or -1 with msg saying why */
	int err;             /* when rc is -1: the EMBD_E code (or -errno) of the failure, for the answer's status */
	uint64_t generation; /* the new generation's number when rc is 0 */
	char msg[600];
	struct embd_reload_job *next; /* the reloader's queue */
} embd_reload_job;

/*
 * The spec of one load, with its own copies of the strings it names (a job's
 * go with its request): built afresh for each load from the configuration and
 * the request, as nginx builds a new cycle, never by editing the configuration.
 */
typedef struct embd_load_spec {
	embd_matrix_spec m; /* path, tensor and vocab point into the arrays below */
	char path[sizeof(((embd_config *)0)->matrix_path)];
	char tensor[sizeof(((embd_config *)0)->matrix_tensor)];
	char vocab[sizeof(((embd_config *)0)->matrix_vocab)];
} embd_load_spec;

/*
 * The one thread that loads matrices. Every reload runs on it, so neither a
 * request thread nor the main thread (signals, the request-deadline sweep)
 * ever waits for a file to open, and reloads never overlap. Queued jobs run
 * in order; SIGHUPs set one pending flag, so any number of them that arrive
 * during a load make at most one more load.
 */
typedef struct embd_reloader {
	struct embd_server *srv;
	pthread_mutex_t lock;
	pthread_cond_t wake; /* work queued, or stopping */
	pthread_cond_t idle; /* a load ended */
	pthread_t thread;
	int started;
	embd_reload_job *head, *tail; /* queued admin reloads */
	embd_reload_job *current;     /* the admin reload being loaded; NULL for a SIGHUP one */
	int signal_pending;           /* a SIGHUP reload is due */
	int loading;                  /* the thread is inside embd_matrix_open */
	int stopping;
	int abandoned;       /* stop gave up on a load: the thread must not touch the server again */
	uint64_t generation; /* the newest generation's number */
	/*
	 * The spec the newest generation was loaded with: what a SIGHUP, or an
	 * admin reload without a path, loads again. Only the reload thread (and
	 * start, before it runs) touches it.
	 */
	embd_load_spec last;
	embd_load_spec next; /* the spec being loaded */
} embd_reloader;

/*
 * Start the reload thread for s; generation is the number of the generation
 * s serves, and spec (borrowed for the call) the spec it was loaded with.
 * Start it with the process's signals blocked in the calling thread (it
 * inherits the mask). 0, or a positive errno from pthread_create.
 */
int embd_reloader_start(embd_reloader *rl, struct embd_server *s, uint64_t generation, const embd_matrix_spec *spec);

/* Ask for a reload of the newest generation's file, with its spec (SIGHUP). Never blocks on a load; coalesces with one
 * already pending. */
void embd_reloader_signal(embd_reloader *rl);

/* Queue j (see embd_reload_job). 0, or -1 when the reloader is stopping (j untouched, done never called). */
int embd_reloader_submit(embd_reloader *rl, embd_reload_job *j);

/*
 * Stop: queued jobs are answered at once (rc -1, "shutting down"), a pending
 * SIGHUP is dropped, and a load in progress may finish until end_ns
 * (embd_now_ns clock). Returns 0 once the thread has exited, or -1 if it was
 * still loading at end_ns: its job is answered (rc -1) and the thread is left
 * to finish on its own, touching nothing of the server's again. No-op if
 * never started.
 */
int embd_reloader_stop(embd_reloader *rl, uint64_t end_ns);

#endif
