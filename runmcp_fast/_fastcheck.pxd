# The byte checker's C entry for other extensions (the data plane's contract steps):
# a Python method call per check cost ~300 instructions of a request's ~20k.

cdef int program_check(object program, const unsigned char* buf, Py_ssize_t size) except -1
