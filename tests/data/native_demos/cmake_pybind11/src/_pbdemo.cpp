// zlib's crc32 of the argument, the zlib version and sizeof(long) as compiled, through pybind11.
#include <pybind11/pybind11.h>
#include <zlib.h>
#include <string>

namespace py = pybind11;

PYBIND11_MODULE(_pbdemo, m) {
    m.def("crc", [](py::bytes data) {
        std::string s = data;
        return crc32(0L, reinterpret_cast<const Bytef *>(s.data()), static_cast<uInt>(s.size()));
    });
    m.def("facts", []() {
        py::dict d;
        d["zlib"] = zlibVersion();
        d["sizeof_long"] = static_cast<int>(sizeof(long));
        return d;
    });
}
