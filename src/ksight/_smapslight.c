/* ksight._smapslight: the light reading of /proc/PID/smaps for `ksight leak` and the memory
 * growth rules (sources/process_maps.py): per region only its header (start, end, perms,
 * inode, path) and its Rss and Anonymous, as plain tuples; no Region objects, no `fields` dict.
 *
 * Why: the rules need no more than that, and the growing processes' smaps are read at every
 * snapshot. The reference stays sources/proc_pid/smaps.parse: for every text this accepts, the
 * tuples are exactly (r.start, r.end, r.perms, r.inode, r.pathname, r.fields.get("Rss"),
 * r.fields.get("Anonymous")) of smaps.parse's regions (tests/sources/test_smaps_light.py
 * compares them on the corpora and live).
 *
 * It accepts only the plain form the kernel prints (fs/proc/task_mmu.c): printable ASCII lines,
 * a header "start-end perms offset dev inode [path]" with single spaces between its first five
 * fields, field lines "Name: N kB" / "Name: N" (spaces or tabs after the colon, at most 19
 * digits) and "VmFlags: ...", and a
 * newline at the end. Anything else (a cut file, non-ASCII, a field before the first header, a
 * line that is neither) returns None, and the caller hands the text to smaps.parse, which
 * parses it or raises the ParseError naming the line.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <string.h>
#include "_smapstext.h"

/* "Name:   N kB" or "Name:   N" from the ':' on: the value, or 0 when not that form */
static int field_value(const char *colon, const char *e, unsigned long long *out) {
    const char *p = colon + 1;
    while (p < e && (*p == ' ' || *p == '\t'))
        p++;
    const char *d = p;
    while (p < e && *p >= '0' && *p <= '9')
        p++;
    if (!dec_span(d, p, out))
        return 0;
    if (p == e)
        return 1;
    return e - p == 3 && memcmp(p, " kB", 3) == 0;
}

typedef struct {
    unsigned long long start, end, inode;
    const char *perms, *path;
    Py_ssize_t npath;
    long long rss, anon; /* -1: no such line */
} Head;

/* one header line [p, e): 0 when not the plain form */
static int header(const char *p, const char *e, Head *h) {
    const char *dash = find(p, e, '-'), *sp = find(p, e, ' ');
    if (dash >= sp || sp == e)
        return 0;
    if (!hex_span(p, dash, &h->start) || !hex_span(dash + 1, sp, &h->end))
        return 0;
    p = sp + 1;
    if (e - p < 5 || p[4] != ' ')
        return 0;
    h->perms = p;
    p += 5;
    unsigned long long off;
    sp = find(p, e, ' ');
    if (sp == e || !hex_span(p, sp, &off))
        return 0;
    p = sp + 1; /* dev: hex:hex */
    sp = find(p, e, ' ');
    const char *colon = find(p, sp, ':');
    unsigned long long maj, min;
    if (colon == sp || !hex_span(p, colon, &maj) || !hex_span(colon + 1, sp, &min))
        return 0;
    p = sp; /* inode, then the path after any spaces, both ends stripped */
    if (p < e)
        p++;
    sp = find(p, e, ' ');
    if (!dec_span(p, sp, &h->inode))
        return 0;
    p = sp;
    while (p < e && *p == ' ')
        p++;
    const char *q = e;
    while (q > p && q[-1] == ' ')
        q--;
    h->path = p;
    h->npath = q - p;
    h->rss = h->anon = -1;
    return 1;
}

static PyObject *cached(PyObject *cache, const char *p, Py_ssize_t n) {
    PyObject *key = PyBytes_FromStringAndSize(p, n);
    if (!key)
        return NULL;
    PyObject *got = PyDict_GetItemWithError(cache, key);
    if (got) {
        Py_DECREF(key);
        Py_INCREF(got);
        return got;
    }
    PyObject *s = PyErr_Occurred() ? NULL : PyUnicode_FromStringAndSize(p, n);
    if (s && PyDict_SetItem(cache, key, s) < 0)
        Py_CLEAR(s);
    Py_DECREF(key);
    return s;
}

static PyObject *opt(long long v) {
    if (v < 0)
        Py_RETURN_NONE;
    return PyLong_FromLongLong(v);
}

/* append the region h to out; -1 on a Python error */
static int emit(PyObject *out, PyObject *cache, const Head *h) {
    PyObject *t = PyTuple_New(7);
    if (!t)
        return -1;
    PyObject *items[7] = {PyLong_FromUnsignedLongLong(h->start),
                          PyLong_FromUnsignedLongLong(h->end), cached(cache, h->perms, 4),
                          PyLong_FromUnsignedLongLong(h->inode),
                          cached(cache, h->path, h->npath), opt(h->rss), opt(h->anon)};
    int bad = 0;
    for (int i = 0; i < 7; i++) {
        if (!items[i])
            bad = 1;
        PyTuple_SET_ITEM(t, i, items[i] ? items[i] : (Py_INCREF(Py_None), Py_None));
    }
    if (bad || PyList_Append(out, t) < 0) {
        Py_DECREF(t);
        return -1;
    }
    Py_DECREF(t);
    return 0;
}

/* parse(data: bytes) -> list of (start, end, perms, inode, pathname, rss_kb, anonymous_kb), or
 * None when the text is not the plain form (see the top of this file) */
static PyObject *parse(PyObject *self, PyObject *arg) {
    (void)self;
    char *buf;
    Py_ssize_t n;
    if (PyBytes_AsStringAndSize(arg, &buf, &n) < 0)
        return NULL;
    if (n > 0 && buf[n - 1] != '\n')
        Py_RETURN_NONE;
    PyObject *out = PyList_New(0), *cache = PyDict_New();
    if (!out || !cache)
        goto fail;
    Head h;
    int have = 0;
    const char *p = buf, *end = buf + n;
    while (p < end) {
        const char *e = find(p, end, '\n');
        for (const char *q = p; q < e; q++)
            if ((*q < 0x20 && *q != '\t') || *q > 0x7e) /* tabs: "THPeligible:\t\t0" */
                goto not_plain;
        if (e == p) {
            p = e + 1;
            continue;
        }
        char c = *p;
        if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')) {
            if (have && emit(out, cache, &h) < 0)
                goto fail;
            if (memchr(p, '\t', (size_t)(e - p)) || !header(p, e, &h))
                goto not_plain;
            have = 1;
        } else if (c >= 'A' && c <= 'Z') {
            const char *colon = find(p, e, ':');
            if (!have || colon == e || find(p, colon, ' ') != colon)
                goto not_plain;
            Py_ssize_t nn = colon - p;
            if (nn == 7 && memcmp(p, "VmFlags", 7) == 0) {
                p = e + 1;
                continue;
            }
            unsigned long long v;
            if (!field_value(colon, e, &v) || v > (unsigned long long)LLONG_MAX)
                goto not_plain;
            if (nn == 3 && memcmp(p, "Rss", 3) == 0)
                h.rss = (long long)v;
            else if (nn == 9 && memcmp(p, "Anonymous", 9) == 0)
                h.anon = (long long)v;
        } else {
            goto not_plain;
        }
        p = e + 1;
    }
    if (have && emit(out, cache, &h) < 0)
        goto fail;
    Py_DECREF(cache);
    return out;
not_plain:
    Py_XDECREF(out);
    Py_XDECREF(cache);
    Py_RETURN_NONE;
fail:
    Py_XDECREF(out);
    Py_XDECREF(cache);
    return NULL;
}

static PyMethodDef methods[] = {
    {"parse", parse, METH_O,
     "parse(data: bytes) -> [(start, end, perms, inode, pathname, rss_kb, anonymous_kb)] or None "
     "(not the plain form: use sources.proc_pid.smaps.parse)"},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_smapslight",
                                    "The light /proc/PID/smaps reader (headers, Rss, Anonymous).",
                                    -1, methods, NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__smapslight(void) { return PyModule_Create(&module); }
