/* ksight._treepatch: the usual cases of store/samples_tree.patch (a delta frame's tree given the
 * frame before) in C: a SAME marker, a value in full, an ELEM list (each item patched), a NUM
 * list of integers (prev + difference). Every other case (a KEYED table, a NUM list with None,
 * SAME or a value in full among its items, any malformed input) is handed to the Python patch
 * (samples_tree._patch_py), which decodes it or raises the SampleError it always raised; its own
 * recursion comes back here. Optional (setup.py): without it the Python patch does everything.
 * Why: ~40 us of a ~75 us frame of a synthetic day went to patch (issue 13, docs/benchmarks.md);
 * tests/store/test_treepatch_c.py compares both on recorded frames and on bad input. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

static PyObject *ext_type = NULL;  /* msgspec.msgpack.Ext */
static PyObject *fallback = NULL;  /* samples_tree._patch_py */
static PyObject *str_code = NULL;
static long same_code = 1, elem_code = 2, num_code = 3;

static int ext_code(PyObject *o, long *code)
{
    PyObject *c = PyObject_GetAttr(o, str_code);
    if (c == NULL)
        return -1;
    long v = PyLong_AsLong(c);
    Py_DECREF(c);
    if (v == -1 && PyErr_Occurred())
        return -1;
    *code = v;
    return 0;
}

static PyObject *slow(PyObject *d, PyObject *prev)
{
    return PyObject_CallFunctionObjArgs(fallback, d, prev, NULL);
}

static PyObject *patch(PyObject *d, PyObject *prev);

static PyObject *patch_list(PyObject *d, PyObject *prev, long mark)
{
    Py_ssize_t n = PyList_GET_SIZE(d) - 1, i;
    PyObject *out;

    if ((mark != elem_code && mark != num_code) || !PyList_CheckExact(prev)
        || PyList_GET_SIZE(prev) != n)
        return slow(d, prev);
    if (mark == num_code) {
        for (i = 0; i < n; i++)
            if (!PyLong_CheckExact(PyList_GET_ITEM(d, i + 1))
                || !PyLong_CheckExact(PyList_GET_ITEM(prev, i)))
                return slow(d, prev);  /* None, SAME, [x] among them: the Python path */
        out = PyList_New(n);
        if (out == NULL)
            return NULL;
        for (i = 0; i < n; i++) {
            PyObject *s = PyNumber_Add(PyList_GET_ITEM(prev, i), PyList_GET_ITEM(d, i + 1));
            if (s == NULL) {
                Py_DECREF(out);
                return NULL;
            }
            PyList_SET_ITEM(out, i, s);
        }
        return out;
    }
    out = PyList_New(n);
    if (out == NULL)
        return NULL;
    for (i = 0; i < n; i++) {
        PyObject *v = PyList_GET_ITEM(d, i + 1), *b = PyList_GET_ITEM(prev, i), *r;
        PyTypeObject *tv = Py_TYPE(v);
        if (tv == (PyTypeObject *)ext_type) {
            long c;
            if (ext_code(v, &c) < 0) {
                Py_DECREF(out);
                return NULL;
            }
            if (c == same_code) {
                Py_INCREF(b);
                r = b;
            } else {
                r = patch(v, b);  /* another marker: the Python path raises */
            }
        } else if (tv != &PyList_Type) {
            Py_INCREF(v);
            r = v;
        } else {
            r = patch(v, b);
        }
        if (r == NULL) {
            Py_DECREF(out);
            return NULL;
        }
        PyList_SET_ITEM(out, i, r);
    }
    return out;
}

static PyObject *patch(PyObject *d, PyObject *prev)
{
    PyObject *r;
    long mark;

    if (Py_TYPE(d) == (PyTypeObject *)ext_type) {
        if (ext_code(d, &mark) < 0)
            return NULL;
        if (mark == same_code) {
            Py_INCREF(prev);
            return prev;
        }
        return slow(d, prev);
    }
    if (!PyList_CheckExact(d) || PyList_GET_SIZE(d) == 0
        || Py_TYPE(PyList_GET_ITEM(d, 0)) != (PyTypeObject *)ext_type) {
        Py_INCREF(d);  /* a value in full */
        return d;
    }
    if (ext_code(PyList_GET_ITEM(d, 0), &mark) < 0)
        return NULL;
    if (Py_EnterRecursiveCall(" in ksight._treepatch.patch"))
        return NULL;
    r = patch_list(d, prev, mark);
    Py_LeaveRecursiveCall();
    return r;
}

static PyObject *py_patch(PyObject *self, PyObject *args)
{
    PyObject *d, *prev;
    (void)self;
    if (!PyArg_ParseTuple(args, "OO:patch", &d, &prev))
        return NULL;
    if (ext_type == NULL || fallback == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "ksight._treepatch.setup() was not called");
        return NULL;
    }
    return patch(d, prev);
}

static PyObject *py_setup(PyObject *self, PyObject *args)
{
    PyObject *et, *fb;
    long s, e, n;
    (void)self;
    if (!PyArg_ParseTuple(args, "OOlll:setup", &et, &fb, &s, &e, &n))
        return NULL;
    if (!PyType_Check(et) || !PyCallable_Check(fb)) {
        PyErr_SetString(PyExc_TypeError, "setup(Ext type, fallback callable, SAME, ELEM, NUM)");
        return NULL;
    }
    Py_INCREF(et);
    Py_INCREF(fb);
    Py_XDECREF(ext_type);
    Py_XDECREF(fallback);
    ext_type = et;
    fallback = fb;
    same_code = s;
    elem_code = e;
    num_code = n;
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"patch", py_patch, METH_VARARGS,
     "patch(d, prev): the packed tree of delta form d given the frame before (see samples_tree)"},
    {"setup", py_setup, METH_VARARGS,
     "setup(Ext, fallback, SAME code, ELEM code, NUM code): what patch hands the rest to"},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "ksight._treepatch",
                                    "Delta-frame tree patch in C (store/samples_tree.py)", -1,
                                    methods, NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__treepatch(void)
{
    str_code = PyUnicode_InternFromString("code");
    if (str_code == NULL)
        return NULL;
    return PyModule_Create(&module);
}
