/* ksight._procscan: read and parse /proc/PID/{stat,statm,status} of many PIDs in C.
 *
 * The fast path of ksight.collect.processes.scan (see its module doc). The Python parsers in
 * ksight/sources/proc_pid/{stat,statm,status}.py are the reference: this file accepts only the
 * plain form the kernel prints and, for that form, gives exactly what they give. Anything else
 * (a read error, a file larger than the buffer, a token Python's int() might read differently,
 * non-ASCII where it matters, a status layout that makes the Python parser take its general
 * path) returns a code for that PID, and Python redoes the PID on its own careful path.
 *
 * scan(base, pids, live, spec, with_statm=True, with_sockets=False, cache=None, room=0,
 *      with_status=True) -> list, one entry per pid:
 *   (PidStat, PidStatm, PidStatus)   all three read and parsed
 *   (PidStat, None, PidStatus)       with_statm=False: statm not read (status holds its values)
 *   (PidStat, ..., None)             with_status=False: status not read (a kept status fd is
 *                                    left as it is, unread)
 *   (..., (inode, ...))              with_sockets: a 4th item, the socket inodes of proc/PID/fd
 *                                    (as sources/proc_pid/fd.py socket_inodes gives them)
 *   int > 0                          errno of an open/read (Python re-reads through the Root)
 *   int < 0                          PARSE (-1): not the plain form; BIG (-2): over the buffer
 * base: the root directory ("/" live). live=False (a capture tree): no symbolic link is
 * followed below base (proc, PID, file opened with O_NOFOLLOW), so a link, which DirRoot checks
 * stays inside the tree, goes to Python; live=True: one read is the whole file when it is
 * shorter than asked for (single_open seq_files), as Root.text_reader(one_shot=True).
 * spec: (stat_cls, stat_names, stat_pick, stat_required, statm_cls, statm_names,
 *        status_cls, status_none, status_typed)
 *   stat_names: field names (pid, comm, state, then one per stat_pick index);
 *   stat_pick: indices into the tokens after "comm) " (token 0 is state);
 *   stat_required: fewer tokens than this is malformed; missing picked tokens are None;
 *   status_none: {field: None} for every PidStatus field (copied, then filled);
 *   status_typed: ((b"\nKey:", attr, kind), ...), kind 0 int, 1 "N kB", 2 ids, 3 state letter.
 * cache (live only): {pid: (stat fd, status fd)} of files kept open from one scan to the next;
 * a kept file is read again with pread at offset 0 (a seq_file regenerates its text), which
 * saves the path walk, open and close (~7 ms of kernel time per 1,000 processes). At most `room`
 * new fds are kept in this call. A kept fd of an exited process reads ESRCH (the open file holds
 * the struct pid, so a reused PID number never reads another process's data): it is closed and
 * the path opened again; a text that does not name the PID drops the entry. The caller
 * (collect/processes.py) owns the dict: it evicts PIDs no longer listed and closes their fds,
 * and never lets two scans use it at once.
 * The GIL is released while a PID's files are read and parsed into C structs; Python objects
 * are built after.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define CODE_PARSE (-1)
#define CODE_BIG (-2)

#define SMALL_BUF 4096   /* stat, statm: ~300 and ~40 bytes from the kernel */
#define STATUS_BUF 16384 /* status: ~1.4 KB */
#define MAX_TOKENS 64
#define MAX_PICK 64
#define MAX_TYPED 64
#define MAX_IDS 16

typedef struct {
    unsigned long long mag;
    char neg;
    char present; /* 0: None */
} num_t;

/* The ASCII characters Python's str.split(), str.strip() and int() treat as whitespace. */
static inline int py_space(unsigned char c) {
    return c == ' ' || (c >= '\t' && c <= '\r') || (c >= 0x1c && c <= 0x1f);
}

static int all_ascii(const char *s, size_t n) {
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] >= 0x80)
            return 0;
    return 1;
}

/* "-?[0-9]+" that fits: unsigned 64-bit, or down to -2**63. Anything else (a sign '+',
 * underscores, overflow) is left to Python's int(). */
static int strict_int(const char *s, size_t n, num_t *out) {
    size_t i = 0;
    int neg = 0;
    if (n && s[0] == '-') {
        neg = 1;
        i = 1;
    }
    if (i >= n)
        return -1;
    unsigned long long v = 0;
    for (; i < n; i++) {
        unsigned d = (unsigned char)s[i] - '0';
        if (d > 9)
            return -1;
        if (v > (ULLONG_MAX - d) / 10)
            return -1;
        v = v * 10 + d;
    }
    if (neg && v > (unsigned long long)LLONG_MAX + 1ULL)
        return -1;
    out->mag = v;
    out->neg = (char)neg;
    out->present = 1;
    return 0;
}

static PyObject *num_obj(const num_t *n) {
    if (!n->present)
        Py_RETURN_NONE;
    if (n->neg) {
        if (n->mag == (unsigned long long)LLONG_MAX + 1ULL)
            return PyLong_FromLongLong(LLONG_MIN);
        return PyLong_FromLongLong(-(long long)n->mag);
    }
    return PyLong_FromUnsignedLongLong(n->mag);
}

/* Split s[0:n] on Python whitespace; at most `max` tokens are kept, *count is the total. */
static void split_ws(const char *s, size_t n, const char **tok, size_t *tlen, int max, int *count) {
    int c = 0;
    size_t i = 0;
    while (i < n) {
        while (i < n && py_space((unsigned char)s[i]))
            i++;
        if (i >= n)
            break;
        size_t j = i;
        while (j < n && !py_space((unsigned char)s[j]))
            j++;
        if (c < max) {
            tok[c] = s + i;
            tlen[c] = j - i;
        }
        c++;
        i = j;
    }
    *count = c;
}

static void strip_ws(const char **s, size_t *n) {
    while (*n && py_space((unsigned char)(*s)[0])) {
        (*s)++;
        (*n)--;
    }
    while (*n && py_space((unsigned char)(*s)[*n - 1]))
        (*n)--;
}

/* ---- reading --------------------------------------------------------------------------- */

/* Read fd from offset 0 to EOF into buf (pread: the file offset is not used, and a seq_file
 * regenerates its text on a read at offset 0). 0, an errno, or CODE_BIG. */
static int read_fd(int fd, int live, char *buf, size_t cap, size_t *len) {
    size_t n = 0;
    int rc = 0;
    for (;;) {
        if (n == cap) {
            char c;
            ssize_t r = pread(fd, &c, 1, (off_t)n);
            if (r < 0 && errno == EINTR)
                continue;
            rc = r == 0 ? 0 : (r < 0 ? errno : CODE_BIG);
            break;
        }
        ssize_t r = pread(fd, buf + n, cap - n, (off_t)n);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            rc = errno ? errno : EIO;
            break;
        }
        if (r == 0)
            break;
        size_t asked = cap - n;
        n += (size_t)r;
        if (live && (size_t)r < asked)
            break; /* a single_open seq_file printed all of it in one read */
    }
    *len = n;
    return rc;
}

/* Read dirfd/name to EOF into buf. 0, an errno, or CODE_BIG. With keep (not NULL), the fd is
 * left open in *keep after a read without error (the caller keeps it for the next scan). */
static int read_file(int dirfd, const char *name, int live, char *buf, size_t cap, size_t *len,
                     int *keep) {
    int fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC | (live ? 0 : O_NOFOLLOW));
    if (fd < 0)
        return errno ? errno : EIO;
    int rc = read_fd(fd, live, buf, cap, len);
    if (keep && !rc)
        *keep = fd;
    else
        close(fd);
    return rc;
}

/* A kept fd of this PID's file (stat or status): read it again; `mark` is what the text must hold
 * for this PID ("PID (" at the start of stat, "\nPid:\tPID\n" in status). 1: read, the text is
 * in buf; 0: not usable, *kfd is -1 now and the file must be opened again. A read error or an
 * empty read (the process is gone: the kernel answers ESRCH, never another process's data, even
 * when the PID number is reused, since the open file holds the struct pid) closes the fd; a text
 * that is not this PID's (the fd number closed and reused behind our back) drops it unclosed. */
static int read_kept(int *kfd, char *buf, size_t cap, size_t *len, const char *mark,
                     size_t mark_n, int at_start) {
    int rc = read_fd(*kfd, 1, buf, cap, len);
    if (rc || *len == 0) {
        close(*kfd);
        *kfd = -1;
        return 0;
    }
    int ok = at_start ? (*len >= mark_n && memcmp(buf, mark, mark_n) == 0)
                      : memmem(buf, *len, mark, mark_n) != NULL;
    if (!ok) {
        *kfd = -1;
        return 0;
    }
    return 1;
}

/* ---- parsing (no Python objects, no GIL) ------------------------------------------------ */

typedef struct {
    num_t pid;
    const char *comm;
    size_t comm_len;
    const char *state;
    size_t state_len;
    num_t pick[MAX_PICK];
} stat_res;

static int parse_stat(const char *t, size_t n, const Py_ssize_t *pick, int npick, int required,
                      stat_res *r) {
    if (!n || t[n - 1] != '\n')
        return CODE_PARSE; /* cut short (sources/_text.py require_complete): Python says why */
    const char *lp = memchr(t, '(', n);
    const char *rp = NULL;
    for (size_t i = n; i > 0; i--)
        if (t[i - 1] == ')') {
            rp = t + i - 1;
            break;
        }
    if (!lp || lp == t || !rp || rp < lp)
        return CODE_PARSE;
    /* pid: digits then spaces */
    size_t pl = (size_t)(lp - t);
    while (pl && t[pl - 1] == ' ')
        pl--;
    if (strict_int(t, pl, &r->pid) || r->pid.neg)
        return CODE_PARSE;
    r->comm = lp + 1;
    r->comm_len = (size_t)(rp - lp - 1);
    size_t start = (size_t)(rp - t) + 2;
    if (start > n)
        start = n;
    const char *eol = memchr(t + start, '\n', n - start);
    size_t rn = eol ? (size_t)(eol - t) - start : n - start;
    const char *rest = t + start;
    if (!all_ascii(rest, rn)) /* non-ASCII whitespace would split differently */
        return CODE_PARSE;
    const char *tok[MAX_TOKENS];
    size_t tl[MAX_TOKENS];
    int nt;
    split_ws(rest, rn, tok, tl, MAX_TOKENS, &nt);
    if (nt < required || nt < 1)
        return CODE_PARSE;
    if (nt > MAX_TOKENS)
        nt = MAX_TOKENS;
    r->state = tok[0];
    r->state_len = tl[0];
    for (int k = 0; k < npick; k++) {
        Py_ssize_t i = pick[k];
        num_t *o = &r->pick[k];
        if (i >= nt) {
            if (i >= MAX_TOKENS) /* cannot happen with MAX_TOKENS > highest pick */
                return CODE_PARSE;
            o->present = 0; /* not printed by this kernel */
        } else if (tl[i] == 1 && tok[i][0] == '-') {
            o->present = 0; /* the Python parser reads "-" as absent */
        } else if (strict_int(tok[i], tl[i], o)) {
            return CODE_PARSE;
        }
    }
    return 0;
}

static int parse_statm(const char *t, size_t n, num_t out[7]) {
    if (!n || t[n - 1] != '\n' || !all_ascii(t, n))
        return CODE_PARSE;
    const char *tok[8];
    size_t tl[8];
    int nt;
    split_ws(t, n, tok, tl, 8, &nt);
    if (nt != 7)
        return CODE_PARSE;
    for (int i = 0; i < 7; i++)
        if (strict_int(tok[i], tl[i], &out[i]))
            return CODE_PARSE;
    return 0;
}

typedef struct {
    const char *key;
    size_t key_len;
    int kind;
    int next; /* the next typed key of the same length (-1: none): see by_len */
} typed_t;

/* typed keys by length: by_len[len] is the first key ("\nKey:") of that length, then each
 * key's `next`, in typed order; a status line is compared with the keys of its own length only
 * (it was compared with all 29, ~0.3 ms of a 1,000-process scan) */
#define MAX_KEY_LEN 64
static void index_typed(typed_t *typed, int ntyped, int by_len[MAX_KEY_LEN]) {
    for (int i = 0; i < MAX_KEY_LEN; i++)
        by_len[i] = -1;
    for (int k = ntyped - 1; k >= 0; k--) {
        size_t kl = typed[k].key_len;
        typed[k].next = kl < MAX_KEY_LEN ? by_len[kl] : -1;
        if (kl < MAX_KEY_LEN)
            by_len[kl] = k;
    }
}

typedef struct {
    char present;
    num_t v;             /* int, kb */
    int nids;            /* ids */
    num_t ids[MAX_IDS];  /* ids */
    char letter;         /* state */
} typed_res;

typedef struct {
    const char *name;
    size_t name_len;
    typed_res typed[MAX_TYPED];
} status_res;

/* The Python fast path of status.parse, for ASCII text only; whatever would send it to its
 * general parser (or is outside the strict forms here) is CODE_PARSE. */
static int parse_status(const char *t, size_t n, const typed_t *typed, int ntyped,
                        const int *by_len, status_res *r) {
    if (n < 5 || memcmp(t, "Name:", 5) != 0)
        return CODE_PARSE;
    if (t[n - 1] != '\n')
        return CODE_PARSE; /* a last line without '\n' was cut: the Python reference says so */
    /* ASCII only (a non-ASCII Name goes to Python), a word at a time */
    uint64_t high = 0;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t w;
        memcpy(&w, t + i, 8);
        high |= w;
    }
    for (; i < n; i++)
        high |= (unsigned char)t[i];
    if (high & 0x8080808080808080ULL)
        return CODE_PARSE;
    /* one walk over the lines: text.count("\n"), text.count(":\t"), and text.find("\nKey:")
     * for every typed key, i.e. the first line after the first that starts with "Key:" (keys
     * hold no ':') */
    const char *at[MAX_TYPED];
    for (int k = 0; k < ntyped; k++)
        at[k] = NULL;
    size_t lines = 0, colon_tabs = 0;
    const char *end = t + n, *line = t;
    const char *e = NULL; /* end of the first line */
    while (line < end) {
        const char *nl = memchr(line, '\n', (size_t)(end - line));
        const char *le = nl ? nl : end;
        lines += nl != NULL;
        const char *colon = memchr(line, ':', (size_t)(le - line));
        if (colon && line != t) {
            size_t kl = (size_t)(colon - line);
            for (int k = kl + 2 < MAX_KEY_LEN ? by_len[kl + 2] : -1; k >= 0; k = typed[k].next)
                if (!at[k] && memcmp(typed[k].key + 1, line, kl) == 0) {
                    at[k] = colon + 1;
                    break;
                }
        }
        for (const char *c = colon; c; c = memchr(c + 1, ':', (size_t)(le - c - 1)))
            colon_tabs += c + 1 < end && c[1] == '\t';
        if (line == t)
            e = nl;
        line = le + 1;
    }
    if (colon_tabs < lines)
        return CODE_PARSE;
    r->name = t + 5;
    r->name_len = (e ? (size_t)(e - t) : n) - 5;
    strip_ws(&r->name, &r->name_len);
    for (int k = 0; k < ntyped; k++) {
        typed_res *o = &r->typed[k];
        o->present = 0;
        const char *v = at[k];
        if (!v)
            continue;
        const char *ve = memchr(v, '\n', (size_t)(t + n - v));
        size_t vl = ve ? (size_t)(ve - v) : (size_t)(t + n - v);
        const char *tok[MAX_IDS + 1];
        size_t tl[MAX_IDS + 1];
        int nt;
        switch (typed[k].kind) {
        case 0: /* int(v) */
            strip_ws(&v, &vl);
            if (strict_int(v, vl, &o->v))
                return CODE_PARSE;
            break;
        case 1: /* "N kB" */
            split_ws(v, vl, tok, tl, 3, &nt);
            if (nt != 2 || tl[1] != 2 || memcmp(tok[1], "kB", 2) != 0 ||
                strict_int(tok[0], tl[0], &o->v))
                return CODE_PARSE;
            break;
        case 2: /* tuple(map(int, v.split())) */
            split_ws(v, vl, tok, tl, MAX_IDS + 1, &nt);
            if (nt > MAX_IDS)
                return CODE_PARSE;
            for (int i = 0; i < nt; i++)
                if (strict_int(tok[i], tl[i], &o->ids[i]))
                    return CODE_PARSE;
            o->nids = nt;
            break;
        case 3: /* v.strip()[:1] or None */
            strip_ws(&v, &vl);
            if (vl == 0)
                continue; /* present stays 0: None */
            o->letter = v[0];
            break;
        default:
            return CODE_PARSE;
        }
        o->present = 1;
    }
    return 0;
}

/* ---- building Python objects -------------------------------------------------------------- */

static PyObject *str___dict__, *str_name, *str_text; /* interned at import, kept */

/* object.__new__(cls) with `d` as its __dict__ (how the Python parsers fill frozen dataclasses).
 * Steals d. */
static PyObject *new_with_dict(PyTypeObject *cls, PyObject *d) {
    if (!d)
        return NULL;
    PyObject *o = cls->tp_alloc(cls, 0);
    if (!o || PyObject_GenericSetAttr(o, str___dict__, d) < 0) {
        Py_XDECREF(o);
        Py_DECREF(d);
        return NULL;
    }
    Py_DECREF(d);
    return o;
}

/* new_with_dict for objects that hold only atomic values (ints, str, None, tuples of ints): when
 * the dict is not tracked by the cyclic GC (CPython tracks a dict only once a tracked container
 * goes in), the object cannot be part of a reference cycle either, so it is untracked too, as
 * CPython untracks such tuples and dicts itself: the collections that run while a scan builds
 * thousands of them (and every later full collection) need not visit them. */
static PyObject *new_atomic(PyTypeObject *cls, PyObject *d) {
    int atomic = d && !PyObject_GC_IsTracked(d);
    PyObject *o = new_with_dict(cls, d);
    if (o && atomic && PyObject_GC_IsTracked(o))
        PyObject_GC_UnTrack(o);
    return o;
}

/* d[key] = value, stealing value. */
static int set_steal(PyObject *d, PyObject *key, PyObject *value) {
    if (!value)
        return -1;
    int rc = PyDict_SetItem(d, key, value);
    Py_DECREF(value);
    return rc;
}

typedef struct {
    PyTypeObject *stat_cls, *statm_cls, *status_cls;
    PyObject *stat_names, *statm_names, *status_none;
    PyObject *status_attr[MAX_TYPED];
    PyObject *str_name, *str_text;
} builders;

static PyObject *build_stat(const builders *b, const stat_res *r, int npick) {
    /* sized for its 36 fields at once: grown from empty it was resized three times */
    PyObject *d = _PyDict_NewPresized(3 + npick);
    if (!d)
        return NULL;
    PyObject *names = b->stat_names;
    if (set_steal(d, PyTuple_GET_ITEM(names, 0), num_obj(&r->pid)) ||
        set_steal(d, PyTuple_GET_ITEM(names, 1),
                  PyUnicode_DecodeUTF8(r->comm, (Py_ssize_t)r->comm_len, "replace")) ||
        set_steal(d, PyTuple_GET_ITEM(names, 2),
                  PyUnicode_FromStringAndSize(r->state, (Py_ssize_t)r->state_len)))
        goto fail;
    for (int k = 0; k < npick; k++)
        if (set_steal(d, PyTuple_GET_ITEM(names, 3 + k), num_obj(&r->pick[k])))
            goto fail;
    return new_atomic(b->stat_cls, d);
fail:
    Py_DECREF(d);
    return NULL;
}

static PyObject *build_statm(const builders *b, const num_t v[7]) {
    PyObject *d = _PyDict_NewPresized(7);
    if (!d)
        return NULL;
    for (int i = 0; i < 7; i++)
        if (set_steal(d, PyTuple_GET_ITEM(b->statm_names, i), num_obj(&v[i]))) {
            Py_DECREF(d);
            return NULL;
        }
    return new_atomic(b->statm_cls, d);
}

static PyObject *build_status(const builders *b, const typed_t *typed, int ntyped, const char *t,
                              size_t n, const status_res *r) {
    PyObject *d = PyDict_Copy(b->status_none);
    if (!d)
        return NULL;
    if (set_steal(d, b->str_name, PyUnicode_DecodeASCII(r->name, (Py_ssize_t)r->name_len, NULL)))
        goto fail;
    for (int k = 0; k < ntyped; k++) {
        const typed_res *o = &r->typed[k];
        if (!o->present)
            continue;
        PyObject *v;
        if (typed[k].kind == 2) {
            v = PyTuple_New(o->nids);
            if (!v)
                goto fail;
            for (int i = 0; i < o->nids; i++) {
                PyObject *x = num_obj(&o->ids[i]);
                if (!x) {
                    Py_DECREF(v);
                    goto fail;
                }
                PyTuple_SET_ITEM(v, i, x);
            }
            PyObject_GC_UnTrack(v); /* ints only */
        } else if (typed[k].kind == 3) {
            v = PyUnicode_FromStringAndSize(&o->letter, 1);
        } else {
            v = num_obj(&o->v);
        }
        if (set_steal(d, b->status_attr[k], v))
            goto fail;
    }
    if (set_steal(d, b->str_text, PyUnicode_DecodeASCII(t, (Py_ssize_t)n, NULL)))
        goto fail;
    return new_atomic(b->status_cls, d);
fail:
    Py_DECREF(d);
    return NULL;
}

/* ---- scan --------------------------------------------------------------------------------- */

typedef struct {
    char name[32]; /* the fd's name in proc/PID/fd ("12") */
    unsigned long long ino;
} sock_ent;

typedef struct {
    char stat[SMALL_BUF], statm[SMALL_BUF], status[STATUS_BUF];
    size_t stat_n, statm_n, status_n;
    stat_res st;
    num_t sm[7];
    status_res ss;
    sock_ent *socks; /* with_sockets: the socket fds, sorted by name as Root.listdir sorts */
    size_t nsocks, cap_socks;
} pid_work;

static int by_name(const void *a, const void *b) {
    return strcmp(((const sock_ent *)a)->name, ((const sock_ent *)b)->name);
}

#define SOCK_PREFIX "socket:["
#define SOCK_PREFIX_N 8

/* The socket inodes of dirfd/fd as sources/proc_pid/fd.py socket_inodes gives them: every fd
 * link read (one that cannot be read is skipped: closed meanwhile), "socket:[N]" kept, in the
 * order of the sorted names. 0 or a code: an errno of the directory (Python says why), CODE_PARSE
 * for a target Python might read otherwise (non-ASCII or more than 19 digits between the
 * brackets, a name too long), ESRCH when nothing was read from a non-empty directory and the
 * PID is gone (as fd.py checks). */
static int read_socks(int procfd, int dirfd, const char *fdpath, const char *pidname, int live,
                      pid_work *w) {
    w->nsocks = 0;
    int fd = openat(dirfd, fdpath, O_RDONLY | O_DIRECTORY | O_CLOEXEC | (live ? 0 : O_NOFOLLOW));
    if (fd < 0)
        return errno ? errno : EIO;
    DIR *d = fdopendir(fd);
    if (!d) {
        int e = errno ? errno : EIO;
        close(fd);
        return e;
    }
    int rc = 0;
    size_t names = 0;
    char target[64];
    for (;;) {
        errno = 0;
        struct dirent *de = readdir(d);
        if (!de) {
            if (errno)
                rc = errno;
            break;
        }
        const char *nm = de->d_name;
        if (nm[0] == '.' && (nm[1] == 0 || (nm[1] == '.' && nm[2] == 0)))
            continue;
        names++;
        ssize_t t = readlinkat(fd, nm, target, sizeof target);
        if (t < 0)
            continue; /* closed between the listing and the readlink (or not a link) */
        if (t < SOCK_PREFIX_N || memcmp(target, SOCK_PREFIX, SOCK_PREFIX_N) != 0)
            continue;
        if ((size_t)t == sizeof target) {
            rc = CODE_PARSE; /* longer than any inode number: Python reads it whole */
            break;
        }
        /* "socket:[" digits "]" */
        size_t a = SOCK_PREFIX_N, z = (size_t)t;
        int plain = z > a + 1 && target[z - 1] == ']';
        unsigned long long ino = 0;
        if (plain) {
            z--;
            if (z - a > 19)
                plain = -1;
            for (size_t i = a; plain == 1 && i < z; i++) {
                unsigned char c = (unsigned char)target[i];
                if (c >= 0x80)
                    plain = -1;
                else if (c < '0' || c > '9')
                    plain = 0;
                else
                    ino = ino * 10 + (unsigned long long)(c - '0');
            }
        } else {
            for (size_t i = a; i < z; i++)
                if ((unsigned char)target[i] >= 0x80)
                    plain = -1;
        }
        if (plain < 0) {
            rc = CODE_PARSE;
            break;
        }
        if (!plain)
            continue;
        if (strlen(nm) >= sizeof w->socks[0].name) {
            rc = CODE_PARSE;
            break;
        }
        if (w->nsocks == w->cap_socks) {
            size_t cap = w->cap_socks ? w->cap_socks * 2 : 64;
            sock_ent *p = PyMem_RawRealloc(w->socks, cap * sizeof *p);
            if (!p) {
                rc = ENOMEM;
                break;
            }
            w->socks = p;
            w->cap_socks = cap;
        }
        strcpy(w->socks[w->nsocks].name, nm);
        w->socks[w->nsocks].ino = ino;
        w->nsocks++;
    }
    closedir(d);
    if (rc)
        return rc;
    if (!w->nsocks && names && live) {
        struct stat sb;
        if (fstatat(procfd, pidname, &sb, 0) < 0)
            return ESRCH; /* gone: Python counts it */
    }
    if (w->nsocks > 1)
        qsort(w->socks, w->nsocks, sizeof *w->socks, by_name);
    return 0;
}

/* The decimal digits of v >= 0 (a PID) at o, NUL-terminated; their count. */
static size_t dec_digits(char *o, long v) {
    char tmp[24];
    size_t k = 0;
    unsigned long u = v < 0 ? 0 : (unsigned long)v;
    do {
        tmp[k++] = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    for (size_t i = 0; i < k; i++)
        o[i] = tmp[k - 1 - i];
    o[k] = 0;
    return k;
}

/* o = the n bytes of s, then suffix (NUL-terminated); the length. o holds at least 40 bytes. */
static size_t with_suffix(char *o, const char *s, size_t n, const char *suffix) {
    size_t k = strlen(suffix);
    memcpy(o, s, n);
    memcpy(o + n, suffix, k + 1);
    return n + k;
}

/* Read and parse one PID (no GIL). 0 or a code. kept: the PID's kept fds of stat and status
 * (-1: none), updated: what to keep now; *room: how many more fds may be kept. */
static int do_pid(int procfd, long pid, int live, int with_statm, int with_status, int with_socks,
                  pid_work *w, const Py_ssize_t *pick, int npick, int required, const typed_t *typed,
                  int ntyped, const int *by_len, int kept[2], long *room) {
    char name[48];
    int dirfd = procfd, rc;
    const char *f_stat = "stat", *f_statm = "statm", *f_status = "status", *f_fd = "fd";
    char p_stat[40], p_statm[40], p_status[40], p_fd[40];
    /* the PID's digits once, then copies: seven snprintf calls per PID were ~0.7 ms of a
     * 1,000-process scan */
    size_t nl = dec_digits(name, pid);
    if (live) {
        /* one openat per file, the path relative to proc/ (as open("/proc/PID/stat")) */
        with_suffix(p_stat, name, nl, "/stat");
        with_suffix(p_statm, name, nl, "/statm");
        with_suffix(p_status, name, nl, "/status");
        with_suffix(p_fd, name, nl, "/fd");
        f_stat = p_stat;
        f_statm = p_statm;
        f_status = p_status;
        f_fd = p_fd;
    } else {
        /* a capture tree: the PID directory itself must not be a link either */
        dirfd = openat(procfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (dirfd < 0)
            return errno ? errno : EIO;
    }
    char mark_stat[32], mark_status[40];
    size_t mark_stat_n = with_suffix(mark_stat, name, nl, " ("); /* "PID (" */
    memcpy(mark_status, "\nPid:\t", 6); /* "\nPid:\tPID\n" */
    size_t mark_status_n = 6 + with_suffix(mark_status + 6, name, nl, "\n");
    int got_stat = kept[0] >= 0 &&
                   read_kept(&kept[0], w->stat, sizeof w->stat, &w->stat_n, mark_stat, mark_stat_n, 1);
    rc = 0;
    if (!got_stat) {
        int keep = -1;
        rc = read_file(dirfd, f_stat, live, w->stat, sizeof w->stat, &w->stat_n,
                       live && *room > 0 ? &keep : NULL);
        if (keep >= 0) {
            kept[0] = keep;
            (*room)--;
        }
    }
    if (!rc && with_statm)
        rc = read_file(dirfd, f_statm, live, w->statm, sizeof w->statm, &w->statm_n, NULL);
    if (!rc && with_status) {
        int got_status = kept[1] >= 0 && read_kept(&kept[1], w->status, sizeof w->status,
                                                   &w->status_n, mark_status, mark_status_n, 0);
        if (!got_status) {
            int keep = -1;
            rc = read_file(dirfd, f_status, live, w->status, sizeof w->status, &w->status_n,
                           live && *room > 0 ? &keep : NULL);
            if (keep >= 0) {
                kept[1] = keep;
                (*room)--;
            }
        }
    }
    if (!rc && with_socks)
        rc = read_socks(procfd, dirfd, f_fd, name, live, w);
    if (!live)
        close(dirfd);
    if (rc > 0) {
        /* a read failed (the process gone, most often): keep nothing of it */
        for (int k = 0; k < 2; k++)
            if (kept[k] >= 0) {
                close(kept[k]);
                kept[k] = -1;
            }
    }
    if (rc)
        return rc;
    rc = parse_stat(w->stat, w->stat_n, pick, npick, required, &w->st);
    if (!rc && with_statm)
        rc = parse_statm(w->statm, w->statm_n, w->sm);
    if (!rc && with_status)
        rc = parse_status(w->status, w->status_n, typed, ntyped, by_len, &w->ss);
    return rc;
}

static PyObject *procscan_scan(PyObject *self, PyObject *args) {
    (void)self;
    const char *base;
    PyObject *pids, *spec, *cache = Py_None;
    int live, with_statm = 1, with_socks = 0, with_status = 1;
    long room = 0;
    if (!PyArg_ParseTuple(args, "sOpO!|ppOlp:scan", &base, &pids, &live, &PyTuple_Type, &spec,
                          &with_statm, &with_socks, &cache, &room, &with_status))
        return NULL;
    if (cache != Py_None && !PyDict_CheckExact(cache)) {
        PyErr_SetString(PyExc_TypeError, "scan: cache must be a dict or None");
        return NULL;
    }
    if (cache == Py_None || !live)
        room = 0;
    builders b;
    PyObject *pick_t, *typed_t_obj;
    int required;
    if (!PyArg_ParseTuple(spec, "O!O!O!iO!O!O!O!O!:spec", &PyType_Type, &b.stat_cls,
                          &PyTuple_Type, &b.stat_names, &PyTuple_Type, &pick_t, &required,
                          &PyType_Type, &b.statm_cls, &PyTuple_Type, &b.statm_names,
                          &PyType_Type, &b.status_cls, &PyDict_Type, &b.status_none,
                          &PyTuple_Type, &typed_t_obj))
        return NULL;
    Py_ssize_t npick = PyTuple_GET_SIZE(pick_t), ntyped = PyTuple_GET_SIZE(typed_t_obj);
    if (npick > MAX_PICK || ntyped > MAX_TYPED || PyTuple_GET_SIZE(b.stat_names) != 3 + npick ||
        PyTuple_GET_SIZE(b.statm_names) != 7) {
        PyErr_SetString(PyExc_ValueError, "scan: spec does not fit");
        return NULL;
    }
    Py_ssize_t pick[MAX_PICK];
    for (Py_ssize_t i = 0; i < npick; i++) {
        pick[i] = PyLong_AsSsize_t(PyTuple_GET_ITEM(pick_t, i));
        if (pick[i] == -1 && PyErr_Occurred())
            return NULL;
        if (pick[i] < 1 || pick[i] >= MAX_TOKENS) {
            PyErr_SetString(PyExc_ValueError, "scan: stat pick index out of range");
            return NULL;
        }
    }
    typed_t typed[MAX_TYPED];
    for (Py_ssize_t i = 0; i < ntyped; i++) {
        PyObject *e = PyTuple_GET_ITEM(typed_t_obj, i);
        char *key;
        Py_ssize_t kl;
        PyObject *keyb;
        if (!PyArg_ParseTuple(e, "O!Ui:typed", &PyBytes_Type, &keyb, &b.status_attr[i],
                              &typed[i].kind))
            return NULL;
        if (PyBytes_AsStringAndSize(keyb, &key, &kl) < 0)
            return NULL;
        if (kl < 3 || key[0] != '\n' || key[kl - 1] != ':' || memchr(key + 1, ':', (size_t)kl - 2) ||
            memchr(key + 1, '\n', (size_t)kl - 2)) {
            PyErr_SetString(PyExc_ValueError, "scan: a status key must be b'\\nKey:'");
            return NULL;
        }
        typed[i].key = key;
        typed[i].key_len = (size_t)kl;
    }
    int by_len[MAX_KEY_LEN];
    index_typed(typed, (int)ntyped, by_len);
    b.str_name = str_name;
    b.str_text = str_text;

    PyObject *seq = PySequence_Fast(pids, "scan: pids must be a sequence of ints");
    if (!seq)
        return NULL;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    PyObject *out = PyList_New(n);
    pid_work *w = PyMem_RawMalloc(sizeof *w);
    int procfd = -1, err = 0;
    if (w) {
        w->socks = NULL;
        w->nsocks = w->cap_socks = 0;
    }
    if (!out || !w)
        goto fail;

    size_t bl = strlen(base);
    char *procdir = PyMem_RawMalloc(bl + 8);
    if (!procdir)
        goto fail;
    memcpy(procdir, base, bl);
    strcpy(procdir + bl, bl && base[bl - 1] == '/' ? "proc" : "/proc");
    Py_BEGIN_ALLOW_THREADS
    if (live) {
        procfd = open(procdir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    } else {
        int bfd = open(base, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (bfd >= 0) {
            procfd = openat(bfd, "proc", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
            if (procfd < 0)
                err = errno;
            close(bfd);
        } else {
            err = errno;
        }
    }
    if (procfd < 0 && !err)
        err = errno ? errno : EIO;
    Py_END_ALLOW_THREADS
    PyMem_RawFree(procdir);

    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *pidobj = PySequence_Fast_GET_ITEM(seq, i);
        long pid = PyLong_AsLong(pidobj);
        if (pid == -1 && PyErr_Occurred())
            goto fail;
        int rc;
        int kept[2] = {-1, -1}, was[2] = {-1, -1};
        if (procfd < 0) {
            rc = err;
        } else if (pid < 0) {
            rc = ENOENT;
        } else {
            if (cache != Py_None && live) {
                /* the kept fds of this PID: (stat fd, status fd) */
                PyObject *e = PyDict_GetItemWithError(cache, pidobj);
                if (!e && PyErr_Occurred())
                    goto fail;
                if (e && PyTuple_CheckExact(e) && PyTuple_GET_SIZE(e) == 2) {
                    kept[0] = was[0] = (int)PyLong_AsLong(PyTuple_GET_ITEM(e, 0));
                    kept[1] = was[1] = (int)PyLong_AsLong(PyTuple_GET_ITEM(e, 1));
                    if (PyErr_Occurred())
                        goto fail;
                }
            }
            Py_BEGIN_ALLOW_THREADS
            rc = do_pid(procfd, pid, live, with_statm, with_status, with_socks, w, pick, (int)npick,
                        required, typed, (int)ntyped, by_len, kept, &room);
            Py_END_ALLOW_THREADS
            if (cache != Py_None && live && (kept[0] != was[0] || kept[1] != was[1])) {
                int r2;
                if (kept[0] < 0 && kept[1] < 0) {
                    r2 = PyDict_DelItem(cache, pidobj);
                    if (r2 < 0 && PyErr_ExceptionMatches(PyExc_KeyError)) {
                        PyErr_Clear();
                        r2 = 0;
                    }
                } else {
                    PyObject *t = Py_BuildValue("(ii)", kept[0], kept[1]);
                    r2 = t ? PyDict_SetItem(cache, pidobj, t) : -1;
                    Py_XDECREF(t);
                }
                if (r2 < 0) {
                    /* the dict does not know them: do not leak them */
                    if (kept[0] >= 0 && kept[0] != was[0])
                        close(kept[0]);
                    if (kept[1] >= 0 && kept[1] != was[1])
                        close(kept[1]);
                    goto fail;
                }
            }
        }
        PyObject *item;
        if (rc) {
            item = PyLong_FromLong(rc);
        } else {
            PyObject *a = build_stat(&b, &w->st, (int)npick);
            PyObject *m = !a ? NULL : with_statm ? build_statm(&b, w->sm) : (Py_INCREF(Py_None), Py_None);
            PyObject *s = !m ? NULL : with_status ? build_status(&b, typed, (int)ntyped, w->status,
                                                                 w->status_n, &w->ss)
                                                  : (Py_INCREF(Py_None), Py_None);
            PyObject *k = NULL;
            if (s && with_socks) {
                k = PyTuple_New((Py_ssize_t)w->nsocks);
                for (size_t j = 0; k && j < w->nsocks; j++) {
                    PyObject *x = PyLong_FromUnsignedLongLong(w->socks[j].ino);
                    if (!x) {
                        Py_CLEAR(k);
                        break;
                    }
                    PyTuple_SET_ITEM(k, (Py_ssize_t)j, x);
                }
                item = k ? PyTuple_Pack(4, a, m, s, k) : NULL;
            } else {
                item = s ? PyTuple_Pack(3, a, m, s) : NULL;
            }
            Py_XDECREF(a);
            Py_XDECREF(m);
            Py_XDECREF(s);
            Py_XDECREF(k);
        }
        if (!item)
            goto fail;
        PyList_SET_ITEM(out, i, item);
    }
    if (procfd >= 0)
        close(procfd);
    PyMem_RawFree(w->socks);
    PyMem_RawFree(w);
    Py_DECREF(seq);
    return out;
fail:
    if (procfd >= 0)
        close(procfd);
    if (w)
        PyMem_RawFree(w->socks);
    PyMem_RawFree(w);
    Py_XDECREF(out);
    Py_DECREF(seq);
    return NULL;
}

/* ---- whole-file parsers of the snapshot's two costliest sources --------------------------
 *
 * Each mirrors a Python fast path exactly for the plain form the kernel prints, and returns None
 * for anything else (non-ASCII text, a line break other than '\n', a number that is not plain
 * ASCII digits or does not fit 64 bits, an unexpected shape): the caller then runs its Python
 * fast path, which falls back to the line-by-line reference as before. */

/* The ASCII characters str.splitlines() breaks on besides '\n'. */
static inline int py_break(unsigned char c) {
    return c == '\r' || c == 0x0b || c == 0x0c || c == 0x1c || c == 0x1d || c == 0x1e;
}

static inline int is_hex(unsigned char c) {
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

/* Plain ASCII digits that fit an unsigned 64-bit: what the C side reads as a number. */
static int plain_uint(const char *s, size_t n, unsigned long long *out) {
    if (!n)
        return -1;
    unsigned long long v = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned d = (unsigned char)s[i] - '0';
        if (d > 9 || v > (ULLONG_MAX - d) / 10)
            return -1;
        v = v * 10 + d;
    }
    *out = v;
    return 0;
}

/* The text of an ASCII str (NULL when not ASCII). */
static const char *ascii_text(PyObject *text, Py_ssize_t *n) {
    if (!PyUnicode_IS_ASCII(text))
        return NULL;
    *n = PyUnicode_GET_LENGTH(text);
    return (const char *)PyUnicode_DATA(text);
}

typedef struct {
    const char *p;
    size_t len;
    uint64_t hash;
    unsigned long long count, bytes;
} tail_ent;

/* vmalloc_tails(text) -> {tail: (count, total_size)} in order of first appearance, or None.
 * What vmallocinfo.parse's fast path computes: the text fully matches _STANDARD (every line
 * '0xHEX-0xHEX +DIGITS( [^breaks]*)?\n'), and line.split(None, 2) gives three parts (range,
 * size, tail: the rest after the whitespace that follows the size, trailing blanks kept). */
static PyObject *procscan_vmalloc_tails(PyObject *self, PyObject *text) {
    (void)self;
    if (!PyUnicode_Check(text)) {
        PyErr_SetString(PyExc_TypeError, "vmalloc_tails: text must be str");
        return NULL;
    }
    Py_ssize_t sn;
    const char *t = ascii_text(text, &sn);
    if (!t || sn == 0 || t[sn - 1] != '\n')
        Py_RETURN_NONE;
    size_t n = (size_t)sn, cap = 256, nent = 0, ecap = 128;
    int32_t *table = PyMem_Malloc(cap * sizeof *table);
    tail_ent *ent = PyMem_Malloc(ecap * sizeof *ent);
    PyObject *out = NULL;
    int plain = 0;
    if (!table || !ent) {
        PyErr_NoMemory();
        goto done;
    }
    memset(table, 0xff, cap * sizeof *table);
    const char *p = t, *end = t + n;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p)); /* never NULL: text ends in '\n' */
        const char *q = p;
        /* 0xHEX-0xHEX */
        if (nl - q < 2 || q[0] != '0' || q[1] != 'x')
            goto done;
        q += 2;
        const char *h = q;
        while (q < nl && is_hex((unsigned char)*q))
            q++;
        if (q == h || nl - q < 3 || q[0] != '-' || q[1] != '0' || q[2] != 'x')
            goto done;
        q += 3;
        h = q;
        while (q < nl && is_hex((unsigned char)*q))
            q++;
        if (q == h || q >= nl || *q != ' ')
            goto done;
        while (q < nl && *q == ' ')
            q++;
        /* SIZE, then ' ' and the tail ('\n' right after the size: split() gives two parts) */
        const char *d = q;
        while (q < nl && *q >= '0' && *q <= '9')
            q++;
        unsigned long long size;
        if (q >= nl || *q != ' ' || plain_uint(d, (size_t)(q - d), &size))
            goto done;
        for (const char *c = q; c < nl; c++)
            if (py_break((unsigned char)*c))
                goto done;
        while (q < nl && py_space((unsigned char)*q))
            q++;
        if (q == nl)
            goto done; /* nothing after the size */
        size_t len = (size_t)(nl - q);
        uint64_t hv = 1469598103934665603ULL;
        for (size_t i = 0; i < len; i++)
            hv = (hv ^ (unsigned char)q[i]) * 1099511628211ULL;
        size_t mask = cap - 1, s = (size_t)hv & mask;
        tail_ent *e = NULL;
        while (table[s] >= 0) {
            tail_ent *x = &ent[table[s]];
            if (x->hash == hv && x->len == len && memcmp(x->p, q, len) == 0) {
                e = x;
                break;
            }
            s = (s + 1) & mask;
        }
        if (!e) {
            if (nent == ecap) {
                tail_ent *ne = PyMem_Realloc(ent, 2 * ecap * sizeof *ent);
                if (!ne) {
                    PyErr_NoMemory();
                    goto done;
                }
                ent = ne;
                ecap *= 2;
            }
            if (nent >= INT32_MAX)
                goto done;
            e = &ent[nent];
            e->p = q;
            e->len = len;
            e->hash = hv;
            e->count = 0;
            e->bytes = 0;
            table[s] = (int32_t)nent++;
            if (2 * nent > cap) { /* grow and rehash */
                size_t ncap = 4 * cap;
                int32_t *nt = PyMem_Malloc(ncap * sizeof *nt);
                if (!nt) {
                    PyErr_NoMemory();
                    goto done;
                }
                memset(nt, 0xff, ncap * sizeof *nt);
                for (size_t k = 0; k < nent; k++) {
                    size_t j = (size_t)ent[k].hash & (ncap - 1);
                    while (nt[j] >= 0)
                        j = (j + 1) & (ncap - 1);
                    nt[j] = (int32_t)k;
                }
                PyMem_Free(table);
                table = nt;
                cap = ncap;
            }
        }
        if (e->bytes > ULLONG_MAX - size)
            goto done; /* a sum over 64 bits: Python's ints */
        e->count++;
        e->bytes += size;
        p = nl + 1;
    }
    plain = 1;
    out = PyDict_New();
    if (!out)
        goto done;
    for (size_t k = 0; k < nent; k++) {
        PyObject *key = PyUnicode_FromStringAndSize(ent[k].p, (Py_ssize_t)ent[k].len);
        PyObject *val = key ? Py_BuildValue("(KK)", ent[k].count, ent[k].bytes) : NULL;
        int rc = val ? PyDict_SetItem(out, key, val) : -1;
        Py_XDECREF(key);
        Py_XDECREF(val);
        if (rc < 0) {
            Py_CLEAR(out);
            goto done;
        }
    }
done:
    PyMem_Free(table);
    PyMem_Free(ent);
    if (!out && !plain && !PyErr_Occurred())
        Py_RETURN_NONE;
    return out;
}

#define SLAB_TOKENS 16
static const int slab_int_cols[11] = {1, 2, 3, 4, 5, 8, 9, 10, 13, 14, 15};

/* slab_rows(text, cls=None, fields=None) -> (version, rows) or None.
 * What slabinfo.parse's fast path accepts: 'slabinfo - version: 2[.x]' then a line starting
 * with '#', then at least one row, every row the 16 tokens 'name a b c d e : tunables x y z :
 * slabdata p q r' (name not ':' and not starting with '#'). rows: a list of tuples (name, then
 * the 11 ints in slabinfo._FIELDS order); with cls and fields (the 12 attribute names): a dict
 * {name: cls object with those attributes}, made as the Python fast path makes them. */
static PyObject *procscan_slab_rows(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *text, *cls = Py_None, *fields = Py_None;
    if (!PyArg_ParseTuple(args, "U|OO:slab_rows", &text, &cls, &fields))
        return NULL;
    int objs = cls != Py_None;
    if (objs && (!PyType_Check(cls) || !PyTuple_Check(fields) || PyTuple_GET_SIZE(fields) != 12)) {
        PyErr_SetString(PyExc_TypeError, "slab_rows: cls must be a type, fields 12 names");
        return NULL;
    }
    Py_ssize_t sn;
    const char *t = ascii_text(text, &sn);
    if (!t || sn == 0 || t[sn - 1] != '\n')
        Py_RETURN_NONE; /* a last line without '\n' was cut: the Python reference says so */
    const char *end = t + sn;
    for (const char *c = t; c < end; c++)
        if (py_break((unsigned char)*c))
            Py_RETURN_NONE;
    /* header */
    static const char prefix[] = "slabinfo - version:";
    const size_t pl = sizeof prefix - 1;
    const char *nl = memchr(t, '\n', (size_t)sn);
    if (!nl || (size_t)(nl - t) < pl || memcmp(t, prefix, pl) != 0)
        Py_RETURN_NONE;
    const char *v = t + pl;
    size_t vl = (size_t)(nl - v);
    strip_ws(&v, &vl);
    if (vl < 1 || v[0] != '2' || (vl > 1 && v[1] != '.'))
        Py_RETURN_NONE;
    const char *p = nl + 1;
    if (p >= end || *p != '#')
        Py_RETURN_NONE;
    nl = memchr(p, '\n', (size_t)(end - p));
    if (!nl || nl + 1 >= end)
        Py_RETURN_NONE; /* no row (splitlines gives no line after a final '\n') */
    p = nl + 1;
    /* rows: checked and converted before any object is made */
    size_t nrows = 0, rcap = 256;
    typedef struct {
        const char *name;
        size_t name_len;
        unsigned long long v[11];
    } slab_row;
    slab_row *rows = PyMem_Malloc(rcap * sizeof *rows);
    PyObject *list = NULL, *out = NULL;
    if (!rows)
        return PyErr_NoMemory();
    while (p < end) {
        nl = memchr(p, '\n', (size_t)(end - p));
        const char *le = nl ? nl : end;
        const char *tok[SLAB_TOKENS + 1];
        size_t tl[SLAB_TOKENS + 1];
        int nt;
        split_ws(p, (size_t)(le - p), tok, tl, SLAB_TOKENS + 1, &nt);
        if (nt != SLAB_TOKENS || tl[6] != 1 || tok[6][0] != ':' || tl[11] != 1 ||
            tok[11][0] != ':' || tl[7] != 8 || memcmp(tok[7], "tunables", 8) != 0 ||
            tl[12] != 8 || memcmp(tok[12], "slabdata", 8) != 0 || tok[0][0] == '#' ||
            (tl[0] == 1 && tok[0][0] == ':'))
            goto none;
        if (nrows == rcap) {
            slab_row *nr = PyMem_Realloc(rows, 2 * rcap * sizeof *rows);
            if (!nr) {
                PyErr_NoMemory();
                goto fail;
            }
            rows = nr;
            rcap *= 2;
        }
        slab_row *r = &rows[nrows++];
        r->name = tok[0];
        r->name_len = tl[0];
        for (int k = 0; k < 11; k++)
            if (plain_uint(tok[slab_int_cols[k]], tl[slab_int_cols[k]], &r->v[k]))
                goto none;
        p = le + 1;
    }
    list = objs ? PyDict_New() : PyList_New((Py_ssize_t)nrows);
    if (!list)
        goto fail;
    for (size_t i = 0; i < nrows; i++) {
        const slab_row *r = &rows[i];
        PyObject *name = PyUnicode_FromStringAndSize(r->name, (Py_ssize_t)r->name_len);
        if (!name)
            goto fail;
        if (objs) {
            PyObject *d = PyDict_New();
            if (!d || PyDict_SetItem(d, PyTuple_GET_ITEM(fields, 0), name) < 0) {
                Py_XDECREF(d);
                Py_DECREF(name);
                goto fail;
            }
            for (int k = 0; k < 11; k++)
                if (set_steal(d, PyTuple_GET_ITEM(fields, k + 1),
                              PyLong_FromUnsignedLongLong(r->v[k])) < 0) {
                    Py_DECREF(d);
                    Py_DECREF(name);
                    goto fail;
                }
            PyObject *o = new_with_dict((PyTypeObject *)cls, d);
            int rc = o ? PyDict_SetItem(list, name, o) : -1;
            Py_XDECREF(o);
            Py_DECREF(name);
            if (rc < 0)
                goto fail;
        } else {
            PyObject *tup = PyTuple_New(12);
            if (!tup) {
                Py_DECREF(name);
                goto fail;
            }
            PyTuple_SET_ITEM(tup, 0, name);
            for (int k = 0; k < 11; k++) {
                PyObject *x = PyLong_FromUnsignedLongLong(r->v[k]);
                if (!x) {
                    Py_DECREF(tup);
                    goto fail;
                }
                PyTuple_SET_ITEM(tup, k + 1, x);
            }
            PyList_SET_ITEM(list, (Py_ssize_t)i, tup);
        }
    }
    PyMem_Free(rows);
    PyObject *ver = PyUnicode_FromStringAndSize(v, (Py_ssize_t)vl);
    if (!ver) {
        Py_DECREF(list);
        return NULL;
    }
    out = PyTuple_Pack(2, ver, list);
    Py_DECREF(ver);
    Py_DECREF(list);
    return out;
none:
    PyMem_Free(rows);
    Py_RETURN_NONE;
fail:
    PyMem_Free(rows);
    Py_XDECREF(list);
    return NULL;
}

/* read_dir_files(dirpath, names, maxbytes) -> (st_nlink, [bytes | int, ...]) or int
 *
 * Several small files of one directory (the control files of a memory cgroup): the directory is
 * opened once (O_PATH) and each name opened relative to it with openat, so the kernel walks the
 * full path once per directory instead of once per file. Each file is read to EOF (read(2) until
 * it returns 0: kernfs and procfs sizes lie). Per name, in order: the bytes, or an int: an errno
 * of openat/read (> 0), or BIG (-2) when the file holds more than maxbytes (Python then reads it
 * through the Root). st_nlink is the directory's link count (fstat on the O_PATH fd; on kernfs,
 * 2 + its number of subdirectories). An int instead of the tuple: the errno of opening the
 * directory. Live files only (no O_NOFOLLOW): ksight.fs.root.LiveRoot.read_many uses it, the
 * Python os.open(dir_fd=...) version there is the reference. A name holding '/' or NUL, or equal
 * to '.' or '..' (or empty) is a ValueError: only files directly in the directory are read.
 * The GIL is kept: a call is a few small reads (~30 us for a cgroup's five files). */
static PyObject *procscan_read_dir_files(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *path_obj, *names, *seq, *items = NULL, *out = NULL;
    Py_ssize_t maxbytes;
    if (!PyArg_ParseTuple(args, "O&On:read_dir_files", PyUnicode_FSConverter, &path_obj, &names,
                          &maxbytes))
        return NULL;
    if (maxbytes < 0 || maxbytes > (1 << 26)) {
        PyErr_SetString(PyExc_ValueError, "read_dir_files: maxbytes out of range");
        Py_DECREF(path_obj);
        return NULL;
    }
    seq = PySequence_Fast(names, "read_dir_files: names must be a sequence");
    if (!seq) {
        Py_DECREF(path_obj);
        return NULL;
    }
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    size_t cap = (size_t)maxbytes + 1; /* one byte more: a file that fills it is over maxbytes */
    char *buf = NULL;
    int dfd = -1;
    for (Py_ssize_t i = 0; i < n; i++) { /* check every name before any I/O */
        PyObject *o = PySequence_Fast_GET_ITEM(seq, i);
        Py_ssize_t ln;
        const char *c = PyUnicode_Check(o) ? PyUnicode_AsUTF8AndSize(o, &ln) : NULL;
        if (!c) {
            if (!PyErr_Occurred())
                PyErr_SetString(PyExc_TypeError, "read_dir_files: names must be str");
            goto done;
        }
        if (ln == 0 || (size_t)ln != strlen(c) || memchr(c, '/', (size_t)ln) ||
            strcmp(c, ".") == 0 || strcmp(c, "..") == 0) {
            PyErr_Format(PyExc_ValueError, "read_dir_files: %R is not a file name", o);
            goto done;
        }
    }
    buf = PyMem_Malloc(cap);
    items = PyList_New(n);
    if (!buf || !items) {
        if (!buf)
            PyErr_NoMemory();
        goto done;
    }
    struct stat st;
    dfd = open(PyBytes_AS_STRING(path_obj), O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0 || fstat(dfd, &st) < 0) {
        out = PyLong_FromLong(errno ? errno : EIO);
        goto done;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        const char *name = PyUnicode_AsUTF8(PySequence_Fast_GET_ITEM(seq, i)); /* cached above */
        int code = 0;
        size_t got = 0;
        int fd = openat(dfd, name, O_RDONLY | O_CLOEXEC);
        if (fd < 0) {
            code = errno ? errno : EIO;
        } else {
            for (;;) {
                ssize_t r = read(fd, buf + got, cap - got);
                if (r < 0) {
                    if (errno == EINTR)
                        continue;
                    code = errno ? errno : EIO;
                    break;
                }
                if (r == 0)
                    break;
                got += (size_t)r;
                if (got == cap) {
                    code = CODE_BIG;
                    break;
                }
            }
            close(fd);
        }
        PyObject *v = code ? PyLong_FromLong(code) : PyBytes_FromStringAndSize(buf, (Py_ssize_t)got);
        if (!v)
            goto done;
        PyList_SET_ITEM(items, i, v);
    }
    out = Py_BuildValue("(kO)", (unsigned long)st.st_nlink, items);
done:
    if (dfd >= 0)
        close(dfd);
    PyMem_Free(buf);
    Py_XDECREF(items);
    Py_DECREF(seq);
    Py_DECREF(path_obj);
    return out;
}

/* read_dir_kept(dirpath, names, maxbytes, entry, gen, room) -> (st_nlink, st_ino, [bytes | int, ...],
 * added, nbad) or an int errno (the directory cannot be opened); nbad: how many values are ints.
 *
 * read_dir_files with the fds kept open between calls (the control files of a memory cgroup,
 * read again at every sample): `entry` is the caller's dict for this directory, {"": O_PATH fd
 * of the directory, ".": the `gen` it was last proven alive in, name: fd}. A kept fd is read
 * again with pread at offset 0 (kernfs files are one-record seq_files: the text is made anew).
 * Correctness: kernfs answers ENODEV on an open file of a removed directory, never the text of
 * a directory made again under the same path, so a kept fd that fails (ENODEV or any error)
 * drops every fd of the entry and the whole call is made afresh by path. The
 * directory fd is used for names not kept only when it was proven alive in this `gen` (a kept
 * read of it succeeded in this walk): else the entry is dropped and opened afresh too (openat
 * below a removed directory would say ENOENT, not "gone"). New fds are kept while `room` > 0;
 * `added` is how many fds the entry gained (negative when it lost some). st_nlink and st_ino
 * come from fstat of the directory fd. Values: as read_dir_files. */
static int entry_fd(PyObject *entry, PyObject *key) {
    PyObject *v = PyDict_GetItemWithError(entry, key);
    if (!v)
        return PyErr_Occurred() ? -2 : -1;
    long x = PyLong_AsLong(v);
    if (x == -1 && PyErr_Occurred())
        return -2;
    return (int)x;
}

static Py_ssize_t entry_drop(PyObject *entry) {
    /* close every fd of the entry and empty it; returns how many fds were closed */
    PyObject *k, *v;
    Py_ssize_t pos = 0, n = 0;
    while (PyDict_Next(entry, &pos, &k, &v)) {
        if (PyUnicode_Check(k) && PyUnicode_GET_LENGTH(k) == 1 &&
            PyUnicode_READ_CHAR(k, 0) == '.')
            continue;
        long fd = PyLong_AsLong(v);
        if (fd >= 0) {
            close((int)fd);
            n++;
        }
    }
    PyErr_Clear();
    PyDict_Clear(entry);
    return n;
}

static int entry_set(PyObject *entry, PyObject *key, long val) {
    PyObject *x = PyLong_FromLong(val);
    if (!x)
        return -1;
    int rc = PyDict_SetItem(entry, key, x);
    Py_DECREF(x);
    return rc;
}

static PyObject *procscan_read_dir_kept(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *path_obj, *names, *entry, *seq = NULL, *items = NULL, *out = NULL;
    PyObject *k_dir = NULL, *k_gen = NULL;
    Py_ssize_t maxbytes, room;
    long gen;
    if (!PyArg_ParseTuple(args, "O&OnO!ln:read_dir_kept", PyUnicode_FSConverter, &path_obj, &names,
                          &maxbytes, &PyDict_Type, &entry, &gen, &room))
        return NULL;
    if (maxbytes < 0 || maxbytes > (1 << 26)) {
        PyErr_SetString(PyExc_ValueError, "read_dir_kept: maxbytes out of range");
        Py_DECREF(path_obj);
        return NULL;
    }
    seq = PySequence_Fast(names, "read_dir_kept: names must be a sequence");
    if (!seq) {
        Py_DECREF(path_obj);
        return NULL;
    }
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    size_t cap = (size_t)maxbytes + 1;
    char *buf = NULL;
    Py_ssize_t added = 0;
    k_dir = PyUnicode_FromString("");
    k_gen = PyUnicode_FromString(".");
    if (!k_dir || !k_gen)
        goto done;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *o = PySequence_Fast_GET_ITEM(seq, i);
        Py_ssize_t ln;
        const char *c = PyUnicode_Check(o) ? PyUnicode_AsUTF8AndSize(o, &ln) : NULL;
        if (!c) {
            if (!PyErr_Occurred())
                PyErr_SetString(PyExc_TypeError, "read_dir_kept: names must be str");
            goto done;
        }
        if (ln == 0 || (size_t)ln != strlen(c) || memchr(c, '/', (size_t)ln) ||
            strcmp(c, ".") == 0 || strcmp(c, "..") == 0) {
            PyErr_Format(PyExc_ValueError, "read_dir_kept: %R is not a file name", o);
            goto done;
        }
    }
    buf = PyMem_Malloc(cap);
    items = PyList_New(n);
    if (!buf || !items) {
        if (!buf)
            PyErr_NoMemory();
        goto done;
    }
    for (int attempt = 0; attempt < 2; attempt++) {
        int dfd = entry_fd(entry, k_dir);
        if (dfd == -2)
            goto done;
        int alive = 0, stale = 0;
        if (dfd >= 0) {
            int g = entry_fd(entry, k_gen);
            if (g == -2)
                goto done;
            alive = g >= 0 && (long)g == gen;
        }
        /* pass 1: the kept fds */
        for (Py_ssize_t i = 0; dfd >= 0 && i < n && !stale; i++) {
            PyObject *name = PySequence_Fast_GET_ITEM(seq, i);
            int fd = entry_fd(entry, name);
            if (fd == -2)
                goto done;
            if (fd < 0)
                continue;
            size_t got = 0;
            /* live = 0: read until read(2) says EOF. cgroup.procs and tasks are seq_files of
             * many records, and one read stops at a page of them: a short read is no EOF */
            int rc = read_fd(fd, 0, buf, cap, &got);
            if (rc && rc != CODE_BIG) { /* ENODEV: the directory was removed */
                stale = 1;
                break;
            }
            alive = 1;
            PyObject *v = rc ? PyLong_FromLong(rc) : PyBytes_FromStringAndSize(buf, (Py_ssize_t)got);
            if (!v)
                goto done;
            PyObject *old = PyList_GET_ITEM(items, i);
            PyList_SET_ITEM(items, i, v);
            Py_XDECREF(old);
        }
        if (dfd >= 0 && (stale || !alive)) {
            added -= entry_drop(entry);
            for (Py_ssize_t i = 0; i < n; i++) { /* the reads of pass 1 are made again */
                PyObject *old = PyList_GET_ITEM(items, i);
                PyList_SET_ITEM(items, i, NULL);
                Py_XDECREF(old);
            }
            dfd = -1;
        }
        if (dfd < 0) {
            dfd = open(PyBytes_AS_STRING(path_obj), O_PATH | O_DIRECTORY | O_CLOEXEC);
            if (dfd < 0) {
                out = PyLong_FromLong(errno ? errno : EIO);
                goto done;
            }
            if (entry_set(entry, k_dir, dfd) < 0) {
                close(dfd);
                goto done;
            }
            added++;
        }
        if (entry_set(entry, k_gen, gen) < 0)
            goto done;
        /* pass 2: the names not read yet, opened relative to the directory fd */
        for (Py_ssize_t i = 0; i < n; i++) {
            if (PyList_GET_ITEM(items, i))
                continue;
            PyObject *name = PySequence_Fast_GET_ITEM(seq, i);
            const char *c = PyUnicode_AsUTF8(name);
            size_t got = 0;
            int keep = -1;
            /* as read_dir_files: to EOF (live = 0; it also adds O_NOFOLLOW: kernfs control
             * files are never links) */
            int rc = read_file(dfd, c, 0, buf, cap, &got, room > 0 ? &keep : NULL);
            if (keep >= 0) {
                if (entry_set(entry, name, keep) < 0) {
                    close(keep);
                    goto done;
                }
                room--;
                added++;
            }
            PyObject *v = rc ? PyLong_FromLong(rc) : PyBytes_FromStringAndSize(buf, (Py_ssize_t)got);
            if (!v)
                goto done;
            PyList_SET_ITEM(items, i, v);
        }
        struct stat st;
        if (fstat(dfd, &st) < 0) {
            out = PyLong_FromLong(errno ? errno : EIO);
            goto done;
        }
        Py_ssize_t nbad = 0; /* items that are not bytes (an errno or BIG) */
        for (Py_ssize_t i = 0; i < n; i++)
            nbad += !PyBytes_CheckExact(PyList_GET_ITEM(items, i));
        out = Py_BuildValue("(kKOnn)", (unsigned long)st.st_nlink, (unsigned long long)st.st_ino,
                            items, added, nbad);
        break;
    }
done:
    Py_XDECREF(k_dir);
    Py_XDECREF(k_gen);
    PyMem_Free(buf);
    Py_XDECREF(items);
    Py_DECREF(seq);
    Py_DECREF(path_obj);
    return out;
}

/* space_kv(data) -> dict or None: sources/_text.fast_space_kv on bytes (memory.stat of a cgroup,
 * read with read_dir_files, parsed without decoding it). Every line "name value\n": a name of
 * one or more bytes that are not whitespace (as Python's str.split() sees ASCII: py_space), one
 * space, 1 to 20 ASCII digits, '\n'; at least one line; values up to 2^64-1. Any byte >= 0x80,
 * any other form, or a larger value gives None, and the caller decodes the text and takes the
 * Python path (fast_space_kv, then the line parser): for the accepted form both give the same
 * dict (a repeated name: the last value, as dict(zip()) keeps). */
/* The key strings of space_kv, kept from call to call: every memory cgroup's memory.stat prints
 * the same ~40 names, and a walk of 500 groups made 20,000 new strings (and hashed each) per
 * sample. A slot holds one str, chosen by a hash of the bytes and compared in full, so a key is
 * the same text whichever slot it comes from; a slot that holds another name is replaced. At most
 * KV_SLOTS strings stay alive, each one reference. */
#define KV_SLOTS 256
static PyObject *kv_keys[KV_SLOTS];

static PyObject *kv_key(const char *p, Py_ssize_t len) {
    uint32_t h = 2166136261u; /* FNV-1a */
    for (Py_ssize_t j = 0; j < len; j++)
        h = (h ^ (unsigned char)p[j]) * 16777619u;
    PyObject **slot = &kv_keys[(h ^ (uint32_t)len) & (KV_SLOTS - 1)];
    PyObject *k = *slot;
    /* every byte is ASCII (checked by the caller): a compact ASCII str, one byte a character */
    if (k && PyUnicode_GET_LENGTH(k) == len && memcmp(PyUnicode_1BYTE_DATA(k), p, (size_t)len) == 0) {
        Py_INCREF(k);
        return k;
    }
    k = PyUnicode_FromStringAndSize(p, len);
    if (!k)
        return NULL;
    Py_INCREF(k);
    Py_XSETREF(*slot, k); /* the slot's reference; the caller's is the other */
    return k;
}

static PyObject *procscan_space_kv(PyObject *self, PyObject *arg) {
    (void)self;
    char *s;
    Py_ssize_t n;
    if (PyBytes_AsStringAndSize(arg, &s, &n) < 0)
        return NULL;
    if (n == 0)
        Py_RETURN_NONE;
    Py_ssize_t lines = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        if ((unsigned char)s[i] >= 0x80)
            Py_RETURN_NONE;
        lines += s[i] == '\n';
    }
    PyObject *d = _PyDict_NewPresized(lines);
    if (!d)
        return NULL;
    Py_ssize_t i = 0;
    while (i < n) {
        Py_ssize_t k0 = i;
        while (i < n && !py_space((unsigned char)s[i]))
            i++;
        if (i == k0 || i >= n || s[i] != ' ')
            goto plain_no;
        Py_ssize_t k1 = i++;
        Py_ssize_t v0 = i;
        unsigned long long v = 0;
        while (i < n && s[i] >= '0' && s[i] <= '9') {
            unsigned d9 = (unsigned)(s[i] - '0');
            if (v > (ULLONG_MAX - d9) / 10)
                goto plain_no; /* over 2^64-1 (20 digits at most below) */
            v = v * 10 + d9;
            i++;
        }
        if (i == v0 || i - v0 > 20 || i >= n || s[i] != '\n')
            goto plain_no;
        i++;
        PyObject *key = kv_key(s + k0, k1 - k0);
        PyObject *val = key ? PyLong_FromUnsignedLongLong(v) : NULL;
        if (!val || PyDict_SetItem(d, key, val) < 0) {
            Py_XDECREF(key);
            Py_XDECREF(val);
            Py_DECREF(d);
            return NULL;
        }
        Py_DECREF(key);
        Py_DECREF(val);
    }
    return d;
plain_no:
    Py_DECREF(d);
    Py_RETURN_NONE;
}

/* ---- what a recorder ranks processes by, from proc/PID/stat alone ------------------------
 *
 * stat_ranks(base, pids, cache=None, room=0) -> list, one entry per pid:
 *   (utime + stime, starttime, rss pages, flags)   from the plain form of proc/PID/stat
 *   int code                                        as scan's (errno > 0, PARSE, BIG): Python
 *                                                   reads that PID with the reference parser
 * Live only (base is the root of a live /proc). What `ksight record` needs of every process to
 * choose the ones it stores (collect/processes.py rank): the kernel prints stat without the
 * mm and credential walks status costs (~3.7 us against ~9 us a process here), and no Python
 * object is made but one tuple of four ints. cache: {pid: stat fd}, the caller's own dict (not
 * scan's), kept between calls and read again with pread as scan's kept fds are (read_kept: a
 * gone process reads ESRCH, a text that does not name the PID drops the entry); at most `room`
 * new fds are kept in this call. The GIL is released while a PID's file is read and parsed. */
static PyObject *procscan_stat_ranks(PyObject *self, PyObject *args) {
    (void)self;
    const char *base;
    PyObject *pids, *cache = Py_None;
    long room = 0;
    if (!PyArg_ParseTuple(args, "sO|Ol:stat_ranks", &base, &pids, &cache, &room))
        return NULL;
    if (cache != Py_None && !PyDict_CheckExact(cache)) {
        PyErr_SetString(PyExc_TypeError, "stat_ranks: cache must be a dict or None");
        return NULL;
    }
    if (cache == Py_None)
        room = 0;
    /* token indices after "comm) " (0 is state): flags, utime, stime, starttime, rss */
    static const Py_ssize_t pick[5] = {6, 11, 12, 19, 21};
    PyObject *seq = PySequence_Fast(pids, "stat_ranks: pids must be a sequence of ints");
    if (!seq)
        return NULL;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    PyObject *out = PyList_New(n);
    char *buf = PyMem_RawMalloc(SMALL_BUF);
    stat_res *st = PyMem_RawMalloc(sizeof *st);
    int procfd = -1, err = 0;
    size_t bl = strlen(base);
    char *procdir = PyMem_RawMalloc(bl + 8);
    if (!out || !buf || !st || !procdir)
        goto fail;
    memcpy(procdir, base, bl);
    strcpy(procdir + bl, bl && base[bl - 1] == '/' ? "proc" : "/proc");
    Py_BEGIN_ALLOW_THREADS
    procfd = open(procdir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (procfd < 0)
        err = errno ? errno : EIO;
    Py_END_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *pidobj = PySequence_Fast_GET_ITEM(seq, i);
        long pid = PyLong_AsLong(pidobj);
        if (pid == -1 && PyErr_Occurred())
            goto fail;
        int rc, kfd = -1, was = -1;
        if (procfd < 0) {
            rc = err;
        } else if (pid < 0) {
            rc = ENOENT;
        } else {
            if (cache != Py_None) {
                PyObject *e = PyDict_GetItemWithError(cache, pidobj);
                if (!e && PyErr_Occurred())
                    goto fail;
                if (e && PyLong_CheckExact(e)) {
                    kfd = was = (int)PyLong_AsLong(e);
                    if (PyErr_Occurred())
                        goto fail;
                }
            }
            Py_BEGIN_ALLOW_THREADS
            char path[40], mark[32];
            size_t len = 0, mark_n = (size_t)snprintf(mark, sizeof mark, "%ld (", pid);
            snprintf(path, sizeof path, "%ld/stat", pid);
            rc = 0;
            if (!(kfd >= 0 && read_kept(&kfd, buf, SMALL_BUF, &len, mark, mark_n, 1))) {
                int keep = -1;
                rc = read_file(procfd, path, 1, buf, SMALL_BUF, &len, room > 0 ? &keep : NULL);
                if (keep >= 0) {
                    kfd = keep;
                    room--;
                }
            }
            if (!rc)
                rc = parse_stat(buf, len, pick, 5, 22, st);
            if (!rc && (st->pid.neg || (long)st->pid.mag != pid))
                rc = CODE_PARSE;
            for (int k = 0; !rc && k < 5; k++)
                if (!st->pick[k].present || st->pick[k].neg)
                    rc = CODE_PARSE; /* "-" or a sign: the reference parser says what it is */
            Py_END_ALLOW_THREADS
            if (cache != Py_None && kfd != was) {
                int r2;
                if (kfd < 0) {
                    r2 = PyDict_DelItem(cache, pidobj);
                    if (r2 < 0 && PyErr_ExceptionMatches(PyExc_KeyError)) {
                        PyErr_Clear();
                        r2 = 0;
                    }
                } else {
                    PyObject *v = PyLong_FromLong(kfd);
                    r2 = v ? PyDict_SetItem(cache, pidobj, v) : -1;
                    Py_XDECREF(v);
                }
                if (r2 < 0) {
                    if (kfd >= 0)
                        close(kfd);
                    goto fail;
                }
            }
        }
        PyObject *item;
        if (rc) {
            item = PyLong_FromLong(rc);
        } else {
            unsigned long long ticks = st->pick[1].mag + st->pick[2].mag;
            if (ticks < st->pick[1].mag) /* cannot happen with real tick counts: let Python say */
                item = PyLong_FromLong(CODE_PARSE);
            else
                item = Py_BuildValue("(KKKK)", ticks, st->pick[3].mag, st->pick[4].mag,
                                     st->pick[0].mag);
        }
        if (!item)
            goto fail;
        PyList_SET_ITEM(out, i, item);
    }
    if (procfd >= 0)
        close(procfd);
    PyMem_RawFree(procdir);
    PyMem_RawFree(st);
    PyMem_RawFree(buf);
    Py_DECREF(seq);
    return out;
fail:
    if (procfd >= 0)
        close(procfd);
    PyMem_RawFree(procdir);
    PyMem_RawFree(st);
    PyMem_RawFree(buf);
    Py_XDECREF(out);
    Py_DECREF(seq);
    return NULL;
}

static PyMethodDef methods[] = {
    {"scan", procscan_scan, METH_VARARGS,
     "scan(base, pids, live, spec, with_statm=True, with_sockets=False, cache=None, room=0,\n"
     "     with_status=True) -> list:\n"
     "per PID (PidStat, PidStatm or None, PidStatus or None[, socket inodes]), or an int\n"
     "code (errno > 0, -1 not the plain form, -2 over the buffer) for Python's careful path."},
    {"vmalloc_tails", procscan_vmalloc_tails, METH_O,
     "vmalloc_tails(text) -> {tail: (count, total_size)} as vmallocinfo.parse's fast path groups\n"
     "the lines, or None when the text is not in the plain form (Python then does it)."},
    {"slab_rows", procscan_slab_rows, METH_VARARGS,
     "slab_rows(text, cls=None, fields=None) -> (version, rows) as slabinfo.parse's fast path\n"
     "reads a version 2.x file, or None when the text is not in the plain form."},
    {"read_dir_files", procscan_read_dir_files, METH_VARARGS,
     "read_dir_files(dirpath, names, maxbytes) -> (st_nlink, [bytes or int errno/BIG, ...]), or\n"
     "an int errno when the directory cannot be opened: small files of one directory, each\n"
     "opened with openat relative to one O_PATH fd of the directory and read to EOF."},
    {"read_dir_kept", procscan_read_dir_kept, METH_VARARGS,
     "read_dir_kept(dirpath, names, maxbytes, entry, gen, room) -> (st_nlink, st_ino, [bytes or\n"
     "int errno/BIG, ...], added, nbad), or an int errno: read_dir_files with the fds kept in `entry`\n"
     "between calls and read again with pread (see the comment in _procscan.c)."},
    {"space_kv", procscan_space_kv, METH_O,
     "space_kv(data: bytes) -> {name: int} as sources._text.fast_space_kv gives for the decoded\n"
     "text, or None when the bytes are not in its plain ASCII form (Python then does it)."},
    {"stat_ranks", procscan_stat_ranks, METH_VARARGS,
     "stat_ranks(base, pids, cache=None, room=0) -> list: per PID (utime + stime, starttime,\n"
     "rss pages, flags) from proc/PID/stat (live), or an int code for the reference parser."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "ksight._procscan",
    "C fast path of ksight.collect.processes.scan (stat, statm, status); the Python parsers "
    "are the reference.",
    -1, methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__procscan(void) {
    str___dict__ = PyUnicode_InternFromString("__dict__");
    str_name = PyUnicode_InternFromString("name");
    str_text = PyUnicode_InternFromString("text");
    if (!str___dict__ || !str_name || !str_text)
        return NULL;
    PyObject *m = PyModule_Create(&module);
    if (!m)
        return NULL;
    if (PyModule_AddIntConstant(m, "PARSE", CODE_PARSE) < 0 ||
        PyModule_AddIntConstant(m, "BIG", CODE_BIG) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
