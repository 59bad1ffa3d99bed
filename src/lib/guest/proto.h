/* The wire format between corrald and the in-sandbox agent.
 *
 * A connection to the agent's unix socket carries one operation.  Every
 * message is a frame: a 4-byte length (host order: both ends are on one
 * machine), then a 1-byte type, then fields.  A field is a 1-byte tag, a
 * 4-byte length and that many bytes; repeated tags make lists.  Binary
 * rather than JSON so that the agent stays a small static binary whose
 * parser is easy to fuzz (tests/fuzz/fuzz_proto.c). */
#ifndef CORRAL_GUEST_PROTO_H
#define CORRAL_GUEST_PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <corral/error.h>

#define CORRAL__FRAME_MAX (1u << 20)

enum corral__msg_type {
  /* requests: the first frame of a connection */
  CORRAL__REQ_PING = 1,
  CORRAL__REQ_EXEC,    /* ARGV* ENV* CWD? TIMEOUT_MS? BACKGROUND? MAX_OUTPUT? STDIN_OPEN? COLS? ROWS?
                        * (COLS and ROWS: on a terminal; its output comes as R_STDOUT) */
  CORRAL__REQ_ATTACH,  /* PID */
  CORRAL__REQ_STDIN,   /* PID DATA? EOF? */
  CORRAL__REQ_SIGNAL,  /* PID SIGNAL */
  CORRAL__REQ_LIST,
  CORRAL__REQ_FREAD,   /* PATH */
  CORRAL__REQ_FWRITE,  /* PATH MODE? META*: then DATA frames and an END frame (META: "key=value",
                        * kept as the file's user.e2b.meta.* xattrs, E2B's file metadata) */
  CORRAL__REQ_FLIST,   /* PATH DEPTH */
  CORRAL__REQ_FSTAT,   /* PATH */
  CORRAL__REQ_MKDIR,   /* PATH */
  CORRAL__REQ_MOVE,    /* PATH TO */
  CORRAL__REQ_REMOVE,  /* PATH RECURSIVE? */
  CORRAL__REQ_WATCH,   /* PATH RECURSIVE? WITH_ENTRY?: R_OK once the directory is watched, then an
                        * R_EVENT per change (after the R_ENTRY of its object with WITH_ENTRY, when
                        * that still exists) until the client hangs up */
  CORRAL__REQ_RESIZE,  /* PID COLS ROWS: the window size of a command's terminal */
  /* data frames, both ways */
  CORRAL__M_DATA = 32, /* DATA: file bytes or command stdin */
  CORRAL__M_END,       /* end of a data stream */
  /* replies */
  CORRAL__R_OK = 64,   /* SIZE? PID? */
  CORRAL__R_ERROR,     /* ERRNO TEXT */
  CORRAL__R_STARTED,   /* PID */
  CORRAL__R_STDOUT,    /* DATA */
  CORRAL__R_STDERR,    /* DATA */
  CORRAL__R_EXIT,      /* PID STATUS REASON DURATION_MS DROPPED_OUT DROPPED_ERR DENIED SYSCALL* */
  CORRAL__R_ENTRY,     /* file entry: NAME PATH TYPE SIZE MODE MTIME TARGET? META*; or a command: PID ARGV* ... */
  CORRAL__R_EVENT,     /* a watched change: NAME (relative to the watched directory, "." for itself)
                        * TYPE (u64, enum corral__fs_event) */
};

enum corral__tag {
  CORRAL__T_ARGV = 1, CORRAL__T_ENV, CORRAL__T_CWD, CORRAL__T_TIMEOUT_MS, CORRAL__T_BACKGROUND,
  CORRAL__T_MAX_OUTPUT, CORRAL__T_PID, CORRAL__T_DATA, CORRAL__T_EOF, CORRAL__T_SIGNAL, CORRAL__T_PATH,
  CORRAL__T_TO, CORRAL__T_MODE, CORRAL__T_DEPTH, CORRAL__T_RECURSIVE, CORRAL__T_SIZE, CORRAL__T_ERRNO,
  CORRAL__T_TEXT, CORRAL__T_STATUS, CORRAL__T_REASON, CORRAL__T_DURATION_MS, CORRAL__T_DROPPED_OUT,
  CORRAL__T_DROPPED_ERR, CORRAL__T_NAME, CORRAL__T_TYPE, CORRAL__T_MTIME, CORRAL__T_TARGET,
  CORRAL__T_RUNNING, CORRAL__T_STARTED_MS, CORRAL__T_STDIN_OPEN, CORRAL__T_DENIED, CORRAL__T_SYSCALL,
  CORRAL__T_WITH_ENTRY, CORRAL__T_COLS, CORRAL__T_ROWS, CORRAL__T_META,
};

/* Kinds of watched changes (R_EVENT's TYPE); E2B's EventType numbers. */
enum corral__fs_event {
  CORRAL__EV_CREATE = 1, /* created, or moved in / renamed to */
  CORRAL__EV_WRITE,      /* contents modified */
  CORRAL__EV_REMOVE,     /* deleted */
  CORRAL__EV_RENAME,     /* moved away / renamed from */
  CORRAL__EV_CHMOD,      /* metadata changed (mode, owner, times) */
};

/* Command end reasons (T_REASON). */
enum corral__cmd_reason { CORRAL__CMD_EXITED = 0, CORRAL__CMD_SIGNALED, CORRAL__CMD_TIMEOUT };

/* A frame being built: a growing buffer that starts with the header. */
struct corral__frame
{
  uint8_t *buf;
  size_t len, cap;
  bool failed; /* an allocation or the size limit failed */
};

void corral__frame_init(struct corral__frame *f, uint8_t type);
void corral__frame_add(struct corral__frame *f, uint8_t tag, const void *data, size_t len);
void corral__frame_add_str(struct corral__frame *f, uint8_t tag, const char *s);
void corral__frame_add_u64(struct corral__frame *f, uint8_t tag, uint64_t v);
/* Fill in the length; returns the bytes to send, or NULL if building failed. */
const uint8_t *corral__frame_finish(struct corral__frame *f, size_t *len);
void corral__frame_release(struct corral__frame *f);
/* Build and send in one step (blocking fd); releases f. */
int corral__frame_send(int fd, struct corral__frame *f);
/* A bare frame with one DATA field, without copying data into a builder. */
int corral__send_data(int fd, uint8_t type, const void *data, size_t len);

/* A received frame: type and the field area (points into the caller's buffer). */
struct corral__msg
{
  uint8_t type;
  const uint8_t *fields;
  size_t len;
};

/* Parse a frame body (after the 4-byte length).  Validates that the fields
 * tile the body exactly; returns 0 or -1 (EPROTO). */
int corral__msg_parse(const uint8_t *body, size_t len, struct corral__msg *m);
/* Iterate: *pos starts at 0; returns 1 with tag/data/len, 0 at the end. */
int corral__msg_next(const struct corral__msg *m, size_t *pos, uint8_t *tag, const uint8_t **data, uint32_t *len);
/* First field with tag, as bytes / NUL-free string (malloc'd) / u64. */
bool corral__msg_get(const struct corral__msg *m, uint8_t tag, const uint8_t **data, uint32_t *len);
char *corral__msg_strdup(const struct corral__msg *m, uint8_t tag);
bool corral__msg_u64(const struct corral__msg *m, uint8_t tag, uint64_t *v);
/* Every field with tag as a NULL-terminated malloc'd array of malloc'd
 * strings (NULL on ENOMEM or a string holding a NUL byte). */
char **corral__msg_strv(const struct corral__msg *m, uint8_t tag, size_t *n);
void corral__strv_free(char **v);

/* Blocking read of one frame into *buf (grown as needed, caller frees).
 * Returns 1 with *m filled, 0 on a clean EOF, -1 on error/oversize/garbage.
 * timeout_ms < 0: wait forever. */
int corral__frame_recv(int fd, uint8_t **buf, size_t *cap, struct corral__msg *m, int timeout_ms);

#endif
