/* embd convert's command line (the work is lib/convert.c's). */
#ifndef EMBD_SERVER_CONVERT_H
#define EMBD_SERVER_CONVERT_H

/*
 * `embd convert` with argv after the subcommand (argc entries, borrowed).
 * Prints errors on stderr, the progress bar on stderr (when it is a terminal
 * or with --progress) and the summary on stdout. Returns the exit status: 0,
 * 1 (the convert failed; no output file left behind), 2 (bad usage).
 */
int embd_cmd_convert(int argc, char **argv);

#endif
