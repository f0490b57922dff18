/* A matrix and its vocabulary file as one pair on disk: replaced together by a convert, opened together by a load. */
#ifndef EMBD_PAIR_H
#define EMBD_PAIR_H

#include "error.h"

/*
 * `embd convert` replaces a pair (OUT.npy and its vocabulary) by two renames,
 * and a load opens the two files one after the other. The directory of the
 * matrix is the pair's lock (flock(2): no lock file to create, leave behind
 * or race on removing): a convert holds it exclusively across its two
 * renames (and their roll-back), a load holds it shared while it opens the
 * matrix and its vocabulary. So a load sees the old pair or the new one,
 * never the new words beside the old rows. The key is the directory of the
 * matrix path as given (not of a symlink's target), on both sides.
 *
 * Lock the directory of matrix_path (borrowed): shared, or exclusive.
 * Blocks while a lock of the other kind is held (a convert holds it for two
 * renames; a load for as long as its open takes). Returns a file descriptor
 * for embd_pair_unlock, or -1 when the directory cannot be opened or locked
 * (a file system without flock): the caller goes on without the lock, as
 * before it existed. Thread-safe; locks taken through different calls
 * exclude each other within one process too.
 */
int embd_pair_lock(const char *matrix_path, int exclusive);

/* Release a lock embd_pair_lock returned. -1 is a no-op. */
void embd_pair_unlock(int fd);

/*
 * The lock keeps loads away from a convert's two renames, but not a crash
 * between them (SIGKILL, power loss): that leaves the new words beside the
 * old rows under the pair's names. So a convert marks both files of a pair
 * with one random id (the extended attribute user.embd.pair) before it
 * renames them, and a load refuses two files whose marks differ (or only
 * one of which has one) instead of serving rows under the wrong words.
 *
 * Mark the open files fd_a and fd_b with one new id. 0, or a negative errno
 * when the file system keeps no user attributes (the pair then goes
 * unmarked, as before marks existed). Thread-safe.
 */
int embd_pair_mark(int fd_a, int fd_b);

/*
 * Whether the matrix and the vocabulary file at these paths (borrowed) are
 * one pair: 0 when both carry the same mark or neither carries one;
 * EMBD_ECONFIG with e saying so when a convert was stopped between its
 * renames (their marks differ, or only one has a mark). Thread-safe.
 */
int embd_pair_check(const char *matrix_path, const char *vocab_path, embd_err *e);

#endif
