/* ksight._smapspmap: `ksight pmap PID`'s live fast path, /proc/PID/smaps to pmap -x's rows.
 *
 * Why: procps `pmap -x` of a process with 5,000 mappings takes ~35 ms, of which the kernel's
 * printing of smaps is ~17 ms; a Python process starts in ~10 ms (~14 ms behind pip's wrapper
 * of an entry point, which imports re: scripts/ksight does not). What is left for ksight is a
 * few ms: no Region, Mapping or dict per mapping, no 4 MB
 * bytes object. This reads smaps in 3 kB reads (SMAPS_CHUNK in collect/pmap_live.py), parses
 * each chunk's whole lines while they are in the cache, keeps per mapping only what pmap -x
 * prints (address, size, Rss, Shared_Dirty + Private_Dirty, perms, pmap's name) and ksight's
 * class (views/pmap.classify, done here the same way), and formats the rows with the column
 * widths the renderer chose (render/pmap_text.render_fast).
 *
 * The reference is the ordinary path: sources/proc_pid/smaps.parse -> views/pmap.mappings_of ->
 * render/pmap_text.render. This accepts only the plain form the kernel prints, a subset of what
 * smaps.parse accepts: printable ASCII lines, a header "start-end perms offset dev inode [path]"
 * (first character 0-9 or a-f, single spaces between its first five fields, no tab, end >=
 * start), field lines "Name: N" / "Name: N kB" (a capital first, no space or tab before the
 * colon, spaces or tabs after it, 1 to 19 digits), "VmFlags: ..." without tabs, a newline at the
 * end, no field before the first header. Anything else returns None, and `ksight pmap` takes
 * the ordinary path, which parses the text or says why it cannot. tests/views/test_pmap_fast.py
 * compares the text of both paths on the corpora, on edge cases and live.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>
#include "_smapstext.h"

/* views/pmap.KINDS, in that order (a test checks they agree) */
enum { K_HEAP, K_STACK, K_ANON, K_VDSO, K_SHM, K_EXE, K_LIB, K_FILE, NKINDS };
static const char *KIND_NAMES[NKINDS] = {"heap", "stack", "anon", "vdso", "shm", "exe", "lib", "file"};
static const char *KERNEL_PAGES[] = {"[vdso]", "[vvar]", "[vvar_vclock]", "[vsyscall]", "[uprobes]",
                                     "[sigpage]", "[vectors]", NULL};

typedef struct {
    unsigned long long start, end;
    long long rss, sd, pd; /* -1: no such line */
    char perms[4];
    unsigned char kind, shared;
    size_t name; /* offset in the arena */
    unsigned int nname;
} Row;

typedef struct {
    Row *rows;
    size_t n, cap;
    char *arena; /* pmap's names, back to back */
    size_t alen, acap;
    char *exe; /* the program file (bytes), or NULL: guessed from the first file mapping */
    size_t nexe;
    int guessed;
    int have; /* a region is open: rows[n - 1] */
    /* the last mapping's path, and its name and kind: consecutive mappings repeat them */
    char *lastpath;
    size_t nlast, lastcap;
    size_t lastname;
    unsigned int nlastname;
    int lastkind, lastvalid;
    unsigned char lastshared;
} Table;

#define NAME_ANON 0 /* "  [ anon ]" at the start of the arena */
#define NAME_STACK 10 /* "  [ stack ]" after it */

static void table_free(Table *t) {
    free(t->rows);
    free(t->arena);
    free(t->exe);
    free(t->lastpath);
    free(t);
}

static void capsule_free(PyObject *cap) {
    Table *t = PyCapsule_GetPointer(cap, "ksight._smapspmap.Table");
    if (t)
        table_free(t);
}

static int arena_add(Table *t, const char *p, size_t n, size_t *off) {
    if (t->alen + n > t->acap) {
        size_t cap = t->acap ? t->acap : 4096;
        while (cap < t->alen + n)
            cap *= 2;
        char *a = realloc(t->arena, cap);
        if (!a)
            return -1;
        t->arena = a;
        t->acap = cap;
    }
    memcpy(t->arena + t->alen, p, n);
    *off = t->alen;
    t->alen += n;
    return 0;
}

static Table *table_new(const char *exe, size_t nexe) {
    Table *t = calloc(1, sizeof *t);
    if (!t)
        return NULL;
    size_t off;
    if (arena_add(t, "  [ anon ]", 10, &off) < 0 || arena_add(t, "  [ stack ]", 11, &off) < 0)
        goto fail;
    if (exe) {
        t->exe = malloc(nexe + 1);
        if (!t->exe)
            goto fail;
        memcpy(t->exe, exe, nexe);
        t->nexe = nexe;
    }
    return t;
fail:
    table_free(t);
    return NULL;
}

static int starts(const char *p, size_t n, const char *s) {
    size_t k = strlen(s);
    return n >= k && memcmp(p, s, k) == 0;
}

static int same(const char *p, size_t n, const char *s) {
    return n == strlen(s) && memcmp(p, s, n) == 0;
}

/* views/pmap.classify's kind of a mapping */
static int classify(const Table *t, const char *p, size_t n, int shared) {
    if (same(p, n, "[heap]"))
        return K_HEAP;
    if (starts(p, n, "[stack"))
        return K_STACK;
    for (const char **k = KERNEL_PAGES; *k; k++)
        if (same(p, n, *k))
            return K_VDSO;
    if (n == 0 || (p[0] == '[' && p[n - 1] == ']'))
        return K_ANON;
    if (starts(p, n, "/dev/zero") && shared)
        return K_SHM;
    if (starts(p, n, "/dev/shm/") || starts(p, n, "/SYSV") || starts(p, n, "/memfd:"))
        return K_SHM;
    if (t->exe && n == t->nexe && memcmp(p, t->exe, n) == 0)
        return K_EXE;
    const char *base = p;
    for (const char *q = p; q < p + n; q++)
        if (*q == '/')
            base = q + 1;
    for (const char *q = base; q + 3 <= p + n; q++)
        if (q[0] == '.' && q[1] == 's' && q[2] == 'o')
            return K_LIB;
    return K_FILE;
}

/* a header line [p, e): open a row. 0 ok, 1 not the plain form, -1 out of memory */
static int header(Table *t, const char *p, const char *e) {
    unsigned long long start, end, off, maj, min, inode;
    const char *dash = find(p, e, '-'), *sp = find(p, e, ' ');
    if (dash >= sp || sp == e || !hex_span(p, dash, &start) || !hex_span(dash + 1, sp, &end) ||
        end < start)
        return 1;
    const char *perms = sp + 1;
    if (e - perms < 5 || perms[4] != ' ')
        return 1;
    for (int i = 0; i < 4; i++)
        if (perms[i] == ' ')
            return 1;
    p = perms + 5;
    sp = find(p, e, ' ');
    if (sp == e || !hex_span(p, sp, &off))
        return 1;
    const char *dev = sp + 1; /* hex:hex */
    sp = find(dev, e, ' ');
    const char *colon = find(dev, sp, ':');
    if (colon == sp || !hex_span(dev, colon, &maj) || !hex_span(colon + 1, sp, &min))
        return 1;
    int major_zero = 1;
    for (const char *q = dev; q < colon; q++)
        if (*q != '0')
            major_zero = 0;
    p = sp < e ? sp + 1 : sp;
    sp = find(p, e, ' ');
    if (!dec_span(p, sp, &inode))
        return 1;
    p = sp;
    while (p < e && *p == ' ')
        p++;
    const char *q = e;
    while (q > p && q[-1] == ' ')
        q--;
    size_t np = (size_t)(q - p);
    if (t->n == t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 1024;
        Row *r = realloc(t->rows, cap * sizeof *r);
        if (!r)
            return -1;
        t->rows = r;
        t->cap = cap;
    }
    Row *r = &t->rows[t->n++];
    t->have = 1;
    r->start = start;
    r->end = end;
    r->rss = r->sd = r->pd = -1;
    memcpy(r->perms, perms, 4);
    int shared = perms[3] == 's';
    r->shared = (unsigned char)shared;
    /* views/pmap.mappings_of: with no exe, the first file mapping is taken as the executable */
    if (!t->exe && np && p[0] == '/' && inode) {
        t->exe = malloc(np + 1);
        if (!t->exe)
            return -1;
        memcpy(t->exe, p, np);
        t->nexe = np;
        t->guessed = 1;
        t->lastvalid = 0;
    }
    int sysv = starts(p, np, "/SYSV") && major_zero;
    if (!sysv && t->lastvalid && np == t->nlast && shared == t->lastshared &&
        memcmp(p, t->lastpath, np) == 0) {
        r->kind = (unsigned char)t->lastkind;
        r->name = t->lastname;
        r->nname = t->nlastname;
        return 0;
    }
    r->kind = (unsigned char)classify(t, p, np, shared);
    /* views/pmap.pmap_name */
    if (sysv) {
        char buf[64];
        int k = snprintf(buf, sizeof buf, "  [ shmid=0x%llx ]", inode);
        if (arena_add(t, buf, (size_t)k, &r->name) < 0)
            return -1;
        r->nname = (unsigned int)k;
        return 0; /* its name is its own: not kept as the last */
    }
    const char *cut = NULL;
    for (const char *c = p; c < q; c++)
        if (*c == '/')
            cut = c;
    if (cut) {
        const char *b = cut + 1 < q ? cut + 1 : cut; /* "/dir/" -> "/" */
        if (arena_add(t, b, (size_t)(q - b), &r->name) < 0)
            return -1;
        r->nname = (unsigned int)(q - b);
    } else if (same(p, np, "[stack]")) {
        r->name = NAME_STACK;
        r->nname = 11;
    } else {
        r->name = NAME_ANON;
        r->nname = 10;
    }
    if (np > t->lastcap) {
        char *lp = realloc(t->lastpath, np);
        if (!lp)
            return -1;
        t->lastpath = lp;
        t->lastcap = np;
    }
    if (np)
        memcpy(t->lastpath, p, np);
    t->nlast = np;
    t->lastshared = (unsigned char)shared;
    t->lastkind = r->kind;
    t->lastname = r->name;
    t->nlastname = r->nname;
    t->lastvalid = 1;
    return 0;
}

/* the whole lines of [p, end): 0 ok, 1 not the plain form, -1 out of memory. *used: the bytes
 * consumed (up to the last newline) */
static int lines(Table *t, const char *p, const char *end, size_t *used) {
    const char *start = p;
    /* whole lines only: up to the last newline (the rest waits for the next read); every scan
     * below stops at a newline at the latest, so none reads past `lim` */
    const char *last = p < end ? memrchr(p, '\n', (size_t)(end - p)) : NULL;
    if (!last) {
        *used = 0;
        return 0;
    }
    const char *lim = last + 1;
    while (p < lim) {
        unsigned char c = (unsigned char)*p;
        if (c == '\n') { /* an empty line */
            p++;
            continue;
        }
        if (c >= 'A' && c <= 'Z') {
            /* "Name: N kB", "Name: N" or "VmFlags: ...", read once: the name (printable, no
             * space, no tab) up to its colon, spaces or tabs, 1 to 19 digits, then " kB" or
             * nothing; ~24 of a mapping's 25 lines */
            const char *q = p + 1;
            for (;; q++) {
                unsigned char d = (unsigned char)*q;
                if (d == ':')
                    break;
                if (d <= ' ' || d > '~')
                    return 1; /* a space, tab, newline or byte that is not plain */
            }
            if (!t->have)
                return 1; /* a field before the first header */
            size_t nn = (size_t)(q - p);
            if (nn == 7 && memcmp(p, "VmFlags", 7) == 0) {
                for (q++; *q != '\n'; q++)
                    if ((unsigned char)*q < 0x20 || (unsigned char)*q > 0x7e)
                        return 1;
                p = q + 1;
                continue;
            }
            for (q++; *q == ' ' || *q == '\t'; q++)
                ;
            const char *d0 = q;
            unsigned long long v = 0;
            for (; (unsigned)(*q - '0') < 10; q++)
                v = v * 10 + (unsigned)(*q - '0');
            size_t nd = (size_t)(q - d0);
            if (nd < 1 || nd > 19 || (nd == 19 && v > (unsigned long long)LLONG_MAX))
                return 1; /* 19 digits never pass 2^64: v is exact */
            if (*q != '\n') {
                if (q[0] != ' ' || q[1] != 'k' || q[2] != 'B' || q[3] != '\n')
                    return 1;
                q += 3;
            }
            Row *r = &t->rows[t->n - 1];
            if (nn == 3 && p[0] == 'R' && p[1] == 's' && p[2] == 's')
                r->rss = (long long)v;
            else if (nn == 12 && memcmp(p, "Shared_Dirty", 12) == 0)
                r->sd = (long long)v;
            else if (nn == 13 && memcmp(p, "Private_Dirty", 13) == 0)
                r->pd = (long long)v;
            p = q + 1;
            continue;
        }
        if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')) {
            int tabs = 0;
            const char *e = line_end(p, lim, &tabs);
            if (!e || tabs)
                return 1; /* a byte that is not plain, or a tab in a header */
            int rc = header(t, p, e);
            if (rc)
                return rc;
            p = e + 1;
            continue;
        }
        return 1;
    }
    *used = (size_t)(lim - start);
    return 0;
}

static PyObject *summary_of(Table *t);

/* (capsule, n, (kbytes, rss, dirty) totals, (kbytes, rss, dirty) largest, cells, kinds, exe
 * guessed or None): cells has bit kind*2+shared set for each (kind, shared) present; kinds is a
 * tuple of (mappings, kbytes, rss, dirty) per kind of KINDS. None when a sum would pass 2^63. */
static PyObject *summary(Table *t) { /* owns t: the capsule's, or freed */
    PyObject *res = summary_of(t);
    if (!res || res == Py_None)
        table_free(t);
    return res;
}

static PyObject *summary_of(Table *t) {
    long long tot[3] = {0, 0, 0}, top[3] = {0, 0, 0}, kinds[NKINDS][4];
    memset(kinds, 0, sizeof kinds);
    unsigned long cells = 0;
    for (size_t i = 0; i < t->n; i++) {
        Row *r = &t->rows[i];
        long long v[3] = {(long long)((r->end - r->start) >> 10), r->rss < 0 ? 0 : r->rss, 0};
        if (r->sd >= 0 || r->pd >= 0) {
            if (__builtin_add_overflow(r->sd < 0 ? 0 : r->sd, r->pd < 0 ? 0 : r->pd, &v[2]))
                Py_RETURN_NONE;
        }
        long long *k = kinds[r->kind];
        k[0]++;
        for (int j = 0; j < 3; j++) {
            if (__builtin_add_overflow(tot[j], v[j], &tot[j]) ||
                __builtin_add_overflow(k[j + 1], v[j], &k[j + 1]))
                Py_RETURN_NONE;
            if (v[j] > top[j])
                top[j] = v[j];
        }
        cells |= 1UL << (r->kind * 2 + r->shared);
    }
    PyObject *kt = PyTuple_New(NKINDS);
    if (!kt)
        return NULL;
    for (int i = 0; i < NKINDS; i++) {
        PyObject *x = Py_BuildValue("(LLLL)", kinds[i][0], kinds[i][1], kinds[i][2], kinds[i][3]);
        if (!x) {
            Py_DECREF(kt);
            return NULL;
        }
        PyTuple_SET_ITEM(kt, i, x);
    }
    PyObject *guess = t->guessed ? PyUnicode_DecodeASCII(t->exe, (Py_ssize_t)t->nexe, NULL)
                                 : (Py_INCREF(Py_None), Py_None);
    if (!guess) {
        Py_DECREF(kt);
        return NULL;
    }
    PyObject *cap = PyCapsule_New(t, "ksight._smapspmap.Table", NULL);
    if (!cap) {
        Py_DECREF(kt);
        Py_DECREF(guess);
        return NULL;
    }
    PyObject *res = Py_BuildValue("(On(LLL)(LLL)kNN)", cap, (Py_ssize_t)t->n, tot[0], tot[1], tot[2],
                         top[0], top[1], top[2], cells, kt, guess);
    /* from here the capsule frees t with itself; before, summary() does */
    if (res && PyCapsule_SetDestructor(cap, capsule_free) < 0)
        Py_CLEAR(res);
    Py_DECREF(cap);
    return res;
}

/* what table() and read_table() return for t after a parse that ended with rc (0, 1: not the
 * plain form, -1: no memory): summary(t), or None when not plain or no mapping. Owns t. */
static PyObject *result(Table *t, int rc) {
    if (rc == 0 && t->n)
        return summary(t);
    table_free(t);
    if (rc < 0)
        return PyErr_NoMemory();
    Py_RETURN_NONE;
}

/* the exe argument: None or str, as bytes (utf-8, surrogateescape: readlink's decoding) */
static int exe_arg(PyObject *exe, PyObject **keep, const char **p, Py_ssize_t *n) {
    *keep = NULL;
    *p = NULL;
    *n = 0;
    if (exe == Py_None)
        return 0;
    if (!PyUnicode_Check(exe)) {
        PyErr_SetString(PyExc_TypeError, "exe: str or None");
        return -1;
    }
    *keep = PyUnicode_AsEncodedString(exe, "utf-8", "surrogateescape");
    if (!*keep)
        return -1;
    *p = PyBytes_AS_STRING(*keep);
    *n = PyBytes_GET_SIZE(*keep);
    return 0;
}

/* table(data: bytes, exe) */
static PyObject *py_table(PyObject *self, PyObject *args) {
    (void)self;
    Py_buffer buf;
    PyObject *exe, *keep;
    const char *ep;
    Py_ssize_t en;
    if (!PyArg_ParseTuple(args, "y*O", &buf, &exe))
        return NULL;
    if (exe_arg(exe, &keep, &ep, &en) < 0) {
        PyBuffer_Release(&buf);
        return NULL;
    }
    Table *t = table_new(ep, (size_t)en);
    Py_XDECREF(keep);
    if (!t) {
        PyBuffer_Release(&buf);
        return PyErr_NoMemory();
    }
    const char *d = buf.buf;
    size_t used = 0;
    int rc = (buf.len && d[buf.len - 1] != '\n') ? 1 : lines(t, d, d + buf.len, &used);
    PyBuffer_Release(&buf);
    return result(t, rc);
}

/* ---- reading -----------------------------------------------------------------------------
 * read_table() reads the file in `chunk`-byte reads into one SLOT-byte buffer and parses each
 * read's whole lines at once, while they are in the cache; a line cut between two reads is put
 * together in `carry`. No buffer as large as the file: 4 MB of fresh memory costs a page fault
 * per 4 kB (~1.3 ms here). A reader thread parsing while the kernel prints was tried: with a
 * second CPU free it hid the ~1.7 ms of parsing, on this shared 2-CPU machine it lost more in
 * wake-ups than it saved (docs/benchmarks.md, issue-10 pmap section). */
#define SLOT 32768
#define MAX_LINE (1 << 20) /* a longer line is not the plain form (a path is at most 4 kB) */

/* the lines of one read [d, d + n), with the cut line `carry` before it: 0, 1 (not the plain
 * form) or -1 (no memory) */
static int read_lines(Table *t, const char *d, size_t n, char **carry, size_t *ncarry,
                      size_t *capcarry) {
    if (*ncarry) { /* the line cut at the end of the last read: put it together */
        const char *nl = memchr(d, '\n', n);
        size_t take = nl ? (size_t)(nl - d) + 1 : n;
        if (*ncarry + take > MAX_LINE)
            return 1;
        if (*ncarry + take > *capcarry) {
            size_t cap = (*ncarry + take) * 2;
            char *c = realloc(*carry, cap);
            if (!c)
                return -1;
            *carry = c;
            *capcarry = cap;
        }
        memcpy(*carry + *ncarry, d, take);
        *ncarry += take;
        d += take;
        n -= take;
        if (!nl)
            return 0; /* still cut */
        size_t used = 0;
        int rc = lines(t, *carry, *carry + *ncarry, &used);
        if (rc)
            return rc;
        *ncarry = 0;
    }
    size_t used = 0;
    int rc = lines(t, d, d + n, &used);
    if (rc)
        return rc;
    if (used < n) { /* keep the cut line for the next read */
        size_t k = n - used;
        if (k > MAX_LINE)
            return 1;
        if (k > *capcarry) {
            char *c = realloc(*carry, k * 2);
            if (!c)
                return -1;
            *carry = c;
            *capcarry = k * 2;
        }
        memcpy(*carry, d + used, k);
        *ncarry = k;
    }
    return 0;
}

/* read_table(path, exe, chunk): table() of the file, read with read(2) of `chunk` bytes and
 * parsed a read at a time. OSError when it cannot be opened or read. */
static PyObject *py_read_table(PyObject *self, PyObject *args) {
    (void)self;
    const char *path;
    PyObject *exe, *keep;
    Py_ssize_t chunk, en;
    const char *ep;
    if (!PyArg_ParseTuple(args, "sOn", &path, &exe, &chunk))
        return NULL;
    if (chunk < 64 || chunk > SLOT) {
        PyErr_SetString(PyExc_ValueError, "chunk: 64 B to 32 kB");
        return NULL;
    }
    if (exe_arg(exe, &keep, &ep, &en) < 0)
        return NULL;
    Table *t = table_new(ep, (size_t)en);
    Py_XDECREF(keep);
    char *buf = malloc(SLOT);
    if (!t || !buf) {
        if (t)
            table_free(t);
        free(buf);
        return PyErr_NoMemory();
    }
    char *carry = NULL;
    size_t ncarry = 0, capcarry = 0;
    int rc = 0, err = 0, fd;
    Py_BEGIN_ALLOW_THREADS
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        err = errno;
    while (fd >= 0 && !rc) {
        ssize_t n = read(fd, buf, (size_t)chunk);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            err = errno;
            break;
        }
        if (n == 0)
            break;
        rc = read_lines(t, buf, (size_t)n, &carry, &ncarry, &capcarry);
    }
    if (fd >= 0)
        close(fd);
    if (!rc && !err && ncarry)
        rc = 1;
    Py_END_ALLOW_THREADS
    free(buf);
    free(carry);
    if (err) {
        table_free(t);
        errno = err;
        return PyErr_SetFromErrnoWithFilename(PyExc_OSError, path);
    }
    return result(t, rc);
}

static char *put_dec(char *o, long long v) {
    char tmp[24];
    int k = 0;
    unsigned long long u = (unsigned long long)v;
    do {
        tmp[k++] = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    while (k)
        *o++ = tmp[--k];
    return o;
}

/* right-justified decimal (or "-" when v < 0) in w columns */
static char *put_rjust(char *o, long long v, int w) {
    char tmp[24], *e = v < 0 ? (tmp[0] = '-', tmp + 1) : put_dec(tmp, v);
    int n = (int)(e - tmp);
    for (; n < w; w--)
        *o++ = ' ';
    memcpy(o, tmp, (size_t)n);
    return o + n;
}

static int max_i(int a, int b) { return a > b ? a : b; }

/* rows(capsule, a, k, r, d, mo, c) -> bytes: each mapping's row of render/pmap_text.render,
 * "%0{a}x %{k}s %{r}s %{d}s %-{mo}s %-{c}s %s" (Address, Kbytes, RSS, Dirty, Mode, Class,
 * Mapping) without trailing spaces, each ending in a newline; ASCII. Made in place in the bytes
 * object (sized for the longest row, then cut): the text is copied once, into the output. */
static PyObject *py_rows(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *cap;
    int wa, wk, wr, wd, wm, wc;
    if (!PyArg_ParseTuple(args, "Oiiiiii", &cap, &wa, &wk, &wr, &wd, &wm, &wc))
        return NULL;
    Table *t = PyCapsule_GetPointer(cap, "ksight._smapspmap.Table");
    if (!t)
        return NULL;
    if (wa < 0 || wk < 0 || wr < 0 || wd < 0 || wm < 0 || wc < 0 || wa > 64 || wk > 64 ||
        wr > 64 || wd > 64 || wm > 64 || wc > 64) {
        PyErr_SetString(PyExc_ValueError, "column widths: 0 to 64");
        return NULL;
    }
    /* a row: at most max(width, digits) per column (20 digits for a 64-bit number, 16 for
     * the address, 5 for the mode, 2 + the longest kind for the class), 6 spaces, the name,
     * the newline */
    size_t per = (size_t)(max_i(wa, 16) + max_i(wk, 20) + max_i(wr, 20) + max_i(wd, 20) +
                          max_i(wm, 5) + max_i(wc, 7) + 6 + 1),
           total = 0;
    for (size_t i = 0; i < t->n; i++)
        total += per + t->rows[i].nname;
    PyObject *res = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)total);
    if (!res)
        return NULL;
    char *out = PyBytes_AS_STRING(res), *o = out;
    static const char hex[] = "0123456789abcdef";
    for (size_t i = 0; i < t->n; i++) {
        Row *r = &t->rows[i];
        char *line = o;
        int nd = 1;
        for (unsigned long long x = r->start >> 4; x; x >>= 4)
            nd++;
        for (int j = nd; j < wa; j++)
            *o++ = '0';
        for (int j = nd - 1; j >= 0; j--)
            *o++ = hex[(r->start >> (4 * j)) & 15];
        *o++ = ' ';
        o = put_rjust(o, (long long)((r->end - r->start) >> 10), wk);
        *o++ = ' ';
        o = put_rjust(o, r->rss, wr);
        *o++ = ' ';
        o = put_rjust(o, (r->sd < 0 && r->pd < 0) ? -1 : (r->sd < 0 ? 0 : r->sd) + (r->pd < 0 ? 0 : r->pd),
                      wd);
        *o++ = ' ';
        /* Mode: rwx, then s (shared) or -, then - */
        char *m0 = o;
        memcpy(o, r->perms, 3);
        o[3] = r->shared ? 's' : '-';
        o[4] = '-';
        o += 5;
        while (o - m0 < wm)
            *o++ = ' ';
        *o++ = ' ';
        char *c0 = o;
        *o++ = r->shared ? 's' : 'p';
        *o++ = ' ';
        const char *kn = KIND_NAMES[r->kind];
        size_t kl = strlen(kn);
        memcpy(o, kn, kl);
        o += kl;
        while (o - c0 < wc)
            *o++ = ' ';
        *o++ = ' ';
        memcpy(o, t->arena + r->name, r->nname);
        o += r->nname;
        while (o > line && o[-1] == ' ')
            o--;
        *o++ = '\n';
    }
    if (_PyBytes_Resize(&res, o - out) < 0)
        return NULL;
    return res;
}

static PyMethodDef methods[] = {
    {"read_table", py_read_table, METH_VARARGS,
     "read_table(path, exe, chunk) -> table() of the file, read in `chunk`-byte reads (OSError "
     "when it cannot be read)"},
    {"table", py_table, METH_VARARGS,
     "table(data: bytes, exe: str | None) -> (table, n, totals, largest, cells, kinds, "
     "guessed exe) or None (not the plain form, or no mapping: use the ordinary path)"},
    {"rows", py_rows, METH_VARARGS,
     "rows(table, a, k, r, d, mo, c) -> the mapping rows of render/pmap_text with these widths "
     "(ASCII bytes)"},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "ksight._smapspmap",
                                    "`ksight pmap`'s live fast path: smaps to pmap -x rows.", -1,
                                    methods, NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__smapspmap(void) {
    PyObject *m = PyModule_Create(&module);
    if (!m)
        return NULL;
    PyObject *k = PyTuple_New(NKINDS);
    if (!k) {
        Py_DECREF(m);
        return NULL;
    }
    for (int i = 0; i < NKINDS; i++) {
        PyObject *s = PyUnicode_InternFromString(KIND_NAMES[i]);
        if (!s) {
            Py_DECREF(k);
            Py_DECREF(m);
            return NULL;
        }
        PyTuple_SET_ITEM(k, i, s);
    }
    if (PyModule_AddObject(m, "KINDS", k) < 0) {
        Py_DECREF(k);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
