/* Compiled against numpy's C API: what the headers said, and a sum over a real ndarray. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#define NPY_NO_DEPRECATED_API NPY_1_7_API_VERSION
#include <numpy/arrayobject.h>

static PyObject *compiled_sizes(PyObject *self, PyObject *noargs) {
    return Py_BuildValue("{s:i,s:i,s:i,s:i}", "NPY_SIZEOF_LONG", NPY_SIZEOF_LONG,
                         "NPY_SIZEOF_INTP", NPY_SIZEOF_INTP, "sizeof_long", (int)sizeof(long),
                         "sizeof_npy_intp", (int)sizeof(npy_intp));
}
static PyObject *total(PyObject *self, PyObject *args) {
    PyObject *obj;
    if (!PyArg_ParseTuple(args, "O", &obj)) return NULL;
    PyArrayObject *arr = (PyArrayObject *)PyArray_FROMANY(obj, NPY_DOUBLE, 1, 1, NPY_ARRAY_IN_ARRAY);
    if (arr == NULL) return NULL;
    double sum = 0;
    npy_intp n = PyArray_DIM(arr, 0);
    const double *data = (const double *)PyArray_DATA(arr);
    for (npy_intp i = 0; i < n; i++) sum += data[i];
    Py_DECREF(arr);
    return PyFloat_FromDouble(sum);
}
static PyMethodDef methods[] = {{"compiled_sizes", compiled_sizes, METH_NOARGS, ""},
                                {"total", total, METH_VARARGS, ""}, {NULL, NULL, 0, NULL}};
static struct PyModuleDef mod = {PyModuleDef_HEAD_INIT, "_npdemo", NULL, -1, methods};
PyMODINIT_FUNC PyInit__npdemo(void) { import_array(); return PyModule_Create(&mod); }
