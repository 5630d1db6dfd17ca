/* files: the --static folder, read into memory once when a worker starts, so serving a file is
 * queueing a prebuilt response and never touches the disk from the event loop. A request can
 * only name a file that was found by walking the folder: there is no path to traverse. */
#ifndef FILES_H
#define FILES_H

#include <stddef.h>

#include "wbuf.h"
#include "ws_http.h"

typedef struct files files;

#define FILES_MAX 4096                 /* files in the folder */
#define FILES_MAX_BYTES (64u << 20)    /* their total size */

/* Reads every regular file under dir (not dotfiles, not symlinks, at most 8 folders deep).
 * Returns NULL with a reason in err when dir cannot be read or holds more than the limits. */
files *files_load(const char *dir, char *err, size_t errlen);
void files_free(files *f);

/* The complete 200 response (headers and body) for a request path, "/" and ".../" meaning
 * index.html; *head_len is the length of its headers (for HEAD). NULL when there is no such
 * file. The buffer belongs to f: take a reference to queue it. */
wbuf *files_get(const files *f, ws_span path, size_t *head_len);

/* Number of files loaded. */
size_t files_count(const files *f);

#endif
