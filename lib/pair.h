/* A matrix and its vocabulary file as one pair on disk: replaced together by a convert, opened together by a load. */
#ifndef EMBD_PAIR_H
#define EMBD_PAIR_H

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

#endif
