/*
 * Speck128 CTR keystream, the hot path of vitalchain.crypto.primitives.speck.
 *
 * Only the round function lives here; the key schedule stays in Python (speck.py), which is
 * also the reference the tests compare this kernel against.  Eight counter blocks are
 * processed side by side so the compiler can keep them in vector registers.
 *
 * Counter block i (16 bytes) = nonce[0:12] || uint32_le(counter0 + i), loaded in the
 * designers' byte order: y = le64(block[0:8]), x = le64(block[8:16]).
 *
 * The 32-bit block counter must never wrap: a wrapped counter repeats keystream under the
 * same nonce, and XOR of two ciphertexts then gives XOR of two plaintexts.  So this kernel
 * refuses (OverflowError) any call whose blocks would run past counter 2^32 - 1, whatever
 * its caller checked; the counter is parsed with overflow checking, never masked.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#define LANES 8
#define ROR64(v, r) (((v) >> (r)) | ((v) << (64 - (r))))
#define ROL64(v, r) (((v) << (r)) | ((v) >> (64 - (r))))

static inline uint64_t load64(const uint8_t *p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}

static inline void store64(uint8_t *p, uint64_t v) {
    for (int i = 0; i < 8; i++) { p[i] = (uint8_t)v; v >>= 8; }
}

static void ctr_xor(const uint64_t *rk, int rounds, uint64_t y0, uint32_t x_lo, uint32_t counter,
                    const uint8_t *in, uint8_t *out, size_t len) {
    size_t off = 0;
    while (off < len) {
        uint64_t x[LANES], y[LANES];
        for (int l = 0; l < LANES; l++) {
            y[l] = y0;
            x[l] = (uint64_t)x_lo | ((uint64_t)(uint32_t)(counter + (uint32_t)l) << 32);
        }
        for (int r = 0; r < rounds; r++) {
            const uint64_t k = rk[r];
            for (int l = 0; l < LANES; l++) {
                x[l] = (ROR64(x[l], 8) + y[l]) ^ k;
                y[l] = ROL64(y[l], 3) ^ x[l];
            }
        }
        for (int l = 0; l < LANES && off < len; l++) {
            if (len - off >= 16) {
                store64(out + off, load64(in + off) ^ y[l]);
                store64(out + off + 8, load64(in + off + 8) ^ x[l]);
                off += 16;
            } else {
                uint8_t ks[16];
                store64(ks, y[l]);
                store64(ks + 8, x[l]);
                for (size_t i = 0; off < len; i++, off++) out[off] = in[off] ^ ks[i];
            }
        }
        counter += LANES;
    }
}

static PyObject *py_ctr_xor(PyObject *self, PyObject *args) {
    Py_buffer rk_buf, nonce_buf, data_buf;
    PyObject *counter_obj;
    (void)self;
    if (!PyArg_ParseTuple(args, "y*y*O!y*", &rk_buf, &nonce_buf, &PyLong_Type, &counter_obj,
                          &data_buf))
        return NULL;
    PyObject *result = NULL;
    /* Not the "k" format: it masks to an unsigned long, so 2^64 + 5 would silently be 5. */
    unsigned long long counter = PyLong_AsUnsignedLongLong(counter_obj);
    if (counter == (unsigned long long)-1 && PyErr_Occurred()) {
        PyErr_Clear();
        PyErr_SetString(PyExc_OverflowError, "CTR counter must be in 0..2^32-1");
        goto done;
    }
    if (rk_buf.len % 8 != 0 || rk_buf.len < 8 || rk_buf.len > 8 * 64) {
        PyErr_SetString(PyExc_ValueError, "round keys must be 8*rounds bytes");
        goto done;
    }
    if (nonce_buf.len != 12) {
        PyErr_SetString(PyExc_ValueError, "nonce must be 12 bytes");
        goto done;
    }
    /* Blocks this call uses: ceil(len / 16) < 2^60, so the sum below cannot overflow. */
    unsigned long long blocks = ((unsigned long long)data_buf.len + 15u) / 16u;
    if (counter > 0xFFFFFFFFull || counter + blocks > 0x100000000ull) {
        PyErr_SetString(PyExc_OverflowError, "CTR counter would wrap past 2^32 blocks");
        goto done;
    }
    int rounds = (int)(rk_buf.len / 8);
    uint64_t rk[64];
    for (int i = 0; i < rounds; i++) rk[i] = load64((const uint8_t *)rk_buf.buf + 8 * i);
    const uint8_t *nonce = (const uint8_t *)nonce_buf.buf;
    uint64_t y0 = load64(nonce);
    uint32_t x_lo = (uint32_t)nonce[8] | ((uint32_t)nonce[9] << 8) | ((uint32_t)nonce[10] << 16) |
                    ((uint32_t)nonce[11] << 24);
    result = PyBytes_FromStringAndSize(NULL, data_buf.len);
    if (result == NULL) goto done;
    uint8_t *out = (uint8_t *)PyBytes_AS_STRING(result);
    const uint8_t *in = (const uint8_t *)data_buf.buf;
    size_t len = (size_t)data_buf.len;
    if (len >= 4096) {
        Py_BEGIN_ALLOW_THREADS
        ctr_xor(rk, rounds, y0, x_lo, (uint32_t)counter, in, out, len);
        Py_END_ALLOW_THREADS
    } else {
        ctr_xor(rk, rounds, y0, x_lo, (uint32_t)counter, in, out, len);
    }
done:
    PyBuffer_Release(&rk_buf);
    PyBuffer_Release(&nonce_buf);
    PyBuffer_Release(&data_buf);
    return result;
}

static PyMethodDef methods[] = {
    {"ctr_xor", py_ctr_xor, METH_VARARGS,
     "ctr_xor(round_keys, nonce12, counter, data) -> bytes: Speck128 CTR keystream XOR data."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_speck", NULL, -1, methods};

PyMODINIT_FUNC PyInit__speck(void) { return PyModule_Create(&module); }
