/* ksight._smapsparse: the C fast path of sources/proc_pid/smaps.parse (/proc/PID/smaps).
 *
 * Why: `ksight pmap` of a process with 5,000 mappings parses ~125,000 lines (~4 MB); the Python
 * parser (the reference) takes ~0.15 s for them, more than procps pmap -x takes in all. This
 * reads the plain form the kernel prints (fs/proc/task_mmu.c show_smap) and builds exactly the
 * objects smaps.parse builds (Region with its typed fields, `fields` and `vm_flags`; Smaps).
 *
 * It accepts only that plain form: printable ASCII, a header "start-end perms offset dev inode
 * [path]" with single spaces between its first five fields, "Name: N kB" / "Name: N" lines with
 * at most 19 digits, "VmFlags: a b c" lines, and a newline at the end. Anything else (a cut
 * file, non-ASCII, a line it does not know, a field before the first header, a number it would
 * have to range-check) returns None, and smaps.parse_fast hands the text to smaps.parse, which
 * either parses it the same way or raises the ParseError naming the line.
 *
 * tests/sources/test_smaps_c.py compares both parsers on the corpora, on bad input and live.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <string.h>
#include "_smapstext.h"

static PyObject *str___dict__, *k_start, *k_end, *k_perms, *k_offset, *k_dev, *k_inode,
    *k_pathname, *k_fields, *k_vm_flags, *k_regions;

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

/* d[key] = v, stealing v */
static int set_steal(PyObject *d, PyObject *key, PyObject *v) {
    if (!v)
        return -1;
    int rc = PyDict_SetItem(d, key, v);
    Py_DECREF(v);
    return rc;
}

static int is_hex(char c) {
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

/* the names of the "Name: N kB" lines, cached by their position in a region (each region prints
 * the same names in the same order): one memcmp instead of a new str per line */
#define MAXNAMES 64
typedef struct {
    const char *p;
    Py_ssize_t n;
    PyObject *s; /* owned */
} NameSlot;

static PyObject *name_at(NameSlot *slots, int i, const char *p, Py_ssize_t n) {
    if (i < MAXNAMES) {
        NameSlot *s = &slots[i];
        if (s->s && s->n == n && memcmp(s->p, p, (size_t)n) == 0) {
            Py_INCREF(s->s);
            return s->s;
        }
        PyObject *o = PyUnicode_FromStringAndSize(p, n);
        if (!o)
            return NULL;
        PyUnicode_InternInPlace(&o);
        Py_XDECREF(s->s);
        Py_INCREF(o);
        s->s = o;
        s->p = p;
        s->n = n;
        return o;
    }
    PyObject *o = PyUnicode_FromStringAndSize(p, n);
    if (o)
        PyUnicode_InternInPlace(&o);
    return o;
}

/* small str cache for perms, dev and pathnames (they repeat: "rw-p", "00:00", a library) */
static PyObject *cached_str(PyObject *cache, const char *p, Py_ssize_t n) {
    PyObject *key = PyBytes_FromStringAndSize(p, n);
    if (!key)
        return NULL;
    PyObject *got = PyDict_GetItemWithError(cache, key);
    if (got) {
        Py_DECREF(key);
        Py_INCREF(got);
        return got;
    }
    if (PyErr_Occurred()) {
        Py_DECREF(key);
        return NULL;
    }
    PyObject *s = PyUnicode_FromStringAndSize(p, n);
    if (!s || PyDict_SetItem(cache, key, s) < 0) {
        Py_DECREF(key);
        Py_XDECREF(s);
        return NULL;
    }
    Py_DECREF(key);
    return s;
}

struct State;
typedef struct State State;
static PyObject *header_str(State *st, int slot, const char *p, Py_ssize_t n);

struct State {
    PyTypeObject *region_cls;
    PyObject *typed; /* tuple of (name, attr) */
    PyObject *cache; /* bytes -> str */
    PyObject *flagcache; /* bytes of a VmFlags line -> its tuple */
    PyObject *regions; /* list */
    /* the region being read */
    PyObject *head; /* dict: start..pathname, or NULL */
    PyObject *fields; /* dict */
    PyObject *flags; /* tuple or NULL */
    Py_ssize_t nfields; /* names in the last region: the next is presized for as many */
    /* the last perms, dev and path strings, with their bytes: consecutive regions repeat them */
    const char *last_p[3];
    Py_ssize_t last_n[3];
    PyObject *last_s[3]; /* borrowed from the cache */
};

/* close the region being read: Region(**head, **typed, fields=, vm_flags=) */
static int close_region(State *st) {
    if (!st->head)
        return 0;
    PyObject *d = st->head;
    st->head = NULL;
    Py_ssize_t nt = PyTuple_GET_SIZE(st->typed);
    for (Py_ssize_t i = 0; i < nt; i++) {
        PyObject *pair = PyTuple_GET_ITEM(st->typed, i);
        PyObject *v = PyDict_GetItemWithError(st->fields, PyTuple_GET_ITEM(pair, 0));
        if (!v && PyErr_Occurred())
            goto fail;
        if (PyDict_SetItem(d, PyTuple_GET_ITEM(pair, 1), v ? v : Py_None) < 0)
            goto fail;
    }
    if (PyDict_SetItem(d, k_fields, st->fields) < 0 ||
        PyDict_SetItem(d, k_vm_flags, st->flags ? st->flags : Py_None) < 0)
        goto fail;
    st->nfields = PyDict_GET_SIZE(st->fields);
    Py_CLEAR(st->fields);
    Py_CLEAR(st->flags);
    PyObject *r = new_with_dict(st->region_cls, d);
    if (!r)
        return -1;
    int rc = PyList_Append(st->regions, r);
    Py_DECREF(r);
    return rc;
fail:
    Py_DECREF(d);
    return -1;
}

#define NOT_PLAIN 1 /* return value of a line parser: hand the text to Python */

/* perms (slot 0), dev (1) or path (2) as a str: the last region's when the bytes are the
 * same (one memcmp), else through the cache. New reference. */
static PyObject *header_str(State *st, int slot, const char *p, Py_ssize_t n) {
    if (st->last_s[slot] && st->last_n[slot] == n && memcmp(st->last_p[slot], p, (size_t)n) == 0) {
        Py_INCREF(st->last_s[slot]);
        return st->last_s[slot];
    }
    PyObject *s = cached_str(st->cache, p, n);
    if (s) {
        st->last_s[slot] = s; /* the cache holds a reference for the whole call */
        st->last_p[slot] = p;
        st->last_n[slot] = n;
    }
    return s;
}

/* "start-end perms offset dev inode [path]" between p and e (no newline) */
static int header(State *st, const char *p, const char *e) {
    unsigned long long start, end, offset, inode;
    const char *q = memchr(p, '-', (size_t)(e - p));
    if (!q)
        return NOT_PLAIN;
    const char *sp = memchr(q, ' ', (size_t)(e - q));
    if (!sp || !hex_span(p, q, &start) || !hex_span(q + 1, sp, &end))
        return NOT_PLAIN;
    const char *perms = sp + 1;
    if (e - perms < 5 || perms[4] != ' ')
        return NOT_PLAIN;
    for (int i = 0; i < 4; i++)
        if (perms[i] == ' ')
            return NOT_PLAIN;
    const char *off = perms + 5;
    sp = memchr(off, ' ', (size_t)(e - off));
    if (!sp || !hex_span(off, sp, &offset))
        return NOT_PLAIN;
    const char *dev = sp + 1;
    sp = memchr(dev, ' ', (size_t)(e - dev));
    if (!sp || sp == dev)
        return NOT_PLAIN;
    int colon = 0;
    for (const char *c = dev; c < sp; c++) {
        if (*c == ':')
            colon = 1;
        else if (!is_hex(*c))
            return NOT_PLAIN;
    }
    if (!colon)
        return NOT_PLAIN;
    const char *ino = sp + 1;
    const char *ie = ino;
    while (ie < e && *ie != ' ')
        ie++;
    if (!dec_span(ino, ie, &inode))
        return NOT_PLAIN;
    const char *path = ie, *pe = e;
    while (path < e && *path == ' ')
        path++;
    while (pe > path && pe[-1] == ' ')
        pe--;
    if (close_region(st) < 0)
        return -1;
    PyObject *d = _PyDict_NewPresized(16); /* Region's 16 attributes: no resize */
    if (!d)
        return -1;
    st->head = d;
    st->fields = _PyDict_NewPresized(st->nfields); /* as many names as the last region had */
    if (!st->fields)
        return -1;
    if (set_steal(d, k_start, PyLong_FromUnsignedLongLong(start)) < 0 ||
        set_steal(d, k_end, PyLong_FromUnsignedLongLong(end)) < 0 ||
        set_steal(d, k_perms, header_str(st, 0, perms, 4)) < 0 ||
        set_steal(d, k_offset, PyLong_FromUnsignedLongLong(offset)) < 0 ||
        set_steal(d, k_dev, header_str(st, 1, dev, sp - dev)) < 0 ||
        set_steal(d, k_inode, PyLong_FromUnsignedLongLong(inode)) < 0 ||
        set_steal(d, k_pathname, header_str(st, 2, path, pe - path)) < 0)
        return -1;
    return 0;
}

/* "VmFlags: rd wr mr" */
static int vmflags(State *st, const char *p, const char *e) {
    /* regions repeat a few flag sets: the tuple of one line, cached by the line's bytes (one
     * bytes object and one lookup per region, not one per word); tuples of str are immutable,
     * so regions may share one */
    PyObject *key = PyBytes_FromStringAndSize(p, e - p);
    if (!key)
        return -1;
    PyObject *got = PyDict_GetItemWithError(st->flagcache, key);
    if (got) {
        Py_DECREF(key);
        Py_INCREF(got);
        Py_XSETREF(st->flags, got);
        return 0;
    }
    if (PyErr_Occurred()) {
        Py_DECREF(key);
        return -1;
    }
    PyObject *lst = PyList_New(0);
    if (!lst) {
        Py_DECREF(key);
        return -1;
    }
    p += 8;
    while (p < e) {
        while (p < e && *p == ' ')
            p++;
        const char *w = p;
        while (p < e && *p != ' ')
            p++;
        if (p > w) {
            PyObject *s = cached_str(st->cache, w, p - w);
            if (!s || PyList_Append(lst, s) < 0) {
                Py_XDECREF(s);
                Py_DECREF(lst);
                Py_DECREF(key);
                return -1;
            }
            Py_DECREF(s);
        }
    }
    PyObject *t = PyList_AsTuple(lst);
    Py_DECREF(lst);
    if (!t || PyDict_SetItem(st->flagcache, key, t) < 0) {
        Py_DECREF(key);
        Py_XDECREF(t);
        return -1;
    }
    Py_DECREF(key);
    Py_XSETREF(st->flags, t);
    return 0;
}

static PyObject *smaps_parse(PyObject *Py_UNUSED(self), PyObject *args) {
    Py_buffer buf;
    PyObject *region_cls, *smaps_cls, *typed;
    if (!PyArg_ParseTuple(args, "y*OOO!", &buf, &region_cls, &smaps_cls, &PyTuple_Type, &typed))
        return NULL;
    if (!PyType_Check(region_cls) || !PyType_Check(smaps_cls)) {
        PyBuffer_Release(&buf);
        PyErr_SetString(PyExc_TypeError, "Region and Smaps must be classes");
        return NULL;
    }
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(typed); i++) {
        PyObject *pair = PyTuple_GET_ITEM(typed, i);
        if (!PyTuple_Check(pair) || PyTuple_GET_SIZE(pair) != 2) {
            PyBuffer_Release(&buf);
            PyErr_SetString(PyExc_TypeError, "typed: (name, attribute) pairs");
            return NULL;
        }
    }
    const char *data = buf.buf, *end = data + buf.len;
    NameSlot slots[MAXNAMES];
    memset(slots, 0, sizeof slots);
    State st;
    memset(&st, 0, sizeof st);
    st.region_cls = (PyTypeObject *)region_cls;
    st.typed = typed;
    st.cache = PyDict_New();
    st.flagcache = PyDict_New();
    st.regions = PyList_New(0);
    st.nfields = 24;
    PyObject *out = NULL;
    int rc = 0, idx = 0;
    if (!st.cache || !st.flagcache || !st.regions)
        goto done;
    if (buf.len && end[-1] != '\n') {
        rc = NOT_PLAIN;
        goto done;
    }
    for (const char *p = data; p < end;) {
        int tabs = 0; /* 5.x kernels print "THPeligible:\t\t0": tabs only after a colon */
        const char *e = line_end(p, end, &tabs);
        if (!e) {
            rc = NOT_PLAIN;
            goto done;
        }
        const char *next = e + 1;
        if (e == p) {
            p = next;
            continue;
        }
        if (e - p >= 8 && memcmp(p, "VmFlags:", 8) == 0) {
            if (tabs) {
                rc = NOT_PLAIN;
                goto done;
            }
            rc = st.head ? vmflags(&st, p, e) : 0;
        } else {
            /* a header: its first space-delimited token holds '-' and no ':' */
            const char *t = p, *colon = NULL;
            int dash = 0;
            for (; t < e && *t != ' '; t++) {
                if (*t == ':' && !colon)
                    colon = t;
                else if (*t == '-')
                    dash = 1;
            }
            if (dash && !colon) {
                if (tabs) {
                    rc = NOT_PLAIN;
                    goto done;
                }
                rc = header(&st, p, e);
                idx = 0;
            } else {
                if (!st.head || !colon) { /* a field before any header, a line without ':' */
                    rc = NOT_PLAIN;
                    goto done;
                }
                /* "Name:   N kB" or "Name:   N" */
                const char *v = colon + 1;
                while (v < e && (*v == ' ' || *v == '\t'))
                    v++;
                const char *ve = v;
                while (ve < e && *ve >= '0' && *ve <= '9')
                    ve++;
                const char *r = ve;
                while (r < e && (*r == ' ' || *r == '\t'))
                    r++;
                if (r < e && e - r >= 2 && r[0] == 'k' && r[1] == 'B' && r != ve) {
                    r += 2;
                    while (r < e && (*r == ' ' || *r == '\t'))
                        r++;
                }
                unsigned long long n;
                if (r != e || v == colon + 1 || !dec_span(v, ve, &n)) {
                    rc = NOT_PLAIN;
                    goto done;
                }
                PyObject *name = name_at(slots, idx++, p, colon - p);
                if (!name) {
                    rc = -1;
                    goto done;
                }
                PyObject *val = PyLong_FromUnsignedLongLong(n);
                rc = val ? PyDict_SetItem(st.fields, name, val) : -1;
                Py_DECREF(name);
                Py_XDECREF(val);
            }
        }
        if (rc)
            goto done;
        p = next;
    }
    if (close_region(&st) < 0) {
        rc = -1;
        goto done;
    }
    {
        PyObject *t = PyList_AsTuple(st.regions);
        PyObject *d = t ? PyDict_New() : NULL;
        if (d && set_steal(d, k_regions, t) == 0)
            out = new_with_dict((PyTypeObject *)smaps_cls, d);
        else {
            Py_XDECREF(d);
            if (!d)
                Py_XDECREF(t);
        }
        if (!out)
            rc = -1;
    }
done:
    for (int i = 0; i < MAXNAMES; i++)
        Py_XDECREF(slots[i].s);
    Py_XDECREF(st.cache);
    Py_XDECREF(st.flagcache);
    Py_XDECREF(st.regions);
    Py_XDECREF(st.head);
    Py_XDECREF(st.fields);
    Py_XDECREF(st.flags);
    PyBuffer_Release(&buf);
    if (rc == NOT_PLAIN) {
        Py_XDECREF(out);
        Py_RETURN_NONE;
    }
    if (rc < 0 || !out) {
        Py_XDECREF(out);
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_RuntimeError, "smaps parse failed");
        return NULL;
    }
    return out;
}

static PyMethodDef methods[] = {
    {"parse", smaps_parse, METH_VARARGS,
     "parse(data: bytes, Region, Smaps, typed) -> Smaps as sources.proc_pid.smaps.parse gives\n"
     "for the decoded text (typed: the (name, attribute) pairs of smaps._REGION), or None when\n"
     "the bytes are not in the kernel's plain form (Python then parses them)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "ksight._smapsparse",
    "C fast path of ksight.sources.proc_pid.smaps.parse; the Python parser is the reference.",
    -1, methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__smapsparse(void) {
#define INTERN(var, s)                                 \
    if (!(var = PyUnicode_InternFromString(s)))        \
        return NULL;
    INTERN(str___dict__, "__dict__");
    INTERN(k_start, "start");
    INTERN(k_end, "end");
    INTERN(k_perms, "perms");
    INTERN(k_offset, "offset");
    INTERN(k_dev, "dev");
    INTERN(k_inode, "inode");
    INTERN(k_pathname, "pathname");
    INTERN(k_fields, "fields");
    INTERN(k_vm_flags, "vm_flags");
    INTERN(k_regions, "regions");
    return PyModule_Create(&module);
}
