/* One function: zlib's crc32 of the argument, the zlib version and sizeof(long) as compiled. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <zlib.h>
#define STR2(x) #x
#define STR(x) STR2(x)
#define INIT2(x) PyInit_##x
#define INIT(x) INIT2(x)

static PyObject *crc(PyObject *self, PyObject *args) {
    const char *data; Py_ssize_t n;
    if (!PyArg_ParseTuple(args, "y#", &data, &n)) return NULL;
    return PyLong_FromUnsignedLong(crc32(0L, (const Bytef *)data, (uInt)n));
}
static PyObject *facts(PyObject *self, PyObject *noargs) {
    return Py_BuildValue("{s:s,s:i}", "zlib", zlibVersion(), "sizeof_long", (int)sizeof(long));
}
static PyMethodDef methods[] = {
    {"crc", crc, METH_VARARGS, "crc32"}, {"facts", facts, METH_NOARGS, "facts"}, {NULL, NULL, 0, NULL}};
static struct PyModuleDef mod = {PyModuleDef_HEAD_INIT, STR(MODNAME), NULL, -1, methods};
PyMODINIT_FUNC INIT(MODNAME)(void) { return PyModule_Create(&mod); }
